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
// here, such as GAP: only the encoding checks apply).
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
    const head = /^(client|server)\s+(.*)$/.exec(text);
    if (head) {
      const dir = head[1] as 'client' | 'server';
      if (dir === 'server' && /^\(none\)(?: {2,}.*)?$/.test(head[2])) {
        block.frames.push({ dir, bytes: null, line: i + 1 });
        continue;
      }
      block.frames.push({ dir, bytes: hexBytes(head[2], where), line: i + 1 });
      continue;
    }
    const cont = /^\s+(\S.*)$/.exec(text);
    assert.ok(cont, `${where}: a wire block line starts with "client", "server" or indentation: ${JSON.stringify(text)}`);
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

// ---- the tests ----------------------------------------------------------------------------------

const VARIANTS = new Set(['', 'with-echo', 'server-only']);

test('docs/protocol.md wire blocks: well-formed, standard msgpack, and each message named in the text', () => {
  const blocks = parseWireBlocks(readFileSync(DOC, 'utf8'));
  assert.ok(blocks.length >= 8, `expected the byte-level examples, found ${blocks.length} wire blocks`);
  const clientTypes = new Set<number>();
  const serverTypes = new Set<number>();
  for (const b of blocks) {
    const at = `docs/protocol.md:${b.line}`;
    assert.ok(VARIANTS.has(b.variant), `${at}: unknown wire block variant ${JSON.stringify(b.variant)}`);
    if (b.variant === 'server-only') assert.ok(b.frames.every((f) => f.dir === 'server' && f.bytes !== null), `${at}: a server-only block holds server frames only`);
    else assert.equal(b.frames[0].dir, 'client', `${at}: a block starts with a client frame`);
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
  assert.deepEqual([...clientTypes].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...serverTypes].sort((a, b) => a - b), [16, 17, 18, 20, 21]);
});

test('docs/protocol.md byte-level examples are what `npm start` (wiregate start) answers, byte for byte', async (t) => {
  for (const warning of ensureBuilt()) t.diagnostic(warning);
  const blocks = parseWireBlocks(readFileSync(DOC, 'utf8'));
  const [defaultPort, echoPort] = await Promise.all([
    spawnGateway(t, ['bin/wiregate.js', 'start', '--port', '0', '--host', '127.0.0.1']),
    spawnGateway(t, ['--input-type=module', '-e', EMBEDDED_WITH_ECHO]),
  ]);
  const conversation = await RawClient.open(defaultPort);
  t.after(() => conversation.close());
  const withEcho = await RawClient.open(echoPort);
  t.after(() => withEcho.close());
  let replayed = 0;
  for (const b of blocks) {
    if (b.variant === 'server-only') continue;
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
});

test('the wire block parser refuses what it does not understand', () => {
  const wrap = (body: string, info = 'wire') => `SUBSCRIBE \`[1, 1, "a"]\`\n\n\`\`\`${info}\n${body}\n\`\`\`\n`;
  assert.equal(parseWireBlocks(wrap('client  93 01 01 a1 61    comment\nserver  92 10 01'))[0].frames.length, 2);
  assert.deepEqual(parseWireBlocks(wrap('client  93 01\n        01 a1 61  id 1, "a"'))[0].frames[0].bytes, [0x93, 1, 1, 0xa1, 0x61]);
  assert.deepEqual(parseWireBlocks(wrap('client  92 05 07\nserver  (none)'))[0].frames[1].bytes, null);
  assert.throws(() => parseWireBlocks(wrap('client  93 1 01')), /expected hex bytes/);
  assert.throws(() => parseWireBlocks(wrap('client  93 01 01 zz')), /expected hex bytes/);
  assert.throws(() => parseWireBlocks(wrap('client  93 01 01 a1 61 comment after one space')), /expected hex bytes/);
  assert.throws(() => parseWireBlocks(wrap('clinet  93 01 01')), /starts with "client", "server" or indentation/);
  assert.throws(() => parseWireBlocks(wrap('        93 01 01')), /continuation line without a frame/);
  assert.throws(() => parseWireBlocks(wrap('client  92 05 07', 'wire  with echo')), /malformed wire fence/);
  assert.throws(() => parseWireBlocks('```wire\nclient  92 05 07\n'), /unterminated wire block/);
  // other fenced blocks are prose, even when they look like wire lines
  assert.equal(parseWireBlocks('```\nclient  zz\n```\n').length, 0);
});
