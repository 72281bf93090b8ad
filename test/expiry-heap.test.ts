import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ExpiryHeap } from '../src/util/expiry-heap.js';

test('popDue visits exactly the due entries, earliest first, whatever the push order', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 1000 }), { maxLength: 200 }), fc.integer({ min: 0, max: 1000 }), (ats, now) => {
      const h = new ExpiryHeap<number>();
      ats.forEach((at, i) => h.push(at, i));
      const seen: number[] = [];
      h.popDue(now, (_item, at) => seen.push(at));
      assert.deepEqual(seen, ats.filter((a) => a <= now).sort((a, b) => a - b));
      assert.equal(h.size, ats.filter((a) => a > now).length);
      const rest: number[] = [];
      h.popDue(Infinity, (_i, at) => rest.push(at));
      assert.deepEqual(rest, ats.filter((a) => a > now).sort((a, b) => a - b));
    }),
    { seed: 7, numRuns: 300 },
  );
});

test('forget rebuilds once dead entries are half the heap, keeping order and only live items', () => {
  const h = new ExpiryHeap<{ id: number; live: boolean }>();
  const items = Array.from({ length: 100 }, (_, id) => ({ id, live: true }));
  items.forEach((it) => h.push(1000 - it.id, it));
  for (let i = 0; i < 50; i++) {
    items[i * 2].live = false;
    h.forget((x) => x.live);
  }
  assert.equal(h.size, 100, 'not yet: 50 dead of 100');
  items[1].live = false;
  h.forget((x) => x.live);
  assert.equal(h.size, 49);
  const order: number[] = [];
  h.popDue(Infinity, (x) => order.push(x.id));
  assert.deepEqual(order, items.filter((x) => x.live).map((x) => x.id).sort((a, b) => b - a));
});
