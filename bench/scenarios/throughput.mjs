// Echo / request-reply throughput and latency: C connections x W messages in flight.
// wiregate answers REQUEST [4,id,'echo',bin] with RESULT [16,id,bin] (full protocol: msgpack
// decode, validation, dispatch, encode); the baselines send each binary message back.
import { startLoad, startServer, measureServer, writeReport, mdTable, fmt, progress, barChart } from '../lib/harness.mjs';

export async function throughput(opts) {
  const targets = opts.targets ?? ['ws', 'wiregate', 'uws', 'socketio'];
  const sizes = opts.sizes ?? (opts.quick ? [64] : [64, 1024, 16384]);
  const conns = opts.conns ?? (opts.quick ? 20 : 100);
  const inflight = 8;
  const duration = opts.duration ?? (opts.quick ? 2000 : 5000);
  const warmup = opts.quick ? 500 : 1500;
  const run = async (kind, size, c) => {
    progress(`throughput ${kind} ${size} B, ${c} conns x ${inflight} in flight, ${duration / 1000} s`);
    const server = await startServer(kind, { heartbeat: { interval: 0, timeout: 1000 } }, 1);
    const load = await startLoad(0);
    try {
      const m = await measureServer(server, () => load.run('echo', { url: server.url, kind, conns: c, inflight, size, warmup, duration }));
      const r = m.result;
      return { kind, size, conns: c, inflight, rate: r.rate, mbps: r.mbps, p50: r.latency.p50, p99: r.latency.p99, p999: r.latency.p999, serverCpu: m.serverCpu, loadCpu: r.loadCpu, loadSaturated: r.loadCpu > 0.9 };
    } finally {
      await load.stop();
      await server.stop();
    }
  };
  // Repeats interleave the targets (ws, wiregate, uws, ws, ...) and keep each target's median run,
  // so a noisy moment on a shared machine hits every target alike.
  const repeat = opts.repeat ?? (opts.quick ? 1 : 3);
  const median = async (size, c, kinds) => {
    const runs = new Map(kinds.map((k) => [k, []]));
    for (let i = 0; i < repeat; i++) for (const kind of kinds) runs.get(kind).push(await run(kind, size, c));
    return kinds.map((k) => {
      const sorted = runs.get(k).sort((a, b) => a.rate - b.rate);
      return { ...sorted[Math.floor(sorted.length / 2)], runs: sorted.map((r) => Math.round(r.rate)) };
    });
  };
  const rows = [];
  for (const size of sizes) rows.push(...(await median(size, conns, targets)));
  // throughput vs connections (64 B): the full run adds 10 and 1000 connections to the 100 above
  const sweep = rows.filter((r) => r.size === 64);
  if (!opts.quick && !opts.conns) {
    for (const c of [10, 1000]) sweep.push(...(await median(64, c, targets.filter((t) => t !== 'socketio'))));
  }
  // Latency under an open loop (a fixed send rate, not a window). Each server at half its own
  // maximum (the target's point; for wiregate also a quarter and three eighths), and every server
  // at the same offered rates (half of ws's maximum, a quarter of wiregate's) so their latency
  // can be compared at equal load. An open loop batches less per read than the closed loop that
  // found the maximum, so per-message server CPU is reported too. A rate above 60% of a server's
  // own maximum is skipped for it (it would only measure queueing).
  const maxRow = (kind) => rows.find((r) => r.kind === kind && r.size === 64 && r.conns === conns);
  const maxOf = (kind) => maxRow(kind)?.rate;
  const pacedKinds = targets.filter((t) => t === 'ws' || t === 'wiregate' || t === 'uws').filter((k) => maxOf(k));
  const common = [maxOf('ws') && maxOf('ws') * 0.5, !opts.quick && maxOf('wiregate') && maxOf('wiregate') * 0.25].filter(Boolean).map(Math.round);
  const plan = [];
  for (const kind of pacedKinds) {
    // uWebSockets.js at half its maximum would need more than the load generator's one core
    const own = kind === 'uws' ? [] : opts.quick || kind === 'ws' ? [0.5] : [0.25, 0.375, 0.5];
    const rates = new Map(own.map((f) => [Math.round(maxOf(kind) * f), f]));
    for (const r of common) if (![...rates.keys()].some((x) => Math.abs(x - r) / r < 0.05)) rates.set(r, r / maxOf(kind));
    for (const [rate, fraction] of [...rates].sort((a, b) => a[0] - b[0])) if (fraction <= 0.6) plan.push({ kind, rate, fraction });
  }
  const paced = [];
  for (const { kind, rate, fraction } of plan) {
    progress(`latency ${kind}: ${fmt(rate)} msgs/s fixed rate (${fmt(fraction, 3)} of its maximum), ${conns} conns`);
    const server = await startServer(kind, { heartbeat: { interval: 0, timeout: 1000 } }, 1);
    const load = await startLoad(0);
    try {
      const m = await measureServer(server, () => load.run('paced', { url: server.url, kind, conns, rate, size: 64, warmup, duration }));
      const achieved = m.result.achieved;
      paced.push({ kind, fraction, rate, achieved, ...m.result.latency, serverCpu: m.serverCpu, cpuUsPerMsg: achieved ? (m.serverCpu * 1e6) / achieved : null, loadCpu: m.result.loadCpu });
    } finally {
      await load.stop();
      await server.stop();
    }
  }
  paced.sort((a, b) => a.rate - b.rate || pacedKinds.indexOf(a.kind) - pacedKinds.indexOf(b.kind));
  const closedUs = Object.fromEntries(pacedKinds.map((k) => [k, (maxRow(k).serverCpu * 1e6) / maxRow(k).rate]));
  for (const r of [...rows, ...sweep]) {
    const base = [...rows, ...sweep].find((x) => x.kind === 'ws' && x.size === r.size && x.conns === r.conns);
    r.vsWs = base ? r.rate / base.rate : null;
  }
  sweep.sort((a, b) => a.conns - b.conns || targets.indexOf(a.kind) - targets.indexOf(b.kind));
  const md = [
    `## Throughput (echo / request-reply), ${conns} connections x ${inflight} in flight`,
    '',
    mdTable(
      ['server', 'payload', 'msgs/s (median)', 'runs', 'x raw ws', 'MB/s', 'p50 ms', 'p99 ms', 'p999 ms', 'server CPU', 'load CPU'],
      rows.map((r) => [r.kind, `${r.size} B`, fmt(r.rate), r.runs.map((x) => fmt(x / 1000) + 'k').join(' '), fmt(r.vsWs, 2), fmt(r.mbps, 1), fmt(r.p50, 2), fmt(r.p99, 2), fmt(r.p999, 2), `${fmt(r.serverCpu * 100)}%`, `${fmt(r.loadCpu * 100)}%${r.loadSaturated ? ' (saturated)' : ''}`]),
    ),
    '',
    '',
    `### Latency at fixed send rates (64 B, open loop, ${conns} connections)`,
    '',
    mdTable(
      ['server', 'offered msgs/s', 'share of its max', 'achieved msgs/s', 'p50 ms', 'p99 ms', 'p999 ms', 'server CPU', 'server µs/msg (closed loop)', 'load CPU'],
      paced.map((r) => [r.kind, fmt(r.rate), `${fmt(r.fraction * 100, 1)}%`, fmt(r.achieved), fmt(r.p50, 2), fmt(r.p99, 2), fmt(r.p999, 2), `${fmt(r.serverCpu * 100)}%`, `${fmt(r.cpuUsPerMsg, 1)} (${fmt(closedUs[r.kind], 1)})`, `${fmt(r.loadCpu * 100)}%${r.loadCpu > 0.9 ? ' (saturated)' : ''}`]),
    ),
    '',
    'Server µs/msg is server CPU per echoed message at that rate; in brackets, the same at the closed-loop maximum above. At a fixed rate each connection has about one message per read, so every message pays its own read and write system calls: that, not the protocol work, is most of the cost at these rates.',
    '',
    `### Throughput vs connections (64 B, ${inflight} in flight per connection)`,
    '',
    mdTable(
      ['server', 'connections', 'msgs/s', 'x raw ws', 'p99 ms', 'server CPU', 'load CPU'],
      sweep.map((r) => [r.kind, fmt(r.conns), fmt(r.rate), fmt(r.vsWs, 2), fmt(r.p99, 2), `${fmt(r.serverCpu * 100)}%`, `${fmt(r.loadCpu * 100)}%${r.loadSaturated ? ' (saturated)' : ''}`]),
    ),
    '',
    `Machine: ${opts.machine.cpu}, ${opts.machine.cores} cores, Node ${opts.machine.node}, ws ${opts.machine.ws}, bufferutil ${opts.machine.nativeHelpers.bufferutil ? 'loaded' : 'missing'}, UTF-8: ${opts.machine.nativeHelpers.utf8}. Command: \`${opts.command}\``,
  ].join('\n');
  const svg = barChart(`echo msgs/s, ${conns} conns x ${inflight} in flight`, rows.map((r) => ({ label: `${r.kind} ${r.size} B`, value: r.rate, color: r.kind === 'wiregate' ? '#d8643b' : r.kind === 'ws' ? '#3b7dd8' : r.kind === 'uws' ? '#5aa55a' : '#999999' })), 'msgs/s');
  const colors = { wiregate: '#d8643b', ws: '#3b7dd8', uws: '#5aa55a', socketio: '#999999' };
  const svgConns = barChart('echo msgs/s vs connections (64 B)', sweep.map((r) => ({ label: `${r.kind} ${r.conns} conns`, value: r.rate, color: colors[r.kind] })), 'msgs/s');
  writeReport('throughput', { scenario: 'throughput', machine: opts.machine, command: opts.command, quick: opts.quick, rows, sweep, paced }, md, svg);
  writeReport('throughput-conns', { scenario: 'throughput-conns', machine: opts.machine, command: opts.command, quick: opts.quick, rows: sweep }, null, svgConns);
  return md;
}
