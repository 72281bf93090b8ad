// Failure behaviour with a network broker (docs/delivery.md, "When the broker is lost"): the broker
// killed and restarted mid-stream, the broker stalled (SIGSTOP) and resumed, the broker started
// after the gateway. Each test runs its own redis-server / nats-server (test/servers.ts); without
// the binaries the file is skipped with the reason, except under CI=true, where it fails.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createGateway } from '../src/index.js';
import { connect, startGateway, type Client, type Started } from './helpers.js';
import { freePort, startNats, startRedis, type RunningServer } from './servers.js';

type Kind = 'redis' | 'nats';
const START: Record<Kind, (port?: number) => Promise<RunningServer>> = { redis: startRedis, nats: startNats };

async function available(kind: Kind): Promise<string | null> {
  try {
    await (await START[kind]()).stop();
    return null;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}
const missing = { redis: await available('redis'), nats: await available('nats') };

/** A broker server the test can kill and restart on the same port; the current one is stopped at the end. */
async function brokerServer(t: TestContext, kind: Kind) {
  const box = { srv: await START[kind]() };
  t.after(() => box.srv.stop());
  return {
    get port() {
      return box.srv.port;
    },
    get proc() {
      return box.srv.proc;
    },
    url: `${kind}://127.0.0.1:${box.srv.port}`,
    async kill() {
      const gone = new Promise((r) => box.srv.proc.once('exit', r));
      box.srv.proc.kill('SIGKILL');
      await gone;
    },
    async restart() {
      box.srv = await START[kind](box.srv.port);
    },
  };
}

/** Polls `cond` every 20 ms until it holds (bounded: fails after `ms`). */
async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function ready(g: Started): Promise<number> {
  return (await fetch(`${g.http}/readyz`)).status;
}

async function metric(g: Started, name: string): Promise<number> {
  const text = await (await fetch(`${g.http}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m === null ? NaN : Number(m[1]);
}

/** Publishes numbered acked messages every few ms until stopped; records which were acked / refused. */
function publisher(c: Client, topic: string) {
  const acked: number[] = [];
  const refused: number[] = [];
  const other: unknown[] = [];
  let stop = false;
  const done = (async () => {
    for (let n = 1; !stop; n++) {
      const r = await c.call(3, topic, n);
      if (r[0] === 16) acked.push(n);
      else if (r[0] === 17 && r[2] === 116) refused.push(n);
      else other.push(r);
      await new Promise((res) => setTimeout(res, 3)); // pacing of the load, not synchronisation
    }
  })();
  return {
    acked,
    refused,
    other,
    async stop() {
      stop = true;
      await done;
    },
  };
}

for (const kind of ['redis', 'nats'] as const) {
  const skip = missing[kind] !== null ? (process.env.CI === 'true' ? false : `cannot start ${kind}: ${missing[kind]}`) : false;

  describe(`${kind} broker lost while running`, { skip }, () => {
    test(`${kind}-server is available (CI=true needs it)`, () => {
      assert.equal(missing[kind], null, `cannot start ${kind}: ${missing[kind]}`);
    });

    test('killed and restarted mid-stream: acked messages delivered, 116 while down, connections kept, subscriptions restored, GAP', async (t) => {
      const b = await brokerServer(t, kind);
      const g = await startGateway(t, { broker: b.url, brokerTimeout: 1000 });
      const sub = await connect(t, g.url);
      const pub = await connect(t, g.url);
      assert.equal((await sub.call(1, 'stream/#'))[0], 16);
      const got: number[] = [];
      let gap: unknown[] | null = null;
      sub.ws.on('message', () => {
        for (let m = sub.messages.shift() as unknown[] | undefined; m !== undefined; m = sub.messages.shift() as unknown[] | undefined) {
          if (m[0] === 18) got.push(m[3] as number);
          else if (m[0] === 21) gap = m;
        }
      });
      assert.equal(await ready(g), 200);
      assert.equal(await metric(g, 'wiregate_broker_up'), 1);

      const p = publisher(pub, 'stream/1');
      await until('30 acked publishes', () => p.acked.length >= 30);
      await b.kill();
      await until('a publish refused with 116', () => p.refused.length >= 3);
      assert.equal(await ready(g), 503);
      assert.match(JSON.stringify(await (await fetch(`${g.http}/readyz`)).json()), /broker unavailable/);
      assert.equal(await metric(g, 'wiregate_broker_up'), 0);
      // local connections stay open and served; a new SUBSCRIBE is refused with 116, not hung
      assert.equal((await pub.call(5))[0], 20);
      const refusedSub = await sub.call(1, 'other/topic');
      assert.deepEqual([refusedSub[0], refusedSub[2]], [17, 116]);
      const ackedBefore = p.acked.length;

      await b.restart();
      await until('/readyz 200 again', async () => (await ready(g)) === 200);
      await until('the GAP after the outage', () => gap !== null);
      assert.deepEqual(gap, [21, 'stream/#', 0]);
      await until('30 more acked publishes', () => p.acked.length >= ackedBefore + 30);
      await p.stop();
      await until('every acked message delivered', () => p.acked.every((n) => got.includes(n))).catch((err) => {
        const lost = p.acked.filter((n) => !got.includes(n));
        throw new Error(`${err.message}: acked but not delivered ${JSON.stringify(lost)}; refused ${p.refused[0]}..${p.refused.at(-1)}; delivered ${got.length}`);
      });
      assert.deepEqual(p.other, [], 'only RESULT or 116');
      // in order, never twice
      for (let i = 1; i < got.length; i++) assert.ok(got[i] > got[i - 1], `order at ${i}: ${got[i - 1]} then ${got[i]}`);
      assert.equal(sub.ws.readyState, 1);
      assert.equal(pub.ws.readyState, 1);
      assert.ok((await metric(g, 'wiregate_broker_outages_total')) >= 1);
      assert.ok((await metric(g, 'wiregate_broker_gaps_total')) >= 1);
      // the 116 is not counted as a protocol error: the connection was never closed for it
      assert.equal((await sub.call(1, 'other/topic'))[0], 16);
    });

    test('a broker that stalls (SIGSTOP) is detected within brokerTimeout, and found again when it answers', async (t) => {
      const b = await brokerServer(t, kind);
      const g = await startGateway(t, { broker: b.url, brokerTimeout: 600 });
      const sub = await connect(t, g.url);
      assert.equal((await sub.call(1, 'st/a'))[0], 16);
      assert.deepEqual(await sub.call(3, 'st/a', 'before'), [16, 2, 1]);
      await sub.delivery('st/a');
      b.proc.kill('SIGSTOP');
      t.after(() => void b.proc.kill('SIGCONT'));
      await until('/readyz 503', async () => (await ready(g)) === 503);
      const info = (await (await fetch(`${g.http}/info`)).json()) as { brokerUp: boolean; brokerDown?: { reason: string } };
      assert.equal(info.brokerUp, false);
      assert.match(info.brokerDown!.reason, /stalled|ping failed|timed out/i);
      const r = await sub.call(3, 'st/a', 'while stalled');
      assert.deepEqual([r[0], r[2]], [17, 116]);
      b.proc.kill('SIGCONT');
      await until('/readyz 200', async () => (await ready(g)) === 200);
      assert.deepEqual(await sub.next((m) => m[0] === 21), [21, 'st/a', 0]);
      const again = await sub.call(3, 'st/a', 'after');
      assert.equal(again[0], 16);
      assert.deepEqual((await sub.delivery('st/a')).slice(3), ['after']);
    });

    test('brokerStartTimeout: the gateway waits for a broker that comes up after it', async (t) => {
      const port = await freePort();
      const gw = createGateway({ log: { level: 'silent' }, host: '127.0.0.1', port: 0, broker: `${kind}://127.0.0.1:${port}`, brokerStartTimeout: 30_000 });
      t.after(() => gw.close({ drainTimeout: 0 }));
      let listening = false;
      const started = gw.listen().then((a) => ((listening = true), a));
      // the first attempt has failed once a retry is scheduled; nothing listens meanwhile
      assert.equal(listening, false);
      const srv = await START[kind](port);
      t.after(() => srv.stop());
      const { port: gwPort } = await started;
      assert.equal((await fetch(`http://127.0.0.1:${gwPort}/readyz`)).status, 200);
    });
  });
}
