// JWT authentication at the upgrade, permissions, in-band refresh and expiry on live connections.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { SignJWT } from 'jose';
import { CloseCode, ErrorCode } from '../src/index.js';
import { connect, rejectedUpgrade, startGateway, type Started } from './helpers.js';
import { internals } from '../src/gateway.js';

const SECRET = 'a-very-long-test-secret-of-32-bytes!!';
const key = new TextEncoder().encode(SECRET);

function token(claims: Record<string, unknown>, opts: { exp?: number | string; nbf?: number | string; sub?: string | null; secret?: Uint8Array } = {}) {
  let j = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt();
  if (opts.sub !== null) j = j.setSubject(opts.sub ?? 'user-1');
  if (opts.exp !== undefined) j = j.setExpirationTime(opts.exp);
  if (opts.nbf !== undefined) j = j.setNotBefore(opts.nbf);
  return j.sign(opts.secret ?? key);
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

describe('JWT at the upgrade', () => {
  let s: Started;
  before(async () => {
    s = await startGateway({ auth: { enabled: true, secret: SECRET } });
  });
  after(() => s.gw.close());

  test('token from header, query and subprotocol entry', async (t) => {
    const tok = await token({ wg: { sub: ['devices/#'], pub: ['devices/+/up'] } });
    const a = await connect(t, s.url, 'wiregate.v1', { headers: { authorization: `Bearer ${tok}` } });
    const b = await connect(t, `${s.url}?token=${tok}`);
    const c = await connect(t, s.url, ['wiregate.v1', `bearer.${tok}`]);
    assert.equal(c.ws.protocol, 'wiregate.v1', 'the token entry is never selected');
    const conn = [...internals(s.gw).sessions].at(-1)!;
    assert.equal(conn.userId, 'user-1');
    await Promise.all([a.close(), b.close(), c.close()]);
  });

  const bad: Array<[string, () => Promise<Record<string, string>> | Record<string, string>, string]> = [
    ['missing', () => ({}), 'TOKEN_MISSING'],
    ['malformed', () => ({ authorization: 'Bearer not.a.jwt' }), 'TOKEN_MALFORMED'],
    ['bad signature', async () => ({ authorization: `Bearer ${await token({}, { secret: new TextEncoder().encode('another-secret-another-secret-xx') })}` }), 'TOKEN_SIGNATURE_INVALID'],
    ['alg none', () => ({ authorization: `Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'x' })}.` }), 'TOKEN_ALG_NOT_ALLOWED'],
    ['expired', async () => ({ authorization: `Bearer ${await token({}, { exp: Math.floor(Date.now() / 1000) - 60 })}` }), 'TOKEN_EXPIRED'],
    ['not yet valid', async () => ({ authorization: `Bearer ${await token({}, { nbf: Math.floor(Date.now() / 1000) + 3600 })}` }), 'TOKEN_NOT_YET_VALID'],
    ['no subject', async () => ({ authorization: `Bearer ${await token({}, { sub: null })}` }), 'TOKEN_CLAIM_INVALID'],
  ];
  for (const [name, headers, code] of bad) {
    test(`${name} token -> 401 ${code} before the upgrade`, async (t) => {
      const healthy = await connect(t, s.url, 'wiregate.v1', { headers: { authorization: `Bearer ${await token({ wg: { sub: ['h/#'] } })}` } });
      const topic = `h/${code}`;
      await healthy.subscribe(topic);
      const r = await rejectedUpgrade(t, s.url, 'wiregate.v1', { headers: await headers() });
      assert.equal(r.status, 401);
      assert.equal(r.body.error, code);
      assert.equal(typeof r.body.message, 'string');
      await s.gw.publish(topic, 'ok');
      assert.deepEqual(await healthy.delivery(), [18, topic, 1, 'ok']);
      await healthy.close();
    });
  }

  test('permissions are deny-by-default and follow the claim', async (t) => {
    const none = await connect(t, s.url, 'wiregate.v1', { headers: { authorization: `Bearer ${await token({})}` } });
    assert.equal((await none.subscribe('anything'))[2], ErrorCode.FORBIDDEN);
    assert.equal((await none.publish('anything', 1))[2], ErrorCode.FORBIDDEN);
    await none.close();
    const tok = await token({ wg: { sub: ['devices/42/#'], pub: ['devices/42/up'] } });
    const c = await connect(t, s.url, 'wiregate.v1', { headers: { authorization: `Bearer ${tok}` } });
    assert.deepEqual(await c.subscribe('devices/42/+/temp'), [16, 1]);
    assert.equal((await c.subscribe('devices/#'))[2], ErrorCode.FORBIDDEN);
    assert.equal((await c.subscribe('devices/43/x'))[2], ErrorCode.FORBIDDEN);
    assert.deepEqual(await c.publish('devices/42/up', 'x'), [16, 4, 1]);
    assert.equal((await c.publish('devices/43/up', 'x'))[2], ErrorCode.FORBIDDEN);
    await c.close();
  });
});

describe('token lifetime on a live connection', () => {
  test('expiry closes with 4002 unless refreshed in-band; bad refresh gets TOKEN_INVALID', async (t) => {
    const s = await startGateway(t, { auth: { enabled: true, secret: SECRET } });
    const soon = () => Math.floor(Date.now() / 1000) + 2;
    const perms = { wg: { sub: ['x/#'], pub: ['x/#'] } };
    const a = await connect(t, s.url, 'wiregate.v1', { headers: { authorization: `Bearer ${await token(perms, { exp: soon() })}` } });
    const b = await connect(t, s.url, 'wiregate.v1', { headers: { authorization: `Bearer ${await token(perms, { exp: soon() })}` } });
    // b refreshes with a longer-lived token for the same user
    const fresh = await token(perms, { exp: Math.floor(Date.now() / 1000) + 3600 });
    const r = await b.call(6, fresh);
    assert.equal(r[0], 16);
    assert.ok((r[2] as { expiresAt: number }).expiresAt > Date.now() + 3000 * 1000);
    // refresh for another user or with a bad token is refused
    assert.equal((await b.call(6, await token(perms, { sub: 'user-2', exp: '1h' })))[2], ErrorCode.TOKEN_INVALID);
    assert.equal((await b.call(6, 'garbage'))[2], ErrorCode.TOKEN_INVALID);
    const closed = await a.closed;
    assert.equal(closed.code, CloseCode.TOKEN_EXPIRED);
    assert.equal(b.ws.readyState, 1, 'refreshed connection stays open');
    assert.deepEqual(await b.call(5), [20, 4]);
    await b.close();
    await s.gw.close();
  });

  test('REFRESH without JWT auth -> UNAUTHORIZED', async (t) => {
    const s = await startGateway(t);
    const c = await connect(t, s.url);
    assert.equal((await c.call(6, 'tok'))[2], ErrorCode.UNAUTHORIZED);
    await c.close();
    await s.gw.close();
  });

  test('per-user connection limit -> 429', async (t) => {
    const s = await startGateway(t, { auth: { enabled: true, secret: SECRET }, limits: { maxConnectionsPerUser: 1 } });
    const tok = await token({});
    const a = await connect(t, s.url, 'wiregate.v1', { headers: { authorization: `Bearer ${tok}` } });
    const r = await rejectedUpgrade(t, s.url, 'wiregate.v1', { headers: { authorization: `Bearer ${tok}` } });
    assert.equal(r.status, 429);
    assert.equal(r.body.error, 'TOO_MANY_CONNECTIONS_FOR_USER');
    const other = await connect(t, s.url, 'wiregate.v1', { headers: { authorization: `Bearer ${await token({}, { sub: 'user-2' })}` } });
    await Promise.all([a.close(), other.close()]);
    await s.gw.close();
  });
});
