// Broker conformance suite: what every Broker (src/pubsub/broker.ts) must do, whatever stores the
// messages. test/broker/memory.test.ts runs it against the memory broker; a Redis or NATS broker
// runs the SAME suite, unchanged, with its own factory, for instance (a sketch, not a real API):
//
//   brokerConformance('RedisBroker', {
//     features: { history: true, retained: true, presence: true },
//     create: () => new RedisBroker({ url, prefix: uniquePrefix() }),      // fresh keyspace, not started
//     peer: (first) => new RedisBroker({ url, prefix: prefixOf(first) }),   // second node, same keyspace
//     loseState: async (b, topic) => { await deleteKeysOf(b, topic); return b; },
//   });
//
// The factory (BrokerFactory below):
//   features   what the broker is expected to implement. Cases that need a feature not declared are
//              skipped (with the reason); one case checks that broker.features says the same.
//   create()   a fresh broker with its own keyspace/namespace, NOT started (the suite calls start()).
//   peer(b)    optional: a second node of b's cluster (same backing store), not started; omitted or
//              returning null for a single-process broker, and then the multi-node cases are skipped.
//   loseState(b, topic)
//              makes the broker lose what it stored for `topic` as a restart would (memory: a new
//              instance; Redis: delete the topic's keys) and returns the broker to use from then on:
//              either `b` itself (still started, still subscribed) or a new, not started broker,
//              which the suite starts; the suite then closes `b`.
//
// The suite closes every broker it started when each test ends (passed or failed), each once.
//
// Rules the cases keep, so that a network broker passes for the right reasons:
//   - Everything a Broker method returns is awaited (a value or a promise are both fine), and
//     deliveries / presence events are expected asynchronously: cases wait for them with a bounded
//     poll (waitFor), never with a sleep.
//   - "Nothing arrives" is checked with a fence where one exists: something published (or a presence
//     change made) afterwards on the SAME topic, whose arrival proves the earlier one would have
//     arrived first (per-topic order). Only close() has no fence; it waits a few event-loop turns.
//   - No broker internals: no clock injection, no sweeps called by hand. TTL cases use short TTLs and
//     a bounded wait (up to 10 s) for the expiry; an assertion that something is still there right
//     after a publish is only made when less than its TTL has provably elapsed.
//   - Topics are plain ASCII, so "topic order" is the same in UTF-16 code units and in bytes.
//   - Payloads are compared as hex strings (a broker may hand back a Buffer or a Uint8Array).
//
// Cases, by group (each is its own test):
//   features     the broker declares the factory's features
//   delivery     exact topic in seq order 1..n | '+' and '#' patterns in order | a message once
//                however many subscribed patterns match | nothing for unmatched topics | unsubscribe
//                stops delivery (and only for that pattern) | exclude is passed through | [peer] every
//                subscribed node delivers in order, exclude only on the publishing node
//   seq/epoch    seq 1,2,3.. with one stable epoch per topic, whatever the options; position() agrees
//                | never published: seq 0 | independent sequences per topic | loseState changes the
//                epoch (seqs may restart or continue) and old positions no longer recover
//   concurrency  concurrent publishes (Promise.all, two topics interleaved): distinct gap-free seqs
//                delivered in order | [peer] two nodes on one topic: never the same seq, both in order
//   history      {limit: N} keeps the last N | {ttl} drops old ones | no policy keeps nothing | read
//                without since: newest `limit` oldest first, reverse, more | limit 0
//   recovery     since: exactly what followed, complete, in order | since older than the window |
//                foreign epoch | since == position | limit pages with more | since from the future
//                | a reader at seq 0 before the first publish recovers everything | merge: history +
//                buffered live deliveries under concurrent publishers = every seq once, in order
//   retained     last value per topic | non-retained publishes leave it | nil clears (and is still
//                delivered) | exact/'+'/'#' patterns over many topics: exactly the matches, sorted,
//                with seq/epoch | limit
//   presence     add/list/remove | entries are per topic | join/leave events (refresh is no join,
//                removing an absent client no leave) | refresh keeps an entry alive while an
//                unrefreshed one expires | expiry after ttl emits leave | [peer] entries and events
//                shared by both nodes | [peer] a closed node's entries expire with a leave on the other
//   close        nothing is delivered after close() | [peer] nor what the peer publishes
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { pack } from 'msgpackr';
import type {
  Broker,
  BrokerFeatures,
  BrokerPublishOptions,
  BrokerPublishResult,
  HistoryPage,
  HistoryPolicy,
  HistoryQuery,
  PresenceEntry,
  RetainedMessage,
  StreamPosition,
} from '../../src/pubsub/broker.js';

export interface BrokerFactory {
  /** What the broker is expected to implement; cases needing anything else are skipped. */
  features: BrokerFeatures;
  /** A fresh broker with its own keyspace/namespace, not started. */
  create(): Broker | Promise<Broker>;
  /** A fresh broker (own keyspace, not started) whose retained values are capped at `caps`. */
  capped(caps: { maxTopics: number; maxBytes: number }): Broker | Promise<Broker>;
  /** A second, not started node sharing `first`'s backing store; omitted or null when single-process. */
  peer?(first: Broker): Broker | Promise<Broker> | null;
  /**
   * Makes the broker lose its stored state for `topic` as a restart would and returns the broker to
   * use afterwards: `b` itself, or a new not-started broker (the suite starts it and closes `b`).
   */
  loseState(b: Broker, topic: string): Broker | Promise<Broker>;
  /**
   * The broker hands over only topics a subscribed pattern matches (interest-based, as a network
   * broker must be). False for the memory broker, which hands the hub everything (broker.ts allows
   * a superset: the hub's trie filters); the cases about filtering are then skipped.
   */
  filters: boolean;
}

// ---------------------------------------------------------------------------------------------
// Helpers

interface Delivery {
  topic: string;
  seq: number;
  epoch: string;
  /** Hex of the payload bytes (copied when delivered). */
  payload: string;
  exclude: number;
}

interface PresenceEvent {
  topic: string;
  kind: 'join' | 'leave';
  entry: EntryView;
}

/** A PresenceEntry with its info as hex, for deepEqual. */
interface EntryView {
  client: string;
  user: string | null;
  info: string | null;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

function view(e: PresenceEntry): EntryView {
  return { client: e.client, user: e.user, info: e.info === null ? null : hex(e.info) };
}

function byClient(a: EntryView, b: EntryView): number {
  return a.client < b.client ? -1 : a.client > b.client ? 1 : 0;
}

/** A distinct msgpack payload per (label, i). */
function payload(label: string, i: number): Uint8Array {
  return pack([label, i]);
}

const NIL = Uint8Array.of(0xc0);

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i <= to; i++) out.push(i);
  return out;
}

/** One event-loop turn (lets I/O and timers run). */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Polls `cond` once per event-loop turn until it holds; fails after `timeoutMs`. */
async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (performance.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await turn();
  }
}

/** MQTT matching as the gateway defines it ('a/#' also matches 'a'); the suite's reference. */
function matches(pattern: string, topic: string): boolean {
  const p = pattern.split('/');
  const t = topic.split('/');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '#') return true;
    if (i >= t.length || (p[i] !== '+' && p[i] !== t[i])) return false;
  }
  return p.length === t.length;
}

/** A RetainedMessage with its payload as hex, for deepEqual. */
function retainedView(m: RetainedMessage): { topic: string; seq: number; epoch: string; payload: string } {
  return { topic: m.topic, seq: m.seq, epoch: m.epoch, payload: hex(m.payload) };
}

/** Only the {seq, epoch} of a position or publish result (a broker may add fields). */
function pos(p: StreamPosition | BrokerPublishResult): StreamPosition {
  return { seq: p.seq, epoch: p.epoch };
}

function byTopic<T extends { topic: string }>(a: T, b: T): number {
  return a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0;
}

/** A started broker with everything it delivered and every presence event it emitted. */
class Node {
  readonly deliveries: Delivery[] = [];
  readonly events: PresenceEvent[] = [];
  constructor(readonly broker: Broker) {}

  readonly onDeliver = (topic: string, seq: number, epoch: string, data: Uint8Array, exclude: number): void => {
    this.deliveries.push({ topic, seq, epoch, payload: hex(data), exclude });
  };

  readonly onPresence = (topic: string, kind: 'join' | 'leave', entry: PresenceEntry): void => {
    this.events.push({ topic, kind, entry: view(entry) });
  };

  /** Deliveries of one topic, in arrival order. */
  of(topic: string): Delivery[] {
    return this.deliveries.filter((d) => d.topic === topic);
  }

  seqs(topic: string): number[] {
    return this.of(topic).map((d) => d.seq);
  }

  /** Whether a delivery of `topic` with `seq` arrived. */
  got(topic: string, seq: number): boolean {
    return this.deliveries.some((d) => d.topic === topic && d.seq === seq);
  }

  /** Presence events of one topic and client, as 'join'/'leave' in arrival order. */
  eventsOf(topic: string, client: string): Array<'join' | 'leave'> {
    return this.events.filter((e) => e.topic === topic && e.entry.client === client).map((e) => e.kind);
  }

  publish(topic: string, data: Uint8Array, opts: Partial<BrokerPublishOptions> = {}): Promise<BrokerPublishResult> {
    return Promise.resolve(this.broker.publish(topic, data, { exclude: 0, history: null, retain: false, ...opts }));
  }

  async history(topic: string, query: HistoryQuery): Promise<HistoryPage> {
    return await this.broker.history(topic, query);
  }

  async presence(topic: string): Promise<EntryView[]> {
    return (await this.broker.presence(topic)).map(view).sort(byClient);
  }
}

/** The brokers of one test: created through the factory, started, closed (once) when the test ends. */
class Session {
  private readonly started: Broker[] = [];
  private readonly closed = new Set<Broker>();

  constructor(private readonly factory: BrokerFactory) {}

  async node(): Promise<Node> {
    return this.start(await this.factory.create());
  }

  async capped(caps: { maxTopics: number; maxBytes: number }): Promise<Node> {
    return this.start(await this.factory.capped(caps));
  }

  /** A second node of `first`'s cluster, or null when the broker is single-process. */
  async peer(first: Node): Promise<Node | null> {
    if (this.factory.peer === undefined) return null;
    const b = await this.factory.peer(first.broker);
    return b === null ? null : this.start(b);
  }

  /** loseState through the factory; returns the node to use afterwards (maybe `n` itself). */
  async loseState(n: Node, topic: string): Promise<Node> {
    const b = await this.factory.loseState(n.broker, topic);
    if (b === n.broker) return n;
    const fresh = await this.start(b);
    await this.close(n);
    return fresh;
  }

  async close(n: Node): Promise<void> {
    if (this.closed.has(n.broker)) return;
    this.closed.add(n.broker);
    await n.broker.close();
  }

  async closeAll(): Promise<void> {
    const errors: unknown[] = [];
    for (const b of this.started.reverse()) {
      if (this.closed.has(b)) continue;
      this.closed.add(b);
      try {
        await b.close();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw errors[0];
  }

  private async start(b: Broker): Promise<Node> {
    this.started.push(b);
    const n = new Node(b);
    await b.start(n.onDeliver, n.onPresence);
    return n;
  }
}

function session(t: TestContext, factory: BrokerFactory): Session {
  const s = new Session(factory);
  t.after(() => s.closeAll());
  return s;
}

/** Runs `fn` (which may throw or reject: a closed broker may refuse work) and ignores its outcome. */
async function attempt(fn: () => unknown): Promise<void> {
  try {
    await fn();
  } catch {
    // refused after close: fine
  }
}

function assertComplete(page: HistoryPage, seqs: number[], more: boolean, what: string): void {
  assert.equal(page.complete, true, `${what}: complete`);
  assert.deepEqual(
    page.publications.map((p) => p.seq),
    seqs,
    `${what}: seqs`,
  );
  assert.equal(page.more, more, `${what}: more`);
}

function assertIncomplete(page: HistoryPage, what: string): void {
  assert.equal(page.complete, false, `${what}: complete must be false`);
  assert.deepEqual(page.publications, [], `${what}: an incomplete page carries no messages`);
}

// ---------------------------------------------------------------------------------------------
// The suite

export function brokerConformance(name: string, factory: BrokerFactory): void {
  const f = factory.features;
  const needs = (...features: Array<keyof BrokerFeatures>): { skip?: string } => {
    const missing = features.filter((x) => !f[x]);
    return missing.length === 0 ? {} : { skip: `${name} does not declare the ${missing.join(', ')} feature` };
  };
  const single = `${name} is single-process: its factory has no peer node`;
  const multi = (...features: Array<keyof BrokerFeatures>): { skip?: string } =>
    factory.peer === undefined ? { skip: single } : needs(...features);
  /** Both nodes, or null after marking the test skipped (the factory's peer() returned null). */
  async function pair(t: TestContext, s: Session): Promise<[Node, Node] | null> {
    const a = await s.node();
    const b = await s.peer(a);
    if (b === null) {
      t.skip(single);
      return null;
    }
    return [a, b];
  }

  describe(name, () => {
    it('declares the features its factory says', async (t) => {
      const s = session(t, factory);
      const a = await s.node();
      const { history, retained, presence } = a.broker.features;
      assert.deepEqual({ history, retained, presence }, { history: f.history, retained: f.retained, presence: f.presence });
    });

    describe('delivery', () => {
      it('delivers an exact topic in seq order 1..n with the published payloads', async (t) => {
        const a = await session(t, factory).node();
        await a.broker.subscribe('o/a');
        const n = 200;
        let epoch = '';
        for (let i = 1; i <= n; i++) epoch = (await a.publish('o/a', payload('o', i))).epoch;
        await waitFor(`${n} deliveries`, () => a.got('o/a', n));
        assert.deepEqual(a.seqs('o/a'), range(1, n));
        assert.deepEqual(
          a.of('o/a').map((d) => d.payload),
          range(1, n).map((i) => hex(payload('o', i))),
        );
        for (const d of a.of('o/a')) {
          assert.equal(d.epoch, epoch);
          assert.equal(d.exclude, 0);
        }
      });

      it("delivers through '+' and '#' patterns, each topic in seq order", async (t) => {
        const a = await session(t, factory).node();
        await a.broker.subscribe('p/+/x');
        await a.broker.subscribe('q/#');
        const topics = ['p/1/x', 'p/2/x', 'q', 'q/a', 'q/a/b/c'];
        const n = 50;
        for (let i = 1; i <= n; i++) for (const topic of topics) await a.publish(topic, payload(topic, i));
        for (const topic of topics) {
          await waitFor(`${topic} #${n}`, () => a.got(topic, n));
          assert.deepEqual(a.seqs(topic), range(1, n), topic);
          assert.deepEqual(
            a.of(topic).map((d) => d.payload),
            range(1, n).map((i) => hex(payload(topic, i))),
            topic,
          );
        }
      });

      it('delivers a message once however many subscribed patterns match it', async (t) => {
        const a = await session(t, factory).node();
        for (const p of ['w/a/b', 'w/+/b', 'w/a/+', 'w/#', '+/a/b', '#']) await a.broker.subscribe(p);
        for (let i = 1; i <= 5; i++) await a.publish('w/a/b', payload('w', i));
        await waitFor('w/a/b #5', () => a.got('w/a/b', 5));
        // A fence on the same topic: anything duplicated would have arrived before it.
        await a.publish('w/a/b', payload('w', 6));
        await waitFor('w/a/b #6', () => a.got('w/a/b', 6));
        assert.deepEqual(a.seqs('w/a/b'), range(1, 6));
      });

      const filtering = factory.filters ? {} : { skip: `${name} hands over every topic (the hub filters), which broker.ts allows` };

      it('delivers nothing for topics no subscribed pattern matches', filtering, async (t) => {
        const a = await session(t, factory).node();
        await a.broker.subscribe('m/+');
        await a.broker.subscribe('k/x/#');
        // Not matched: '+' is exactly one level, 'k/x/#' covers k/x and below only.
        const unmatched = ['m', 'm/a/b', 'n/a', 'k', 'k/y', 'k/xx', 'M/a'];
        for (const topic of unmatched) await a.publish(topic, payload(topic, 1));
        await a.publish('m/a', payload('m/a', 1));
        await a.publish('k/x', payload('k/x', 1));
        await a.publish('k/x/y/z', payload('k/x/y/z', 1));
        // Fence per unmatched topic: subscribe it exactly, publish #2; #1 would have come first.
        for (const topic of unmatched) await a.broker.subscribe(topic);
        for (const topic of unmatched) await a.publish(topic, payload(topic, 2));
        for (const topic of unmatched) {
          await waitFor(`${topic} #2`, () => a.got(topic, 2));
          assert.deepEqual(a.seqs(topic), [2], `${topic} was delivered before any matching subscription`);
        }
        for (const topic of ['m/a', 'k/x', 'k/x/y/z']) assert.deepEqual(a.seqs(topic), [1], topic);
      });

      it('unsubscribe stops delivery for that pattern only', filtering, async (t) => {
        const a = await session(t, factory).node();
        await a.broker.subscribe('u/+');
        await a.publish('u/a', payload('u', 1));
        await waitFor('u/a #1', () => a.got('u/a', 1));
        await a.broker.unsubscribe('u/+');
        await a.publish('u/a', payload('u', 2));
        // Fence: subscribe again (another pattern) and publish #3; #2 would have come first.
        await a.broker.subscribe('u/a');
        await a.publish('u/a', payload('u', 3));
        await waitFor('u/a #3', () => a.got('u/a', 3));
        assert.deepEqual(a.seqs('u/a'), [1, 3], 'nothing delivered between unsubscribe and the next subscribe');

        // Two patterns match v/a: dropping one keeps delivery through the other.
        await a.broker.subscribe('v/#');
        await a.broker.subscribe('v/a');
        await a.broker.unsubscribe('v/a');
        await a.publish('v/a', payload('v', 1));
        await waitFor('v/a #1 through v/#', () => a.got('v/a', 1));
        assert.deepEqual(a.seqs('v/a'), [1]);
      });

      it('passes exclude through to the deliver callback', async (t) => {
        const a = await session(t, factory).node();
        await a.broker.subscribe('x/#');
        await a.publish('x/a', payload('x', 1), { exclude: 42 });
        await a.publish('x/a', payload('x', 2));
        await a.publish('x/a', payload('x', 3), { exclude: 7, history: { limit: 10, ttl: 0 }, retain: true });
        await waitFor('x/a #3', () => a.got('x/a', 3));
        assert.deepEqual(
          a.of('x/a').map((d) => [d.seq, d.exclude]),
          [
            [1, 42],
            [2, 0],
            [3, 7],
          ],
        );
      });

      it('[peer] every subscribed node delivers in order; exclude only on the publishing node', multi(), async (t) => {
        const nodes = await pair(t, session(t, factory));
        if (nodes === null) return;
        const [a, b] = nodes;
        await a.broker.subscribe('mn/+');
        await b.broker.subscribe('mn/#');
        const n = 60;
        for (let i = 1; i <= n; i++) await (i % 2 === 1 ? a : b).publish('mn/t', payload('mn', i), { exclude: i % 2 === 1 ? 5 : 6 });
        for (const [node, label] of [
          [a, 'node A'],
          [b, 'node B'],
        ] as const) {
          await waitFor(`${label}: mn/t #${n}`, () => node.got('mn/t', n));
          assert.deepEqual(node.seqs('mn/t'), range(1, n), label);
          assert.deepEqual(
            node.of('mn/t').map((d) => d.payload),
            range(1, n).map((i) => hex(payload('mn', i))),
            label,
          );
        }
        const aExcl = a.of('mn/t').map((d) => d.exclude);
        const bExcl = b.of('mn/t').map((d) => d.exclude);
        assert.deepEqual(
          aExcl,
          range(1, n).map((i) => (i % 2 === 1 ? 5 : 0)),
          "node A: its own exclude, 0 for node B's messages",
        );
        assert.deepEqual(
          bExcl,
          range(1, n).map((i) => (i % 2 === 1 ? 0 : 6)),
          "node B: its own exclude, 0 for node A's messages",
        );
      });
    });

    describe('seq and epoch', () => {
      it('publish returns seq 1, 2, 3, ... and one stable epoch per topic, whatever the options; position() agrees', async (t) => {
        const a = await session(t, factory).node();
        const options: Array<Partial<BrokerPublishOptions>> = [
          {},
          { exclude: 3 },
          ...(f.history ? [{ history: { limit: 2, ttl: 0 } }] : []),
          ...(f.retained ? [{ retain: true }] : []),
          {},
        ];
        const results: BrokerPublishResult[] = [];
        for (const [i, o] of options.entries()) results.push(await a.publish('s/a', payload('s', i), o));
        assert.deepEqual(
          results.map((r) => r.seq),
          range(1, options.length),
        );
        const epoch = results[0].epoch;
        assert.equal(typeof epoch, 'string');
        assert.ok(epoch.length > 0, 'the epoch is a non-empty string');
        for (const r of results) assert.equal(r.epoch, epoch, 'one epoch across publishes');
        assert.deepEqual(pos(await a.broker.position('s/a')), { seq: options.length, epoch });
        const again = await a.publish('s/a', payload('s', 99));
        assert.deepEqual(pos(again), { seq: options.length + 1, epoch });
        assert.deepEqual(pos(await a.broker.position('s/a')), pos(again));
      });

      it('a topic never published is at seq 0', async (t) => {
        const a = await session(t, factory).node();
        await a.publish('z/a', payload('z', 1));
        for (const topic of ['z/never', 'z', 'z/a/b']) {
          const p = await a.broker.position(topic);
          assert.equal(p.seq, 0, topic);
          assert.equal(typeof p.epoch, 'string', topic);
        }
      });

      it('topics have independent sequences', async (t) => {
        const a = await session(t, factory).node();
        const seqs = new Map<string, number[]>();
        const topics = ['i/a', 'i/b', 'i/a/b', 'i'];
        for (let round = 0; round < 5; round++) {
          for (const [k, topic] of topics.entries()) {
            if (round > k + 1) continue; // different counts per topic
            const r = await a.publish(topic, payload(topic, round));
            seqs.set(topic, [...(seqs.get(topic) ?? []), r.seq]);
          }
        }
        for (const [k, topic] of topics.entries()) {
          const n = Math.min(5, k + 2);
          assert.deepEqual(seqs.get(topic), range(1, n), topic);
          assert.equal((await a.broker.position(topic)).seq, n, topic);
        }
      });

      it('after loseState the epoch differs and old positions no longer recover', async (t) => {
        const s = session(t, factory);
        let a = await s.node();
        const H: HistoryPolicy = { limit: 100, ttl: 0 };
        let before: BrokerPublishResult = { seq: 0, epoch: '' };
        for (let i = 1; i <= 3; i++) before = await a.publish('l/a', payload('l', i), { history: f.history ? H : null });
        assert.equal(before.seq, 3);
        a = await s.loseState(a, 'l/a');
        const after = await a.broker.position('l/a');
        assert.notEqual(after.epoch, before.epoch, 'position() after loseState: a new epoch');
        await a.broker.subscribe('l/a');
        const r1 = await a.publish('l/a', payload('l', 4), { history: f.history ? H : null });
        const r2 = await a.publish('l/a', payload('l', 5), { history: f.history ? H : null });
        assert.notEqual(r1.epoch, before.epoch, 'publish after loseState: a new epoch');
        assert.equal(r2.epoch, r1.epoch, 'and one epoch from then on');
        assert.ok(r1.seq === 1 || r1.seq === before.seq + 1, `seqs restart at 1 or continue at ${before.seq + 1} (got ${r1.seq})`);
        assert.equal(r2.seq, r1.seq + 1);
        assert.deepEqual(pos(await a.broker.position('l/a')), pos(r2));
        await waitFor('l/a delivery after loseState', () => a.got('l/a', r2.seq));
        const live = a.of('l/a').filter((d) => d.seq >= r1.seq);
        assert.deepEqual(
          live.map((d) => [d.seq, d.epoch]),
          [
            [r1.seq, r1.epoch],
            [r2.seq, r2.epoch],
          ],
        );
        if (f.history) {
          assertIncomplete(await a.history('l/a', { since: before, limit: 100 }), 'since the position before loseState');
          assertComplete(await a.history('l/a', { since: r1, limit: 100 }), [r2.seq], false, 'since a position in the new epoch');
        }
      });
    });

    describe('concurrency', () => {
      it('concurrent publishes to one topic get distinct, gap-free seqs, delivered in order', async (t) => {
        const a = await session(t, factory).node();
        await a.broker.subscribe('c/+');
        const n = 300;
        const pending: Array<Promise<[string, string, BrokerPublishResult]>> = [];
        const start = (topic: string, i: number): void => {
          const data = payload(topic, i);
          pending.push(a.publish(topic, data).then((r) => [topic, hex(data), r]));
        };
        for (let i = 0; i < n; i++) {
          start('c/a', i);
          if (i % 3 === 0) start('c/b', i);
        }
        const results = await Promise.all(pending);
        for (const topic of ['c/a', 'c/b']) {
          const mine = results.filter(([tp]) => tp === topic);
          const seqs = mine.map(([, , r]) => r.seq).sort((x, y) => x - y);
          assert.deepEqual(seqs, range(1, mine.length), `${topic}: distinct, gap-free seqs`);
          assert.equal(new Set(mine.map(([, , r]) => r.epoch)).size, 1, `${topic}: one epoch`);
          await waitFor(`${topic} #${mine.length}`, () => a.got(topic, mine.length));
          assert.deepEqual(a.seqs(topic), range(1, mine.length), `${topic}: delivered in seq order`);
          const bySeq = new Map(mine.map(([, data, r]) => [r.seq, data]));
          for (const d of a.of(topic)) assert.equal(d.payload, bySeq.get(d.seq), `${topic} #${d.seq}: the payload whose publish got this seq`);
        }
      });

      it('[peer] two nodes publishing to one topic never hand out the same seq; each node delivers in order', multi(), async (t) => {
        const nodes = await pair(t, session(t, factory));
        if (nodes === null) return;
        const [a, b] = nodes;
        await a.broker.subscribe('cc/+');
        await b.broker.subscribe('cc/x');
        const n = 200;
        const pending: Array<Promise<[string, BrokerPublishResult]>> = [];
        for (let i = 0; i < n; i++) {
          for (const [node, label] of [
            [a, 'A'],
            [b, 'B'],
          ] as const) {
            const data = payload(label, i);
            pending.push(node.publish('cc/x', data).then((r) => [hex(data), r]));
          }
        }
        const results = await Promise.all(pending);
        assert.deepEqual(
          results.map(([, r]) => r.seq).sort((x, y) => x - y),
          range(1, 2 * n),
          'distinct, gap-free seqs across both nodes',
        );
        assert.equal(new Set(results.map(([, r]) => r.epoch)).size, 1, 'one epoch');
        const bySeq = new Map(results.map(([data, r]) => [r.seq, data]));
        for (const [node, label] of [
          [a, 'node A'],
          [b, 'node B'],
        ] as const) {
          await waitFor(`${label}: cc/x #${2 * n}`, () => node.got('cc/x', 2 * n));
          assert.deepEqual(node.seqs('cc/x'), range(1, 2 * n), `${label}: in seq order`);
          for (const d of node.of('cc/x')) assert.equal(d.payload, bySeq.get(d.seq), `${label} #${d.seq}: payload`);
        }
      });
    });

    describe('history', () => {
      it('keeps only the last N messages under {limit: N}', needs('history'), async (t) => {
        const a = await session(t, factory).node();
        const H: HistoryPolicy = { limit: 5, ttl: 0 };
        let last: BrokerPublishResult = { seq: 0, epoch: '' };
        for (let i = 1; i <= 12; i++) last = await a.publish('h/a', payload('h', i), { history: H });
        const page = await a.history('h/a', { limit: 100 });
        assertComplete(page, range(8, 12), false, 'the last 5');
        assert.deepEqual(pos(page.position), pos(last));
        assert.deepEqual(
          page.publications.map((p) => hex(p.payload)),
          range(8, 12).map((i) => hex(payload('h', i))),
        );
        const now = Date.now();
        for (const p of page.publications) {
          assert.ok(Number.isFinite(p.time) && Math.abs(p.time - now) < 60_000, `time is milliseconds since the epoch (got ${p.time})`);
        }
      });

      it('drops messages older than {ttl}', needs('history'), async (t) => {
        const a = await session(t, factory).node();
        const H: HistoryPolicy = { limit: 100, ttl: 200 };
        let t0 = performance.now();
        let last: BrokerPublishResult = { seq: 0, epoch: '' };
        for (let i = 1; i <= 3; i++) last = await a.publish('h/t', payload('h', i), { history: H });
        let page = await a.history('h/t', { limit: 100 });
        if (performance.now() - t0 < H.ttl) assertComplete(page, [1, 2, 3], false, 'before the ttl');
        await waitFor('the expired messages to go', async () => (await a.history('h/t', { limit: 100 })).publications.length === 0, 10_000);
        page = await a.history('h/t', { limit: 100 });
        assert.deepEqual(pos(page.position), pos(last), 'expiry does not move the position');
        assertIncomplete(await a.history('h/t', { since: { seq: 0, epoch: last.epoch }, limit: 100 }), 'since 0 after expiry');
        assertComplete(await a.history('h/t', { since: last, limit: 100 }), [], false, 'since the position after expiry');
        t0 = performance.now();
        const r4 = await a.publish('h/t', payload('h', 4), { history: H });
        page = await a.history('h/t', { since: last, limit: 100 });
        if (performance.now() - t0 < H.ttl) assertComplete(page, [r4.seq], false, 'a new message after expiry');
      });

      it('keeps nothing without a history policy', needs('history'), async (t) => {
        const a = await session(t, factory).node();
        let last: BrokerPublishResult = { seq: 0, epoch: '' };
        for (let i = 1; i <= 3; i++) last = await a.publish('h/n', payload('h', i));
        const page = await a.history('h/n', { limit: 10 });
        assertComplete(page, [], false, 'nothing kept');
        assert.deepEqual(pos(page.position), pos(last));
        assertIncomplete(await a.history('h/n', { since: { seq: 0, epoch: last.epoch }, limit: 10 }), 'since 0');
        assertComplete(await a.history('h/n', { since: last, limit: 10 }), [], false, 'since the position');
        assertComplete(await a.history('h/never', { limit: 10 }), [], false, 'a topic never published');
      });

      it('reads without since: the newest `limit` oldest first, newest first with reverse, more when cut', needs('history'), async (t) => {
        const a = await session(t, factory).node();
        const H: HistoryPolicy = { limit: 100, ttl: 0 };
        let last: BrokerPublishResult = { seq: 0, epoch: '' };
        for (let i = 1; i <= 10; i++) last = await a.publish('h/r', payload('h', i), { history: H });
        const cases: Array<[number, boolean, number[], boolean]> = [
          [4, false, [7, 8, 9, 10], true],
          [4, true, [10, 9, 8, 7], true],
          [10, false, range(1, 10), false],
          [10, true, range(1, 10).reverse(), false],
          [25, false, range(1, 10), false],
          [25, true, range(1, 10).reverse(), false],
        ];
        for (const [limit, reverse, seqs, more] of cases) {
          const page = await a.history('h/r', { limit, reverse });
          assertComplete(page, seqs, more, `limit ${limit}${reverse ? ', reverse' : ''}`);
          assert.deepEqual(pos(page.position), pos(last));
          assert.deepEqual(
            page.publications.map((p) => hex(p.payload)),
            seqs.map((i) => hex(payload('h', i))),
          );
        }
      });

      it('limit 0 returns only the position', needs('history'), async (t) => {
        const a = await session(t, factory).node();
        const H: HistoryPolicy = { limit: 100, ttl: 0 };
        let last: BrokerPublishResult = { seq: 0, epoch: '' };
        for (let i = 1; i <= 3; i++) last = await a.publish('h/z', payload('h', i), { history: H });
        let page = await a.history('h/z', { limit: 0 });
        assertComplete(page, [], true, 'limit 0 with 3 kept');
        assert.deepEqual(pos(page.position), pos(last));
        page = await a.history('h/z', { since: { seq: 1, epoch: last.epoch }, limit: 0 });
        assertComplete(page, [], true, 'limit 0 since 1');
        assert.deepEqual(pos(page.position), pos(last));
        assertComplete(await a.history('h/z', { since: last, limit: 0 }), [], false, 'limit 0 since the position');
        assertComplete(await a.history('h/empty', { limit: 0 }), [], false, 'limit 0 on a topic never published');
      });
    });

    describe('recovery', () => {
      /** 10 messages on `topic` kept under {limit}; returns the last result. */
      async function ten(a: Node, topic: string, limit = 100): Promise<BrokerPublishResult> {
        let last: BrokerPublishResult = { seq: 0, epoch: '' };
        for (let i = 1; i <= 10; i++) last = await a.publish(topic, payload(topic, i), { history: { limit, ttl: 0 } });
        assert.equal(last.seq, 10);
        return last;
      }

      it('since a position returns exactly what followed it, complete, in order', needs('history'), async (t) => {
        const a = await session(t, factory).node();
        const last = await ten(a, 'r/a');
        for (let s = 0; s <= 10; s++) {
          const page = await a.history('r/a', { since: { seq: s, epoch: last.epoch }, limit: 100 });
          assertComplete(page, range(s + 1, 10), false, `since ${s}`);
          assert.deepEqual(pos(page.position), pos(last));
          assert.deepEqual(
            page.publications.map((p) => hex(p.payload)),
            range(s + 1, 10).map((i) => hex(payload('r/a', i))),
          );
        }
      });

      it('since older than the window is incomplete and carries no messages', needs('history'), async (t) => {
        const a = await session(t, factory).node();
        const last = await ten(a, 'r/w', 5); // keeps 6..10
        for (const s of [0, 1, 4]) {
          const page = await a.history('r/w', { since: { seq: s, epoch: last.epoch }, limit: 100 });
          assertIncomplete(page, `since ${s} with 6..10 kept`);
          assert.deepEqual(pos(page.position), pos(last));
        }
        assertComplete(await a.history('r/w', { since: { seq: 5, epoch: last.epoch }, limit: 100 }), range(6, 10), false, 'since 5 with 6..10 kept');
      });

      it('since in a foreign epoch is incomplete', needs('history'), async (t) => {
        const a = await session(t, factory).node();
        const last = await ten(a, 'r/e');
        for (const s of [0, 5, 10]) {
          const page = await a.history('r/e', { since: { seq: s, epoch: `${last.epoch}-other` }, limit: 100 });
          assertIncomplete(page, `since ${s} in another epoch`);
          assert.deepEqual(pos(page.position), pos(last));
        }
      });

      it('since equal to the position is complete and empty', needs('history'), async (t) => {
        const a = await session(t, factory).node();
        const last = await ten(a, 'r/p');
        const page = await a.history('r/p', { since: last, limit: 100 });
        assertComplete(page, [], false, 'since the position');
        assert.deepEqual(pos(page.position), pos(last));
      });

      it('limit cuts a since page with more: true; paging on recovers everything', needs('history'), async (t) => {
        const a = await session(t, factory).node();
        const last = await ten(a, 'r/l');
        const got: number[] = [];
        let since: StreamPosition = { seq: 2, epoch: last.epoch };
        const expected: Array<[number[], boolean]> = [
          [[3, 4, 5], true],
          [[6, 7, 8], true],
          [[9, 10], false],
        ];
        for (const [seqs, more] of expected) {
          const page = await a.history('r/l', { since, limit: 3 });
          assertComplete(page, seqs, more, `since ${since.seq}, limit 3`);
          got.push(...seqs);
          since = { seq: seqs[seqs.length - 1], epoch: last.epoch };
        }
        assert.deepEqual(got, range(3, 10));
      });

      it('since from the future is incomplete', needs('history'), async (t) => {
        const a = await session(t, factory).node();
        const last = await ten(a, 'r/f');
        for (const s of [11, 1000]) assertIncomplete(await a.history('r/f', { since: { seq: s, epoch: last.epoch }, limit: 100 }), `since ${s} at position 10`);
        assertIncomplete(await a.history('r/f-never', { since: { seq: 3, epoch: last.epoch }, limit: 100 }), 'since 3 on a topic never published');
      });

      it('a reader that took its position before the first publish recovers everything', needs('history'), async (t) => {
        const a = await session(t, factory).node();
        const start = await a.broker.position('r/0');
        assert.equal(start.seq, 0);
        const last = await ten(a, 'r/0');
        assert.equal(last.epoch, start.epoch, 'the first publish keeps the epoch position() reported');
        assertComplete(await a.history('r/0', { since: start, limit: 100 }), range(1, 10), false, 'since seq 0');
      });

      it('history + buffered live deliveries, merged, give every seq once, in order, while publishers run', needs('history'), async (t) => {
        const s = session(t, factory);
        const reader = await s.node();
        const other = await s.peer(reader);
        const publishers = other === null ? [reader] : [reader, other];
        const topic = 'r/merge';
        const H: HistoryPolicy = { limit: 100_000, ttl: 0 };
        const published = new Map<number, string>();
        const publish = async (node: Node, label: string, i: number): Promise<void> => {
          const data = payload(label, i);
          const r = await node.publish(topic, data, { history: H });
          published.set(r.seq, hex(data));
        };
        // The reader saw 1..20, then lost its connection.
        for (let i = 0; i < 20; i++) await publish(reader, 'early', i);
        const lastSeen = await reader.broker.position(topic);
        assert.equal(lastSeen.seq, 20);

        // Publishers keep going until well after the reader has read its history.
        let readDone = false;
        let afterRead = 0;
        const running = Promise.all(
          publishers.map(async (node, k) => {
            for (let i = 0; i < 20_000 && afterRead < 40; i++) {
              await publish(node, `p${k}`, i);
              if (readDone) afterRead++;
              if (i % 2 === 0) await turn();
            }
          }),
        );
        running.catch(() => undefined); // awaited below; no unhandled rejection meanwhile
        try {
          await waitFor('publishing under way', () => published.size >= 60);
          // Reconnect: subscribe first (deliveries buffered from here on), then read history.
          const from = reader.deliveries.length;
          await reader.broker.subscribe(topic);
          const page = await reader.history(topic, { since: lastSeen, limit: 100_000 });
          readDone = true;
          assert.equal(page.complete, true, 'recovery page complete');
          assert.equal(page.more, false);
          await running;
          const final = Math.max(...published.keys());
          assert.deepEqual([...published.keys()].sort((x, y) => x - y), range(1, final), 'publishers got gap-free seqs');
          await waitFor(`live delivery of #${final}`, () => reader.got(topic, final));
          const lastHistory = page.publications.length > 0 ? page.publications[page.publications.length - 1].seq : lastSeen.seq;
          assert.ok(lastHistory < final, 'the scenario overlapped: messages arrived live after the history read');
          const live = reader.deliveries.slice(from).filter((d) => d.topic === topic && d.seq > lastHistory);
          const merged = [...page.publications.map((p) => ({ seq: p.seq, payload: hex(p.payload) })), ...live.map((d) => ({ seq: d.seq, payload: d.payload }))];
          assert.deepEqual(
            merged.map((m) => m.seq),
            range(lastSeen.seq + 1, final),
            'every seq after the last seen, once, in order',
          );
          for (const m of merged) assert.equal(m.payload, published.get(m.seq), `#${m.seq}: payload`);
        } finally {
          afterRead = Infinity;
          readDone = true;
          await running.catch(() => undefined);
        }
      });
    });

    describe('retained', () => {
      it('keeps the last retained value per topic', needs('retained'), async (t) => {
        const a = await session(t, factory).node();
        await a.publish('rt/a', payload('a', 1), { retain: true });
        const r2 = await a.publish('rt/a', payload('a', 2), { retain: true });
        const rb = await a.publish('rt/b', payload('b', 1), { retain: true });
        const got = (await a.broker.retained('rt/a', 10)).map(retainedView);
        assert.deepEqual(got, [{ topic: 'rt/a', seq: r2.seq, epoch: r2.epoch, payload: hex(payload('a', 2)) }]);
        const b = (await a.broker.retained('rt/b', 10)).map(retainedView);
        assert.deepEqual(b, [{ topic: 'rt/b', seq: rb.seq, epoch: rb.epoch, payload: hex(payload('b', 1)) }]);
        assert.deepEqual(await a.broker.retained('rt/none', 10), []);
      });

      it('non-retained publishes do not change the retained value', needs('retained'), async (t) => {
        const a = await session(t, factory).node();
        const r1 = await a.publish('rt/k', payload('k', 1), { retain: true });
        await a.publish('rt/k', payload('k', 2));
        await a.publish('rt/k', NIL);
        await a.publish('rt/k', payload('k', 4), { history: f.history ? { limit: 5, ttl: 0 } : null, exclude: 9 });
        const got = (await a.broker.retained('rt/k', 10)).map(retainedView);
        assert.deepEqual(got, [{ topic: 'rt/k', seq: r1.seq, epoch: r1.epoch, payload: hex(payload('k', 1)) }]);
        await a.publish('rt/never', payload('n', 1));
        assert.deepEqual(await a.broker.retained('rt/never', 10), [], 'a topic never published with retain has none');
      });

      it('a retained nil payload clears the value and is still delivered', needs('retained'), async (t) => {
        const a = await session(t, factory).node();
        await a.broker.subscribe('rt/+');
        await a.publish('rt/n', payload('n', 1), { retain: true });
        const cleared = await a.publish('rt/n', NIL, { retain: true });
        assert.equal(cleared.seq, 2, 'a clearing publish takes a seq');
        assert.deepEqual(await a.broker.retained('rt/n', 10), []);
        assert.deepEqual(await a.broker.retained('rt/+', 10), []);
        await a.publish('rt/m', NIL, { retain: true }); // nothing to clear: fine
        assert.deepEqual(await a.broker.retained('rt/m', 10), []);
        await waitFor('rt/n #2', () => a.got('rt/n', 2));
        assert.deepEqual(
          a.of('rt/n').map((d) => d.payload),
          [hex(payload('n', 1)), hex(NIL)],
        );
        await waitFor('rt/m #1', () => a.got('rt/m', 1));
        assert.equal(a.of('rt/m')[0].payload, hex(NIL));
        const r3 = await a.publish('rt/n', payload('n', 3), { retain: true });
        const got = (await a.broker.retained('rt/n', 10)).map(retainedView);
        assert.deepEqual(got, [{ topic: 'rt/n', seq: r3.seq, epoch: r3.epoch, payload: hex(payload('n', 3)) }], 'retained again after a clear');
      });

      it('caps: past maxTopics or maxBytes a retained publish is delivered, not retained, and the older value of its topic goes', needs('retained'), async (t) => {
        // payload('x', i) packs to 4 bytes; 3 topics at most, 12 bytes at most
        const a = await session(t, factory).capped({ maxTopics: 3, maxBytes: 12 });
        await a.broker.subscribe('cap/#');
        const values = async () => (await a.broker.retained('cap/#', 100)).map((m) => [m.topic, hex(m.payload)]);
        await a.publish('cap/1', payload('a', 1), { retain: true });
        await a.publish('cap/2', payload('b', 1), { retain: true });
        await a.publish('cap/3', payload('c', 1), { retain: true });
        await a.publish('cap/4', payload('d', 1), { retain: true }); // a 4th topic: refused
        assert.deepEqual(await values(), [
          ['cap/1', hex(payload('a', 1))],
          ['cap/2', hex(payload('b', 1))],
          ['cap/3', hex(payload('c', 1))],
        ]);
        await a.publish('cap/2', payload('b', 2), { retain: true }); // a replacement of the same size fits
        await a.publish('cap/3', pack(['c', 'too long to fit']), { retain: true }); // over maxBytes: refused, cap/3 loses its value
        assert.deepEqual(await values(), [
          ['cap/1', hex(payload('a', 1))],
          ['cap/2', hex(payload('b', 2))],
        ]);
        await a.publish('cap/4', payload('d', 2), { retain: true }); // room again
        assert.deepEqual((await values()).map(([topic]) => topic), ['cap/1', 'cap/2', 'cap/4']);
        await waitFor('every publish delivered', () => a.got('cap/3', 2) && a.got('cap/4', 2));
        if (a.broker.stats !== undefined) {
          const read = (a.broker as { readStats?: () => Promise<unknown> }).readStats;
          if (read !== undefined) await read.call(a.broker);
          const st = a.broker.stats();
          assert.deepEqual([st.retainedTopics, st.retainedBytes, st.retainedRejected], [3, 12, 2]);
        }
      });

      describe('patterns over many topics', () => {
        interface Expected {
          topic: string;
          seq: number;
          epoch: string;
          payload: string;
        }
        /** Publishes retained values on many topics (some twice, some cleared, some not retained). */
        async function populate(a: Node): Promise<Expected[]> {
          const topics: string[] = ['ret', 'ret/5', 'ret/1/2/3', 'ret/x/2', 'sport/x/2', 'other', 'a/ret/1'];
          for (let i = 0; i < 12; i++) for (let j = 0; j < 4; j++) topics.push(`ret/${i}/${j}`);
          // A fixed shuffle (the broker must sort, not keep insertion order).
          let x = 12345;
          const order = topics
            .map((tp) => {
              x = (x * 1103515245 + 12345) % 2147483648;
              return [x, tp] as const;
            })
            .sort((p, q) => p[0] - q[0])
            .map(([, tp]) => tp);
          const model = new Map<string, Expected>();
          for (const [k, topic] of order.entries()) {
            const r = await a.publish(topic, payload(topic, 1), { retain: true });
            model.set(topic, { topic, seq: r.seq, epoch: r.epoch, payload: hex(payload(topic, 1)) });
            if (k % 5 === 0) {
              const r2 = await a.publish(topic, payload(topic, 2), { retain: true });
              model.set(topic, { topic, seq: r2.seq, epoch: r2.epoch, payload: hex(payload(topic, 2)) });
            }
            if (k % 7 === 0) await a.publish(topic, payload(topic, 3)); // not retained: no change
            if (k % 11 === 3) {
              await a.publish(topic, NIL, { retain: true });
              model.delete(topic);
            }
          }
          await a.publish('ret/7/unretained', payload('u', 1)); // never retained
          return [...model.values()].sort(byTopic);
        }

        const patterns = ['ret/3/2', 'ret/9/9/9', 'ret/+/2', 'ret/+', '+/+/2', 'ret/#', 'ret/1/#', '#', '+', 'ret/+/+/+', '+/ret/#', 'nothing/#', 'ret/7/unretained'];

        it("exact, '+' and '#' patterns return exactly the matching topics, sorted, with seq and epoch", needs('retained'), async (t) => {
          const a = await session(t, factory).node();
          const all = await populate(a);
          for (const pattern of patterns) {
            const got = (await a.broker.retained(pattern, 10_000)).map(retainedView);
            assert.deepEqual(
              got,
              all.filter((m) => matches(pattern, m.topic)),
              `retained('${pattern}')`,
            );
          }
        });

        it('limit is honoured: at most `limit`, sorted, each a matching retained value', needs('retained'), async (t) => {
          const a = await session(t, factory).node();
          const all = await populate(a);
          for (const [pattern, limit] of [
            ['ret/#', 5],
            ['#', 1],
            ['ret/+/2', 3],
            ['ret/+/2', 0],
            ['ret/3/2', 0],
          ] as const) {
            const want = all.filter((m) => matches(pattern, m.topic));
            const got = (await a.broker.retained(pattern, limit)).map(retainedView);
            const what = `retained('${pattern}', ${limit})`;
            assert.equal(got.length, Math.min(limit, want.length), `${what}: count`);
            assert.deepEqual([...got].sort(byTopic), got, `${what}: sorted by topic`);
            for (const m of got)
              assert.deepEqual(
                m,
                want.find((w) => w.topic === m.topic),
                `${what}: ${m.topic}`,
              );
          }
        });
      });
    });

    describe('presence', () => {
      const TTL = 60_000;
      const e1: PresenceEntry = { client: 'n1:1', user: 'alice', info: pack({ name: 'Alice' }) };
      const e2: PresenceEntry = { client: 'n1:2', user: null, info: null };
      const e3: PresenceEntry = { client: 'n2:7', user: 'bob', info: null };

      it('add, list and remove', needs('presence'), async (t) => {
        const a = await session(t, factory).node();
        assert.deepEqual(await a.presence('pr/a'), []);
        await a.broker.presenceAdd('pr/a', e1, TTL);
        await a.broker.presenceAdd('pr/a', e2, TTL);
        await a.broker.presenceAdd('pr/a', e3, TTL);
        assert.deepEqual(await a.presence('pr/a'), [e1, e2, e3].map(view).sort(byClient));
        await a.broker.presenceRemove('pr/a', e1.client);
        assert.deepEqual(await a.presence('pr/a'), [e2, e3].map(view).sort(byClient));
        await a.broker.presenceRemove('pr/a', 'nobody');
        await a.broker.presenceRemove('pr/none', e2.client);
        assert.deepEqual(await a.presence('pr/a'), [e2, e3].map(view).sort(byClient));
        // Adding again with other details replaces the entry.
        const e2b: PresenceEntry = { ...e2, user: 'carol', info: pack(1) };
        await a.broker.presenceAdd('pr/a', e2b, TTL);
        assert.deepEqual(await a.presence('pr/a'), [e2b, e3].map(view).sort(byClient));
        await a.broker.presenceRemove('pr/a', e2.client);
        await a.broker.presenceRemove('pr/a', e3.client);
        assert.deepEqual(await a.presence('pr/a'), []);
      });

      it('entries are per topic', needs('presence'), async (t) => {
        const a = await session(t, factory).node();
        await a.broker.presenceAdd('pt/a', e1, TTL);
        await a.broker.presenceAdd('pt/b', e1, TTL);
        await a.broker.presenceAdd('pt/b', e2, TTL);
        assert.deepEqual(await a.presence('pt/a'), [view(e1)]);
        assert.deepEqual(await a.presence('pt/b'), [e1, e2].map(view));
        assert.deepEqual(await a.presence('pt'), []);
        await a.broker.presenceRemove('pt/a', e1.client);
        assert.deepEqual(await a.presence('pt/a'), []);
        assert.deepEqual(await a.presence('pt/b'), [e1, e2].map(view));
      });

      it('join and leave events reach the PresenceListener (a refresh is no join)', needs('presence'), async (t) => {
        const a = await session(t, factory).node();
        await a.broker.presenceAdd('pe/a', e1, TTL);
        await waitFor('join of e1', () => a.eventsOf('pe/a', e1.client).length === 1);
        assert.deepEqual(a.events[0], { topic: 'pe/a', kind: 'join', entry: view(e1) });
        await a.broker.presenceAdd('pe/a', e1, TTL); // refresh
        await a.broker.presenceRemove('pe/a', e2.client); // absent: no leave
        // Fence: a join of e2 on the same topic arrives after anything the two calls above emitted.
        await a.broker.presenceAdd('pe/a', e2, TTL);
        await waitFor('join of e2', () => a.eventsOf('pe/a', e2.client).length === 1);
        assert.deepEqual(a.eventsOf('pe/a', e1.client), ['join'], 'a refresh emits no second join');
        assert.deepEqual(a.eventsOf('pe/a', e2.client), ['join'], 'removing an absent client emits no leave');
        await a.broker.presenceRemove('pe/a', e1.client);
        await waitFor('leave of e1', () => a.eventsOf('pe/a', e1.client).length === 2);
        assert.deepEqual(a.events.filter((e) => e.kind === 'leave'), [{ topic: 'pe/a', kind: 'leave', entry: view(e1) }]);
        await a.broker.presenceRemove('pe/a', e1.client); // already gone: no second leave
        await a.broker.presenceRemove('pe/a', e2.client);
        await waitFor('leave of e2', () => a.eventsOf('pe/a', e2.client).length === 2);
        assert.deepEqual(a.eventsOf('pe/a', e1.client), ['join', 'leave']);
        assert.deepEqual(a.eventsOf('pe/a', e2.client), ['join', 'leave']);
        assert.ok(
          a.events.every((e) => e.topic === 'pe/a'),
          'events only for the topic used',
        );
      });

      it('an entry not refreshed expires after its ttl, with a leave event', needs('presence'), async (t) => {
        const a = await session(t, factory).node();
        await a.broker.presenceAdd('px/a', e1, 100);
        await a.broker.presenceAdd('px/a', e2, TTL);
        await waitFor('e1 gone from the list', async () => !(await a.presence('px/a')).some((e) => e.client === e1.client), 10_000);
        await waitFor('leave event for e1', () => a.eventsOf('px/a', e1.client).includes('leave'), 10_000);
        assert.deepEqual(a.eventsOf('px/a', e1.client), ['join', 'leave']);
        assert.deepEqual(
          a.events.find((e) => e.kind === 'leave'),
          { topic: 'px/a', kind: 'leave', entry: view(e1) },
        );
        assert.deepEqual(await a.presence('px/a'), [view(e2)], 'the long-lived entry stays');
        assert.deepEqual(a.eventsOf('px/a', e2.client), ['join']);
      });

      it('a refreshed entry stays while an unrefreshed one added with it expires', needs('presence'), async (t) => {
        const a = await session(t, factory).node();
        const ttl = 300;
        await a.broker.presenceAdd('pk/a', e1, ttl);
        await a.broker.presenceAdd('pk/a', e2, ttl);
        // Refresh e1 on every poll until e2 (same ttl, never refreshed) has expired.
        await waitFor(
          'e2 to expire',
          async () => {
            await a.broker.presenceAdd('pk/a', e1, ttl);
            return a.eventsOf('pk/a', e2.client).includes('leave');
          },
          10_000,
        );
        await a.broker.presenceAdd('pk/a', e1, ttl);
        assert.deepEqual(await a.presence('pk/a'), [view(e1)], 'the refreshed entry is listed, the other is not');
        assert.deepEqual(a.eventsOf('pk/a', e1.client), ['join'], 'refreshed: one join, no leave');
        assert.deepEqual(a.eventsOf('pk/a', e2.client), ['join', 'leave']);
      });

      it('[peer] entries added on one node are listed on the other; events reach both', multi('presence'), async (t) => {
        const nodes = await pair(t, session(t, factory));
        if (nodes === null) return;
        const [a, b] = nodes;
        await a.broker.presenceAdd('pp/a', e1, TTL);
        await b.broker.presenceAdd('pp/a', e3, TTL);
        const both = [e1, e3].map(view).sort(byClient);
        for (const node of [a, b]) await waitFor('both entries listed on each node', async () => (await node.presence('pp/a')).length === 2);
        assert.deepEqual(await a.presence('pp/a'), both);
        assert.deepEqual(await b.presence('pp/a'), both);
        for (const [node, label] of [
          [a, 'node A'],
          [b, 'node B'],
        ] as const) {
          await waitFor(`${label}: both joins`, () => node.eventsOf('pp/a', e1.client).length === 1 && node.eventsOf('pp/a', e3.client).length === 1);
        }
        await a.broker.presenceRemove('pp/a', e1.client);
        for (const [node, label] of [
          [a, 'node A'],
          [b, 'node B'],
        ] as const) {
          await waitFor(`${label}: leave of e1`, () => node.eventsOf('pp/a', e1.client).length === 2);
          assert.deepEqual(node.eventsOf('pp/a', e1.client), ['join', 'leave'], label);
          assert.deepEqual(
            node.events.find((e) => e.kind === 'leave'),
            { topic: 'pp/a', kind: 'leave', entry: view(e1) },
            label,
          );
        }
        assert.deepEqual(await b.presence('pp/a'), [view(e3)]);
      });

      it("[peer] a closed node's entries expire with a leave event on the other node", multi('presence'), async (t) => {
        const s = session(t, factory);
        const nodes = await pair(t, s);
        if (nodes === null) return;
        const [a, b] = nodes;
        await a.broker.presenceAdd('pv/a', e1, 300);
        await waitFor('node B sees the join', () => b.eventsOf('pv/a', e1.client).length === 1);
        await s.close(a); // node A vanishes without removing e1 (or removes it while closing)
        await waitFor('node B sees the leave', () => b.eventsOf('pv/a', e1.client).includes('leave'), 10_000);
        assert.deepEqual(b.eventsOf('pv/a', e1.client), ['join', 'leave']);
        assert.deepEqual(await b.presence('pv/a'), []);
      });
    });

    describe('close', () => {
      it('after close() nothing more is delivered', async (t) => {
        const s = session(t, factory);
        const a = await s.node();
        await a.broker.subscribe('cl/a');
        await a.publish('cl/a', payload('cl', 1));
        await waitFor('cl/a #1', () => a.got('cl/a', 1));
        await s.close(a);
        const before = a.deliveries.length;
        const events = a.events.length;
        await attempt(() => a.broker.publish('cl/a', payload('cl', 2), { exclude: 0, history: null, retain: false }));
        if (f.presence) await attempt(() => a.broker.presenceAdd('cl/a', someone(1), 60_000));
        for (let i = 0; i < 50; i++) await turn(); // no fence exists on a closed broker
        assert.equal(a.deliveries.length, before, 'no delivery after close()');
        assert.equal(a.events.length, events, 'no presence event after close()');
      });

      it('[peer] after close() a node receives nothing its peer publishes', multi(), async (t) => {
        const s = session(t, factory);
        const nodes = await pair(t, s);
        if (nodes === null) return;
        const [a, b] = nodes;
        await a.broker.subscribe('cp/#');
        await b.broker.subscribe('cp/#');
        await b.publish('cp/a', payload('cp', 1));
        await waitFor('node A: cp/a #1', () => a.got('cp/a', 1));
        await s.close(a);
        const before = a.deliveries.length;
        for (let i = 2; i <= 5; i++) await b.publish('cp/a', payload('cp', i));
        // Node B got them: node A, had it still listened, would have got them about as soon.
        await waitFor('node B: cp/a #5', () => b.got('cp/a', 5));
        for (let i = 0; i < 50; i++) await turn();
        assert.equal(a.deliveries.length, before, 'a closed node delivers nothing');
      });
    });
  });
}

/** A presence entry for client `i` (used where the details do not matter). */
function someone(i: number): PresenceEntry {
  return { client: `c:${i}`, user: null, info: null };
}
