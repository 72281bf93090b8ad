import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect } from './helpers.js';
import { parseStartArgs } from '../src/cli/main.js';

// The CLI runs from TypeScript sources through tsx, exactly like bin/wiregate.js runs dist/.
const CLI = ['--import', 'tsx', '-e', "import('./src/cli/main.ts').then((m) => m.main(process.argv.slice(1)))"];

function cli(args: string[], env: Record<string, string> = {}) {
  return spawn(process.execPath, [...CLI, '--', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

test('flag parsing: dotted, kebab-case, short and boolean flags', () => {
  const a = parseStartArgs(['--heartbeat.interval=100', '--max-payload', '2048', '-p', '0', '--trust-proxy', '--config', 'x.json', '--print-config']);
  assert.equal(a.flags.get('heartbeat.interval'), '100');
  assert.equal(a.flags.get('maxPayload'), '2048');
  assert.equal(a.flags.get('port'), '0');
  assert.equal(a.flags.get('trustProxy'), 'true');
  assert.equal(a.configFile, 'x.json');
  assert.equal(a.printConfig, true);
  assert.throws(() => parseStartArgs(['--nope=1']), /nope .*unknown option/);
  assert.throws(() => parseStartArgs(['--port']), /port .*needs a value/);
});

test('--print-config merges file, env and flags and redacts secrets', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wg-cli-'));
  try {
    const file = join(dir, 'wg.json');
    writeFileSync(file, JSON.stringify({ port: 1111, heartbeat: { interval: 1234 }, httpPublish: { apiKey: 'topsecret' } }));
    const r = spawnSync(process.execPath, [...CLI, '--', 'start', '--config', file, '--print-config', '--port=2222'], {
      env: { ...process.env, WIREGATE_HEARTBEAT_TIMEOUT: '777' },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    const cfg = JSON.parse(r.stdout);
    assert.equal(cfg.port, 2222);
    assert.equal(cfg.heartbeat.interval, 1234);
    assert.equal(cfg.heartbeat.timeout, 777);
    assert.equal(cfg.httpPublish.apiKey, '<redacted>');
    assert.ok(!r.stdout.includes('topsecret'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('invalid config exits 2 with a precise message', () => {
  const r = spawnSync(process.execPath, [...CLI, '--', 'start', '--port=99999'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /invalid config port \(from flag --port\): must be <= 65535, got 99999/);
});

test('wiregate start serves, then SIGTERM drains clients with 1001 and exits 0', async (t) => {
  const child = cli(['start', '--port=0', '--host=127.0.0.1']);
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout! });
  let port = 0;
  let info: Record<string, unknown> = {};
  for await (const line of lines) {
    const rec = JSON.parse(line) as Record<string, unknown>;
    if (rec.msg === 'wiregate listening') {
      port = rec.port as number;
      info = rec;
      break;
    }
  }
  assert.ok(port > 0);
  assert.match(String(info.ws), /^8\./);
  assert.ok('masking' in info && 'utf8Validation' in info && 'compression' in info);
  const c = await connect(`ws://127.0.0.1:${port}/ws`);
  assert.deepEqual(await c.call(5), [20, 1]);
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const closed = await c.closed;
  assert.equal(closed.code, 1001);
  const [code] = await exited;
  assert.equal(code, 0);
});
