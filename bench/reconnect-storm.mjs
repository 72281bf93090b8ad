#!/usr/bin/env node
// Reconnect storm: N client-SDK clients (wiregate/client, default options: backoff 500 ms .. 20 s,
// full jitter after the cap) connected to a gateway process, each subscribed to its own topic;
// the gateway is restarted on the same port (SIGTERM: drain with 1001, 503 + Retry-After: 1 to
// upgrades while draining; --crash: SIGKILL, the clients see 1006) and a new one started as soon
// as the old one has exited. Prints when the clients' reconnection attempts happen (a histogram
// per bucket, counted from the moment the signal is sent) and the time until every client is
// connected and resubscribed again.
//
//   npm run build && node bench/reconnect-storm.mjs [--clients 1000] [--bucket 500] [--crash]
//
// One process holds every client (below 20k file descriptors, loopback); the gateway runs in its
// own process (`node bin/wiregate.js start`), so the two do not share an event loop.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : Number(process.argv[i + 1]);
};
const CLIENTS = arg('clients', 1000);
const BUCKET = arg('bucket', 500);
const CRASH = process.argv.includes('--crash');
const SETTLE = 6000;
if (!existsSync(`${root}/dist/client/index.js`)) {
  console.error('reconnect-storm: dist/client/index.js is missing: run `npm run build` first');
  process.exit(2);
}
const { WiregateClient } = await import(`${root}/dist/client/index.js`);

const freePort = () =>
  new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });

/** Starts `wiregate start` on `port`; resolves once it logs that it listens. */
function startGateway(port) {
  const child = spawn(process.execPath, [`${root}/bin/wiregate.js`, 'start', '--port', String(port), '--host', '127.0.0.1', '--history.topics=storm/#=100', '--log.level=info'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  const ready = new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (l) => {
      if (l.includes('"wiregate listening"')) resolve();
    });
    exited.then(({ code, signal }) => reject(new Error(`gateway exited (${code ?? signal}) before listening`)));
  });
  return { child, exited, ready };
}

const port = await freePort();
const url = `ws://127.0.0.1:${port}/ws`;
let gw = startGateway(port);
await gw.ready;

// every client, connected and subscribed; attempts are recorded once the restart begins
let t0 = 0;
const attempts = []; // [ms since t0 when the attempt starts, client index]
const back = new Array(CLIENTS).fill(-1); // ms since t0 when the client had resubscribed
const clients = [];
for (let i = 0; i < CLIENTS; i++) {
  const c = new WiregateClient(url);
  c.on('connecting', (e) => {
    if (t0 !== 0) attempts.push([Date.now() + e.delay - t0, i]);
  });
  c.on('resubscribed', () => {
    if (t0 !== 0 && back[i] === -1) back[i] = Date.now() - t0;
  });
  c.on('error', () => {});
  clients.push(c);
}
for (let i = 0; i < CLIENTS; i += 100) {
  await Promise.all(clients.slice(i, i + 100).map(async (c, k) => {
    await c.connect();
    await c.subscribe(`storm/${i + k}`, () => {});
  }));
}
// connections older than 5 s count as stable: their backoff starts again from the first window,
// as it does for clients that were connected for a while when a gateway is restarted
console.log(`${CLIENTS} clients connected and subscribed to ${url}; restarting the gateway in ${SETTLE} ms (${CRASH ? 'SIGKILL' : 'SIGTERM, drain'})`);
await new Promise((r) => setTimeout(r, SETTLE));

t0 = Date.now();
gw.child.kill(CRASH ? 'SIGKILL' : 'SIGTERM');
await gw.exited;
const down = Date.now() - t0;
gw = startGateway(port);
await gw.ready;
const up = Date.now() - t0;
const deadline = Date.now() + 120_000;
while (back.some((b) => b === -1) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
const all = Math.max(...back);
const missing = back.filter((b) => b === -1).length;

// the histogram: attempts per bucket from the signal on, until the last one
const last = Math.max(...attempts.map(([at]) => at), 0);
const buckets = new Array(Math.floor(Math.max(last, all, up) / BUCKET) + 1).fill(0);
for (const [at] of attempts) buckets[Math.floor(at / BUCKET)]++;
const peak = Math.max(...buckets);
const perClient = new Map();
for (const [, i] of attempts) perClient.set(i, (perClient.get(i) ?? 0) + 1);
const counts = [...perClient.values()].sort((a, b) => a - b);
const sorted = back.filter((b) => b !== -1).sort((a, b) => a - b);
const pct = (p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

console.log(`old gateway gone after ${down} ms, new one listening after ${up} ms`);
console.log(`\nreconnection attempts per ${BUCKET} ms (from the signal; an attempt is counted when it starts):`);
for (const [k, n] of buckets.entries()) {
  const from = k * BUCKET;
  const marks = [
    [down, 'old gateway exited'],
    [up, 'new gateway listening'],
    [missing === 0 ? all : -1, 'all resubscribed'],
  ].filter(([at]) => at >= from && at < from + BUCKET);
  const note = marks.map(([at, what]) => `  <- ${what} (${at} ms)`).join('');
  console.log(`${String(from).padStart(6)}-${String(from + BUCKET).padEnd(6)} ms ${String(n).padStart(5)} ${'#'.repeat(Math.round((n / peak) * 50)).padEnd(50)}${note}`);
}
console.log(`\n${attempts.length} attempts by ${perClient.size} clients (per client: min ${counts[0]}, median ${counts[counts.length >> 1]}, max ${counts.at(-1)})`);
console.log(`resubscribed again: median ${pct(50)} ms, p90 ${pct(90)} ms, p99 ${pct(99)} ms, all ${missing === 0 ? `${all} ms` : `not within 120 s (${missing} missing)`} after the signal`);

await Promise.all(clients.map((c) => c.close()));
gw.child.kill('SIGTERM');
await gw.exited;
process.exit(missing === 0 ? 0 : 1);
