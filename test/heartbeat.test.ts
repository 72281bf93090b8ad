import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Heartbeat, type Beating } from '../src/heartbeat/heartbeat.js';
import { CloseCode } from '../src/index.js';
import { connect, startGateway } from './helpers.js';
import { internals } from '../src/gateway.js';

test('Heartbeat unit: pings silent peers, spares active ones, kills the unresponsive', () => {
  let t = 0;
  const a: Beating = { lastActivity: 0, pingAt: 0 }; // answers
  const b: Beating = { lastActivity: 0, pingAt: 0 }; // silent
  const c: Beating = { lastActivity: 0, pingAt: 0 }; // busy: always active
  const pinged: Beating[] = [];
  const dead: Beating[] = [];
  const hb = new Heartbeat([a, b, c], { interval: 100, timeout: 50, now: () => t, ping: (x) => pinged.push(x), dead: (x) => dead.push(x) });
  assert.equal(hb.tickMs, 12);
  const step = (ms: number) => {
    t += ms;
    hb.tick();
    c.lastActivity = hb.now;
  };
  step(50);
  assert.equal(pinged.length, 0);
  step(50); // t=100: a and b silent for 100 ms
  assert.deepEqual(pinged, [a, b]);
  a.lastActivity = hb.now; // pong arrives before the next tick, stamped with the coarse clock
  step(25);
  assert.equal(a.pingAt, 0, 'pong cleared the outstanding ping');
  assert.deepEqual(dead, []);
  step(25); // t=150: b's ping is 50 ms old
  assert.deepEqual(dead, [b]);
  assert.equal(hb.terminations, 1);
  assert.ok(!pinged.includes(c), 'connections with recent traffic are never pinged');
});

test('a client that stops answering pings is terminated and counted', async (t) => {
  const s = await startGateway(t, { heartbeat: { interval: 60, timeout: 60 } });
  const healthy = await connect(t, s.url);
  const mute = await connect(t, s.url, 'wiregate.v1', { autoPong: false });
  const closed = await mute.closed;
  assert.equal(closed.code, 1006, 'terminated without a close frame');
  assert.equal(internals(s.gw).stats.heartbeatTerminations, 1);
  assert.ok(internals(s.gw).stats.heartbeatPings >= 2);
  // the healthy client (ws answers pings automatically) is still served
  await healthy.subscribe('hb/t');
  await s.gw.publish('hb/t', 1);
  assert.deepEqual(await healthy.delivery(), [18, 'hb/t', 1, 1]);
  const metrics = await (await fetch(`${s.http}/metrics`)).text();
  assert.match(metrics, /wiregate_heartbeat_terminations_total 1/);
  await healthy.close();
  await s.gw.close();
  assert.notEqual(closed.code, CloseCode.NORMAL);
});

test('heartbeat.interval = 0 disables pings', async (t) => {
  const s = await startGateway(t, { heartbeat: { interval: 0, timeout: 10 } });
  const c = await connect(t, s.url, 'wiregate.v1', { autoPong: false });
  assert.deepEqual(await c.call(5), [20, 1]);
  assert.equal(internals(s.gw).stats.heartbeatPings, 0);
  await c.close();
  await s.gw.close();
});
