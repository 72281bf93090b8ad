// The outbound fast path writes pre-framed bytes to ws's socket. These tests fail if a ws upgrade
// changes the internals it relies on, and check ordering against ws's own (compressing) queue.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { beforeReceiverClose, fastPathSocket, senderIdle, fastPaths, TESTED_WS_VERSIONS, WS_VERSION } from '../src/transport/ws-internals.js';
import { wsFrameInPlace, WS_HEADROOM } from '../src/transport/frame.js';
import { encodeDelivery, encodePayload, decode } from '../src/protocol/messages.js';
import { connect, startGateway } from './helpers.js';
import { internals } from '../src/gateway.js';

test('ws internals used by the fast path are present on a live connection', async (t) => {
  assert.ok(TESTED_WS_VERSIONS.includes(WS_VERSION), `installed ws ${WS_VERSION} is on the tested allow-list`);
  if (process.env.WIREGATE_FAST_PATHS === 'off') return;
  assert.equal(fastPaths().directWrites, true);
  const s = await startGateway(t);
  const c = await connect(t, s.url);
  const session = [...internals(s.gw).sessions][0];
  assert.ok(fastPathSocket(session.ws) instanceof Socket);
  assert.equal(senderIdle(session.ws), true);
  assert.equal(internals(s.gw).fastPaths.directWrites, true);
  await c.close();
  await s.gw.close();
});

test("ws's Receiver: a hook runs before ws answers the peer's close frame", async (t) => {
  const s = await startGateway(t);
  const c = await connect(t, s.url); // wiregate.v1: the session does not install the hook itself
  const ws = [...internals(s.gw).sessions][0].ws;
  const events: string[] = [];
  const origClose = ws.close.bind(ws);
  ws.close = ((...args: Parameters<typeof ws.close>) => {
    events.push('ws.close');
    return origClose(...args);
  }) as typeof ws.close;
  assert.equal(beforeReceiverClose(ws, { beforeClose: () => events.push('hook') }), true, 'ws Receiver has the conclude/error listeners the hook expects');
  await c.close();
  assert.deepEqual(events.slice(0, 2), ['hook', 'ws.close']);
  await s.gw.close();
});

test('frames: header sizes and in-place framing', () => {
  for (const len of [0, 125, 126, 65535, 65536, 70000]) {
    const f = wsFrameInPlace(new Uint8Array(WS_HEADROOM + len).fill(1).subarray(WS_HEADROOM));
    const hdr = len < 126 ? 2 : len < 65536 ? 4 : 10;
    assert.equal(f.length, hdr + len);
    assert.equal(f[0], 0x82);
    if (hdr === 2) assert.equal(f[1], len);
    if (hdr === 4) assert.equal(f.readUInt16BE(2), len);
    if (hdr === 10) assert.equal(Number(f.readBigUInt64BE(2)), len);
  }
  const msg = encodeDelivery('a/b', 7, encodePayload('x'.repeat(200)), WS_HEADROOM);
  const wire = wsFrameInPlace(msg);
  assert.deepEqual(wire.subarray(4), Buffer.from(msg));
  assert.deepEqual(decode(wire.subarray(4)), [18, 'a/b', 7, 'x'.repeat(200)]);
  assert.throws(() => wsFrameInPlace(new Uint8Array(5)), RangeError);
});

test('with permessage-deflate, small direct frames and large compressed ones keep their order', async (t) => {
  const s = await startGateway(t, { compression: { preset: 'fast', threshold: 256 } });
  const c = await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: true });
  assert.match(c.ws.extensions as unknown as string, /permessage-deflate/);
  await c.subscribe('mix');
  const n = 200;
  for (let i = 0; i < n; i++) void s.gw.publish('mix', i % 3 === 0 ? { i, big: 'abc'.repeat(400) } : { i });
  for (let i = 0; i < n; i++) {
    const d = await c.delivery('mix');
    assert.equal((d[3] as { i: number }).i, i);
  }
  await c.close();
  await s.gw.close();
});

test('WIREGATE_NO_FAST_PATH=1 falls back to ws.send with the same results', async (t) => {
  process.env.WIREGATE_NO_FAST_PATH = '1';
  try {
    const s = await startGateway(t);
    assert.equal(internals(s.gw).fastPaths.directWrites, false);
    const c = await connect(t, s.url);
    await c.subscribe('t/#');
    await s.gw.publish('t/1', 'a');
    assert.deepEqual(await c.delivery(), [18, 't/1', 1, 'a']);
    await c.close();
    await s.gw.close();
  } finally {
    delete process.env.WIREGATE_NO_FAST_PATH;
  }
});
