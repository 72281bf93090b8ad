#!/usr/bin/env node
// A complete wiregate client written from docs/protocol.md alone, using only `ws` and `msgpackr`.
// Usage: node examples/raw-client.mjs [port | ws://url]   (default ws://127.0.0.1:8080/ws)
//
// Run it against `npm start` (the plain `wiregate start`): it subscribes, publishes, receives its
// own delivery, then sends a REQUEST for the method `echo`. That gateway registers no methods, so
// the documented answer is ERROR 106 UNKNOWN_METHOD, which the client prints and explains. Methods
// exist only where an application embeds the gateway and registers them with
// `gw.handle('echo', (ctx, payload) => payload)` (README, "Embed it"); against such a gateway the
// same REQUEST gets the RESULT `[16, 3, "hi"]`.
import WebSocket from 'ws';
import { Packr, Unpackr } from 'msgpackr';

const arg = process.argv[2] ?? process.env.WIREGATE_URL ?? '8080';
const url = /^\d+$/.test(arg) ? `ws://127.0.0.1:${arg}/ws` : arg;
const UNKNOWN_METHOD = 106; // error code, docs/protocol.md section 5
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
  if (reply[0] === 16) {
    console.log(`echo replied ${JSON.stringify(reply[2])}`);
  } else if (reply[2] === UNKNOWN_METHOD) {
    // the answer of a gateway with no method `echo`, e.g. the plain `wiregate start`
    console.log(`request answered with ERROR ${reply[2]} UNKNOWN_METHOD: ${reply[3]}`);
    console.log("  (this gateway registers no method 'echo'; an application that embeds wiregate adds it with");
    console.log("   gw.handle('echo', (ctx, payload) => payload), see README \"Embed it\", and then gets [16, 3, \"hi\"])");
  } else {
    fail(`request failed: code ${reply[2]} ${reply[3]}`);
  }

  done = true;
  ws.close(1000);
  console.log('OK');
});
