#!/usr/bin/env node
// A complete wiregate client written from docs/protocol.md alone, using only `ws` and `msgpackr`.
// Usage: node examples/raw-client.mjs [port | ws://url]   (default ws://127.0.0.1:8080/ws)
import WebSocket from 'ws';
import { Packr, Unpackr } from 'msgpackr';

const arg = process.argv[2] ?? process.env.WIREGATE_URL ?? '8080';
const url = /^\d+$/.test(arg) ? `ws://127.0.0.1:${arg}/ws` : arg;
const packr = new Packr({ useRecords: false }); // standard msgpack, no msgpackr extensions
const unpackr = new Unpackr({ useRecords: false });

const fail = (why) => {
  console.error(`FAIL: ${why}`);
  process.exit(1);
};
setTimeout(() => fail('timed out after 5 s'), 5000).unref();

const ws = new WebSocket(url, 'wiregate.v1');
ws.binaryType = 'nodebuffer';
const waiting = []; // [predicate, resolve]
ws.on('message', (data, isBinary) => {
  if (!isBinary) return fail('server sent a text frame');
  for (const msg of unpackr.unpackMultiple(data)) {
    const i = waiting.findIndex(([pred]) => pred(msg));
    if (i !== -1) waiting.splice(i, 1)[0][1](msg);
  }
});
ws.on('error', (err) => fail(err.message));
ws.on('close', (code, reason) => {
  if (!done) fail(`closed with ${code} ${reason}`);
});
const next = (pred) => new Promise((resolve) => waiting.push([pred, resolve]));
const send = (msg) => ws.send(packr.pack(msg));
let done = false;

ws.on('open', async () => {
  console.log(`connected to ${url} (subprotocol ${ws.protocol})`);

  send([1, 1, 'sensors/#']); // SUBSCRIBE with a wildcard
  const sub = await next((m) => m[1] === 1 && (m[0] === 16 || m[0] === 17));
  if (sub[0] !== 16) fail(`subscribe refused: ${JSON.stringify(sub)}`);
  console.log('subscribed to sensors/#');

  const delivery = next((m) => m[0] === 18);
  send([3, 2, 'sensors/42/temp', { v: 21.5 }]); // PUBLISH with ack
  const ack = await next((m) => m[1] === 2 && (m[0] === 16 || m[0] === 17));
  if (ack[0] !== 16) fail(`publish refused: ${JSON.stringify(ack)}`);
  console.log(`published, seq ${ack[2]}`);
  const [, topic, seq, payload] = await delivery;
  console.log(`received ${topic} seq ${seq} payload ${JSON.stringify(payload)}`);

  send([4, 3, 'echo', 'hi']); // REQUEST
  const reply = await next((m) => m[1] === 3 && (m[0] === 16 || m[0] === 17));
  if (reply[0] !== 16) fail(`request failed: code ${reply[2]} ${reply[3]}`);
  console.log(`echo replied ${JSON.stringify(reply[2])}`);

  done = true;
  ws.close(1000);
  console.log('OK');
});
