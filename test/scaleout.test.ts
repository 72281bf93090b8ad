// Several gateway nodes as one gateway over Redis (broker.url): messages, sequence numbers,
// recovery and presence across nodes, on a redis-server this file starts itself. Without
// redis-server the file is skipped (with the reason), except under CI=true, where it fails.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createGateway, type CreateGatewayOptions } from '../src/index.js';
import { connect, startGateway, type Started } from './helpers.js';
import { freePort, serverForFile, startNats, startRedis } from './servers.js';
import { ROOT, ensureBuilt, spawnAtEnd } from './proc.js';

/** A `wiregate start` process on a free port with `args`; resolves once /readyz answers 200. */
async function nodeProcess(t: TestContext, args: string[]): Promise<{ url: string; http: string }> {
  ensureBuilt();
  const port = await freePort();
  const p = spawnAtEnd(t, process.execPath, ['bin/wiregate.js', 'start', '--host', '127.0.0.1', '--port', String(port), '--workers', '1', '--log.level', 'warn', ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  const http = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (p.child.exitCode !== null) throw new Error(`node exited ${p.child.exitCode}: ${p.stderr()}`);
    const ok = await fetch(`${http}/readyz`).then((r) => r.status === 200, () => false);
    if (ok) return { url: `ws://127.0.0.1:${port}/ws`, http };
    if (Date.now() > deadline) throw new Error(`node on ${port} not ready: ${p.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Two processes on one broker: 300 messages published on A reach a subscriber on B in order, once each. */
async function twoProcesses(t: TestContext, broker: string): Promise<void> {
  const prefix = `p${randomBytes(4).toString('hex')}:`;
  const [a, b] = await Promise.all([nodeProcess(t, ['--broker', broker, '--brokerPrefix', prefix]), nodeProcess(t, ['--broker', broker, '--brokerPrefix', prefix])]);
  const pub = await connect(t, a.url);
  const sub = await connect(t, b.url);
  assert.equal((await sub.call(1, 'm/+'))[0], 16);
  const n = 300;
  const acks = [];
  for (let i = 1; i <= n; i++) acks.push(pub.call(3, 'm/x', i));
  const results = await Promise.all(acks);
  assert.deepEqual(results.map((r) => r[2]), Array.from({ length: n }, (_, i) => i + 1), 'seq 1..n in publish order');
  const got: unknown[] = [];
  for (let i = 0; i < n; i++) got.push(await sub.delivery('m/x'));
  assert.deepEqual(got, Array.from({ length: n }, (_, i) => [18, 'm/x', i + 1, i + 1]));
}

const { server, failure, skip } = await serverForFile('redis-server', startRedis);

function node(t: TestContext, prefix: string, options: CreateGatewayOptions = {}): Promise<Started> {
  return startGateway(t, {
    broker: `redis://127.0.0.1:${server!.port}`,
    brokerPrefix: prefix,
    history: { topics: ['rooms/#=100'] },
    presence: { topics: ['rooms/#'] },
    ...options,
  });
}


describe('two gateway nodes on one Redis', { skip }, () => {
  test('redis-server is available (CI=true needs it)', () => {
    assert.ok(server !== null, `cannot start redis-server: ${failure}`);
  });

  test('a message published on one node reaches subscribers on both, with one sequence', async (t) => {
    const prefix = `n:${randomBytes(4).toString('hex')}:`;
    const a = await node(t, prefix);
    const b = await node(t, prefix);
    const ca = await connect(t, a.url);
    const cb = await connect(t, b.url);
    assert.equal((await ca.call(1, 'rooms/+'))[0], 16);
    assert.equal((await cb.call(1, 'rooms/1'))[0], 16);
    assert.deepEqual(await cb.call(3, 'rooms/1', 'from b'), [16, 2, 1]);
    assert.deepEqual(await ca.call(3, 'rooms/1', 'from a'), [16, 2, 2]);
    for (const c of [ca, cb]) {
      assert.deepEqual(await c.delivery('rooms/1'), [18, 'rooms/1', 1, 'from b']);
      assert.deepEqual(await c.delivery('rooms/1'), [18, 'rooms/1', 2, 'from a']);
    }
  });

  test('a client recovers on the other node what was published while it was away', async (t) => {
    const prefix = `n:${randomBytes(4).toString('hex')}:`;
    const a = await node(t, prefix);
    const b = await node(t, prefix);
    const first = await connect(t, a.url);
    const r = (await first.call(1, 'rooms/9')) as [number, number, { seq: number; epoch: string }];
    for (let i = 1; i <= 5; i++) await a.gw.publish('rooms/9', i);
    let last = 0;
    for (let i = 1; i <= 5; i++) last = (await first.delivery('rooms/9'))[2];
    first.ws.terminate();
    for (let i = 6; i <= 12; i++) await b.gw.publish('rooms/9', i);
    const again = await connect(t, b.url);
    const rr = (await again.call(1, 'rooms/9', { since: { seq: last, epoch: r[2].epoch } })) as [number, number, { recovered: boolean; seq: number }];
    assert.deepEqual([rr[2].recovered, rr[2].seq], [true, 12]);
    const seqs: number[] = [];
    for (let i = 0; i < 7; i++) seqs.push((await again.delivery('rooms/9'))[2]);
    assert.deepEqual(seqs, [6, 7, 8, 9, 10, 11, 12]);
  });

  test('presence is shared: a PRESENCE on one node lists connections of both', async (t) => {
    const prefix = `n:${randomBytes(4).toString('hex')}:`;
    const a = await node(t, prefix);
    const b = await node(t, prefix);
    const ca = await connect(t, a.url);
    const cb = await connect(t, b.url);
    await ca.call(1, 'rooms/p');
    await cb.call(1, 'rooms/p');
    const list = (await cb.call(8, 'rooms/p')) as [number, number, Array<{ client: string }>];
    assert.equal(list[2].length, 2);
    assert.notEqual(list[2][0].client.split(':')[0], list[2][1].client.split(':')[0], 'entries of two nodes');
  });

  test('two wiregate processes: 300 messages published on A arrive on B in order', async (t) => {
    await twoProcesses(t, `redis://127.0.0.1:${server!.port}`);
  });

  test('a broker that cannot be reached at start: listen() rejects and nothing listens', async (t) => {
    const closed = await freePort();
    const gw = createGateway({ log: { level: 'silent' }, host: '127.0.0.1', port: 0, broker: `redis://127.0.0.1:${closed}` });
    t.after(() => gw.close({ drainTimeout: 0 }));
    await assert.rejects(gw.listen(), /ECONNREFUSED|connect/i);
    assert.equal(gw.httpServer, null);
  });
});

// ---- NATS: messages and sequence numbers across nodes; no history, retained values or presence ----

const { server: nats, failure: natsFailure, skip: natsSkip } = await serverForFile('nats-server', startNats);

describe('two gateway nodes on one NATS server', { skip: natsSkip }, () => {
  const natsNode = (t: TestContext, prefix: string, options: CreateGatewayOptions = {}) =>
    startGateway(t, { broker: `nats://127.0.0.1:${nats!.port}`, brokerPrefix: prefix, ...options });

  test('nats-server is available (CI=true needs it)', () => {
    assert.ok(nats !== null, `cannot start nats-server: ${natsFailure}`);
  });

  test('published on one node, delivered on both in one sequence, wildcards across nodes', async (t) => {
    const prefix = `n${randomBytes(4).toString('hex')}`;
    const a = await natsNode(t, prefix);
    const b = await natsNode(t, prefix);
    const ca = await connect(t, a.url);
    const cb = await connect(t, b.url);
    assert.equal((await ca.call(1, 'dev/+/temp'))[0], 16);
    assert.equal((await cb.call(1, 'dev/#'))[0], 16);
    // a topic level with NATS's separator and wildcard-looking characters travels intact
    assert.deepEqual(await cb.call(3, 'dev/a.b/temp', 1), [16, 2, 1]);
    assert.deepEqual(await ca.call(3, 'dev/a.b/temp', 2), [16, 2, 2]);
    for (const c of [ca, cb]) {
      assert.deepEqual(await c.delivery(), [18, 'dev/a.b/temp', 1, 1]);
      assert.deepEqual(await c.delivery(), [18, 'dev/a.b/temp', 2, 2]);
    }
    assert.deepEqual(await ca.call(3, 'dev', 'root'), [16, 3, 1]);
    assert.deepEqual(await cb.delivery(), [18, 'dev', 1, 'root'], "'dev/#' also matches 'dev'");
  });

  test('two wiregate processes: 300 messages published on A arrive on B in order', async (t) => {
    await twoProcesses(t, `nats://127.0.0.1:${nats!.port}`);
  });

  test('what NATS does not offer is refused, not ignored: history and presence at start, retain with 115', async (t) => {
    const prefix = `n${randomBytes(4).toString('hex')}`;
    for (const options of [{ history: { topics: ['a/#=10'] } }, { presence: { topics: ['a/#'] } }] as CreateGatewayOptions[]) {
      const gw = createGateway({ log: { level: 'silent' }, host: '127.0.0.1', port: 0, broker: `nats://127.0.0.1:${nats!.port}`, ...options });
      t.after(() => gw.close({ drainTimeout: 0 }));
      await assert.rejects(gw.listen(), /history|presence/);
    }
    const a = await natsNode(t, prefix);
    const c = await connect(t, a.url);
    const r = await c.call(3, 'a/b', 1, { retain: true });
    assert.deepEqual([r[0], r[2], r[3]], [17, 115, 'the broker keeps no retained messages']);
    // resuming with since cannot recover without history: the position and recovered: false, not an error
    const sub = (await c.call(1, 'a/b', { since: { seq: 0, epoch: 'older' } })) as [number, number, { seq: number; epoch: string; recovered: boolean }];
    assert.deepEqual([sub[0], sub[2].seq, sub[2].recovered], [16, 0, false], 'the refused retain took no seq');
    assert.equal(typeof sub[2].epoch, 'string');
    assert.deepEqual(await c.call(3, 'a/b', 2), [16, 3, 1]);
    assert.deepEqual(await c.delivery('a/b'), [18, 'a/b', 1, 2]);
  });
});
