// Plain HTTP routes: health, readiness, Prometheus metrics, runtime info and the publish API.
import { timingSafeEqual, createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SUBPROTOCOL, decodeFrame } from '../protocol/messages.js';
import { topicError } from '../protocol/topic.js';
import { readBody, sendJson } from '../transport/http-util.js';
import { createDemoRoute } from './demo.js';
import { BrokerUnavailable } from '../pubsub/hub.js';
import type { Runtime } from '../runtime.js';

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/**
 * What a worker of `wiregate start --workers N` asks the cluster primary (src/cli/cluster.ts);
 * `Runtime.cluster` is null in a single process, whose /info then has no `worker` / `workers`.
 */
export interface ClusterLink {
  /** This worker's node:cluster id. */
  readonly worker: number;
  /** Prometheus text of every listening worker's registry, aggregated by the primary. */
  metrics(): Promise<string>;
  /** Every worker the primary runs, with its open connections (null when it is not listening or did not answer). */
  workers(): Promise<WorkerInfo[]>;
}

export interface WorkerInfo {
  id: number;
  pid: number;
  /** When the primary forked it (ISO 8601). */
  startedAt: string;
  listening: boolean;
  connections: number | null;
}

export function createHttpHandler(gw: Runtime): (req: IncomingMessage, res: ServerResponse) => void {
  const keyDigest = gw.config.httpPublish.apiKey ? digest(gw.config.httpPublish.apiKey) : null;
  const demo = gw.config.demo ? createDemoRoute({ wsPath: gw.config.path, authRequired: gw.config.auth.enabled, warn: (m) => gw.log.warn(m) }) : null;

  const authorized = (req: IncomingMessage): boolean => {
    if (keyDigest === null) return false;
    const auth = req.headers.authorization;
    let key: string | undefined;
    if (auth && /^bearer /i.test(auth)) key = auth.slice(7).trim(); // the scheme is case-insensitive (RFC 9110)
    else {
      const h = req.headers['x-api-key'];
      key = Array.isArray(h) ? h[0] : h;
    }
    return key !== undefined && timingSafeEqual(digest(key), keyDigest);
  };

  const publish = async (req: IncomingMessage, res: ServerResponse) => {
    if (gw.draining) return sendJson(res, 503, { error: 'UNAVAILABLE', message: 'server shutting down' }, { 'Retry-After': 1 });
    if (!authorized(req)) return sendJson(res, 401, { error: 'UNAUTHORIZED', message: 'missing or wrong API key' }, { 'WWW-Authenticate': 'Bearer' });
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    const isMsgpack = type === 'application/msgpack' || type === 'application/x-msgpack' || type === 'application/vnd.msgpack';
    if (!isMsgpack && type !== 'application/json') {
      return sendJson(res, 415, { error: 'UNSUPPORTED_MEDIA_TYPE', message: 'use application/json or application/msgpack' });
    }
    const body = await readBody(req, res, gw.config.httpPublish.maxBodyBytes);
    if (body === null) return;
    let msg: unknown;
    try {
      if (isMsgpack) {
        // the same structural checks as a WebSocket frame (declared lengths, depth, extensions), one value
        const values = decodeFrame(body);
        if (values.length !== 1) throw new Error('one msgpack value expected');
        msg = values[0];
      } else msg = JSON.parse(body.toString('utf8'));
    } catch {
      return sendJson(res, 400, { error: 'BAD_REQUEST', message: isMsgpack ? 'body is not valid msgpack' : 'body is not valid JSON' });
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
      return sendJson(res, 400, { error: 'BAD_REQUEST', message: 'body must be an object {topic, payload}' });
    }
    const { topic, payload } = msg as { topic?: unknown; payload?: unknown };
    if (typeof topic !== 'string') return sendJson(res, 400, { error: 'BAD_REQUEST', message: 'topic must be a string' });
    const terr = topicError(topic, false, gw.topicLimits);
    if (terr !== null) return sendJson(res, 400, { error: 'INVALID_TOPIC', message: terr });
    if (payload === undefined) return sendJson(res, 400, { error: 'BAD_REQUEST', message: 'payload is required' });
    const { seq } = await gw.publish(topic as string, payload);
    gw.stats.httpPublishes++;
    sendJson(res, 200, { seq });
  };

  /** GET /info; a cluster worker adds its own id and the primary's list of workers. */
  const sendInfo = (res: ServerResponse, body: Record<string, unknown>) => {
    const link = gw.cluster;
    if (link === null) return sendJson(res, 200, body);
    link.workers().then(
      (workers) => sendJson(res, 200, { ...body, worker: link.worker, workers }),
      (err) => {
        gw.log.error({ err }, 'cluster info failed');
        sendJson(res, 500, { error: 'INTERNAL', message: 'cluster info failed' });
      },
    );
  };

  return (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const method = req.method ?? 'GET';
    if (path === '/v1/publish') {
      if (gw.config.httpPublish.apiKey === '') return sendJson(res, 404, { error: 'NOT_FOUND', message: 'HTTP publish API is disabled (set httpPublish.apiKey)' });
      if (method !== 'POST') return sendJson(res, 405, { error: 'METHOD_NOT_ALLOWED', message: 'use POST' }, { Allow: 'POST' });
      publish(req, res).catch((err) => {
        if (err instanceof BrokerUnavailable && !res.headersSent) return sendJson(res, 503, { error: 'BROKER_UNAVAILABLE', message: err.message }, { 'Retry-After': 1 });
        gw.log.error({ err }, 'HTTP publish failed');
        if (!res.headersSent) sendJson(res, 500, { error: 'INTERNAL', message: 'publish failed' });
      });
      return;
    }
    if (method !== 'GET' && method !== 'HEAD') return sendJson(res, 405, { error: 'METHOD_NOT_ALLOWED', message: 'use GET' }, { Allow: 'GET' });
    switch (path) {
      case '/healthz':
        return sendJson(res, 200, { status: 'ok' });
      case '/readyz':
        if (gw.draining) return sendJson(res, 503, { ready: false, reason: 'draining' });
        if (!gw.hub.up) return sendJson(res, 503, { ready: false, reason: 'broker unavailable', detail: gw.brokerHealth.reason });
        return sendJson(res, 200, { ready: true });
      case '/info':
        return sendInfo(res, { ...gw.info, connections: gw.connections, path: gw.config.path, draining: gw.draining, brokerUp: gw.hub.up, ...(gw.hub.up ? {} : { brokerDown: { reason: gw.brokerHealth.reason, since: new Date(gw.brokerHealth.since).toISOString() } }) });
      case '/metrics':
        if (!gw.metrics) return sendJson(res, 404, { error: 'NOT_FOUND', message: 'metrics disabled' });
        // a cluster worker serves every worker's metrics, aggregated by the primary
        (gw.cluster?.metrics() ?? gw.metrics.metrics()).then(
          (text) => {
            res.writeHead(200, { 'Content-Type': gw.metrics!.contentType });
            res.end(text);
          },
          (err) => {
            gw.log.error({ err }, 'metrics failed');
            sendJson(res, 500, { error: 'INTERNAL', message: 'metrics failed' });
          },
        );
        return;
      default:
        if (demo !== null && demo(path, req, res)) return;
        if (path === gw.config.path) {
          return sendJson(res, 426, { error: 'UPGRADE_REQUIRED', message: `WebSocket endpoint: connect with a WebSocket client offering subprotocol ${SUBPROTOCOL}` }, { Upgrade: 'websocket', Connection: 'Upgrade' });
        }
        return sendJson(res, 404, { error: 'NOT_FOUND', message: 'not found' });
    }
  };
}
