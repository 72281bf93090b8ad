// permessage-deflate tuning: a matrix of settings x payload corpora, measured on echo through
// wiregate (REQUEST [4,id,'echo',payload] -> RESULT) with the ws client library negotiating
// compression. Reports bytes on the wire per message, ratio, server CPU per message, throughput
// and memory per connection, then recommends a setting per corpus. The raw ws server with
// permessage-deflate (same zlib settings) is measured on the same load as the baseline.
import { startLoad, startServer, measureServer, writeReport, mdTable, fmt, progress, barChart } from '../lib/harness.mjs';

import { corpora } from '../lib/corpora.mjs';

const SETTINGS = [
  { name: 'off', compression: { preset: 'off' } },
  { name: 'fast', compression: { preset: 'fast' } },
  { name: 'balanced', compression: { preset: 'balanced' } },
  { name: 'max', compression: { preset: 'max' } },
  { name: 'lowmem', compression: { preset: 'lowmem' } },
  { name: 'level6', compression: { preset: 'fast', level: 6 } },
  { name: 'fast+threshold1024', compression: { preset: 'fast', threshold: 1024 } },
  { name: 'fast+memLevel9+window15', compression: { preset: 'fast', memLevel: 9 } },
  { name: 'fast+window10', compression: { preset: 'fast', serverMaxWindowBits: 10, clientMaxWindowBits: 10 } },
];
const QUICK = ['off', 'fast', 'max'];

// resolve presets for the raw ws baseline (which has no presets)
const PRESET_VALUES = {
  fast: { enabled: true, level: 1, memLevel: 8, threshold: 256, serverNoContextTakeover: true, clientNoContextTakeover: true },
};
// Two raw ws baselines: ws with the same zlib settings as the `fast` preset, and ws as most people
// run it (`perMessageDeflate: true`: context takeover both ways, zlib's default level, 1 KiB threshold).
const WS_BASELINES = [
  { kind: 'ws', name: 'ws+deflate(fast)', compression: PRESET_VALUES.fast },
  { kind: 'ws', name: 'ws+deflate(defaults)', compression: { wsDefaults: true } },
];

export async function compression(opts) {
  const pick = opts.settings ?? (opts.quick ? QUICK : null);
  const sets = pick ? SETTINGS.filter((s) => pick.includes(s.name)) : SETTINGS;
  const baselines = WS_BASELINES.filter((b) => !opts.settings || opts.settings.includes(b.name) || opts.settings.includes('ws'));
  const cs = corpora(opts.payloadFile);
  const usedCorpora = opts.quick ? cs.filter((c) => c.name !== 'game-state' || opts.payloadFile) : cs;
  const conns = opts.quick ? 10 : 50;
  const inflight = 4;
  const duration = opts.duration ?? (opts.quick ? 1500 : 4000);
  const rows = [];
  for (const corpus of usedCorpora) {
    const targets = [...sets.map((s) => ({ kind: 'wiregate', ...s })), ...baselines];
    for (const t of targets) {
      progress(`compression ${corpus.name}: ${t.kind} ${t.name}`);
      const server = await startServer(t.kind, { heartbeat: { interval: 0, timeout: 1000 }, compression: t.compression }, 1);
      const load = await startLoad(0);
      try {
        await server.gc();
        const base = await server.stats();
        const m = await measureServer(server, () => load.run('compressEcho', { url: server.url, conns, corpus: corpus.name, payloadFile: opts.payloadFile, inflight, duration, warmup: 300, deflate: t.name !== 'off' }));
        const r = m.result;
        await server.gc();
        const after = await server.stats();
        rows.push({
          corpus: corpus.name,
          kind: t.kind,
          setting: t.name,
          negotiated: r.negotiated || 'none',
          rate: r.rate,
          wireBytes: r.wireBytesPerMsg,
          payloadBytes: r.payloadBytesPerMsg,
          ratio: r.payloadBytesPerMsg && r.wireBytesPerMsg ? r.payloadBytesPerMsg / r.wireBytesPerMsg : null,
          cpuUsPerMsg: r.rate ? (m.serverCpu * 1e6) / r.rate : null,
          serverCpu: m.serverCpu,
          memPerConn: (after.rss - base.rss) / conns,
          loadCpu: r.loadCpu,
        });
      } finally {
        await load.stop();
        await server.stop();
      }
    }
  }
  // Two picks per corpus: the cheapest setting that still compresses (CPU-bound servers) and the
  // setting with the fewest bytes on the wire (bandwidth-bound links: cellular IoT, metered data).
  const recommendations = {};
  for (const corpus of usedCorpora) {
    const cand = rows.filter((r) => r.corpus === corpus.name && r.kind === 'wiregate');
    const off = cand.find((r) => r.setting === 'off');
    const comp = cand.filter((r) => r.setting !== 'off' && r.ratio && off && off.wireBytes / r.wireBytes >= 1.15);
    if (!off || comp.length === 0) {
      recommendations[corpus.name] = { setting: 'off', why: 'no setting saves 15% of the bytes on this corpus; compression would only cost CPU' };
      continue;
    }
    const cheapest = Math.min(...comp.map((r) => r.cpuUsPerMsg));
    const cpuPick = comp.filter((r) => r.cpuUsPerMsg <= cheapest * 1.1).sort((a, b) => a.wireBytes - b.wireBytes)[0];
    const bytePick = [...comp].sort((a, b) => a.wireBytes - b.wireBytes)[0];
    const say = (r) => `\`${r.setting}\`: ${fmt(off.wireBytes / r.wireBytes, 1)}x fewer bytes for ${fmt(r.cpuUsPerMsg, 1)} µs of server CPU per message (off: ${fmt(off.cpuUsPerMsg, 1)} µs), ${fmt(r.memPerConn / 1024, 0)} KiB RSS per busy connection`;
    recommendations[corpus.name] = {
      setting: cpuPick.setting,
      bytesSetting: bytePick.setting,
      why: bytePick === cpuPick ? say(cpuPick) : `CPU-bound: ${say(cpuPick)}; bandwidth-bound: ${say(bytePick)}`,
    };
  }
  const capacity = await capacityRuns(opts, usedCorpora);
  const md = [
    `## Compression: settings x corpora (echo, ${conns} connections x ${inflight} in flight)`,
    '',
    mdTable(
      ['corpus', 'server', 'setting', 'msgs/s', 'payload B/msg', 'wire B/msg', 'ratio', 'server µs/msg', 'server RSS/conn'],
      rows.map((r) => [r.corpus, r.kind, r.setting, fmt(r.rate), fmt(r.payloadBytes), fmt(r.wireBytes), fmt(r.ratio, 2), fmt(r.cpuUsPerMsg, 1), `${fmt(r.memPerConn / 1024, 1)} KiB`]),
    ),
    '',
    '### Recommended',
    '',
    ...Object.entries(recommendations).map(([c, r]) => `- **${c}**: ${r.why}`),
    '',
    `Payload and wire bytes count both directions of the echo (request and reply). Server µs/msg is server CPU per echoed message (inflate + decode + encode + deflate). The load here is the \`ws\` client library, which compresses like a real client (context takeover where negotiated) but through async zlib: msgs/s in this table is bounded by the load generator, not the server. Server capacity is the next table.`,
    '',
    `### Compressed echo at server capacity (${capacity.corpus}, ${capacity.conns} connections x ${capacity.inflight} in flight, median of ${capacity.repeat})`,
    '',
    'Raw-socket load: every request is a pre-built compressed frame (deflated once, without context), replies are counted, never inflated, so the server is the bottleneck.',
    '',
    mdTable(
      ['server', 'setting', 'msgs/s (median)', 'runs', 'x ws+deflate(fast)', 'x ws+deflate(defaults)', 'request wire B', 'reply wire B', 'server µs/msg', 'server CPU', 'load CPU'],
      capacity.rows.map((r) => [r.kind, r.setting, fmt(r.rate), r.runs.map((x) => `${fmt(x / 1000, 1)}k`).join(' '), fmt(r.rate / capacity.base.fast, 2), fmt(r.rate / capacity.base.defaults, 2), fmt(r.requestWire), fmt(r.replyWire), fmt(r.cpuUsPerMsg, 1), `${fmt(r.serverCpu * 100)}%`, `${fmt(r.loadCpu * 100)}%${r.loadCpu > 0.9 ? ' (saturated)' : ''}`]),
    ),
    '',
    `Command: \`${opts.command}\``,
  ].join('\n');
  const svg = barChart('wire bytes per message (lower is better)', rows.map((r) => ({ label: `${r.corpus} ${r.setting}`, value: r.wireBytes ?? 0, color: r.kind === 'ws' ? '#3b7dd8' : '#d8643b' })), 'B');
  writeReport('compression', { scenario: 'compression', machine: opts.machine, command: opts.command, quick: opts.quick, rows, recommendations, capacity }, md, svg);
  return md;
}

// Server capacity with compression on: wiregate's presets against raw ws with the same zlib
// settings and with ws's defaults, interleaved, median of the repeats.
async function capacityRuns(opts, usedCorpora) {
  const corpus = (usedCorpora.find((c) => c.name === 'iot-telemetry') ?? usedCorpora[0]).name;
  const conns = opts.quick ? 10 : 50;
  const inflight = 8;
  const duration = opts.duration ?? (opts.quick ? 1500 : 4000);
  const repeat = opts.repeat ?? (opts.quick ? 1 : 3);
  const targets = [
    { kind: 'wiregate', name: 'fast', compression: { preset: 'fast' } },
    { kind: 'wiregate', name: 'balanced', compression: { preset: 'balanced' } },
    ...WS_BASELINES,
  ];
  const runs = new Map(targets.map((t) => [t.name, []]));
  for (let i = 0; i < repeat; i++) {
    for (const t of targets) {
      progress(`compression capacity ${corpus}: ${t.kind} ${t.name} (${i + 1}/${repeat})`);
      const server = await startServer(t.kind, { heartbeat: { interval: 0, timeout: 1000 }, compression: t.compression }, 1);
      const load = await startLoad(0);
      try {
        const m = await measureServer(server, () => load.run('compressEchoRaw', { url: server.url, kind: t.kind, conns, corpus, payloadFile: opts.payloadFile, inflight, duration, warmup: 500 }));
        const r = m.result;
        runs.get(t.name).push({ kind: t.kind, setting: t.name, rate: r.rate, negotiated: r.negotiated, requestWire: r.requestWire, requestPayload: r.requestPayload, replyWire: r.replyWire, cpuUsPerMsg: r.rate ? (m.serverCpu * 1e6) / r.rate : null, serverCpu: m.serverCpu, loadCpu: r.loadCpu });
      } finally {
        await load.stop();
        await server.stop();
      }
    }
  }
  const rows = targets.map((t) => {
    const sorted = runs.get(t.name).sort((a, b) => a.rate - b.rate);
    return { ...sorted[Math.floor(sorted.length / 2)], runs: sorted.map((r) => r.rate) };
  });
  const rate = (name) => rows.find((r) => r.setting === name).rate;
  return { corpus, conns, inflight, repeat, rows, base: { fast: rate('ws+deflate(fast)'), defaults: rate('ws+deflate(defaults)') } };
}
