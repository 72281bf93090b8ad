// HTTP publish API under autocannon while WebSocket subscribers receive. Baseline: the raw ws
// server with a node:http POST route doing the same (parse JSON, broadcast, answer).
import { startLoad, startServer, measureServer, writeReport, mdTable, fmt, progress } from '../lib/harness.mjs';

export async function http(opts) {
  const subscribers = opts.subscribers?.[0] ?? (opts.quick ? 10 : 100);
  const connections = opts.quick ? 20 : 50;
  const duration = opts.duration ?? (opts.quick ? 2000 : 5000);
  const rows = [];
  for (const kind of opts.targets?.filter((t) => t !== 'uws') ?? ['ws', 'wiregate']) {
    progress(`http ${kind}: autocannon ${connections} connections, ${subscribers} ws subscribers`);
    const server = await startServer(kind, { heartbeat: { interval: 0, timeout: 1000 } }, 1);
    const subs = await startLoad(0);
    const cannon = await startLoad(0);
    try {
      await subs.run('subscribe', { url: server.url, kind, conns: subscribers, topic: 'bench/http' });
      await subs.call({ cmd: 'record', on: false, reset: true, size: 8 });
      const body = JSON.stringify({ topic: 'bench/http', payload: { v: 1, text: 'x'.repeat(40) } });
      const m = await measureServer(server, () => cannon.run('http', { url: `http://127.0.0.1:${server.port}/v1/publish`, body, connections, duration }));
      await new Promise((r) => setTimeout(r, 300));
      const st = await subs.call({ cmd: 'subStats' });
      const r = m.result;
      rows.push({ kind, rps: r.rps, requests: r.requests, p50: r.latencyP50, p99: r.latencyP99, errors: r.errors + r.non2xx, deliveries: st.received, expected: r.requests * subscribers, serverCpu: m.serverCpu });
    } finally {
      await subs.stop();
      await cannon.stop();
      await server.stop();
    }
  }
  for (const r of rows) {
    const base = rows.find((x) => x.kind === 'ws');
    r.vsWs = base ? r.rps / base.rps : null;
  }
  const md = [
    `## HTTP publish API (autocannon, ${connections} connections) with ${subscribers} WebSocket subscribers`,
    '',
    mdTable(
      ['server', 'req/s', 'x raw ws', 'p50 ms', 'p99 ms', 'errors', 'deliveries', 'expected', 'server CPU'],
      rows.map((r) => [r.kind, fmt(r.rps), fmt(r.vsWs, 2), fmt(r.p50), fmt(r.p99), fmt(r.errors), fmt(r.deliveries), fmt(r.expected), `${fmt(r.serverCpu * 100)}%`]),
    ),
    '',
    `Command: \`${opts.command}\``,
  ].join('\n');
  writeReport('http', { scenario: 'http', machine: opts.machine, command: opts.command, quick: opts.quick, rows }, md);
  return md;
}
