// Behavioural contract of the ws-internals fast paths: these fail when a fast path is silently
// lost (a ws upgrade that changes the internals, a ws that inflates on its own) or when direct
// writes and ws's own queue stop keeping order. The suite also runs with WIREGATE_FAST_PATHS=off
// (CI's second pass), where the same orders must hold on the public API alone.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createGateway, type CreateGatewayOptions } from '../src/index.js';
import { internals } from '../src/gateway.js';
import { encodeDelivery, encodePayload, encodeResult } from '../src/protocol/messages.js';
import { fastPaths, inflateStats } from '../src/transport/ws-internals.js';
import { Client } from './helpers.js';

const FAST = fastPaths();

async function up(t: TestContext, options: CreateGatewayOptions) {
  const gw = createGateway({ log: { level: 'silent' }, host: '127.0.0.1', port: 0, ...options });
  t.after(() => gw.close({ drainTimeout: 0 }));
  const { port } = await gw.listen();
  return { gw, url: `ws://127.0.0.1:${port}/ws` };
}

async function client(t: TestContext, url: string, opts: ConstructorParameters<typeof Client>[2] = {}) {
  const c = new Client(url, 'wiregate.v1', opts);
  t.after(() => c.ws.terminate());
  await c.opened;
  return c;
}

/** Every frame payload the client receives, as bytes (after ws inflated it). */
function rawFrames(c: Client): Buffer[] {
  const frames: Buffer[] = [];
  c.ws.on('message', (d: Buffer) => frames.push(Buffer.from(d)));
  return frames;
}

const tick = () => new Promise((r) => setImmediate(r));

for (const preset of ['fast', 'balanced'] as const) {
  test(`synchronous inflate handles every compressed message (${preset}: ${preset === 'fast' ? 'shared inflater' : 'per-connection context'})`, async (t) => {
    const s = await up(t, { compression: { preset, threshold: 64 } });
    const c = await client(t, s.url, { perMessageDeflate: { threshold: 0, clientNoContextTakeover: preset === 'fast' } });
    assert.match(String(c.ws.extensions), /permessage-deflate/);
    s.gw.handle('echo', (_ctx, p) => p);
    const before = inflateStats.sync;
    const n = 50;
    for (let i = 0; i < n; i++) {
      const r = await c.request('echo', { i, text: 'telemetry '.repeat(20) });
      assert.deepEqual(r[2], { i, text: 'telemetry '.repeat(20) });
    }
    const inflated = inflateStats.sync - before;
    if (FAST.syncInflate) assert.equal(inflated, n, 'every compressed request went through the synchronous inflater');
    else assert.equal(inflated, 0, 'fast paths off: ws inflates on its own');
  });
}

for (const preset of ['off', 'fast', 'max'] as const) {
  test(`direct writes and ws-queued writes keep their order byte for byte across ticks (compression ${preset})`, async (t) => {
    // max: context takeover, so ws compresses large messages itself (its Sender is busy meanwhile
    // and small messages must queue behind it); fast: wiregate compresses shared frames; off: plain
    const s = await up(t, { compression: { preset, threshold: 256 } });
    const big = Buffer.alloc(4096, 7);
    s.gw.handle('blob', () => big);
    const c = await client(t, s.url, { perMessageDeflate: preset !== 'off' });
    await c.subscribe('mix/#');
    const frames = rawFrames(c);
    const expected: Buffer[] = [];
    let seq = 0;
    let id = 100;
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 6; i++) {
        const kind = (round + i) % 3;
        if (kind === 2) {
          // a large binary reply (written in pieces on the fast path) between deliveries
          const rid = ++id;
          c.send([4, rid, 'blob']);
          expected.push(Buffer.from(encodeResult(rid, big)));
          continue;
        }
        const payload = kind === 0 ? { round, i } : { round, i, text: 'abc'.repeat(300) };
        void s.gw.publish('mix/a', payload);
        expected.push(Buffer.from(encodeDelivery('mix/a', ++seq, encodePayload(payload))));
      }
      // replies arrive when the requests are read; wait for them before the next round
      const want = expected.length;
      while (frames.length < want) await c.next(() => true).catch(() => undefined);
      await tick();
    }
    // the relative order of deliveries and replies within a round depends on when the requests
    // are read, so compare each stream separately, byte for byte, and the total
    const deliveries = frames.filter((f) => f[1] === 18);
    const replies = frames.filter((f) => f[1] === 16);
    assert.equal(frames.length, expected.length);
    assert.deepEqual(deliveries, expected.filter((f) => f[1] === 18));
    assert.deepEqual(replies, expected.filter((f) => f[1] === 16));
    if (preset === 'fast' && FAST.directWrites) assert.ok(internals(s.gw).writer.deflated > 0, 'wiregate compressed shared frames itself');
  });
}

test('/info and /metrics report which fast paths are active', async (t) => {
  const s = await up(t, {});
  const port = Number(new URL(s.url).port);
  const info = (await (await fetch(`http://127.0.0.1:${port}/info`)).json()) as { fastPaths: Record<string, unknown> };
  assert.deepEqual(info.fastPaths, { ...FAST });
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  for (const p of ['directWrites', 'syncInflate', 'closeHook'] as const) {
    assert.match(metrics, new RegExp(`wiregate_fast_path_active\\{path="${p}"\\} ${FAST[p] ? 1 : 0}`));
  }
});

test('an untested ws version turns every fast path off, with the reason', () => {
  const fp = fastPaths({}, '8.99.0');
  assert.deepEqual([fp.directWrites, fp.syncInflate, fp.closeHook], [false, false, false]);
  assert.match(fp.reason, /8\.99\.0/);
  assert.equal(fastPaths({ WIREGATE_FAST_PATHS: 'off' }).directWrites, false);
});

test('a warning is logged at start when a fast path is off', async (t) => {
  const { pino } = await import('pino');
  const lines: Array<{ level: number; msg: string; fastPaths?: { reason: string } }> = [];
  const logger = pino({ level: 'warn' }, { write: (l: string) => lines.push(JSON.parse(l)) });
  const prev = process.env.WIREGATE_FAST_PATHS;
  process.env.WIREGATE_FAST_PATHS = 'off';
  let gw;
  try {
    gw = createGateway({ host: '127.0.0.1', port: 0, logger });
  } finally {
    if (prev === undefined) delete process.env.WIREGATE_FAST_PATHS;
    else process.env.WIREGATE_FAST_PATHS = prev;
  }
  t.after(() => gw.close({ drainTimeout: 0 }));
  await gw.listen();
  const warn = lines.find((l) => l.level === 40 && /fast paths off/.test(l.msg));
  assert.ok(warn, `a warning names the fast paths that are off: ${JSON.stringify(lines)}`);
  assert.match(warn.fastPaths!.reason, /WIREGATE_FAST_PATHS=off/);
  assert.deepEqual((gw.info as { fastPaths: { directWrites: boolean } }).fastPaths.directWrites, false);
});
