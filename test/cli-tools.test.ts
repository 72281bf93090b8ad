// The client subcommands of `wiregate` (src/cli/tools.ts) as real processes against gateways this
// file starts: sub / pub round trips, call, history, presence, token, and the exit codes scripts
// rely on (0 ok, 2 usage, 3 cannot connect, 4 refused).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect, startGateway } from './helpers.js';
import { ROOT, ensureBuilt, spawnAtEnd } from './proc.js';
import { freePort } from './servers.js';
import { TOOLS, fromJson, parseDuration, parsePosition, parseToolArgs, toJsonLine } from '../src/cli/tools.js';

// The built CLI (bin/wiregate.js runs dist/): a process starts in a fraction of the time tsx takes,
// and this file starts about thirty. scripts/run-tests.mjs builds dist/ first; ensureBuilt covers a
// file run on its own.
ensureBuilt();
const CLI = [join(ROOT, 'bin/wiregate.js')];
const SECRET = 'cli-tools-test-secret-0123456789';

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `wiregate <args>` to its end (killed if the test ends first), optionally writing `stdin`. */
function run(t: TestContext, args: string[], opts: { stdin?: string; env?: Record<string, string> } = {}): Promise<Ran> {
  const child = spawn(process.execPath, [...CLI, ...args], { env: { ...process.env, WIREGATE_URL: '', WIREGATE_TOKEN: '', ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  child.stdin.end(opts.stdin ?? '');
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return exited.then((code) => ({ code, stdout, stderr }));
}

/** `wiregate sub ...` as a running process: its stdout lines, and a promise of the "subscribed" line on stderr. */
function startSub(t: TestContext, args: string[]) {
  const p = spawnAtEnd(t, process.execPath, [...CLI, 'sub', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, WIREGATE_URL: '', WIREGATE_TOKEN: '' } });
  const lines = createInterface({ input: p.child.stdout! })[Symbol.asyncIterator]();
  const subscribed = new Promise<void>((resolve, reject) => {
    const check = () => {
      if (/subscribed to /.test(p.stderr())) resolve();
    };
    p.child.stderr!.on('data', () => setImmediate(check));
    p.exited.then((code) => reject(new Error(`sub exited ${code} before subscribing: ${p.stderr()}`)));
  });
  const next = async () => {
    const r = await lines.next();
    assert.ok(!r.done, `sub ended early: ${p.stderr()}`);
    return JSON.parse(r.value) as Record<string, unknown>;
  };
  return { ...p, subscribed, next };
}

test('--help of every subcommand exits 0; usage mistakes exit 2 with one line', async (t) => {
  const helps = await Promise.all(Object.keys(TOOLS).map((cmd) => run(t, [cmd, '--help']).then((r) => [cmd, r] as const)));
  for (const [cmd, r] of helps) {
    assert.equal(r.code, 0, `${cmd} --help: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^Usage: wiregate ${cmd} `), cmd);
    assert.match(r.stdout, /Exit codes:\n {2}0 /, cmd);
    assert.equal(r.stderr, '', cmd);
  }
  const top = await run(t, ['--help']);
  for (const cmd of Object.keys(TOOLS)) assert.match(top.stdout, new RegExp(`\\n {2}wiregate ${cmd} `), `wiregate --help lists ${cmd}`);

  const mistakes: Array<[string[], RegExp]> = [
    [['sub', 'a/#', '--bogus'], /^wiregate sub: unknown option --bogus \(see wiregate sub --help\)\n$/],
    [['pub', 'a/b', '{nope'], /^wiregate pub: the argument is not valid JSON \(.*\); use --raw to send text as a string \(see wiregate pub --help\)\n$/],
    [['token', '--ttl', '1h'], /^wiregate token: no secret: pass --secret/],
  ];
  const results = await Promise.all(mistakes.map(([args]) => run(t, args)));
  mistakes.forEach(([args, line], i) => {
    const r = results[i];
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, line, args.join(' '));
    assert.equal(r.stdout, '');
  });
});

test('argument parsing: the usage errors (exit 2) and the JSON conventions', () => {
  const refused: Array<[Parameters<typeof parseToolArgs>, RegExp]> = [
    [['sub', []], /^missing argument: wiregate sub <pattern>$/],
    [['sub', ['a/#', '--count']], /^option --count needs a value$/],
    [['sub', ['a/#', '--count', '--retained']], /^option --count needs a value$/],
    [['sub', ['a/#', '--retained=yes']], /^option --retained takes no value$/],
    [['sub', ['a/#', '-x']], /^unknown option -x$/],
    [['pub', ['a/b', '1', '--qos', 'ack', '--qos', 'ack']], /^option --qos given twice$/],
    [['presence', ['a/b', 'c']], /^unexpected argument 'c'$/],
    [['token', ['extra']], /^unexpected argument 'extra'$/],
  ];
  for (const [args, message] of refused) assert.throws(() => parseToolArgs(...args), { name: 'ToolUsageError', message }, args.join(' '));
  const a = parseToolArgs('token', ['--claim', 'a=1', '--allow-sub', 'x/#', '--claim=b=two', '-c', 'f.json']);
  assert.deepEqual(a.values.get('claim'), ['a=1', 'b=two']);
  assert.deepEqual(a.values.get('config'), ['f.json']);
  assert.equal(parseToolArgs('pub', ['t', '-', '--retain']).positionals[1], '-', '"-" is an argument (stdin)');
  assert.equal(parseToolArgs('sub', ['a/#', '--nonsense', '-h']).help, true, '--help wins');

  assert.deepEqual(parsePosition('42:Zq3v:R8'), { seq: 42, epoch: 'Zq3v:R8' });
  assert.throws(() => parsePosition('12'), /must be <seq>:<epoch>/);
  assert.throws(() => parsePosition('x:abc'), /must be <seq>:<epoch>/);
  assert.equal(parseDuration('90'), 90);
  assert.equal(parseDuration('15m'), 900);
  assert.equal(parseDuration('7d'), 604_800);
  assert.throws(() => parseDuration('soon'), /--ttl must be a duration/);
  assert.throws(() => parseDuration('0'), /--ttl must be a duration/);

  // binary as {"$base64": ...} both ways; big integers as strings
  const bin = fromJson('{"a": {"$base64": "AAEC/w=="}, "b": {"$base64": "x", "other": 1}}', 'x') as { a: Uint8Array; b: unknown };
  assert.ok(bin.a instanceof Uint8Array);
  assert.deepEqual([...bin.a], [0, 1, 2, 255]);
  assert.deepEqual(bin.b, { $base64: 'x', other: 1 }, 'only an object with that one key is binary');
  assert.equal(toJsonLine({ a: Buffer.from([0, 1, 2, 255]), u: new Uint8Array([7]), n: 2n ** 64n, s: 5n }), '{"a":{"$base64":"AAEC/w=="},"u":{"$base64":"Bw=="},"n":"18446744073709551616","s":5}');
  assert.throws(() => fromJson('{nope', 'stdin line 3'), /^ToolUsageError: stdin line 3 is not valid JSON/);
});

test('an unreachable gateway exits 3 with the reason', async (t) => {
  const port = await freePort(); // nobody listens there
  const r = await run(t, ['pub', 'a/b', '1', '--url', `ws://127.0.0.1:${port}`]);
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, new RegExp(`^wiregate pub: cannot connect to ws://127\\.0\\.0\\.1:${port}/ws: connection refused \\(ECONNREFUSED\\)\\n$`));
  const s = await run(t, ['sub', 'a/#', '--url', `ws://127.0.0.1:${port}/ws`, '--timeout', '3000']);
  assert.equal(s.code, 3, s.stderr);
  assert.match(s.stderr, /cannot connect/);
});

test('sub / pub: stdin lines arrive in order at sub --count; sub exits 0 on SIGTERM', async (t) => {
  const s = await startGateway(t);
  const counted = startSub(t, ['cli/#', '--url', s.url, '--count', '4']);
  const open = startSub(t, ['cli/+', '--url', `ws://127.0.0.1:${s.port}`]); // the default path is added
  await Promise.all([counted.subscribed, open.subscribed]);

  const lines = ['{"n": 1, "text": "first"}', '', '"two"', '3', '{"bin": {"$base64": "AAEC/w=="}}'];
  const pub = await run(t, ['pub', 'cli/x', '-', '--url', s.url], { stdin: lines.join('\n') + '\n' });
  assert.equal(pub.code, 0, pub.stderr);
  assert.equal(pub.stdout, '');
  const expected = [{ n: 1, text: 'first' }, 'two', 3, { bin: { $base64: 'AAEC/w==' } }];
  for (const sub of [counted, open]) {
    for (let i = 0; i < expected.length; i++) {
      assert.deepEqual(await sub.next(), { topic: 'cli/x', seq: i + 1, payload: expected[i], retained: false, recovered: false });
    }
  }
  assert.equal(await counted.exited, 0, counted.stderr());

  // --raw and --retain: the text itself, kept as the retained value
  const raw = await run(t, ['pub', 'cli/x', '{not json}', '--raw', '--retain', '--qos', 'ack', '--url', s.url]);
  assert.equal(raw.code, 0, raw.stderr);
  assert.deepEqual(await open.next(), { topic: 'cli/x', seq: 5, payload: '{not json}', retained: false, recovered: false });
  const retained = await run(t, ['sub', 'cli/#', '--retained', '--count', '1', '--url', s.url]);
  assert.equal(retained.code, 0, retained.stderr);
  assert.deepEqual(JSON.parse(retained.stdout), { topic: 'cli/x', seq: 5, payload: '{not json}', retained: true, recovered: false });

  open.child.kill('SIGTERM');
  assert.equal(await open.exited, 0, open.stderr());
});

test('pub --qos ack on a forbidden topic exits 4 with the error code; a token minted with --secret is accepted, another secret is refused (exit 3)', async (t) => {
  const s = await startGateway(t, { auth: { enabled: true, secret: SECRET } });
  const mint = await run(t, ['token', '--secret', SECRET, '--sub', 'alice', '--allow-pub', 'ok/#', '--allow-sub', 'ok/#', '--ttl', '10m']);
  assert.equal(mint.code, 0, mint.stderr);
  const token = mint.stdout.trim();
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
  assert.equal(claims.sub, 'alice');
  assert.deepEqual(claims.wg, { sub: ['ok/#'], pub: ['ok/#'] });
  assert.ok(claims.exp - claims.iat === 600, JSON.stringify(claims));

  // the gateway accepts it: a plain ws client, then the CLI (token from the environment)
  const c = await connect(t, s.url, 'wiregate.v1', { headers: { Authorization: `Bearer ${token}` } });
  assert.deepEqual(await c.subscribe('ok/1'), [16, 1]);
  const ok = await run(t, ['pub', 'ok/1', '{"fine": true}', '--qos', 'ack', '--url', s.url], { env: { WIREGATE_TOKEN: token } });
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(await c.delivery(), [18, 'ok/1', 1, { fine: true }]);

  const forbidden = await run(t, ['pub', 'secret/x', '1', '--qos', 'ack', '--url', s.url, '--token', token]);
  assert.equal(forbidden.code, 4, forbidden.stderr);
  assert.match(forbidden.stderr, /^wiregate pub: publish to secret\/x refused: 104 FORBIDDEN: .+\n$/);

  const other = await run(t, ['token', '--secret', 'not-the-gateway-secret', '--sub', 'mallory', '--allow-pub', '#']);
  assert.equal(other.code, 0, other.stderr);
  const refused = await run(t, ['pub', 'ok/1', '1', '--url', s.url, '--token', other.stdout.trim()]);
  assert.equal(refused.code, 3, refused.stderr);
  assert.match(refused.stderr, /^wiregate pub: cannot connect to ws:.*: upgrade refused: HTTP 401 TOKEN_SIGNATURE_INVALID\n$/);
  const none = await run(t, ['sub', 'ok/#', '--url', s.url]);
  assert.equal(none.code, 3, none.stderr);
  assert.match(none.stderr, /^wiregate sub: cannot connect to ws:.*: upgrade refused: HTTP 401 TOKEN_MISSING\n$/);

  // the secret from a config file, read as `wiregate start -c` reads it; no wg claim: deny by default
  const dir = mkdtempSync(join(tmpdir(), 'wg-cli-tools-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'wg.json');
  writeFileSync(file, JSON.stringify({ auth: { enabled: true, secret: SECRET } }));
  const fromFile = await run(t, ['token', '-c', file, '--sub', 'bob']);
  assert.equal(fromFile.code, 0, fromFile.stderr);
  const bob = await connect(t, s.url, 'wiregate.v1', { headers: { Authorization: `Bearer ${fromFile.stdout.trim()}` } });
  assert.equal((await bob.subscribe('ok/1'))[2], 104);
});

test('call, history and presence print JSON; an ERROR answer exits 4 with its code', async (t) => {
  const s = await startGateway(t, { history: { topics: ['h/#=10'] }, presence: { topics: ['p/#'] } });
  s.gw.handle('echo', (_c, p) => p);
  for (let i = 1; i <= 3; i++) await s.gw.publish('h/1', { i });
  const member = await connect(t, s.url);
  assert.deepEqual(await member.subscribe('p/1'), [16, 1]);
  const url = ['--url', s.url];
  const [echo, unknown, newest, reverse, who, none] = await Promise.all([
    run(t, ['call', 'echo', '{"x": [1, "two", null]}', ...url]),
    run(t, ['call', 'nope', ...url]),
    run(t, ['history', 'h/1', '--limit', '2', ...url]),
    run(t, ['history', 'h/1', '--reverse', ...url]),
    run(t, ['presence', 'p/1', ...url]),
    run(t, ['history', 'p/1', ...url]),
  ]);
  assert.equal(echo.code, 0, echo.stderr);
  assert.deepEqual(JSON.parse(echo.stdout), { x: [1, 'two', null] });

  assert.equal(unknown.code, 4, unknown.stderr);
  assert.match(unknown.stderr, /^wiregate call: call nope refused: 106 UNKNOWN_METHOD: unknown method nope\n$/);

  assert.equal(newest.code, 0, newest.stderr);
  const lines = newest.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
  const epoch = lines[0].epoch;
  assert.equal(typeof epoch, 'string');
  assert.deepEqual(lines, [2, 3].map((seq) => ({ topic: 'h/1', seq, epoch, payload: { i: seq }, retained: false, recovered: false })));
  assert.equal(reverse.code, 0, reverse.stderr);
  assert.deepEqual(reverse.stdout.trimEnd().split('\n').map((l) => JSON.parse(l).seq), [3, 2, 1]);

  assert.equal(who.code, 0, who.stderr);
  const entries = JSON.parse(who.stdout);
  assert.equal(entries.length, 1);
  assert.deepEqual(Object.keys(entries[0]).sort(), ['client', 'info', 'user']);

  assert.equal(none.code, 4, none.stderr);
  assert.match(none.stderr, /^wiregate history: history of p\/1 refused: 115 NOT_ENABLED: /);
});
