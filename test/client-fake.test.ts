// The client against a fake WebSocket, where the test plays the server: liveness with mocked time
// (deadlines are wall-clock times, so a timer that fires a minute late, as in a throttled
// background tab or after a machine slept, finds a dead link on its first firing and never
// condemns a link that answered), and the broker-outage GAP when the numbering restarted under a
// new epoch. The real-socket cases are in client.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WiregateClient, type ClientEvents, type SocketLike } from '../src/client/index.js';
import { decodeFrame, encode } from '../src/protocol/messages.js';

class FakeSocket implements SocketLike {
  static all: FakeSocket[] = [];
  binaryType = '';
  readyState = 0;
  protocol = 'wiregate.v1';
  onopen: SocketLike['onopen'] = null;
  onmessage: SocketLike['onmessage'] = null;
  onclose: SocketLike['onclose'] = null;
  onerror: SocketLike['onerror'] = null;
  readonly sent: unknown[] = [];
  closed = false;

  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  send(data: Uint8Array): void {
    this.sent.push(...decodeFrame(data));
  }
  close(): void {
    this.closed = true;
    this.readyState = 3;
    this.onclose?.({ code: 1005, reason: '' });
  }
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(msg: unknown): void {
    this.onmessage?.({ data: encode(msg) });
  }
  pings(): number {
    return this.sent.filter((m) => Array.isArray(m) && m[0] === 5).length;
  }
}

const microtasks = () => new Promise<void>((r) => queueMicrotask(r));

test('liveness: late timers find a dead link at once and never drop one that answered', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  FakeSocket.all = [];
  const c = new WiregateClient('ws://fake/ws', { WebSocket: FakeSocket, ping: { interval: 15_000, timeout: 10_000 }, reconnect: { initialDelay: 1000, maxDelay: 1000 } });
  const lost: ClientEvents['disconnected'][] = [];
  c.on('disconnected', (e) => lost.push(e));
  const connected = c.connect();
  const ws = FakeSocket.all[0];
  ws.open();
  await connected;
  /** The tab sleeps `ms` without running any timer, then its timer fires, late. */
  const lateFire = async (ms: number) => {
    t.mock.timers.setTime(Date.now() + ms);
    t.mock.timers.tick(1);
    await microtasks();
  };

  // a healthy link in a throttled tab: every late firing sends a PING, the PONG comes, nothing is dropped
  for (let i = 1; i <= 3; i++) {
    await lateFire(60_000);
    assert.equal(ws.pings(), i, 'a late firing probes the link instead of condemning it');
    ws.receive([20, 0]);
  }
  assert.deepEqual(lost, []);

  // the link dies: the next late firing probes, the one after it (a minute late) drops the link at once
  await lateFire(60_000);
  assert.equal(ws.pings(), 4);
  assert.deepEqual(lost, []);
  await lateFire(60_000);
  assert.deepEqual(lost, [{ code: 1006, reason: 'ping timeout', reconnect: true }]);
  assert.equal(ws.closed, true);
  assert.equal(c.state, 'connecting');

  // and reconnects after the backoff (one new socket), without flapping
  t.mock.timers.tick(1000);
  assert.equal(FakeSocket.all.length, 2);
  FakeSocket.all[1].open();
  assert.equal(c.state, 'connected');
  assert.equal(lost.length, 1);
  await c.close();
});

test('liveness: an answer in time keeps the connection; no answer within the timeout drops it', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  FakeSocket.all = [];
  const c = new WiregateClient('ws://fake/ws', { WebSocket: FakeSocket, ping: { interval: 100, timeout: 50 }, reconnect: false });
  const lost: ClientEvents['disconnected'][] = [];
  c.on('disconnected', (e) => lost.push(e));
  const connected = c.connect();
  FakeSocket.all[0].open();
  await connected;
  const ws = FakeSocket.all[0];
  t.mock.timers.tick(99);
  await microtasks();
  assert.equal(ws.pings(), 0, 'no PING before the interval');
  ws.receive([16, 999]); // any frame is proof of life and restarts the interval
  t.mock.timers.tick(99);
  await microtasks();
  assert.equal(ws.pings(), 0);
  t.mock.timers.tick(1);
  await microtasks();
  assert.equal(ws.pings(), 1);
  t.mock.timers.tick(49);
  assert.deepEqual(lost, []);
  t.mock.timers.tick(1);
  assert.deepEqual(lost, [{ code: 1006, reason: 'ping timeout', reconnect: false }]);
  assert.equal(c.state, 'disconnected');
  await c.close();
});

/** Opens a client on a fake socket; returns both. */
async function fakeClient(): Promise<{ c: WiregateClient; ws: FakeSocket }> {
  FakeSocket.all = [];
  const c = new WiregateClient('ws://fake/ws', { WebSocket: FakeSocket, ping: false, reconnect: false });
  const connected = c.connect();
  FakeSocket.all[0].open();
  await connected;
  return { c, ws: FakeSocket.all[0] };
}

/** The last message the client sent, once its writes are flushed. */
async function lastSent(ws: FakeSocket): Promise<unknown[]> {
  await microtasks();
  return ws.sent.at(-1) as unknown[];
}

test('broker GAP [21, pattern, 0] on a wildcard: the numbers seen are forgotten, so a restarted numbering is delivered', async () => {
  const { c, ws } = await fakeClient();
  const got: string[] = [];
  const gaps: ClientEvents['gap'][] = [];
  c.on('gap', (e) => gaps.push(e));
  const subscribed = c.subscribe('dev/+', (m) => got.push(`${m.topic}:${m.seq}`));
  const [, id] = await lastSent(ws);
  ws.receive([16, id]);
  await subscribed;
  ws.receive([18, 'dev/1', 7, 'a']);
  ws.receive([18, 'dev/1', 7, 'a']); // a repeat is dropped
  ws.receive([21, 'dev/+', 0]);
  ws.receive([18, 'dev/1', 1, 'new epoch']);
  ws.receive([21, 'dev/1', 3]); // a slow-consumer GAP on a topic: reported, numbers kept
  ws.receive([18, 'dev/1', 1, 'repeat']);
  assert.deepEqual(got, ['dev/1:7', 'dev/1:1']);
  assert.deepEqual(gaps, [
    { topic: 'dev/+', dropped: 0, recovered: false },
    { topic: 'dev/1', dropped: 3, recovered: false },
  ]);
  await c.close();
});

test('broker GAP on a topic with a position: HISTORY since fills the hole while live messages wait; a new epoch starts over', async () => {
  const { c, ws } = await fakeClient();
  const got: string[] = [];
  const gaps: ClientEvents['gap'][] = [];
  c.on('gap', (e) => gaps.push(e));
  const subscribed = c.subscribe('chat/1', (m) => got.push(`${m.seq}${m.recovered ? 'r' : ''}:${String(m.payload)}`));
  const [, id] = await lastSent(ws);
  ws.receive([16, id, { seq: 0, epoch: 'A' }]);
  const sub = await subscribed;
  ws.receive([18, 'chat/1', 1, 'a']);
  ws.receive([18, 'chat/1', 2, 'b']);

  // same epoch, messages 3 and 4 missed: filled from history; 5 arrives live meanwhile and waits
  ws.receive([21, 'chat/1', 0]);
  const history = await lastSent(ws);
  assert.deepEqual(history.slice(0, 1).concat(history.slice(2)), [7, 'chat/1', { since: { seq: 2, epoch: 'A' } }]);
  ws.receive([18, 'chat/1', 5, 'e']);
  assert.deepEqual(got, ['1:a', '2:b'], 'live messages wait for the fill');
  ws.receive([16, history[1], { seq: 5, epoch: 'A', complete: true, more: false, messages: [[3, 0, 'c'], [4, 0, 'd'], [5, 0, 'e']] }]);
  await microtasks();
  assert.deepEqual(got, ['1:a', '2:b', '3r:c', '4r:d', '5r:e']);
  assert.deepEqual(gaps, [{ topic: 'chat/1', dropped: 0, recovered: true }]);

  // the broker came back empty: epoch B numbers from 1 again
  ws.receive([21, 'chat/1', 0]);
  const again = await lastSent(ws);
  assert.deepEqual(again[3], { since: { seq: 5, epoch: 'A' } });
  ws.receive([18, 'chat/1', 1, 'B1']);
  ws.receive([16, again[1], { seq: 1, epoch: 'B', complete: false, more: false, messages: [] }]);
  await microtasks();
  ws.receive([18, 'chat/1', 2, 'B2']);
  assert.deepEqual(got.slice(5), ['1:B1', '2:B2']);
  assert.deepEqual(sub.position, { seq: 2, epoch: 'B' });
  assert.deepEqual(gaps[1], { topic: 'chat/1', dropped: 0, recovered: false });
  await c.close();
});
