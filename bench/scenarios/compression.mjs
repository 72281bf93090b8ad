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

export async function compression(opts) {
  const sets = opts.quick ? SETTINGS.filter((s) => QUICK.includes(s.name)) : SETTINGS;
  const cs = corpora(opts.payloadFile);
  const usedCorpora = opts.quick ? cs.filter((c) => c.name !== 'game-state' || opts.payloadFile) : cs;
  const conns = opts.quick ? 10 : 50;
  const inflight = 4;
  const duration = opts.duration ?? (opts.quick ? 1500 : 4000);
  const rows = [];
  for (const corpus of usedCorpora) {
    const targets = [...sets.map((s) => ({ kind: 'wiregate', ...s })), { kind: 'ws', name: 'ws+deflate(fast)', compression: PRESET_VALUES.fast }];
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
          cpuUsPerMsg: r.messages ? (m.serverCpuMs * 1000) / r.messages : null,
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
    `Payload and wire bytes count both directions of the echo (request and reply). Server µs/msg is server CPU per echoed message (inflate + decode + encode + deflate). Command: \`${opts.command}\``,
  ].join('\n');
  const svg = barChart('wire bytes per message (lower is better)', rows.map((r) => ({ label: `${r.corpus} ${r.setting}`, value: r.wireBytes ?? 0, color: r.kind === 'ws' ? '#3b7dd8' : '#d8643b' })), 'B');
  writeReport('compression', { scenario: 'compression', machine: opts.machine, command: opts.command, quick: opts.quick, rows, recommendations }, md, svg);
  return md;
}
