// Recovery: a reconnect storm. N clients (quick: 100) each subscribe to their own exact topic
// rec/<i> on a gateway that keeps history for rec/#, remember {seq, epoch}, and all drop at once;
// 100 messages per topic are published while they are away; then every client reconnects at the
// same moment with SUBSCRIBE `since` and must recover exactly its 100 messages, then get one live
// message. For scale, the same storm with a plain SUBSCRIBE (nothing missed, no `since`) runs first
// on the same server, so the difference is what recovery itself costs.
//
// Why one topic per client: recovery needs an exact topic, and per-user / per-device topics are
// where a client most needs a gap-free stream. It is also the hard case for the server: no history
// read is shared between clients, the history holds clients x 100 messages, and each client's
// expected sequence is its own, so a message given to the wrong client shows.
import { readFileSync } from 'node:fs';
import { startLoad, startServer, measureServer, writeReport, mdTable, fmt, progress } from '../lib/harness.mjs';

const MISSED = 100; // messages each client misses while away
const WARM = 3; // messages each client receives live before going away (its last seq is then > 0)
const HISTORY_TOPICS = 'rec/#=1000';
const MiB = 2 ** 20;

export async function recovery(opts) {
  if (opts.targets && !opts.targets.includes('wiregate')) return 'recovery: skipped (wiregate-only scenario; wiregate is not in --targets)';
  const clients = opts.conns ?? (opts.quick ? 100 : 1000);
  // one load-generator process: its file-descriptor limit is 20k (see fanout's PER_PROCESS)
  if (!(clients >= 1 && clients <= 15_000)) throw new Error(`recovery: --conns must be 1..15000 (got ${opts.conns})`);
  const stormTimeout = 60_000;
  progress(`recovery: ${clients} clients, own topic each, ${MISSED} missed messages each, history.topics ${HISTORY_TOPICS}`);
  const server = await startServer('wiregate', { heartbeat: { interval: 0, timeout: 1000 }, history: { topics: [HISTORY_TOPICS] } }, 1);
  const load = await startLoad(0);
  const rows = [];
  const failures = [];
  try {
    const setup = await load.run('recoverySetup', { url: server.url, clients, topics: clients, warm: WARM });
    if (setup.failures || !setup.complete) {
      failures.push(`setup: ${setup.failures} failures (${setup.failedClients} clients)${setup.complete ? '' : ', incomplete'}`, ...setup.samples);
    } else {
      // first an unmeasured recovery of WARM messages each (as the setup's connections warmed up
      // the handshake and SUBSCRIBE paths, this warms up the recovery path), then the two storms
      const phases = [
        { since: true, missed: WARM, measured: false, label: `warm-up: since (${WARM} missed)` },
        { since: false, missed: 0, measured: true, label: 'plain (nothing missed)' },
        { since: true, missed: MISSED, measured: true, label: `since (${MISSED} missed)` },
      ];
      for (const { since, missed, measured, label } of phases) {
        await load.run('recoveryDisconnect');
        let published = 0;
        if (missed) published = (await load.run('recoveryPublish', { perTopic: missed })).published;
        await sleep(300); // the server has seen every close
        await server.gc();
        const before = await server.stats();
        const overflows0 = listenOverflows();
        progress(`recovery: ${clients} clients reconnect at once, SUBSCRIBE ${label}`);
        // peak RSS: the server's own stats every 10 ms while the storm runs (answered between its
        // event-loop turns), and the kernel's high-water mark if the storm raised it
        const samples = [];
        let sampling = true;
        const sampler = (async () => {
          while (sampling) {
            samples.push((await server.stats()).rss);
            await sleep(10);
          }
        })();
        let m;
        try {
          m = await measureServer(server, () => load.run('recoveryStorm', { url: server.url, since, timeoutMs: stormTimeout }));
        } finally {
          sampling = false;
          await sampler;
        }
        const after = await server.stats();
        const overflows1 = listenOverflows();
        const storm = m.result;
        const live = await load.run('recoveryLive', { timeoutMs: 30_000, graceMs: 300 });
        const hwm = after.maxRss > before.maxRss ? after.maxRss : null;
        const row = {
          since,
          label,
          clients,
          missed,
          published,
          complete: storm.complete && live.complete,
          connectMs: storm.connectMs,
          slowConnects: storm.slowConnects,
          listenOverflows: overflows0 === null || overflows1 === null ? null : overflows1 - overflows0,
          firstResultMs: storm.firstResultMs,
          resultsMs: storm.resultsMs,
          doneMs: storm.doneMs,
          perClient: storm.perClient,
          afterHandshake: storm.afterHandshake,
          recoveredMessages: storm.recoveredMessages,
          liveMs: live.liveMs,
          serverCpu: m.serverCpu,
          serverCpuMs: m.serverCpuMs,
          rssBefore: before.rss,
          rssPeak: hwm ?? Math.max(...samples, after.rss),
          rssPeakFrom: hwm ? 'high-water mark' : `sampled (${samples.length} samples)`,
          rssSampledPeak: Math.max(...samples, after.rss),
          rssSamples: samples.length,
          rssAfter: after.rss,
          loadCpu: storm.loadCpu,
          failures: live.failures,
          failedClients: live.failedClients,
        };
        if (measured) rows.push(row);
        if (live.failures || !row.complete) {
          failures.push(`${label}: ${live.failures} failures in ${live.failedClients} of ${clients} clients${row.complete ? '' : `, incomplete (storm ${storm.complete ? 'complete' : `timed out after ${stormTimeout} ms`}, live ${live.complete ? 'complete' : 'timed out'})`}`, ...live.samples);
          break;
        }
      }
    }
  } finally {
    await load.stop();
    await server.stop();
  }
  const plain = rows.find((r) => !r.since);
  const rec = rows.find((r) => r.since);
  const extraUs = plain && rec ? ((rec.serverCpuMs - plain.serverCpuMs) * 1000) / (clients * MISSED) : null;
  const check = (r) => (r.failures || !r.complete ? `FAILED (${r.failedClients} clients)` : r.since ? `ok: ${fmt(r.recoveredMessages)} recovered in order, then live` : 'ok: positions unchanged, then live');
  const md = [
    `## Recovery: reconnect storm, ${fmt(clients)} clients on their own topic each, ${MISSED} missed messages each`,
    '',
    mdTable(
      ['SUBSCRIBE', 'clients', 'all connected ms', 'handshakes >= 1 s (listen overflows)', 'all RESULTs ms', 'all recovered ms', 'per client after its handshake p50 / p99 / max ms', 'then live, all ms', 'server CPU', 'server RSS before -> peak', 'load CPU', 'check'],
      rows.map((r) => [
        r.label,
        fmt(r.clients),
        fmt(r.connectMs, 1),
        `${fmt(r.slowConnects)} (${r.listenOverflows === null ? '?' : fmt(r.listenOverflows)})`,
        fmt(r.resultsMs, 1),
        r.since ? fmt(r.doneMs, 1) : '-',
        `${fmt(r.afterHandshake.p50, 1)} / ${fmt(r.afterHandshake.p99, 1)} / ${fmt(r.afterHandshake.max, 1)}`,
        fmt(r.liveMs, 1),
        `${fmt(r.serverCpuMs)} ms (${fmt(r.serverCpu * 100)}%)`,
        `${fmt(r.rssBefore / MiB, 1)} -> ${fmt(r.rssPeak / MiB, 1)} MiB`,
        `${fmt(r.loadCpu * 100)}%${r.loadCpu > 0.9 ? ' (saturated)' : ''}`,
        check(r),
      ]),
    ),
    '',
    ...(rec && !rec.failures
      ? [
          `Every client recovered its ${MISSED} messages within ${fmt(rec.doneMs, 1)} ms of the first reconnect (${fmt((clients * MISSED) / (rec.doneMs / 1000))} recovered messages/s); the plain storm took ${fmt(plain.resultsMs, 1)} ms to answer every SUBSCRIBE. Server CPU beyond the plain storm: ${fmt(extraUs, 2)} µs per recovered message; peak RSS ${fmt((rec.rssPeak - rec.rssBefore) / MiB, 1)} MiB above the idle server (${rec.rssPeakFrom}).`,
          '',
          ...(rows.some((r) => r.slowConnects > 0)
            ? [
                `Connections arriving together overflowed the gateway's listen queue (Node's default backlog, 511): the kernel dropped those SYNs and the clients' kernels resent them after 1 s, so "all connected" and "all recovered" include that retry; the per-client times after the handshake do not. Listen overflows are the kernel's counter (/proc/net/netstat, whole machine) over the storm.`,
                '',
              ]
            : []),
        ]
      : []),
    `Times run from the first connect of the storm (all clients connect in the same event-loop turn, each sends its SUBSCRIBE as soon as its handshake completes). "All recovered": the RESULT {recovered: true} and all ${MISSED} recovered messages reached every client. "Then live": one more message published to every topic after the storm, until every client has it. Every message is checked: RESULT first with the expected {seq, epoch}, then exactly seqs last+1..last+${MISSED} flagged recovered with the payload published for that topic and seq, then the live one unflagged, nothing else. history.topics \`${HISTORY_TOPICS}\`, history.maxRecover at its default. One load-generator process on core 0, the server alone on core 1. Command: \`${opts.command}\``,
  ].join('\n');
  writeReport('recovery', { scenario: 'recovery', machine: opts.machine, command: opts.command, quick: opts.quick, clients, missed: MISSED, historyTopics: HISTORY_TOPICS, rows, extraCpuUsPerRecovered: extraUs, failures }, md);
  if (failures.length) throw new Error(`recovery FAILED:\n  ${failures.join('\n  ')}\n${md}`);
  return md;
}

/** The kernel's TcpExt ListenOverflows counter (whole machine), or null where it cannot be read. */
function listenOverflows() {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
    const i = lines[0].split(/\s+/).indexOf('ListenOverflows');
    return i > 0 ? Number(lines[1].split(/\s+/)[i]) : null;
  } catch {
    return null;
  }
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
