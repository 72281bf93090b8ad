// Cluster: what fan-out costs when gateway nodes share a broker. Three configurations in one run:
//   memory  one node (memory broker), the baseline;
//   redis   two nodes (separate processes) on one redis-server started here;
//   nats    two nodes on one nats-server -js started here.
// N subscribers (default 1,000) per node on one topic; every publisher connects to node A only, so
// all of node B's deliveries cross the broker. Two phases per configuration:
//   saturated  loadgen.mjs's fan-out publisher (8 publishes in flight, the next on each ack, 64 B)
//              on node A: deliveries/s per node, gateway CPU per delivery;
//   half load  publishes at a fixed rate, half the memory node's saturated publish rate (the same
//              offered load for every configuration): publish -> deliver latency per node, from the
//              send time the publisher writes into each payload (one clock: loopback).
// In both, over the measured window: CPU from /proc/<pid>/stat for every process (each gateway,
// the broker with all its threads, the load generators), each gateway's write system calls from
// /proc/<pid>/io (deliveries per write: how much the end-of-tick writer could coalesce, which is
// most of a delivery's cost), and Redis's own per-command accounting (INFO commandstats) for the
// publish script. Every subscriber must receive every acknowledged publish exactly once; how long
// the last deliveries took to land after the publisher stopped is reported (a node that falls
// behind shows a backlog there).
//
// Layout on a 2-core machine: gateway A alone on core 1 (as every other scenario's server); node B
// on core 0; load generators and the broker unpinned (memory: the load generators on core 0, as in
// the fan-out scenario). Two nodes, the broker and 2N subscribers cannot each have a core here, so
// besides deliveries/s the report compares deliveries per gateway CPU-second: what one node with a
// core of its own would do.
//
// Runs only when named (`npm run bench -- cluster`; not in `all` or `quick`): it needs redis-server
// and nats-server installed. --seconds S sets each measured window (default 10, --quick 3; about
// 100 s in all at the default), --subscribers N the subscribers per node, --targets memory,redis,nats
// the configurations (memory always runs: every ratio and the half-load rate come from it).
// BENCH_WIREGATE_DIST=/path/to/dist runs that build of wiregate instead of this checkout's dist/.
import { fork, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { startLoad, startServer, writeReport, mdTable, fmt, progress, benchDir } from '../lib/harness.mjs';
import { startRedis, startNats } from '../lib/brokers.mjs';
import { cpuWindow } from '../lib/procstat.mjs';

const CONFIGS = ['memory', 'redis', 'nats'];
const TOPIC = 'bench/cluster';
const SIZE = 64;
const INFLIGHT = 8; // as the fan-out scenario
const GOAL_FANOUT = 0.8; // cross-node deliveries/s per node >= 0.8x the memory node
const GOAL_P99 = 2; // cross-node p99 at half load <= 2x the memory node's

export async function cluster(opts) {
  const wanted = opts.targets ?? CONFIGS;
  const bad = wanted.find((t) => !CONFIGS.includes(t));
  if (bad !== undefined) throw new Error(`cluster: unknown configuration ${bad} (--targets ${CONFIGS.join(',')})`);
  // memory is the baseline every ratio and the half-load rate come from: always measured, first
  const names = CONFIGS.filter((c) => c === 'memory' || wanted.includes(c));
  const seconds = opts.seconds ?? (opts.duration ? opts.duration / 1000 : opts.quick ? 3 : 10);
  if (!(seconds > 0 && seconds <= 120)) throw new Error(`cluster: --seconds must be in (0, 120] (got ${seconds})`);
  const subscribers = opts.subscribers?.[0] ?? (opts.quick ? 200 : 1000);
  if (!(subscribers >= 1 && subscribers <= 15_000)) throw new Error(`cluster: --subscribers must be 1..15000 (one load-generator process per node)`);
  const spec = { subscribers, windowMs: seconds * 1000, warmup: opts.quick ? 500 : 1000 };
  progress(`cluster: ${names.join(', ')}; ${subscribers} subscribers per node on ${TOPIC}, ${SIZE} B, windows of ${seconds} s`);

  const results = [];
  const brokers = {};
  const shared = { halfRate: null };
  for (const name of names) {
    const r = await runConfig(name, spec, shared);
    if (r.broker) brokers[name] = r.broker;
    results.push(r);
  }

  // ratios to the memory node
  const base = results[0];
  const bSat = base.saturated.nodes[0];
  const bHalf = base.half.nodes[0];
  for (const r of results) {
    for (const n of r.saturated.nodes) {
      n.vsMemory = n.rate / bSat.rate;
      n.perCoreVsMemory = n.usPerDelivery && bSat.usPerDelivery ? bSat.usPerDelivery / n.usPerDelivery : null;
    }
    for (const n of r.half.nodes) n.p99VsMemory = n.latency.p99 !== null && bHalf.latency.p99 ? n.latency.p99 / bHalf.latency.p99 : null;
  }
  const goals = results
    .filter((r) => r.name !== 'memory')
    .map((r) => {
      const sat = r.saturated.nodes.find((n) => n.node === 'B');
      const half = r.half.nodes.find((n) => n.node === 'B');
      return {
        config: r.name,
        fanout: { ratio: sat.vsMemory, perCore: sat.perCoreVsMemory, goal: GOAL_FANOUT, met: sat.vsMemory >= GOAL_FANOUT, metPerCore: sat.perCoreVsMemory >= GOAL_FANOUT },
        p99: { ratio: half.p99VsMemory, goal: GOAL_P99, sustained: r.half.sustained, met: r.half.sustained && half.p99VsMemory !== null && half.p99VsMemory <= GOAL_P99 },
      };
    });

  const lost = results.some((r) => r.saturated.lost || r.half.lost);
  const pct = (v) => (v === null || v === undefined ? '-' : `${fmt(v * 100)}%`);
  const ms = (v) => fmt(v, 2);
  const nodeName = (r, n) => (r.name === 'memory' ? 'single' : n.node === 'A' ? 'A (publishers)' : 'B (cross-node)');
  const sustainedText = (h) => (h.sustained ? 'yes' : `NO: ${h.nodes.map((n) => `${n.node} ${fmt(n.publishesDelivered)}`).join(', ')} publishes/s delivered${h.skipped ? `; ${fmt((100 * h.skipped) / (h.skipped + h.publishedThisPhase), 1)}% of the slots skipped (2 s unanswered)` : ''}`);
  const lossText = (phase) => (phase.lost ? `LOST (per-subscriber ${phase.nodes.map((n) => `${n.node} ${n.minPer}..${n.maxPer}`).join(', ')} of ${phase.published})` : 'none');
  const md = [
    `## Cluster: fan-out across gateway nodes (${fmt(subscribers)} subscribers per node, one topic, ${SIZE} B, publishers on node A)`,
    '',
    `### Saturated: ${INFLIGHT} publishes in flight on node A (the fan-out scenario's publisher), ${seconds} s`,
    '',
    mdTable(
      ['config', 'node', 'deliveries/s', 'x memory', 'publishes/s', 'gateway CPU', 'µs CPU per delivery', 'x memory per CPU-s', 'deliveries per write call', 'broker CPU', 'load CPU', 'last delivery after the last ack', 'loss'],
      results.flatMap((r) =>
        r.saturated.nodes.map((n, i) => [
          r.name,
          nodeName(r, n),
          fmt(n.rate),
          fmt(n.vsMemory, 2),
          fmt(n.publishesDelivered),
          pct(n.cpu),
          fmt(n.usPerDelivery, 2),
          fmt(n.perCoreVsMemory, 2),
          fmt(n.deliveriesPerWrite, 2),
          i === 0 ? pct(r.saturated.brokerCpu) : '(same)',
          i === 0 ? pct(r.saturated.loadCpu) : '(same)',
          `${fmt(n.drainMs)} ms`,
          i === 0 ? lossText(r.saturated) : '',
        ]),
      ),
    ),
    '',
    `### Half load: ${fmt(shared.halfRate)} publishes/s on node A (half the memory node's saturated rate), ${seconds} s`,
    '',
    mdTable(
      ['config', 'node', 'deliveries/s', 'p50 ms', 'p99 ms', 'p999 ms', 'x memory p99', 'gateway CPU', 'broker CPU', 'load CPU', 'publish→ack p50 / p99 ms', 'rate sustained', 'loss'],
      results.flatMap((r) =>
        r.half.nodes.map((n, i) => [
          r.name,
          nodeName(r, n),
          fmt(n.rate),
          ms(n.latency.p50),
          ms(n.latency.p99),
          ms(n.latency.p999),
          fmt(n.p99VsMemory, 2),
          pct(n.cpu),
          i === 0 ? pct(r.half.brokerCpu) : '(same)',
          i === 0 ? pct(r.half.loadCpu) : '(same)',
          i === 0 ? `${ms(r.half.ack.p50)} / ${ms(r.half.ack.p99)}` : '',
          i === 0 ? sustainedText(r.half) : '',
          i === 0 ? lossText(r.half) : '',
        ]),
      ),
    ),
    '',
    ...goals.map(
      (g) =>
        `- ${g.config}: cross-node fan-out (node B) ${fmt(g.fanout.ratio, 2)}x the memory node in deliveries/s, ${fmt(g.fanout.perCore, 2)}x per gateway CPU-second (goal >= ${GOAL_FANOUT}x: ${g.fanout.met ? 'met' : 'missed'}; per CPU-second ${g.fanout.metPerCore ? 'met' : 'missed'}); cross-node p99 at half load ${fmt(g.p99.ratio, 2)}x the memory node's (goal <= ${GOAL_P99}x: ${g.p99.met ? 'met' : 'missed'}${g.p99.sustained ? '' : ', the offered rate was not sustained'})`,
    ),
    ...results.filter((r) => r.broker).map((r) => `- ${r.broker.name} CPU per publish: ${fmt(r.saturated.brokerUsPerPublish)} µs saturated, ${fmt(r.half.brokerUsPerPublish)} µs at half load${brokerDetail(r)}`),
    '',
    `Brokers: ${Object.entries(brokers).map(([k, b]) => `${k} ${b.name} ${b.version}`).join(', ') || 'none'} (started by the scenario on 127.0.0.1, no persistence). ` +
      'Gateway A alone on core 1, node B on core 0, broker and load generators unpinned (memory: load generators on core 0). ' +
      'CPU is % of one core over the measured window (/proc/<pid>/stat), broker CPU counts all its threads; "x memory per CPU-s" compares deliveries per second of the gateway\'s own CPU (what a node with a core of its own would do); write calls are the gateway\'s write system calls (/proc/<pid>/io), to subscribers and broker. ' +
      `Latency is from the publisher's send to the subscriber's receipt, every delivery of the node's ${fmt(subscribers)} subscribers. Command: \`${process.env.BENCH_WIREGATE_DIST ? `BENCH_WIREGATE_DIST=${process.env.BENCH_WIREGATE_DIST} ` : ''}${opts.command}\``,
  ].join('\n');
  writeReport('cluster', { scenario: 'cluster', machine: opts.machine, command: opts.command, dist: process.env.BENCH_WIREGATE_DIST ?? 'dist/', quick: opts.quick, seconds, subscribers, topic: TOPIC, size: SIZE, inflight: INFLIGHT, halfRate: shared.halfRate, cores: cpus().length, configs: results, goals }, md, null);
  return lost ? `${md}\n\nLOST deliveries: see the loss column.` : md;
}

/** Redis's own accounting of the publish script, where there is one. */
function brokerDetail(r) {
  const e = r.saturated.redis?.evalsha;
  const p = r.saturated.redis?.publish;
  if (!e) return r.name === 'nats' ? ' (per message: a JetStream KV update with expected revision, then the core publish)' : '';
  const inner = r.saturated.redis.inner;
  return `; by Redis's own accounting (saturated) the publish script took ${fmt(e.usPerCall, 1)} µs per call${inner ? `, of which ${fmt(inner.usPerScriptCall, 1)} µs in the commands it calls` : ''}${p ? ` (the PUBLISH to the nodes ${fmt(p.usPerCall, 1)} µs)` : ''}`;
}

/**
 * One configuration: its broker (if any), its gateway node(s), one subscriber load generator per
 * node, then the saturated phase and the half-load phase at shared.halfRate, which the first
 * configuration (memory) sets from its saturated phase: half its delivered publishes/s.
 */
async function runConfig(name, { subscribers, windowMs, warmup }, shared) {
  const stops = [];
  try {
    let broker = null;
    if (name !== 'memory') {
      progress(`cluster ${name}: starting ${name === 'redis' ? 'redis-server' : 'nats-server -js'}`);
      broker = name === 'redis' ? await startRedis() : await startNats();
      stops.push(() => broker.stop());
    }
    const serverOpts = { heartbeat: { interval: 0, timeout: 1000 }, broker: broker?.url ?? 'memory', brokerPrefix: `wgbench${randomBytes(3).toString('hex')}:`, dist: process.env.BENCH_WIREGATE_DIST };
    const nodes = [];
    for (const [label, core] of broker ? [['A', 1], ['B', 0]] : [['A', 1]]) {
      const s = await startServer('wiregate-cluster', serverOpts, core);
      stops.push(() => s.stop());
      nodes.push({ label, server: s });
    }
    const subs = [];
    for (const n of nodes) {
      const lg = await startLoad(0);
      stops.push(() => lg.stop());
      if (broker) unpin(lg.child.pid);
      await within(60_000, lg.run('subscribe', { url: n.server.url, kind: 'wiregate', conns: subscribers, topic: TOPIC }), `${name}: subscribing on node ${n.label}`);
      // no latency samples until the half-load window (loadgen.mjs's latency record is never reset)
      await lg.call({ cmd: 'record', on: false, reset: true, size: SIZE });
      subs.push(lg);
    }
    const pids = { broker: broker?.pid, ...Object.fromEntries(nodes.map((n) => [n.label, n.server.child.pid])), ...Object.fromEntries(subs.map((s, i) => [`subs${i}`, s.child.pid])) };
    let published = 0; // publishes sent so far, all phases
    let acked = 0; // ... and acknowledged
    // one phase's figures. Loss: a subscriber short of an acknowledged publish, or with more than
    // were sent (a repeat), or subscribers that disagree, once the deliveries have landed.
    const phase = (m, drain, pubResult, extra) => {
      const nodesOut = nodes.map((n, i) => {
        const st = m.stats[i];
        const cpu = m.win.cpu[n.label];
        const writes = m.win.writes[n.label];
        return {
          node: n.label,
          pid: n.server.child.pid,
          deliveries: st.received,
          rate: st.received / m.win.secs,
          publishesDelivered: st.received / subscribers / m.win.secs,
          cpu,
          usPerDelivery: cpu !== null && st.received > 0 ? (cpu * m.win.secs * 1e6) / st.received : null,
          // write system calls of the gateway (to subscribers, and to the broker), per delivery
          writes,
          deliveriesPerWrite: writes ? st.received / writes : null,
          latency: st.latency,
          drainMs: drain.ms[i],
          minPer: drain.stats[i].minPerConn,
          maxPer: drain.stats[i].maxPerConn,
        };
      });
      const loadKeys = Object.keys(m.win.cpu).filter((k) => k.startsWith('subs') || k === 'pub');
      return {
        secs: m.win.secs,
        published,
        acked,
        publishedThisPhase: pubResult.published,
        ackedThisPhase: pubResult.acked,
        nodes: nodesOut,
        brokerCpu: broker ? m.win.cpu.broker : null,
        // broker CPU per message published on node A (delivered there in the window)
        brokerUsPerPublish: broker && m.win.cpu.broker !== null && nodesOut[0].deliveries > 0 ? (m.win.cpu.broker * 1e6) / nodesOut[0].publishesDelivered : null,
        redis: m.redis,
        loadCpu: loadKeys.reduce((a, k) => a + (m.win.cpu[k] ?? 0), 0),
        cpu: m.win.cpu,
        pids,
        lost: nodesOut.some((n) => n.minPer < acked || n.maxPer > published || n.minPer !== n.maxPer),
        ...extra,
      };
    };

    // --- saturated ---
    progress(`cluster ${name}: saturated, ${INFLIGHT} publishes in flight on node A, ${windowMs / 1000} s`);
    const pub = await startLoad(0);
    stops.push(() => pub.stop());
    if (broker) unpin(pub.child.pid);
    const satRun = pub.run('publish', { url: nodes[0].server.url, kind: 'wiregate', inflight: INFLIGHT, size: SIZE, warmup: 0, duration: warmup + windowMs + 300, topic: TOPIC });
    const sat = await measureWindow(subs, { ...pids, pub: pub.child.pid }, warmup, windowMs, false, broker?.commandStats);
    const satPub = await within(30_000, satRun, `${name}: saturated publisher`);
    published += satPub.published;
    acked += satPub.acked;
    const satOut = phase(sat, await drained(subs, published, 30_000), satPub, { publishesPerSec: satPub.measured / satPub.elapsed });
    await pub.stop();

    // --- half load ---
    shared.halfRate ??= Math.max(1, Math.round(satOut.nodes[0].publishesDelivered / 2));
    const rate = shared.halfRate;
    progress(`cluster ${name}: half load, ${fmt(rate)} publishes/s on node A, ${windowMs / 1000} s`);
    const pacer = await startPacer();
    stops.push(() => pacer.stop());
    if (broker) unpin(pacer.pid);
    // at most 2 s worth of publishes unanswered: beyond that the rate is not sustained anyway
    const halfRun = pacer.run({ url: nodes[0].server.url, topic: TOPIC, rate, size: SIZE, duration: warmup + windowMs + 300, maxUnacked: Math.max(200, rate * 2) });
    const half = await measureWindow(subs, { ...pids, pub: pacer.pid }, warmup, windowMs, true, broker?.commandStats);
    const halfPub = await within(30_000, halfRun, `${name}: paced publisher`);
    await Promise.all(subs.map((s) => s.call({ cmd: 'record', on: false, reset: false, size: SIZE })));
    published += halfPub.published;
    acked += halfPub.acked;
    const halfOut = phase(half, await drained(subs, published, 30_000), halfPub, { offered: rate, achieved: halfPub.rate, skipped: halfPub.skipped, ack: halfPub.ack, errors: halfPub.errors });
    // sustained: nothing skipped at the pacer, and every node delivered >= 90% of the offered load
    halfOut.sustained = halfPub.skipped === 0 && halfOut.nodes.every((n) => n.publishesDelivered >= 0.9 * rate);
    return { name, broker: broker && { name: name === 'redis' ? 'redis-server' : 'nats-server', version: broker.version }, layout: layout(broker !== null), saturated: satOut, half: halfOut };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  }
}

/**
 * Waits `warmup`, resets the subscribers' counters (recording latency or not), then measures
 * `windowMs`: deliveries per subscriber process and CPU of every pid in the window.
 */
async function measureWindow(subs, pids, warmup, windowMs, latency, commandStats) {
  await sleep(warmup);
  await Promise.all(subs.map((s) => s.call({ cmd: 'record', on: latency, reset: true, size: SIZE })));
  const cmd0 = await commandStats?.();
  const w = cpuWindow(Object.fromEntries(Object.entries(pids).filter(([, pid]) => pid !== undefined)));
  await sleep(windowMs);
  const stats = await Promise.all(subs.map((s) => s.call({ cmd: 'subStats' })));
  const win = w.since();
  const cmd1 = await commandStats?.();
  // Redis's own accounting over the window: microseconds per call of the publish script and of the
  // PUBLISH it makes (commands called from a script are counted too)
  const perCall = (name) => {
    const a = cmd0?.[name] ?? { calls: 0, usec: 0 };
    const b = cmd1?.[name];
    return b && b.calls > a.calls ? { calls: b.calls - a.calls, usPerCall: (b.usec - a.usec) / (b.calls - a.calls) } : null;
  };
  // everything but the script and INFO: mostly the script's inner calls (TIME, HGET, HINCRBY, ...)
  const inner = () => {
    const names = Object.keys(cmd1 ?? {}).filter((k) => k !== 'evalsha' && k !== 'eval' && k !== 'info');
    const usec = names.reduce((a, k) => a + cmd1[k].usec - (cmd0?.[k]?.usec ?? 0), 0);
    const e = perCall('evalsha');
    return e ? { usPerScriptCall: usec / e.calls } : null;
  };
  return { stats, win, redis: commandStats ? { evalsha: perCall('evalsha'), publish: perCall('publish'), inner: inner() } : null };
}

/** Polls until every subscriber of every node has `expected` deliveries (or `ms` pass). */
async function drained(subs, expected, ms) {
  const t0 = performance.now();
  const done = new Array(subs.length).fill(null);
  let stats = [];
  for (;;) {
    stats = await Promise.all(subs.map((s) => s.call({ cmd: 'subStats' })));
    const t = performance.now() - t0;
    stats.forEach((s, i) => {
      if (done[i] === null && s.minPerConn >= expected) done[i] = t;
    });
    if (done.every((d) => d !== null) || t > ms) break;
    await sleep(20);
  }
  return { ms: done, stats };
}

/** The pacer (bench/lib/pacer.mjs) in its own process, pinned like the load generators. */
async function startPacer() {
  const child = fork(join(benchDir, 'lib', 'pacer.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  await new Promise((resolve, reject) => {
    child.once('message', (m) => (m.type === 'ready' ? resolve() : reject(new Error(`pacer: ${JSON.stringify(m)}`))));
    child.once('exit', (code) => reject(new Error(`pacer exited with ${code} before it was ready`)));
  });
  pin(child.pid, '0');
  let nextId = 1;
  return {
    pid: child.pid,
    run(args) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const on = (m) => {
          if (m.id !== id) return;
          child.off('message', on);
          if (m.error) reject(new Error(m.error));
          else resolve(m.result);
        };
        child.on('message', on);
        child.send({ cmd: 'pace', id, args });
      });
    },
    async stop() {
      process.off('exit', kill);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.send({ cmd: 'exit' });
      const t = setTimeout(kill, 5000);
      await gone;
      clearTimeout(t);
    },
  };
}

function layout(cluster) {
  return cluster
    ? { A: 'core 1', B: 'core 0', broker: 'unpinned', loadGenerators: 'unpinned' }
    : { A: 'core 1', loadGenerators: 'core 0' };
}

/** Lets a process run on every core (harness.startLoad pins load generators to core 0). */
function unpin(pid) {
  pin(pid, `0-${cpus().length - 1}`);
}

function pin(pid, list) {
  try {
    execFileSync('taskset', ['-pc', list, String(pid)], { stdio: 'ignore' });
  } catch {
    // no taskset: nothing was pinned either
  }
}

function within(ms, promise, what) {
  let timer;
  return Promise.race([promise, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms)))]).finally(() => clearTimeout(timer));
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
