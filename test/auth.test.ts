import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair } from 'jose';
import { AuthError, createAuthenticator, createPermissionChecker, extractToken, patternWithin } from '../src/auth/jwt.js';

const code = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'OK';
  } catch (err) {
    assert.ok(err instanceof AuthError, String(err));
    return err.code;
  }
};

test('RS256 and ES256 public keys; wrong key, alg confusion, issuer and audience', async () => {
  for (const alg of ['RS256', 'ES256'] as const) {
    const { publicKey, privateKey } = await generateKeyPair(alg);
    const other = await generateKeyPair(alg);
    const auth = createAuthenticator({ enabled: true, publicKey: await exportSPKI(publicKey), issuer: 'iss-1', audience: 'gw' });
    const sign = (k = privateKey, claims: Record<string, unknown> = {}, iss = 'iss-1', aud = 'gw') =>
      new SignJWT({ wg: { pub: ['a/#'] }, ...claims }).setProtectedHeader({ alg }).setSubject('u1').setIssuer(iss).setAudience(aud).setExpirationTime('1h').sign(k);
    const id = await auth.verify(await sign());
    assert.equal(id.userId, 'u1');
    assert.deepEqual(id.publish, ['a/#']);
    assert.deepEqual(id.subscribe, []);
    assert.ok(id.expiresAt! > Date.now());
    assert.equal(await code(auth.verify(await sign(other.privateKey))), 'TOKEN_SIGNATURE_INVALID');
    assert.equal(await code(auth.verify(await sign(privateKey, {}, 'someone-else'))), 'TOKEN_CLAIM_INVALID');
    assert.equal(await code(auth.verify(await sign(privateKey, {}, 'iss-1', 'other-aud'))), 'TOKEN_CLAIM_INVALID');
    // HS256 token signed with the public key bytes as secret (classic alg confusion)
    const hs = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('u1').sign(new TextEncoder().encode(await exportSPKI(publicKey)));
    assert.equal(await code(auth.verify(hs)), 'TOKEN_ALG_NOT_ALLOWED');
  }
});

test('JWKS file: key chosen by kid, unknown kid refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wg-jwks-'));
  try {
    const k1 = await generateKeyPair('ES256');
    const k2 = await generateKeyPair('RS256');
    const stranger = await generateKeyPair('ES256');
    const jwks = { keys: [{ ...(await exportJWK(k1.publicKey)), kid: 'k1', alg: 'ES256' }, { ...(await exportJWK(k2.publicKey)), kid: 'k2', alg: 'RS256' }] };
    const file = join(dir, 'jwks.json');
    writeFileSync(file, JSON.stringify(jwks));
    const auth = createAuthenticator({ enabled: true, jwksFile: file });
    const t1 = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setSubject('a').sign(k1.privateKey);
    const t2 = await new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: 'k2' }).setSubject('b').sign(k2.privateKey);
    const t3 = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'k3' }).setSubject('c').sign(stranger.privateKey);
    assert.equal((await auth.verify(t1)).userId, 'a');
    assert.equal((await auth.verify(t2)).userId, 'b');
    assert.equal(await code(auth.verify(t3)), 'TOKEN_SIGNATURE_INVALID');
    assert.throws(() => createAuthenticator({ enabled: true, jwksFile: join(dir, 'missing.json') }), /cannot read JWKS file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('HS256: claim shapes and config errors', async () => {
  const secret = 'k'.repeat(40);
  const auth = createAuthenticator({ enabled: true, secret });
  const key = new TextEncoder().encode(secret);
  const sign = (claims: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject('u').sign(key);
  assert.equal(await code(auth.verify(await sign({ wg: 'all' }))), 'TOKEN_CLAIM_INVALID');
  assert.equal(await code(auth.verify(await sign({ wg: { sub: 'a/#' } }))), 'TOKEN_CLAIM_INVALID');
  assert.equal(await code(auth.verify(await sign({ wg: { sub: ['a/#/b'] } }))), 'TOKEN_CLAIM_INVALID');
  assert.equal(await code(auth.verify(await sign({ wg: { sub: ['a/#'], pub: ['a/b'] } }))), 'OK');
  assert.equal(await code(auth.verify('')), 'TOKEN_MISSING');
  assert.equal(await code(auth.verify('a.b')), 'TOKEN_MALFORMED');
  assert.throws(() => createAuthenticator({ enabled: true }), /exactly one/);
  assert.throws(() => createAuthenticator({ enabled: true, secret, publicKey: 'x' }), /exactly one/);
  assert.throws(() => createAuthenticator({ enabled: true, secret, algorithms: ['none'] }), /never allowed/);
});

test('extractToken: header, then query, then bearer subprotocol entry', () => {
  assert.equal(extractToken({ headers: { authorization: 'Bearer h.t.x' }, url: '/ws?token=q' }), 'h.t.x');
  assert.equal(extractToken({ headers: {}, url: '/ws?a=1&token=q.t.x' }), 'q.t.x');
  assert.equal(extractToken({ headers: { 'sec-websocket-protocol': 'wiregate.v1, bearer.p.t.x' }, url: '/ws' }), 'p.t.x');
  assert.equal(extractToken({ headers: { authorization: 'Basic abc' }, url: '/ws' }), null);
  assert.equal(extractToken({ headers: { 'sec-websocket-protocol': 'wiregate.v1' } }), null);
});

test('permission checker and pattern coverage', () => {
  const can = createPermissionChecker(['devices/42/up', 'rooms/+/chat', 'logs/#']);
  assert.equal(can('devices/42/up'), true);
  assert.equal(can('devices/43/up'), false);
  assert.equal(can('rooms/a/chat'), true);
  assert.equal(can('rooms/a/b/chat'), false);
  assert.equal(can('logs'), true);
  assert.equal(can('logs/x/y'), true);
  assert.equal(createPermissionChecker([])('a'), false);
  assert.equal(createPermissionChecker(['#'])('any/thing'), true);

  const cases: Array<[string, string[], boolean]> = [
    ['devices/42/+/temp', ['devices/42/#'], true],
    ['devices/#', ['devices/+/temp'], false],
    ['devices/42', ['devices/42/#'], true],
    ['devices/42/#', ['devices/42/#'], true],
    ['devices/+', ['devices/+'], true],
    ['devices/+', ['devices/42'], false],
    ['devices/42', ['devices/+'], true],
    ['#', ['devices/#'], false],
    ['#', ['#'], true],
    ['a/+/c', ['a/+/+'], true],
    ['a/b/c/d', ['a/+/c'], false],
    ['a/b', ['x/#', 'a/+'], true],
    ['a/#', ['a/+'], false],
  ];
  for (const [req, allowed, want] of cases) assert.equal(patternWithin(req, allowed), want, `${req} within ${allowed}`);
});
