// The browser bundle's small msgpack encoder (src/client/msgpack-lite.ts) against msgpackr with the
// protocol's options: the same bytes for every value both write in one standard way, the same
// decoded value for the rest (dates, floats), and the headroom of RESERVE_START_SPACE.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Packr as MsgpackrPackr, Unpackr } from 'msgpackr';
import { Packr, RESERVE_START_SPACE } from '../src/client/msgpack-lite.js';
import { decodeFrame } from '../src/protocol/messages.js';

const reference = new MsgpackrPackr({ useRecords: false, variableMapSize: true, int64AsType: 'number', encodeUndefinedAsNil: true } as ConstructorParameters<typeof MsgpackrPackr>[0]);
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' } as ConstructorParameters<typeof Unpackr>[0]);
const lite = new Packr();

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

// Values with exactly one standard encoding: integers, strings, binary, arrays, maps with string keys.
const key = fc.string({ maxLength: 40 }).filter((k) => k !== '__proto__');
const canonical = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
    fc.constantFrom(0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31)),
    fc.string({ maxLength: 300 }),
    fc.string({ unit: 'grapheme', maxLength: 40 }),
    fc.uint8Array({ maxLength: 300 }),
    fc.array(tie('value'), { maxLength: 20 }),
    fc.dictionary(key, tie('value'), { maxKeys: 20 }),
  ),
})).value;

test('the same bytes as msgpackr for integers, strings, binary, arrays and maps', () => {
  fc.assert(
    fc.property(canonical, (v) => {
      assert.equal(hex(lite.pack(v)), hex(reference.pack(v)));
    }),
    { numRuns: 2000 },
  );
});

test('large sizes: 16- and 32-bit string, binary, array and map headers', () => {
  for (const v of ['x'.repeat(70_000), new Uint8Array(70_000).fill(7), Array.from({ length: 70_000 }, (_, i) => i % 3), Object.fromEntries(Array.from({ length: 70_000 }, (_, i) => [`k${i}`, i]))]) {
    assert.equal(hex(lite.pack(v)), hex(reference.pack(v)));
  }
});

test('floats, big integers, bigint, -0, undefined and dates decode to what msgpackr encodes', () => {
  const values: unknown[] = [
    0.5, -1.25, Math.PI, 1e300, -1e-300, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 2 ** 40, -(2 ** 40), 2 ** 53 + 2, NaN, Infinity, -Infinity, -0,
    123n, -(2n ** 63n), 2n ** 64n - 1n,
    { a: undefined, b: [undefined] },
    new Date(0), new Date(1_700_000_000_000), new Date(1_700_000_000_123), new Date(-1000), new Date(Date.UTC(2500, 0, 1, 0, 0, 0, 7)),
    new Map<unknown, unknown>([['m', 1], [2, 'two']]),
  ];
  for (const v of values) {
    assert.deepEqual(unpackr.unpack(lite.pack(v)), unpackr.unpack(reference.pack(v)), `value ${String(v)}`);
  }
  fc.assert(
    fc.property(fc.double(), fc.date({ noInvalidDate: true }), (d, date) => {
      assert.deepEqual(unpackr.unpack(lite.pack([d, date])), unpackr.unpack(reference.pack([d, date])));
    }),
    { numRuns: 1000 },
  );
});

test('what it writes passes the gateway frame checks (timestamps included)', () => {
  const frame = lite.pack([3, 1, 'a/b', { at: new Date(1_700_000_000_123), n: [1, -2, 3.5], raw: new Uint8Array([1, 2]) }]);
  assert.deepEqual(decodeFrame(frame), [[3, 1, 'a/b', { at: new Date(1_700_000_000_123), n: [1, -2, 3.5], raw: new Uint8Array([1, 2]) }]]);
});

test('RESERVE_START_SPACE leaves the requested headroom, like msgpackr', () => {
  const a = lite.pack([18, 'x', 1], RESERVE_START_SPACE | 10);
  const b = reference.pack([18, 'x', 1], RESERVE_START_SPACE | 10);
  assert.equal(hex(a.subarray(10)), hex(b.subarray(10)));
  assert.equal(a.length, b.length);
});

test('refuses what msgpack cannot carry, and cycles', () => {
  assert.throws(() => lite.pack(() => 1), TypeError);
  assert.throws(() => lite.pack(Symbol('s')), TypeError);
  const cyclic: unknown[] = [];
  cyclic.push(cyclic);
  assert.throws(() => lite.pack(cyclic), RangeError);
  // the encoder is reusable after a failure
  assert.equal(hex(lite.pack([1, 'a'])), hex(reference.pack([1, 'a'])));
});
