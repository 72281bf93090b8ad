// wiregate as one node of a cluster (bench/scenarios/cluster.mjs): the settings of
// servers/wiregate.mjs (inbound rate limits off, the same buffers and payload cap) plus
// BENCH_OPTS.broker (`memory`, a redis:// or a nats:// URL) and BENCH_OPTS.brokerPrefix.
// BENCH_OPTS.dist: another build's dist/ directory to run instead of this checkout's (the scenario
// passes BENCH_WIREGATE_DIST), so a run can measure a fixed commit while dist/ here is rebuilt.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { serve } from './common.mjs';

serve(async (opts) => {
  const { createGateway } = await import(opts.dist ? pathToFileURL(join(opts.dist, 'index.js')).href : '../../dist/index.js');
  const gw = createGateway({
    host: '127.0.0.1',
    port: 0,
    log: { level: 'warn' },
    heartbeat: opts.heartbeat ?? { interval: 30_000, timeout: 10_000 },
    compression: { preset: 'off' },
    // As in servers/wiregate.mjs: the load generator is a trusted client far above the
    // per-connection defaults (1000 messages/s, 1 MiB/s), so the inbound rate limits are off.
    limits: { maxConnections: 1_000_000, messageRate: 0, byteRate: 0 },
    outbound: { maxBufferedBytes: 64 * 1024 * 1024 },
    maxPayload: 16 * 1024 * 1024,
    broker: opts.broker ?? 'memory',
    ...(opts.brokerPrefix ? { brokerPrefix: opts.brokerPrefix } : {}),
  });
  const { port } = await gw.listen();
  return { port, close: () => gw.close({ drainTimeout: 100 }), info: gw.info };
});
