import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_TOPIC_LIMITS,
  ErrorCode,
  MalformedFrameError,
  MsgType,
  decode,
  decodeFrame,
  encode,
  encodeDelivery,
  encodeError,
  encodePayload,
  encodeResult,
  scanMsgpack,
  shouldReconnect,
  topicError,
  topicMatches,
  validateClientMessage,
} from '../src/protocol/index.js';
import { SubscriptionTrie } from '../src/pubsub/trie.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const bytes = (h: string) => Buffer.from(h.replace(/\s+/g, ''), 'hex');

describe('wire format from raw bytes', () => {
  test('documented example frames decode to the documented messages', () => {
    // These byte strings appear in docs/protocol.md.
    assert.deepEqual(decodeFrame(bytes('93 01 01 ae 73656e736f72732f2b2f74656d70')), [[1, 1, 'sensors/+/temp']]);
    assert.deepEqual(decodeFrame(bytes('94 03 02 af 73656e736f72732f34322f74656d70 81 a1 76 cb 4035800000000000')), [[3, 2, 'sensors/42/temp', { v: 21.5 }]]);
    assert.deepEqual(decodeFrame(bytes('92 05 07')), [[5, 7]]);
    assert.deepEqual(decodeFrame(bytes('92 05 07 92 05 08')), [[5, 7], [5, 8]], 'two messages in one frame');
  });

  test('server encoders produce standard msgpack with the documented bytes', () => {
    assert.equal(hex(encodeResult(1)), '921001');
    assert.equal(hex(encodeResult(2, 1)), '93100201');
    assert.equal(hex(encodeError(3, ErrorCode.FORBIDDEN, 'no')), '9411' + '03' + '68' + 'a26e6f');
    const d = encodeDelivery('sensors/42/temp', 1, encodePayload({ v: 21.5 }));
    assert.equal(hex(d), '9412af73656e736f72732f34322f74656d700181a176cb4035800000000000');
    assert.deepEqual(decode(d), [MsgType.MESSAGE, 'sensors/42/temp', 1, { v: 21.5 }]);
  });

  test('delivery header encodes every topic length and seq width', () => {
    for (const tlen of [1, 31, 32, 255, 256, 300]) {
      for (const seq of [0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1]) {
        const topic = 't'.repeat(tlen);
        assert.deepEqual(decode(encodeDelivery(topic, seq, encodePayload([seq]))), [18, topic, seq, [seq]]);
      }
    }
  });

  test('msgpack extension-free encoding (no msgpackr records)', () => {
    const b = encode([{ a: 1 }, { a: 2 }]);
    assert.equal(hex(b), '9281a1610181a16102');
  });
});

describe('bounded decoding', () => {
  const malformed: Array<[string, string]> = [
    ['truncated array', '9301'],
    ['array32 claiming 4G elements', 'ddffffffff01'],
    ['map32 claiming 4G entries', 'dfffffffff01'],
    ['str32 claiming 4 GB', 'dbffffffff61'],
    ['bin32 claiming 4 GB', 'c6ffffffff00'],
    ['ext32 claiming 4 GB', 'c9ffffffff0100'],
    ['reserved byte 0xc1', 'c1'],
    ['deep nesting', '91'.repeat(100) + '01'],
    ['empty frame', ''],
    ['unknown extension', 'd40101'],
  ];
  for (const [name, h] of malformed) {
    test(`rejects ${name}`, () => {
      assert.throws(() => decodeFrame(bytes(h)), MalformedFrameError);
    });
  }

  test('scan counts values and respects depth', () => {
    assert.equal(scanMsgpack(bytes('01 02 03')), 3);
    assert.equal(scanMsgpack(bytes('91'.repeat(32) + '01')), 1);
    assert.equal(scanMsgpack(bytes('91'.repeat(33) + '01')), -2);
    assert.equal(scanMsgpack(bytes('80 90 c0')), 3);
  });

  test('__proto__ keys do not pollute prototypes', () => {
    const [m] = decodeFrame(bytes('81 a9 5f5f70726f746f5f5f 81 a1 61 01')) as [Record<string, unknown>];
    assert.equal(({} as Record<string, unknown>).a, undefined);
    assert.equal(Object.getPrototypeOf(m), Object.prototype);
  });
});

describe('message validation', () => {
  const v = (m: unknown) => validateClientMessage(m, DEFAULT_TOPIC_LIMITS);
  test('valid messages', () => {
    for (const m of [[1, 1, 'a/+'], [1, 1, 'a/#', {}], [2, 3, 'a'], [3, 0, 'a/b', null], [3, 9, 'a', 1, { noEcho: true }], [4, 1, 'm'], [4, 1, 'm', [1]], [5, 0], [6, 1, 'tok']]) {
      assert.equal(v(m), null, JSON.stringify(m));
    }
  });
  test('invalid messages carry the id when readable', () => {
    assert.deepEqual(v('x'), { id: 0, code: ErrorCode.BAD_REQUEST, message: 'message must be a non-empty array' });
    assert.deepEqual(v([]), { id: 0, code: ErrorCode.BAD_REQUEST, message: 'message must be a non-empty array' });
    assert.equal(v([1.5, 1])!.code, ErrorCode.BAD_REQUEST);
    assert.deepEqual(v([42, 9]), { id: 9, code: ErrorCode.UNKNOWN_TYPE, message: 'unknown message type 42' });
    assert.equal(v([1, -1, 'a'])!.code, ErrorCode.BAD_REQUEST);
    assert.equal(v([1, 2 ** 32, 'a'])!.code, ErrorCode.BAD_REQUEST);
    assert.deepEqual(v([1, 5, 'a//b']), { id: 5, code: ErrorCode.INVALID_TOPIC, message: 'topic has an empty level' });
    assert.equal(v([3, 5, 'a/+', 1])!.code, ErrorCode.INVALID_TOPIC);
    assert.equal(v([3, 5, 'a'])!.code, ErrorCode.BAD_REQUEST);
    assert.equal(v([3, 5, 'a', 1, 'opts'])!.code, ErrorCode.BAD_REQUEST);
    assert.equal(v([4, 0, 'm'])!.code, ErrorCode.BAD_REQUEST);
    assert.equal(v([4, 1, 7])!.code, ErrorCode.BAD_REQUEST);
    assert.equal(v([5])!.code, ErrorCode.BAD_REQUEST);
    assert.equal(v([6, 1, ''])!.code, ErrorCode.BAD_REQUEST);
    assert.equal(v([2, 1, 'a', {}])!.code, ErrorCode.BAD_REQUEST);
  });
});

describe('topics', () => {
  test('validation rules', () => {
    assert.equal(topicError('a/b/c', false), null);
    assert.equal(topicError('dev-1/x_y.z:w@q~r=s,t', false), null);
    assert.equal(topicError('a/+/c', true), null);
    assert.equal(topicError('#', true), null);
    assert.equal(topicError('a/#', true), null);
    assert.match(topicError('a/+', false)!, /only allowed in subscription/);
    assert.match(topicError('a/#/b', true)!, /last level/);
    assert.match(topicError('a+/b', true)!, /whole level/);
    assert.match(topicError('a/b#', true)!, /whole level/);
    assert.match(topicError('', false)!, /empty/);
    assert.match(topicError('/a', false)!, /empty level/);
    assert.match(topicError('a/', false)!, /empty level/);
    assert.match(topicError('a b', false)!, /invalid character/);
    assert.match(topicError('ü', false)!, /invalid character/);
    assert.match(topicError(5, false)!, /string/);
    assert.match(topicError('x'.repeat(300), false)!, /longer/);
    assert.match(topicError(Array(20).fill('a').join('/'), false)!, /levels/);
    assert.equal(topicError(Array(16).fill('a').join('/'), false), null);
  });

  test('matching', () => {
    const cases: Array<[string, string, boolean]> = [
      ['a/b', 'a/b', true],
      ['a/+', 'a/b', true],
      ['a/+', 'a/b/c', false],
      ['a/#', 'a', true],
      ['a/#', 'a/b/c', true],
      ['#', 'x/y', true],
      ['+/b', 'a/b', true],
      ['+', 'a/b', false],
      ['a/+/c', 'a/b/d', false],
    ];
    for (const [p, t, want] of cases) assert.equal(topicMatches(p, t), want, `${p} vs ${t}`);
  });

  test('the trie agrees with topicMatches and prunes', () => {
    const trie = new SubscriptionTrie<string>();
    const patterns = ['a/b', 'a/+', 'a/#', '#', '+/b', '+/+/c', 'x/y/z', 'a/b/#'];
    for (const p of patterns) trie.add(p, p);
    for (const topic of ['a', 'a/b', 'a/b/c', 'x/y/z', 'q/b', 'q/r/c']) {
      const out: Set<string>[] = [];
      trie.match(topic, out);
      const got = out.flatMap((s) => [...s]).sort();
      const want = patterns.filter((p) => topicMatches(p, topic)).sort();
      assert.deepEqual(got, want, topic);
    }
    assert.equal(trie.patterns, patterns.length);
    for (const p of patterns) assert.equal(trie.remove(p, p), true);
    assert.equal(trie.patterns, 0);
    assert.equal(trie.remove('a/b', 'a/b'), false);
    const out: Set<string>[] = [];
    assert.equal(trie.match('a/b', out), 0);
  });
});

test('close codes tell clients whether to reconnect', () => {
  assert.equal(shouldReconnect(1001), true);
  assert.equal(shouldReconnect(1006), true);
  assert.equal(shouldReconnect(1011), true);
  assert.equal(shouldReconnect(4000), true);
  assert.equal(shouldReconnect(4002), true);
  assert.equal(shouldReconnect(1000), false);
  assert.equal(shouldReconnect(1003), false);
  assert.equal(shouldReconnect(1007), false);
  assert.equal(shouldReconnect(1009), false);
  assert.equal(shouldReconnect(4500), false);
  assert.equal(shouldReconnect(4999), false);
});

test('binary results use the direct encoder and decode like the generic one', () => {
  for (const n of [0, 1, 64, 255, 256, 1000, 65535, 65536, 70000]) {
    const bin = Buffer.alloc(n, 7);
    for (const id of [1, 200, 70000, 2 ** 32 - 1]) {
      const m = encodeResult(id, bin);
      assert.deepEqual(decode(Buffer.from(m.buffer, m.byteOffset, m.length)), [16, id, bin]);
      assert.ok(m.byteOffset >= 10, 'headroom kept for in-place framing');
    }
  }
});

test('decode returns lone bin values as views and still rejects truncated ones', () => {
  for (const n of [0, 5, 255, 256, 70000]) {
    const enc = Buffer.from(encode(Buffer.alloc(n, 3)));
    const d = decode(enc) as Uint8Array;
    assert.equal(d.length, n);
    assert.ok(d.every((x) => x === 3));
  }
  assert.throws(() => decode(Buffer.from([0xc4, 5, 1, 2])));
  assert.throws(() => decode(Buffer.from([0xc5, 0])));
});
