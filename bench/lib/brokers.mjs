// The bench's own broker servers (redis-server, nats-server with JetStream), each on 127.0.0.1 and
// a free port, without persistence beyond a temporary directory that goes with the server; the
// same recipe as test/servers.ts (bench code does not import test code). Every server started
// here is killed when the bench process exits, however it exits.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const running = new Set();
process.on('exit', () => {
  for (const s of running) {
    s.proc.kill('SIGKILL');
    rmSync(s.dir, { recursive: true, force: true });
  }
});

function findBinary(name, fallback) {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  const p = r.stdout.trim();
  if (r.status === 0 && p !== '') return p;
  return existsSync(fallback) ? fallback : null;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Connects, optionally writes `hello`, and resolves true when the first line starts with `expect`. */
function answers(port, hello, expect) {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    let data = '';
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.on('error', () => done(false));
    if (hello !== null) sock.on('connect', () => sock.write(hello));
    sock.on('data', (d) => {
      data += d.toString();
      if (data.includes('\r\n')) done(data.startsWith(expect));
    });
  });
}

async function startBinary(name, bin, args, ready) {
  if (bin === null) throw new Error(`${name} not found (the cluster scenario needs it installed)`);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), `wiregate-bench-${name}-`));
  const proc = spawn(bin, args(port, dir), { stdio: ['ignore', 'ignore', 'pipe'] });
  const entry = { proc, dir };
  running.add(entry);
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d.toString()));
  let exited = false;
  const gone = new Promise((resolve) => proc.once('exit', () => ((exited = true), resolve())));
  const stop = async () => {
    if (!exited) {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
      await gone;
      clearTimeout(timer);
    }
    running.delete(entry);
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (exited) {
      await stop();
      throw new Error(`${name} exited at start: ${stderr.trim()}`);
    }
    if (await ready(port)) return { name, pid: proc.pid, port, stop };
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill('SIGKILL');
  await stop();
  throw new Error(`${name} did not answer on port ${port} within 10 s`);
}

/**
 * redis-server without persistence (no RDB snapshots, no AOF). `commandStats()` reads Redis's own
 * accounting (INFO commandstats: calls and microseconds per command, scripts' inner calls too).
 */
export async function startRedis() {
  const bin = findBinary('redis-server', '/usr/bin/redis-server');
  const s = await startBinary('redis-server', bin, (port) => ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], (port) => answers(port, 'PING\r\n', '+PONG'));
  return { ...s, url: `redis://127.0.0.1:${s.port}`, version: version(bin, ['--version'], /v=(\S+)/), commandStats: () => commandStats(s.port) };
}

/** INFO commandstats as { command: { calls, usec } }. */
function commandStats(port) {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let buf = '';
    sock.setTimeout(5000, () => {
      sock.destroy();
      reject(new Error('redis INFO: no answer within 5 s'));
    });
    sock.on('error', reject);
    sock.on('connect', () => sock.write('*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n'));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      const nl = buf.indexOf('\r\n');
      if (nl === -1) return;
      const len = Number(buf.slice(1, nl)); // a bulk string: $<len>\r\n<text>\r\n
      if (buf.length < nl + 2 + len) return;
      sock.destroy();
      const out = {};
      for (const m of buf.slice(nl + 2, nl + 2 + len).matchAll(/^cmdstat_(\S+):calls=(\d+),usec=(\d+)/gm)) out[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
      resolve(out);
    });
  });
}

/** nats-server with JetStream, its store in a temporary directory removed at stop. */
export async function startNats() {
  const bin = findBinary('nats-server', '/usr/sbin/nats-server');
  const s = await startBinary('nats-server', bin, (port, dir) => ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], (port) => answers(port, null, 'INFO'));
  return { ...s, url: `nats://127.0.0.1:${s.port}`, version: version(bin, ['--version'], /v(\d\S*)/) };
}

function version(bin, args, re) {
  const r = spawnSync(bin, args, { encoding: 'utf8' });
  return re.exec(`${r.stdout}${r.stderr}`)?.[1] ?? 'unknown';
}
