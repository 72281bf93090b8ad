// The broker conformance suite (test/broker/conformance.ts) against the NATS broker, on a
// nats-server this file starts itself (127.0.0.1, a free port, JetStream in a temporary store
// directory) and kills at the end. Each broker gets its own subject prefix and KV bucket; `peer`
// is a second node on the same server and prefix, so the multi-node cases run. loseState purges
// the topic's seq/epoch counter; the broker stays the same. The broker declares no history,
// retained or presence, so those cases are skipped. Without nats-server the suite is skipped
// (with the reason), except under CI=true, where it fails.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Broker } from '../../src/pubsub/broker.js';
import { NatsBroker, patternToSubjects, subjectToTopic, topicToSubject } from '../../src/pubsub/nats-broker.js';
import { brokerConformance } from './conformance.js';

function findNatsServer(): string | null {
  const r = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' });
  const p = r.stdout.trim();
  if (r.status === 0 && p !== '') return p;
  return existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : null;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Connects over a raw socket; resolves true when the server greets with INFO. */
function greets(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    let data = '';
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.on('error', () => done(false));
    sock.on('data', (d) => {
      data += d.toString();
      if (data.includes('\r\n')) done(data.startsWith('INFO'));
    });
  });
}

async function startNats(dir: string): Promise<{ proc: ChildProcess; port: number }> {
  const bin = findNatsServer();
  if (bin === null) throw new Error('nats-server not found (neither on PATH nor /usr/sbin/nats-server)');
  const port = await freePort();
  const proc = spawn(bin, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  let exited = false;
  proc.once('exit', () => (exited = true));
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (exited) throw new Error(`nats-server exited at start: ${stderr.trim()}`);
    if (await greets(port)) return { proc, port };
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill('SIGKILL');
  throw new Error(`nats-server did not greet on port ${port} within 10 s`);
}

describe('NATS subject mapping', () => {
  it('maps every allowed topic character to a valid token and back', () => {
    const topics = ['a', 'a/b.c/d', 'A-Z_a-z0-9/.:@~=,', '..', 'x/%2E', 'v1.2/sensor:7@home~x=1,2'];
    for (const t of topics) {
      const s = topicToSubject('p.q', t);
      assert.ok(!/[\s*>]/.test(s), s);
      assert.equal(s.split('.').length, 2 + t.split('/').length, s);
      assert.equal(subjectToTopic('p.q', s), t);
    }
  });
  it("maps '+' to '*' and 'a/#' to both 'a.>' and 'a'", () => {
    assert.deepEqual(patternToSubjects('p', 'a/+/c'), ['p.a.*.c']);
    assert.deepEqual(patternToSubjects('p', 'a.b/#'), ['p.a%2Eb.>', 'p.a%2Eb']);
    assert.deepEqual(patternToSubjects('p', '#'), ['p.>']);
  });
});

let server: { proc: ChildProcess; port: number } | null = null;
let failure: string | null = null;
const dir = mkdtempSync(join(tmpdir(), 'wiregate-nats-'));
try {
  server = await startNats(dir);
} catch (err) {
  failure = err instanceof Error ? err.message : String(err);
}

if (server === null) {
  rmSync(dir, { recursive: true, force: true });
  if (process.env.CI === 'true') {
    describe('NatsBroker', () => {
      it('needs a nats-server with JetStream (CI=true)', () => {
        throw new Error(`cannot start nats-server: ${failure}`);
      });
    });
  } else {
    describe('NatsBroker', () => {
      it('conformance', { skip: `cannot start nats-server: ${failure}` }, () => undefined);
    });
  }
} else {
  const { proc, port } = server;
  const servers = `nats://127.0.0.1:${port}`;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  after(async () => {
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
    rmSync(dir, { recursive: true, force: true });
  });

  brokerConformance('NatsBroker', {
    features: { history: false, retained: false, presence: false },
    filters: true,
    create: () => new NatsBroker({ servers, prefix: `t${randomBytes(6).toString('hex')}` }),
    peer: (first: Broker) => new NatsBroker({ servers, prefix: (first as NatsBroker).prefix }),
    loseState: async (b: Broker, topic: string) => {
      await (b as NatsBroker).forget(topic);
      return b;
    },
  });
}
