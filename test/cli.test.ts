import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { ROOT, ensureBuilt, killAtEnd } from './proc.js';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createServer, type AddressInfo } from 'node:net';
import { connect } from './helpers.js';
import { parseStartArgs, describeStartError, EXIT } from '../src/cli/main.js';
import { ConfigError } from '../src/config/index.js';

// The CLI as installed: bin/wiregate.js on dist/ (scripts/run-tests.mjs builds it first; ensureBuilt
// covers a run of this file alone). Through tsx each start took seconds, which a loaded machine
// stretched past the per-file timeout.
ensureBuilt();
const CLI = [join(ROOT, 'bin/wiregate.js')];

function cli(args: string[], env: Record<string, string> = {}) {
  return spawn(process.execPath, [...CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

test('flag parsing: dotted, kebab-case, short and boolean flags', () => {
  const a = parseStartArgs(['--heartbeat.interval=100', '--max-payload', '2048', '-p', '0', '--trust-proxy', '--config', 'x.json', '--print-config']);
  assert.equal(a.flags.get('heartbeat.interval'), '100');
  assert.equal(a.flags.get('maxPayload'), '2048');
  assert.equal(a.flags.get('port'), '0');
  assert.equal(a.flags.get('trustProxy'), 'true');
  assert.equal(a.configFile, 'x.json');
  assert.equal(a.printConfig, true);
  const b = parseStartArgs(['-p0', '--trust-proxy', 'false', '--compression.enabled=off', '-c', 'y.json', '--host', '::1']);
  assert.equal(b.flags.get('port'), '0');
  assert.equal(b.flags.get('trustProxy'), 'false');
  assert.equal(b.flags.get('compression.enabled'), 'off');
  assert.equal(b.flags.get('host'), '::1');
  assert.equal(b.configFile, 'y.json');
  assert.equal(parseStartArgs(['--port=1', '--help']).help, true);
  assert.equal(parseStartArgs(['-h']).help, true);
  assert.throws(() => parseStartArgs(['--nope=1']), /^UsageError: unknown option --nope$/);
  assert.throws(() => parseStartArgs(['-x']), /unknown option -x/);
  assert.throws(() => parseStartArgs(['--port']), /option --port needs a value/);
  assert.throws(() => parseStartArgs(['--port', '--host=x']), /option --port needs a value/);
  assert.throws(() => parseStartArgs(['--config']), /option --config needs a value/);
  assert.throws(() => parseStartArgs(['--print-config=yes']), /option --print-config takes no value/);
  assert.throws(() => parseStartArgs(['8080']), /unexpected argument '8080'/);
  assert.equal(parseStartArgs(['--compression.enabled', 'maybe']).flags.get('compression.enabled'), 'maybe'); // resolveConfig rejects it
  assert.throws(() => parseStartArgs(['--compression.enabled', '--', 'x']), /unexpected argument 'x'/);
});

test('--help / -h print usage and exit 0 for every command; unknown options exit 2 with one line', () => {
  for (const args of [['--help'], ['-h'], ['help'], [], ['start', '--help'], ['start', '-h'], ['start', '--port=99999', '--help'], ['bench', '--help'], ['bench', '-h']]) {
    const r = spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, /^Usage/, args.join(' '));
    assert.equal(r.stderr, '', args.join(' '));
  }
  const top = spawnSync(process.execPath, [...CLI, '--help'], { encoding: 'utf8' });
  assert.match(top.stdout, /Exit codes:[^]*\n {2}3 {2}cannot start/);
  const start = spawnSync(process.execPath, [...CLI, 'start', '--help'], { encoding: 'utf8' });
  assert.match(start.stdout, /-p, --port <n>/);
  assert.match(start.stdout, /Exit codes:/);
  for (const [args, line] of [
    [['start', '--nope'], 'wiregate: unknown option --nope (see wiregate start --help)'],
    [['start', '-x', '1'], 'wiregate: unknown option -x (see wiregate start --help)'],
    [['start', '--port'], 'wiregate: option --port needs a value (see wiregate start --help)'],
    [['--nope'], 'wiregate: unknown option --nope (see wiregate --help)'],
    [['stop'], "wiregate: unknown command 'stop' (see wiregate --help)"],
  ] as const) {
    const r = spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 2, args.join(' '));
    assert.equal(r.stderr, line + '\n');
    assert.equal(r.stdout, '');
  }
});

/** Runs `wiregate start` to its end; resolves with the exit code and stderr. */
async function startFails(t: { after: (fn: () => unknown) => void }, args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = cli(['start', ...args]);
  const exited = killAtEnd(t, child);
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdout!.resume();
  const [code] = await exited;
  return { code, stderr };
}

test('a port in use ends in one line on stderr and exit code 3', async (t) => {
  const blocker = createServer();
  blocker.listen(0, '127.0.0.1');
  await once(blocker, 'listening');
  t.after(() => blocker.close());
  const { port } = blocker.address() as AddressInfo;
  const r = await startFails(t, ['--host=127.0.0.1', `--port=${port}`]);
  assert.equal(r.code, EXIT.START);
  assert.equal(r.code, 3);
  assert.equal(r.stderr, `wiregate: cannot listen on 127.0.0.1:${port}: address already in use (EADDRINUSE)\n`);
});

test('unloadable auth keys end in one line and a non-zero exit, not a stack trace', async (t) => {
  const r = await startFails(t, ['--host=127.0.0.1', '--port=0', '--auth.enabled', '--auth.jwksFile=/nonexistent/wiregate-jwks.json']);
  const lines = r.stderr.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^wiregate: .*\/nonexistent\/wiregate-jwks\.json/);
  // a ConfigError (the configuration is wrong) is a usage error, anything else failed to start
  assert.equal(r.code, lines[0].startsWith('wiregate: invalid config') ? 2 : 3, r.stderr);
});

test('describeStartError: one line per kind of listen() rejection', () => {
  const at = { host: '::1', port: 8080 };
  const sys = (code: string, message: string) => Object.assign(new Error(message), { code, syscall: 'listen' });
  assert.deepEqual(describeStartError(sys('EADDRINUSE', 'listen EADDRINUSE: address already in use ::1:8080'), at), {
    line: 'wiregate: cannot listen on [::1]:8080: address already in use (EADDRINUSE)',
    code: 3,
  });
  assert.equal(describeStartError(sys('EACCES', 'listen EACCES'), { host: '0.0.0.0', port: 80 }).line, 'wiregate: cannot listen on 0.0.0.0:80: permission denied (ports below 1024 need privileges) (EACCES)');
  assert.equal(describeStartError(sys('EACCES', 'listen EACCES'), at).line, 'wiregate: cannot listen on [::1]:8080: permission denied (EACCES)');
  assert.equal(describeStartError(sys('EWEIRD', 'listen EWEIRD: odd'), at).line, 'wiregate: cannot listen on [::1]:8080: listen EWEIRD: odd (EWEIRD)');
  const open = Object.assign(new Error("ENOENT: no such file or directory, open '/k.pem'"), { code: 'ENOENT', syscall: 'open' });
  assert.deepEqual(describeStartError(open, at), { line: "wiregate: cannot start: ENOENT: no such file or directory, open '/k.pem'", code: 3 });
  const cfg = describeStartError(new ConfigError('auth.publicKey', 'cannot load the key:\n  bad PEM', '/k.pem', 'file wg.json'), at);
  assert.equal(cfg.code, 2);
  assert.ok(!cfg.line.includes('\n'));
  assert.match(cfg.line, /^wiregate: invalid config auth\.publicKey \(from file wg\.json\): cannot load the key: bad PEM/);
  assert.deepEqual(describeStartError(new Error('broker down'), at), { line: 'wiregate: cannot start: broker down', code: 3 });
});

test('--print-config merges file, env and flags and redacts secrets', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wg-cli-'));
  try {
    const file = join(dir, 'wg.json');
    writeFileSync(file, JSON.stringify({ port: 1111, heartbeat: { interval: 1234 }, httpPublish: { apiKey: 'topsecret' } }));
    const r = spawnSync(process.execPath, [...CLI, 'start', '--config', file, '--print-config', '--port=2222'], {
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
  const r = spawnSync(process.execPath, [...CLI, 'start', '--port=99999'], { encoding: 'utf8' });
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
