// Helpers for tests that run the CLI as a real process: dist/ built, and children killed at the end.
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanup } from './helpers.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

function newest(dir: string): number {
  return Math.max(
    0,
    ...readdirSync(dir).map((n) => {
      const p = join(dir, n);
      const st = statSync(p);
      return st.isDirectory() ? newest(p) : st.mtimeMs;
    }),
  );
}

/**
 * `npm start` runs dist/: builds it when it is missing or older than a source file (scripts/run-tests.mjs
 * builds once before the suite, so this only runs for a single test file started by hand). Returns
 * diagnostics (a build that exited non-zero but still emitted); throws if dist/ is not runnable.
 */
export function ensureBuilt(): string[] {
  const main = join(ROOT, 'dist/cli/main.js');
  const fresh = () => existsSync(main) && statSync(main).mtimeMs >= newest(join(ROOT, 'src'));
  if (fresh()) return [];
  const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, encoding: 'utf8' });
  // tsc emits even with type errors; the typecheck is npm test's job, these tests need a runnable dist/
  if (!fresh()) throw new Error(`npm run build did not refresh dist/:\n${r.stdout}\n${r.stderr}`);
  return r.status === 0 ? [] : [`npm run build exited ${r.status}:\n${r.stdout}${r.stderr}`];
}

/** Kills `child` (SIGKILL) when the test ends unless it has exited; resolves with its exit. */
export function killAtEnd(t: { after: (fn: () => unknown) => void }, child: ChildProcess): Promise<[number | null, NodeJS.Signals | null]> {
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return exited;
}

/** Spawns a process that is killed (and waited for) when the test ends; its stderr is collected. */
export function spawnAtEnd(t: { after: (fn: () => unknown) => void }, cmd: string, args: string[], opts: SpawnOptions): { child: ChildProcess; exited: Promise<number | null>; stderr: () => string } {
  const child = spawn(cmd, args, opts);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // through the helpers' one cleanup per test: it runs every cleanup, newest first, even if one throws
  cleanup(t, async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill();
    await exited;
  });
  let err = '';
  child.stderr?.on('data', (d) => (err += d));
  return { child, exited, stderr: () => err };
}
