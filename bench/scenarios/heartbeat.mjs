// Heartbeat overhead: N idle connections, server CPU and memory with heartbeats at several
// intervals versus off, same N, same run. The load generator answers every ping (like a
// browser). wiregate: one shared timer, pings only connections silent for an interval; raw ws:
// the README's one-sweep-timer pattern.
import { startLoad, startServer, measureServer, writeReport, mdTable, fmt, progress } from '../lib/harness.mjs';

const PER_PROCESS = 15_000;

export async function heartbeat(opts) {
  const n = opts.conns ?? (opts.quick ? 1000 : 10_000);
  const intervals = opts.quick ? [250] : [1000, 5000];
  const window = opts.duration ?? (opts.quick ? 2000 : 15_000);
  const rows = [];
  for (const kind of opts.targets?.filter((t) => t !== 'uws') ?? ['ws', 'wiregate']) {
    for (const interval of [0, ...intervals]) {
      progress(`heartbeat ${kind}: ${n} idle connections, interval ${interval || 'off'}, ${window / 1000} s`);
      const server = await startServer(kind, { heartbeat: { interval, timeout: Math.max(interval, 1000) } }, 1);
      const loads = [];
      try {
        for (let i = 0; i < Math.ceil(n / PER_PROCESS); i++) {
          const lg = await startLoad(0);
          loads.push(lg);
          await lg.run('openIdle', { url: server.url, kind, conns: Math.min(PER_PROCESS, n - i * PER_PROCESS) });
        }
        await server.gc();
        const m = await measureServer(server, () => new Promise((r) => setTimeout(r, window)));
        await server.gc();
        const st = await server.stats();
        rows.push({ kind, n, interval, window, cpuMs: m.serverCpuMs, cpuShare: m.serverCpu, rss: st.rss, heap: st.heap });
      } finally {
        await Promise.all(loads.map((l) => l.stop()));
        await server.stop();
      }
    }
  }
  for (const r of rows) {
    const off = rows.find((x) => x.kind === r.kind && x.interval === 0);
    if (r.interval > 0 && off) {
      const pings = (r.n * r.window) / r.interval;
      r.extraCpuMs = r.cpuMs - off.cpuMs;
      r.usPerPing = (r.extraCpuMs * 1000) / pings;
      // projected share of one core for 10k connections pinged every 30 s
      r.coreShareAt30sPer10k = (r.usPerPing * 10_000) / 30 / 1e6;
      r.rssPerConn = (r.rss - off.rss) / r.n;
    }
    r.rssPerConnTotal = r.rss / r.n;
  }
  const md = [
    `## Heartbeat overhead, ${fmt(n)} idle connections, ${window / 1000} s windows`,
    '',
    mdTable(
      ['server', 'interval', 'server CPU (ms)', 'CPU beyond "off"', 'µs per ping/pong', 'projected: % of a core per 10k conns at 30 s', 'RSS per connection'],
      rows.map((r) => [r.kind, r.interval ? `${r.interval} ms` : 'off', fmt(r.cpuMs), r.extraCpuMs === undefined ? '-' : `${fmt(r.extraCpuMs)} ms`, fmt(r.usPerPing, 1), r.coreShareAt30sPer10k === undefined ? '-' : `${fmt(r.coreShareAt30sPer10k * 100, 3)}%`, `${fmt(r.rssPerConnTotal / 1024, 2)} KiB`]),
    ),
    '',
    `Command: \`${opts.command}\``,
  ].join('\n');
  writeReport('heartbeat', { scenario: 'heartbeat', machine: opts.machine, command: opts.command, quick: opts.quick, rows }, md);
  return md;
}
