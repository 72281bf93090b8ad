// Prometheus exposition. The hot path only bumps plain numbers in Stats; prom-client reads them
// through collect() callbacks when /metrics is scraped, so gateway metrics cost nothing between
// scrapes. The one standing cost is Node's event-loop delay histogram (prom-client's default
// metrics), one timer wake-up per `eventLoopResolution` ms.
// With `wiregate start --workers N` the primary aggregates every worker's registry (src/cli/cluster.ts)
// by each metric's `aggregator`: sum unless a row says otherwise (a flag or a state is not summed).
import { Counter, Gauge, Registry, collectDefaultMetrics, type Aggregator } from 'prom-client';
import { errorCodeName } from '../protocol/codes.js';
import type { Stats } from '../connection/core.js';
import type { FastPaths } from '../transport/ws-internals.js';
import type { BrokerStats } from '../pubsub/broker.js';

export interface LiveReadings {
  connections(): number;
  patterns(): number;
  draining(): boolean;
  /** Messages wiregate deflated itself. */
  deflated(): number;
  /** Inbound messages inflated synchronously (the syncInflate fast path). */
  syncInflates(): number;
  upgradesRejected(): Map<string, number>;
  fastPaths: FastPaths;
  /** What the broker holds (history, retained), when it reports it. */
  broker(): BrokerStats | null;
  /** Whether the broker is reachable (always true for the memory broker). */
  brokerUp(): boolean;
}

export function createMetrics(stats: Stats, live: LiveReadings, eventLoopResolution = 100): Registry {
  const register = new Registry();
  collectDefaultMetrics({ register, eventLoopMonitoringPrecision: eventLoopResolution });

  const counter = (name: string, help: string, read: () => number) => {
    let last = 0;
    new Counter({
      name,
      help,
      registers: [register],
      collect() {
        const v = read();
        if (v > last) this.inc(v - last);
        last = v;
      },
    });
  };
  const gauge = (name: string, help: string, read: () => number, aggregator: Aggregator = 'sum') => {
    new Gauge({ name, help, registers: [register], aggregator, collect() { this.set(read()); } });
  };

  gauge('wiregate_connections', 'Open WebSocket connections', live.connections);
  gauge('wiregate_subscriptions', 'Active subscriptions (connection x pattern)', () => stats.subscriptions);
  gauge('wiregate_subscription_patterns', 'Distinct subscribed patterns on this node', live.patterns);
  gauge('wiregate_draining', '1 while the gateway is shutting down', () => (live.draining() ? 1 : 0), 'max');
  counter('wiregate_connections_opened_total', 'WebSocket connections accepted', () => stats.connectionsOpened);
  counter('wiregate_connections_closed_total', 'WebSocket connections closed', () => stats.connectionsClosed);
  counter('wiregate_frames_in_total', 'Binary and text frames received', () => stats.framesIn);
  counter('wiregate_messages_in_total', 'Protocol messages received', () => stats.messagesIn);
  counter('wiregate_bytes_in_total', 'Bytes of message payload received (after decompression)', () => stats.bytesIn);
  counter('wiregate_messages_out_total', 'Frames sent to clients', () => stats.messagesOut);
  counter('wiregate_bytes_out_total', 'Bytes of frames sent to clients (before compression)', () => stats.bytesOut);
  counter('wiregate_publishes_total', 'Messages published (WebSocket, HTTP and server API)', () => stats.publishes);
  counter('wiregate_requests_total', 'Requests dispatched to method handlers', () => stats.requests);
  counter('wiregate_request_timeouts_total', 'Requests answered with TIMEOUT', () => stats.requestTimeouts);
  counter('wiregate_malformed_frames_total', 'Frames that were not well-formed msgpack (closed with 1007)', () => stats.malformedFrames);
  counter('wiregate_deliveries_dropped_total', 'Deliveries skipped for slow consumers under the drop policy', () => stats.deliveriesDropped);
  counter('wiregate_deliveries_conflated_total', 'Deliveries held back for slow consumers under the conflate policy and replaced by a newer message on the same topic', () => stats.deliveriesConflated);
  counter('wiregate_slow_consumer_closes_total', 'Connections closed with 4000 SLOW_CONSUMER', () => stats.slowConsumerCloses);
  counter('wiregate_rate_limit_pauses_total', 'Times a connection was paused for exceeding its rate', () => stats.rateLimitPauses);
  counter('wiregate_rate_limit_closes_total', 'Connections closed with 4001 RATE_LIMITED', () => stats.rateLimitCloses);
  counter('wiregate_heartbeat_pings_total', 'Heartbeat pings sent', () => stats.heartbeatPings);
  counter('wiregate_heartbeat_terminations_total', 'Connections terminated for not answering heartbeats', () => stats.heartbeatTerminations);
  counter('wiregate_deflated_messages_total', 'Messages compressed by wiregate itself (one per broadcast, shared by all subscribers)', live.deflated);
  const b = (k: keyof BrokerStats) => () => live.broker()?.[k] ?? 0;
  gauge('wiregate_history_bytes', 'Bytes of message history kept (payloads plus 64 B per message)', b('historyBytes'));
  gauge('wiregate_history_messages', 'Messages kept in history, all topics', b('historyMessages'));
  counter('wiregate_history_evictions_total', 'Messages evicted from history by history.maxBytes', b('historyEvictions'));
  gauge('wiregate_retained_topics', 'Topics with a retained value', b('retainedTopics'));
  gauge('wiregate_retained_bytes', 'Bytes of retained values', b('retainedBytes'));
  counter('wiregate_retained_rejected_total', 'Retained publishes past retained.maxTopics / maxBytes (delivered, not retained)', b('retainedRejected'));
  gauge('wiregate_broker_up', 'Whether the broker is reachable and answering (1) or lost/stalled (0): publishes and subscribes get BROKER_UNAVAILABLE (116) and /readyz is 503 while 0', () => (live.brokerUp() ? 1 : 0), 'min');
  counter('wiregate_broker_outages_total', 'Times the broker connection was lost or stalled', () => stats.brokerOutages);
  counter('wiregate_broker_gaps_total', 'GAPs sent to subscribers when the broker came back (they may have missed messages)', () => stats.brokerGaps);
  counter('wiregate_recovered_messages_total', 'Messages replayed from history to recovering subscribers', () => stats.recovered);
  counter('wiregate_sync_inflates_total', 'Inbound compressed messages inflated synchronously (syncInflate fast path; process-wide)', live.syncInflates);
  new Gauge({
    name: 'wiregate_fast_path_active',
    help: 'Whether each ws-internals fast path is on (1) or off (0); see /info fastPaths.reason',
    labelNames: ['path'],
    registers: [register],
    aggregator: 'min', // across workers: on only where it is on in every one
    collect() {
      for (const p of ['directWrites', 'syncInflate', 'closeHook'] as const) this.set({ path: p }, live.fastPaths[p] ? 1 : 0);
    },
  });
  counter('wiregate_http_publishes_total', 'Messages published through POST /v1/publish', () => stats.httpPublishes);

  const labelled = <K>(name: string, help: string, label: string, read: () => Map<K, number>, labelOf: (k: K) => string) => {
    const last = new Map<K, number>();
    new Counter({
      name,
      help,
      labelNames: [label],
      registers: [register],
      collect() {
        for (const [k, v] of read()) {
          const d = v - (last.get(k) ?? 0);
          if (d > 0) this.inc({ [label]: labelOf(k) }, d);
          last.set(k, v);
        }
      },
    });
  };
  labelled('wiregate_errors_total', 'Errors answered to clients, by code (MALFORMED_FRAME and TEXT_FRAME close the connection)', 'code', () => stats.errors, (code) =>
    code === -1 ? 'MALFORMED_FRAME' : code === -2 ? 'TEXT_FRAME' : errorCodeName(code),
  );
  labelled('wiregate_upgrades_rejected_total', 'Upgrade requests refused before a WebSocket existed, by reason', 'reason', live.upgradesRejected, (reason) => reason);
  return register;
}
