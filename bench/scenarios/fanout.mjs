// Fan-out: N subscribers on one topic; a publisher keeps W broadcasts in flight (next publish on
// each ack). Deliveries/s and delivery latency; every delivery is counted, losses are reported.
// Then wiregate alone: compressed fan-out (permessage-deflate off vs negotiated), and history on vs
// off (history.topics covering the bench topic, so every publish is also kept for recovery).
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
  const spec = { inflight, size, duration, warmup, topic };
  for (const n of counts) {
    for (const kind of targets) {
      progress(`fanout ${kind}: ${n} subscribers, ${inflight} broadcasts in flight, ${duration / 1000} s`);
      rows.push(await fanoutRun(kind, n, { heartbeat: { interval: 0, timeout: 1000 } }, spec));
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
  // History on vs off: the same wiregate at 1,000 subscribers (quick too; --subscribers: its first
  // count), once without history and once with history.topics covering the bench topic (every
  // publish is also appended to the topic's history), alternated `repeat` times (default 3, quick 1)
  // so drift on a shared VM hits both.
  const hRows = [];
  let history = null;
  if (!opts.targets || opts.targets.includes('wiregate')) {
    const hn = opts.subscribers ? counts[0] : 1000;
    const pairs = opts.repeat ?? (opts.quick ? 1 : 3);
    const settings = [
      { history: false, server: { heartbeat: { interval: 0, timeout: 1000 } } },
      { history: true, server: { heartbeat: { interval: 0, timeout: 1000 }, history: { topics: [HISTORY_TOPICS] } } },
    ];
    for (let i = 0; i < pairs; i++) {
      for (const st of settings) {
        progress(`fanout wiregate, history ${st.history ? `on (${HISTORY_TOPICS})` : 'off'}: ${hn} subscribers, run ${i + 1}/${pairs}`);
        const r = await fanoutRun('wiregate', hn, st.server, spec);
        // the configuration took effect (or did not): with history every SUBSCRIBE answers {seq, epoch}
        const expected = st.history ? hn : 0;
        if (r.positioned !== expected) throw new Error(`fanout history ${st.history ? 'on' : 'off'}: ${r.positioned} of ${hn} SUBSCRIBE results carried a position, expected ${expected}`);
        hRows.push({ ...r, history: st.history, run: i + 1 });
      }
    }
    const summary = (on) => {
      const runs = hRows.filter((r) => r.history === on);
      return {
        history: on,
        subscribers: hn,
        runs: runs.map((r) => r.rate),
        rate: median(runs.map((r) => r.rate)),
        cpuUsPerDelivery: median(runs.map((r) => r.cpuUsPerDelivery)),
        p99: median(runs.map((r) => r.p99)),
        serverCpu: median(runs.map((r) => r.serverCpu)),
        lost: runs.some((r) => r.lost),
      };
    };
    const off = summary(false);
    const on = summary(true);
    history = { topics: HISTORY_TOPICS, subscribers: hn, pairs, off, on, ratio: on.rate / off.rate, cpuRatio: on.cpuUsPerDelivery / off.cpuUsPerDelivery, target: 0.9 };
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
    ...(history
      ? [
          '',
          `### History on vs off (wiregate, \`history.topics: ${history.topics}\`, ${fmt(history.subscribers)} subscribers, ${history.pairs > 1 ? `median of ${history.pairs} alternated runs each` : 'one run each'})`,
          '',
          mdTable(
            ['history', 'deliveries/s (median)', 'runs', 'x history off', 'server µs per delivery', 'p99 ms', 'server CPU', 'loss'],
            [history.off, history.on].map((h) => [h.history ? 'on' : 'off', fmt(h.rate), h.runs.map((v) => `${fmt(v / 1000)}k`).join(' '), fmt(h.rate / history.off.rate, 2), fmt(h.cpuUsPerDelivery, 2), fmt(h.p99, 2), `${fmt(h.serverCpu * 100)}%`, h.lost ? 'LOST' : 'none']),
          ),
          '',
          `History on = ${fmt(history.ratio, 2)}x history off in deliveries/s (target >= ${fmt(history.target, 2)}x: ${history.ratio >= history.target ? 'met' : 'missed'}); server CPU per delivery ${fmt(history.cpuRatio, 2)}x.`,
        ]
      : []),
    '',
    `Subscribers share core 0 with the publisher; the server runs alone on core 1. Command: \`${opts.command}\``,
  ].join('\n');
  const svg = barChart('fan-out deliveries/s', rows.map((r) => ({ label: `${r.kind} ${r.subscribers} subs`, value: r.rate, color: r.kind === 'wiregate' ? '#d8643b' : r.kind === 'ws' ? '#3b7dd8' : r.kind === 'uws' ? '#5aa55a' : '#999999' })), 'deliveries/s');
  writeReport('fanout', { scenario: 'fanout', machine: opts.machine, command: opts.command, quick: opts.quick, rows, compressed: zRows, history: history && { ...history, runs: hRows } }, md, svg);
  return md;
}

/** Coverage of the history comparison: the bench topic, the last 1,000 messages. */
const HISTORY_TOPICS = 'bench/#=1000';

/**
 * One fan-out measurement: `n` subscribers of `kind` on spec.topic (in processes of at most
 * PER_PROCESS connections), a publisher with spec.inflight broadcasts in flight; the server started
 * with `serverOpts`. Every subscriber must receive every acknowledged publish exactly once.
 */
async function fanoutRun(kind, n, serverOpts, { inflight, size, duration, warmup, topic }) {
  const server = await startServer(kind, serverOpts, 1);
  const subsProcs = [];
  const pub = await startLoad(0);
  try {
    const procs = Math.ceil(n / PER_PROCESS);
    let positioned = 0;
    for (let i = 0; i < procs; i++) {
      const lg = await startLoad(0);
      subsProcs.push(lg);
      positioned += (await lg.run('subscribe', { url: server.url, kind, conns: Math.min(PER_PROCESS, n - i * PER_PROCESS), topic })).positioned ?? 0;
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
    const rate = received / m.secs;
    // loss check: every subscriber received every acknowledged publish, exactly once
    const minPer = Math.min(...stats.map((s) => s.minPerConn));
    const maxPer = Math.max(...stats.map((s) => s.maxPerConn));
    const lost = pubResult.acked < pubResult.published || minPer !== pubResult.published || maxPer !== pubResult.published;
    return { kind, subscribers: n, published: pubResult.published, received, rate, publishesPerSec: pubResult.measured / pubResult.elapsed, p50: lat.p50, p99: lat.p99, serverCpu: m.serverCpu, cpuUsPerDelivery: (m.serverCpuMs * 1000) / received, lost, minPer, maxPer, positioned };
  } finally {
    await pub.stop();
    await Promise.all(subsProcs.map((p) => p.stop()));
    await server.stop();
  }
}

function median(values) {
  const a = [...values].sort((x, y) => x - y);
  if (a.length === 0) return null;
  const m = a.length >> 1;
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
}
