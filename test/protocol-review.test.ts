// Review findings on the protocol layer:
//  1. a payload a subscriber cannot decode (unknown msgpack extension type, malformed timestamp)
//     must be rejected whatever the framing: the PUBLISH fast path (raw payload) and the general
//     decoder close with 1007 alike, and nothing reaches a subscriber;
//  2. a topic or pattern of the wrong msgpack type is 101 BAD_REQUEST, not 103 INVALID_TOPIC.
import { test, describe, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import {
  DEFAULT_TOPIC_LIMITS,
  ErrorCode,
  MalformedFrameError,
  decodeFrame,
  encode,
  encodeDelivery,
  newEnvelope,
  parseEnvelope,
  scanMsgpack,
  validateClientMessage,
  valueEnd,
} from '../src/protocol/index.js';
import { connect, startGateway, type Client, type Started } from './helpers.js';

const bytes = (h: string) => Buffer.from(h.replace(/\s+/g, ''), 'hex');
const cat = (...parts: Uint8Array[]) => Buffer.concat(parts);

/** Payloads no subscriber can decode: unknown extension types and malformed timestamps. */
const BAD_PAYLOADS: Array<[string, string]> = [
  ['fixext1 with unknown type 5', 'd4 05 00'],
  ['ext8 with unknown type 5', 'c7 01 05 00'],
  ['unknown extension nested in an array', '92 01 d4 05 00'],
  ['unknown extension as a map value', '81 a1 6b c7 01 05 00'],
  ['unknown extension as a map key', '81 d4 05 00 01'],
  ['unknown extension deep inside', '91 81 a1 61 92 c0 d5 07 00 00'],
  ['fixext2/ext16/ext32 with an unknown type', '93 d5 05 0000 c8 0001 05 00 c9 00000001 05 00'],
  ["msgpackr's undefined (extension 0)", 'd4 00 00'],
  ["msgpackr's Set (extension 0x73)", 'd4 73 00'],
  ['timestamp as fixext1', 'd4 ff 00'],
  ['timestamp as fixext2', 'd5 ff 0000'],
  ['timestamp as fixext16', 'd8 ff' + '00'.repeat(16)],
  ['timestamp as ext8 of length 4', 'c7 04 ff 00000001'],
  ['timestamp as ext8 of length 8', 'c7 08 ff 0000000000000001'],
  ['timestamp as ext8 of length 0', 'c7 00 ff'],
  ['timestamp as ext16', 'c8 0004 ff 00000001'],
  ['timestamp as ext32', 'c9 0000000c ff' + '00'.repeat(12)],
  // 64-bit: 30-bit nanoseconds then 34-bit seconds; 1e9 << 2 = 0xee6b2800
  ['timestamp 64 with nanoseconds = 1e9', 'd7 ff ee6b2800 00000001'],
  ['timestamp 64 with nanoseconds = 2^30 - 1', 'd7 ff ffffffff 00000001'],
  // 96-bit: 32-bit nanoseconds then 64-bit signed seconds
  ['timestamp 96 with nanoseconds = 1e9', 'c7 0c ff 3b9aca00 0000000000000001'],
  ['timestamp 96 with nanoseconds = 2^32 - 1', 'c7 0c ff ffffffff ffffffffffffffff'],
  // map keys a map-to-object decoder cannot use (msgpackr mapsAsObjects throws): refused on every path
  ['an array as a map key', '81 90 01'],
  ['a map as a map key', '81 80 01'],
  ['a bin as a map key', '81 c4 01 61 01'],
  ['a timestamp as a map key', '81 d6 ff 00000001 01'],
  ['an array key in a nested map, second entry', '91 82 a1 61 01 92 01 02 03'],
];

/** Valid msgpack timestamps (extension -1): accepted and relayed byte for byte. */
const GOOD_TIMESTAMPS: Array<[string, string]> = [
  ['timestamp 32', 'd6 ff 00000001'],
  ['timestamp 32, largest', 'd6 ff ffffffff'],
  // 999999999 << 2 = 0xee6b27fc
  ['timestamp 64 with nanoseconds = 999999999', 'd7 ff ee6b27fc 00000001'],
  ['timestamp 64, largest seconds', 'd7 ff 00000003 ffffffff'],
  ['timestamp 96 with nanoseconds = 999999999, before 1970', 'c7 0c ff 3b9ac9ff ffffffffffffffff'],
  ['timestamp 96 inside a map', '81 a2 6174 c7 0c ff 00000000 0000000000000001'],
];

describe('structural scan: extension types', () => {
  for (const [name, h] of BAD_PAYLOADS) {
    test(`rejects ${name}`, () => {
      const b = bytes(h);
      assert.ok(scanMsgpack(b) < 0, 'scanMsgpack');
      assert.ok(valueEnd(b, 0, b.length) < 0, 'valueEnd');
      assert.throws(() => decodeFrame(b), MalformedFrameError, 'decodeFrame');
      // after a valid value in the same frame, and as a message field
      assert.throws(() => decodeFrame(cat(bytes('92 05 01'), b)), MalformedFrameError, 'after a PING');
      assert.throws(() => decodeFrame(cat(bytes('93 04 01 a1 6d'), b)), MalformedFrameError, 'as a REQUEST payload');
    });
  }

  for (const [name, h] of GOOD_TIMESTAMPS) {
    test(`accepts ${name}`, () => {
      const b = bytes(h);
      assert.equal(scanMsgpack(b), 1);
      assert.equal(valueEnd(b, 0, b.length), b.length);
      // scan and msgpackr agree: what the scan accepts, the decoder decodes
      assert.equal(decodeFrame(b).length, 1);
      assert.deepEqual(decodeFrame(cat(b, bytes('92 05 01'))).length, 2);
    });
  }

  test('scalar map keys (string, integer, float, bool, nil) and container values are accepted', () => {
    for (const h of ['81 a1 61 90', '82 01 80 ff 91 01', '83 c0 01 c3 02 cb 3ff0000000000000 03', '81 a1 6b 81 a1 6a 92 80 90', '92 81 01 02 81 02 03']) {
      const b = bytes(h);
      assert.equal(scanMsgpack(b), 1, h);
      assert.equal(decodeFrame(b).length, 1, h);
    }
  });

  test('a valid timestamp decodes to the date it encodes', () => {
    assert.deepEqual(decodeFrame(bytes('d6 ff 00000001')), [new Date(1000)]);
    assert.deepEqual(decodeFrame(bytes('d7 ff 003d0900 00000002')), [new Date(2001)]); // 1 ms = 1e6 ns = 0xf4240, << 2
    assert.deepEqual(decodeFrame(bytes('c7 0c ff 3b8b87c0 ffffffffffffffff')), [new Date(-1)]); // -1 s + 999 ms
  });

  test('valueEnd stops at the end of a timestamp inside a larger buffer', () => {
    const b = bytes('c0 d7 ff ee6b27fc 00000001 c0');
    assert.equal(valueEnd(b, 1, b.length), 11);
    assert.ok(valueEnd(bytes('c0 d7 ff ee6b2800 00000001 c0'), 1, 12) < 0);
  });

  test('truncated extensions are still reported as truncated (-1)', () => {
    for (const h of ['d4', 'd6 ff 0000', 'd7 ff ee6b27', 'c7', 'c7 0c', 'c7 0c ff 3b9ac9ff 00', 'c8 00', 'c9 0000']) {
      assert.equal(scanMsgpack(bytes(h)), -1, h);
    }
  });

  test('the PUBLISH fast path refuses a frame whose payload the scan rejects, and takes it otherwise', () => {
    const env = newEnvelope();
    for (const [name, h] of BAD_PAYLOADS) assert.equal(parseEnvelope(publishFrame(7, 'a/b', bytes(h)), env), false, name);
    for (const [name, h] of GOOD_TIMESTAMPS) {
      const frame = publishFrame(7, 'a/b', bytes(h));
      assert.equal(parseEnvelope(frame, env), true, name);
      assert.equal(bytes(h).compare(frame.subarray(env.payloadStart, env.payloadEnd)), 0, name);
    }
  });
});

/** `[3, id, topic, payload]` with the payload's raw bytes: the canonical shape the fast path takes. */
function publishFrame(id: number, topic: string, payload: Uint8Array): Buffer {
  assert.ok(id < 128 && topic.length < 32);
  return cat(Uint8Array.of(0x94, 0x03, id, 0xa0 | topic.length), Buffer.from(topic, 'ascii'), payload);
}

/** A subscriber that keeps every frame's raw bytes (a Client would decode, and lose them). */
class RawSubscriber {
  readonly ws: WebSocket;
  private readonly frames: Buffer[] = [];
  private waiter: ((b: Buffer) => void) | null = null;
  readonly closed: Promise<number>;

  constructor(url: string) {
    this.ws = new WebSocket(url, 'wiregate.v1');
    this.ws.on('error', () => {});
    this.ws.on('message', (data: Buffer) => {
      const w = this.waiter;
      this.waiter = null;
      if (w !== null) w(data);
      else this.frames.push(data);
    });
    this.closed = new Promise((resolve) => this.ws.once('close', (code: number) => resolve(code)));
  }

  next(): Promise<Buffer> {
    const f = this.frames.shift();
    if (f !== undefined) return Promise.resolve(f);
    assert.equal(this.waiter, null);
    return new Promise((resolve) => (this.waiter = resolve));
  }

  async subscribe(topic: string): Promise<void> {
    if (this.ws.readyState !== WebSocket.OPEN) await new Promise((resolve, reject) => this.ws.once('open', resolve).once('error', reject));
    this.ws.send(encode([1, 1, topic]));
    assert.deepEqual(decodeFrame(await this.next()), [[16, 1]]);
  }

  close(): Promise<number> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close();
    return this.closed;
  }
}

interface Setup {
  s: Started;
  sub: RawSubscriber;
  bystander: Client;
}

/** A gateway, a raw subscriber on `topic` and a well-behaved client; all closed after the test. */
async function setup(t: TestContext, topic: string): Promise<Setup> {
  const s = await startGateway();
  t.after(() => s.gw.close());
  s.gw.handle('echo', (_c, p) => p);
  const sub = new RawSubscriber(s.url);
  t.after(() => sub.close());
  await sub.subscribe(topic);
  const bystander = await connect(s.url);
  t.after(() => bystander.close());
  return { s, sub, bystander };
}

async function client(t: TestContext, s: Started): Promise<Client> {
  const c = await connect(s.url);
  t.after(() => c.close());
  return c;
}

/**
 * Sends `frame`, then a PING in a frame of its own, and reports what happened first: the close
 * code, or the first answer (a RESULT/ERROR for the frame, or the PONG: the connection survived).
 */
async function outcome(c: Client, frame: Uint8Array): Promise<{ closed: number } | { answer: unknown[] }> {
  c.ws.send(frame);
  c.ws.send(encode([5, 99]));
  return Promise.race([
    c.closed.then((x) => ({ closed: x.code })),
    c.next((m) => Array.isArray(m) && (m[0] === 16 || m[0] === 17 || m[0] === 20)).then((m) => ({ answer: m as unknown[] })),
  ]);
}

/** The bystander publishes a sentinel; the subscriber's next frame must be exactly its delivery. */
async function assertNothingDeliveredBefore(x: Setup, topic: string): Promise<void> {
  const r = await x.bystander.publish(topic, 'sentinel');
  assert.deepEqual(r, [16, 1, 1], 'the sentinel is the first message on the topic (seq 1)');
  const f = await x.sub.next();
  assert.equal(f.compare(Buffer.from(encodeDelivery(topic, 1, encode('sentinel')))), 0, `subscriber got ${f.toString('hex')}`);
  // the bystander is still served
  assert.deepEqual(await x.bystander.request('echo', [1, 'x']), [16, 2, [1, 'x']]);
}

describe('gateway: a PUBLISH whose payload a subscriber cannot decode closes with 1007 whatever the framing', () => {
  for (const [name, h] of BAD_PAYLOADS) {
    test(`fast path: ${name}`, async (t) => {
      const topic = 'review/bad';
      const x = await setup(t, topic);
      const pub = await client(t, x.s);
      const frame = publishFrame(7, topic, bytes(h));
      assert.deepEqual(await outcome(pub, frame), { closed: 1007 });
      await assertNothingDeliveredBefore(x, topic);
    });
  }

  test('general path (after a PING in the same frame) and REQUEST payload agree with the fast path', async (t) => {
    const topic = 'review/bad';
    const x = await setup(t, topic);
    for (const [name, h] of BAD_PAYLOADS) {
      const a = await client(t, x.s);
      assert.deepEqual(await outcome(a, cat(bytes('92 05 01'), publishFrame(7, topic, bytes(h)))), { closed: 1007 }, `PING + PUBLISH: ${name}`);
      const b = await client(t, x.s);
      assert.deepEqual(await outcome(b, cat(bytes('94 04 07 a4'), Buffer.from('echo'), bytes(h))), { closed: 1007 }, `REQUEST: ${name}`);
    }
    await assertNothingDeliveredBefore(x, topic);
  });

  test('a valid timestamp payload is acked and delivered byte for byte, on both paths', async (t) => {
    const topic = 'review/time';
    const x = await setup(t, topic);
    const pub = await client(t, x.s);
    let seq = 0;
    for (const [name, h] of GOOD_TIMESTAMPS) {
      const payload = bytes(h);
      // fast path
      assert.deepEqual(await outcome(pub, publishFrame(7, topic, payload)), { answer: [16, 7, ++seq] }, name);
      assert.equal((await x.sub.next()).compare(Buffer.from(encodeDelivery(topic, seq, payload))), 0, name);
      assert.deepEqual(await pub.next((m) => m[0] === 20), [20, 99]);
      // general path: accepted as well (the payload is re-encoded there, so only its value is compared)
      assert.deepEqual(await outcome(pub, cat(bytes('92 05 08'), publishFrame(9, topic, payload))), { answer: [20, 8] }, name);
      assert.deepEqual(await pub.next((m) => m[0] === 16 && m[1] === 9), [16, 9, ++seq], name);
      assert.deepEqual(decodeFrame(await x.sub.next()), [[18, topic, seq, decodeFrame(payload)[0]]], name);
      assert.deepEqual(await pub.next((m) => m[0] === 20 && m[1] === 99), [20, 99]);
    }
    assert.deepEqual(await x.bystander.request('echo', 'still here'), [16, 1, 'still here']);
  });
});

describe('gateway: a topic or pattern of the wrong type is 101 BAD_REQUEST', () => {
  const cases: Array<[string, unknown[], number, string]> = [
    ['SUBSCRIBE [1, 1, 5]', [1, 1, 5], 1, 'pattern must be a string'],
    ['PUBLISH [3, 2, 5, 1]', [3, 2, 5, 1], 2, 'topic must be a string'],
    ['UNSUBSCRIBE [2, 4, nil]', [2, 4, null], 4, 'pattern must be a string'],
  ];
  for (const [name, msg, id, message] of cases) {
    test(name, async (t) => {
      const s = await startGateway();
      t.after(() => s.gw.close());
      const c = await client(t, s);
      c.send(msg);
      assert.deepEqual(await c.next((m) => m[1] === id), [17, id, ErrorCode.BAD_REQUEST, message]);
      // the connection stays open and a string that breaks the topic rules is still 103
      c.send([1, 5, 'a//b']);
      assert.deepEqual(await c.next((m) => m[1] === 5), [17, 5, ErrorCode.INVALID_TOPIC, 'topic has an empty level']);
    });
  }

  test('validateClientMessage: type errors are 101, rule violations 103', () => {
    const v = (m: unknown) => validateClientMessage(m, DEFAULT_TOPIC_LIMITS);
    for (const bad of [5, null, true, ['a'], { a: 1 }, Buffer.from('a/b')]) {
      assert.deepEqual(v([1, 1, bad]), { id: 1, code: ErrorCode.BAD_REQUEST, message: 'pattern must be a string' });
      assert.deepEqual(v([2, 4, bad]), { id: 4, code: ErrorCode.BAD_REQUEST, message: 'pattern must be a string' });
      assert.deepEqual(v([3, 2, bad, 1]), { id: 2, code: ErrorCode.BAD_REQUEST, message: 'topic must be a string' });
    }
    assert.equal(v([1, 1, ''])!.code, ErrorCode.INVALID_TOPIC);
    assert.equal(v([3, 2, 'a/+', 1])!.code, ErrorCode.INVALID_TOPIC);
    assert.equal(v([2, 3, 'a/#/b'])!.code, ErrorCode.INVALID_TOPIC);
  });
});
