// docs/protocol.md's byte-level examples are replayed against the gateway a newcomer starts
// (`npm start` = `node bin/wiregate.js start`, compiled dist/, embedded defaults) and must match the
// server's answers byte for byte.
//
// The examples are fenced blocks whose info string is `wire` (optionally followed by a variant):
//
//   ```wire
//   client  94 03 00 a3 61 2f 62 07              comment
//           07                                   continuation of the frame above
//   server  92 10 01                             a frame the server answers with
//   server  (none)                               the server answers nothing
//   ```
//
// A line starting with `client` / `server` begins a frame, an indented line continues it; the bytes
// are two-digit hex separated by single spaces, anything after two or more spaces is commentary.
// Every other line inside a block is an error, so a mistyped byte cannot be skipped silently.
// Variants: none (the conversation with `wiregate start`, one connection, blocks in document
// order); `with-echo` (a gateway embedded as README "Embed it" shows, with
// `gw.handle('echo', (ctx, payload) => payload)`); `server-only` (frames no request can produce
// here, such as GAP: only the encoding checks apply); `history` (a conversation of two connections
// with `wiregate start` plus HISTORY_FLAGS, blocks in document order).
//
// `history` blocks may also use `client2` / `server2` lines: frames of a second connection to the
// same gateway. They are replayed step by step: a step is a run of client frames of one connection,
// followed by the server lines up to the next client line; after sending the step's frames the test
// collects everything each connection received (a PING barrier on both) and compares it with that
// step's server lines, per connection and in order (those answers have a documented order). A few
// values differ from run to run: the epoch, presence client ids (their node part) and message times.
// The doc shows the samples in SAMPLE and says so; the test binds each to what the gateway sends (the
// epoch and node once for the whole conversation, a time per occurrence, each checked for its shape),
// puts the bound values in place of the samples (in client frames too: `since` carries the epoch),
// and compares the resulting standard msgpack bytes with the server's byte for byte.
//
// Besides the replay, every message in a block must be written in backticks, as JSON, in the text
// right before the block, and the bytes must be exactly the standard msgpack encoding of it: an
// edited byte fails either the replay or this check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import WebSocket from 'ws';
import { Packr, Unpackr } from 'msgpackr';
import { ensureBuilt, killAtEnd } from './proc.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DOC = join(ROOT, 'docs/protocol.md');
const packr = new Packr({ useRecords: false, variableMapSize: true }); // standard msgpack, shortest forms
const unpackr = new Unpackr({ useRecords: false });

// ---- parsing the doc ----------------------------------------------------------------------------

interface Frame {
  dir: 'client' | 'server';
  /** 2: a `client2` / `server2` line, the second connection of a `history` block. */
  conn: 1 | 2;
  /** null: `server  (none)`, nothing expected. */
  bytes: number[] | null;
  line: number;
}

interface Block {
  variant: string;
  frames: Frame[];
  /** JSON values written in backticks in the text between the previous block (or heading) and this one. */
  prose: unknown[];
  line: number;
}

const HEX = /^([0-9a-fA-F]{2}(?: [0-9a-fA-F]{2})*)(?: {2,}.*)?$/;

function parseWireBlocks(doc: string): Block[] {
  const lines = doc.split('\n');
  const blocks: Block[] = [];
  let prose: string[] = [];
  let block: Block | null = null;
  let fence = false; // inside some other fenced block
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i];
    const where = `docs/protocol.md:${i + 1}`;
    if (block === null) {
      const open = /^```wire(?:\s+(\S+))?\s*$/.exec(text);
      if (!fence && open) {
        block = { variant: open[1] ?? '', frames: [], prose: jsonSpans(prose.join('\n')), line: i + 1 };
        continue;
      }
      assert.ok(fence || !/^```wire/.test(text), `${where}: malformed wire fence ${JSON.stringify(text)}`);
      if (/^```/.test(text)) fence = !fence;
      else if (!fence && /^#/.test(text)) prose = []; // the text that names a block's messages is in its own section
      else if (!fence) prose.push(text);
      continue;
    }
    if (/^```\s*$/.test(text)) {
      assert.ok(block.frames.length > 0, `${where}: empty wire block`);
      blocks.push(block);
      block = null;
      prose = [];
      continue;
    }
    if (text.trim() === '') continue;
    const head = /^(client|server)(2?)\s+(.*)$/.exec(text);
    if (head) {
      const dir = head[1] as 'client' | 'server';
      const conn = head[2] === '2' ? 2 : 1;
      if (dir === 'server' && /^\(none\)(?: {2,}.*)?$/.test(head[3])) {
        block.frames.push({ dir, conn, bytes: null, line: i + 1 });
        continue;
      }
      block.frames.push({ dir, conn, bytes: hexBytes(head[3], where), line: i + 1 });
      continue;
    }
    const cont = /^\s+(\S.*)$/.exec(text);
    assert.ok(cont, `${where}: a wire block line starts with "client", "server", "client2", "server2" or indentation: ${JSON.stringify(text)}`);
    const last = block.frames.at(-1);
    assert.ok(last && last.bytes !== null, `${where}: continuation line without a frame to continue`);
    last.bytes.push(...hexBytes(cont[1], where));
  }
  assert.equal(block, null, 'docs/protocol.md: unterminated wire block');
  return blocks;
}

function hexBytes(s: string, where: string): number[] {
  const m = HEX.exec(s);
  assert.ok(m, `${where}: expected hex bytes ("93 01 ..."), then two spaces and a comment: ${JSON.stringify(s)}`);
  return m[1].split(' ').map((h) => parseInt(h, 16));
}

/** Backtick spans of the prose that are JSON arrays (a span may run over a line break). */
function jsonSpans(prose: string): unknown[] {
  const out: unknown[] = [];
  for (const m of prose.replace(/\n/g, ' ').matchAll(/`([^`]+)`/g)) {
    if (!m[1].startsWith('[')) continue;
    try {
      out.push(JSON.parse(m[1]));
    } catch {
      /* not JSON, e.g. a layout like [1, id, pattern] */
    }
  }
  return out;
}

const hex = (b: Uint8Array | number[]) => Buffer.from(b).toString('hex').replace(/(..)(?!$)/g, '$1 ');

// ---- starting the gateway the way a newcomer does ------------------------------------------------

/** Spawns a gateway process and resolves with its port from the `wiregate listening` log line. */
async function spawnGateway(t: { after: (fn: () => unknown) => void }, args: string[]): Promise<number> {
  const child: ChildProcess = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = killAtEnd(t, child);
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  for await (const line of createInterface({ input: child.stdout! })) {
    let rec: { msg?: string; port?: number };
    try {
      rec = JSON.parse(line);
    } catch {
      continue;
    }
    if (rec.msg === 'wiregate listening') {
      child.stdout!.resume(); // keep draining the log
      return rec.port!;
    }
  }
  await exited;
  throw new Error(`gateway exited (${child.exitCode ?? child.signalCode}) before listening:\n${stderr}`);
}

/** The `history` examples' gateway: `wiregate start` with these options (the doc names them). */
const HISTORY_FLAGS = ['--history.topics=chat/#=100', '--presence.topics=room/#'];

/**
 * What the doc shows for the values that differ from run to run in `history` blocks (the doc states
 * these samples): the memory broker's epoch (drawn per process), the node part of presence client
 * ids (`<node>:<connection number>`, drawn per process) and message times (milliseconds).
 */
const SAMPLE = { epoch: 'Zq3vR8tw', node: '3f9a1c07', time: 1767225600000 } as const;

/** The README's "Embed it", reduced to the method the docs use. */
const EMBEDDED_WITH_ECHO = `
import { createGateway } from 'wiregate';
const gw = createGateway({ port: 0, host: '127.0.0.1' });
gw.handle('echo', (ctx, payload) => payload);
await gw.listen();
`;

// ---- a raw client -----------------------------------------------------------------------------

/** PING with the largest id: its PONG marks the end of the answers to what was sent before it. */
const BARRIER = packr.pack([5, 0xffffffff]);
const BARRIER_PONG = hex(packr.pack([20, 0xffffffff]));

class RawClient {
  private frames: Buffer[] = [];
  private waiter: (() => void) | null = null;
  closed: { code: number; reason: string } | null = null;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary) => {
      assert.ok(isBinary, 'the server sent a text frame');
      this.frames.push(data);
      this.wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
  }

  static async open(port: number): Promise<RawClient> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, 'wiregate.v1');
    ws.binaryType = 'nodebuffer';
    await once(ws, 'open');
    assert.equal(ws.protocol, 'wiregate.v1');
    return new RawClient(ws);
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Sends the frames, then the barrier PING; resolves with every frame received before its PONG. */
  async exchange(frames: number[][]): Promise<string[]> {
    for (const f of frames) this.ws.send(Buffer.from(f), { binary: true });
    this.ws.send(BARRIER, { binary: true });
    const got: string[] = [];
    for (;;) {
      while (this.frames.length > 0) {
        const f = hex(this.frames.shift()!);
        if (f === BARRIER_PONG) return got;
        got.push(f);
      }
      assert.equal(this.closed, null, `connection closed ${JSON.stringify(this.closed)} after ${JSON.stringify(got)}`);
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }

  close(): Promise<unknown> {
    if (this.closed) return Promise.resolve();
    const done = once(this.ws, 'close');
    this.ws.close();
    return done;
  }
}

// ---- the run-to-run values of `history` blocks ---------------------------------------------------

/** What this gateway sent for the samples: the epoch and node once bound stay bound. */
interface Live {
  epoch: string | null;
  node: string | null;
  /** Times must not be older than this (the test started the gateway after it). */
  since: number;
}

/** Stands for the server's message when a client frame is being prepared. */
const CLIENT = Symbol('client frame');

/**
 * `doc` (a decoded doc message) with every sample replaced by the live value. For a server frame
 * `got` is the server's message, walked in parallel, which binds the epoch and node the first time
 * they show (checked for their shape) and supplies each time; where its shape differs the doc
 * value stays, so the byte comparison shows the difference. A client frame (`got` CLIENT) may
 * only use values already bound.
 */
function withLive(doc: unknown, got: unknown, live: Live, where: string): unknown {
  const client = got === CLIENT;
  if (doc === SAMPLE.epoch) {
    if (live.epoch === null && typeof got === 'string' && /^[A-Za-z0-9_-]{8}$/.test(got)) live.epoch = got;
    assert.ok(!client || live.epoch !== null, `${where}: the sample epoch is used before a server answer showed the live one`);
    return live.epoch ?? doc;
  }
  if (typeof doc === 'string' && doc.startsWith(`${SAMPLE.node}:`)) {
    const m = typeof got === 'string' ? /^([0-9a-f]{8}):\d+$/.exec(got) : null;
    if (live.node === null && m !== null) live.node = m[1];
    assert.ok(!client || live.node !== null, `${where}: the sample client id is used before a server answer showed the live node`);
    return live.node === null ? doc : live.node + doc.slice(SAMPLE.node.length);
  }
  if (doc === SAMPLE.time) return typeof got === 'number' && Number.isSafeInteger(got) && got >= live.since ? got : doc;
  const sub = (k: string | number) => (client ? CLIENT : typeof got === 'object' && got !== null ? (got as Record<string, unknown>)[k] : undefined);
  if (Array.isArray(doc)) return doc.map((d, i) => withLive(d, sub(i), live, where));
  if (typeof doc === 'object' && doc !== null && !(doc instanceof Uint8Array)) {
    return Object.fromEntries(Object.entries(doc).map(([k, v]) => [k, withLive(v, sub(k), live, where)]));
  }
  return doc;
}

/** Doc bytes with the samples replaced (the same standard msgpack otherwise); `got`: the server's frame, null for a client frame. */
function liveBytes(bytes: number[], got: Buffer | null, live: Live, where: string): Buffer {
  const docMsgs = unpackr.unpackMultiple(Buffer.from(bytes)) as unknown[];
  const gotMsgs = got === null ? null : (unpackr.unpackMultiple(got) as unknown[]);
  return Buffer.concat(docMsgs.map((m, i) => packr.pack(withLive(m, gotMsgs === null ? CLIENT : gotMsgs[i], live, where))));
}

/** Replays one `history` block step by step on the two connections (see the header). */
async function replayHistory(b: Block, conns: [RawClient, RawClient], live: Live): Promise<void> {
  for (let i = 0; i < b.frames.length; ) {
    const step = b.frames[i];
    const where = `docs/protocol.md:${step.line}`;
    assert.equal(step.dir, 'client', `${where}: a step starts with a client frame`);
    const sent: Buffer[] = [];
    for (; i < b.frames.length && b.frames[i].dir === 'client' && b.frames[i].conn === step.conn; i++) {
      sent.push(liveBytes(b.frames[i].bytes!, null, live, `docs/protocol.md:${b.frames[i].line}`));
    }
    const expected: Frame[] = [];
    for (; i < b.frames.length && b.frames[i].dir === 'server'; i++) if (b.frames[i].bytes !== null) expected.push(b.frames[i]);
    const sender = conns[step.conn - 1];
    const other = conns[2 - step.conn];
    const got: Record<1 | 2, Buffer[]> = { 1: [], 2: [] };
    got[step.conn] = (await sender.exchange(sent.map((f) => [...f]))).map((h) => Buffer.from(h.replace(/ /g, ''), 'hex'));
    got[(3 - step.conn) as 1 | 2] = (await other.exchange([])).map((h) => Buffer.from(h.replace(/ /g, ''), 'hex'));
    for (const conn of [1, 2] as const) {
      const want = expected.filter((f) => f.conn === conn);
      const have = got[conn];
      const shown = want.map((f, k) => hex(liveBytes(f.bytes!, have[k] ?? Buffer.of(0xc0), live, `docs/protocol.md:${f.line}`)));
      assert.deepEqual(
        have.map((f) => hex(f)),
        shown,
        `${where} (history, connection ${conn}): sent ${sent.map((s) => hex(s)).join(' | ')} on connection ${step.conn}\n  connection ${conn} received ${JSON.stringify(have.map((f) => hex(f)))}\n  the doc shows (samples replaced) ${JSON.stringify(shown)}`,
      );
    }
  }
}

// ---- the tests ----------------------------------------------------------------------------------

const VARIANTS = new Set(['', 'with-echo', 'server-only', 'history']);

test('docs/protocol.md wire blocks: well-formed, standard msgpack, and each message named in the text', () => {
  const doc = readFileSync(DOC, 'utf8');
  const blocks = parseWireBlocks(doc);
  // the history examples' gateway and run-to-run samples are stated in the text
  assert.ok(doc.includes(`wiregate start ${HISTORY_FLAGS.join(' ')}`), `docs/protocol.md names the history examples' gateway: wiregate start ${HISTORY_FLAGS.join(' ')}`);
  for (const v of [`"${SAMPLE.epoch}"`, `"${SAMPLE.node}:1"`, String(SAMPLE.time)]) assert.ok(doc.includes(`\`${v}\``), `docs/protocol.md states the sample ${v}`);
  assert.ok(blocks.length >= 8, `expected the byte-level examples, found ${blocks.length} wire blocks`);
  const clientTypes = new Set<number>();
  const serverTypes = new Set<number>();
  for (const b of blocks) {
    const at = `docs/protocol.md:${b.line}`;
    assert.ok(VARIANTS.has(b.variant), `${at}: unknown wire block variant ${JSON.stringify(b.variant)}`);
    if (b.variant === 'server-only') assert.ok(b.frames.every((f) => f.dir === 'server' && f.bytes !== null), `${at}: a server-only block holds server frames only`);
    else assert.equal(b.frames[0].dir, 'client', `${at}: a block starts with a client frame`);
    if (b.variant !== 'history') assert.ok(b.frames.every((f) => f.conn === 1), `${at}: client2 / server2 lines only in history blocks`);
    const none = b.frames.filter((f) => f.bytes === null);
    if (none.length > 0) assert.ok(none.length === 1 && b.frames.filter((f) => f.dir === 'server').length === 1, `${at}: "server  (none)" is the only server line of its block`);
    for (const f of b.frames) {
      if (f.bytes === null) continue;
      const where = `docs/protocol.md:${f.line}`;
      let msgs: unknown[];
      try {
        msgs = unpackr.unpackMultiple(Buffer.from(f.bytes)) as unknown[];
      } catch (err) {
        assert.fail(`${where}: not msgpack (${(err as Error).message}): ${hex(f.bytes)}`);
      }
      // standard, shortest encoding of exactly these values: a changed length byte, a truncated or
      // an extra byte all show here
      assert.equal(hex(Buffer.concat(msgs.map((m) => packr.pack(m)))), hex(f.bytes), `${where}: the bytes are not the standard msgpack encoding of ${JSON.stringify(msgs)}`);
      for (const m of msgs) {
        assert.ok(Array.isArray(m) && typeof m[0] === 'number', `${where}: a message is an array starting with its type: ${JSON.stringify(m)}`);
        assert.ok(
          b.prose.some((p) => isDeepStrictEqual(p, m)),
          `${where}: ${JSON.stringify(m)} is not written in backticks in the text before the block (found ${JSON.stringify(b.prose)})`,
        );
        (f.dir === 'client' ? clientTypes : serverTypes).add(m[0]);
      }
    }
  }
  // the examples cover every client message type and every server message type
  assert.deepEqual([...clientTypes].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual([...serverTypes].sort((a, b) => a - b), [16, 17, 18, 20, 21, 22]);
});

test('docs/protocol.md byte-level examples are what `npm start` (wiregate start) answers, byte for byte', async (t) => {
  for (const warning of ensureBuilt()) t.diagnostic(warning);
  const blocks = parseWireBlocks(readFileSync(DOC, 'utf8'));
  const live: Live = { epoch: null, node: null, since: Date.now() };
  const [defaultPort, echoPort, historyPort] = await Promise.all([
    spawnGateway(t, ['bin/wiregate.js', 'start', '--port', '0', '--host', '127.0.0.1']),
    spawnGateway(t, ['--input-type=module', '-e', EMBEDDED_WITH_ECHO]),
    spawnGateway(t, ['bin/wiregate.js', 'start', '--port', '0', '--host', '127.0.0.1', ...HISTORY_FLAGS]),
  ]);
  const conversation = await RawClient.open(defaultPort);
  t.after(() => conversation.close());
  const withEcho = await RawClient.open(echoPort);
  t.after(() => withEcho.close());
  // opened one after the other: the doc's client ids end in :1 and :2
  const history1 = await RawClient.open(historyPort);
  t.after(() => history1.close());
  const history2 = await RawClient.open(historyPort);
  t.after(() => history2.close());
  let replayed = 0;
  let replayedHistory = 0;
  for (const b of blocks) {
    if (b.variant === 'server-only') continue;
    if (b.variant === 'history') {
      await replayHistory(b, [history1, history2], live);
      replayedHistory++;
      continue;
    }
    const client = b.variant === 'with-echo' ? withEcho : conversation;
    const sent = b.frames.filter((f) => f.dir === 'client').map((f) => f.bytes!);
    const expected = b.frames.filter((f) => f.dir === 'server' && f.bytes !== null).map((f) => hex(f.bytes!));
    const got = await client.exchange(sent);
    assert.deepEqual(
      [...got].sort(),
      [...expected].sort(),
      `docs/protocol.md:${b.line} (${b.variant || 'wiregate start'}): sent ${sent.map((s) => hex(s)).join(' | ')}\n  server answered ${JSON.stringify(got)}\n  the doc shows   ${JSON.stringify(expected)}`,
    );
    replayed++;
  }
  assert.ok(replayed >= 8, `replayed ${replayed} blocks`);
  assert.ok(replayedHistory >= 6, `replayed ${replayedHistory} history blocks`);
});

test('the wire block parser refuses what it does not understand', () => {
  const wrap = (body: string, info = 'wire') => `SUBSCRIBE \`[1, 1, "a"]\`\n\n\`\`\`${info}\n${body}\n\`\`\`\n`;
  assert.equal(parseWireBlocks(wrap('client  93 01 01 a1 61    comment\nserver  92 10 01'))[0].frames.length, 2);
  assert.deepEqual(parseWireBlocks(wrap('client  93 01\n        01 a1 61  id 1, "a"'))[0].frames[0].bytes, [0x93, 1, 1, 0xa1, 0x61]);
  assert.deepEqual(parseWireBlocks(wrap('client  92 05 07\nserver  (none)'))[0].frames[1].bytes, null);
  assert.throws(() => parseWireBlocks(wrap('client  93 1 01')), /expected hex bytes/);
  assert.throws(() => parseWireBlocks(wrap('client  93 01 01 zz')), /expected hex bytes/);
  assert.throws(() => parseWireBlocks(wrap('client  93 01 01 a1 61 comment after one space')), /expected hex bytes/);
  assert.throws(() => parseWireBlocks(wrap('clinet  93 01 01')), /starts with "client", "server", "client2", "server2" or indentation/);
  assert.throws(() => parseWireBlocks(wrap('client3  93 01 01')), /starts with "client", "server", "client2", "server2" or indentation/);
  assert.deepEqual(parseWireBlocks(wrap('client  92 05 07\nclient2  92 05 08\nserver2  92 14 08', 'wire history'))[0].frames.map((f) => [f.dir, f.conn]), [['client', 1], ['client', 2], ['server', 2]]);
  assert.throws(() => parseWireBlocks(wrap('        93 01 01')), /continuation line without a frame/);
  assert.throws(() => parseWireBlocks(wrap('client  92 05 07', 'wire  with echo')), /malformed wire fence/);
  assert.throws(() => parseWireBlocks('```wire\nclient  92 05 07\n'), /unterminated wire block/);
  // other fenced blocks are prose, even when they look like wire lines
  assert.equal(parseWireBlocks('```\nclient  zz\n```\n').length, 0);
});
