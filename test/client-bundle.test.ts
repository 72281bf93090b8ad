// The browser build of the client SDK (scripts/build-client.mjs, built here in memory): no Node
// module inside, the ESM bundle working in Node on `ws` as its WebSocket (the browser code path:
// token as a bearer.<jwt> subprotocol entry, ArrayBuffer frames), and the IIFE bundle in Chromium:
// connect with a token, recover after the connection is cut, retry at once on the window's
// 'online' event instead of sleeping out the backoff. Chromium comes from Debian's package
// (scripts/install-test-tools.sh); without it that test is skipped, except under CI=true.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { runInNewContext } from 'node:vm';
import WebSocket from 'ws';
import { SignJWT } from 'jose';
import { chromium } from 'playwright-core';
import { internals } from '../src/gateway.js';
import type { WiregateClient as NodeClient, Message } from '../src/client/index.js';
import { cleanup, startGateway } from './helpers.js';

interface Bundle {
  outfile: string;
  format: string;
  bytes: Uint8Array;
  gzip: number;
}
const { clientBundles } = (await import('../scripts/build-client.mjs' as string)) as { clientBundles: () => Promise<Bundle[]> };
const [esm, iife] = await clientBundles();

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI) throw new Error(`client-bundle test needs chromium (${CHROMIUM}); .ci/run installs it with apt-get`);

const SECRET = 'a-very-long-test-secret-of-32-bytes!!';
const mint = () =>
  new SignJWT({ wg: { sub: ['x/#'], pub: ['x/#'] } })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('user-1')
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(SECRET));

test('bundles: ESM and IIFE, no Node module, a size that is reported', () => {
  assert.equal(esm.format, 'esm');
  assert.equal(iife.format, 'iife');
  const ctx: { Wiregate?: Record<string, unknown> } = {};
  runInNewContext(new TextDecoder().decode(iife.bytes), ctx);
  assert.equal(typeof ctx.Wiregate?.WiregateClient, 'function');
  assert.equal(typeof ctx.Wiregate?.ClientError, 'function');
  assert.throws(() => new (ctx.Wiregate!.WiregateClient as new (u: string) => unknown)('ws://x'), /no WebSocket implementation/);
  // a regression guard, not the goal (docs/client.md states the figure): msgpackr alone is ~12 KiB of it
  assert.ok(esm.gzip < 24 * 1024, `${esm.gzip} bytes gzip`);
});

test('the ESM bundle in Node with ws as its WebSocket: bearer subprotocol token, subscribe, recover after a cut', async (t) => {
  const s = await startGateway(t, { auth: { enabled: true, secret: SECRET }, history: { topics: ['x/#=100'] } });
  const mod = (await import(`data:text/javascript;base64,${Buffer.from(esm.bytes).toString('base64')}`)) as { WiregateClient: typeof NodeClient };
  const c = new mod.WiregateClient(s.url, { WebSocket, token: await mint(), reconnect: { initialDelay: 20, maxDelay: 100 } });
  cleanup(t, () => c.close());
  await c.connect();
  const got: Message[] = [];
  await c.subscribe('x/1', (m) => got.push(m));
  await c.publish('x/1', new Uint8Array([1, 2, 3]));
  const back = new Promise<unknown>((r) => c.on('resubscribed', r));
  c.on('disconnected', () => void s.gw.publish('x/1', 'while away'));
  for (const session of internals(s.gw).sessions) session.terminate();
  assert.deepEqual(await back, { subscriptions: [{ pattern: 'x/1', recovered: true }] });
  const end = Date.now() + 5000;
  while (got.length < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(got.map((m) => [m.seq, m.payload, m.recovered]), [
    [1, new Uint8Array([1, 2, 3]), false],
    [2, 'while away', true],
  ]);
});

test('the IIFE bundle in Chromium: token, recovery, and an immediate retry on the window online event', { skip: haveChromium ? false : `chromium not installed (${CHROMIUM})`, timeout: 60_000 }, async (t) => {
  const s = await startGateway(t, { auth: { enabled: true, secret: SECRET }, history: { topics: ['x/#=100'] } });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  cleanup(t, () => browser.close());
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.addScriptTag({ content: new TextDecoder().decode(iife.bytes) });
  const protocol = await page.evaluate(
    async ([url, token]) => {
      const w = globalThis as any;
      Math.random = () => 0.99; // backoff delays near their cap (a minute): only the online event can cut them short
      w.got = [];
      w.connecting = [];
      w.resubscribed = [];
      const c = new w.Wiregate.WiregateClient(url, { token, reconnect: { initialDelay: 60_000, maxDelay: 60_000 } });
      w.c = c;
      c.on('connecting', (e: unknown) => w.connecting.push(e));
      c.on('resubscribed', (e: unknown) => w.resubscribed.push(e));
      let proto = '';
      c.on('connected', (e: { protocol: string }) => (proto = e.protocol));
      await c.connect();
      await c.subscribe('x/1', (m: { seq: number; payload: unknown; recovered: boolean }) => w.got.push([m.seq, m.payload, m.recovered]));
      await c.publish('x/1', 'one');
      return proto;
    },
    [s.url, await mint()] as const,
  );
  assert.equal(protocol, 'wiregate.v1.batch');
  await page.waitForFunction(() => (globalThis as any).got.length === 1);

  await context.setOffline(true);
  for (const session of internals(s.gw).sessions) session.terminate();
  await page.waitForFunction(() => (globalThis as any).connecting.length === 2);
  const waiting = await page.evaluate(() => (globalThis as any).connecting[1]);
  assert.ok(waiting.delay > 50_000, `backoff ${waiting.delay} ms`);
  await s.gw.publish('x/1', 'two');
  await s.gw.publish('x/1', 'three');
  await context.setOffline(false); // fires 'online': the client retries now
  await page.waitForFunction(() => (globalThis as any).got.length === 3, undefined, { timeout: 10_000 });
  const r = await page.evaluate(() => {
    const w = globalThis as any;
    return { got: w.got, connecting: w.connecting, resubscribed: w.resubscribed, state: w.c.state };
  });
  assert.deepEqual(r.got, [
    [1, 'one', false],
    [2, 'two', true],
    [3, 'three', true],
  ]);
  assert.deepEqual(r.connecting.slice(2), [{ attempt: 2, delay: 0 }], 'the online event replaced the long wait');
  assert.deepEqual(r.resubscribed, [{ subscriptions: [{ pattern: 'x/1', recovered: true }] }]);
  assert.equal(r.state, 'connected');
  await page.evaluate(() => (globalThis as any).c.close());
});
