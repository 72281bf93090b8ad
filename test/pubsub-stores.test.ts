// HistoryStore and RetainedStore (src/pubsub/history.ts, src/pubsub/retained.ts): the memory
// broker's storage, tested on their own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HISTORY_ENTRY_OVERHEAD, HistoryStore } from '../src/pubsub/history.js';
import { RetainedStore } from '../src/pubsub/retained.js';
import type { HistoryPolicy, Publication, StreamPosition } from '../src/pubsub/broker.js';
import { topicMatches } from '../src/protocol/topic.js';

const E = 'ep1';
const pos = (seq: number, epoch = E): StreamPosition => ({ seq, epoch });
const pub = (seq: number, size = 10, time = 0): Publication => ({ seq, payload: new Uint8Array(size), time });
const seqs = (ps: Publication[]): number[] => ps.map((p) => p.seq);
const KEEP_ALL: HistoryPolicy = { limit: 1_000_000, ttl: 0 };
const BIG = 1 << 30;

/** Tiny deterministic generator (LCG), so a failing randomized case replays exactly. */
function lcg(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return Math.floor((s / 2 ** 32) * n);
  };
}

/** A store holding seqs 1..n of `topic`. */
function filled(n: number, topic = 't', policy = KEEP_ALL): HistoryStore {
  const h = new HistoryStore({ maxBytes: BIG });
  for (let s = 1; s <= n; s++) h.append(topic, pub(s), policy);
  return h;
}

// ---------------------------------------------------------------- history: limits and stats

test('history keeps at most policy.limit messages per topic, dropping the oldest (counted as expired)', () => {
  const h = filled(5, 't', { limit: 3, ttl: 0 });
  assert.deepEqual(seqs(h.read('t', pos(5), { limit: 10 }).publications), [3, 4, 5]);
  assert.deepEqual(h.stats, { bytes: 3 * (10 + HISTORY_ENTRY_OVERHEAD), messages: 3, topics: 1, evicted: 0, expired: 2 });
  // A later, smaller limit applies at the next append.
  h.append('t', pub(6), { limit: 1, ttl: 0 });
  assert.deepEqual(seqs(h.read('t', pos(6), { limit: 10 }).publications), [6]);
  assert.equal(h.stats.expired, 5);
});

test('history drops messages older than ttl, on append and on read, and forgets emptied topics', () => {
  let now = 0;
  const h = new HistoryStore({ maxBytes: BIG, now: () => now });
  const policy = { limit: 100, ttl: 1000 };
  for (const [seq, t] of [
    [1, 0],
    [2, 500],
    [3, 1000],
  ]) {
    now = t;
    h.append('t', pub(seq, 10, t), policy);
  }
  // Exactly ttl old is not older than ttl.
  assert.deepEqual(seqs(h.read('t', pos(3), { limit: 10 }).publications), [1, 2, 3]);
  now = 1001;
  h.append('t', pub(4, 10, now), policy);
  assert.deepEqual(seqs(h.read('t', pos(4), { limit: 10 }).publications), [2, 3, 4]);
  assert.equal(h.stats.expired, 1);
  // No append: the read itself applies the age limit.
  now = 2001;
  assert.deepEqual(seqs(h.read('t', pos(4), { limit: 10 }).publications), [4]);
  assert.equal(h.read('t', pos(4), { since: pos(3), limit: 10 }).complete, true);
  assert.equal(h.read('t', pos(4), { since: pos(2), limit: 10 }).complete, false, 'seq 3 expired');
  now = 5000;
  assert.deepEqual(h.read('t', pos(4), { limit: 10 }).publications, []);
  assert.deepEqual(h.stats, { bytes: 0, messages: 0, topics: 0, evicted: 0, expired: 4 });
  // ttl 0: no age limit.
  h.append('u', pub(1, 10, 0), { limit: 10, ttl: 0 });
  now = 1e12;
  assert.equal(h.read('u', pos(1), { limit: 10 }).publications.length, 1);
});

test('the global cap evicts the oldest messages across topics, in insertion order', () => {
  const size = 10 + HISTORY_ENTRY_OVERHEAD;
  const h = new HistoryStore({ maxBytes: 3 * size });
  h.append('a', pub(1), KEEP_ALL);
  h.append('b', pub(1), KEEP_ALL);
  h.append('a', pub(2), KEEP_ALL);
  assert.deepEqual(h.stats, { bytes: 3 * size, messages: 3, topics: 2, evicted: 0, expired: 0 });
  h.append('b', pub(2), KEEP_ALL); // evicts a#1
  assert.deepEqual(seqs(h.read('a', pos(2), { limit: 10 }).publications), [2]);
  assert.deepEqual(seqs(h.read('b', pos(2), { limit: 10 }).publications), [1, 2]);
  h.append('c', pub(1), KEEP_ALL); // evicts b#1
  assert.deepEqual(seqs(h.read('b', pos(2), { limit: 10 }).publications), [2]);
  h.append('c', pub(2, 10 + size), KEEP_ALL); // twice the size: evicts a#2 (forgetting a) and b#2
  assert.deepEqual(h.read('a', pos(2), { limit: 10 }).publications, []);
  assert.deepEqual(h.read('b', pos(2), { limit: 10 }).publications, []);
  assert.deepEqual(seqs(h.read('c', pos(2), { limit: 10 }).publications), [1, 2]);
  assert.deepEqual(h.stats, { bytes: 3 * size, messages: 2, topics: 1, evicted: 4, expired: 0 });
});

test('a message larger than the whole cap is not kept, takes its topic history with it, and spares other topics', () => {
  const size = 10 + HISTORY_ENTRY_OVERHEAD;
  const h = new HistoryStore({ maxBytes: 4 * size });
  h.append('a', pub(1), KEEP_ALL);
  h.append('b', pub(1), KEEP_ALL);
  h.append('b', pub(2), KEEP_ALL);
  h.append('b', pub(3, 5 * size), KEEP_ALL);
  assert.deepEqual(h.read('b', pos(3), { limit: 10 }).publications, []);
  assert.equal(h.read('b', pos(3), { since: pos(1), limit: 10 }).complete, false);
  assert.deepEqual(seqs(h.read('a', pos(1), { limit: 10 }).publications), [1]);
  assert.deepEqual(h.stats, { bytes: size, messages: 1, topics: 1, evicted: 3, expired: 0 });
});

// ---------------------------------------------------------------- history: reads

test('read without since: newest `limit`, ascending or newest first, more when older remain, limit 0', () => {
  const h = filled(5);
  const p = pos(5);
  const two = h.read('t', p, { limit: 2 });
  assert.deepEqual([seqs(two.publications), two.position, two.complete, two.more], [[4, 5], p, true, true]);
  assert.deepEqual(seqs(h.read('t', p, { limit: 2, reverse: true }).publications), [5, 4]);
  assert.deepEqual(seqs(h.read('t', p, { limit: 5, reverse: true }).publications), [5, 4, 3, 2, 1]);
  assert.equal(h.read('t', p, { limit: 5 }).more, false);
  assert.equal(h.read('t', p, { limit: 50 }).more, false);
  assert.deepEqual(h.read('t', p, { limit: 0 }), { publications: [], position: p, complete: true, more: true });
  assert.deepEqual(h.read('none', pos(0), { limit: 10 }), { publications: [], position: pos(0), complete: true, more: false });
});

test('read with since: every case of the HistoryQuery contract', () => {
  const h = filled(10, 't', { limit: 5, ttl: 0 }); // holds 6..10
  const p = pos(10);
  const read = (since: StreamPosition, limit = 100) => h.read('t', p, { since, limit });
  const no = { publications: [], position: p, complete: false, more: false };

  assert.deepEqual(seqs(read(pos(5)).publications), [6, 7, 8, 9, 10], 'from the oldest held');
  assert.deepEqual(seqs(read(pos(7)).publications), [8, 9, 10], 'inside the window');
  assert.equal(read(pos(7)).complete, true);
  assert.equal(read(pos(7)).more, false);
  assert.deepEqual(read(pos(4)), no, 'seq 5 is gone: all or nothing');
  assert.deepEqual(read(pos(0)), no);
  assert.deepEqual(read(pos(7, 'other')), no, 'foreign epoch');
  assert.deepEqual(read(pos(11)), no, 'a position from the future');
  assert.deepEqual(read(pos(10)), { publications: [], position: p, complete: true, more: false }, 'up to date');
  // limit / more
  const page = read(pos(5), 2);
  assert.deepEqual(seqs(page.publications), [6, 7]);
  assert.equal(page.complete, true);
  assert.equal(page.more, true);
  assert.equal(read(pos(5), 5).more, false);
  const zero = read(pos(7), 0);
  assert.deepEqual([zero.publications, zero.complete, zero.more], [[], true, true]);
  // reverse is ignored with since
  assert.deepEqual(seqs(h.read('t', p, { since: pos(8), limit: 10, reverse: true }).publications), [9, 10]);
  // since an older position with nothing stored for the topic
  assert.deepEqual(h.read('none', pos(3), { since: pos(1), limit: 10 }), { publications: [], position: pos(3), complete: false, more: false });
  assert.equal(h.read('none', pos(0), { since: pos(0), limit: 10 }).complete, true);
});

test('pages return the stored Publication objects (nothing copied)', () => {
  const h = new HistoryStore({ maxBytes: BIG });
  const p1 = pub(1);
  const p2 = pub(2);
  h.append('t', p1, KEEP_ALL);
  h.append('t', p2, KEEP_ALL);
  const page = h.read('t', pos(2), { limit: 10 });
  assert.equal(page.publications[0], p1);
  assert.equal(page.publications[1], p2);
  assert.equal(h.read('t', pos(2), { since: pos(1), limit: 10 }).publications[0], p2);
});

test('recovery is refused across a gap or when the newest message was not recorded', () => {
  const h = new HistoryStore({ maxBytes: BIG });
  for (const s of [1, 2, 4]) h.append('t', pub(s), KEEP_ALL); // seq 3 was published without history
  assert.equal(h.read('t', pos(4), { since: pos(1), limit: 10 }).complete, false, '2, 4: seq 3 missing');
  assert.equal(h.read('t', pos(4), { since: pos(2), limit: 10 }).complete, false, 'seq 3 itself is not held');
  assert.deepEqual(seqs(h.read('t', pos(4), { since: pos(3), limit: 10 }).publications), [4]);
  assert.equal(h.read('t', pos(5), { since: pos(3), limit: 10 }).complete, false, 'seq 5 not recorded');
});

test('history stays contiguous through evictions and compaction (randomized against a naive model)', () => {
  const rnd = lcg(42);
  const topics = ['a', 'b', 'c', 'd/e'];
  let evicted = 0;
  let expired = 0;
  for (let round = 0; round < 20; round++) {
    let now = 0;
    const maxBytes = (1 + rnd(40)) * (HISTORY_ENTRY_OVERHEAD + 8);
    const h = new HistoryStore({ maxBytes, now: () => now });
    // The model: one array in global order, trimmed the slow, obvious way.
    let model: { topic: string; pub: Publication }[] = [];
    const last = new Map<string, number>();
    const ttls = new Map<string, number>();
    const expire = (topic: string) => {
      const ttl = ttls.get(topic) ?? 0;
      if (ttl > 0) model = model.filter((m) => m.topic !== topic || now - m.pub.time <= ttl);
    };
    for (let op = 0; op < 400; op++) {
      now += rnd(30);
      const topic = topics[rnd(topics.length)];
      const seq = (last.get(topic) ?? 0) + 1;
      last.set(topic, seq);
      if (rnd(2) === 0) {
        const policy = { limit: 1 + rnd(60), ttl: rnd(3) === 0 ? 100 + rnd(500) : 0 };
        const p = pub(seq, rnd(16), now);
        h.append(topic, p, policy);
        ttls.set(topic, policy.ttl);
        if (p.payload.byteLength + HISTORY_ENTRY_OVERHEAD > maxBytes) model = model.filter((m) => m.topic !== topic);
        else {
          model.push({ topic, pub: p });
          const mine = model.filter((m) => m.topic === topic);
          const drop = new Set(mine.slice(0, Math.max(0, mine.length - policy.limit)));
          model = model.filter((m) => !drop.has(m));
          expire(topic);
          const cost = (m: { pub: Publication }) => m.pub.payload.byteLength + HISTORY_ENTRY_OVERHEAD;
          while (model.reduce((s, m) => s + cost(m), 0) > maxBytes) model.shift();
        }
      } else {
        // Keep the seqs contiguous so that recovery can succeed; the gap case is tested above.
        last.set(topic, seq - 1);
      }
      const t = topics[rnd(topics.length)];
      expire(t);
      const held = model.filter((m) => m.topic === t).map((m) => m.pub);
      const position = pos(last.get(t) ?? 0);
      assert.deepEqual(h.read(t, position, { limit: 1000 }).publications, held);
      const since = rnd(position.seq + 1);
      const page = h.read(t, position, { since: pos(since), limit: 1000 });
      const expected = since === position.seq ? [] : held[0]?.seq <= since + 1 ? held.filter((p) => p.seq > since) : null;
      if (expected === null) assert.deepEqual([page.complete, page.publications], [false, []]);
      else assert.deepEqual([page.complete, page.publications], [true, expected]);
      for (let i = 1; i < held.length; i++) assert.equal(held[i].seq, held[i - 1].seq + 1);
    }
    assert.equal(h.stats.messages, model.length);
    assert.equal(h.stats.bytes, model.reduce((s, m) => s + m.pub.payload.byteLength + HISTORY_ENTRY_OVERHEAD, 0));
    assert.ok(h.stats.bytes <= maxBytes);
    evicted += h.stats.evicted;
    expired += h.stats.expired;
  }
  assert.ok(evicted > 100 && expired > 100, `the corpus exercised both (evicted ${evicted}, expired ${expired})`);
});

test('long-running topics keep working across many compactions', () => {
  const h = new HistoryStore({ maxBytes: BIG });
  const policy = { limit: 100, ttl: 0 };
  for (let s = 1; s <= 100_000; s++) h.append('t', pub(s, 1), policy);
  assert.deepEqual(h.stats, { bytes: 100 * (1 + HISTORY_ENTRY_OVERHEAD), messages: 100, topics: 1, evicted: 0, expired: 99_900 });
  const page = h.read('t', pos(100_000), { since: pos(99_900), limit: 3 });
  assert.deepEqual([seqs(page.publications), page.complete, page.more], [[99_901, 99_902, 99_903], true, true]);
  assert.equal(h.read('t', pos(100_000), { since: pos(99_899), limit: 3 }).complete, false);
});

// ---------------------------------------------------------------- retained

const msg = (seq: number, size = 1) => ({ seq, epoch: E, payload: new Uint8Array(size) });
const CAPS = { maxTopics: 1_000_000, maxBytes: BIG };

test('retained: set, replace, get, clear, size and stats', () => {
  const r = new RetainedStore(CAPS);
  assert.equal(r.set('a/b', msg(1, 3)), true);
  assert.equal(r.set('a', msg(1, 2)), true);
  assert.deepEqual(r.get('a/b'), { topic: 'a/b', seq: 1, epoch: E, payload: new Uint8Array(3) });
  assert.equal(r.set('a/b', msg(2, 5)), true);
  assert.equal(r.get('a/b')?.seq, 2);
  assert.equal(r.size, 2);
  assert.deepEqual(r.stats, { topics: 2, bytes: 7, rejected: 0 });
  assert.equal(r.clear('a/b'), true);
  assert.equal(r.clear('a/b'), false);
  assert.equal(r.get('a/b'), undefined);
  assert.deepEqual(r.stats, { topics: 1, bytes: 2, rejected: 0 });
  assert.deepEqual(r.match('a/#', 10).map((m) => m.topic), ['a']);
  assert.equal(r.clear('a'), true);
  assert.deepEqual(r.stats, { topics: 0, bytes: 0, rejected: 0 });
  assert.deepEqual(r.match('#', 10), []);
});

test('retained: clearing prunes the branch so later lookups do not walk dead nodes', () => {
  const r = new RetainedStore(CAPS);
  r.set('x', msg(1));
  r.set('a/b/c', msg(1));
  r.match('#', 10); // builds the sorted child lists, which clear must keep up to date
  r.clear('a/b/c');
  assert.deepEqual(r.match('#', 10).map((m) => m.topic), ['x']);
  assert.equal(r.lastVisited, 2, 'root and x only');
  r.set('a/z', msg(2));
  assert.deepEqual(r.match('#', 10).map((m) => m.topic), ['a/z', 'x']);
});

test('retained: the topic cap and the byte cap refuse and count, a replacement is charged the difference', () => {
  const r = new RetainedStore({ maxTopics: 2, maxBytes: 10 });
  assert.equal(r.set('a', msg(1, 6)), true);
  assert.equal(r.set('b', msg(1, 5)), false, '11 bytes');
  assert.equal(r.set('a', msg(2, 9)), true, 'replacement: 9 bytes, not 15');
  assert.equal(r.set('b', msg(1, 1)), true);
  assert.deepEqual(r.stats, { topics: 2, bytes: 10, rejected: 1 });
  assert.equal(r.set('c', msg(1, 0)), false, 'third topic');
  assert.equal(r.set('a', msg(3, 10)), false, '11 bytes');
  assert.equal(r.get('a')?.seq, 2, 'a refused set keeps the previous value');
  assert.equal(r.set('a', msg(3, 1)), true, 'shrinking always fits');
  assert.equal(r.set('c', msg(1, 8)), false, 'still the third topic');
  r.clear('b');
  assert.equal(r.set('c', msg(1, 8)), true);
  assert.deepEqual(r.stats, { topics: 2, bytes: 9, rejected: 4 });
  assert.equal(r.get('b'), undefined);
});

test('retained: results are sorted by topic string (not level by level) and cut at limit', () => {
  const r = new RetainedStore(CAPS);
  // '-', ',' and '.' sort before '/', so 'a-b' comes between 'a' and 'a/x'.
  for (const t of ['a/x', 'a.c/q', 'a', 'a-b', 'b', 'a/x/y', 'a,z', 'a/w']) r.set(t, msg(1));
  const all = ['a', 'a,z', 'a-b', 'a.c/q', 'a/w', 'a/x', 'a/x/y', 'b'];
  assert.deepEqual(r.match('#', 100).map((m) => m.topic), all);
  for (let limit = 0; limit <= all.length; limit++) assert.deepEqual(r.match('#', limit).map((m) => m.topic), all.slice(0, limit));
  assert.deepEqual(r.match('+', 100).map((m) => m.topic), ['a', 'a,z', 'a-b', 'b']);
  assert.deepEqual(r.match('a/#', 100).map((m) => m.topic), ['a', 'a/w', 'a/x', 'a/x/y']);
  assert.deepEqual(r.match('+/+', 2).map((m) => m.topic), ['a.c/q', 'a/w']);
  assert.deepEqual(r.match('a/x', 100).map((m) => m.topic), ['a/x']);
  assert.deepEqual(r.match('a/+/#', 100).map((m) => m.topic), ['a/w', 'a/x', 'a/x/y']);
  assert.deepEqual(r.match('c/#', 100), []);
  assert.equal(r.match('a', 1)[0], r.get('a'), 'the stored object, not a copy');
});

test('retained: wildcard matching agrees with topicMatches on a randomized corpus', () => {
  const rnd = lcg(7);
  const levels = ['a', 'a-b', 'a.c', 'a,d', 'b', '0', 'x_y', 'a:z'];
  const topicOf = (depth: number) => Array.from({ length: depth }, () => levels[rnd(levels.length)]).join('/');
  for (let round = 0; round < 30; round++) {
    const r = new RetainedStore(CAPS);
    const held = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const t = topicOf(1 + rnd(4));
      if (rnd(5) === 0) {
        r.clear(t);
        held.delete(t);
      } else {
        r.set(t, msg(i));
        held.add(t);
      }
      if (i % 50 !== 49) continue;
      for (let q = 0; q < 40; q++) {
        const depth = 1 + rnd(4);
        const parts = Array.from({ length: depth }, () => (rnd(3) === 0 ? '+' : levels[rnd(levels.length)]));
        if (rnd(3) === 0) parts[depth - 1] = '#';
        const pattern = parts.join('/');
        const expected = [...held].filter((t) => topicMatches(pattern, t)).sort();
        const limit = rnd(4) === 0 ? 1 + rnd(5) : 10_000;
        const got = r.match(pattern, limit);
        assert.deepEqual(got.map((m) => m.topic), expected.slice(0, limit), `${pattern} limit ${limit}`);
        for (const m of got) assert.equal(m, r.get(m.topic));
      }
    }
    assert.equal(r.size, held.size);
  }
});

test('retained: a lookup visits what the pattern walks, never every retained topic', () => {
  const r = new RetainedStore(CAPS);
  for (let i = 0; i < 100_000; i++) r.set(`a/g${i % 100}/t${i}`, msg(i));
  r.set('b/x', msg(1));
  assert.equal(r.size, 100_001);

  assert.deepEqual(r.match('b/+', 10).map((m) => m.topic), ['b/x']);
  assert.ok(r.lastVisited <= 3, `b/+ visited ${r.lastVisited}`); // root, b, x
  r.match('b/#', 10);
  assert.ok(r.lastVisited <= 3, `b/# visited ${r.lastVisited}`);
  assert.deepEqual(r.match('+/x', 10).map((m) => m.topic), ['b/x']);
  assert.ok(r.lastVisited <= 4, `+/x visited ${r.lastVisited}`); // root, a, b, x
  r.match('a/g7/t1007', 10);
  assert.equal(r.lastVisited, 4);

  // A wide '#' bounded by limit stops once nothing below can sort before what it already has.
  const first = r.match('a/#', 10).map((m) => m.topic);
  const all = Array.from({ length: 100_000 }, (_, i) => `a/g${i % 100}/t${i}`).sort();
  assert.deepEqual(first, all.slice(0, 10));
  assert.ok(r.lastVisited <= 20, `a/# limit 10 visited ${r.lastVisited}`);
  // '+' in the middle costs the children it fans out to (100 groups), not the 100,000 topics.
  assert.deepEqual(r.match('a/+/t1007', 10).map((m) => m.topic), ['a/g7/t1007']);
  assert.ok(r.lastVisited <= 105, `a/+/t1007 visited ${r.lastVisited}`);
  // The sorted child lists stay right as topics come and go.
  r.set('a/g0/t', msg(1));
  r.clear('a/g0/t0');
  assert.deepEqual(r.match('a/#', 3).map((m) => m.topic), ['a/g0/t', 'a/g0/t100', 'a/g0/t1000']);
});
