// Bad-input and limit suite (issue: limits, backpressure, hardening). Each case checks the
// documented response AND that a healthy client connected throughout keeps getting its messages.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { deflateRawSync } from 'node:zlib';
import WebSocket from 'ws';
import { CloseCode, ErrorCode } from '../src/index.js';
import { encode } from '../src/protocol/messages.js';
import { Client, cleanup, connect, rejectedUpgrade, startGateway, type Owner, type Started } from './helpers.js';
import { internals } from '../src/gateway.js';

/** Subscribes a healthy client and returns a probe that checks it still receives. */
async function healthyProbe(t: Owner, s: Started) {
  const c = await connect(t, s.url);
  const topic = `healthy/${Math.random().toString(36).slice(2)}`;
  await c.subscribe(topic);
  let n = 0;
  return {
    client: c,
    async check() {
      n++;
      await s.gw.publish(topic, n);
      const d = await c.delivery(topic);
      assert.equal(d[3], n, 'healthy client got its message');
    },
  };
}

describe('connection limits at the upgrade', () => {
  test('max connections -> 503 with Retry-After', async (t) => {
    const s = await startGateway(t, { limits: { maxConnections: 2 } });
    const h = await healthyProbe(t, s);
    const b = await connect(t, s.url);
    const r = await rejectedUpgrade(t, s.url);
    assert.equal(r.status, 503);
    assert.equal(r.body.error, 'TOO_MANY_CONNECTIONS');
    assert.ok(Number(r.headers['retry-after']) > 0);
    await h.check();
    await b.close();
    await h.client.close();
    await s.gw.close();
  });

  test('per-IP limit -> 429; trustProxy takes the IP from X-Forwarded-For', async (t) => {
    const s = await startGateway(t, { limits: { maxConnectionsPerIp: 2 }, trustProxy: true });
    const h = await healthyProbe(t, s); // from 127.0.0.1 (no XFF)
    const x1 = await connect(t, s.url, 'wiregate.v1', { headers: { 'x-forwarded-for': '10.0.0.1' } });
    const x2 = await connect(t, s.url, 'wiregate.v1', { headers: { 'x-forwarded-for': '1.2.3.4, 10.0.0.1' } }); // client-written 1.2.3.4, proxy-appended 10.0.0.1
    const r = await rejectedUpgrade(t, s.url, 'wiregate.v1', { headers: { 'x-forwarded-for': '10.0.0.1' } });
    assert.equal(r.status, 429);
    assert.equal(r.body.error, 'TOO_MANY_CONNECTIONS_FROM_IP');
    const other = await connect(t, s.url, 'wiregate.v1', { headers: { 'x-forwarded-for': '10.0.0.2' } });
    await x1.close();
    // a slot frees up once the connection is gone
    await waitFor(async () => (await tryConnect(t, s.url, { 'x-forwarded-for': '10.0.0.1' })) === true);
    await h.check();
    await Promise.all([x2.close(), other.close(), h.client.close()]);
    await s.gw.close();
  });

  test('handshake rate per IP -> 429 after the burst', async (t) => {
    const s = await startGateway(t, { limits: { handshakeRate: 1, handshakeBurst: 3 } });
    const cs: Client[] = [];
    for (let i = 0; i < 3; i++) cs.push(await connect(t, s.url));
    const r = await rejectedUpgrade(t, s.url);
    assert.equal(r.status, 429);
    assert.equal(r.body.error, 'HANDSHAKE_RATE_LIMITED');
    assert.ok(r.headers['retry-after']);
    await Promise.all(cs.map((c) => c.close()));
    await s.gw.close();
  });

  test('Origin allow-list -> 403', async (t) => {
    const s = await startGateway(t, { allowedOrigins: ['https://app.example'] });
    const ok = await connect(t, s.url, 'wiregate.v1', { origin: 'https://app.example' });
    const r = await rejectedUpgrade(t, s.url, 'wiregate.v1', { origin: 'https://evil.example' });
    assert.equal(r.status, 403);
    assert.equal(r.body.error, 'ORIGIN_NOT_ALLOWED');
    const none = await rejectedUpgrade(t, s.url);
    assert.equal(none.status, 403);
    await ok.close();
    await s.gw.close();
  });

  test('slowloris: a dribbled upgrade request is dropped within the handshake deadline', async (t) => {
    const s = await startGateway(t, { limits: { handshakeTimeout: 300 } });
    const h = await healthyProbe(t, s);
    const sock = netConnect(s.port, '127.0.0.1');
    cleanup(t, () => sock.destroy());
    await new Promise((r) => sock.once('connect', r));
    sock.write('GET /ws HTTP/1.1\r\nHost: x\r\n');
    let received = '';
    sock.on('data', (d) => (received += d.toString()));
    // keep dribbling one header byte at a time; the server must cut us off anyway
    const drip = setInterval(() => sock.writable && sock.write('X'), 50);
    cleanup(t, () => clearInterval(drip));
    const t0 = Date.now();
    await new Promise((r) => sock.once('close', r));
    clearInterval(drip);
    assert.ok(Date.now() - t0 < 5000, 'dropped well before the default 60 s header timeout');
    assert.ok(received === '' || received.startsWith('HTTP/1.1 408'), received);
    await h.check();
    await h.client.close();
    await s.gw.close();
  });

  test('plain HTTP GET to the WebSocket path -> 426 with a clear body', async (t) => {
    const s = await startGateway(t);
    const r = await fetch(`${s.http}/ws`);
    assert.equal(r.status, 426);
    assert.match(((await r.json()) as { message: string }).message, /wiregate\.v1/);
    await s.gw.close();
  });
});

describe('inbound limits', () => {
  for (const preset of ['fast', 'balanced', 'max'] as const) test(`deflate bomb closes with 1009 without inflating past maxPayload (preset ${preset})`, async (t) => {
    const s = await startGateway(t, { maxPayload: 64 * 1024, compression: { preset } });
    const h = await healthyProbe(t, s);
    const bomb = await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: { threshold: 0 } });
    assert.match(String(bomb.ws.extensions), /permessage-deflate/);
    // 16 MiB of zeros deflates to ~16 KiB: under maxPayload on the wire, far over it inflated
    const zeros = Buffer.alloc(16 * 1024 * 1024);
    assert.ok(deflateRawSync(zeros).length < 64 * 1024);
    const rss0 = process.memoryUsage().rss;
    bomb.ws.send(zeros, { binary: true, compress: true });
    assert.equal((await bomb.closed).code, CloseCode.MESSAGE_TOO_BIG);
    assert.ok(process.memoryUsage().rss - rss0 < 200 * 1024 * 1024);
    await h.check();
    await h.client.close();
    await s.gw.close();
  });

  test('message flood: socket paused, then closed with 4001 on sustained abuse', async (t) => {
    const s = await startGateway(t, { limits: { messageRate: 50, messageBurst: 10, rateLimitGrace: 500 } });
    const h = await healthyProbe(t, s);
    const flood = await connect(t, s.url);
    const ping = encode([5, 0]);
    for (let i = 0; i < 2000; i++) flood.ws.send(ping);
    const closed = await flood.closed;
    assert.equal(closed.code, CloseCode.RATE_LIMITED);
    assert.ok(internals(s.gw).stats.rateLimitCloses >= 1);
    await h.check();
    await h.client.close();
    await s.gw.close();
  });

  test('byte rate: a burst over the budget pauses reading but a compliant pace is served', async (t) => {
    const s = await startGateway(t, { limits: { byteRate: 20_000, byteBurst: 10_000, rateLimitGrace: 10_000 } });
    const c = await connect(t, s.url);
    await c.subscribe('br/t');
    // 15 KB: 5 KB over the burst -> pause ~250 ms, messages still processed in order
    for (let i = 0; i < 3; i++) c.publish('br/t', Buffer.alloc(5000, i));
    for (let i = 0; i < 3; i++) assert.equal(((await c.delivery('br/t'))[3] as Buffer)[0], i);
    assert.ok(internals(s.gw).stats.rateLimitPauses >= 1);
    await c.close();
    await s.gw.close();
  });

  test('maxTopicLength and maxTopicLevels are enforced', async (t) => {
    const s = await startGateway(t, { limits: { maxTopicLength: 10, maxTopicLevels: 2 } });
    const c = await connect(t, s.url);
    assert.equal((await c.subscribe('a'.repeat(11)))[2], ErrorCode.INVALID_TOPIC);
    assert.equal((await c.publish('a/b/c', 1))[2], ErrorCode.INVALID_TOPIC);
    assert.deepEqual(await c.subscribe('a/b'), [16, 3]);
    await c.close();
    await s.gw.close();
  });
});

describe('outbound backpressure', () => {
  const variants = [
    { name: 'close', outbound: { policy: 'close' as const }, expect: 'close' },
    { name: 'drop', outbound: { policy: 'drop' as const }, expect: 'drop' },
    { name: 'close with a per-topic drop override', outbound: { policy: 'close' as const, topicPolicies: ['other/#=close', 'flood/#=drop'] }, expect: 'drop' },
  ];
  // What the gateway may hold for one connection (docs/security.md, src/connection/outbound.ts):
  // the budget, plus what was sent to it in one event-loop turn. The test controls a turn's sends:
  // PER_TURN messages published synchronously, then it waits for the next turn. Each is written as
  // one frame of a little over 4 KiB; TURN_BYTES over-estimates the heads and covers the small GAP
  // or close frame a turn may add.
  const budget = 256 * 1024;
  const payload = Buffer.alloc(4096, 7);
  const PER_TURN = 16;
  const TURN_BYTES = PER_TURN * (payload.length + 64);
  /** Resolves in a later turn, after the gateway's end-of-turn flush (a setImmediate it queued first). */
  const nextTurn = () => new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));

  for (const v of variants) {
    const policy = v.expect;
    test(`slow reader under policy ${v.name}: the server holds at most budget + one turn for it, healthy subscriber gets everything`, async (t) => {
      const s = await startGateway(t, { outbound: { maxBufferedBytes: budget, ...v.outbound } });
      // The server side of the slow connection, as the onConnection hook receives it: a Session,
      // whose ws is ws's server-side WebSocket. Its bufferedAmount is every byte written for the
      // connection that the kernel has not taken, whatever the gateway's budget counts.
      let slowServer = null as WebSocket | null;
      s.gw.hook('onConnection', (conn) => {
        if (conn.url.endsWith('?slow')) slowServer = (conn as unknown as { ws: WebSocket }).ws;
      });
      const healthy = await connect(t, s.url);
      await healthy.subscribe('flood/t');
      let received = 0;
      healthy.ws.on('message', () => void received++);
      const slow = await connect(t, `${s.url}?slow`);
      await slow.subscribe('flood/t');
      assert.ok(slowServer !== null, 'onConnection saw the slow connection');
      const server = slowServer;
      // stop reading: the kernel's buffers fill, then what the server holds for it grows
      const slowSock = (slow.ws as unknown as { _socket: Socket })._socket;
      slowSock.pause();
      const rt = internals(s.gw);
      const acted = () => (policy === 'close' ? rt.stats.slowConsumerCloses : rt.stats.deliveriesDropped) > 0;
      // One turn at a time until the policy has acted and 4x the budget more was published (none of
      // it may be queued for the slow reader), or 32 MiB in all: far more than loopback's kernel
      // buffers take, so a gateway that does not enforce the budget holds megabytes here.
      const maxTurns = Math.ceil((32 << 20) / TURN_BYTES);
      const turnsAfter = Math.ceil((4 * budget) / TURN_BYTES);
      let sent = 0;
      let maxHeld = 0;
      for (let turn = 0, after = 0; turn < maxTurns && after < turnsAfter; turn++) {
        for (let i = 0; i < PER_TURN; i++) void s.gw.publish('flood/t', payload);
        sent += PER_TURN;
        await nextTurn(); // this turn's writes have been offered to the kernel: what is left, the server holds
        maxHeld = Math.max(maxHeld, server.bufferedAmount);
        if (acted()) after++;
      }
      assert.ok(maxHeld <= budget + TURN_BYTES, `the server held ${maxHeld} bytes for a client that stopped reading: more than the ${budget} budget + ${TURN_BYTES} sent in one turn`);
      assert.ok(acted(), `the ${policy} policy acted (${sent} messages of ${payload.length} bytes published)`);
      // The policy acts only on a backlog over the budget, left from an earlier turn (or, counting
      // this turn's writes too, over budget - TURN_BYTES): the samples must have seen it.
      assert.ok(maxHeld > budget - TURN_BYTES, `the samples saw the backlog the policy acted on (max ${maxHeld})`);
      await until(() => received === sent, 10_000, () => `healthy subscriber received ${received} of ${sent}`);
      if (policy === 'close') {
        assert.equal(rt.stats.slowConsumerCloses, 1);
        slowSock.resume();
        const c = await slow.closed;
        assert.equal(c.code, CloseCode.SLOW_CONSUMER, `closed with ${c.code} ${c.reason}`);
      } else {
        assert.equal(rt.stats.slowConsumerCloses, 0);
        assert.equal(slow.ws.readyState, WebSocket.OPEN, 'drop policy keeps the connection');
        slowSock.resume();
        await until(() => server.bufferedAmount === 0, 10_000, () => `slow reader catching up (${server.bufferedAmount} left)`);
        await s.gw.publish('flood/t', 'after');
        await slow.next((m) => m[0] === 18 && m[3] === 'after');
        // every message is accounted for: delivered, or counted in a GAP before the next delivery
        const gaps = slow.messages.filter((m) => (m as unknown[])[0] === 21) as Array<[number, string, number]>;
        const delivered = slow.messages.filter((m) => (m as unknown[])[0] === 18).length;
        assert.ok(gaps.length > 0, 'the slow reader got a GAP');
        for (const g of gaps) assert.ok(g[1] === 'flood/t' && g[2] > 0, `GAP ${JSON.stringify(g)}`);
        const dropped = gaps.reduce((n, g) => n + g[2], 0);
        assert.equal(dropped, rt.stats.deliveriesDropped, 'GAPs count every dropped delivery');
        assert.equal(delivered + dropped, sent, 'each message was delivered or counted in a GAP');
      }
      await slow.close();
      await healthy.close();
      await s.gw.close();
    });
  }
});

async function tryConnect(t: Owner, url: string, headers: Record<string, string>): Promise<boolean> {
  try {
    const c = await connect(t, url, 'wiregate.v1', { headers });
    await c.close();
    return true;
  } catch {
    return false;
  }
}

async function waitFor(pred: () => Promise<boolean>, tries = 50): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await pred()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error('condition not met');
}

async function until(pred: () => boolean, ms: number, what: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out: ${what()}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
