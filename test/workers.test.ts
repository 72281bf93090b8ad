// `wiregate start --workers N` as real processes: a primary forking workers that share the port and
// meet through a redis-server this file starts itself; messages across workers, aggregated
// /metrics, the worker list of /info, replacement of a crashed worker, drain on SIGTERM / SIGINT,
// and the starts that must fail at once. Without redis-server the file is skipped (with the
// reason), except under CI=true, where it fails.
import { before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { connect, type Client } from './helpers.js';
import { ROOT, ensureBuilt, killAtEnd } from './proc.js';
import { freePort, serverForFile, startRedis } from './servers.js';

const { server, failure, skip } = await serverForFile('redis-server', startRedis);

type Log = Record<string, unknown>;

interface WorkerInfo {
  id: number;
  pid: number;
  startedAt: string;
  listening: boolean;
  connections: number | null;
}

interface Cluster {
  pid: number;
  http: string;
  url: string;
  logs: Log[];
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  stderr: () => string;
}

/** Polls `check` until it returns a value other than undefined; fails after `ms`. */
async function until<T>(what: string, check: () => Promise<T | undefined> | T | undefined, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    let v: T | undefined;
    try {
      v = await check();
    } catch {
      v = undefined; // e.g. a request that reached a worker as it was killed
    }
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * `wiregate start` (dist/, as `npm start` runs it) with `args`, in its own process group. Resolves
 * once the primary logged that every worker listens (or at once when `ready` is false). The
 * primary and every worker it logged are killed when the test ends.
 */
async function start(t: TestContext, args: string[], ready = true): Promise<Cluster> {
  const port = await freePort();
  const child = spawn(process.execPath, ['bin/wiregate.js', 'start', '--host', '127.0.0.1', '--port', String(port), '--drainTimeout', '5000', ...args], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = killAtEnd(t, child);
  const logs: Log[] = [];
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    // workers exit with their primary (their IPC channel closes); make sure of it
    for (const r of logs) {
      if (r.msg !== 'worker started') continue;
      try {
        process.kill(r.pid as number, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line.startsWith('{')) logs.push(JSON.parse(line) as Log);
  });
  const c: Cluster = { pid: child.pid!, http: `http://127.0.0.1:${port}`, url: `ws://127.0.0.1:${port}/ws`, logs, exited, stderr: () => stderr };
  if (ready) {
    let code: number | null | undefined;
    exited.then(([c]) => (code = c));
    await until('all workers listening', () => {
      if (code !== undefined) throw new Error(`wiregate exited (${code}) at start:\n${stderr}`);
      return logs.find((r) => r.msg === 'all workers listening');
    });
  }
  return c;
}

function redisArgs(prefix = `w:${randomBytes(4).toString('hex')}:`): string[] {
  return ['--broker', `redis://127.0.0.1:${server!.port}`, '--brokerPrefix', prefix];
}

async function info(c: Cluster): Promise<{ worker: number; workers: WorkerInfo[]; connections: number }> {
  const res = await fetch(`${c.http}/info`);
  assert.equal(res.status, 200);
  return (await res.json()) as { worker: number; workers: WorkerInfo[]; connections: number };
}

/** Open connections per worker id, once every worker listens and answered. */
async function counts(c: Cluster): Promise<Map<number, number>> {
  return until('every worker answering /info', async () => {
    const { workers } = await info(c);
    if (workers.some((w) => !w.listening || w.connections === null)) return undefined;
    return new Map(workers.map((w) => [w.id, w.connections!]));
  });
}

/** Connects a client and finds the worker it landed on (the one whose connection count went up). */
async function connectOn(t: TestContext, c: Cluster): Promise<{ client: Client; worker: number }> {
  const before = await counts(c);
  const client = await connect(t, c.url);
  const worker = await until('the new connection in /info', async () => {
    const now = await counts(c);
    const up = [...now].filter(([id, n]) => n > (before.get(id) ?? 0));
    return up.length === 1 && [...now.values()].reduce((a, b) => a + b, 0) === [...before.values()].reduce((a, b) => a + b, 0) + 1 ? up[0][0] : undefined;
  });
  return { client, worker };
}

/** One client on each of two different workers (round-robin spreads the connections). */
async function clientsOnBothWorkers(t: TestContext, c: Cluster): Promise<Array<{ client: Client; worker: number }>> {
  const first = await connectOn(t, c);
  for (let i = 0; i < 8; i++) {
    const next = await connectOn(t, c);
    if (next.worker !== first.worker) return [first, next];
  }
  throw new Error('8 connections in a row landed on the same worker');
}

async function ping(client: Client): Promise<void> {
  const r = await client.call(5);
  assert.equal(r[0], 20);
}

describe('wiregate start --workers', { skip }, () => {
  before(() => {
    ensureBuilt();
  });

  test('redis-server is available (CI=true needs it)', () => {
    assert.ok(server !== null, `cannot start redis-server: ${failure}`);
  });

  test('two workers on one port: /info lists both, a message crosses workers, /metrics adds them up', async (t) => {
    const c = await start(t, ['--workers', '2', ...redisArgs()]);
    const first = await info(c);
    assert.equal(first.workers.length, 2);
    assert.equal(new Set(first.workers.map((w) => w.pid)).size, 2, JSON.stringify(first.workers));
    assert.ok(first.workers.some((w) => w.id === first.worker));
    for (const w of first.workers) assert.ok(w.listening && !Number.isNaN(Date.parse(w.startedAt)), JSON.stringify(w));

    const [a, b] = await clientsOnBothWorkers(t, c);
    assert.equal((await b.client.subscribe('rooms/1'))[0], 16);
    assert.equal((await a.client.publish('rooms/1', 'across'))[0], 16);
    assert.deepEqual((await b.client.delivery('rooms/1')).slice(1), ['rooms/1', 1, 'across']);

    const open = [...(await counts(c)).values()].reduce((x, y) => x + y, 0);
    assert.ok(open >= 2);
    const res = await fetch(`${c.http}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    const text = await res.text();
    const value = (line: string) => Number(new RegExp(`^${line.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
    assert.equal(value('wiregate_connections'), open, 'connections summed over the workers');
    assert.equal(value('wiregate_connections_opened_total'), open);
    assert.equal(value('wiregate_workers'), 2);
    assert.equal(value('wiregate_draining'), 0);
    // a flag is not summed: at most 1, whichever worker answered
    assert.ok(value('wiregate_fast_path_active{path="directWrites"}') <= 1, text);
  });

  test('a worker killed with SIGKILL is replaced; clients of the other worker stay connected', async (t) => {
    const c = await start(t, ['--workers', '2', ...redisArgs()]);
    const [victim, survivor] = await clientsOnBothWorkers(t, c);
    const before = (await info(c)).workers;
    const dead = before.find((w) => w.id === victim.worker)!;
    let survivorClosed = false;
    survivor.client.closed.then(() => (survivorClosed = true));

    process.kill(dead.pid, 'SIGKILL');
    assert.equal((await victim.client.closed).code, 1006);
    const replaced = await until('a replacement worker listening', async () => {
      const { workers } = await info(c);
      const fresh = workers.filter((w) => !before.some((b) => b.pid === w.pid));
      return workers.length === 2 && fresh.length === 1 && fresh[0].listening ? fresh[0] : undefined;
    });
    assert.notEqual(replaced.id, dead.id);
    const crash = c.logs.find((r) => r.msg === 'worker crashed; replacing it');
    assert.deepEqual([crash?.pid, crash?.signal], [dead.pid, 'SIGKILL']);

    assert.equal(survivorClosed, false);
    await ping(survivor.client);
    const fresh = await connect(t, c.url);
    await ping(fresh);
    assert.equal(survivorClosed, false);
  });

  test('SIGTERM to the primary: every worker drains (1001 to its clients), the primary exits 0', async (t) => {
    const c = await start(t, ['--workers', '2', ...redisArgs()]);
    const clients = await clientsOnBothWorkers(t, c);
    process.kill(c.pid, 'SIGTERM');
    for (const { client } of clients) assert.equal((await client.closed).code, 1001);
    assert.deepEqual(await c.exited, [0, null], c.stderr());
    const workers = new Set(c.logs.filter((r) => r.msg === 'worker started').map((r) => r.worker));
    const drained = c.logs.filter((r) => r.msg === 'closed').map((r) => r.worker);
    assert.deepEqual(drained.sort(), [...workers].sort());
  });

  test("SIGINT to the whole process group (a terminal's Ctrl-C): each worker drains once, exit 0", async (t) => {
    const c = await start(t, ['--workers', '2', ...redisArgs()]);
    const clients = await clientsOnBothWorkers(t, c);
    process.kill(-c.pid, 'SIGINT'); // the primary and every worker, as a terminal does
    for (const { client } of clients) assert.equal((await client.closed).code, 1001);
    assert.deepEqual(await c.exited, [0, null], c.stderr());
    // each worker got SIGINT twice (the terminal's and the primary's): the same request
    assert.equal(c.logs.filter((r) => r.msg === 'second signal, exiting now').length, 0);
    const stopping = c.logs.filter((r) => r.msg === 'shutting down' && r.worker !== undefined).map((r) => r.worker);
    assert.equal(new Set(stopping).size, stopping.length, 'a worker started shutting down twice');
    assert.equal(stopping.length, 2);
  });

  test('--workers 2 with the memory broker is refused: exit 2 with the reason', async (t) => {
    const c = await start(t, ['--workers', '2'], false);
    assert.deepEqual(await c.exited, [2, null]);
    const lines = c.stderr().trim().split('\n');
    assert.equal(lines.length, 1, c.stderr());
    assert.match(lines[0], /^wiregate: invalid config workers \(from flag --workers\): more than 1 worker needs a shared broker: .*own in-memory broker.*redis:\/\/ or nats:\/\//);
  });

  test('--workers 2 with an unreachable Redis: exit 3 at once with the one-line error, no crash loop', async (t) => {
    const unused = await freePort();
    const started = Date.now();
    const c = await start(t, ['--workers', '2', '--broker', `redis://127.0.0.1:${unused}`], false);
    assert.deepEqual(await c.exited, [3, null]);
    assert.ok(Date.now() - started < 15_000);
    const lines = c.stderr().trim().split('\n');
    assert.equal(lines.length, 1, c.stderr());
    assert.match(lines[0], new RegExp(`^wiregate: cannot start: .*127\\.0\\.0\\.1:${unused}`));
    assert.equal(c.logs.filter((r) => r.msg === 'worker started').length, 1, 'the first worker failed: no other was started');
    assert.equal(c.logs.filter((r) => r.msg === 'worker crashed; replacing it').length, 0);
  });
});
