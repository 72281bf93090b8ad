import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { Packr } from 'msgpackr';
import { ReplyError, createGateway, CloseCode, ErrorCode } from '../src/index.js';
import { decodeFrame, encode } from '../src/protocol/messages.js';
import { FAST, cleanup, closeServer, connect, once, rejectedUpgrade, startGateway, type Started } from './helpers.js';
import { internals } from '../src/gateway.js';

describe('pub/sub', () => {
  let s: Started;
  before(async () => {
    s = await startGateway();
  });
  after(() => s.gw.close());

  test('exact and wildcard subscriptions across several clients', async (t) => {
    const [a, b, c, pub] = await Promise.all([connect(t, s.url), connect(t, s.url), connect(t, s.url), connect(t, s.url)]);
    assert.deepEqual(await a.subscribe('sensors/42/temp'), [16, 1]);
    assert.deepEqual(await b.subscribe('sensors/+/temp'), [16, 1]);
    assert.deepEqual(await c.subscribe('sensors/#'), [16, 1]);
    const r = await pub.publish('sensors/42/temp', { v: 21.5 });
    assert.deepEqual(r, [16, 1, 1], 'publish ack carries the sequence number');
    for (const cl of [a, b, c]) assert.deepEqual(await cl.delivery(), [18, 'sensors/42/temp', 1, { v: 21.5 }]);

    await pub.publish('sensors/7/humidity', 55);
    assert.deepEqual(await c.delivery(), [18, 'sensors/7/humidity', 1, 55]);
    await pub.publish('sensors/42/temp', 22);
    assert.deepEqual(await b.delivery(), [18, 'sensors/42/temp', 2, 22], 'seq increases per topic');
    assert.deepEqual(await a.delivery(), [18, 'sensors/42/temp', 2, 22]);
    assert.deepEqual(await c.delivery(), [18, 'sensors/42/temp', 2, 22]);
    // a and b never saw humidity
    assert.equal(a.messages.length + b.messages.length, 0);
    await Promise.all([a, b, c, pub].map((x) => x.close()));
  });

  test('overlapping patterns deliver once; noEcho excludes the publisher; unsubscribe stops delivery', async (t) => {
    const a = await connect(t, s.url);
    await a.subscribe('game/+/state');
    await a.subscribe('game/#');
    await a.publish('game/1/state', 'x');
    assert.deepEqual(await a.delivery(), [18, 'game/1/state', 1, 'x']);
    await a.publish('game/1/state', 'y', { noEcho: true });
    await a.publish('game/2/state', 'z');
    const d = await a.delivery();
    assert.deepEqual(d, [18, 'game/2/state', 1, 'z'], 'no duplicate and no echo of y');
    assert.equal((await a.call(2, 'game/#'))[0], 16);
    assert.equal((await a.call(2, 'game/+/state'))[0], 16);
    await a.publish('game/3/state', 'w');
    const pong = await a.call(5);
    assert.equal(pong[0], 20, 'app-level ping answered with pong');
    assert.equal(a.messages.length, 0, 'no delivery after unsubscribe');
    await a.close();
  });

  test('server-side publish reaches subscribers, subscriptions are cleaned up on close', async (t) => {
    const a = await connect(t, s.url);
    await a.subscribe('alerts/#');
    const { seq } = await s.gw.publish('alerts/fire', { level: 3 });
    assert.equal(seq, 1);
    assert.deepEqual(await a.delivery(), [18, 'alerts/fire', 1, { level: 3 }]);
    assert.ok(internals(s.gw).stats.subscriptions >= 1);
    await a.close();
    await waitUntil(() => s.gw.connections === 0);
    assert.equal(internals(s.gw).stats.subscriptions, 0);
    assert.equal(internals(s.gw).hub.patternCount, 0);
    await assert.rejects(s.gw.publish('bad/+', 1), /invalid topic/);
  });

  test('a frame may carry several messages', async (t) => {
    const a = await connect(t, s.url);
    a.send([1, 1, 'batch/t'], [3, 2, 'batch/t', 'one'], [3, 3, 'batch/t', 'two']);
    assert.deepEqual(await a.next((m) => m[0] === 16 && m[1] === 3), [16, 3, 2]);
    assert.deepEqual((await a.delivery())[3], 'one');
    assert.deepEqual((await a.delivery())[3], 'two');
    await a.close();
  });
});

describe('request/response', () => {
  let s: Started;
  before(async () => {
    s = await startGateway({ requestTimeout: 100 });
    s.gw.handle('echo', (_ctx, p) => p);
    s.gw.handle('add', async (_ctx, p) => {
      const { a, b } = p as { a: number; b: number };
      return a + b;
    });
    s.gw.handle('whoami', (ctx) => ({ id: ctx.connection.id, method: ctx.method }));
    s.gw.handle('fail', () => {
      throw new ReplyError(4040, 'no such thing');
    });
    s.gw.handle('crash', async () => {
      throw new Error('secret internals');
    });
    s.gw.handle('slow', () => new Promise(() => {}));
  });
  after(() => s.gw.close());

  test('sync and async handlers, context, errors and timeouts', async (t) => {
    const c = await connect(t, s.url);
    const bin = new Uint8Array([1, 2, 3]);
    const echo = await c.request('echo', { bin, n: [1, 2] });
    assert.equal(echo[0], 16);
    assert.deepEqual(echo[2], { bin: Buffer.from(bin), n: [1, 2] });
    assert.deepEqual((await c.request('add', { a: 2, b: 3 })).slice(0, 3), [16, 2, 5]);
    const who = (await c.request('whoami'))[2] as { id: number; method: string };
    assert.equal(who.method, 'whoami');
    assert.equal(typeof who.id, 'number');
    assert.deepEqual(await c.request('fail'), [17, 4, 4040, 'no such thing']);
    assert.deepEqual(await c.request('crash'), [17, 5, ErrorCode.HANDLER_ERROR, 'handler failed']);
    assert.deepEqual(await c.request('nope'), [17, 6, ErrorCode.UNKNOWN_METHOD, 'unknown method nope']);
    const timedOut = await c.request('slow');
    assert.equal(timedOut[2], ErrorCode.TIMEOUT);
    // the connection is still fine afterwards
    assert.deepEqual((await c.request('echo', 'ok')).slice(2), ['ok']);
    await c.close();
  });

  test('large binary results are written in pieces and arrive byte-exact, in order with small ones', async (t) => {
    const big = await startGateway(t, { maxPayload: 256 * 1024 });
    big.gw.handle('echo', (_ctx, p) => p);
    const c = await connect(t, big.url);
    // sizes around each msgpack bin header (8/16/32-bit) and WebSocket length form (7/16/64-bit)
    const sizes = [1023, 1024, 65535 - 20, 65536 - 20, 65536 + 5, 20_000, 0, 5];
    const bins = sizes.map((n, i) => Uint8Array.from({ length: n }, (_, k) => (k * 31 + i) & 0xff));
    const ids = bins.map(() => c.id());
    const order: number[] = [];
    c.ws.on('message', (d: Buffer) => order.push((decodeFrame(d)[0] as number[])[1]));
    for (let i = 0; i < bins.length; i++) c.send([4, ids[i], 'echo', bins[i]]); // one frame each, one tick
    for (let i = 0; i < bins.length; i++) {
      const r = await c.next((m) => Array.isArray(m) && m[1] === ids[i]);
      assert.equal(r[0], 16);
      assert.ok(Buffer.from(bins[i]).equals(r[2] as Buffer), `echo of ${sizes[i]} bytes`);
    }
    assert.deepEqual(c.messages, []);
    assert.deepEqual(order, ids, 'replies in request order');
    await c.close();
    await big.gw.close();
  });

  test('headers: all during onConnection, then only retainHeaders', async (t) => {
    for (const [retain, expected] of [
      [[], {}],
      [['X-Device', 'x-missing'], { 'x-device': 'd-42' }],
    ] as const) {
      const g = await startGateway(t, { retainHeaders: [...retain] });
      const seen: Record<string, unknown>[] = [];
      g.gw.hook('onConnection', (conn) => void seen.push({ ...conn.headers }));
      g.gw.handle('headers', (ctx) => ({ ...ctx.connection.headers }));
      const c = await connect(t, g.url, 'wiregate.v1', { headers: { 'X-Device': 'd-42', 'User-Agent': 'ua' } });
      assert.deepEqual((await c.request('headers'))[2], expected);
      assert.equal(seen[0]['x-device'], 'd-42');
      assert.equal(seen[0]['user-agent'], 'ua');
      await c.close();
      await g.gw.close();
    }
  });

  test('ReplyError rejects codes below the application range', () => {
    assert.throws(() => new ReplyError(5, 'x'), RangeError);
    assert.equal(new ReplyError(ErrorCode.FORBIDDEN, 'x').code, 104);
  });
});

describe('bad input keeps the gateway serving others', () => {
  let s: Started;
  before(async () => {
    s = await startGateway({ limits: { maxSubscriptions: 2, maxProtocolErrors: 3 } });
  });
  after(() => s.gw.close());

  test('text frame -> 1003, malformed msgpack -> 1007, healthy client keeps receiving', async (t) => {
    const healthy = await connect(t, s.url);
    await healthy.subscribe('h/t');
    const text = await connect(t, s.url);
    text.ws.send('hello');
    assert.equal((await text.closed).code, CloseCode.UNSUPPORTED_DATA);
    const bad = await connect(t, s.url);
    bad.ws.send(Buffer.from([0x93, 0x01])); // array of 3 with one element
    assert.equal((await bad.closed).code, CloseCode.INVALID_PAYLOAD);
    const deep = await connect(t, s.url);
    deep.ws.send(Buffer.alloc(1000, 0x91));
    assert.equal((await deep.closed).code, CloseCode.INVALID_PAYLOAD);
    const huge = await connect(t, s.url);
    huge.ws.send(Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]));
    assert.equal((await huge.closed).code, CloseCode.INVALID_PAYLOAD);
    await s.gw.publish('h/t', 'still here');
    assert.deepEqual(await healthy.delivery(), [18, 'h/t', 1, 'still here']);
    await healthy.close();
  });

  test('semantic errors get ERROR replies; too many close with 4500', async (t) => {
    const c = await connect(t, s.url);
    c.send([99, 7]);
    assert.deepEqual(await c.next(), [17, 7, ErrorCode.UNKNOWN_TYPE, 'unknown message type 99']);
    c.send({ not: 'an array' });
    assert.deepEqual(await c.next(), [17, 0, ErrorCode.BAD_REQUEST, 'message must be a non-empty array']);
    const r = await c.call(1, 'a/#/b');
    assert.equal(r[2], ErrorCode.INVALID_TOPIC);
    assert.equal((await c.closed).code, CloseCode.BAD_PROTOCOL);
  });

  test('field types, topic rules and subscription limit', async (t) => {
    const c = await connect(t, s.url);
    c.send([3, 'x', 't', 1]);
    assert.deepEqual((await c.next()).slice(0, 3), [17, 0, ErrorCode.BAD_REQUEST]);
    assert.equal((await c.call(3, 'a/+', 1))[2], ErrorCode.INVALID_TOPIC);
    await c.close();
    const d = await connect(t, s.url);
    assert.equal((await d.call(3, 'bad topic', 1))[2], ErrorCode.INVALID_TOPIC);
    assert.equal((await d.call(4, '', 1))[2], ErrorCode.BAD_REQUEST);
    await d.close();
    const e = await connect(t, s.url);
    await e.subscribe('a');
    await e.subscribe('b');
    assert.equal((await e.subscribe('c'))[2], ErrorCode.TOO_MANY_SUBSCRIPTIONS);
    assert.deepEqual(await e.subscribe('a'), [16, 4], 'resubscribing is idempotent');
    await e.close();
  });

  test('oversize frame closes with 1009', async (t) => {
    const small = await startGateway(t, { maxPayload: 1024 });
    const c = await connect(t, small.url);
    c.ws.send(Buffer.alloc(2048));
    assert.equal((await c.closed).code, CloseCode.MESSAGE_TOO_BIG);
    await small.gw.close();
  });
});

describe('wiregate.v1.batch: one frame per tick', () => {
  /** A masked client frame with a zero key (payload as given), to put several frames in one TCP write. */
  const clientFrame = (payload: Uint8Array) => {
    assert.ok(payload.length < 126);
    return Buffer.concat([Buffer.from([0x82, 0x80 | payload.length, 0, 0, 0, 0]), payload]);
  };

  test('deliveries of one tick share a frame for batch clients only, in order', async (t) => {
    const s = await startGateway(t);
    const b = await connect(t, s.url, ['wiregate.v1.batch']);
    const v1 = await connect(t, s.url, 'wiregate.v1');
    assert.equal(b.ws.protocol, 'wiregate.v1.batch');
    await b.subscribe('bt/#');
    await v1.subscribe('bt/#');
    const f0 = [b.frames, v1.frames];
    for (let i = 0; i < 50; i++) void s.gw.publish(`bt/${i % 3}`, { i });
    for (let i = 0; i < 50; i++) {
      assert.deepEqual((await b.delivery())[3], { i });
      assert.deepEqual((await v1.delivery())[3], { i });
    }
    assert.equal(v1.frames - f0[1], 50, 'wiregate.v1: one message per frame');
    // batching needs direct writes and the close hook; without them a batch client gets one message per frame (allowed)
    assert.equal(b.frames - f0[0], FAST.directWrites && FAST.closeHook ? 1 : 50, 'wiregate.v1.batch: the whole tick in one frame');
    await Promise.all([b.close(), v1.close()]);
    await s.gw.close();
  });

  test('frames stay under 64 KiB; compressed messages and large binary results keep their place', async (t) => {
    const s = await startGateway(t, { compression: { preset: 'fast', threshold: 2000 }, maxPayload: 1024 * 1024 });
    s.gw.handle('echo', (_c, p) => p);
    const b = await connect(t, s.url, ['wiregate.v1.batch'], { perMessageDeflate: true });
    await b.subscribe('big/#');
    const f0 = b.frames;
    const sizes = Array.from({ length: 200 }, (_, i) => (i % 50 === 49 ? 5000 : 1000)); // every 50th is compressed
    sizes.forEach((n, i) => void s.gw.publish(`big/${i}`, 'x'.repeat(n)));
    for (let i = 0; i < sizes.length; i++) assert.equal(((await b.delivery())[3] as string).length, sizes[i], `delivery ${i}`);
    const frames = b.frames - f0;
    if (FAST.directWrites && FAST.closeHook) {
      assert.ok(frames >= 4 + 4 && frames < 20, `${frames} frames: batches capped at 64 KiB, compressed ones apart`);
      assert.ok(internals(s.gw).writer.deflated >= 4);
    } else assert.equal(frames, sizes.length, 'fast paths off: one message per frame');
    // requests answered in one tick: small replies batched around a large binary reply
    const big = Buffer.alloc(10_000, 7);
    const ids = [b.id(), b.id(), b.id()];
    b.send([4, ids[0], 'echo', 'a'], [4, ids[1], 'echo', big], [4, ids[2], 'echo', 'c']);
    const order: unknown[] = [];
    for (const id of ids) order.push((await b.next((m) => m[1] === id))[2]);
    assert.deepEqual(order, ['a', big, 'c']);
    await b.close();
    await s.gw.close();
  });

  test('a message larger than a batch frame still reaches a batch client, alone and in order', async (t) => {
    const s = await startGateway(t, { maxPayload: 1024 * 1024 });
    s.gw.handle('echo', (_c, p) => p);
    const b = await connect(t, s.url, ['wiregate.v1.batch']);
    const other = await connect(t, s.url);
    await b.subscribe('huge/#');
    await other.subscribe('huge/#');
    const huge = 'h'.repeat(100_000); // over the 64 KiB batch cap on its own, first of its tick
    void s.gw.publish('huge/1', huge);
    void s.gw.publish('huge/2', 'after');
    assert.equal((await b.delivery())[3], huge);
    assert.equal((await b.delivery())[3], 'after');
    assert.equal((await other.delivery())[3], huge, 'other subscribers of the same broadcast still served');
    assert.equal((await other.delivery())[3], 'after');
    const id = b.id();
    b.send([4, id, 'echo', { s: huge }]);
    assert.deepEqual((await b.next((m) => m[1] === id))[2], { s: huge }, 'a large (non-binary) result too');
    await Promise.all([b.close(), other.close()]);
    await s.gw.close();
  });

  /** Opcodes of the server frames in `bytes` (servers never mask). */
  const opcodes = (bytes: Buffer): number[] => {
    const ops: number[] = [];
    for (let p = 0; p < bytes.length; ) {
      let len = bytes[p + 1] & 0x7f;
      let h = 2;
      if (len === 126) (len = bytes.readUInt16BE(p + 2)), (h = 4);
      else if (len === 127) (len = Number(bytes.readBigUInt64BE(p + 2))), (h = 10);
      ops.push(bytes[p] & 0x0f);
      p += h + len;
    }
    return ops;
  };
  /** Every byte the server sends on this client's socket, whatever ws does with it. */
  const tap = (c: { ws: WebSocket }) => {
    const sock = (c.ws as unknown as { _socket: import('node:net').Socket })._socket;
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    const ended = once(sock, 'close');
    return { sock, ended, bytes: () => Buffer.concat(chunks) };
  };

  test("batched replies go out before ws's answer to the client's close frame from the same read", async (t) => {
    const s = await startGateway(t);
    const b = await connect(t, s.url, ['wiregate.v1.batch']);
    const tp = tap(b);
    const close = Buffer.from([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]); // masked close 1000, zero key
    tp.sock.write(Buffer.concat([clientFrame(encode([5, 1])), clientFrame(encode([5, 2])), close]));
    assert.equal((await b.closed).code, 1000);
    await tp.ended;
    const ops = opcodes(tp.bytes());
    assert.deepEqual(ops, FAST.directWrites && FAST.closeHook ? [2, 8] : [2, 2, 8], `the pongs (one batch frame with the fast paths), then the close frame (got ${ops})`);
    await s.gw.close();
  });

  test('a slow-consumer close drops what the tick batched: nothing follows the close frame', async (t) => {
    const s = await startGateway(t, { outbound: { maxBufferedBytes: 4096 } });
    const b = await connect(t, s.url, ['wiregate.v1.batch']);
    await b.subscribe('flood/#');
    const tp = tap(b);
    tp.sock.pause(); // the client stops reading: the kernel's buffers fill, then the backlog grows
    const rt = internals(s.gw);
    for (let i = 0; i < 5000 && rt.stats.slowConsumerCloses === 0; i++) {
      for (let j = 0; j < 8; j++) void s.gw.publish('flood/x', 'y'.repeat(16 * 1024)); // batched in this tick
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(rt.stats.slowConsumerCloses, 1);
    tp.sock.resume();
    assert.equal((await b.closed).code, CloseCode.SLOW_CONSUMER);
    await tp.ended;
    const ops = opcodes(tp.bytes());
    assert.equal(ops.at(-1), 8, `the close frame is the last frame (got ${ops.length} frames, last ${ops.slice(-3)})`);
  });

  test('batched replies reach the client before a close frame from the same tick', async (t) => {
    const s = await startGateway(t);
    const b = await connect(t, s.url, ['wiregate.v1.batch']);
    const sock = (b.ws as unknown as { _socket: { write(x: Buffer): void } })._socket;
    sock.write(Buffer.concat([clientFrame(encode([5, 1])), clientFrame(encode([5, 2])), clientFrame(Buffer.from([0xc1]))]));
    assert.deepEqual(await b.next((m) => m[0] === 20 && m[1] === 1), [20, 1]);
    assert.deepEqual(await b.next((m) => m[0] === 20 && m[1] === 2), [20, 2]);
    assert.equal((await b.closed).code, CloseCode.INVALID_PAYLOAD);
    await s.gw.close();
  });
});

describe('upgrade policy and HTTP', () => {
  test('subprotocol negotiation, wrong path, plain GET', async (t) => {
    const s = await startGateway(t, { httpPublish: { apiKey: 'k' } });
    const c = await connect(t, s.url, ['wiregate.v1.batch', 'wiregate.v1']);
    assert.equal(c.ws.protocol, 'wiregate.v1.batch');
    await c.close();
    const none = await connect(t, s.url, []);
    assert.equal(none.ws.protocol, '', 'no subprotocol offered is accepted as v1 by default');
    await none.close();
    const wrong = await rejectedUpgrade(t, s.url, ['mqtt']);
    assert.equal(wrong.status, 426);
    assert.equal(wrong.body.error, 'SUBPROTOCOL_REQUIRED');
    const path = await rejectedUpgrade(t, `ws://127.0.0.1:${s.port}/other`);
    assert.equal(path.status, 404);
    const get = await fetch(`${s.http}/ws`);
    assert.equal(get.status, 426);
    assert.equal((await fetch(`${s.http}/nothing`)).status, 404);
    await s.gw.close();
  });

  test('requireSubprotocol refuses clients that offer none', async (t) => {
    const s = await startGateway(t, { requireSubprotocol: true });
    const r = await rejectedUpgrade(t, s.url, []);
    assert.equal(r.status, 426);
    await s.gw.close();
  });

  test('healthz, readyz, info, metrics', async (t) => {
    const s = await startGateway(t);
    const c = await connect(t, s.url);
    await c.subscribe('m/t');
    c.ws.send('text');
    await c.closed;
    assert.deepEqual(await (await fetch(`${s.http}/healthz`)).json(), { status: 'ok' });
    assert.deepEqual(await (await fetch(`${s.http}/readyz`)).json(), { ready: true });
    const info = (await (await fetch(`${s.http}/info`)).json()) as Record<string, any>;
    assert.match(info.ws, /^8\./);
    assert.match(info.masking, /bufferutil|websocketMask|JavaScript/);
    assert.match(info.utf8Validation, /isUtf8|utf-8-validate|JavaScript/);
    assert.equal(info.compression.enabled, false);
    const metrics = await (await fetch(`${s.http}/metrics`)).text();
    assert.match(metrics, /wiregate_connections_opened_total 1/);
    assert.match(metrics, /wiregate_errors_total\{code="TEXT_FRAME"\} 1/);
    assert.match(metrics, /wiregate_heartbeat_terminations_total 0/);
    assert.match(metrics, /nodejs_eventloop_lag_seconds/);
    assert.match(metrics, /wiregate_messages_in_total 1/);
    await s.gw.close();
  });

  test('HTTP publish API: JSON and msgpack bodies reach subscribers; auth and validation errors', async (t) => {
    const s = await startGateway(t, { httpPublish: { apiKey: 'sekret', maxBodyBytes: 1024 } });
    const sub = await connect(t, s.url);
    await sub.subscribe('devices/+/cmd');
    const post = (body: string | Uint8Array, headers: Record<string, string>) => fetch(`${s.http}/v1/publish`, { method: 'POST', body, headers });
    let r = await post(JSON.stringify({ topic: 'devices/9/cmd', payload: { reboot: true } }), { 'content-type': 'application/json', authorization: 'Bearer sekret' });
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { seq: 1 });
    assert.deepEqual(await sub.delivery(), [18, 'devices/9/cmd', 1, { reboot: true }]);
    const packed = new Packr({ useRecords: false }).pack({ topic: 'devices/9/cmd', payload: [1, 2] });
    r = await post(packed, { 'content-type': 'application/msgpack', 'x-api-key': 'sekret' });
    assert.equal(r.status, 200);
    assert.deepEqual(await sub.delivery(), [18, 'devices/9/cmd', 2, [1, 2]]);
    r = await post('{}', { 'content-type': 'application/json', authorization: 'Bearer wrong' });
    assert.equal(r.status, 401);
    r = await post('{', { 'content-type': 'application/json', authorization: 'Bearer sekret' });
    assert.equal(r.status, 400);
    r = await post(JSON.stringify({ topic: 'a/#', payload: 1 }), { 'content-type': 'application/json', authorization: 'Bearer sekret' });
    assert.deepEqual([r.status, ((await r.json()) as { error: string }).error], [400, 'INVALID_TOPIC']);
    r = await post(JSON.stringify({ topic: 'a', payload: 'x'.repeat(2000) }), { 'content-type': 'application/json', authorization: 'Bearer sekret' });
    assert.equal(r.status, 413);
    r = await post('x', { 'content-type': 'text/plain', authorization: 'Bearer sekret' });
    assert.equal(r.status, 415);
    assert.equal((await fetch(`${s.http}/v1/publish`)).status, 405);
    await sub.close();
    await s.gw.close();
    const off = await startGateway(t);
    assert.equal((await fetch(`${off.http}/v1/publish`, { method: 'POST' })).status, 404, 'disabled without an API key');
    await off.gw.close();
  });

  test('attach to an existing http.Server on a path', async (t) => {
    const server = createServer((req, res) => {
      res.end('app:' + req.url);
    });
    cleanup(t, () => closeServer(server));
    const gw = createGateway({ log: { level: 'silent' }, path: '/realtime' });
    cleanup(t, () => gw.close({ drainTimeout: 0 }));
    gw.attach(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/hello`)).text(), 'app:/hello');
    const c = await connect(t, `ws://127.0.0.1:${port}/realtime`);
    await c.subscribe('x');
    await gw.publish('x', 1);
    assert.deepEqual(await c.delivery(), [18, 'x', 1, 1]);
    const r = await rejectedUpgrade(t, `ws://127.0.0.1:${port}/elsewhere`);
    assert.equal(r.status, 404);
    await gw.close();
    assert.equal((await c.closed).code, CloseCode.GOING_AWAY);
    await new Promise<void>((r) => server.close(() => r()));
  });

  test('hooks: onConnection, onClose, authorizeSubscribe, authorizePublish', async (t) => {
    const events: string[] = [];
    const s = await startGateway(t, {
      hooks: {
        onConnection: (conn) => events.push(`open ${conn.ip} ${conn.url}`),
        onClose: (_conn, code) => events.push(`close ${code}`),
        authorizeSubscribe: async (_conn, pattern) => !pattern.startsWith('private'),
        authorizePublish: (_conn, topic) => {
          if (topic === 'boom') throw new ReplyError(4003, 'custom denial');
          return topic !== 'readonly';
        },
      },
    });
    const c = await connect(t, `${s.url}?device=1`);
    assert.equal((await c.subscribe('private/x'))[2], ErrorCode.FORBIDDEN);
    assert.deepEqual(await c.subscribe('public/x'), [16, 2]);
    assert.equal((await c.publish('readonly', 1))[2], ErrorCode.FORBIDDEN);
    assert.deepEqual((await c.publish('boom', 1)).slice(2), [4003, 'custom denial']);
    await c.close();
    await waitUntil(() => events.length === 2);
    assert.deepEqual(events, ['open 127.0.0.1 /ws?device=1', 'close 1005']);
    await s.gw.close();
  });
});

describe('graceful shutdown', () => {
  test('closes clients with 1001, refuses new upgrades with 503, readyz false while draining', async (t) => {
    const s = await startGateway(t, { drainTimeout: 2000 });
    const a = await connect(t, s.url);
    // b does not answer the close handshake promptly: it is terminated after the drain timeout
    const b = await connect(t, s.url);
    const closing = s.gw.close({ drainTimeout: 300 });
    assert.equal(internals(s.gw).draining, true);
    const ca = await a.closed;
    assert.equal(ca.code, CloseCode.GOING_AWAY);
    assert.equal(ca.reason, 'server shutting down');
    assert.equal((await b.closed).code, CloseCode.GOING_AWAY);
    await closing;
    assert.equal(s.gw.connections, 0);
  });

  test('upgrades during drain get 503 and readyz reports draining', async (t) => {
    const s = await startGateway(t);
    const slow = new WebSocket(s.url, 'wiregate.v1');
    cleanup(t, () => slow.terminate());
    await new Promise((r) => slow.once('open', r));
    // keep the server draining by not completing the close handshake: pause our socket
    (slow as unknown as { _socket: { pause(): void } })._socket.pause();
    const closing = s.gw.close({ drainTimeout: 1500 });
    const ready = await fetch(`${s.http}/readyz`);
    assert.equal(ready.status, 503);
    assert.deepEqual(await ready.json(), { ready: false, reason: 'draining' });
    const r = await rejectedUpgrade(t, s.url);
    assert.equal(r.status, 503);
    assert.equal(r.body.error, 'UNAVAILABLE');
    assert.equal(r.headers['retry-after'], '1');
    await closing;
    slow.terminate();
  });
});

async function waitUntil(pred: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setImmediate(r));
  }
}
