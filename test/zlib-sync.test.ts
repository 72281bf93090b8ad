// The synchronous, reusable zlib streams behind wiregate's permessage-deflate (src/transport/zlib-sync.ts).
// They drive Node's zlib handle directly; these tests fail if a Node upgrade changes what they use.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, deflateRawSync, inflateRawSync, createDeflateRaw } from 'node:zlib';
import { InflateError, OutputLimitError, createSyncDeflate, createSyncInflate, syncZlibSupported } from '../src/transport/zlib-sync.js';

const SYNC = { finishFlush: constants.Z_SYNC_FLUSH };
const text = (i: number, n = 900) => Buffer.from(JSON.stringify({ i, s: 'wiregate telemetry '.repeat(Math.ceil(n / 19)) }).slice(0, n));

test('this Node exposes the zlib internals the sync streams need', () => {
  assert.equal(syncZlibSupported, true, `Node ${process.version}: _handle.writeSync/_writeState changed; wiregate falls back to slower zlib paths`);
});

test('a reset deflater gives the same bytes as a fresh deflateRawSync, message after message', () => {
  for (const [level, memLevel, bits] of [[1, 8, 15], [6, 9, 15], [9, 1, 9], [0, 8, 10]]) {
    const d = createSyncDeflate(level, memLevel, bits)!;
    for (let i = 0; i < 20; i++) {
      const msg = text(i, 50 + i * 97);
      d.reset();
      const got = d.write(msg, false);
      assert.ok(got.equals(deflateRawSync(msg, { ...SYNC, level, memLevel, windowBits: bits })), `level ${level} message ${i}`);
      assert.ok(inflateRawSync(got, SYNC).equals(msg));
    }
    d.close();
    assert.equal(d.usable, false);
  }
});

test('a shared inflater reset per message inflates context-free messages; trailer optional', () => {
  const z = createSyncInflate(15)!;
  for (let i = 0; i < 50; i++) {
    const msg = text(i, 10 + i * 40);
    const c = deflateRawSync(msg, SYNC);
    z.reset();
    // permessage-deflate strips the final 00 00 ff ff; `trailer` puts it back
    assert.ok(z.write(c.subarray(0, c.length - 4), true).equals(msg));
  }
});

test('with context takeover one inflater follows a stream of flushed messages', () => {
  const d = createDeflateRaw({ level: 6 });
  const inf = createSyncInflate(15)!;
  const msgs = Array.from({ length: 30 }, (_, i) => text(i % 3, 700));
  const chunks: Buffer[] = [];
  d.on('data', (b: Buffer) => chunks.push(b));
  let total = 0;
  const flushed = (m: Buffer) =>
    new Promise<Buffer>((resolve) => {
      d.write(m);
      d.flush(constants.Z_SYNC_FLUSH, () => {
        const all = Buffer.concat(chunks);
        chunks.length = 0;
        resolve(all);
      });
    });
  return (async () => {
    for (const m of msgs) {
      const c = await flushed(m);
      total += c.length;
      assert.ok(inf.write(c.subarray(0, c.length - 4), true).equals(m));
    }
    // repeated content compresses against history: far smaller than the messages themselves
    assert.ok(total * 5 < msgs.length * 700, `context was used (${total} bytes)`);
    d.close();
    inf.close();
  })();
});

test('output larger than the 64 KiB scratch buffer is assembled whole', () => {
  const big = Buffer.alloc(300_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) % 251;
  const d = createSyncDeflate(1, 8, 15)!;
  d.reset();
  const c = d.write(big, false);
  assert.ok(c.equals(deflateRawSync(big, { ...SYNC, level: 1 })));
  const z = createSyncInflate(15)!;
  assert.ok(z.write(c, false).equals(big));
});

test('corrupt data throws InflateError and leaves the stream unusable; limits throw OutputLimitError', () => {
  const z = createSyncInflate(15)!;
  assert.throws(() => z.write(Buffer.from([0xff, 0xff, 0xff, 0x00, 1, 2, 3]), true), InflateError);
  assert.equal(z.usable, false);
  assert.throws(() => z.write(Buffer.from([1]), false), InflateError);

  const bomb = deflateRawSync(Buffer.alloc(1_000_000), SYNC);
  const y = createSyncInflate(15)!;
  assert.throws(() => y.write(bomb, false, 100_000), OutputLimitError);
  assert.equal(y.usable, false);
  const ok = createSyncInflate(15)!;
  assert.equal(ok.write(bomb, false, 1_000_000).length, 1_000_000, 'exactly at the limit is allowed');
});
