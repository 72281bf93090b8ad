// Real broker servers of our own, for the tests (test/servers.ts) and the cluster bench
// (bench/lib/brokers.mjs): redis-server and nats-server with JetStream, each on 127.0.0.1 and a free
// port (or a given one, to restart a server where the gateway expects it), without persistence
// beyond a temporary directory that goes with the server. Every server started here is killed when
// the process exits, however it exits. Plain JavaScript so that the bench (no tsx) can load it.
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

export function findBinary(name, fallback) {
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

async function startBinary(name, bin, args, ready, onPort) {
  if (bin === null) throw new Error(`${name} not found`);
  const port = onPort ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), `wiregate-${name}-`));
  const proc = spawn(bin, args(port, dir), { stdio: ['ignore', 'ignore', 'pipe'] });
  const entry = { proc, dir };
  running.add(entry);
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d.toString()));
  let exited = false;
  const gone = new Promise((resolve) => proc.once('exit', () => ((exited = true), resolve())));
  const stop = async () => {
    if (!exited) {
      proc.kill('SIGCONT'); // a test may have stopped it (SIGSTOP) to simulate a stall
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
    if (await ready(port)) return { name, proc, pid: proc.pid, port, stop };
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill('SIGKILL');
  await stop();
  throw new Error(`${name} did not answer on port ${port} within 10 s`);
}

function version(bin, args, re) {
  const r = spawnSync(bin, args, { encoding: 'utf8' });
  return re.exec(`${r.stdout}${r.stderr}`)?.[1] ?? 'unknown';
}

/** redis-server without persistence (no RDB snapshots, no AOF), on a free port or on `port`. */
export async function startRedis(port) {
  const bin = findBinary('redis-server', '/usr/bin/redis-server');
  const s = await startBinary('redis-server', bin, (p) => ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], (p) => answers(p, 'PING\r\n', '+PONG'), port);
  return { ...s, url: `redis://127.0.0.1:${s.port}`, version: version(bin, ['--version'], /v=(\S+)/) };
}

/** nats-server with JetStream, its store in a new temporary directory, on a free port or on `port`. */
export async function startNats(port) {
  const bin = findBinary('nats-server', '/usr/sbin/nats-server');
  const s = await startBinary('nats-server', bin, (p, dir) => ['-a', '127.0.0.1', '-p', String(p), '-js', '-sd', dir], (p) => answers(p, null, 'INFO'), port);
  return { ...s, url: `nats://127.0.0.1:${s.port}`, version: version(bin, ['--version'], /v(\d\S*)/) };
}
