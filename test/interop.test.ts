// Compress-once broadcast frames (one deflated frame shared by every subscriber, see
// src/transport/deflate.ts) must decode in every client library, not only in `ws`: here Chromium
// (through playwright-core), Python's `websockets` and `ws` subscribe to the same gateway at once,
// each with its library's default permessage-deflate offer. Each also sends a compressed request,
// inflated by wiregate's synchronous inflater. The tools come from Debian's packages (chromium,
// python3-websockets, python3-msgpack); .ci/run installs them, and under CI=true a missing one
// fails the test instead of skipping it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { FAST, cleanup, connect, startGateway } from './helpers.js';
import { spawnAtEnd } from './proc.js';
import { decodeFrame, encode } from '../src/protocol/messages.js';
import { internals } from '../src/gateway.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const PYTHON = process.env.INTEROP_PYTHON ?? '/usr/bin/python3';
const PY_CLIENT = fileURLToPath(new URL('./interop/py_subscriber.py', import.meta.url));
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const haveChromium = existsSync(CHROMIUM);
const havePython = existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import websockets, msgpack']).status === 0;
const missing = [!haveChromium && `chromium (${CHROMIUM})`, !havePython && `python3-websockets/python3-msgpack (${PYTHON})`].filter(Boolean).join(', ');
if (missing && process.env.CI) throw new Error(`interop test needs ${missing}; .ci/run installs them with apt-get`);

// compressible payloads above the threshold, small ones below it (sent uncompressed, same order),
// and one whose compressed frame needs a 64-bit length
const noise = (n: number) => Array.from({ length: n }, (_, i) => ((i * 2654435761) >>> 0).toString(36)).join('');
const payloads: unknown[] = [
  { device: 'sensor-1', readings: Array.from({ length: 30 }, (_, k) => ({ name: 'temp', value: 20 + k / 10, unit: 'C' })) },
  7,
  'short',
  { text: 'wiregate '.repeat(2000) },
  { blob: noise(14_000) },
  { device: 'sensor-2', status: 'ok', list: [1, 2, 3] },
  { device: 'sensor-3', readings: Array.from({ length: 60 }, (_, k) => ({ name: 'humidity', value: k, unit: '%' })) },
];
const echoPayload = { hello: 'from the client', pad: 'abc'.repeat(400) };

for (const preset of ['fast', 'balanced'] as const) {
  test(`compress-once frames decode in Chromium, Python websockets and ws (preset ${preset})`, { skip: missing ? `not installed: ${missing}` : false, timeout: 60_000 }, async (t) => {
    const s = await startGateway(t, { compression: { preset, threshold: 64 } });
    s.gw.handle('echo', (_c, p) => p);
    const { child: py, exited: pyExit, stderr } = spawnAtEnd(t, PYTHON, [PY_CLIENT, s.url, 'interop/#', String(payloads.length), JSON.stringify(echoPayload)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const pyLines = createInterface({ input: py.stdout! })[Symbol.asyncIterator]();
    const pyNext = async () => {
      const r = await pyLines.next();
      assert.ok(!r.done, `python client ended early: ${stderr()}`);
      return JSON.parse(r.value) as Record<string, unknown>;
    };

    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    cleanup(t, () => browser.close());
    const page = await browser.newPage();
    const browserExt = await page.evaluate(
      ([url, sub]) =>
        new Promise<string>((resolve, reject) => {
          const w = globalThis as unknown as { msgs: number[][]; ws: WebSocket };
          w.msgs = [];
          const ws = new WebSocket(url, 'wiregate.v1');
          w.ws = ws;
          ws.binaryType = 'arraybuffer';
          ws.onopen = () => ws.send(new Uint8Array(sub));
          ws.onerror = () => reject(new Error('browser WebSocket error'));
          ws.onmessage = (e) => {
            w.msgs.push(Array.from(new Uint8Array(e.data as ArrayBuffer)));
            if (w.msgs.length === 1) resolve(ws.extensions);
          };
        }),
      [s.url, [...encode([1, 1, 'interop/#'])]] as const,
    );
    const node = await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: true });
    await node.subscribe('interop/#');
    const ready = await pyNext();
    assert.equal(ready.ready, true, JSON.stringify(ready));

    for (const [name, ext] of [['chromium', browserExt], ['python websockets', ready.extensions as string], ['ws', String(node.ws.extensions)]]) {
      assert.match(ext, /permessage-deflate/, `${name} negotiated permessage-deflate: ${ext}`);
    }
    assert.equal(internals(s.gw).sessions.size, 3);
    for (const x of internals(s.gw).sessions) assert.equal(x.zBits > 0, FAST.directWrites, 'every subscriber takes shared compressed frames (fast paths on)');

    const deflated0 = internals(s.gw).writer.deflated;
    for (let i = 0; i < payloads.length; i++) await s.gw.publish(`interop/${i}`, payloads[i]);
    const expected = payloads.map((p, i) => [18, `interop/${i}`, 1, p]);
    const big = payloads.filter((p) => encode(p).length >= 64).length;
    assert.equal(internals(s.gw).writer.deflated - deflated0, FAST.directWrites ? big : 0, 'each large broadcast compressed once for all three subscribers (by ws per connection when the fast paths are off)');

    // ws
    for (const e of expected) assert.deepEqual(await node.delivery(), e);
    // python
    for (const e of expected) assert.deepEqual((await pyNext()).msg, e);
    assert.deepEqual((await pyNext()).echo, [16, 2, echoPayload], 'python request inflated and answered');
    assert.equal(await pyExit, 0, stderr());
    // chromium: frames collected in the page, decoded here
    await page.waitForFunction((n) => (globalThis as unknown as { msgs: unknown[] }).msgs.length >= n, expected.length + 1);
    const frames = await page.evaluate(() => (globalThis as unknown as { msgs: number[][] }).msgs);
    const got = frames.flatMap((f) => decodeFrame(Buffer.from(f)));
    assert.deepEqual(got[0], [16, 1]);
    assert.deepEqual(got.slice(1), expected);
    // chromium sends a compressed request (its deflate, its context settings); wiregate inflates it
    const echo = await page.evaluate(
      (req) =>
        new Promise<number[][]>((resolve) => {
          const w = globalThis as unknown as { ws: WebSocket };
          const replies: number[][] = [];
          w.ws.onmessage = (e) => {
            replies.push(Array.from(new Uint8Array(e.data as ArrayBuffer)));
            if (replies.length === 2) resolve(replies);
          };
          w.ws.send(new Uint8Array(req));
          w.ws.send(new Uint8Array(req).map((b, i) => (i === 2 ? 3 : b))); // id 3, same bytes: compresses against the first under context takeover
        }),
      [...encode([4, 2, 'echo', echoPayload])],
    );
    assert.deepEqual(echo.map((f) => decodeFrame(Buffer.from(f))[0]), [[16, 2, echoPayload], [16, 3, echoPayload]]);
    await node.close();
    await browser.close();
    await s.gw.close();
  });
}
