// Bounded fuzzing of the frame decoder, message validation and a live gateway. Seeded, so a
// failure reproduces: FUZZ_SEED=<n> npm test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DEFAULT_TOPIC_LIMITS, MalformedFrameError, decodeFrame, encode, scanMsgpack, validateClientMessage } from '../src/protocol/index.js';
import { connect, startGateway } from './helpers.js';

const seed = Number(process.env.FUZZ_SEED ?? 20261124);

test('decoder: random bytes never throw anything but MalformedFrameError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 512 }), (bytes) => {
      try {
        const msgs = decodeFrame(bytes);
        assert.ok(Array.isArray(msgs) && msgs.length >= 1);
        for (const m of msgs) validateClientMessage(m, DEFAULT_TOPIC_LIMITS);
      } catch (err) {
        if (!(err instanceof MalformedFrameError)) throw err;
      }
    }),
    { seed, numRuns: 5000 },
  );
});

test('decoder: mutated valid frames never escape as other errors', () => {
  const base = fc.oneof(
    fc.tuple(fc.constant(1), fc.nat(), fc.string()),
    fc.tuple(fc.constant(3), fc.nat(), fc.string(), fc.anything()),
    fc.tuple(fc.constant(4), fc.nat(), fc.string(), fc.anything()),
    fc.anything(),
  );
  fc.assert(
    fc.property(base, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), (msg, flips) => {
      let bytes: Uint8Array;
      try {
        bytes = new Uint8Array(encode(msg));
      } catch {
        return; // fc.anything() may produce values msgpack cannot encode
      }
      for (const [pos, val] of flips) if (bytes.length) bytes[pos % bytes.length] = val;
      const n = scanMsgpack(bytes);
      try {
        const msgs = decodeFrame(bytes);
        assert.equal(msgs.length, n, 'scan and decode agree on the value count');
        for (const m of msgs) validateClientMessage(m, DEFAULT_TOPIC_LIMITS);
      } catch (err) {
        if (!(err instanceof MalformedFrameError)) throw err;
      }
    }),
    { seed, numRuns: 3000 },
  );
});

test('validation: arbitrary decoded values get null or a violation with a numeric code', () => {
  fc.assert(
    fc.property(fc.oneof(fc.anything(), fc.array(fc.oneof(fc.integer(), fc.string(), fc.anything()), { maxLength: 6 })), (v) => {
      const r = validateClientMessage(v, DEFAULT_TOPIC_LIMITS);
      if (r !== null) {
        assert.equal(typeof r.code, 'number');
        assert.equal(typeof r.message, 'string');
        assert.ok(Number.isInteger(r.id) && r.id >= 0);
      }
    }),
    { seed, numRuns: 3000 },
  );
});

test('live gateway: random frames from many clients never crash it; a healthy client keeps working', async (t) => {
  const s = await startGateway(t, { limits: { maxProtocolErrors: 1_000_000 } });
  s.gw.handle('echo', (_c, p) => p);
  const healthy = await connect(t, s.url);
  await healthy.subscribe('fuzz/ok');
  const rng = fc.sample(fc.uint8Array({ minLength: 1, maxLength: 200 }), { seed, numRuns: 600 });
  for (let batch = 0; batch < 6; batch++) {
    const c = await connect(t, s.url);
    for (const bytes of rng.slice(batch * 100, batch * 100 + 100)) {
      if (c.ws.readyState !== 1) break;
      c.ws.send(bytes);
    }
    // whatever happened to the fuzzing client, the healthy one still gets replies
    const r = await healthy.request('echo', batch);
    assert.deepEqual(r.slice(2), [batch]);
    await c.close();
  }
  await s.gw.publish('fuzz/ok', 'alive');
  assert.deepEqual((await healthy.delivery())[3], 'alive');
  await healthy.close();
  await s.gw.close();
});

test('envelope fast path agrees with the general decoder whenever it accepts a frame', async () => {
  const { parseEnvelope, newEnvelope, decode } = await import('../src/protocol/index.js');
  const env = newEnvelope();
  let accepted = 0;
  const msg = fc.oneof(
    fc.tuple(fc.constant(3), fc.nat({ max: 2 ** 32 + 5 }), fc.string({ maxLength: 40 }), fc.anything()),
    fc.tuple(fc.constant(3), fc.nat(), fc.string({ maxLength: 40 }), fc.anything(), fc.oneof(fc.constant(null), fc.record({ noEcho: fc.boolean() }), fc.anything())),
    fc.tuple(fc.constant(4), fc.nat(), fc.string({ maxLength: 200 })),
    fc.tuple(fc.constant(4), fc.nat(), fc.string({ maxLength: 40 }), fc.anything()),
  );
  fc.assert(
    fc.property(msg, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 2 }), (m, flips) => {
      let bytes: Uint8Array;
      try {
        bytes = new Uint8Array(encode(m));
      } catch {
        return;
      }
      for (const [pos, val] of flips) bytes[pos % bytes.length] = val;
      if (!parseEnvelope(bytes, env)) return;
      accepted++;
      let general: unknown[];
      try {
        general = decodeFrame(bytes);
      } catch (err) {
        // the fast path defers payload decoding; the only acceptable disagreement is a payload
        // the general decoder rejects, which the fast path then rejects when decoding the slice
        assert.ok(err instanceof MalformedFrameError);
        assert.throws(() => {
          decode(bytes.subarray(env.payloadStart, env.payloadEnd));
          if (env.optsEnd > env.optsStart) decode(bytes.subarray(env.optsStart, env.optsEnd));
        });
        return;
      }
      assert.equal(general.length, 1);
      const g = general[0] as unknown[];
      assert.equal(g[0], env.type);
      assert.equal(g[1], env.id);
      assert.equal(g[2], env.name);
      if (env.payloadEnd > env.payloadStart) assert.deepEqual(decode(bytes.subarray(env.payloadStart, env.payloadEnd)), g[3]);
      else assert.equal(g.length, 3);
      if (env.optsEnd > env.optsStart) assert.deepEqual(decode(bytes.subarray(env.optsStart, env.optsEnd)), g[4]);
    }),
    { seed, numRuns: 4000 },
  );
  assert.ok(accepted > 500, `fast path exercised (${accepted} frames)`);
});
