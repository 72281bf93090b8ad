// Bad-input and limit suite (issue: limits, backpressure, hardening). Each case checks the
// documented response AND that a healthy client connected throughout keeps getting its messages.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { deflateRawSync } from 'node:zlib';
import WebSocket from 'ws';
import { CloseCode, ErrorCode } from '../src/index.js';
import { encode } from '../src/protocol/messages.js';
import { Client, connect, rejectedUpgrade, startGateway, type Started } from './helpers.js';
import { internals } from '../src/gateway.js';

/** Subscribes a healthy client and returns a probe that checks it still receives. */
async function healthyProbe(s: Started) {
  const c = await connect(s.url);
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
  test('max connections -> 503 with Retry-After', async () => {
    const s = await startGateway({ limits: { maxConnections: 2 } });
    const h = await healthyProbe(s);
    const b = await connect(s.url);
    const r = await rejectedUpgrade(s.url);
    assert.equal(r.status, 503);
    assert.equal(r.body.error, 'TOO_MANY_CONNECTIONS');
    assert.ok(Number(r.headers['retry-after']) > 0);
    await h.check();
    await b.close();
    await h.client.close();
    await s.gw.close();
  });

  test('per-IP limit -> 429; trustProxy takes the IP from X-Forwarded-For', async () => {
    const s = await startGateway({ limits: { maxConnectionsPerIp: 2 }, trustProxy: true });
    const h = await healthyProbe(s); // from 127.0.0.1 (no XFF)
    const x1 = await connect(s.url, 'wiregate.v1', { headers: { 'x-forwarded-for': '10.0.0.1' } });
    const x2 = await connect(s.url, 'wiregate.v1', { headers: { 'x-forwarded-for': '1.2.3.4, 10.0.0.1' } }); // client-written 1.2.3.4, proxy-appended 10.0.0.1
    const r = await rejectedUpgrade(s.url, 'wiregate.v1', { headers: { 'x-forwarded-for': '10.0.0.1' } });
    assert.equal(r.status, 429);
    assert.equal(r.body.error, 'TOO_MANY_CONNECTIONS_FROM_IP');
    const other = await connect(s.url, 'wiregate.v1', { headers: { 'x-forwarded-for': '10.0.0.2' } });
    await x1.close();
    // a slot frees up once the connection is gone
    await waitFor(async () => (await tryConnect(s.url, { 'x-forwarded-for': '10.0.0.1' })) === true);
    await h.check();
    await Promise.all([x2.close(), other.close(), h.client.close()]);
    await s.gw.close();
  });

  test('handshake rate per IP -> 429 after the burst', async () => {
    const s = await startGateway({ limits: { handshakeRate: 1, handshakeBurst: 3 } });
    const cs: Client[] = [];
    for (let i = 0; i < 3; i++) cs.push(await connect(s.url));
    const r = await rejectedUpgrade(s.url);
    assert.equal(r.status, 429);
    assert.equal(r.body.error, 'HANDSHAKE_RATE_LIMITED');
    assert.ok(r.headers['retry-after']);
    await Promise.all(cs.map((c) => c.close()));
    await s.gw.close();
  });

  test('Origin allow-list -> 403', async () => {
    const s = await startGateway({ allowedOrigins: ['https://app.example'] });
    const ok = await connect(s.url, 'wiregate.v1', { origin: 'https://app.example' });
    const r = await rejectedUpgrade(s.url, 'wiregate.v1', { origin: 'https://evil.example' });
    assert.equal(r.status, 403);
    assert.equal(r.body.error, 'ORIGIN_NOT_ALLOWED');
    const none = await rejectedUpgrade(s.url);
    assert.equal(none.status, 403);
    await ok.close();
    await s.gw.close();
  });

  test('slowloris: a dribbled upgrade request is dropped within the handshake deadline', async () => {
    const s = await startGateway({ limits: { handshakeTimeout: 300 } });
    const h = await healthyProbe(s);
    const sock = netConnect(s.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.write('GET /ws HTTP/1.1\r\nHost: x\r\n');
    let received = '';
    sock.on('data', (d) => (received += d.toString()));
    // keep dribbling one header byte at a time; the server must cut us off anyway
    const drip = setInterval(() => sock.writable && sock.write('X'), 50);
    const t0 = Date.now();
    await new Promise((r) => sock.once('close', r));
    clearInterval(drip);
    assert.ok(Date.now() - t0 < 5000, 'dropped well before the default 60 s header timeout');
    assert.ok(received === '' || received.startsWith('HTTP/1.1 408'), received);
    await h.check();
    await h.client.close();
    await s.gw.close();
  });

  test('plain HTTP GET to the WebSocket path -> 426 with a clear body', async () => {
    const s = await startGateway();
    const r = await fetch(`${s.http}/ws`);
    assert.equal(r.status, 426);
    assert.match(((await r.json()) as { message: string }).message, /wiregate\.v1/);
    await s.gw.close();
  });
});

describe('inbound limits', () => {
  for (const preset of ['fast', 'balanced', 'max'] as const) test(`deflate bomb closes with 1009 without inflating past maxPayload (preset ${preset})`, async () => {
    const s = await startGateway({ maxPayload: 64 * 1024, compression: { preset } });
    const h = await healthyProbe(s);
    const bomb = await connect(s.url, 'wiregate.v1', { perMessageDeflate: { threshold: 0 } });
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

  test('message flood: socket paused, then closed with 4001 on sustained abuse', async () => {
    const s = await startGateway({ limits: { messageRate: 50, messageBurst: 10, rateLimitGrace: 500 } });
    const h = await healthyProbe(s);
    const flood = await connect(s.url);
    const ping = encode([5, 0]);
    for (let i = 0; i < 2000; i++) flood.ws.send(ping);
    const closed = await flood.closed;
    assert.equal(closed.code, CloseCode.RATE_LIMITED);
    assert.ok(internals(s.gw).stats.rateLimitCloses >= 1);
    await h.check();
    await h.client.close();
    await s.gw.close();
  });

  test('byte rate: a burst over the budget pauses reading but a compliant pace is served', async () => {
    const s = await startGateway({ limits: { byteRate: 20_000, byteBurst: 10_000, rateLimitGrace: 10_000 } });
    const c = await connect(s.url);
    await c.subscribe('br/t');
    // 15 KB: 5 KB over the burst -> pause ~250 ms, messages still processed in order
    for (let i = 0; i < 3; i++) c.publish('br/t', Buffer.alloc(5000, i));
    for (let i = 0; i < 3; i++) assert.equal(((await c.delivery('br/t'))[3] as Buffer)[0], i);
    assert.ok(internals(s.gw).stats.rateLimitPauses >= 1);
    await c.close();
    await s.gw.close();
  });

  test('maxTopicLength and maxTopicLevels are enforced', async () => {
    const s = await startGateway({ limits: { maxTopicLength: 10, maxTopicLevels: 2 } });
    const c = await connect(s.url);
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
  for (const v of variants) {
    const policy = v.expect;
    test(`slow reader under policy ${v.name}: memory bounded, healthy subscriber gets everything`, async () => {
      const budget = 256 * 1024;
      const s = await startGateway({ outbound: { maxBufferedBytes: budget, ...v.outbound } });
      const healthy = await connect(s.url);
      await healthy.subscribe('flood/t');
      const slow = await connect(s.url);
      await slow.subscribe('flood/t');
      // stop reading: the kernel buffers fill, then ws.bufferedAmount grows on the server
      (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
      const payload = Buffer.alloc(4096, 7);
      const total = 2000; // 8 MB in all, 32x the budget
      let received = 0;
      const done = new Promise<void>((resolve) => {
        healthy.ws.on('message', () => {
          if (++received === total) resolve();
        });
      });
      healthy.messages.length = 0;
      let maxBuffered = 0;
      const slowSession = [...internals(s.gw).sessions][1]; // sessions are kept in connection order
      for (let i = 0; i < total; i++) {
        await s.gw.publish('flood/t', payload);
        if (slowSession.ws.readyState === 1) maxBuffered = Math.max(maxBuffered, slowSession.ws.bufferedAmount);
        // yield to I/O now and then so the healthy socket drains
        if (i % 50 === 0) await new Promise((r) => setImmediate(r));
      }
      await done;
      assert.equal(received, total, 'healthy subscriber received every message');
      assert.ok(maxBuffered <= budget, `buffered ${maxBuffered} stayed within the ${budget} budget`);
      if (policy === 'close') {
        assert.equal(internals(s.gw).stats.slowConsumerCloses, 1);
        (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
        const c = await slow.closed;
        assert.ok(c.code === CloseCode.SLOW_CONSUMER || c.code === 1006, `closed with ${c.code}`);
      } else {
        assert.ok(internals(s.gw).stats.deliveriesDropped > 0);
        assert.equal(slow.ws.readyState, WebSocket.OPEN, 'drop policy keeps the connection');
        (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
        await waitFor(async () => slowSession.ws.bufferedAmount === 0, 100_000);
        await s.gw.publish('flood/t', 'after');
        const gap = await slow.next((m) => m[0] === 21);
        assert.equal(gap[1], 'flood/t');
        assert.ok((gap[2] as number) > 0);
        await slow.close();
      }
      await healthy.close();
      await s.gw.close();
    });
  }
});

async function tryConnect(url: string, headers: Record<string, string>): Promise<boolean> {
  try {
    const c = await connect(url, 'wiregate.v1', { headers });
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
