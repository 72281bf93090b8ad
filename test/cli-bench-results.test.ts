// Bench runs other than a full `npm run bench -- all` must not overwrite the committed reference
// bench/results/latest-* that docs/benchmarks.md quotes. Exercises the results-path logic only:
// no benchmark runs here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const REFERENCE = join(ROOT, 'bench', 'results');

interface Plan {
  names: string[];
  quick: boolean;
  reference: boolean;
  resultsDir: string;
}
interface PlanModule {
  planRun(argv: string[], env?: Record<string, string | undefined>): Plan;
  reportFiles(dir: string, scenario: string, stamp: string, opts: { markdown: boolean; svg: boolean }): Record<string, string | null>;
  SCENARIO_NAMES: string[];
  LOCAL_DIR: string;
  REFERENCE_DIR: string;
}
// a plain .mjs module without types: imported through a URL string
const planUrl = new URL('../bench/lib/plan.mjs', import.meta.url).href;
const load = async () => (await import(planUrl)) as PlanModule;

/** Every file a run with `argv` would write, over all scenarios it runs. */
function targets(m: PlanModule, plan: Plan): string[] {
  const scenarios = [...plan.names, ...(plan.names.includes('throughput') ? ['throughput-conns'] : [])];
  return scenarios.flatMap((s) => Object.values(m.reportFiles(plan.resultsDir, s, '2026-01-01T00-00-00-000Z', { markdown: true, svg: true })).filter((p): p is string => p !== null));
}

test('bench: quick and ad-hoc runs write to bench/results/local/, not to the reference bench/results/latest-*', async () => {
  const m = await load();
  assert.equal(m.REFERENCE_DIR, REFERENCE);
  assert.equal(m.LOCAL_DIR, join(REFERENCE, 'local'));
  const env = {};
  const adHoc: Array<[string[], Record<string, string>]> = [
    [['quick'], env],
    [['all', '--quick'], env],
    [['throughput'], env],
    [['throughput', '--quick'], env],
    [['all', '--targets', 'ws,wiregate'], env],
    [['all', '--duration', '2'], env],
    [['throughput', 'fanout'], env],
    [['throughput', '--sizes', '64', '--targets', 'ws,wiregate,uws'], env],
    [['compression', '--payload-file', 'my-messages.jsonl'], env],
    [['all'], { BENCH_SERVER_ARGS: '--cpu-prof --cpu-prof-dir=/tmp/prof' }],
  ];
  for (const [argv, e] of adHoc) {
    const plan = m.planRun(argv, e);
    assert.equal(plan.reference, false, argv.join(' '));
    assert.equal(plan.resultsDir, m.LOCAL_DIR, argv.join(' '));
    const files = targets(m, plan);
    assert.ok(files.length > 0);
    for (const f of files) {
      assert.notEqual(dirname(f), REFERENCE, `${argv.join(' ')} would write ${relative(ROOT, f)}`);
      assert.ok(f.startsWith(join(REFERENCE, 'local') + '/'), f);
    }
  }
  assert.deepEqual(m.planRun(['quick'], env).names, m.SCENARIO_NAMES);
  assert.equal(m.planRun(['quick'], env).quick, true);
});

test('bench: only a full `npm run bench -- all` replaces the reference', async () => {
  const m = await load();
  const plan = m.planRun(['all'], {});
  assert.equal(plan.reference, true);
  assert.equal(plan.quick, false);
  assert.deepEqual(plan.names, m.SCENARIO_NAMES);
  const files = targets(m, plan).map((f) => relative(ROOT, f));
  assert.ok(files.includes(join('bench', 'results', 'latest-throughput.json')));
  assert.ok(files.includes(join('bench', 'results', 'latest-compression.md')));
  assert.throws(() => m.planRun(['throughput', '--nope'], {}), /Unknown option '--nope'/);
  assert.throws(() => m.planRun(['nope'], {}), /^Error: unknown scenario nope$/);
});

test('bench: git ignores bench/results/local/ (and not the reference)', (t) => {
  const check = (p: string) => spawnSync('git', ['check-ignore', '-q', p], { cwd: ROOT });
  const probe = check('bench/results/local/latest-throughput.json');
  // outside a git checkout (a copied tree) there is nothing to ask; CI always runs in a clone
  if ((probe.error || probe.status === 128) && process.env.CI !== 'true') return t.skip('not a git checkout');
  assert.equal(probe.status, 0, 'bench/results/local/ is not ignored');
  assert.equal(check('bench/results/latest-throughput.json').status, 1);
});

test('bench: writeReport writes exactly the planned files into the folder the run was given', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wg-bench-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // in a child process: harness.mjs installs signal handlers when imported
  const script = `
    import { setResultsDir, writeReport } from './bench/lib/harness.mjs';
    setResultsDir(process.argv[1]);
    writeReport('http', { machine: { date: '2026-01-01T00:00:00.000Z' } }, '# table', null);
    writeReport('fanout', { machine: { date: '2026-01-01T00:00:00.000Z' } }, '# table', '<svg/>');`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, dir], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(readdirSync(dir).sort(), [
    'fanout-2026-01-01T00-00-00-000Z.json',
    'http-2026-01-01T00-00-00-000Z.json',
    'latest-fanout.json',
    'latest-fanout.md',
    'latest-fanout.svg',
    'latest-http.json',
    'latest-http.md',
  ]);
});
