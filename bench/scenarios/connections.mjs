// Connection cost: accept rate and server RSS per idle connection (after GC, measured as the
// difference from the same server with no connections), compression off and on, and wiregate
// with JWT authentication on (token verified at every upgrade).
import { SignJWT } from 'jose';
import { startLoad, startServer, writeReport, mdTable, fmt, progress } from '../lib/harness.mjs';

const PER_PROCESS = 15_000;
const SECRET = 'bench-secret-bench-secret-bench-secret!';

export async function connections(opts) {
  const n = opts.conns ?? (opts.quick ? 1000 : 10_000);
  const variants = [
    { kind: 'ws', deflate: false },
    { kind: 'wiregate', deflate: false },
    { kind: 'uws', deflate: false },
    { kind: 'ws', deflate: true },
    { kind: 'wiregate', deflate: true },
    { kind: 'wiregate', deflate: false, auth: true },
  ].filter((v) => !opts.targets || opts.targets.includes(v.kind));
  const token = await new SignJWT({ wg: { sub: ['#'], pub: ['#'] } }).setProtectedHeader({ alg: 'HS256' }).setSubject('bench').setExpirationTime('1h').sign(new TextEncoder().encode(SECRET));
  const rows = [];
  for (const v of variants) {
    const label = `${v.kind}${v.deflate ? ' +deflate' : ''}${v.auth ? ' +JWT' : ''}`;
    progress(`connections ${label}: ${n} idle connections`);
    const serverOpts = {
      heartbeat: { interval: 30_000, timeout: 10_000 },
      compression: v.deflate ? { preset: 'fast', enabled: true, threshold: 256, level: 1, memLevel: 8, serverNoContextTakeover: true, clientNoContextTakeover: true } : { preset: 'off' },
      ...(v.auth ? { auth: { enabled: true, secret: SECRET } } : {}),
    };
    const server = await startServer(v.kind, serverOpts, 1);
    const loads = [];
    try {
      await server.gc();
      const base = await server.stats();
      let seconds = 0;
      for (let i = 0; i < Math.ceil(n / PER_PROCESS); i++) {
        const lg = await startLoad(0);
        loads.push(lg);
        const url = v.auth ? `${server.url}?token=${token}` : server.url;
        const r = await lg.run('openIdle', { url, kind: v.kind, conns: Math.min(PER_PROCESS, n - i * PER_PROCESS), deflate: v.deflate, batch: 200 });
        seconds += r.seconds;
      }
      await new Promise((r) => setTimeout(r, 300));
      await server.gc();
      await server.gc();
      const after = await server.stats();
      rows.push({ label, ...v, n, acceptRate: n / seconds, rssPerConn: (after.rss - base.rss) / n, heapPerConn: (after.heap - base.heap) / n });
    } finally {
      await Promise.all(loads.map((l) => l.stop()));
      await server.stop();
    }
  }
  for (const r of rows) {
    const base = rows.find((x) => x.kind === 'ws' && x.deflate === r.deflate && !x.auth) ?? rows.find((x) => x.kind === 'ws');
    r.memVsWs = base ? r.rssPerConn / base.rssPerConn : null;
    const plain = rows.find((x) => x.kind === 'ws' && !x.deflate);
    r.acceptVsWs = plain ? r.acceptRate / plain.acceptRate : null;
  }
  const md = [
    `## Connections: ${fmt(n)} idle connections, heartbeats on (30 s)`,
    '',
    mdTable(
      ['server', 'accept rate (conn/s)', 'x raw ws (no deflate)', 'RSS per connection', 'x raw ws (same deflate)', 'JS heap per connection'],
      rows.map((r) => [r.label, fmt(r.acceptRate), fmt(r.acceptVsWs, 2), `${fmt(r.rssPerConn / 1024, 2)} KiB`, fmt(r.memVsWs, 2), `${fmt(r.heapPerConn / 1024, 2)} KiB`]),
    ),
    '',
    `RSS after two forced GCs minus the same server's RSS before any connection. Clients open 200 connections at a time. Command: \`${opts.command}\``,
  ].join('\n');
  writeReport('connections', { scenario: 'connections', machine: opts.machine, command: opts.command, quick: opts.quick, rows }, md);
  return md;
}
