// The broker conformance suite (test/broker/conformance.ts) against the Redis broker, on a
// redis-server this file starts itself (127.0.0.1, a free port, no persistence) and kills at the
// end. Each broker gets its own key prefix; `peer` is a second node on the same server and prefix,
// so the multi-node cases run. loseState deletes the topic's keys; the broker stays the same.
// Without redis-server the suite is skipped (with the reason), except under CI=true, where it fails.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { after, describe, it } from 'node:test';
import type { Broker } from '../../src/pubsub/broker.js';
import { RedisBroker } from '../../src/pubsub/redis-broker.js';
import { brokerConformance } from './conformance.js';

function findRedisServer(): string | null {
  if (existsSync('/usr/bin/redis-server')) return '/usr/bin/redis-server';
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const p = r.stdout.trim();
  return r.status === 0 && p !== '' ? p : null;
}

function freePort(): Promise<number> {
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

/** One PING over a raw socket; resolves true on +PONG. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    let data = '';
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.on('error', () => done(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      data += d.toString();
      if (data.includes('\r\n')) done(data.startsWith('+PONG'));
    });
  });
}

async function startRedis(): Promise<{ proc: ChildProcess; port: number }> {
  const bin = findRedisServer();
  if (bin === null) throw new Error('redis-server not found (neither /usr/bin/redis-server nor on PATH)');
  const port = await freePort();
  const proc = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  let exited = false;
  proc.once('exit', () => (exited = true));
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (exited) throw new Error(`redis-server exited at start: ${stderr.trim()}`);
    if (await ping(port)) return { proc, port };
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill('SIGKILL');
  throw new Error(`redis-server did not answer PING on port ${port} within 10 s`);
}

let server: { proc: ChildProcess; port: number } | null = null;
let failure: string | null = null;
try {
  server = await startRedis();
} catch (err) {
  failure = err instanceof Error ? err.message : String(err);
}

if (server === null) {
  if (process.env.CI === 'true') {
    describe('RedisBroker', () => {
      it('needs a redis-server (CI=true)', () => {
        throw new Error(`cannot start redis-server: ${failure}`);
      });
    });
  } else {
    describe('RedisBroker', () => {
      it('conformance', { skip: `cannot start redis-server: ${failure}` }, () => undefined);
    });
  }
} else {
  const { proc, port } = server;
  const url = `redis://127.0.0.1:${port}`;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  after(async () => {
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  });

  const opts = { url, presenceSweep: 20 };
  brokerConformance('RedisBroker', {
    features: { history: true, retained: true, presence: true },
    filters: true,
    create: () => new RedisBroker({ ...opts, prefix: `t:${randomBytes(6).toString('hex')}:` }),
    peer: (first: Broker) => new RedisBroker({ ...opts, prefix: (first as RedisBroker).prefix }),
    loseState: async (b: Broker, topic: string) => {
      await (b as RedisBroker).forget(topic);
      return b;
    },
  });
}
