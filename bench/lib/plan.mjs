// What a bench run measures and where it writes its reports. No side effects on import (the
// results-path test imports it).
//
// bench/results/latest-* is the committed reference that docs/benchmarks.md quotes. Only a full
// run, `npm run bench -- all` with no option that shortens or narrows it and no profiler attached,
// replaces it. Every other run (`quick`, one scenario, --quick, other targets, sizes, a payload
// file, BENCH_SERVER_ARGS, ...) writes to bench/results/local/, which git ignores.
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
/** The committed reference: written by a full run only. */
export const REFERENCE_DIR = join(here, '..', 'results');
/** Everything else (ignored by git). */
export const LOCAL_DIR = join(REFERENCE_DIR, 'local');

export const SCENARIO_NAMES = ['throughput', 'fanout', 'heartbeat', 'compression', 'connections', 'http', 'recovery'];
/** Run only when named, never by `all` or `quick`: they need more than Node (cluster: redis-server, nats-server). */
export const ON_DEMAND_SCENARIOS = ['cluster'];

const OPTIONS = {
  quick: { type: 'boolean', default: false },
  duration: { type: 'string' },
  'payload-file': { type: 'string' },
  targets: { type: 'string' },
  subscribers: { type: 'string' },
  conns: { type: 'string' },
  repeat: { type: 'string' },
  sizes: { type: 'string' },
  settings: { type: 'string' },
  seconds: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
};

export const USAGE = `usage: npm run bench -- <${[...SCENARIO_NAMES, ...ON_DEMAND_SCENARIOS].join('|')}|all|quick> [--quick] [--duration S] [--payload-file F] [--targets ws,wiregate,uws] [--subscribers 1000,10000] [--conns N] [--repeat N] [--sizes 64,1024] [--settings off,fast,ws] [--seconds S (cluster)]
\`all\` and \`quick\` run every scenario but ${ON_DEMAND_SCENARIOS.join(', ')}, which runs only when named.
Only \`npm run bench -- all\` (no other option) replaces the reference in bench/results/latest-*;
every other run writes to bench/results/local/ (ignored by git).`;

/**
 * Parses the bench command line. Throws (with a one-line message) on unknown options or scenarios.
 * `reference` is true for a full run only, and `resultsDir` is where its reports go.
 */
export function planRun(argv, env = process.env) {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true });
  let names = positionals;
  let quick = values.quick;
  const all = names.length === 1 && names[0] === 'all';
  if (names.length === 1 && names[0] === 'quick') {
    names = [...SCENARIO_NAMES];
    quick = true;
  } else if (all) names = [...SCENARIO_NAMES];
  const unknown = names.find((n) => !SCENARIO_NAMES.includes(n) && !ON_DEMAND_SCENARIOS.includes(n));
  if (unknown !== undefined) throw new Error(`unknown scenario ${unknown}`);
  const narrowed = Object.keys(OPTIONS).some((k) => k !== 'quick' && k !== 'help' && values[k] !== undefined);
  const reference = all && !quick && !narrowed && !env.BENCH_SERVER_ARGS;
  return { help: values.help, names, quick, values, reference, resultsDir: reference ? REFERENCE_DIR : LOCAL_DIR };
}

/** The files a report writes: a timestamped JSON kept for history, and the latest-* set. */
export function reportFiles(dir, scenario, stamp, { markdown = false, svg = false } = {}) {
  return {
    stamped: join(dir, `${scenario}-${stamp}.json`),
    json: join(dir, `latest-${scenario}.json`),
    markdown: markdown ? join(dir, `latest-${scenario}.md`) : null,
    svg: svg ? join(dir, `latest-${scenario}.svg`) : null,
  };
}
