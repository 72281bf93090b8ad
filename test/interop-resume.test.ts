// A client written from docs/protocol.md alone resumes a subscription across a reconnect without
// loss or duplicates: test/interop/py_resume.py (Python `websockets` + `msgpack`, Debian's
// python3-websockets and python3-msgpack, no wiregate code) subscribes to a topic that keeps
// history, processes part of a numbered stream, disconnects, misses messages, reconnects with
// SUBSCRIBE `since` {seq, epoch} and reads on while the stream goes on. As in interop.test.ts the
// test is skipped when the Python packages are missing, except under CI=true, where it fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { cleanup, startGateway } from './helpers.js';
import { spawnAtEnd } from './proc.js';

const PYTHON = process.env.INTEROP_PYTHON ?? '/usr/bin/python3';
const PY_CLIENT = fileURLToPath(new URL('./interop/py_resume.py', import.meta.url));

const havePython = existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import websockets, msgpack']).status === 0;
const missing = havePython ? '' : `python3-websockets/python3-msgpack (${PYTHON})`;
if (missing && process.env.CI) throw new Error(`interop-resume test needs ${missing}; .ci/run installs them with apt-get`);

const TOPIC = 'stream/1';
/** The client disconnects once it has processed this seq... */
const FIRST = 50;
/** ...the stream has reached this seq before it reconnects (it misses at least MISSED - FIRST messages)... */
const MISSED = 250;
/** ...and it reads on to this seq, published while it resumes and after. */
const LAST = 600;

const turn = () => new Promise((resolve) => setImmediate(resolve));

test('a Python client written from docs/protocol.md resumes with since {seq, epoch}: every seq once, in order, recovered: true', { skip: missing ? `not installed: ${missing}` : false, timeout: 60_000 }, async (t) => {
  // maxRecover above everything the client can miss, so the outcome does not depend on how fast it reconnects
  const s = await startGateway(t, { history: { topics: ['stream/#=1000'], maxRecover: 1000 } });
  const { child: py, exited: pyExit, stderr } = spawnAtEnd(t, PYTHON, [PY_CLIENT, s.url, TOPIC, String(FIRST), String(LAST)], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = createInterface({ input: py.stdout! })[Symbol.asyncIterator]();
  const events: Array<Record<string, unknown>> = [];
  /** Reads the client's events up to and including the first that has `key`. */
  const until = async (key: string) => {
    for (;;) {
      const r = await lines.next();
      assert.ok(!r.done, `python client ended before "${key}": ${stderr()}\nevents: ${JSON.stringify(events.slice(-5))}`);
      const e = JSON.parse(r.value) as Record<string, unknown>;
      events.push(e);
      assert.ok(!('unexpected' in e), `python client got something unexpected: ${JSON.stringify(e)}`);
      if (key in e) return e[key];
    }
  };

  // a stream of numbered messages, a few per event-loop turn, so that deliveries interleave with
  // what the client does
  let published = 0;
  let stopped = false;
  cleanup(t, () => {
    stopped = true;
  });
  const publishTo = async (n: number) => {
    while (published < n && !stopped) {
      for (let i = 0; i < 3 && published < n; i++) await s.gw.publish(TOPIC, { n: ++published });
      await turn();
    }
  };

  const first = (await until('subscribed')) as { seq: number; epoch: string };
  assert.equal(first.seq, 0, 'subscribed before the first message');
  assert.equal(typeof first.epoch, 'string');
  // the client processes FIRST messages and goes away while the stream goes on
  const [disconnectedAt] = await Promise.all([until('disconnected'), publishTo(MISSED)]);
  assert.equal(disconnectedAt, FIRST);
  // the stream is at MISSED: the client missed FIRST + 1 .. MISSED, to be recovered
  py.stdin!.write('reconnect\n');
  // the rest is published while the client reconnects, recovers and reads on
  const [resumed] = await Promise.all([until('resumed'), publishTo(LAST)]);
  const done = (await until('done')) as { seq: number; duplicates: number };
  assert.equal(await pyExit, 0, stderr());

  assert.deepEqual(Object.keys(resumed as object).sort(), ['epoch', 'recovered', 'seq']);
  const r = resumed as { seq: number; epoch: string; recovered: boolean };
  assert.equal(r.recovered, true, `the resuming SUBSCRIBE recovered: ${JSON.stringify(r)}`);
  assert.equal(r.epoch, first.epoch, 'same gateway, same epoch');
  assert.ok(r.seq >= MISSED && r.seq <= LAST, `position at the resume: ${r.seq}`);
  assert.deepEqual(done, { seq: LAST, duplicates: 0 });

  // what the client received, in order, over both connections
  const msgs = events.filter((e) => 'msg' in e).map((e) => e.msg as [number, { n: number }, number]);
  const seqs = msgs.map((m) => m[0]);
  assert.deepEqual(seqs, Array.from({ length: LAST }, (_, i) => i + 1), 'every seq exactly once, in order');
  assert.ok(msgs.every(([seq, payload]) => payload.n === seq), 'each payload is the message published with that seq');
  // before the disconnect everything was live; after it, the missed messages came recovered (flags
  // 2, up to the position in the RESULT), then live ones; nothing retained
  const flags = msgs.map((m) => m[2]);
  assert.deepEqual(flags.slice(0, FIRST), new Array(FIRST).fill(0));
  assert.deepEqual(flags.slice(FIRST, r.seq), new Array(r.seq - FIRST).fill(2));
  assert.deepEqual(flags.slice(r.seq), new Array(LAST - r.seq).fill(0));
});
