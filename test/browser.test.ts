// The demo page (GET /demo, config `demo`) in a real Chromium (playwright-core): the page's client
// subscribes through the page's form, shows a message published from Node, publishes one back that a
// Node subscriber receives, lists presence, and, when its gateway is restarted on the same port,
// reconnects and recovers what was published meanwhile (recovered: true). History must outlive the
// restart, so the gateways share a redis-server this file starts (a second node publishes while the
// first is down). Chromium is Debian's package (scripts/install-test-tools.sh), found as in
// interop.test.ts; without it, or without redis-server, the test is skipped with the reason,
// except under CI=true, where it fails. A screenshot of the page goes to test-artifacts/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { chromium, type Page } from 'playwright-core';
import { createGateway, type CreateGatewayOptions, type Gateway } from '../src/index.js';
import { cleanup, connect, startGateway } from './helpers.js';
import { ROOT } from './proc.js';
import { freePort, serverForFile, startRedis } from './servers.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI) throw new Error(`browser test needs chromium (${CHROMIUM}); scripts/install-test-tools.sh installs it with apt-get`);

const { server: redis, failure: redisFailure, skip: redisSkip } = haveChromium ? await serverForFile('redis-server', startRedis) : { server: null, failure: '', skip: false as const };
const skip = !haveChromium ? `not installed: chromium (${CHROMIUM})` : redisSkip;

/** The browser bundle the page loads: built by `npm run build`; rebuilt here when missing or older than the client's sources. */
function ensureBundle(): void {
  const bundle = join(ROOT, 'dist/client/wiregate-client.js');
  const newest = (dir: string): number => Math.max(0, ...readdirSync(dir).map((n) => (statSync(join(dir, n)).isDirectory() ? newest(join(dir, n)) : statSync(join(dir, n)).mtimeMs)));
  if (existsSync(bundle) && statSync(bundle).mtimeMs >= Math.max(newest(join(ROOT, 'src/client')), newest(join(ROOT, 'src/protocol')))) return;
  const r = spawnSync(process.execPath, ['scripts/build-client.mjs'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, `scripts/build-client.mjs failed:\n${r.stdout}${r.stderr}`);
}

interface DemoMessage {
  topic: string;
  seq: number;
  payload: unknown;
  retained: boolean;
  recovered: boolean;
}
type DemoWindow = { wiregateDemo: { state: string; lastClose: { code: number } | null; messages: DemoMessage[]; events: { kind: string; text: string }[] } };

/** Waits until the page has a message of `topic` with `seq`, and returns it. */
async function pageMessage(page: Page, topic: string, seq: number): Promise<DemoMessage> {
  const handle = await page.waitForFunction(
    ([t, s]) => {
      const m = (globalThis as unknown as DemoWindow).wiregateDemo.messages.find((x) => x.topic === t && x.seq === s);
      return m && { topic: m.topic, seq: m.seq, payload: m.payload, retained: m.retained, recovered: m.recovered };
    },
    [topic, seq] as const,
    { timeout: 20_000 },
  );
  return (await handle.jsonValue()) as DemoMessage;
}

const pageState = (page: Page, state: string) => page.waitForFunction((s) => (globalThis as unknown as DemoWindow).wiregateDemo.state === s, state, { timeout: 20_000 });

test('the demo page: subscribe, receive, publish, presence, and recovery across a gateway restart', { skip, timeout: 90_000 }, async (t) => {
  assert.ok(redis !== null, `cannot start redis-server: ${redisFailure}`);
  ensureBundle();
  const options: CreateGatewayOptions = {
    demo: true,
    broker: `redis://127.0.0.1:${redis.port}`,
    brokerPrefix: `demo:${randomBytes(4).toString('hex')}:`,
    history: { topics: ['demo/#=100'] },
    presence: { topics: ['demo/room'] },
  };
  const port = await freePort();
  const listen = async (): Promise<Gateway> => {
    const gw = createGateway({ log: { level: 'silent' }, host: '127.0.0.1', ...options, port });
    cleanup(t, () => gw.close({ drainTimeout: 0 }));
    await gw.listen();
    return gw;
  };
  let gw = await listen();
  const url = `ws://127.0.0.1:${port}/ws`;

  // what the gateway serves
  const res = await fetch(`http://127.0.0.1:${port}/demo`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
  assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self';.*connect-src 'self' ws:\/\/127\.0\.0\.1:\d+ wss:/);
  assert.match(await res.text(), /<meta name="wiregate-path" content="\/ws">/);
  assert.equal((await fetch(`http://127.0.0.1:${port}/demo/wiregate-client.js`)).status, 200);
  const off = await startGateway(t);
  assert.equal((await fetch(`${off.http}/demo`)).status, 404, 'off by default');

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  cleanup(t, () => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (m) => {
    // while the gateway is down, Chromium logs each failed reconnection attempt: expected
    if (m.type() === 'error' && !/WebSocket connection to .* failed/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  await page.goto(`http://127.0.0.1:${port}/demo`);
  await pageState(page, 'connected');
  assert.equal((await page.textContent('#status-text'))?.trim(), 'connected');
  assert.equal(await page.textContent('#endpoint'), url);

  // subscribe through the form (a topic, not a pattern: only topics recover)
  await page.fill('#sub-pattern', 'demo/chat');
  await page.click('#subscribe');
  await page.waitForSelector('#subs li:has-text("demo/chat")');

  // Node -> page
  const node = await connect(t, url);
  assert.deepEqual(await node.publish('demo/chat', { text: 'from node' }), [16, 1, 1]);
  assert.deepEqual(await pageMessage(page, 'demo/chat', 1), { topic: 'demo/chat', seq: 1, payload: { text: 'from node' }, retained: false, recovered: false });
  assert.match((await page.textContent('#messages li[data-topic="demo/chat"][data-seq="1"] .msg-payload')) ?? '', /"text": "from node"/);

  // page -> Node, through the publish form
  assert.equal((await node.subscribe('demo/back'))[0], 16);
  await page.fill('#pub-topic', 'demo/back');
  await page.fill('#pub-payload', '{"text": "from the browser", "n": 7}');
  await page.click('#publish');
  assert.deepEqual(await node.delivery('demo/back'), [18, 'demo/back', 1, { text: 'from the browser', n: 7 }]);
  await page.waitForSelector('#pub-result.ok');

  // presence: a Node connection on demo/room is listed
  const member = await connect(t, url);
  assert.equal((await member.subscribe('demo/room'))[0], 16);
  await page.fill('#presence-topic', 'demo/room');
  await page.click('#presence-show');
  await page.waitForSelector('#presence li');
  assert.equal(await page.locator('#presence li').count(), 1);

  // restart on the same port; meanwhile another node of the same gateway takes a message
  await gw.close({ drainTimeout: 0 });
  await page.waitForFunction(() => (globalThis as unknown as DemoWindow).wiregateDemo.events.some((e) => e.kind === 'disconnected'), undefined, { timeout: 20_000 });
  // the header says so, with the close code, while the page tries again
  await page.waitForFunction(() => /^(reconnecting · attempt \d+ · closed with|disconnected ·) 1\d{3}/.test((globalThis as unknown as { document: { getElementById(id: string): { textContent: string } } }).document.getElementById('status-text').textContent), undefined, { timeout: 20_000 });
  const other = await startGateway(t, options);
  await other.gw.publish('demo/chat', { text: 'while you were away' });
  gw = await listen();
  await pageState(page, 'connected');
  assert.deepEqual(await pageMessage(page, 'demo/chat', 2), { topic: 'demo/chat', seq: 2, payload: { text: 'while you were away' }, retained: false, recovered: true });
  await page.waitForSelector('#messages li[data-seq="2"] .flag.recovered');
  await page.waitForFunction(() => (globalThis as unknown as DemoWindow).wiregateDemo.events.some((e) => e.kind === 'resubscribed' && e.text.includes('demo/chat (recovered)')));
  // and live again
  const again = await connect(t, url);
  assert.deepEqual(await again.publish('demo/chat', { text: 'back live' }), [16, 1, 3]);
  const live = await pageMessage(page, 'demo/chat', 3);
  assert.equal(live.recovered, false);

  mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true });
  const shot = join(ROOT, 'test-artifacts/demo-page.png');
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(statSync(shot).size > 10_000, 'screenshot written');
  assert.deepEqual(problems, [], 'no script errors, no CSP violations');
  await browser.close();
});

test('the demo page with authentication: waits for a token, connects with it, shows what the gateway refuses', { skip: haveChromium ? false : `not installed: chromium (${CHROMIUM})`, timeout: 60_000 }, async (t) => {
  ensureBundle();
  const secret = 'browser-test-secret-0123456789abcdef';
  const s = await startGateway(t, { demo: true, auth: { enabled: true, secret } });
  const token = await new SignJWT({ sub: 'alice', wg: { sub: ['demo/#'], pub: ['demo/#'] } })
    .setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime('10m')
    .sign(new TextEncoder().encode(secret));
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  cleanup(t, () => browser.close());
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));

  await page.goto(`${s.http}/demo`);
  await page.waitForSelector('#notice:not([hidden]):has-text("requires a token")');
  assert.equal(await page.evaluate(() => (globalThis as unknown as DemoWindow).wiregateDemo.state), 'idle', 'no connection attempt without a token');
  assert.equal(s.gw.connections, 0);

  // the token from the fragment (never sent to the server), as a link would carry it
  await page.goto(`${s.http}/demo#token=${token}`);
  await page.reload();
  await pageState(page, 'connected');
  await page.fill('#sub-pattern', 'demo/#');
  await page.click('#subscribe');
  await page.waitForSelector('#sub-result.ok');
  await page.fill('#sub-pattern', 'secret/#');
  await page.click('#subscribe');
  await page.waitForSelector('#sub-result.error');
  assert.match((await page.textContent('#sub-result')) ?? '', /^104: /, 'FORBIDDEN, with its code');
  await page.fill('#pub-payload', '{not json');
  await page.click('#publish');
  await page.waitForSelector('#pub-result.error:has-text("not valid JSON")');
  assert.deepEqual(problems, []);
  await browser.close();
});
