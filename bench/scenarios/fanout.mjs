// Fan-out: N subscribers on one topic; a publisher keeps W broadcasts in flight (next publish on
// each ack). Deliveries/s and delivery latency; every delivery is counted, losses are reported.
import { startLoad, startServer, measureServer, writeReport, mdTable, fmt, progress, barChart } from '../lib/harness.mjs';

const PER_PROCESS = 15_000; // file-descriptor limit is 20k per process

export async function fanout(opts) {
  const targets = opts.targets ?? ['ws', 'wiregate', 'uws', 'socketio'];
  const counts = opts.subscribers ?? (opts.quick ? [200] : [1000, 10000]);
  const size = 64;
  const inflight = 8;
  const duration = opts.duration ?? (opts.quick ? 2000 : 5000);
  const warmup = opts.quick ? 500 : 1000;
  const topic = 'bench/fanout';
  const rows = [];
  for (const n of counts) {
    for (const kind of targets) {
      progress(`fanout ${kind}: ${n} subscribers, ${inflight} broadcasts in flight, ${duration / 1000} s`);
      const server = await startServer(kind, { heartbeat: { interval: 0, timeout: 1000 } }, 1);
      const subsProcs = [];
      const pub = await startLoad(0);
      try {
        const procs = Math.ceil(n / PER_PROCESS);
        for (let i = 0; i < procs; i++) {
          const lg = await startLoad(0);
          subsProcs.push(lg);
          await lg.run('subscribe', { url: server.url, kind, conns: Math.min(PER_PROCESS, n - i * PER_PROCESS), topic });
        }
        let pubResult;
        const m = await measureServer(server, async () => {
          const running = pub.run('publish', { url: server.url, kind, inflight, size, warmup: 0, duration: warmup + duration, topic });
          await new Promise((r) => setTimeout(r, warmup));
          await Promise.all(subsProcs.map((p) => p.call({ cmd: 'record', on: true, reset: true, size })));
          pubResult = await running;
        });
        // all publishes are acked; give deliveries that are still in flight a moment to land
        let stats = [];
        for (let tries = 0; tries < 200; tries++) {
          stats = await Promise.all(subsProcs.map((p) => p.call({ cmd: 'subStats' })));
          if (Math.min(...stats.map((s) => s.minPerConn)) >= pubResult.published) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        const received = stats.reduce((a, s) => a + s.received, 0);
        const lat = stats[0].latency;
        // deliveries counted since recording began, including broadcasts published during the
        // measured window plus the tail; rate over the publisher's measured window
        const rate = received / (m.secs);
        // loss check: every subscriber received every acknowledged publish, exactly once
        const minPer = Math.min(...stats.map((s) => s.minPerConn));
        const maxPer = Math.max(...stats.map((s) => s.maxPerConn));
        const lost = pubResult.acked < pubResult.published || minPer !== pubResult.published || maxPer !== pubResult.published;
        rows.push({ kind, subscribers: n, published: pubResult.published, received, rate, publishesPerSec: pubResult.measured / pubResult.elapsed, p50: lat.p50, p99: lat.p99, serverCpu: m.serverCpu, lost, minPer, maxPer });
      } finally {
        await pub.stop();
        await Promise.all(subsProcs.map((p) => p.stop()));
        await server.stop();
      }
    }
  }
  for (const r of rows) {
    const base = rows.find((x) => x.kind === 'ws' && x.subscribers === r.subscribers);
    r.vsWs = base ? r.rate / base.rate : null;
  }
  // Compressed fan-out: the same wiregate (preset fast), 1 KiB compressible messages, subscribers
  // that do or do not negotiate permessage-deflate. wiregate compresses each broadcast once.
  const zRows = [];
  if (!opts.targets || opts.targets.includes('wiregate')) {
    const zn = counts[0];
    for (const deflate of [false, true]) {
      progress(`fanout wiregate, 1 KiB, ${zn} subscribers, permessage-deflate ${deflate ? 'negotiated' : 'off'}`);
      const server = await startServer('wiregate', { heartbeat: { interval: 0, timeout: 1000 }, compression: { preset: 'fast' } }, 1);
      const sub = await startLoad(0);
      const pub = await startLoad(0);
      try {
        await sub.run('subscribe', { url: server.url, kind: 'wiregate', conns: zn, topic, deflate });
        const m = await measureServer(server, async () => {
          const running = pub.run('publish', { url: server.url, kind: 'wiregate', inflight, size: 1024, warmup: 0, duration: warmup + duration, topic });
          await new Promise((r) => setTimeout(r, warmup));
          await sub.call({ cmd: 'record', on: true, reset: true, size: 1024 });
          return running;
        });
        const st = await sub.call({ cmd: 'subStats' });
        zRows.push({ deflate, subscribers: zn, deliveries: st.received, rate: st.received / m.secs, cpuUsPerDelivery: (m.serverCpuMs * 1000) / st.received });
      } finally {
        await pub.stop();
        await sub.stop();
        await server.stop();
      }
    }
  }
  const md = [
    `## Fan-out, ${size} B messages, ${inflight} broadcasts in flight`,
    '',
    mdTable(
      ['server', 'subscribers', 'deliveries/s', 'x raw ws', 'publishes/s', 'p50 ms', 'p99 ms', 'server CPU', 'loss'],
      rows.map((r) => [r.kind, fmt(r.subscribers), fmt(r.rate), fmt(r.vsWs, 2), fmt(r.publishesPerSec), fmt(r.p50, 2), fmt(r.p99, 2), `${fmt(r.serverCpu * 100)}%`, r.lost ? `LOST (per-subscriber ${r.minPer}..${r.maxPer} of ${r.published})` : 'none']),
    ),
    '',
    '### Compressed fan-out (wiregate, preset `fast`, 1 KiB compressible messages)',
    '',
    mdTable(
      ['permessage-deflate', 'subscribers', 'deliveries/s', 'server µs per delivery', 'x uncompressed'],
      zRows.map((r) => [r.deflate ? 'negotiated' : 'off', fmt(r.subscribers), fmt(r.rate), fmt(r.cpuUsPerDelivery, 2), fmt(r.cpuUsPerDelivery / zRows[0].cpuUsPerDelivery, 2)]),
    ),
    '',
    `Subscribers share core 0 with the publisher; the server runs alone on core 1. Command: \`${opts.command}\``,
  ].join('\n');
  const svg = barChart('fan-out deliveries/s', rows.map((r) => ({ label: `${r.kind} ${r.subscribers} subs`, value: r.rate, color: r.kind === 'wiregate' ? '#d8643b' : r.kind === 'ws' ? '#3b7dd8' : r.kind === 'uws' ? '#5aa55a' : '#999999' })), 'deliveries/s');
  writeReport('fanout', { scenario: 'fanout', machine: opts.machine, command: opts.command, quick: opts.quick, rows, compressed: zRows }, md, svg);
  return md;
}
