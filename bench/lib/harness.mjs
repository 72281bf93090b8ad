// Process management, pinning, resource sampling and reports for the bench scenarios.
import { fork, execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { LOCAL_DIR, reportFiles } from './plan.mjs';

const here = dirname(fileURLToPath(import.meta.url));
export const benchDir = join(here, '..');
export const rootDir = join(benchDir, '..');
const require = createRequire(join(rootDir, 'package.json'));
const children = new Set();

let tasksetOk = null;
function canPin() {
  if (tasksetOk === null) {
    try {
      execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
      tasksetOk = cpus().length >= 2;
    } catch {
      tasksetOk = false;
    }
  }
  return tasksetOk;
}

function pin(pid, core) {
  if (core === undefined || !canPin()) return false;
  try {
    execFileSync('taskset', ['-pc', String(core % cpus().length), String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

let nextId = 1;
function rpc(child, msg, type = 'result', timeoutMs = 600_000) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off('message', on);
      reject(new Error(`${msg.cmd} timed out`));
    }, timeoutMs);
    const on = (m) => {
      if (m.id !== id || m.type !== type) return;
      clearTimeout(timer);
      child.off('message', on);
      if (m.error) reject(new Error(m.error));
      else resolve(m);
    };
    child.on('message', on);
    child.send({ ...msg, id });
  });
}

function waitFor(child, type) {
  return new Promise((resolve, reject) => {
    const on = (m) => {
      if (m.type === type) {
        child.off('message', on);
        resolve(m);
      }
    };
    child.on('message', on);
    child.once('exit', (code) => reject(new Error(`child exited with ${code} before '${type}'`)));
  });
}

/** Asks a child to exit (it closes its sockets), killing it if it has not gone after 5 s. */
async function stopChild(child) {
  if (child.exitCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.send({ cmd: 'exit' });
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(t);
}

/** Starts a server process (servers/<kind>.mjs) pinned to `core`. */
export async function startServer(kind, opts = {}, core = 1) {
  const child = fork(join(benchDir, 'servers', `${kind}.mjs`), [], {
    env: { ...process.env, BENCH_OPTS: JSON.stringify(opts) },
    // BENCH_SERVER_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the server processes
    execArgv: ['--expose-gc', ...(process.env.BENCH_SERVER_ARGS ? process.env.BENCH_SERVER_ARGS.split(' ') : [])],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const pinned = pin(child.pid, core);
  const ready = await waitFor(child, 'ready');
  return {
    kind,
    child,
    pinned,
    port: ready.port,
    info: ready.info,
    url: `ws://127.0.0.1:${ready.port}/ws`,
    stats: async () => (await rpc(child, { cmd: 'stats' }, 'stats')),
    gc: async () => rpc(child, { cmd: 'gc' }, 'gc'),
    stop: () => stopChild(child),
  };
}

/** Starts a load generator process pinned to `core`. */
export async function startLoad(core = 0) {
  const child = fork(join(benchDir, 'loadgen.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: ['--max-old-space-size=4096'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const pinned = pin(child.pid, core);
  await waitFor(child, 'ready');
  return {
    child,
    pinned,
    run: async (cmd, args) => (await rpc(child, { cmd, args })).result,
    call: async (msg) => (await rpc(child, msg)).result,
    stop: () => stopChild(child),
  };
}

export function killAll() {
  for (const c of children) c.kill('SIGKILL');
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}
process.on('exit', killAll);

/** Measures a server's CPU share and RSS over an async window. */
export async function measureServer(server, fn) {
  const s0 = await server.stats();
  const t0 = performance.now();
  const result = await fn();
  const s1 = await server.stats();
  const secs = (performance.now() - t0) / 1000;
  return { result, serverCpu: (s1.cpuMs - s0.cpuMs) / 1000 / secs, serverCpuMs: s1.cpuMs - s0.cpuMs, rss: s1.rss, secs };
}

export function machineInfo() {
  const c = cpus();
  let helpers = {};
  try {
    require('bufferutil');
    helpers.bufferutil = true;
  } catch {
    helpers.bufferutil = false;
  }
  helpers.utf8 = typeof require('node:buffer').isUtf8 === 'function' ? 'node:buffer isUtf8 (built-in)' : 'utf-8-validate or JS';
  return {
    cpu: c[0]?.model ?? 'unknown',
    cores: c.length,
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    ws: require('ws/package.json').version,
    msgpackr: JSON.parse(readFileSync(join(rootDir, 'node_modules', 'msgpackr', 'package.json'), 'utf8')).version,
    nativeHelpers: helpers,
    pinned: canPin(),
    date: new Date().toISOString(),
  };
}

export function progress(msg) {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

let resultsDir = LOCAL_DIR;
/** Where writeReport writes: run.mjs sets it from planRun (the committed reference only for a full run). */
export function setResultsDir(dir) {
  resultsDir = dir;
}

/** Writes JSON, Markdown (and optional SVG) results; returns the folder. */
export function writeReport(scenario, data, markdown, svg) {
  mkdirSync(resultsDir, { recursive: true });
  const stamp = data.machine.date.replace(/[:.]/g, '-');
  const files = reportFiles(resultsDir, scenario, stamp, { markdown: Boolean(markdown), svg: Boolean(svg) });
  const json = JSON.stringify(data, null, 2);
  writeFileSync(files.stamped, json);
  writeFileSync(files.json, json);
  if (files.markdown) writeFileSync(files.markdown, markdown);
  if (files.svg) writeFileSync(files.svg, svg);
  return resultsDir;
}

export function mdTable(headers, rows) {
  return [`| ${headers.join(' | ')} |`, `|${headers.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export const fmt = (n, d = 0) => (n === null || n === undefined || Number.isNaN(n) ? '-' : Number(n).toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));

/** A horizontal bar chart as a self-contained SVG. */
export function barChart(title, bars, unit) {
  const w = 760;
  const rowH = 22;
  const left = 300;
  const max = Math.max(...bars.map((b) => b.value), 1);
  const h = 40 + bars.length * rowH + 10;
  const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const rows = bars
    .map((b, i) => {
      const y = 35 + i * rowH;
      const bw = Math.max(1, ((w - left - 90) * b.value) / max);
      return `<text x="${left - 6}" y="${y + 14}" text-anchor="end" font-size="12">${esc(b.label)}</text><rect x="${left}" y="${y}" width="${bw.toFixed(1)}" height="${rowH - 6}" fill="${b.color ?? '#3b7dd8'}"/><text x="${left + bw + 4}" y="${y + 13}" font-size="11">${esc(fmt(b.value, b.value < 10 ? 2 : 0))} ${esc(unit)}</text>`;
    })
    .join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif"><text x="10" y="20" font-size="14" font-weight="bold">${esc(title)}</text>${rows}</svg>`;
}

export function ensureBuilt() {
  if (!existsSync(join(rootDir, 'dist', 'index.js'))) {
    progress('dist/ missing: building wiregate (npm run build)');
    execFileSync('npm', ['run', 'build'], { cwd: rootDir, stdio: 'inherit' });
  }
}

export function ensureBenchDeps() {
  if (!existsSync(join(benchDir, 'node_modules', 'autocannon'))) {
    progress('installing bench-only dependencies (npm --prefix bench ci)');
    execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: benchDir, stdio: 'inherit' });
  }
}

export function readJson(p) {
  return JSON.parse(readFileSync(p, 'utf8'));
}
