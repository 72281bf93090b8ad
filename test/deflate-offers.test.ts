// permessage-deflate offers as real clients send them (RFC 7692), over a raw TCP socket with a
// hand-written upgrade request: every offer RFC 7692 allows gets 101, with an answer the client may
// accept (negotiated down to the configured windows) or no extension at all (declined, the
// connection continues uncompressed). Each negotiation is then used: a compressed PING and a
// compressed REQUEST whose payload repeats at a distance only the negotiated windows allow, both
// ways, so a server that compressed or inflated with other parameters than it answered would fail.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tcpConnect, type Socket } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { constants, deflateRawSync, inflateRawSync } from 'node:zlib';
import * as wsModule from 'ws';
import { startGateway, type Started } from './helpers.js';
import { COMPRESSION_PRESETS } from '../src/config/schema.js';
import { decodeFrame, encode } from '../src/protocol/messages.js';
import { internals } from '../src/gateway.js';
import { negotiateDeflateOffer } from '../src/transport/deflate-offer.js';

type Params = Record<string, Array<string | true>>;
// ws's own header parser, to read offers and answers the way a client library would
const { extension } = wsModule as unknown as { extension: { parse(h: string): Record<string, Params[]> } };

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

// ---- a raw WebSocket client --------------------------------------------------------------------

interface Frame {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  payload: Buffer;
}

/** A TCP socket read as a byte stream: waits for data instead of timing anything. */
class RawConn {
  private buf: Buffer = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private ended: string | null = null;

  constructor(readonly sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
      this.notify();
    });
    sock.on('error', (e) => {
      this.ended ??= `socket error: ${e.message}`;
      this.notify();
    });
    sock.on('close', () => {
      this.ended ??= 'socket closed';
      this.notify();
    });
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async more(): Promise<void> {
    if (this.ended !== null) throw new Error(`${this.ended} (unread: ${JSON.stringify(this.buf.toString('latin1'))})`);
    await new Promise<void>((resolve) => (this.wake = resolve));
  }

  private async take(n: number): Promise<Buffer> {
    while (this.buf.length < n) await this.more();
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** The HTTP response head: status and headers (lower-case names, every value of each). */
  async response(): Promise<{ status: number; headers: Map<string, string[]> }> {
    let end: number;
    while ((end = this.buf.indexOf('\r\n\r\n')) === -1) await this.more();
    const lines = this.buf.subarray(0, end).toString('latin1').split('\r\n');
    this.buf = this.buf.subarray(end + 4);
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(lines[0])?.[1] ?? NaN);
    const headers = new Map<string, string[]>();
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      const name = line.slice(0, i).trim().toLowerCase();
      headers.set(name, [...(headers.get(name) ?? []), line.slice(i + 1).trim()]);
    }
    return { status, headers };
  }

  /** The next server frame (servers never mask). */
  async frame(): Promise<Frame> {
    const [b0, b1] = await this.take(2);
    assert.equal(b1 & 0x80, 0, 'server frames are not masked');
    let len = b1 & 0x7f;
    if (len === 126) len = (await this.take(2)).readUInt16BE(0);
    else if (len === 127) len = Number((await this.take(8)).readBigUInt64BE(0));
    assert.equal(b0 & 0x30, 0, 'RSV2 and RSV3 clear');
    return { fin: (b0 & 0x80) !== 0, rsv1: (b0 & 0x40) !== 0, opcode: b0 & 0x0f, payload: Buffer.from(await this.take(len)) };
  }
}

/** A masked binary client frame (random key); RSV1 marks it compressed. */
function clientFrame(payload: Buffer, rsv1: boolean): Buffer {
  const b0 = 0x80 | (rsv1 ? 0x40 : 0) | 0x02;
  const n = payload.length;
  let head: Buffer;
  if (n < 126) head = Buffer.from([b0, 0x80 | n]);
  else if (n < 65536) {
    head = Buffer.from([b0, 0x80 | 126, 0, 0]);
    head.writeUInt16BE(n, 2);
  } else throw new Error('test frames stay below 64 KiB');
  const mask = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i & 3];
  return Buffer.concat([head, mask, body]);
}

/** Opens a raw connection and sends a hand-written upgrade request with the given extension header lines. */
async function upgrade(t: TestContext, s: Started, extensions: string[]): Promise<{ conn: RawConn; status: number; headers: Map<string, string[]> }> {
  const sock = tcpConnect(s.port, '127.0.0.1');
  t.after(() => sock.destroy());
  const conn = new RawConn(sock);
  const key = randomBytes(16).toString('base64');
  const lines = [
    `GET ${s.gw.config.path} HTTP/1.1`,
    `Host: 127.0.0.1:${s.port}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${key}`,
    'Sec-WebSocket-Version: 13',
    'Sec-WebSocket-Protocol: wiregate.v1',
    ...extensions.map((e) => `Sec-WebSocket-Extensions: ${e}`),
  ];
  sock.write(lines.join('\r\n') + '\r\n\r\n');
  const { status, headers } = await conn.response();
  if (status === 101) assert.deepEqual(headers.get('sec-websocket-accept'), [createHash('sha1').update(key + GUID).digest('base64')]);
  return { conn, status, headers };
}

// ---- what a valid answer is (RFC 7692 section 7) ------------------------------------------------

interface Negotiated {
  serverNoContext: boolean;
  clientNoContext: boolean;
  /** Window the server may compress with (what the client inflates with). */
  serverBits: number;
  /** Window the client compresses with (15 when the answer does not limit it). */
  clientBits: number;
  /** The answer's parameters as stated (numbers for window sizes), as ws records them. */
  params: Record<string, true | number>;
}

const BITS = /^(8|9|1[0-5])$/;

/** Why `answer` is not a valid response to `offer`, or null when it is. */
function answerProblem(offer: Params, answer: Params): string | null {
  for (const [k, v] of Object.entries(answer)) {
    if (v.length !== 1) return `${k} given ${v.length} times`;
    if (k === 'server_no_context_takeover' || k === 'client_no_context_takeover') {
      if (v[0] !== true) return `${k} has a value`;
    } else if (k === 'server_max_window_bits' || k === 'client_max_window_bits') {
      if (v[0] === true || !BITS.test(v[0])) return `${k}=${v[0]} is not 8..15`;
    } else return `unknown parameter ${k}`;
  }
  if (offer.server_no_context_takeover && !answer.server_no_context_takeover) return 'server_no_context_takeover offered but not in the answer';
  if (offer.server_max_window_bits) {
    if (!answer.server_max_window_bits) return 'server_max_window_bits offered but not in the answer';
    if (Number(answer.server_max_window_bits[0]) > Number(offer.server_max_window_bits[0])) return 'server_max_window_bits larger than offered';
  }
  if (answer.client_max_window_bits) {
    if (!offer.client_max_window_bits) return 'client_max_window_bits answered but not offered';
    const o = offer.client_max_window_bits[0];
    if (o !== true && Number(answer.client_max_window_bits[0]) > Number(o)) return 'client_max_window_bits larger than offered';
  }
  return null;
}

/** Asserts the response's Sec-WebSocket-Extensions answers one of the offers; null when compression was declined. */
function checkAnswer(offerLines: string[], answerLines: string[] | undefined): Negotiated | null {
  if (answerLines === undefined) return null;
  assert.equal(answerLines.length, 1, 'one Sec-WebSocket-Extensions header');
  const answer = extension.parse(answerLines[0]);
  assert.deepEqual(Object.keys(answer), ['permessage-deflate'], `only permessage-deflate is answered: ${answerLines[0]}`);
  assert.equal(answer['permessage-deflate'].length, 1, 'exactly one permessage-deflate configuration');
  const a = answer['permessage-deflate'][0];
  const offers = offerLines.flatMap((l) => extension.parse(l)['permessage-deflate'] ?? []);
  const problems = offers.map((o) => answerProblem(o, a));
  assert.ok(problems.includes(null), `${answerLines[0]} is not a valid answer to ${JSON.stringify(offerLines)}: ${problems.join('; ')}`);
  const params: Record<string, true | number> = {};
  for (const [k, [v]] of Object.entries(a)) params[k] = v === true ? true : Number(v);
  return {
    serverNoContext: a.server_no_context_takeover !== undefined,
    clientNoContext: a.client_no_context_takeover !== undefined,
    serverBits: a.server_max_window_bits ? Number(a.server_max_window_bits[0]) : 15,
    clientBits: a.client_max_window_bits ? Number(a.client_max_window_bits[0]) : 15,
    params,
  };
}

// ---- the offers ---------------------------------------------------------------------------------

interface Offer {
  name: string;
  /** Sec-WebSocket-Extensions header lines (usually one). */
  lines: string[];
  /** Whether permessage-deflate must be negotiated (false: declined, connection uncompressed). */
  accepted: boolean;
}

const OFFERS: Offer[] = [
  { name: 'Chromium', lines: ['permessage-deflate; client_max_window_bits'], accepted: true },
  { name: 'gorilla/websocket', lines: ['permessage-deflate; server_no_context_takeover; client_no_context_takeover'], accepted: true },
  { name: 'Python websockets default', lines: ['permessage-deflate; client_max_window_bits'], accepted: true },
  { name: 'Python websockets with windows', lines: ['permessage-deflate; server_max_window_bits=12; client_max_window_bits=12'], accepted: true },
  { name: 'bare permessage-deflate (Firefox, embedded stacks)', lines: ['permessage-deflate'], accepted: true },
  { name: 'server_max_window_bits=9 (smaller than configured)', lines: ['permessage-deflate; server_max_window_bits=9'], accepted: true },
  { name: 'client_max_window_bits=8 hint', lines: ['permessage-deflate; client_max_window_bits=8'], accepted: true },
  { name: 'two offers, the first acceptable', lines: ['permessage-deflate; server_max_window_bits=10; client_max_window_bits=10, permessage-deflate; client_max_window_bits'], accepted: true },
  { name: 'two offers, the first declined (server_max_window_bits=8)', lines: ['permessage-deflate; server_max_window_bits=8; client_max_window_bits, permessage-deflate; server_no_context_takeover'], accepted: true },
  { name: 'two offers in two header lines', lines: ['permessage-deflate; server_max_window_bits=8', 'permessage-deflate; client_max_window_bits'], accepted: true },
  { name: 'x-webkit-deflate-frame only (unknown extension)', lines: ['x-webkit-deflate-frame; no_context_takeover'], accepted: false },
  { name: 'x-webkit-deflate-frame, then permessage-deflate', lines: ['x-webkit-deflate-frame, permessage-deflate; client_max_window_bits'], accepted: true },
  { name: 'unknown parameter (declined)', lines: ['permessage-deflate; mystery_param=1'], accepted: false },
  { name: 'window out of range (declined)', lines: ['permessage-deflate; server_max_window_bits=16'], accepted: false },
  { name: 'parameter given twice (declined)', lines: ['permessage-deflate; client_no_context_takeover; client_no_context_takeover'], accepted: false },
];

const PRESETS = ['fast', 'balanced', 'max', 'lowmem'] as const;

/** Random bytes repeated at a distance of 1500: back-references only windows of 11 bits and more allow. */
function windowProbe(): Buffer {
  const block = randomBytes(1500);
  return Buffer.concat([block, block, block]);
}

/** The permessage-deflate state of the raw client: compress with the client window, inflate with the server's. */
class ClientDeflate {
  private received: Buffer[] = [];
  private inflated = 0;
  constructor(private readonly n: Negotiated | null) {}

  frame(msg: Uint8Array): Buffer {
    if (this.n === null) return clientFrame(Buffer.from(msg), false);
    // every client message from a fresh context: always allowed, context takeover or not
    const z = deflateRawSync(msg, { windowBits: this.n.clientBits, finishFlush: constants.Z_SYNC_FLUSH });
    assert.ok(z.subarray(-4).equals(TAIL));
    return clientFrame(z.subarray(0, -4), true);
  }

  /** A server message: inflated with the negotiated server window, keeping the server's context. */
  message(f: Frame): Buffer {
    if (!f.rsv1) return f.payload;
    assert.ok(this.n !== null, 'no compressed frame when permessage-deflate was declined');
    // With context takeover the server's messages form one DEFLATE stream; without it each starts
    // fresh, which a decoder of the whole stream reads the same way. Inflating everything received
    // so far and keeping the new tail is an inflater that keeps its state across messages.
    // zlib checks a back-reference against the window only when it reaches behind the current
    // output buffer: 64-byte output chunks make every reference longer than the negotiated window
    // fail ("invalid distance too far back"), as in a client with a window-sized buffer.
    this.received.push(f.payload, TAIL);
    const all = inflateRawSync(Buffer.concat(this.received), { windowBits: this.n.serverBits, finishFlush: constants.Z_SYNC_FLUSH, chunkSize: 64 });
    const out = all.subarray(this.inflated);
    this.inflated = all.length;
    return out;
  }
}

async function nextMessage(conn: RawConn, z: ClientDeflate): Promise<Buffer> {
  for (;;) {
    const f = await conn.frame();
    if (f.opcode === 0x9 || f.opcode === 0xa) continue; // a heartbeat ping (or pong) is not ours
    assert.equal(f.opcode, 0x2, `binary frame (opcode ${f.opcode}, payload ${f.payload.toString('hex')})`);
    assert.ok(f.fin, 'unfragmented');
    return z.message(f);
  }
}

for (const preset of PRESETS) {
  const cfg = COMPRESSION_PRESETS[preset];
  test(`permessage-deflate offers against preset ${preset}: 101, a valid answer, a working round trip`, async (t) => {
    const s = await startGateway({ compression: { preset } });
    t.after(() => s.gw.close());
    s.gw.handle('echo', (_c, p) => p);
    for (const offer of OFFERS) {
      await t.test(offer.name, async (t) => {
        const { conn, status, headers } = await upgrade(t, s, offer.lines);
        assert.equal(status, 101, `offer ${JSON.stringify(offer.lines)} must not be refused`);
        assert.deepEqual(headers.get('sec-websocket-protocol'), ['wiregate.v1']);
        const n = checkAnswer(offer.lines, headers.get('sec-websocket-extensions'));
        assert.equal(n !== null, offer.accepted, `negotiated: ${headers.get('sec-websocket-extensions')}`);
        if (n !== null) {
          // negotiated down to the configuration, never above it
          assert.ok(n.serverBits <= cfg.serverMaxWindowBits, `server window ${n.serverBits} within the configured ${cfg.serverMaxWindowBits}`);
          if (n.params.client_max_window_bits !== undefined) assert.ok(n.clientBits <= cfg.clientMaxWindowBits, 'client window within the configured one');
          if (cfg.serverNoContextTakeover) assert.ok(n.serverNoContext, 'configured server_no_context_takeover is answered');
          if (cfg.clientNoContextTakeover) assert.ok(n.clientNoContext, 'configured client_no_context_takeover is answered');
          // ws runs the connection with exactly the answered parameters, and wiregate's own
          // compressed frames use the answered server window
          const rt = internals(s.gw);
          const session = [...rt.sessions].find((x) => (x.ws as unknown as { _socket: Socket })._socket.remotePort === conn.sock.localPort);
          assert.ok(session, 'the session of this connection');
          const ext = (session.ws as unknown as { _extensions: Record<string, { params: unknown }> })._extensions['permessage-deflate'];
          assert.deepEqual({ ...(ext.params as object) }, n.params);
          if (rt.fastPaths.directWrites) assert.equal(session.zBits, n.serverNoContext ? n.serverBits : 0);
        }
        const z = new ClientDeflate(n);
        // PING [5, 1] -> PONG [20, 1]
        const ping = encode([5, 1]);
        assert.equal(Buffer.from(ping).toString('hex'), '920501');
        conn.sock.write(z.frame(ping));
        assert.equal((await nextMessage(conn, z)).toString('hex'), '921401');
        // a request whose payload repeats 1500 bytes back, compressed with the client window,
        // echoed compressed (above every preset's threshold) with the server window
        const probe = windowProbe();
        conn.sock.write(z.frame(encode([4, 2, 'echo', probe])));
        const reply = decodeFrame(await nextMessage(conn, z)) as unknown[][];
        assert.equal(reply.length, 1);
        assert.deepEqual(reply[0].slice(0, 2), [16, 2]);
        assert.ok(Buffer.from(reply[0][2] as Uint8Array).equals(probe), 'echoed payload intact');
      });
    }
  });
}

test('a syntactically invalid Sec-WebSocket-Extensions header still gets 400', async (t) => {
  const s = await startGateway({ compression: { preset: 'fast' } });
  t.after(() => s.gw.close());
  for (const bad of ['permessage-deflate; =1', 'permessage-deflate,,', 'permessage-deflate; client_max_window_bits="1']) {
    const { status } = await upgrade(t, s, [bad]);
    assert.equal(status, 400, bad);
  }
});

test('compression off: offers are ignored, the connection is uncompressed', async (t) => {
  const s = await startGateway({ compression: { preset: 'off' } });
  t.after(() => s.gw.close());
  // in a subtest, so that its socket is closed before the gateway drains
  await t.test('gorilla/websocket offer', async (t) => {
    const { conn, status, headers } = await upgrade(t, s, ['permessage-deflate; server_no_context_takeover; client_no_context_takeover']);
    assert.equal(status, 101);
    assert.equal(headers.get('sec-websocket-extensions'), undefined);
    const z = new ClientDeflate(null);
    conn.sock.write(z.frame(encode([5, 1])));
    assert.equal((await nextMessage(conn, z)).toString('hex'), '921401');
  });
});

test('negotiateDeflateOffer: answers per preset', () => {
  const answer = (preset: (typeof PRESETS)[number], offer: string) => negotiateDeflateOffer(offer, COMPRESSION_PRESETS[preset]);
  const gorilla = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';
  // gorilla requires both no-context-takeover parameters in the answer and never gets a client window
  for (const p of ['fast', 'balanced', 'max'] as const) assert.equal(answer(p, gorilla), gorilla);
  assert.equal(answer('lowmem', gorilla), `${gorilla}; server_max_window_bits=10`);
  // a client window only when offered, never above the offered or configured one
  assert.equal(answer('fast', 'permessage-deflate; client_max_window_bits'), 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=15');
  assert.equal(answer('lowmem', 'permessage-deflate; client_max_window_bits'), 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=10');
  assert.equal(answer('balanced', 'permessage-deflate; server_max_window_bits=12; client_max_window_bits=12'), 'permessage-deflate; server_no_context_takeover; server_max_window_bits=12; client_max_window_bits=12');
  assert.equal(answer('lowmem', 'permessage-deflate; server_max_window_bits=12; client_max_window_bits=12'), 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=10');
  // a smaller server window than configured is honoured; context takeover kept where allowed
  assert.equal(answer('max', 'permessage-deflate; server_max_window_bits=9'), 'permessage-deflate; server_max_window_bits=9');
  assert.equal(answer('max', 'permessage-deflate'), 'permessage-deflate');
  assert.equal(answer('balanced', 'permessage-deflate'), 'permessage-deflate; server_no_context_takeover');
  // declined: no permessage-deflate offer, or none the server can honour
  assert.equal(answer('fast', 'x-webkit-deflate-frame'), undefined);
  assert.equal(answer('fast', 'permessage-deflate; server_max_window_bits=8'), undefined);
  assert.equal(answer('fast', 'permessage-deflate; client_max_window_bits=7'), undefined);
  assert.equal(answer('fast', 'permessage-deflate; server_no_context_takeover=1'), undefined);
  assert.equal(answer('fast', 'permessage-deflate; server_max_window_bits'), undefined);
  assert.equal(answer('fast', 'permessage-deflate; server_max_window_bits=10; server_max_window_bits=11'), undefined);
  assert.equal(answer('fast', undefined as unknown as string), undefined);
  // quoted values are values
  assert.equal(answer('max', 'permessage-deflate; client_max_window_bits="11"'), 'permessage-deflate; client_max_window_bits=11');
  // unparseable: handed to ws unchanged (400)
  assert.equal(answer('fast', 'permessage-deflate;;'), 'permessage-deflate;;');
});
