// The conflate slow-consumer policy (src/connection/outbound.ts, docs/protocol.md under the GAP
// message): a subscriber over its outbound budget keeps only the latest message per topic, and once
// its socket drains gets GAP [21, topic, skipped] and that message, per topic. Real gateways and
// sockets; the slow reader is a client whose socket stops reading (the kernel's buffers fill, then
// the server's backlog grows). Runs with and without the ws fast paths (drain detection differs:
// the socket's 'drain' event, or ws.send's completion callback).
import { test, describe, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { CloseCode, ConfigError, resolveConfig, type GatewayOptions } from '../src/index.js';
import { internals } from '../src/gateway.js';
import { MAX_CONFLATED_TOPICS } from '../src/connection/outbound.js';
import { decodeFrame } from '../src/protocol/messages.js';
import { FAST, connect, startGateway, type Client, type Owner, type Started } from './helpers.js';

/** Resolves in a later turn, after the gateway's end-of-turn flush (a setImmediate it queued first). */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));

const payloadPad = Buffer.alloc(4096, 7);
const PER_TURN = 16;
/** Over-estimates what one turn's publishes put on a connection (frame heads, a GAP, a close frame). */
const TURN_BYTES = PER_TURN * (payloadPad.length + 96);

type Msg = unknown[];

/** Every message a client receives, in order (the Client's own queue is consumed by next()). */
function record(c: Client): Msg[] {
  const log: Msg[] = [];
  c.ws.on('message', (data: Buffer, isBinary) => {
    if (isBinary) for (const m of decodeFrame(data)) log.push(m as Msg);
  });
  return log;
}

/** A subscriber whose socket stops reading, and the server side of its connection. */
async function slowClient(t: Owner, s: Started, patterns: string[], protocol = 'wiregate.v1') {
  let server = null as WebSocket | null;
  const tag = `slow${Math.random().toString(36).slice(2)}`;
  s.gw.hook('onConnection', (conn) => {
    if (conn.url.endsWith(`?${tag}`)) server = (conn as unknown as { ws: WebSocket }).ws;
  });
  const c = await connect(t, `${s.url}?${tag}`, protocol);
  const log = record(c);
  for (const p of patterns) assert.equal((await c.subscribe(p))[0], 16);
  assert.ok(server !== null, 'onConnection saw the slow connection');
  const sock = (c.ws as unknown as { _socket: Socket })._socket;
  sock.pause();
  return { client: c, log, server: server as WebSocket, sock };
}

/** What was published per topic: how many (= the last seq, on a fresh gateway) and the last value. */
class Published {
  readonly count = new Map<string, number>();
  readonly last = new Map<string, number>();
  total = 0;
  constructor(private readonly s: Started) {}
  publish(topic: string, pad = true): void {
    const v = this.total++;
    this.count.set(topic, (this.count.get(topic) ?? 0) + 1);
    this.last.set(topic, v);
    void this.s.gw.publish(topic, pad ? { v, pad: payloadPad } : { v });
  }
}

/**
 * Publishes PER_TURN messages per turn, round robin over `topics`, until `acted()` and then
 * `turnsAfter` more turns (or 32 MiB: far more than loopback's kernel buffers take). Returns the
 * most the server held for the slow connection at the end of a turn.
 */
async function flood(pub: Published, topics: string[], server: WebSocket, acted: () => boolean, turnsAfter: number): Promise<number> {
  const maxTurns = Math.ceil((32 << 20) / TURN_BYTES);
  let maxHeld = 0;
  for (let turn = 0, after = 0; turn < maxTurns && after < turnsAfter; turn++) {
    for (let i = 0; i < PER_TURN; i++) pub.publish(topics[(turn * PER_TURN + i) % topics.length]);
    await nextTurn();
    maxHeld = Math.max(maxHeld, server.bufferedAmount);
    if (acted()) after++;
  }
  assert.ok(acted(), 'the policy acted');
  return maxHeld;
}

/**
 * Checks one client's messages on `topic`: seqs strictly increase (nothing older after something
 * newer), every GAP is followed by a MESSAGE whose seq accounts for it, and the last message is the
 * latest published. Returns the GAPs' total and whether the stream ended with GAP + latest.
 */
function checkTopic(log: Msg[], topic: string, pub: Published): { skipped: number; gaps: number; endsWithGap: boolean } {
  const events = log.filter((m) => (m[0] === 18 || m[0] === 21) && m[1] === topic);
  let prev = 0;
  let gap = 0;
  let skipped = 0;
  let gaps = 0;
  for (const m of events) {
    if (m[0] === 21) {
      assert.equal(gap, 0, `${topic}: two GAPs in a row`);
      assert.ok((m[2] as number) > 0, `${topic}: GAP ${JSON.stringify(m)}`);
      gap = m[2] as number;
      skipped += gap;
      gaps++;
      continue;
    }
    const seq = m[2] as number;
    assert.equal(seq, prev + gap + 1, `${topic}: seq ${seq} after ${prev} and a GAP of ${gap}`);
    prev = seq;
    gap = 0;
  }
  assert.equal(gap, 0, `${topic}: a GAP with no MESSAGE after it`);
  const last = events[events.length - 1] as [number, string, number, { v: number }];
  assert.equal(last[2], pub.count.get(topic), `${topic}: the last MESSAGE is the latest published`);
  assert.equal(last[3].v, pub.last.get(topic), `${topic}: with the latest value`);
  const before = events[events.length - 2];
  return { skipped, gaps, endsWithGap: before !== undefined && before[0] === 21 };
}

/**
 * Waits for `p` at most `maxTurns` event-loop turns (I/O is polled in every turn), then fails with
 * `what()`: a catch-up that never comes fails here rather than at the runner's timeout.
 */
async function within<T>(p: Promise<T>, what: () => string, maxTurns = 100_000): Promise<T> {
  let state: { ok: true; value: T } | { ok: false; error: unknown } | null = null;
  p.then(
    (value) => void (state = { ok: true, value }),
    (error: unknown) => void (state = { ok: false, error }),
  );
  let turns = 0;
  while (state === null && turns < maxTurns) {
    await new Promise((resolve) => setImmediate(resolve));
    turns++;
  }
  const s = state as { ok: true; value: T } | { ok: false; error: unknown } | null;
  if (s === null) throw new Error(`not within ${maxTurns} event-loop turns: ${what()}`);
  if (!s.ok) throw s.error;
  return s.value;
}

/** Waits (for messages, bounded in turns) until `c` has received the latest message of every topic. */
async function latestOfEach(c: Client, pub: Published, topics: string[]): Promise<void> {
  await within(
    (async () => {
      for (const topic of topics) {
        const seq = pub.count.get(topic)!;
        await c.next((m) => Array.isArray(m) && m[0] === 18 && m[1] === topic && m[2] === seq);
      }
    })(),
    () => `the latest message of each of ${topics.join(', ')} (held back messages never sent?)`,
  );
}

async function metric(s: Started, name: string): Promise<number> {
  const text = await (await fetch(`${s.http}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line !== undefined, `${name} is exported`);
  return Number(line.split(' ')[1]);
}

describe('conflate policy', () => {
  const variants = [
    { name: 'wiregate.v1, 256 KiB budget', protocol: 'wiregate.v1', budget: 256 * 1024, topics: 4 },
    { name: 'wiregate.v1.batch, 64 KiB budget', protocol: 'wiregate.v1.batch', budget: 64 * 1024, topics: 6 },
    // below the socket's 16 KiB high-water mark ('drain' is not guaranteed): one topic per drain
    { name: 'wiregate.v1, 4 KiB budget (catch-up paced one topic at a time)', protocol: 'wiregate.v1', budget: 4 * 1024, topics: 8 },
  ];
  for (const v of variants) {
    test(`paused subscriber (${v.name}, fast paths ${FAST.directWrites ? 'on' : 'off'}): bounded backlog, not closed, then per topic GAP + the latest; a reading subscriber gets everything`, async (t) => {
      const s = await startGateway(t, { outbound: { maxBufferedBytes: v.budget, policy: 'conflate' } });
      const topics = Array.from({ length: v.topics }, (_, i) => `tele/dev${i}`);
      const healthy = await connect(t, s.url);
      const healthyLog = record(healthy);
      await healthy.subscribe('tele/#');
      const slow = await slowClient(t, s, ['tele/#'], v.protocol);
      const rt = internals(s.gw);
      const pub = new Published(s);

      const maxHeld = await flood(pub, topics, slow.server, () => rt.stats.deliveriesConflated > 0, Math.ceil((4 * v.budget) / TURN_BYTES) + 4);
      assert.ok(maxHeld <= v.budget + TURN_BYTES, `the server held ${maxHeld} bytes for a paused client: more than the ${v.budget} budget + ${TURN_BYTES} sent in one turn`);
      assert.equal(rt.stats.slowConsumerCloses, 0, 'conflation does not close');
      assert.equal(rt.stats.deliveriesDropped, 0);
      assert.equal(slow.client.ws.readyState, WebSocket.OPEN);

      // the reading subscriber: everything, in order, no GAP
      await latestOfEach(healthy, pub, topics);
      assert.equal(healthyLog.filter((m) => m[0] === 18).length, pub.total);
      assert.equal(healthyLog.filter((m) => m[0] === 21).length, 0, 'no GAP for a reading subscriber');

      // the slow one resumes: per topic, GAP(skipped) then exactly the latest value
      slow.sock.resume();
      await latestOfEach(slow.client, pub, topics);
      let skipped = 0;
      for (const topic of topics) {
        const r = checkTopic(slow.log, topic, pub);
        assert.ok(r.endsWithGap, `${topic}: GAP then the latest`);
        skipped += r.skipped;
      }
      assert.equal(skipped, rt.stats.deliveriesConflated, 'the GAPs count every replaced delivery');
      assert.equal(await metric(s, 'wiregate_deliveries_conflated_total'), rt.stats.deliveriesConflated);
      assert.equal(slow.log.filter((m) => m[0] === 18).length + skipped, pub.total, 'each message was delivered or counted in a GAP');

      // caught up: the next publish goes straight through, without a GAP
      const gapsBefore = slow.log.filter((m) => m[0] === 21).length;
      pub.publish(topics[0], false);
      await latestOfEach(slow.client, pub, [topics[0]]);
      assert.equal(slow.log.filter((m) => m[0] === 21).length, gapsBefore, 'no GAP once caught up');
      assert.equal(slow.client.ws.readyState, WebSocket.OPEN);
    });
  }

  test('a budget below the socket\'s high-water mark, never reached: the held messages still come once it drains', async (t) => {
    // 8 x 1 KiB a turn: once over the 4 KiB budget nothing more is written, so the server socket
    // holds at most ~12 KiB, under its 16 KiB high-water mark, and Node emits no 'drain' for it.
    // The fast path then relies on its writes' completion callbacks (rawSent in outbound.ts).
    const budget = 4 * 1024;
    const s = await startGateway(t, { outbound: { maxBufferedBytes: budget, policy: 'conflate' } });
    const topics = ['trickle/a', 'trickle/b', 'trickle/c', 'trickle/d'];
    const slow = await slowClient(t, s, ['trickle/#']);
    const rt = internals(s.gw);
    const pub = new Published(s);
    const small = Buffer.alloc(1024, 3);
    const maxTurns = Math.ceil((32 << 20) / (8 * small.length));
    let maxHeld = 0;
    for (let turn = 0, after = 0; turn < maxTurns && after < 4; turn++) {
      for (let i = 0; i < 8; i++) {
        const topic = topics[i % topics.length];
        const v = pub.total++;
        pub.count.set(topic, (pub.count.get(topic) ?? 0) + 1);
        pub.last.set(topic, v);
        void s.gw.publish(topic, { v, pad: small });
      }
      await nextTurn();
      maxHeld = Math.max(maxHeld, slow.server.bufferedAmount);
      if (rt.stats.deliveriesConflated > 0) after++;
    }
    assert.ok(rt.stats.deliveriesConflated > 0, 'the policy acted');
    const raw = (slow.server as unknown as { _socket: Socket })._socket;
    assert.ok(maxHeld < raw.writableHighWaterMark, `held ${maxHeld}: under the socket's high-water mark ${raw.writableHighWaterMark}`);
    assert.equal(raw.writableNeedDrain, false, 'no drain event is due');
    slow.sock.resume();
    await latestOfEach(slow.client, pub, topics);
    for (const topic of topics) assert.ok(checkTopic(slow.log, topic, pub).endsWithGap, `${topic}: GAP then the latest`);
    assert.equal(rt.stats.slowConsumerCloses, 0);
  });

  test('live updates during the catch-up: a newer message takes the held one\'s place, nothing older follows it', async (t) => {
    const budget = 4 * 1024;
    const s = await startGateway(t, { outbound: { maxBufferedBytes: budget, policy: 'conflate' } });
    const topics = Array.from({ length: 8 }, (_, i) => `live/t${i}`);
    const slow = await slowClient(t, s, ['live/#']);
    const rt = internals(s.gw);
    const pub = new Published(s);
    await flood(pub, topics, slow.server, () => rt.stats.deliveriesConflated > 0, 8);
    slow.sock.resume();
    // keep publishing, one turn at a time, while the client reads its backlog and the held messages
    for (let turn = 0; turn < 64; turn++) {
      for (const topic of topics) pub.publish(topic);
      await nextTurn();
    }
    await latestOfEach(slow.client, pub, topics);
    let skipped = 0;
    for (const topic of topics) skipped += checkTopic(slow.log, topic, pub).skipped;
    assert.equal(skipped, rt.stats.deliveriesConflated);
    assert.equal(slow.log.filter((m) => m[0] === 18).length + skipped, pub.total);
    assert.equal(rt.stats.slowConsumerCloses, 0);
  });

  /** policy close with `telemetry/#=conflate`; a paused client on telemetry/# and orders/#, flooded on telemetry until it conflates. */
  const overrideFlooded = async (t: TestContext) => {
    const s = await startGateway(t, { outbound: { maxBufferedBytes: 64 * 1024, policy: 'close', topicPolicies: ['telemetry/#=conflate'] } });
    const topics = ['telemetry/a', 'telemetry/b'];
    const slow = await slowClient(t, s, ['telemetry/#', 'orders/#']);
    const rt = internals(s.gw);
    const pub = new Published(s);
    await flood(pub, topics, slow.server, () => rt.stats.deliveriesConflated > 0, 8);
    return { topics, slow, rt, pub };
  };

  test('per-topic override telemetry/#=conflate with policy close elsewhere', async (t) => {
    const { slow, rt, pub } = await overrideFlooded(t);
    assert.equal(rt.stats.slowConsumerCloses, 0, 'telemetry/# conflates');
    assert.equal(slow.client.ws.readyState, WebSocket.OPEN);
    // orders/# has the default policy, close: one delivery over budget ends the connection
    pub.publish('orders/1', false);
    assert.equal(rt.stats.slowConsumerCloses, 1, 'orders/# closes');
    slow.sock.resume();
    const closed = await slow.client.closed;
    assert.equal(closed.code, CloseCode.SLOW_CONSUMER, `closed with ${closed.code} ${closed.reason}`);
    assert.equal(slow.log.filter((m) => m[1] === 'orders/1').length, 0);
  });

  test('per-topic override: the conflated topics catch up, the others are delivered', async (t) => {
    const { topics, slow, rt, pub } = await overrideFlooded(t);
    slow.sock.resume();
    await latestOfEach(slow.client, pub, topics);
    for (const topic of topics) assert.ok(checkTopic(slow.log, topic, pub).endsWithGap);
    pub.publish('orders/1', false);
    await latestOfEach(slow.client, pub, ['orders/1']);
    assert.equal(rt.stats.slowConsumerCloses, 0);
  });

  test(`more than ${MAX_CONFLATED_TOPICS} topics held back closes with 4000`, async (t) => {
    const budget = 64 * 1024;
    const s = await startGateway(t, { outbound: { maxBufferedBytes: budget, policy: 'conflate' } });
    const slow = await slowClient(t, s, ['cap/#']);
    const rt = internals(s.gw);
    const pub = new Published(s);
    await flood(pub, ['cap/fill'], slow.server, () => rt.stats.deliveriesConflated > 0, 2);
    // one topic is held back; up to the cap more are kept...
    for (let i = 1; i < MAX_CONFLATED_TOPICS; i++) pub.publish(`cap/t/${i}`, false);
    assert.equal(rt.stats.slowConsumerCloses, 0, `${MAX_CONFLATED_TOPICS} topics held back`);
    // ...a held topic's newer message replaces its held one...
    pub.publish('cap/t/1', false);
    assert.equal(rt.stats.slowConsumerCloses, 0);
    // ...and one topic more closes
    pub.publish('cap/one-more', false);
    assert.equal(rt.stats.slowConsumerCloses, 1);
    slow.sock.resume();
    const closed = await slow.client.closed;
    assert.equal(closed.code, CloseCode.SLOW_CONSUMER, `closed with ${closed.code} ${closed.reason}`);
    assert.equal(slow.log.filter((m) => m[0] === 18 && (m[1] as string).startsWith('cap/t/')).length, 0, 'nothing held back was sent after the close');
  });
});

describe('conflate in the configuration', () => {
  test('outbound.policy and outbound.topicPolicies accept conflate', () => {
    const c = resolveConfig({ options: { outbound: { policy: 'conflate', topicPolicies: ['telemetry/#=conflate', 'orders/+=drop', 'x=close'] } } });
    assert.equal(c.outbound.policy, 'conflate');
    assert.deepEqual(c.outbound.topicPolicies, ['telemetry/#=conflate', 'orders/+=drop', 'x=close']);
    const e = resolveConfig({ env: { WIREGATE_OUTBOUND_POLICY: 'conflate', WIREGATE_OUTBOUND_TOPIC_POLICIES: 'a/#=conflate' } });
    assert.equal(e.outbound.policy, 'conflate');
    assert.deepEqual(e.outbound.topicPolicies, ['a/#=conflate']);
  });

  test('other words are rejected', () => {
    const cases: Array<[GatewayOptions, RegExp]> = [
      [{ outbound: { policy: 'conflated' as never } }, /outbound.policy .*must be one of close, drop, conflate, got "conflated"/],
      [{ outbound: { policy: 'latest' as never } }, /outbound.policy .*must be one of close, drop, conflate/],
      [{ outbound: { policy: 'Conflate' as never } }, /outbound.policy .*must be one of close, drop, conflate/],
      [{ outbound: { topicPolicies: ['a/#=conflated'] } }, /outbound.topicPolicies .*entries must be .*=conflate/],
      [{ outbound: { topicPolicies: ['a/#=latest'] } }, /outbound.topicPolicies .*entries must be/],
      [{ outbound: { topicPolicies: ['=conflate'] } }, /outbound.topicPolicies .*entries must be/],
      [{ outbound: { topicPolicies: ['a/#/b=conflate'] } }, /outbound.topicPolicies .*entries must be/],
    ];
    for (const [options, re] of cases) {
      assert.throws(
        () => resolveConfig({ options }),
        (err: unknown) => err instanceof ConfigError && re.test(err.message),
        JSON.stringify(options),
      );
    }
    assert.throws(() => resolveConfig({ env: { WIREGATE_OUTBOUND_POLICY: 'latest' } }), ConfigError);
  });
});
