// permessage-deflate: wiregate compresses each broadcast once (server_no_context_takeover) and
// every client decodes it, whatever it negotiated; ws keeps compressing when context takeover is on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FAST, connect, startGateway, type Client } from './helpers.js';
import { encode } from '../src/protocol/messages.js';
import { internals } from '../src/gateway.js';

const payload = (i: number) => ({ i, readings: Array.from({ length: 40 }, (_, k) => ({ sensor: `temp-${k}`, value: 20 + k / 10, unit: 'C' })) });

test('one compressed frame per broadcast, decoded by clients with different deflate offers', async (t) => {
  const s = await startGateway(t, { compression: { preset: 'fast', threshold: 128 } });
  const clients: Client[] = [
    await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: true }),
    await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: { clientNoContextTakeover: true } }),
    await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: { serverNoContextTakeover: true } }),
    await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: false }),
  ];
  for (const c of clients) await c.subscribe('telemetry/#');
  const sessions = [...internals(s.gw).sessions];
  assert.deepEqual(sessions.map((x) => x.zBits), FAST.directWrites ? [15, 15, 15, 0] : [0, 0, 0, 0]);
  const before = clients.map((c) => (c.ws as unknown as { _socket: { bytesRead: number } })._socket.bytesRead);
  const n = 20;
  for (let i = 0; i < n; i++) await s.gw.publish(`telemetry/dev${i}`, payload(i));
  for (const c of clients) {
    for (let i = 0; i < n; i++) assert.deepEqual(await c.delivery(), [18, `telemetry/dev${i}`, 1, payload(i)]);
  }
  assert.equal(internals(s.gw).writer.deflated, FAST.directWrites ? n : 0, 'compressed once per publish, not once per subscriber (by ws per connection when the fast paths are off)');
  const read = clients.map((c, k) => (c.ws as unknown as { _socket: { bytesRead: number } })._socket.bytesRead - before[k]);
  assert.ok(read[0] * 3 < read[3], `compressed clients read far fewer bytes (${read[0]} vs ${read[3]})`);
  await Promise.all(clients.map((c) => c.close()));
  await s.gw.close();
});

test('a client limiting server_max_window_bits gets frames compressed for its window', async (t) => {
  const s = await startGateway(t, { compression: { preset: 'fast', threshold: 64, serverMaxWindowBits: 15 } });
  const small = await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: { serverMaxWindowBits: 10 } });
  const big = await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: true });
  await small.subscribe('w');
  await big.subscribe('w');
  assert.deepEqual([...internals(s.gw).sessions].map((x) => x.zBits), FAST.directWrites ? [10, 15] : [0, 0]);
  const p = { text: 'wiregate '.repeat(500) };
  await s.gw.publish('w', p);
  assert.deepEqual((await small.delivery())[3], p);
  assert.deepEqual((await big.delivery())[3], p);
  await Promise.all([small.close(), big.close()]);
  await s.gw.close();
});

test('replies are compressed per connection; inbound compressed messages are inflated', async (t) => {
  const s = await startGateway(t, { compression: { preset: 'fast', threshold: 128 } });
  s.gw.handle('echo', (_c, p) => p);
  const c = await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: { threshold: 0 } });
  for (let i = 0; i < 10; i++) {
    const r = await c.request('echo', payload(i));
    assert.deepEqual(r[2], payload(i));
  }
  assert.ok(FAST.directWrites ? internals(s.gw).writer.deflated >= 10 : internals(s.gw).writer.deflated === 0);
  await c.close();
  await s.gw.close();
});

test('context takeover (preset max): ws compresses, order and content preserved', async (t) => {
  const s = await startGateway(t, { compression: { preset: 'max' } });
  const c = await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: true });
  await c.subscribe('m');
  assert.equal([...internals(s.gw).sessions][0].zBits, 0);
  for (let i = 0; i < 50; i++) void s.gw.publish('m', i % 2 ? i : payload(i));
  for (let i = 0; i < 50; i++) assert.deepEqual((await c.delivery())[3], i % 2 ? i : payload(i));
  assert.equal(internals(s.gw).writer.deflated, 0);
  await c.close();
  await s.gw.close();
});

// Inbound messages are inflated synchronously (src/transport/ws-internals.ts installSyncInflate):
// one shared inflater without client context takeover, one per connection with it.
const INBOUND = [
  { name: 'fast (no client context takeover, shared inflater)', preset: 'fast' as const, contextFree: true },
  { name: 'balanced (client context takeover, inflater per connection)', preset: 'balanced' as const, contextFree: false },
];

/** A client frame with RSV1 set (compressed), masked with a zero key so the payload is as given. */
function rawCompressedFrame(payload: Buffer, fin = true): Buffer {
  assert.ok(payload.length < 126);
  return Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | 0x40 | 0x02, 0x80 | payload.length, 0, 0, 0, 0]), payload]);
}

for (const mode of INBOUND) {
  test(`inbound inflate, ${mode.name}: whole, fragmented and interleaved messages`, async (t) => {
    const s = await startGateway(t, { compression: { preset: mode.preset, threshold: 0 } });
    s.gw.handle('echo', (_c, p) => p);
    const a = await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: { threshold: 0 } });
    const b = await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: { threshold: 0 } });
    const [sa] = [...internals(s.gw).sessions];
    const params = (sa.ws as unknown as { _extensions: Record<string, { params: Record<string, unknown> }> })._extensions['permessage-deflate'].params;
    assert.equal(params.client_no_context_takeover === true, mode.contextFree, JSON.stringify(params));
    const receiver = (sa.ws as unknown as { _receiver: object })._receiver;
    assert.equal(Object.hasOwn(receiver, 'decompress'), FAST.syncInflate, 'synchronous inflate installed on the connection (only with the fast path on)');
    const msg = (c: Client, i: number) => {
      const id = c.id();
      return { id, bytes: encode([4, id, 'echo', payload(i)]) };
    };
    // whole messages from two clients, interleaved; repeated content exercises context takeover
    for (let i = 0; i < 20; i++) {
      const ma = msg(a, i);
      const mb = msg(b, i + 100);
      a.ws.send(ma.bytes);
      b.ws.send(mb.bytes);
      assert.deepEqual((await a.next((m) => m[1] === ma.id))[2], payload(i));
      assert.deepEqual((await b.next((m) => m[1] === mb.id))[2], payload(i + 100));
    }
    // a message in three compressed fragments, with a whole message from the other client between
    const f = msg(a, 7);
    const third = Math.floor(f.bytes.length / 3);
    a.ws.send(f.bytes.subarray(0, third), { fin: false });
    a.ws.send(f.bytes.subarray(third, 2 * third), { fin: false });
    const between = msg(b, 8);
    b.ws.send(between.bytes);
    assert.deepEqual((await b.next((m) => m[1] === between.id))[2], payload(8));
    a.ws.send(f.bytes.subarray(2 * third), { fin: true });
    assert.deepEqual((await a.next((m) => m[1] === f.id))[2], payload(7));
    // uncompressed messages on a deflate connection still pass
    const plain = msg(b, 9);
    b.ws.send(plain.bytes, { compress: false });
    assert.deepEqual((await b.next((m) => m[1] === plain.id))[2], payload(9));
    await Promise.all([a.close(), b.close()]);
    await s.gw.close();
  });

  test(`inbound inflate, ${mode.name}: corrupt deflate data closes with 1007, others unaffected`, async (t) => {
    const s = await startGateway(t, { compression: { preset: mode.preset, threshold: 0 } });
    s.gw.handle('echo', (_c, p) => p);
    const healthy = await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: { threshold: 0 } });
    const bad = await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: { threshold: 0 } });
    assert.deepEqual((await healthy.request('echo', payload(1)))[2], payload(1));
    // BTYPE 11 is reserved: invalid from the first block header; sent as two fragments so the
    // error surfaces at the final one on the shared path and at the first on the per-connection one
    const sock = (bad.ws as unknown as { _socket: { write(b: Buffer): void } })._socket;
    sock.write(Buffer.concat([rawCompressedFrame(Buffer.from([0xff, 0xff, 0xff, 0x00]), false), Buffer.from([0x80, 0x84, 0, 0, 0, 0, 1, 2, 3, 4])]));
    assert.equal((await bad.closed).code, 1007);
    assert.deepEqual((await healthy.request('echo', payload(2)))[2], payload(2));
    // a new connection after the failure inflates normally (the shared inflater was replaced)
    const again = await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: { threshold: 0 } });
    assert.deepEqual((await again.request('echo', payload(3)))[2], payload(3));
    await Promise.all([healthy.close(), again.close()]);
    await s.gw.close();
  });
}

/** Client frame (masked, zero key) of any length; RSV1 marks it compressed. */
function clientFrameAny(payload: Buffer, rsv1: boolean): Buffer {
  const b0 = 0x80 | (rsv1 ? 0x40 : 0) | 0x02;
  const head = payload.length < 126 ? Buffer.from([b0, 0x80 | payload.length]) : Buffer.from([b0, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([head, Buffer.alloc(4), payload]);
}

for (const mode of INBOUND) {
  test(`inbound inflate, ${mode.name}: fuzzed compressed requests get an answer or a documented close, others unaffected`, async (t) => {
    const { deflateRawSync, constants } = await import('node:zlib');
    const s = await startGateway(t, { compression: { preset: mode.preset, threshold: 0 }, maxPayload: 4096 });
    s.gw.handle('echo', (_c, p) => p);
    const healthy = await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: { threshold: 0 } });
    let seed = 0x5eed ^ (mode.contextFree ? 1 : 2);
    const rnd = (n: number) => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) % n);
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 60; i++) {
      const c = await connect(t, s.url, 'wiregate.v1', { perMessageDeflate: { threshold: 0 } });
      const z = deflateRawSync(encode([4, 1, 'echo', payload(i)]), { finishFlush: constants.Z_SYNC_FLUSH }).subarray(0, -4);
      const bad = Buffer.from(z);
      const kind = rnd(5); // 4: untouched, the control case
      let data: Buffer;
      if (kind === 0) for (let k = 0; k <= rnd(3); k++) bad[rnd(bad.length)] ^= 1 << rnd(8); // bit flips
      if (kind === 1) data = bad.subarray(0, 1 + rnd(bad.length - 1)); // truncated
      else if (kind === 2) data = Buffer.concat([bad, Buffer.from(Array.from({ length: 1 + rnd(40) }, () => rnd(256)))]); // trailing garbage
      else if (kind === 3) data = Buffer.from(Array.from({ length: 1 + rnd(200) }, () => rnd(256))); // noise
      else data = bad; // flipped (0) or untouched (4)
      // then an uncompressed PING: whatever the fuzzed frame did, an answer or a documented close
      // follows (4500: it inflated to a frame of many invalid messages)
      const sock = (c.ws as unknown as { _socket: { write(b: Buffer): void } })._socket;
      sock.write(Buffer.concat([clientFrameAny(data, true), clientFrameAny(Buffer.from(encode([5, 99])), false)]));
      const outcome = await Promise.race([c.next((m) => m[0] === 20 && m[1] === 99).then(() => 'answered'), c.closed.then((x) => `close ${x.code}`)]);
      assert.match(outcome, kind === 4 ? /^answered$/ : /^(answered|close (1002|1007|1009|4500))$/, `fuzz case ${i} (kind ${kind})`);
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      await c.close();
      assert.deepEqual((await healthy.request('echo', payload(1000 + i)))[2], payload(1000 + i), `healthy client after fuzz case ${i}`);
    }
    assert.ok((outcomes.get('close 1007') ?? 0) > 0 && (outcomes.get('answered') ?? 0) > 0, `both outcomes occur: ${JSON.stringify([...outcomes])}`);
    await healthy.close();
    await s.gw.close();
  });
}
