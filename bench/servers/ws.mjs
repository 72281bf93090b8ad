// The raw `ws` baseline: what a hand-written server does with ws's public API. Echo sends each
// message back; byte 1 subscribes, byte 2 publishes (a broadcast loop over subscribers, then
// an ack byte 3 to the publisher). Heartbeats: one sweep timer, the ws README pattern.
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';
import { serve } from './common.mjs';

serve(async (opts) => {
  const c = opts.compression;
  // POST /v1/publish: parse the JSON body and broadcast its payload (the HTTP bench baseline)
  const server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/v1/publish') return res.writeHead(404).end();
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const { payload } = JSON.parse(Buffer.concat(chunks).toString());
      const data = Buffer.concat([Buffer.from([2]), Buffer.from(JSON.stringify(payload))]);
      for (const s of subs) s.send(data);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
  });
  const wss = new WebSocketServer({
    server,
    maxPayload: 16 * 1024 * 1024,
    // `wsDefaults`: perMessageDeflate: true, what `new WebSocketServer({ perMessageDeflate: true })` does
    perMessageDeflate: c && c.wsDefaults ? true : c && c.enabled ? { threshold: c.threshold, serverNoContextTakeover: c.serverNoContextTakeover, clientNoContextTakeover: c.clientNoContextTakeover, zlibDeflateOptions: { level: c.level, memLevel: c.memLevel }, concurrencyLimit: c.concurrencyLimit ?? 10 } : false,
    clientTracking: false,
  });
  const subs = new Set();
  const all = new Set();
  const ACK = Buffer.from([3]);
  wss.on('connection', (ws) => {
    ws.isAlive = true;
    all.add(ws);
    ws.on('pong', () => (ws.isAlive = true));
    ws.on('close', () => {
      subs.delete(ws);
      all.delete(ws);
    });
    ws.on('message', (data) => {
      ws.isAlive = true;
      const t = data[0];
      if (t === 1 && data.length === 1) subs.add(ws);
      else if (t === 2) {
        for (const s of subs) s.send(data);
        ws.send(ACK);
      } else ws.send(data);
    });
  });
  const hb = opts.heartbeat;
  let timer = null;
  if (hb && hb.interval > 0) {
    timer = setInterval(() => {
      for (const ws of all) {
        if (!ws.isAlive) {
          ws.terminate();
          continue;
        }
        ws.isAlive = false;
        ws.ping();
      }
    }, hb.interval);
  }
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.address().port, close: () => { clearInterval(timer); wss.close(); server.close(); } };
});
