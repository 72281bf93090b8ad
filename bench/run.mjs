#!/usr/bin/env node
// wiregate benchmarks. Usage:
//   npm run bench -- <scenario|all|quick> [--quick] [--duration S] [--payload-file F] [--targets ws,wiregate,uws]
// Scenarios: throughput, fanout, heartbeat, compression, connections, http.
// Every scenario measures wiregate and the baselines in the same run, with the server and the
// load generator in separate processes pinned to separate cores, and writes bench/results/.
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { ensureBenchDeps, ensureBuilt, machineInfo, progress, killAll } from './lib/harness.mjs';
import { throughput } from './scenarios/throughput.mjs';
import { fanout } from './scenarios/fanout.mjs';
import { heartbeat } from './scenarios/heartbeat.mjs';
import { compression } from './scenarios/compression.mjs';
import { connections } from './scenarios/connections.mjs';
import { http } from './scenarios/http.mjs';

const SCENARIOS = { throughput, fanout, heartbeat, compression, connections, http };

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    quick: { type: 'boolean', default: false },
    duration: { type: 'string' },
    'payload-file': { type: 'string' },
    targets: { type: 'string' },
    subscribers: { type: 'string' },
    conns: { type: 'string' },
    repeat: { type: 'string' },
    sizes: { type: 'string' },
    settings: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help || positionals.length === 0) {
  console.log(`usage: npm run bench -- <${Object.keys(SCENARIOS).join('|')}|all|quick> [--quick] [--duration S] [--payload-file F] [--targets ws,wiregate,uws] [--subscribers 1000,10000] [--conns N] [--repeat N] [--sizes 64,1024] [--settings off,fast,ws]`);
  process.exit(positionals.length === 0 && !values.help ? 2 : 0);
}

let names = positionals;
let quick = values.quick;
if (names.length === 1 && names[0] === 'quick') {
  names = Object.keys(SCENARIOS);
  quick = true;
} else if (names.length === 1 && names[0] === 'all') names = Object.keys(SCENARIOS);
for (const n of names) {
  if (!SCENARIOS[n]) {
    console.error(`unknown scenario ${n}`);
    process.exit(2);
  }
}

ensureBuilt();
ensureBenchDeps();
const machine = machineInfo();
const opts = {
  quick,
  machine,
  duration: values.duration ? Number(values.duration) * 1000 : undefined,
  payloadFile: values['payload-file'],
  targets: values.targets?.split(','),
  subscribers: values.subscribers?.split(',').map(Number),
  conns: values.conns ? Number(values.conns) : undefined,
  repeat: values.repeat ? Number(values.repeat) : undefined,
  sizes: values.sizes?.split(',').map(Number),
  settings: values.settings?.split(','),
  command: `npm run bench -- ${process.argv.slice(2).join(' ')}`,
};
if (opts.payloadFile) readFileSync(opts.payloadFile); // fail early on a bad path

progress(`machine: ${machine.cpu}, ${machine.cores} cores, node ${machine.node}, ws ${machine.ws}, pinning ${machine.pinned ? 'on' : 'unavailable'}`);
const t0 = Date.now();
let failed = false;
for (const n of names) {
  progress(`scenario ${n}${quick ? ' (quick)' : ''}`);
  try {
    const summary = await SCENARIOS[n](opts);
    console.log(summary);
    if (summary.includes('LOST')) failed = true;
  } catch (err) {
    failed = true;
    console.error(`scenario ${n} failed:`, err);
  }
}
progress(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s; results in bench/results/`);
killAll();
process.exit(failed ? 1 : 0);
