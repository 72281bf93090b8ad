// Start-up fails on unusable key material (with the field and the reason), before anything
// listens, instead of answering every upgrade with 500 later.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { exportJWK } from 'jose';
import { createGateway, type CreateGatewayOptions } from '../src/index.js';
import { ConfigError } from '../src/config/index.js';
import { createAuthenticator } from '../src/auth/jwt.js';

/** A port nothing listens on right now (bound and released by the test itself). */
async function freePort(): Promise<number> {
  const srv = createServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** Whether the port is free: binding it succeeds. */
async function portIsFree(port: number): Promise<boolean> {
  const srv = createServer();
  const bound = await new Promise<boolean>((resolve) => {
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => resolve(true));
  });
  if (bound) await new Promise<void>((r) => srv.close(() => r()));
  return bound;
}

const rsa = (bits: number) => generateKeyPairSync('rsa', { modulusLength: bits });
const spki = (k: ReturnType<typeof rsa>['publicKey']) => k.export({ type: 'spki', format: 'pem' }).toString();

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'wg-startup-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** listen() must reject with a ConfigError for `field` matching `re`, and leave the port free. */
async function refusesToStart(t: { after(fn: () => unknown): void }, auth: CreateGatewayOptions['auth'], field: string, re: RegExp): Promise<ConfigError> {
  const port = await freePort();
  const gw = createGateway({ log: { level: 'silent' }, host: '127.0.0.1', port, auth });
  t.after(() => gw.close());
  let caught: unknown;
  await assert.rejects(gw.listen(), (err: unknown) => {
    caught = err;
    return err instanceof ConfigError && err.field === field && re.test(err.message);
  });
  assert.equal(gw.httpServer, null, 'no HTTP server');
  assert.ok(await portIsFree(port), 'nothing listens on the port');
  return caught as ConfigError;
}

test('an invalid PEM public key: listen() rejects naming auth.publicKey, nothing listens', async (t) => {
  await refusesToStart(t, { enabled: true, publicKey: 'not a key at all' }, 'auth.publicKey', /^invalid config auth\.publicKey: is not a PEM public key \(SPKI.*got "16 characters, no PEM header"$/s);
  const cut = spki(rsa(2048).publicKey).replace(/\n[A-Za-z0-9+/]{20}/, '\n');
  await refusesToStart(t, { enabled: true, publicKey: cut }, 'auth.publicKey', /auth\.publicKey: is not a PEM public key .*got "-----BEGIN PUBLIC KEY-----"/s);
});

test('a private key given as auth.publicKey is refused without echoing it', async (t) => {
  const pem = rsa(2048).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const err = await refusesToStart(t, { enabled: true, publicKey: pem }, 'auth.publicKey', /is a private key; give the public key/);
  assert.ok(!err.message.includes(pem.split('\n')[1]), 'no key material in the message');
});

test('a 1024-bit RSA key (which jose would refuse on every token) is refused at start', async (t) => {
  await refusesToStart(t, { enabled: true, publicKey: spki(rsa(1024).publicKey) }, 'auth.publicKey', /is a 1024-bit RSA key; JWT verification needs 2048 bits or more/);
});

test('an invalid JWKS: listen() rejects naming auth.jwksFile and the key, nothing listens', async (t) => {
  const dir = tempDir(t);
  const good = { ...(await exportJWK(rsa(2048).publicKey)), kid: 'good' };
  const cases: Array<[string, unknown, RegExp]> = [
    ['broken-rsa', { keys: [good, { kty: 'RSA', kid: 'k2', n: 'abc', e: 'AQAB' }] }, /JWKS key 1 \(kid "k2"\) is a \d+-bit RSA key/],
    ['bad-ec', { keys: [{ kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA' }] }, /JWKS key 0 is not a valid EC public key/],
    ['private', { keys: [{ ...(await exportJWK(rsa(2048).privateKey)), kid: 'oops' }] }, /JWKS key 0 \(kid "oops"\) is a private key/],
    ['secret', { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] }, /JWKS key 0 is a symmetric \(oct\) key/],
    ['no-kty', { keys: ['x'] }, /JWKS key 0 is not an object/],
    ['enc-only', { keys: [{ ...good, use: 'enc' }] }, /JWKS file has no key for verifying signatures/],
    ['empty', { keys: [] }, /JWKS file has no key for verifying signatures/],
  ];
  for (const [name, jwks, re] of cases) {
    const file = join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify(jwks));
    const err = await refusesToStart(t, { enabled: true, jwksFile: file }, 'auth.jwksFile', re);
    assert.ok(err.message.includes(file), `${name}: the message names the file`);
  }
});

test('a missing or unparsable JWKS file fails createGateway() already (read synchronously), naming auth.jwksFile', async (t) => {
  const dir = tempDir(t);
  const notJson = join(dir, 'not.json');
  writeFileSync(notJson, '{"keys": [');
  const noKeys = join(dir, 'no-keys.json');
  writeFileSync(noKeys, '{"kty": "RSA"}');
  for (const [file, re] of [
    [join(dir, 'missing.json'), /^invalid config auth\.jwksFile: cannot read JWKS file: ENOENT/],
    [notJson, /^invalid config auth\.jwksFile: JWKS file is not valid JSON: /],
    [noKeys, /JWKS file has no "keys" array/],
    [dir, /cannot read JWKS file: EISDIR/],
  ] as const) {
    assert.throws(
      () => createGateway({ log: { level: 'silent' }, host: '127.0.0.1', port: 0, auth: { enabled: true, jwksFile: file } }),
      (err: unknown) => err instanceof ConfigError && err.field === 'auth.jwksFile' && re.test(err.message),
    );
  }
});

test('ready(): resolves for usable keys, rejects with the same ConfigError verify() then gives', async (t) => {
  const dir = tempDir(t);
  const { publicKey } = rsa(2048);
  await createAuthenticator({ enabled: true, publicKey: spki(publicKey) }).ready();
  await createAuthenticator({ enabled: true, secret: 's3cret' }).ready();
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
  const file = join(dir, 'ok.json');
  // keys jose never picks for signatures (use: enc) do not need to be usable
  writeFileSync(file, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'r' }, { ...(await exportJWK(ec)), kid: 'e', alg: 'ES256' }, { kty: 'RSA', use: 'enc', n: 'x', e: 'AQAB' }] }));
  await createAuthenticator({ enabled: true, jwksFile: file }).ready();

  const bad = createAuthenticator({ enabled: true, publicKey: 'nope' });
  const first = await bad.ready().then(() => null, (e: unknown) => e);
  assert.ok(first instanceof ConfigError && first.field === 'auth.publicKey');
  assert.equal(bad.ready(), bad.ready(), 'one promise');
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  await assert.rejects(bad.verify(`${b64({ alg: 'RS256' })}.${b64({ sub: 'u' })}.AAAA`), (e: unknown) => e === first);
});

test('a gateway with a valid key starts and serves', async (t) => {
  const gw = createGateway({ log: { level: 'silent' }, host: '127.0.0.1', port: 0, auth: { enabled: true, publicKey: spki(rsa(2048).publicKey) } });
  t.after(() => gw.close());
  const { port } = await gw.listen();
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  assert.equal(res.status, 200);
});
