// wiregate with the bench's settings (BENCH_OPTS: heartbeat, compression, history).
import { serve } from './common.mjs';

serve(async (opts) => {
  const { createGateway } = await import('../../dist/index.js');
  const gw = createGateway({
    host: '127.0.0.1',
    port: 0,
    log: { level: 'warn' },
    heartbeat: opts.heartbeat ?? { interval: 30_000, timeout: 10_000 },
    compression: opts.compression ?? { preset: 'off' },
    // Stated limits: the load generator is a trusted client that sends far above the per-connection
    // defaults (1000 messages/s, 1 MiB/s), so the inbound rate limits are off for the bench.
    limits: { maxConnections: 1_000_000, messageRate: 0, byteRate: 0 },
    outbound: { maxBufferedBytes: 64 * 1024 * 1024 },
    maxPayload: 16 * 1024 * 1024,
    httpPublish: { apiKey: 'bench' },
    // per-topic history for recovery, e.g. { topics: ['bench/#=1000'] }; none unless asked for
    ...(opts.history ? { history: opts.history } : {}),
  });
  gw.handle('echo', (_ctx, p) => p);
  const { port } = await gw.listen();
  return { port, close: () => gw.close({ drainTimeout: 100 }), info: gw.info };
});
