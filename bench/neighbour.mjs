#!/usr/bin/env node
// Noisy neighbour: how much one client publishing flat out slows everybody else. A gateway (its
// own process, pinned to core 1 when taskset works), one flooding client (its own process) that
// publishes 64 B messages, 100 per frame, as fast as its socket drains, and a healthy client (this
// process) that sends a PING every 5 ms and records the round trip. Run once on the defaults
// (per-connection rate limits on) and once with the rate limits off, same run.
// Usage: node bench/neighbour.mjs [--seconds 5]      (loopback only; stops by itself)
import { fork, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { Packr, Unpackr } from 'msgpackr';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, child: { type: 'string' }, url: { type: 'string' }, limits: { type: 'string' } } });
const self = fileURLToPath(import.meta.url);
const packr = new Packr({ useRecords: false });

if (values.child === 'server') {
  const { createGateway } = await import('../dist/index.js');
  const limits = values.limits === 'off' ? { messageRate: 0, byteRate: 0 } : {};
  const gw = createGateway({ host: '127.0.0.1', port: 0, log: { level: 'warn' }, limits });
  const { port } = await gw.listen();
  process.send({ port });
  process.on('message', async () => {
    await gw.close({ drainTimeout: 100 });
    process.exit(0);
  });
} else if (values.child === 'flooder') {
  const ws = new WebSocket(values.url, 'wiregate.v1');
  const frame = Buffer.concat(Array.from({ length: 100 }, (_, i) => packr.pack([3, 0, 'flood/x', Buffer.alloc(48, i)])));
  let sent = 0;
  ws.on('open', () => {
    const pump = () => {
      while (ws.readyState === 1 && ws.bufferedAmount < 1 << 20) {
        ws.send(frame);
        sent += 100;
      }
      if (ws.readyState === 1) setImmediate(pump);
    };
    pump();
  });
  ws.on('error', () => {});
  process.on('message', () => {
    process.send({ sent });
    ws.terminate();
    process.exit(0);
  });
} else {
  const seconds = Number(values.seconds);
  const rows = [];
  for (const limits of ['defaults', 'off']) {
    const server = fork(self, ['--child', 'server', '--limits', limits]);
    const { port } = await new Promise((r) => server.once('message', r));
    try {
      execFileSync('taskset', ['-pc', '1', String(server.pid)], { stdio: 'ignore' });
    } catch {
      /* not pinned */
    }
    const url = `ws://127.0.0.1:${port}/ws`;
    const flooder = fork(self, ['--child', 'flooder', '--url', url]);
    const healthy = new WebSocket(url, 'wiregate.v1');
    await new Promise((r) => healthy.once('open', r));
    const unpackr = new Unpackr({ useRecords: false });
    const sentAt = new Map();
    const rtts = [];
    healthy.on('message', (d) => {
      for (const m of unpackr.unpackMultiple(d)) {
        if (m[0] === 20 && sentAt.has(m[1])) rtts.push(performance.now() - sentAt.get(m[1]));
      }
    });
    let id = 0;
    await new Promise((r) => setTimeout(r, 500)); // the flood is under way
    const end = performance.now() + seconds * 1000;
    await new Promise((resolve) => {
      const t = setInterval(() => {
        if (performance.now() > end) {
          clearInterval(t);
          resolve();
          return;
        }
        sentAt.set(++id, performance.now());
        healthy.send(packr.pack([5, id]));
      }, 5);
    });
    const lost = id - rtts.length;
    flooder.send('stop');
    const { sent } = await new Promise((r) => flooder.once('message', r));
    healthy.terminate();
    server.send('stop');
    await new Promise((r) => server.once('exit', r));
    rtts.sort((a, b) => a - b);
    const q = (p) => (rtts.length ? rtts[Math.min(rtts.length - 1, Math.floor(p * rtts.length))] : NaN);
    rows.push({ limits, pings: id, answered: rtts.length, unanswered: lost, p50: q(0.5), p99: q(0.99), max: rtts.at(-1), flooderSent: sent });
  }
  console.log(`Noisy neighbour: one client publishing flat out, a healthy client pinging every 5 ms for ${seconds} s`);
  console.log('| gateway limits | pings answered | ping p50 (ms) | ping p99 (ms) | max (ms) | publishes the flooder wrote |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.limits === 'defaults' ? 'defaults (1000 msgs/s, 1 MiB/s per connection)' : 'rate limits off'} | ${r.answered}/${r.pings} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.max.toFixed(1)} | ${r.flooderSent} |`);
  process.exit(0);
}
