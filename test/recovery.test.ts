// History, recovery, retained messages and presence through the gateway (issue 11), on real sockets.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createGateway, ErrorCode, MemoryBroker, type Broker } from '../src/index.js';
import { connect, startGateway } from './helpers.js';

type Msg = [number, string, number, unknown, number?];
const isDelivery = (m: unknown): m is Msg => Array.isArray(m) && m[0] === 18;
const turn = () => new Promise((r) => setImmediate(r));

describe('recovery', () => {
  test('a client that reconnects with its last {seq, epoch} sees every message exactly once, in order, while publishing goes on', async (t) => {
    const s = await startGateway(t, { history: { topics: ['rooms/#=1000'] } });
    const N = 600;
    let published = 0;
    let stop = false;
    // a publisher that keeps publishing, a few messages per event-loop turn, until N
    const publishing = (async () => {
      while (published < N && !stop) {
        for (let i = 0; i < 3 && published < N; i++) void s.gw.publish('rooms/1', { n: ++published });
        await turn();
      }
    })();
    t.after(() => {
      stop = true;
    });
    const seen: number[] = [];
    const a = await connect(t, s.url);
    const first = (await a.call(1, 'rooms/1', { since: { seq: 0, epoch: 'x' } })) as [number, number, { seq: number; epoch: string; recovered: boolean }];
    assert.equal(first[0], 16);
    const epoch = first[2].epoch;
    // recovery from a foreign epoch is refused: the client starts from the current position
    assert.equal(first[2].recovered, false);
    let last = first[2].seq;
    // read a while, then drop the connection abruptly
    while (seen.length < 100) {
      const d = await a.delivery('rooms/1');
      seen.push(d[2]);
      last = d[2];
    }
    a.ws.terminate();
    await a.closed;
    for (let reconnects = 0; reconnects < 3; reconnects++) {
      while (published < last + 80 && published < N) await turn(); // messages are missed meanwhile
      const b = await connect(t, s.url);
      const r = (await b.call(1, 'rooms/1', { since: { seq: last, epoch } })) as [number, number, { seq: number; epoch: string; recovered: boolean }];
      assert.deepEqual([r[0], r[2].recovered, r[2].epoch], [16, true, epoch], JSON.stringify(r));
      const target = reconnects === 2 ? N : Math.min(N, last + 150);
      while (last < target) {
        const d = await b.delivery('rooms/1');
        seen.push(d[2]);
        last = d[2];
      }
      b.ws.terminate();
      await b.closed;
    }
    await publishing;
    const expected = Array.from({ length: N - first[2].seq }, (_, i) => first[2].seq + 1 + i);
    assert.deepEqual(seen, expected, 'every seq exactly once, in order');
  });

  test('recovery is refused when the window no longer holds everything, with the current position; then live messages follow it', async (t) => {
    const s = await startGateway(t, { history: { topics: ['t/#=10'] } });
    for (let i = 0; i < 30; i++) await s.gw.publish('t/x', i);
    const c = await connect(t, s.url);
    const pos = (await c.call(7, 't/x')) as [number, number, { seq: number; epoch: string }];
    const r = (await c.call(1, 't/x', { since: { seq: 5, epoch: pos[2].epoch } })) as [number, number, Record<string, unknown>];
    assert.deepEqual(r[2], { seq: 30, epoch: pos[2].epoch, recovered: false });
    await s.gw.publish('t/x', 'next');
    assert.deepEqual(await c.delivery('t/x'), [18, 't/x', 31, 'next']);
    assert.equal(c.messages.filter(isDelivery).length, 0, 'nothing from history was sent');
  });

  test('more missed messages than history.maxRecover: recovered false', async (t) => {
    const s = await startGateway(t, { history: { topics: ['t/#=1000'], maxRecover: 20 } });
    for (let i = 0; i < 50; i++) await s.gw.publish('t/x', i);
    const c = await connect(t, s.url);
    const epoch = ((await c.call(7, 't/x', { limit: 0 })) as [number, number, { epoch: string }])[2].epoch;
    assert.equal(((await c.call(1, 't/x', { since: { seq: 10, epoch } })) as [number, number, { recovered: boolean }])[2].recovered, false);
    const d = await connect(t, s.url);
    assert.equal(((await d.call(1, 't/x', { since: { seq: 35, epoch } })) as [number, number, { recovered: boolean }])[2].recovered, true);
    const seqs: number[] = [];
    for (let i = 0; i < 15; i++) seqs.push((await d.delivery('t/x'))[2]);
    assert.deepEqual(seqs, Array.from({ length: 15 }, (_, i) => 36 + i));
  });

  test('after a gateway restart the epoch differs: recovered false', async (t) => {
    const a = await startGateway(t, { history: { topics: ['t/#=100'] } });
    await a.gw.publish('t/x', 1);
    const c1 = await connect(t, a.url);
    const old = ((await c1.call(7, 't/x')) as [number, number, { seq: number; epoch: string }])[2];
    const b = await startGateway(t, { history: { topics: ['t/#=100'] } }); // a new process would be the same: a new memory broker
    await b.gw.publish('t/x', 1);
    const c2 = await connect(t, b.url);
    const r = (await c2.call(1, 't/x', { since: { seq: old.seq, epoch: old.epoch } })) as [number, number, { recovered: boolean; epoch: string }];
    assert.equal(r[2].recovered, false);
    assert.notEqual(r[2].epoch, old.epoch);
  });

  test('HISTORY: since, limit, reverse, and the position', async (t) => {
    const s = await startGateway(t, { history: { topics: ['h/#=5'] } });
    for (let i = 1; i <= 8; i++) await s.gw.publish('h/1', `m${i}`);
    const c = await connect(t, s.url);
    const all = (await c.call(7, 'h/1')) as [number, number, { seq: number; complete: boolean; more: boolean; messages: Array<[number, number, string]> }];
    assert.deepEqual(all[2].messages.map((m) => [m[0], m[2]]), [[4, 'm4'], [5, 'm5'], [6, 'm6'], [7, 'm7'], [8, 'm8']]);
    assert.equal(all[2].seq, 8);
    const rev = (await c.call(7, 'h/1', { limit: 2, reverse: true })) as typeof all;
    assert.deepEqual(rev[2].messages.map((m) => m[0]), [8, 7]);
    assert.equal(rev[2].more, true);
    const epoch = (all[2] as unknown as { epoch: string }).epoch;
    const since = (await c.call(7, 'h/1', { since: { seq: 6, epoch } })) as typeof all;
    assert.deepEqual([since[2].complete, since[2].messages.map((m) => m[0])], [true, [7, 8]]);
    const gone = (await c.call(7, 'h/1', { since: { seq: 1, epoch } })) as typeof all;
    assert.deepEqual([gone[2].complete, gone[2].messages.length], [false, 0]);
  });
});

describe('recovery with a broker that answers history later (buffer and merge)', () => {
  for (const when of ['read now, answered later', 'read later'] as const) {
    test(`live messages published while history is read are merged: no gap, no duplicate (${when})`, async (t) => {
      const broker = new MemoryBroker();
      const history = broker.history.bind(broker);
      const slow: Broker = broker;
      // an asynchronous broker: the page is taken now and handed over a few turns later, or taken then
      slow.history = (topic, q) =>
        new Promise((resolve) => {
          const page = when === 'read now, answered later' ? history(topic, q) : null;
          let n = 0;
          const wait = () => (++n < 5 ? setImmediate(wait) : resolve(page ?? history(topic, q)));
          setImmediate(wait);
        });
      const s = await startGateway(t, { broker: slow, history: { topics: ['m/#=1000'] } });
      for (let i = 1; i <= 20; i++) await s.gw.publish('m/1', i);
      const epoch = broker.epoch;
      const c = await connect(t, s.url);
      const answer = c.call(1, 'm/1', { since: { seq: 5, epoch } });
      for (let i = 21; i <= 40; i++) {
        void s.gw.publish('m/1', i); // while the history read is in flight
        await turn();
      }
      const r = (await answer) as [number, number, { recovered: boolean }];
      assert.equal(r[2].recovered, true);
      const seqs: number[] = [];
      while (seqs.length < 35) seqs.push((await c.delivery('m/1'))[2]);
      assert.deepEqual(seqs, Array.from({ length: 35 }, (_, i) => i + 6));
      await s.gw.publish('m/1', 41);
      assert.equal((await c.delivery('m/1'))[2], 41);
      assert.equal(c.messages.filter(isDelivery).length, 0, 'no duplicate left over');
    });
  }
});

describe('retained messages', () => {
  test('a new subscriber gets the retained value of every matching topic (+ and #) before live messages, marked retained', async (t) => {
    const s = await startGateway(t, { history: { maxRecover: 5000 } });
    const pub = await connect(t, s.url);
    for (let i = 0; i < 1000; i++) pub.send([3, 0, `dev/${i}/state`, { i }, { retain: true }]);
    pub.send([3, 0, 'dev/7/other', 'x', { retain: true }], [3, 0, 'elsewhere/1', 'y', { retain: true }], [3, 0, 'dev/8/state', 'not retained']);
    assert.equal((await pub.call(5))[0], 20); // everything above was processed
    const plus = await connect(t, s.url);
    assert.deepEqual(await plus.call(1, 'dev/+/state'), [16, 1]);
    await plus.call(5);
    const got = plus.messages.filter(isDelivery);
    assert.equal(got.length, 1000);
    assert.ok(got.every((m) => m[4] === 1 && /^dev\/\d+\/state$/.test(m[1])));
    assert.deepEqual(got.find((m) => m[1] === 'dev/8/state')?.[3], { i: 8 }, 'a later non-retained publish does not replace the retained value');
    const hash = await connect(t, s.url);
    await hash.call(1, 'dev/#');
    await hash.call(5);
    assert.equal(hash.messages.filter(isDelivery).length, 1001);
    // an empty (nil) retained publish clears; retained: false skips them
    await pub.call(3, 'dev/7/other', null, { retain: true });
    const again = await connect(t, s.url);
    await again.call(1, 'dev/7/#');
    await again.call(5);
    assert.deepEqual(again.messages.filter(isDelivery).map((m) => m[1]), ['dev/7/state']);
    const none = await connect(t, s.url);
    await none.call(1, 'dev/#', { retained: false });
    await none.call(5);
    assert.equal(none.messages.filter(isDelivery).length, 0);
    // live messages follow
    await s.gw.publish('dev/1/state', 'live');
    assert.deepEqual(await plus.next((m) => isDelivery(m) && m[1] === 'dev/1/state' && m[2] === 2), [18, 'dev/1/state', 2, 'live']);
  });
});

describe('presence', () => {
  test('PRESENCE lists who is subscribed; join and leave events reach subscribers that ask for them', async (t) => {
    const s = await startGateway(t, { presence: { topics: ['room/#'] } });
    const watcher = await connect(t, s.url);
    assert.equal((await watcher.call(1, 'room/1', { presence: true }))[0], 16);
    const other = await connect(t, s.url);
    await other.call(1, 'room/1');
    const join = await watcher.next<[number, string, number, { client: string }]>((m) => Array.isArray(m) && m[0] === 22);
    assert.deepEqual([join[1], join[2]], ['room/1', 1]);
    const list = (await watcher.call(8, 'room/1')) as [number, number, Array<{ client: string }>];
    assert.equal(list[2].length, 2);
    other.ws.terminate();
    const leave = await watcher.next<[number, string, number, { client: string }]>((m) => Array.isArray(m) && m[0] === 22);
    assert.deepEqual([leave[2], leave[3].client], [2, join[3].client]);
    assert.equal(((await watcher.call(8, 'room/1')) as [number, number, unknown[]])[2].length, 1);
  });
});

describe('bad input to the new options and requests', () => {
  test('each gets its documented error and the connection stays usable', async (t) => {
    const s = await startGateway(t, { history: { topics: ['h/#=10'], maxRecover: 100 }, presence: { topics: ['p/#'] }, limits: { maxProtocolErrors: 100 } });
    const c = await connect(t, s.url);
    const cases: Array<[unknown[], number]> = [
      [[1, 'h/1', { since: 5 }], ErrorCode.BAD_REQUEST],
      [[1, 'h/1', { since: { seq: -1, epoch: 'e' } }], ErrorCode.BAD_REQUEST],
      [[1, 'h/1', { since: { seq: 1, epoch: 'e'.repeat(65) } }], ErrorCode.BAD_REQUEST],
      [[1, 'h/+', { since: { seq: 1, epoch: 'e' } }], ErrorCode.BAD_REQUEST],
      [[1, 'h/1', { retained: 'yes' }], ErrorCode.BAD_REQUEST],
      [[1, 'p/+', { presence: true }], ErrorCode.BAD_REQUEST],
      [[1, 'h/2', { presence: true }], ErrorCode.NOT_ENABLED],
      [[7, 'other/1'], ErrorCode.NOT_ENABLED],
      [[7, 'h/1', { limit: 101 }], ErrorCode.BAD_REQUEST],
      [[7, 'h/1', { limit: -1 }], ErrorCode.BAD_REQUEST],
      [[7, 'h/1', { since: { seq: 1, epoch: 'e' }, reverse: true }], ErrorCode.BAD_REQUEST],
      [[7, 'h/+'], ErrorCode.INVALID_TOPIC],
      [[8, 'h/1'], ErrorCode.NOT_ENABLED],
      [[3, 'h/1', 1, { retain: 1 }], ErrorCode.BAD_REQUEST],
    ];
    for (const [msg, code] of cases) {
      const [type, ...rest] = msg as [number, ...unknown[]];
      const r = await c.call(type, ...rest);
      assert.deepEqual([r[0], r[2]], [17, code], JSON.stringify(msg));
    }
    // since ahead of the topic: refused, and not subscribed
    await s.gw.publish('h/1', 'a');
    const epoch = ((await c.call(7, 'h/1')) as [number, number, { epoch: string }])[2].epoch;
    const ahead = await c.call(1, 'h/1', { since: { seq: 9, epoch } });
    assert.deepEqual([ahead[0], ahead[2]], [17, ErrorCode.BAD_REQUEST]);
    const hist = await c.call(7, 'h/1', { since: { seq: 9, epoch } });
    assert.deepEqual([hist[0], hist[2]], [17, ErrorCode.BAD_REQUEST]);
    await s.gw.publish('h/1', 'b');
    assert.deepEqual(await c.call(5), [20, c.id() - 1]);
    assert.equal(c.messages.filter(isDelivery).length, 0, 'the refused subscription delivers nothing');
  });
});

describe('a broker without a feature the configuration needs', () => {
  test('listen() rejects naming the option', async (t) => {
    const broker = new MemoryBroker();
    const limited: Broker = Object.assign(Object.create(broker) as Broker, { features: { history: false, retained: true, presence: false } });
    const gw = createGateway({ log: { level: 'silent' }, host: '127.0.0.1', port: 0, broker: limited, history: { topics: ['a/#=10'] } });
    t.after(() => gw.close({ drainTimeout: 0 }));
    await assert.rejects(gw.listen(), /history\.topics.*keeps no history/);
  });
});

describe('review of the recovery answers', () => {
  test('HISTORY and PRESENCE go through the authorizeSubscribe hook like SUBSCRIBE', async (t) => {
    const s = await startGateway(t, { history: { topics: ['h/#=10'] }, presence: { topics: ['h/#'] } });
    s.gw.hook('authorizeSubscribe', (_c, pattern) => !pattern.startsWith('h/secret'));
    await s.gw.publish('h/secret', 'x');
    const c = await connect(t, s.url);
    for (const msg of [[1, 'h/secret'], [7, 'h/secret'], [8, 'h/secret']] as const) {
      const r = await c.call(msg[0], msg[1]);
      assert.deepEqual([r[0], r[2]], [17, ErrorCode.FORBIDDEN], JSON.stringify(msg));
    }
    assert.equal((await c.call(7, 'h/open'))[0], 16);
  });

  test('retained: false is honoured on a history topic too; since on a topic already subscribed is refused', async (t) => {
    const s = await startGateway(t, { history: { topics: ['h/#=10'] } });
    const c = await connect(t, s.url);
    await c.call(3, 'h/1', 'kept', { retain: true });
    const r = (await c.call(1, 'h/1', { retained: false })) as [number, number, { seq: number }];
    assert.equal(r[2].seq, 1);
    await c.call(5);
    assert.equal(c.messages.filter(isDelivery).length, 0);
    const again = await c.call(1, 'h/1', { since: { seq: 0, epoch: 'e' } });
    assert.deepEqual([again[0], again[2]], [17, ErrorCode.BAD_REQUEST]);
  });

  test('more live messages than a hold can keep while history is read: recovered false, never a silent gap', async (t) => {
    const broker = new MemoryBroker();
    const history = broker.history.bind(broker);
    let answer: (() => void) | null = null;
    const slow: Broker = broker;
    slow.history = (topic, q) => new Promise((resolve) => (answer = () => resolve(history(topic, q))));
    const s = await startGateway(t, { broker: slow, history: { topics: ['m/#=100000'], maxRecover: 20_000 }, outbound: { maxBufferedBytes: 64 * 1024 * 1024 } }); // the window and the cap hold everything: only the hold overflows
    await s.gw.publish('m/1', 0);
    const c = await connect(t, s.url);
    const reply = c.call(1, 'm/1', { since: { seq: 1, epoch: broker.epoch } });
    for (let i = 0; i < 10_000 && answer === null; i++) await turn(); // the history read has started
    assert.ok(answer !== null);
    for (let i = 1; i <= 10_005; i++) void s.gw.publish('m/1', i); // more than the hold keeps
    (answer as () => void)();
    const r = (await reply) as [number, number, { seq: number; recovered: boolean }];
    assert.deepEqual([r[2].recovered, r[2].seq], [false, 10_006]);
    await s.gw.publish('m/1', 'after');
    const next = await c.delivery('m/1');
    assert.deepEqual([next[2], next[3]], [10_007, 'after'], 'live messages follow the position; nothing held from before it');
  });
});
