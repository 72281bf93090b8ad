// Echo / request-reply throughput and latency: C connections x W messages in flight.
// wiregate answers REQUEST [4,id,'echo',bin] with RESULT [16,id,bin] (full protocol: msgpack
// decode, validation, dispatch, encode); the baselines send each binary message back.
import { startLoad, startServer, measureServer, writeReport, mdTable, fmt, progress, barChart } from '../lib/harness.mjs';

export async function throughput(opts) {
  const targets = opts.targets ?? ['ws', 'wiregate', 'uws', 'socketio'];
  const sizes = opts.quick ? [64] : [64, 1024, 16384];
  const conns = opts.conns ?? (opts.quick ? 20 : 100);
  const inflight = 8;
  const duration = opts.duration ?? (opts.quick ? 2000 : 5000);
  const warmup = opts.quick ? 500 : 1500;
  const rows = [];
  for (const size of sizes) {
    for (const kind of targets) {
      progress(`throughput ${kind} ${size} B, ${conns} conns x ${inflight} in flight, ${duration / 1000} s`);
      const server = await startServer(kind, { heartbeat: { interval: 0, timeout: 1000 } }, 1);
      const load = await startLoad(0);
      try {
        const m = await measureServer(server, () => load.run('echo', { url: server.url, kind, conns, inflight, size, warmup, duration }));
        const r = m.result;
        rows.push({ kind, size, conns, inflight, rate: r.rate, mbps: r.mbps, p50: r.latency.p50, p99: r.latency.p99, p999: r.latency.p999, serverCpu: m.serverCpu, loadCpu: r.loadCpu, loadSaturated: r.loadCpu > 0.9 });
      } finally {
        await load.stop();
        await server.stop();
      }
    }
  }
  for (const r of rows) {
    const base = rows.find((x) => x.kind === 'ws' && x.size === r.size);
    r.vsWs = base ? r.rate / base.rate : null;
  }
  const md = [
    `## Throughput (echo / request-reply), ${conns} connections x ${inflight} in flight`,
    '',
    mdTable(
      ['server', 'payload', 'msgs/s', 'x raw ws', 'MB/s', 'p50 ms', 'p99 ms', 'p999 ms', 'server CPU', 'load CPU'],
      rows.map((r) => [r.kind, `${r.size} B`, fmt(r.rate), fmt(r.vsWs, 2), fmt(r.mbps, 1), fmt(r.p50, 2), fmt(r.p99, 2), fmt(r.p999, 2), `${fmt(r.serverCpu * 100)}%`, `${fmt(r.loadCpu * 100)}%${r.loadSaturated ? ' (saturated)' : ''}`]),
    ),
    '',
    `Machine: ${opts.machine.cpu}, ${opts.machine.cores} cores, Node ${opts.machine.node}, ws ${opts.machine.ws}, bufferutil ${opts.machine.nativeHelpers.bufferutil ? 'loaded' : 'missing'}, UTF-8: ${opts.machine.nativeHelpers.utf8}. Command: \`${opts.command}\``,
  ].join('\n');
  const svg = barChart(`echo msgs/s, ${conns} conns x ${inflight} in flight`, rows.map((r) => ({ label: `${r.kind} ${r.size} B`, value: r.rate, color: r.kind === 'wiregate' ? '#d8643b' : r.kind === 'ws' ? '#3b7dd8' : r.kind === 'uws' ? '#5aa55a' : '#999999' })), 'msgs/s');
  writeReport('throughput', { scenario: 'throughput', machine: opts.machine, command: opts.command, quick: opts.quick, rows }, md, svg);
  return md;
}
