// Signals reach the gateway: through `npm start` (npm forwards SIGTERM / SIGINT to its child, which
// is the gateway itself because the script `exec`s node), and the second-signal escape hatch.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { connect as tcpConnect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ensureBuilt } from './proc.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = ['--import', 'tsx', '-e', "import('./src/cli/main.ts').then((m) => m.main(process.argv.slice(1)))"];
type T = { after: (fn: () => unknown) => void };

/** `npm start` runs dist/. */
before(() => {
  ensureBuilt();
});

interface Running {
  child: ChildProcess;
  port: number;
  /** Every JSON log record so far (stdout keeps being read). */
  logs: Array<Record<string, unknown>>;
  /** Resolves with the first log record whose msg is `msg` (seen already or still to come). */
  waitLog: (msg: string) => Promise<Record<string, unknown>>;
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  stderr: () => string;
}

/**
 * Spawns a command in its own process group, waits for the `wiregate listening` line, and kills
 * the whole group (npm, and the gateway if it were orphaned) after the test.
 */
async function run(t: T, cmd: string, args: string[]): Promise<Running> {
  const child = spawn(cmd, args, { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  t.after(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* the group is gone */
    }
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const logs: Array<Record<string, unknown>> = [];
  const waiters: Array<{ msg: string; resolve: (r: Record<string, unknown>) => void }> = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (!line.startsWith('{')) return; // npm's "> wiregate@0.1.0 start" banner
    const rec = JSON.parse(line) as Record<string, unknown>;
    logs.push(rec);
    for (const w of waiters.filter((w) => w.msg === rec.msg)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(rec);
    }
  });
  const waitLog = (msg: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const seen = logs.find((r) => r.msg === msg);
      if (seen) return resolve(seen);
      waiters.push({ msg, resolve });
      exited.then(([code, signal]) => reject(new Error(`${cmd} exited (${code ?? signal}) before logging '${msg}':\n${stderr}`)));
    });
  const port = (await waitLog('wiregate listening')).port as number;
  assert.ok(port > 0);
  return { child, port, logs, waitLog, exited, stderr: () => stderr };
}

/** Pids whose parent is `pid` (Linux /proc), or null where there is no /proc. */
function childrenOf(pid: number): number[] | null {
  if (!existsSync('/proc/self/stat')) return null;
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    assert.equal((err as NodeJS.ErrnoException).code, 'ESRCH');
    return false;
  }
}

async function refused(port: number): Promise<void> {
  const sock = tcpConnect(port, '127.0.0.1');
  const [err] = (await Promise.race([once(sock, 'error'), once(sock, 'connect').then(() => [null])])) as [NodeJS.ErrnoException | null];
  sock.destroy();
  assert.equal(err?.code, 'ECONNREFUSED', `port ${port} still accepts connections`);
}

/** A WebSocket client that completes the upgrade and then never answers the server's close frame. */
async function stalledClient(t: T, port: number): Promise<{ sock: Socket; received: () => Buffer }> {
  const sock = tcpConnect(port, '127.0.0.1');
  t.after(() => sock.destroy());
  sock.on('error', () => {});
  let buf = Buffer.alloc(0);
  sock.on('data', (d: Buffer) => (buf = Buffer.concat([buf, d])));
  await once(sock, 'connect');
  sock.write(
    'GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: wiregate.v1\r\n\r\n',
  );
  while (!buf.includes('\r\n\r\n')) await once(sock, 'data');
  assert.match(buf.toString('latin1'), /^HTTP\/1\.1 101 /);
  buf = buf.subarray(buf.indexOf('\r\n\r\n') + 4);
  return { sock, received: () => buf };
}

const npmArgs = ['start', '--', '--port', '0', '--host', '127.0.0.1'];

test('npm start: SIGTERM to npm reaches the gateway, which drains and exits 0; nothing is left listening', async (t) => {
  const npm = await run(t, 'npm', npmArgs);
  const kids = childrenOf(npm.child.pid!);
  let gateway: number | undefined;
  if (kids === null) t.diagnostic('no /proc: the gateway process itself is not inspected');
  else {
    // the script execs node: npm's only child is the gateway, no shell in between
    assert.equal(kids.length, 1, `npm's children: ${kids.join(', ')}`);
    gateway = kids[0];
    const argv = readFileSync(`/proc/${gateway}/cmdline`, 'utf8').split('\0');
    assert.match(argv[0], /node$/, argv.join(' '));
    assert.ok(argv.includes('bin/wiregate.js') && argv.includes('start'), argv.join(' '));
  }
  process.kill(npm.child.pid!, 'SIGTERM');
  const [code, signal] = await npm.exited;
  // npm exits with its child's code; with exec that child is the gateway
  assert.deepEqual([code, signal], [0, null], npm.stderr());
  const stopping = npm.logs.filter((r) => r.msg === 'shutting down');
  assert.deepEqual(stopping.map((r) => r.signal), ['SIGTERM']);
  assert.ok(npm.logs.some((r) => r.msg === 'closed'));
  if (gateway !== undefined) assert.equal(alive(gateway), false, 'the gateway outlived npm');
  await refused(npm.port);
});

test('npm start: one Ctrl-C (SIGINT to the process group, which npm forwards again) drains once and exits 0', async (t) => {
  // a client that never answers the close frame keeps the drain going until drainTimeout, so the
  // SIGINT npm forwards arrives while the gateway is draining
  const npm = await run(t, 'npm', [...npmArgs, '--drainTimeout=2000']);
  const client = await stalledClient(t, npm.port);
  const clientGone = once(client.sock, 'close');
  process.kill(-npm.child.pid!, 'SIGINT');
  const [code, signal] = await npm.exited;
  assert.deepEqual([code, signal], [0, null], npm.stderr());
  assert.deepEqual(npm.logs.filter((r) => r.msg === 'shutting down').map((r) => r.signal), ['SIGINT']);
  assert.ok(!npm.logs.some((r) => r.msg === 'second signal, exiting now'));
  assert.ok(npm.logs.some((r) => r.msg === 'drain timeout, terminating remaining connections'));
  await clientGone;
  // the client was sent a close frame (unmasked, FIN) with 1001 (going away) before it was terminated
  const frame = client.received();
  assert.equal(frame[0], 0x88);
  assert.equal(frame.readUInt16BE(2), 1001);
  await refused(npm.port);
});

test('wiregate start: a different second signal while draining exits 1 at once', async (t) => {
  const gw = await run(t, process.execPath, [...CLI, '--', 'start', '--port=0', '--host=127.0.0.1', '--drainTimeout=600000']);
  await stalledClient(t, gw.port);
  gw.child.kill('SIGTERM');
  await gw.waitLog('draining');
  gw.child.kill('SIGINT');
  const [code] = await gw.exited;
  assert.equal(code, 1);
  assert.deepEqual(gw.logs.filter((r) => r.msg === 'second signal, exiting now').map((r) => r.signal), ['SIGINT']);
  await refused(gw.port);
});
