// The client's liveness check with mocked time: deadlines are wall-clock times, so a timer that
// fires a minute late (a throttled background tab, a machine that slept) finds a dead link on its
// first firing, and never condemns a link that answered. A fake WebSocket stands in for the
// network (the real-socket case is in client.test.ts, "liveness").
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
