// Review findings (issue 10): slot leaks on aborted handshakes, the outbound budget against
// healthy readers, protocol-error accounting per code, REFRESH answers, the handshake-bucket cap,
// inbound rate limits that count messages and pause, and default limits that protect a gateway.
import { test, describe, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { SignJWT } from 'jose';
import { createGateway, CloseCode, ErrorCode, resolveConfig, type CreateGatewayOptions, type Gateway } from '../src/index.js';
import { internals } from '../src/gateway.js';
import { PROTOCOL_ERROR_CODES } from '../src/protocol/codes.js';
import { encode } from '../src/protocol/messages.js';
import { Admission } from '../src/transport/admission.js';
import { RequestTimer } from '../src/connection/requests.js';
import { Client } from './helpers.js';
import type { Identity } from '../src/auth/jwt.js';

interface Up {
  gw: Gateway;
  port: number;
  url: string;
}

async function up(t: TestContext, options: CreateGatewayOptions = {}): Promise<Up> {
  const gw = createGateway({ log: { level: 'silent' }, host: '127.0.0.1', port: 0, ...options });
  t.after(() => gw.close({ drainTimeout: 0 }));
  const { port } = await gw.listen();
  return { gw, port, url: `ws://127.0.0.1:${port}/ws` };
}

async function client(t: TestContext, url: string, protocols: string | string[] = 'wiregate.v1', opts = {}): Promise<Client> {
  const c = new Client(url, protocols, opts);
  t.after(() => c.ws.terminate());
  await c.opened;
  return c;
}

/** Polls (one event-loop turn at a time, bounded) until `cond` holds. */
async function until(cond: () => boolean, what: string, turns = 200_000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  assert.fail(`never happened: ${what}`);
}

/** A raw upgrade request; resolves with the status line's code (0 if the server just closed). */
function rawUpgrade(port: number, headers: Record<string, string>, opts: { destroyAfterWrite?: boolean; path?: string } = {}): Promise<number> {
  return new Promise((resolve) => {
    const sock: Socket = netConnect(port, '127.0.0.1');
    let got = '';
    sock.on('error', () => resolve(0));
    sock.on('data', (d) => {
      got += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      if (m) {
        resolve(Number(m[1]));
        sock.destroy();
      }
    });
    sock.on('close', () => resolve(0));
    sock.on('connect', () => {
      sock.write(
        `GET ${opts.path ?? '/ws'} HTTP/1.1\r\nHost: x\r\n` +
          Object.entries(headers)
            .map(([k, v]) => `${k}: ${v}\r\n`)
            .join('') +
          '\r\n',
      );
      if (opts.destroyAfterWrite) setImmediate(() => sock.destroy());
    });
  });
}

const GOOD = { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Protocol': 'wiregate.v1' };

describe('1. connection slots are released on every handshake path', () => {
  test('hundreds of malformed and aborted handshakes leave the counters at zero, then a good client connects', async (t) => {
    const pending: Array<() => void> = [];
    const s = await up(t, { limits: { maxConnections: 3, maxConnectionsPerIp: 3, maxConnectionsPerUser: 3 } });
    s.gw.setAuthenticate(
      (req) =>
        new Promise<Identity>((resolve) => {
          const user = new URL(req.url ?? '/', 'http://x').searchParams.get('user') ?? 'u';
          pending.push(() => resolve({ userId: user, publish: ['#'], subscribe: ['#'], expiresAt: null, claims: {} }));
          if (!req.url?.includes('hold')) pending.pop()!();
        }),
    );
    const rt = internals(s.gw);
    for (let round = 0; round < 60; round++) {
      const answers = await Promise.all([
        rawUpgrade(s.port, { ...GOOD, 'Sec-WebSocket-Key': 'not-a-key' }), // ws: 400
        rawUpgrade(s.port, { ...GOOD, 'Sec-WebSocket-Version': '7' }), // ws: 400
        rawUpgrade(s.port, { ...GOOD, 'Sec-WebSocket-Protocol': 'wiregate.v1, wiregate.v1' }), // passes our checks, ws refuses it after the reservation
      ]);
      assert.deepEqual(answers, [400, 400, 400]);
      // the client goes away while authentication is still running
      await rawUpgrade(s.port, GOOD, { destroyAfterWrite: true, path: '/ws?hold=1' });
      await until(() => pending.length > 0, 'authentication started');
      pending.splice(0).forEach((go) => go());
    }
    await until(() => {
      const h = rt.admission.holding;
      return h.reserved === 0 && h.open === 0 && h.ips === 0 && h.users === 0;
    }, 'every reservation released');
    const good: Client[] = [];
    for (let i = 0; i < 3; i++) good.push(await client(t, `${s.url}?user=u`));
    assert.equal(s.gw.connections, 3);
    assert.deepEqual(rt.admission.holding, { reserved: 0, open: 3, ips: 1, users: 1 });
    for (const c of good) await c.close();
    await until(() => rt.admission.holding.open === 0 && rt.admission.holding.users === 0, 'closed connections release their slots');
  });

  test('a version ws reads as 13 ("0x0d", "13.0") still goes through every check (auth: 401)', async (t) => {
    const s = await up(t, { auth: { enabled: true, secret: 'version-test-secret-of-at-least-32-bytes' } });
    for (const v of ['13', '0x0d', '13.0', ' 13', '8.0']) {
      assert.equal(await rawUpgrade(s.port, { ...GOOD, 'Sec-WebSocket-Version': v }), 401, v);
    }
    assert.equal(await rawUpgrade(s.port, { ...GOOD, 'Sec-WebSocket-Version': '7' }), 400);
    assert.equal(s.gw.connections, 0);
  });

  test('the handshake-rate table has a hard size cap', () => {
    const adm = new Admission({ limits: { maxConnections: 10, maxConnectionsPerIp: 0, maxConnectionsPerUser: 0, handshakeRate: 1, handshakeBurst: 2 }, allowedOrigins: [], allowNoOrigin: false, requireSubprotocol: false }, 100);
    const req = { headers: {} } as import('node:http').IncomingMessage;
    for (let i = 0; i < 1000; i++) {
      assert.equal(adm.check(req, `10.0.${i >> 8}.${i & 255}`), null);
      assert.ok(adm.handshakeBuckets <= 100, `at most 100 buckets (got ${adm.handshakeBuckets})`);
    }
    // the newest address keeps its bucket: a second and third attempt hit its limit
    assert.equal(adm.check(req, '10.0.3.231'), null);
    assert.equal(adm.check(req, '10.0.3.231')?.status, 429);
  });
});

describe('2. the outbound budget measures what the peer failed to read', () => {
  for (const policy of ['close', 'drop'] as const) {
    test(`policy ${policy}: a reading client sent 2,500 x 1 KiB in one tick gets everything and stays open`, async (t) => {
      const s = await up(t, { outbound: { maxBufferedBytes: 1024 * 1024, policy } });
      const c = await client(t, s.url);
      await c.subscribe('burst/t');
      const payload = Buffer.alloc(1024, 1);
      for (let i = 0; i < 2500; i++) void s.gw.publish('burst/t', payload); // one tick: 2.6 MB
      for (let i = 0; i < 2500; i++) {
        const d = await c.delivery('burst/t');
        assert.equal(d[2], i + 1);
      }
      const rt = internals(s.gw);
      assert.equal(rt.stats.slowConsumerCloses, 0);
      assert.equal(rt.stats.deliveriesDropped, 0);
      assert.equal(c.messages.filter((m) => Array.isArray(m) && m[0] === 21).length, 0, 'no GAP');
      assert.equal(c.ws.readyState, 1);
    });
  }

  test('one reply larger than the budget reaches a reading client', async (t) => {
    const s = await up(t, { outbound: { maxBufferedBytes: 1024 * 1024 } });
    const big = Buffer.alloc(1200 * 1024, 9);
    s.gw.handle('big', () => big);
    const c = await client(t, s.url);
    const r = await c.request('big');
    assert.equal(r[0], 16);
    assert.equal((r[2] as Buffer).length, big.length);
    assert.equal(internals(s.gw).stats.slowConsumerCloses, 0);
  });

  test('a non-reading client: the large message is delivered alone, the budget then closes it with 4000', async (t) => {
    const budget = 256 * 1024;
    const s = await up(t, { outbound: { maxBufferedBytes: budget } });
    const c = await client(t, s.url);
    await c.subscribe('slow/#');
    const sock = (c.ws as unknown as { _socket: Socket })._socket;
    sock.pause();
    await s.gw.publish('slow/big', Buffer.alloc(budget * 3, 1)); // larger than the budget: written whole
    const rt = internals(s.gw);
    const session = [...rt.sessions][0];
    let maxBacklog = 0;
    for (let i = 0; i < 5000 && rt.stats.slowConsumerCloses === 0; i++) {
      await new Promise((r) => setImmediate(r));
      maxBacklog = Math.max(maxBacklog, session.backlog);
      void s.gw.publish('slow/small', Buffer.alloc(8 * 1024, 2));
    }
    assert.equal(rt.stats.slowConsumerCloses, 1);
    // what the gateway held never exceeded the budget plus one turn's sends (here the big message)
    assert.ok(maxBacklog <= budget + budget * 3 + 64, `backlog ${maxBacklog}`);
    sock.resume();
    const first = await c.delivery();
    assert.equal(first[1], 'slow/big');
    assert.equal((first[3] as Buffer).length, budget * 3);
    assert.equal((await c.closed).code, CloseCode.SLOW_CONSUMER);
  });
});

describe('4. protocol-error accounting: one rule, by code', () => {
  const MAX = 3;
  // How to provoke each counted code: [code, gateway options, setup, the offending message]
  const cases: Array<[number, CreateGatewayOptions, (gw: Gateway) => void, (c: Client, i: number) => unknown[]]> = [
    [ErrorCode.BAD_REQUEST, {}, () => {}, (_c, i) => [1, i + 1, 5]],
    [ErrorCode.UNKNOWN_TYPE, {}, () => {}, (_c, i) => [99, i + 1]],
    [ErrorCode.INVALID_TOPIC, {}, () => {}, (_c, i) => [1, i + 1, 'a//b']],
    [ErrorCode.FORBIDDEN, {}, (gw) => gw.hook('authorizeSubscribe', () => false), (_c, i) => [1, i + 1, `x/${i}`]],
    [ErrorCode.TOO_MANY_SUBSCRIPTIONS, { limits: { maxSubscriptions: 1, maxProtocolErrors: MAX } }, () => {}, (_c, i) => [1, i + 1, `y/${i}`]],
    [ErrorCode.UNKNOWN_METHOD, {}, () => {}, (_c, i) => [4, i + 1, 'nope']],
    [ErrorCode.UNAUTHORIZED, {}, () => {}, (_c, i) => [6, i + 1, 'a.b.c']],
    [ErrorCode.TOO_MANY_REQUESTS, { limits: { maxPendingRequests: 1, maxProtocolErrors: MAX } }, (gw) => gw.handle('hang', () => new Promise(() => {})), (_c, i) => [4, i + 1, 'hang']],
  ];
  for (const [code, options, setup, msg] of cases) {
    test(`${code} counts towards limits.maxProtocolErrors`, async (t) => {
      assert.ok(PROTOCOL_ERROR_CODES.has(code));
      const s = await up(t, { limits: { maxProtocolErrors: MAX }, ...options });
      setup(s.gw);
      const c = await client(t, s.url);
      const extra = code === ErrorCode.TOO_MANY_SUBSCRIPTIONS || code === ErrorCode.TOO_MANY_REQUESTS ? 1 : 0; // the first one is accepted
      for (let i = 0; i < MAX + extra; i++) c.send(msg(c, i));
      assert.equal((await c.closed).code, CloseCode.BAD_PROTOCOL);
      const errors = c.messages.filter((m) => Array.isArray(m) && m[0] === 17) as unknown[][];
      assert.equal(errors.length, MAX);
      assert.ok(errors.every((e) => e[2] === code), `every error is ${code}: ${JSON.stringify(errors)}`);
    });
  }

  test('TOKEN_INVALID (a bad REFRESH) counts', async (t) => {
    const secret = 'another-long-test-secret-of-32-bytes!';
    const s = await up(t, { auth: { enabled: true, secret }, limits: { maxProtocolErrors: 2 } });
    const tok = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('u1').sign(new TextEncoder().encode(secret));
    const c = await client(t, `${s.url}?token=${tok}`);
    c.send([6, 1, 'x.y.z'], [6, 2, 'x.y.z']);
    assert.equal((await c.closed).code, CloseCode.BAD_PROTOCOL);
  });

  test('handler outcomes and application codes never count', async (t) => {
    const s = await up(t, { limits: { maxProtocolErrors: 2 }, requestTimeout: 20 });
    s.gw.handle('boom', () => {
      throw new Error('x');
    });
    s.gw.handle('app', () => {
      throw new (class extends Error {})('y');
    });
    s.gw.handle('slow', () => new Promise(() => {}));
    const c = await client(t, s.url);
    for (let i = 0; i < 5; i++) assert.equal((await c.request('boom'))[2], ErrorCode.HANDLER_ERROR);
    for (let i = 0; i < 3; i++) assert.equal((await c.request('slow'))[2], ErrorCode.TIMEOUT);
    assert.deepEqual(await c.call(5), [20, c.id() - 1]);
    assert.equal(c.ws.readyState, 1);
  });

  test('docs/protocol.md section 5 lists exactly the counted codes', async () => {
    const { readFileSync } = await import('node:fs');
    const doc = readFileSync(new URL('../docs/protocol.md', import.meta.url), 'utf8');
    const m = /Codes that count towards `limits\.maxProtocolErrors`: ([^\n]+)/.exec(doc);
    assert.ok(m, 'the doc names the counted codes');
    const listed = [...m[1].matchAll(/(\d{3}) `/g)].map((x) => Number(x[1])).sort();
    assert.deepEqual(listed, [...PROTOCOL_ERROR_CODES].sort());
  });
});

describe('6. REFRESH answers with an integer expiresAt', () => {
  const secret = 'refresh-test-secret-of-at-least-32-bytes';
  const key = new TextEncoder().encode(secret);
  test('with exp: integer milliseconds since the epoch; without exp: 0', async (t) => {
    const s = await up(t, { auth: { enabled: true, secret } });
    const first = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('u1').setExpirationTime('1h').sign(key);
    const c = await client(t, `${s.url}?token=${first}`);
    const exp = Math.floor(Date.now() / 1000) + 7200;
    const withExp = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('u1').setExpirationTime(exp).sign(key);
    const r1 = await c.call(6, withExp);
    assert.deepEqual(r1, [16, r1[1], { expiresAt: exp * 1000 }]);
    assert.ok(Number.isInteger((r1[2] as { expiresAt: number }).expiresAt));
    const noExp = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('u1').sign(key);
    const r2 = await c.call(6, noExp);
    assert.deepEqual(r2, [16, r2[1], { expiresAt: 0 }]);
  });
});

describe('15. inbound rate limits count messages and pause reading', () => {
  test('100 messages in one frame cost 100 tokens: the processed rate holds', async (t) => {
    const rate = 1000;
    const s = await up(t, { limits: { messageRate: rate, messageBurst: 100, rateLimitGrace: 60_000 } });
    const c = await client(t, s.url);
    const frame = Buffer.concat(Array.from({ length: 100 }, (_, i) => encode([5, i + 1])));
    const started = performance.now();
    for (let i = 0; i < 10; i++) c.ws.send(frame);
    let pongs = 0;
    while (pongs < 1000) {
      await c.next((m) => Array.isArray(m) && m[0] === 20);
      pongs++;
    }
    const elapsed = performance.now() - started;
    // 1000 messages with 100 in the bucket at 1000/s cannot be processed in less than ~0.9 s
    assert.ok(elapsed >= 800, `1000 messages processed in ${elapsed.toFixed(0)} ms: the limit counts messages, not frames`);
    assert.ok(internals(s.gw).stats.rateLimitPauses >= 1);
  });

  test('a client that stays over its rate is paused, processed at the rate, then closed with 4001 after the grace', async (t) => {
    const rate = 500;
    const grace = 600;
    const s = await up(t, { limits: { messageRate: rate, messageBurst: 50, rateLimitGrace: grace } });
    const c = await client(t, s.url);
    const frame = Buffer.concat(Array.from({ length: 25 }, (_, i) => encode([5, i + 1])));
    let pongs = 0;
    c.ws.on('message', (d: Buffer) => {
      if (d[0] === 0x92 && d[1] === 0x14) pongs++;
    });
    const started = performance.now();
    const timer = setInterval(() => c.ws.readyState === 1 && c.ws.send(frame), 25); // 1000 msgs/s: twice the rate
    t.after(() => clearInterval(timer));
    const closed = await c.closed;
    const elapsed = performance.now() - started;
    clearInterval(timer);
    assert.equal(closed.code, CloseCode.RATE_LIMITED);
    assert.ok(elapsed >= grace, `closed after ${elapsed.toFixed(0)} ms`);
    // never more than the rate (plus the burst and one frame) was processed
    assert.ok(pongs <= (rate * elapsed) / 1000 + 50 + 25, `${pongs} messages processed in ${elapsed.toFixed(0)} ms at ${rate}/s`);
    assert.equal(internals(s.gw).stats.rateLimitCloses, 1);
  });
});

describe('16. the defaults protect a gateway exposed to untrusted clients', () => {
  test('per-connection message and byte rates are on by default', () => {
    const c = resolveConfig();
    assert.ok(c.limits.messageRate > 0 && c.limits.byteRate > 0);
  });

  test('on defaults a flooding client is paused and a healthy client is answered meanwhile', async (t) => {
    const s = await up(t);
    const flooder = await client(t, s.url);
    const healthy = await client(t, s.url);
    const frame = Buffer.concat(Array.from({ length: 200 }, (_, i) => encode([3, 0, 'flood/x', i])));
    for (let i = 0; i < 200; i++) flooder.ws.send(frame); // 40k publishes at once
    await until(() => internals(s.gw).stats.rateLimitPauses >= 1, 'the flooder was paused');
    assert.deepEqual(await healthy.call(5), [20, 1]);
    assert.ok(internals(s.gw).stats.publishes < 40_000, 'the flood is not processed at once');
  });
});

describe('request timeouts from one timer', () => {
  test('deadlines fire in order, settled requests never time out', async () => {
    let now = 0;
    const timer = new RequestTimer(50, () => now);
    const fired: number[] = [];
    const a = timer.start(() => fired.push(1));
    now = 10;
    timer.start(() => fired.push(2));
    const c = timer.start(() => fired.push(3));
    assert.equal(timer.settle(a), true);
    assert.equal(timer.pending, 2);
    now = 100;
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(fired, [2, 3]);
    assert.equal(timer.settle(c), false, 'a timed-out request cannot be answered again');
    assert.equal(timer.pending, 0);
  });
});

describe('8. attach() with configuration that cannot start', () => {
  test('no unhandled rejection: the error is logged, upgrades are refused, start() rejects with it', async (t) => {
    const { createServer } = await import('node:http');
    const { pino } = await import('pino');
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    t.after(() => process.off('unhandledRejection', onUnhandled));
    const lines: Array<{ level: number; msg: string }> = [];
    const logger = pino({ level: 'error' }, { write: (l: string) => lines.push(JSON.parse(l)) });
    const gw = createGateway({ auth: { enabled: true, publicKey: '-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----' }, logger });
    const server = createServer();
    t.after(() => new Promise((r) => server.close(r)));
    t.after(() => gw.close({ drainTimeout: 0 }));
    gw.attach(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as import('node:net').AddressInfo).port;
    await assert.rejects(gw.start(), /auth\.publicKey/);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(unhandled, []);
    assert.ok(lines.some((l) => /failed to start/.test(l.msg)), 'the start failure is logged');
    const status = await rawUpgrade(port, { ...GOOD, Authorization: 'Bearer a.b.c' });
    assert.ok(status >= 400, `upgrade refused (${status})`);
  });
});
