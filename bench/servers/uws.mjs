// uWebSockets.js baseline (prebuilt binary from @trufflesuite/uws-js-unofficial). Same protocol
// as the raw ws baseline; broadcast uses uWS's native pub/sub. Refuses to run on the JS fallback.
import { createRequire } from 'node:module';
import { serve } from './common.mjs';

const require = createRequire(import.meta.url);

serve(async (opts) => {
  const binary = `@trufflesuite/uws-js-unofficial/binaries/uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  let uWS;
  try {
    uWS = require(binary);
  } catch (err) {
    throw new Error(`uWebSockets.js native binary did not load (${binary}): ${err.message}`);
  }
  const ACK = Buffer.from([3]);
  const c = opts.compression;
  const app = uWS.App();
  app.ws('/*', {
    maxPayloadLength: 16 * 1024 * 1024,
    maxBackpressure: 64 * 1024 * 1024,
    idleTimeout: opts.heartbeat && opts.heartbeat.interval > 0 ? Math.max(8, Math.round(opts.heartbeat.interval / 1000)) : 0,
    sendPingsAutomatically: !!(opts.heartbeat && opts.heartbeat.interval > 0),
    compression: c && c.enabled ? uWS.SHARED_COMPRESSOR : uWS.DISABLED,
    message: (ws, msg, isBinary) => {
      const b = new Uint8Array(msg);
      if (b[0] === 1 && b.length === 1) ws.subscribe('b');
      else if (b[0] === 2) {
        app.publish('b', msg, true);
        ws.send(ACK, true);
      } else ws.send(msg, isBinary, c && c.enabled);
    },
  });
  const port = await new Promise((resolve, reject) => app.listen('127.0.0.1', 0, (t) => (t ? resolve(uWS.us_socket_local_port(t)) : reject(new Error('listen failed')))));
  return { port, close: () => app.close?.(), info: { native: binary } };
});
