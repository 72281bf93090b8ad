#!/usr/bin/env node
// wiregate benchmarks. Usage:
//   npm run bench -- <scenario|all|quick> [--quick] [--duration S] [--payload-file F] [--targets ws,wiregate,uws]
// Scenarios: throughput, fanout, heartbeat, compression, connections, http, recovery; and cluster
// (redis-server + nats-server; only when named, not in all/quick).
// Every scenario measures wiregate and the baselines in the same run, with the server and the
// load generator in separate processes pinned to separate cores. A full run (`all`, no other
// option) writes the committed reference bench/results/latest-*; any other run writes
// bench/results/local/ (ignored by git). See lib/plan.mjs.
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { ensureBenchDeps, ensureBuilt, machineInfo, progress, killAll, setResultsDir, rootDir } from './lib/harness.mjs';
import { planRun, USAGE } from './lib/plan.mjs';
import { throughput } from './scenarios/throughput.mjs';
import { fanout } from './scenarios/fanout.mjs';
import { heartbeat } from './scenarios/heartbeat.mjs';
import { compression } from './scenarios/compression.mjs';
import { connections } from './scenarios/connections.mjs';
import { http } from './scenarios/http.mjs';
import { recovery } from './scenarios/recovery.mjs';
import { cluster } from './scenarios/cluster.mjs';

const SCENARIOS = { throughput, fanout, heartbeat, compression, connections, http, recovery, cluster };

let plan;
try {
  plan = planRun(process.argv.slice(2));
} catch (err) {
  console.error(`bench: ${err.message}`);
  console.error(USAGE);
  process.exit(2);
}
if (plan.help || plan.names.length === 0) {
  console.log(USAGE);
  process.exit(plan.help ? 0 : 2);
}
const { names, quick, values } = plan;
setResultsDir(plan.resultsDir);
const where = relative(rootDir, plan.resultsDir) + '/';

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
  seconds: values.seconds ? Number(values.seconds) : undefined,
  command: `npm run bench -- ${process.argv.slice(2).join(' ')}`,
};
if (opts.payloadFile) readFileSync(opts.payloadFile); // fail early on a bad path

progress(
  plan.reference
    ? `full run: results replace the reference in ${where}latest-*`
    : `results go to ${where} (ignored by git; only \`npm run bench -- all\` replaces the reference in bench/results/latest-*)`,
);
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
progress(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s; results in ${where}`);
killAll();
process.exit(failed ? 1 : 0);
