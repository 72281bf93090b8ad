// Real broker servers of the test's own (redis-server, nats-server with JetStream), each on
// 127.0.0.1 and a free port, without persistence beyond a temporary directory; the broker tests and
// the multi-node gateway tests start one and stop it at the end.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { after } from 'node:test';
import { join } from 'node:path';

export interface RunningServer {
  proc: ChildProcess;
  port: number;
  /** Stops the server (SIGTERM, SIGKILL after 3 s) and removes its directory. */
  stop(): Promise<void>;
}

function findBinary(name: string, fallback: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  const p = r.stdout.trim();
  if (r.status === 0 && p !== '') return p;
  return existsSync(fallback) ? fallback : null;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Connects, optionally writes `hello`, and resolves true when the first line starts with `expect`. */
function answers(port: number, hello: string | null, expect: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    let data = '';
    const done = (ok: boolean): void => {
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

async function startServer(name: string, bin: string | null, args: (port: number, dir: string) => string[], ready: (port: number) => Promise<boolean>, onPort?: number): Promise<RunningServer> {
  if (bin === null) throw new Error(`${name} not found`);
  const port = onPort ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), `wiregate-${name}-`));
  const proc = spawn(bin, args(port, dir), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  let exited = false;
  const gone = new Promise<void>((resolve) => proc.once('exit', () => ((exited = true), resolve())));
  const stop = async () => {
    if (!exited) {
      proc.kill('SIGCONT'); // a test may have stopped it (SIGSTOP) to simulate a stall
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
      await gone;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (exited) {
      await stop();
      throw new Error(`${name} exited at start: ${stderr.trim()}`);
    }
    if (await ready(port)) return { proc, port, stop };
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill('SIGKILL');
  await stop();
  throw new Error(`${name} did not answer on port ${port} within 10 s`);
}

/** A redis-server on a free port, or on `port` (to restart one where the gateway expects it). */
export function startRedis(port?: number): Promise<RunningServer> {
  return startServer('redis-server', findBinary('redis-server', '/usr/bin/redis-server'), (port) => ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], (port) => answers(port, 'PING\r\n', '+PONG'), port);
}

/** A nats-server with JetStream (its store in a new temporary directory) on a free port, or on `port`. */
export function startNats(port?: number): Promise<RunningServer> {
  return startServer('nats-server', findBinary('nats-server', '/usr/sbin/nats-server'), (port, dir) => ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], (port) => answers(port, null, 'INFO'), port);
}

export interface FileServer {
  server: RunningServer | null;
  /** Why it could not start ('' when it did). */
  failure: string;
  /** The skip reason for the tests that need it: false when it runs, and under CI=true (so they fail instead). */
  skip: string | false;
}

/** A server for a whole test file, stopped when the file's tests are done (`after`). */
export async function serverForFile(name: string, start: () => Promise<RunningServer>): Promise<FileServer> {
  try {
    const server = await start();
    after(() => server.stop());
    return { server, failure: '', skip: false };
  } catch (err) {
    const failure = err instanceof Error ? err.message : String(err);
    return { server: null, failure, skip: process.env.CI === 'true' ? false : `cannot start ${name}: ${failure}` };
  }
}
