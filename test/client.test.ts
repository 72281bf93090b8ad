// The client SDK (wiregate/client, Node entry on `ws`) against real gateways on real sockets:
// reconnection across a gateway restart, resubscription with and without recovery, no duplicate
// across reconnects under a steady publisher, terminal close codes, token refresh (one getToken for
// racing triggers), the offline queue, timeouts, liveness and Retry-After.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT } from 'jose';
import { WiregateClient, ClientError, type ClientEvents, type ClientOptions, type Message } from '../src/client/index.js';
import { internals } from '../src/gateway.js';
import { encodeGap } from '../src/protocol/messages.js';
import { cleanup, closeServer, startGateway, type Owner, type Started } from './helpers.js';

/** A client closed when the test ends; its 'error' events are collected instead of printed. */
function client(t: Owner, url: string, opts: ClientOptions = {}): WiregateClient & { errors: Error[] } {
  const c = Object.assign(new WiregateClient(url, { reconnect: { initialDelay: 20, maxDelay: 200 }, ...opts }), { errors: [] as Error[] });
  c.on('error', (e) => c.errors.push(e));
  cleanup(t, () => c.close());
  return c;
}

/** The next `name` event (matching `pred`), or a rejection after `ms`. */
function event<K extends keyof ClientEvents>(c: WiregateClient, name: K, pred: (e: ClientEvents[K]) => boolean = () => true, ms = 5000): Promise<ClientEvents[K]> {
  return new Promise((resolve, reject) => {
    const l = (e: ClientEvents[K]) => {
      if (!pred(e)) return;
      clearTimeout(timer);
      c.off(name, l);
      resolve(e);
    };
    const timer = setTimeout(() => {
      c.off(name, l);
      reject(new Error(`no '${name}' event within ${ms} ms`));
    }, ms);
    c.on(name, l);
  });
}

/** Polls `cond` every few ms; fails after `ms`. */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sessions = (s: Started) => [...internals(s.gw).sessions];
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

test('connect, subscribe, publish with ack, request, history and presence', async (t) => {
  const s = await startGateway(t, { history: { topics: ['rooms/#=100'] }, presence: { topics: ['rooms/#'] } });
  s.gw.handle('echo', (_ctx, p) => p);
  const states: string[] = [];
  const c = client(t, s.url);
  assert.equal(c.state, 'idle');
  c.on('connecting', () => states.push(c.state)).on('connected', (e) => states.push(`${c.state}:${e.protocol}:${e.reconnected}`));
  await c.connect();
  assert.deepEqual(states, ['connecting', 'connected:wiregate.v1.batch:false']);
  const got: Message[] = [];
  const sub = await c.subscribe('rooms/1', (m) => got.push(m), { presence: true });
  const epoch = sub.position!.epoch;
  assert.deepEqual(sub.position, { seq: 0, epoch });
  await c.publish('rooms/1', { n: 1 });
  await c.publish('rooms/1', { n: 2 }, { ack: false });
  await until(() => got.length === 2, 'two deliveries');
  assert.deepEqual(got[0], { topic: 'rooms/1', payload: { n: 1 }, seq: 1, epoch, retained: false, recovered: false });
  assert.deepEqual(sub.position, { seq: 2, epoch });
  assert.equal(await c.request('echo', 'hi'), 'hi');
  await assert.rejects(c.request('nope'), (e: ClientError) => e instanceof ClientError && e.code === 106);
  const h = await c.history('rooms/1', { limit: 1 });
  assert.deepEqual({ ...h, publications: h.publications.map(({ time, ...m }) => (assert.equal(typeof time, 'number'), m)) }, {
    publications: [{ topic: 'rooms/1', payload: { n: 2 }, seq: 2, epoch, retained: false, recovered: false }],
    position: { seq: 2, epoch },
    complete: true,
    more: true,
  });
  const other = client(t, s.url);
  await other.connect();
  const joined = event(c, 'presence');
  await other.subscribe('rooms/1', () => {});
  assert.equal((await joined).kind, 'join');
  assert.equal((await c.presence('rooms/1')).length, 2);
  await assert.rejects(c.subscribe('rooms/1', () => {}), (e: ClientError) => e.code === 'ALREADY_SUBSCRIBED');
  await assert.rejects(c.publish('a/+', 1), (e: ClientError) => e.code === 103, 'checked before sending: no protocol error counted');
  await sub.unsubscribe();
  await c.publish('rooms/1', 3);
  assert.equal(got.length, 2, 'nothing after unsubscribe');
  assert.deepEqual(c.errors, []);
});

test('reconnects after the gateway restarts on the same port; resubscribes (new epoch: recovered false) and gets the new stream from seq 1', async (t) => {
  const opts = { history: { topics: ['rooms/#=100'] } };
  const s1 = await startGateway(t, opts);
  const c = client(t, s1.url);
  await c.connect();
  const got: Message[] = [];
  const wild: Message[] = [];
  const sub = await c.subscribe('rooms/1', (m) => got.push(m));
  await c.subscribe('dev/+/state', (m) => wild.push(m));
  await c.publish('rooms/1', 'a');
  await c.publish('dev/1/state', 'on');
  await until(() => got.length === 1 && wild.length === 1, 'first deliveries');
  const oldEpoch = sub.position!.epoch;

  const lost = event(c, 'disconnected');
  await s1.gw.close({ drainTimeout: 0 });
  assert.deepEqual(await lost, { code: 1001, reason: 'server shutting down', reconnect: true });
  const resubscribed = event(c, 'resubscribed', undefined, 10_000);
  const s2 = await startGateway(t, { ...opts, port: s1.port });
  assert.deepEqual(await resubscribed, { subscriptions: [{ pattern: 'rooms/1', recovered: false }, { pattern: 'dev/+/state', recovered: false }] });
  assert.equal(c.state, 'connected');
  assert.notEqual(sub.position!.epoch, oldEpoch);
  await s2.gw.publish('rooms/1', 'b');
  await s2.gw.publish('dev/1/state', 'off');
  await until(() => got.length === 2 && wild.length === 2, 'deliveries from the new gateway');
  assert.deepEqual([got[1].seq, got[1].payload, got[1].epoch], [1, 'b', sub.position!.epoch]);
  assert.deepEqual([wild[1].seq, wild[1].payload], [1, 'off']);
});

test('resubscribe with recovery: what was published while disconnected arrives once, in order, flagged recovered', async (t) => {
  const s = await startGateway(t, { history: { topics: ['rooms/#=100'] } });
  const c = client(t, s.url, { reconnect: { initialDelay: 100, maxDelay: 200 } });
  await c.connect();
  const got: Message[] = [];
  await c.subscribe('rooms/1', (m) => got.push(m));
  for (let i = 1; i <= 3; i++) await c.publish('rooms/1', i);
  await until(() => got.length === 3, 'live messages');
  // publish while the client is away (the disconnected event comes before any reconnection attempt)
  c.on('disconnected', () => {
    for (let i = 4; i <= 10; i++) void s.gw.publish('rooms/1', i);
  });
  const resubscribed = event(c, 'resubscribed');
  for (const session of sessions(s)) session.terminate();
  assert.deepEqual((await resubscribed).subscriptions, [{ pattern: 'rooms/1', recovered: true }]);
  await until(() => got.length === 10, 'recovered messages');
  assert.deepEqual(got.map((m) => m.seq), range(1, 10));
  assert.deepEqual(got.map((m) => m.payload), range(1, 10));
  assert.deepEqual(got.map((m) => m.recovered), [false, false, false, true, true, true, true, true, true, true]);
  await c.publish('rooms/1', 11);
  await until(() => got.length === 11, 'live after recovery');
  assert.equal(got[10].recovered, false);
});

test('resubscribe without recovery: a topic without history, a wildcard and recover: false resubscribe with recovered false and go on live', async (t) => {
  const s = await startGateway(t, { history: { topics: ['kept/#=100'] } });
  const c = client(t, s.url);
  await c.connect();
  const got: string[] = [];
  await c.subscribe('plain/1', (m) => got.push(`${m.topic}:${m.seq}`));
  await c.subscribe('kept/+', (m) => got.push(`+${m.topic}:${m.seq}`));
  await c.subscribe('kept/2', (m) => got.push(`${m.topic}:${m.seq}`), { recover: false });
  await c.publish('plain/1', 1);
  await c.publish('kept/2', 1);
  await until(() => got.length === 3, 'live messages');
  const resubscribed = event(c, 'resubscribed');
  for (const session of sessions(s)) session.terminate();
  assert.deepEqual((await resubscribed).subscriptions, [
    { pattern: 'plain/1', recovered: false },
    { pattern: 'kept/+', recovered: false },
    { pattern: 'kept/2', recovered: false },
  ]);
  await c.publish('plain/1', 2);
  await c.publish('kept/2', 2);
  await until(() => got.length === 6, 'live messages after the reconnect');
  assert.deepEqual(got, ['plain/1:1', '+kept/2:1', 'kept/2:1', 'plain/1:2', '+kept/2:2', 'kept/2:2']);
});

test('no duplicate and no gap across two reconnects while a publisher keeps publishing', async (t) => {
  const s = await startGateway(t, { history: { topics: ['rooms/#=5000'], maxRecover: 5000 } });
  const N = 2000;
  let published = 0;
  let stop = false;
  cleanup(t, () => (stop = true));
  const publishing = (async () => {
    while (published < N && !stop) {
      for (let i = 0; i < 4 && published < N; i++) void s.gw.publish('rooms/1', ++published);
      await new Promise((r) => setImmediate(r));
    }
  })();
  const c = client(t, s.url);
  const recovered: boolean[] = [];
  c.on('resubscribed', (e) => recovered.push(...e.subscriptions.map((x) => x.recovered)));
  await c.connect();
  const seqs: number[] = [];
  const payloads: unknown[] = [];
  await c.subscribe('rooms/1', (m) => {
    seqs.push(m.seq);
    payloads.push(m.payload);
  });
  const first = published; // the subscription starts after this many
  await until(() => seqs.length >= 300, '300 messages');
  for (const session of sessions(s)) session.terminate();
  await until(() => recovered.length === 1 && seqs.length >= 900, 'a reconnect and 900 messages', 10_000);
  for (const session of sessions(s)) session.close(4000, 'slow consumer');
  await until(() => seqs.at(-1) === N, `seq ${N}`, 15_000);
  await publishing;
  assert.deepEqual(recovered, [true, true]);
  assert.ok(seqs[0] <= first + 1);
  assert.deepEqual(seqs, range(seqs[0], N), 'every seq once, in order');
  assert.deepEqual(payloads, seqs);
});

test('terminal close codes (1008, 4500): no reconnection; calls and the connection fail with CLOSED', async (t) => {
  const s = await startGateway(t);
  for (const code of [1008, 4500]) {
    const c = client(t, s.url);
    let attempts = 0;
    c.on('connecting', () => attempts++);
    await c.connect();
    await c.subscribe('a/b', () => {});
    const gone = event(c, 'disconnected');
    for (const session of sessions(s)) session.close(code, 'go away');
    assert.deepEqual(await gone, { code, reason: 'go away', reconnect: false });
    assert.equal(c.state, 'closed');
    await assert.rejects(c.publish('a/b', 1), (e: ClientError) => e.code === 'CLOSED');
    await assert.rejects(c.connect(), (e: ClientError) => e.code === 'CLOSED');
    await new Promise((r) => setImmediate(r));
    assert.equal(attempts, 1, 'never tried again');
    assert.equal(sessions(s).length, 0);
  }
});

test('transient close codes (1001, 1011, 4000, 4001) reconnect', async (t) => {
  const s = await startGateway(t);
  const c = client(t, s.url);
  await c.connect();
  for (const code of [1001, 1011, 4000, 4001]) {
    const back = event(c, 'connected');
    const gone = event(c, 'disconnected');
    for (const session of sessions(s)) session.close(code, 'again');
    assert.deepEqual(await gone, { code, reason: 'again', reconnect: true });
    assert.equal((await back).reconnected, true);
  }
});

const SECRET = 'a-very-long-test-secret-of-32-bytes!!';
const mint = (seconds: number, sub = 'user-1') =>
  new SignJWT({ wg: { sub: ['x/#'], pub: ['x/#'] } })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setExpirationTime(Math.floor(Date.now() / 1000) + seconds)
    .sign(new TextEncoder().encode(SECRET));

test('auth: token in the Authorization header; 401 without a token source is terminal, and so is a second 401 after a refresh', async (t) => {
  const s = await startGateway(t, { auth: { enabled: true, secret: SECRET } });
  const ok = client(t, s.url, { token: await mint(3600) });
  await ok.connect();
  await ok.subscribe('x/1', () => {});

  const none = client(t, s.url);
  await assert.rejects(none.connect(), (e: ClientError) => e.code === 'CLOSED' && e.status === 401 && /TOKEN_MISSING/.test(e.message));
  assert.equal(none.state, 'closed');

  let calls = 0;
  const bad = client(t, s.url, { getToken: () => (calls++, 'not.a.jwt') });
  await assert.rejects(bad.connect(), (e: ClientError) => e.code === 'CLOSED' && e.status === 401);
  assert.equal(calls, 2, 'one token for the first attempt, one refresh after the first 401, then stop');
});

test('token refresh: the scheduled refresh and the 4002 close race; getToken is called once and the client reconnects with its token', async (t) => {
  const s = await startGateway(t, { auth: { enabled: true, secret: SECRET } });
  let calls = 0;
  let release!: (token: string) => void;
  const fresh = new Promise<string>((r) => (release = r));
  const c = client(t, s.url, {
    token: await mint(2),
    getToken: () => {
      calls++;
      return fresh;
    },
  });
  await c.connect();
  const got: unknown[] = [];
  await c.subscribe('x/1', (m) => got.push(m.payload));
  // the in-band refresh starts before exp, but getToken does not answer before the server's 4002
  const expired = await event(c, 'disconnected', undefined, 8000);
  assert.deepEqual(expired, { code: 4002, reason: 'token expired', reconnect: true });
  assert.equal(calls, 1, 'the scheduled refresh asked');
  await until(() => c.state === 'connecting' && calls === 1, 'a reconnection attempt waiting on the same getToken');
  const back = event(c, 'resubscribed');
  release(await mint(3600));
  await back;
  assert.equal(calls, 1, 'the 4002 trigger shared the refresh in flight');
  await c.publish('x/1', 'after');
  await until(() => got.length === 1, 'a delivery after the reconnect');
});

test('token refresh in band (REFRESH) keeps the connection open past the first token exp', async (t) => {
  const s = await startGateway(t, { auth: { enabled: true, secret: SECRET } });
  let calls = 0;
  const first = await mint(2);
  const expAt = Math.floor(Date.now() / 1000 + 2) * 1000;
  const c = client(t, s.url, { token: first, getToken: () => (calls++, mint(3600)) });
  let lost = 0;
  c.on('disconnected', () => lost++);
  await c.connect();
  await until(() => Date.now() > expAt + 1500, 'the first token to be past its exp and a server sweep', 6000);
  assert.equal(calls, 1);
  assert.equal(lost, 0);
  assert.equal(c.state, 'connected');
  await c.publish('x/1', 'still here');
});

test('offline queue: QUEUE_FULL past max, queued publishes delivered after the reconnect, acknowledged ones time out from when they are sent', async (t) => {
  const s1 = await startGateway(t);
  const c = client(t, s1.url, { offlineQueue: { max: 3 } });
  await c.connect();
  const got: unknown[] = [];
  await c.subscribe('q/#', (m) => got.push(m.payload));
  await s1.gw.close({ drainTimeout: 0 });
  await until(() => c.state !== 'connected', 'the disconnect');
  const t0 = Date.now();
  await c.publish('q/1', 'a', { ack: false }); // resolves once queued
  const acked = c.publish('q/1', 'b', { timeout: 50 });
  await c.publish('q/1', 'c', { ack: false });
  await assert.rejects(c.publish('q/1', 'd', { ack: false }), (e: ClientError) => e.code === 'QUEUE_FULL');
  await assert.rejects(c.publish('q/1', 'e'), (e: ClientError) => e.code === 'QUEUE_FULL');
  let settled = false;
  acked.finally(() => (settled = true)).catch(() => {});
  await until(() => Date.now() - t0 > 200, 'four times the publish timeout');
  assert.equal(settled, false, 'a queued publish does not time out before it is sent');
  await startGateway(t, { port: s1.port });
  await acked;
  await until(() => got.length === 3, 'the queued publishes');
  assert.deepEqual(got, ['a', 'b', 'c'], 'in order, after the resubscription');
});

test('close() fails queued publishes and waiting calls with CLOSED', async (t) => {
  const s = await startGateway(t);
  const c = client(t, s.url);
  const queued = c.publish('q/1', 1); // never connected: queued
  const waiting = c.request('echo', 1);
  const connecting = c.connect();
  await c.close();
  for (const p of [queued, waiting, connecting]) await assert.rejects(p, (e: ClientError) => e.code === 'CLOSED');
  assert.equal(c.state, 'closed');
});

test('a publish without ack just before close() still goes out, ahead of the close frame', async (t) => {
  const s = await startGateway(t);
  const sub = client(t, s.url);
  await sub.connect();
  const got: unknown[] = [];
  await sub.subscribe('last/words', (m) => got.push(m.payload));
  const c = client(t, s.url);
  await c.connect();
  const sent = c.publish('last/words', 'bye', { ack: false });
  await c.close();
  await sent;
  await until(() => got.length === 1, 'the last publish delivered');
  assert.deepEqual(got, ['bye']);
});

test('requests time out with TIMEOUT; calls made while disconnected wait for the connection', async (t) => {
  const s = await startGateway(t);
  s.gw.handle('never', () => new Promise(() => {}));
  s.gw.handle('echo', (_ctx, p) => p);
  const c = client(t, s.url);
  const early = c.request('echo', 'waited'); // before connect(): waits
  await c.connect();
  assert.equal(await early, 'waited');
  const t0 = Date.now();
  await assert.rejects(c.request('never', null, { timeout: 100 }), (e: ClientError) => e.code === 'TIMEOUT');
  assert.ok(Date.now() - t0 < 2000);
  assert.equal(await c.request('echo', 'still usable'), 'still usable');

  // nothing listens here: the request waits for a connection that never comes, then times out
  const dead = client(t, `ws://127.0.0.1:${await freePort()}/ws`);
  dead.connect().catch(() => {});
  await assert.rejects(dead.request('echo', 1, { timeout: 150 }), (e: ClientError) => e.code === 'TIMEOUT');
  assert.equal(dead.state, 'connecting');
});

test('liveness: a link that stops answering PING is dropped and replaced', async (t) => {
  const s = await startGateway(t);
  const c = client(t, s.url, { ping: { interval: 100, timeout: 200 } });
  await c.connect();
  const got: unknown[] = [];
  await c.subscribe('p/1', (m) => got.push(m.payload));
  // the server stops reading this connection: no PONG comes back
  for (const session of sessions(s)) (session.ws as unknown as { _socket: { pause(): void } })._socket.pause();
  const t0 = Date.now();
  const gone = await event(c, 'disconnected');
  assert.deepEqual(gone, { code: 1006, reason: 'ping timeout', reconnect: true });
  assert.ok(Date.now() - t0 < 2000);
  await event(c, 'resubscribed');
  await s.gw.publish('p/1', 'back');
  await until(() => got.length === 1, 'a delivery on the new connection');
});

function freePort(): Promise<number> {
  const srv = createServer();
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => {
    const { port } = srv.address() as AddressInfo;
    srv.close(() => resolve(port));
  }));
}

test('HTTP refusals: 503 with Retry-After delays the next attempt by at least that; 403 is terminal (Node reads the status)', async (t) => {
  let status = 503;
  const srv = createServer();
  srv.on('upgrade', (_req, socket) => {
    const body = JSON.stringify({ error: status === 503 ? 'UNAVAILABLE' : 'ORIGIN_NOT_ALLOWED', message: 'no' });
    socket.end(`HTTP/1.1 ${status} No\r\nRetry-After: 2\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanup(t, () => closeServer(srv));
  const url = `ws://127.0.0.1:${(srv.address() as AddressInfo).port}/ws`;
  const c = client(t, url, { reconnect: { initialDelay: 100, maxDelay: 1000 } });
  c.connect().catch(() => {});
  const second = await event(c, 'connecting', (e) => e.attempt === 2);
  assert.ok(second.delay >= 2000 && second.delay < 2200, `delay ${second.delay}: Retry-After 2 s plus backoff below 200 ms`);
  await c.close();

  status = 403;
  const d = client(t, url);
  await assert.rejects(d.connect(), (e: ClientError) => e.code === 'CLOSED' && e.status === 403 && /ORIGIN_NOT_ALLOWED/.test(e.message));
  assert.equal(d.state, 'closed');
});

test('compression: true offers permessage-deflate (Node only), and compressed deliveries decode', async (t) => {
  const s = await startGateway(t, { compression: { preset: 'fast', threshold: 64 } });
  const c = client(t, s.url, { compression: true });
  await c.connect();
  assert.ok('permessage-deflate' in (sessions(s)[0].ws as unknown as { _extensions: object })._extensions);
  const got: unknown[] = [];
  await c.subscribe('z/1', (m) => got.push(m.payload));
  await c.publish('z/1', { text: 'compressible '.repeat(500) });
  await until(() => got.length === 1, 'the compressed delivery');
  assert.deepEqual(got, [{ text: 'compressible '.repeat(500) }]);
});

test('the GAP a gateway sends when its broker is back: the hole is filled from history, every seq once, in order', async (t) => {
  const s = await startGateway(t, { history: { topics: ['rooms/#=100'] } });
  const c = client(t, s.url);
  const gaps: ClientEvents['gap'][] = [];
  c.on('gap', (e) => gaps.push(e));
  await c.connect();
  const got: Message[] = [];
  await c.subscribe('rooms/1', (m) => got.push(m));
  await c.publish('rooms/1', 1);
  await until(() => got.length === 1, 'the first message');
  // as during a broker outage: the node's subscription is gone while 2..4 are published, then back
  const hub = internals(s.gw).hub;
  const [session] = sessions(s);
  await hub.unsubscribe(session, 'rooms/1');
  for (let i = 2; i <= 4; i++) await s.gw.publish('rooms/1', i);
  await hub.subscribe(session, 'rooms/1');
  session.send(encodeGap('rooms/1', 0));
  await s.gw.publish('rooms/1', 5); // live, right behind the GAP: waits for the fill
  await until(() => got.length >= 5 && gaps.length === 1, 'the fill');
  assert.deepEqual(got.map((m) => m.seq), [1, 2, 3, 4, 5]);
  assert.deepEqual(got.slice(1, 4).map((m) => m.recovered), [true, true, true]);
  assert.deepEqual(gaps, [{ topic: 'rooms/1', dropped: 0, recovered: true }]);
  await c.publish('rooms/1', 6);
  await until(() => got.length === 6, 'live again');
});

test('maxAttempts: the client gives up with DISCONNECTED and says so', async (t) => {
  const c = client(t, `ws://127.0.0.1:${await freePort()}/ws`, { reconnect: { initialDelay: 1, maxDelay: 5, maxAttempts: 3 } });
  const attempts: number[] = [];
  c.on('connecting', (e) => attempts.push(e.attempt));
  await assert.rejects(c.connect(), (e: ClientError) => e.code === 'DISCONNECTED');
  assert.deepEqual(attempts, [1, 2, 3]);
  assert.equal(c.state, 'disconnected');
  assert.equal(c.errors.length, 1);
});
