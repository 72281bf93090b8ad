// Load generator process (forked by bench/run.mjs). Speaks wiregate.v1 or the baselines' minimal
// binary protocol over raw sockets. Commands arrive over IPC; results go back over IPC.
//
// Baseline protocol (raw ws, uWebSockets.js): echo = the server sends each binary message back;
// first byte 1 = subscribe to the broadcast, 2 = publish (server broadcasts the message to every
// subscriber, then answers the publisher with the single byte 3).
import { open, clientFrame, payloadOffset, readUint, binHeader, str, u32, now } from './lib/rawclient.mjs';

const send = (m) => process.send(m);
const TS_OFF = 1; // timestamp offset inside the payload (after the baseline's type byte)

function cpu() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

class Lat {
  constructor(max = 2_000_000) {
    this.v = new Float64Array(max);
    this.n = 0;
    this.seen = 0;
  }
  add(ms) {
    this.seen++;
    if (this.n < this.v.length) this.v[this.n++] = ms;
    else {
      const i = Math.floor(Math.random() * this.seen);
      if (i < this.v.length) this.v[i] = ms;
    }
  }
  summary() {
    const a = this.v.subarray(0, this.n).sort();
    const q = (p) => (a.length ? a[Math.min(a.length - 1, Math.floor(p * a.length))] : null);
    return { samples: this.seen, p50: q(0.5), p99: q(0.99), p999: q(0.999), max: a.length ? a[a.length - 1] : null };
  }
}

// socket.io over raw WebSocket: engine.io v4 text packets. '0{..}' open, '40' namespace connect,
// '2' ping (answer '3'), '42[...]' events.
const SIO_CONNECT = clientFrame(Buffer.from('40'), 1);
const SIO_PONG = clientFrame(Buffer.from('3'), 1);
async function openSio(url, onMessage) {
  const u = new URL(url);
  let ready;
  const connected = new Promise((r) => (ready = r));
  let api;
  let isConnected = false;
  api = await open(`ws://${u.host}/socket.io/?EIO=4&transport=websocket`, {
    onMessage: (b, s, e, self) => {
      if (e - s === 1 && b[s] === 0x32) return self.send(SIO_PONG);
      if (!isConnected) {
        if (b[s] === 0x34 && b[s + 1] === 0x30) {
          isConnected = true;
          ready();
        } else if (b[s] === 0x30) self.send(SIO_CONNECT);
        return;
      }
      onMessage(b, s, e);
    },
  });
  await connected;
  return api;
}
const sioEvent = (name, data) => clientFrame(Buffer.from(`42${JSON.stringify(data === undefined ? [name] : [name, data])}`), 1);

async function connectMany(url, protocol, n, onMessage, batch = 200, extensions) {
  if (protocol === 'socketio') {
    const conns = [];
    for (let i = 0; i < n; i += batch) {
      conns.push(...(await Promise.all(Array.from({ length: Math.min(batch, n - i) }, (_, k) => openSio(url, (b, s, e) => onMessage(i + k, b, s, e))))));
    }
    return conns;
  }
  const conns = [];
  for (let i = 0; i < n; i += batch) {
    const part = await Promise.all(
      Array.from({ length: Math.min(batch, n - i) }, (_, k) => {
        const idx = i + k;
        return open(url, { protocol, extensions, onMessage: (b, s, e) => onMessage(idx, b, s, e) });
      }),
    );
    conns.push(...part);
  }
  return conns;
}

// ---- echo / request-reply ------------------------------------------------------------------

async function echo({ url, kind, conns: nConns, inflight, size, warmup, duration }) {
  const wg = kind === 'wiregate';
  const sio = kind === 'socketio';
  const payload = Buffer.alloc(size, 0x61);
  // per connection: W pre-built frames (wiregate: id patched per slot), sent-at times
  const lat = new Lat();
  let count = 0;
  let bytes = 0;
  let recording = false;
  let running = true;
  const state = [];
  const frameFor = (slot) => {
    if (sio) return sioEvent('e', payload.toString('latin1'));
    if (!wg) return clientFrame(payload);
    const msg = Buffer.concat([Buffer.from([0x94, 0x04]), u32(slot + 1), str('echo'), binHeader(size), payload]);
    return clientFrame(msg);
  };
  const onMessage = (ci, b, s, e) => {
    const st = state[ci];
    const t = now();
    let slot;
    if (wg) {
      // [16, id, result]: 0x93 0x10 <uint id>
      slot = readUint(b, s + 2)[0] - 1;
    } else slot = st.fifo[st.head++ % inflight];
    if (recording) {
      count++;
      bytes += e - s;
      lat.add(t - st.sentAt[slot]);
    }
    if (running) {
      st.sentAt[slot] = now();
      if (!wg) st.fifo[st.tail++ % inflight] = slot;
      st.conn.send(st.frames[slot]);
    }
  };
  const conns = await connectMany(url, wg ? 'wiregate.v1' : sio ? 'socketio' : undefined, nConns, onMessage);
  conns.forEach((conn, i) => {
    const frames = Array.from({ length: inflight }, (_, k) => frameFor(k));
    state[i] = { conn, frames, sentAt: new Float64Array(inflight), fifo: new Int32Array(inflight), head: 0, tail: 0 };
  });
  send({ type: 'connected' });
  for (const st of state) {
    for (let k = 0; k < inflight; k++) {
      st.sentAt[k] = now();
      if (!wg) st.fifo[st.tail++ % inflight] = k;
      st.conn.send(st.frames[k]);
    }
  }
  await sleep(warmup);
  recording = true;
  const c0 = cpu();
  const t0 = now();
  await sleep(duration);
  recording = false;
  const elapsed = (now() - t0) / 1000;
  const cpuMs = cpu() - c0;
  running = false;
  for (const st of state) st.conn.close();
  return { messages: count, rate: count / elapsed, mbps: bytes / elapsed / 1e6, latency: lat.summary(), loadCpu: cpuMs / 1000 / elapsed, elapsed };
}

// ---- open-loop echo at a fixed rate (latency at a given load) ----------------------------------

async function paced({ url, kind, conns: nConns, rate, size, warmup, duration }) {
  const wg = kind === 'wiregate';
  const payload = Buffer.alloc(size, 0x61);
  const RING = 1 << 16;
  const lat = new Lat();
  let recording = false;
  let received = 0;
  const state = [];
  const onMessage = (ci, b, s) => {
    const st = state[ci];
    const t = now();
    // wiregate: the id (a uint32 we chose) indexes the send-time ring; baselines answer in order
    const seqNo = wg ? readUint(b, s + 2)[0] : st.acked++;
    if (recording) {
      received++;
      lat.add(t - st.sentAt[seqNo % RING]);
    }
  };
  const conns = await connectMany(url, wg ? 'wiregate.v1' : undefined, nConns, onMessage);
  conns.forEach((conn, i) => (state[i] = { conn, sentAt: new Float64Array(RING), sent: 0, acked: 0 }));
  const template = wg ? Buffer.concat([Buffer.from([0x94, 0x04]), u32(1), str('echo'), binHeader(size), payload]) : payload;
  const frame = clientFrame(template);
  const idOff = payloadOffset(template.length) + 3; // after 0x94 0x04 0xce
  send({ type: 'connected' });
  let total = 0;
  let next = 0;
  const t0 = now();
  const tick = () => {
    const due = Math.floor(((now() - t0) / 1000) * rate);
    while (total < due) {
      const st = state[next];
      next = (next + 1) % state.length;
      st.sentAt[st.sent % RING] = now();
      if (wg) {
        const f = Buffer.from(frame); // a fresh copy: the previous one may still be queued
        f.writeUInt32BE(st.sent % 0xffffffff, idOff);
        st.conn.send(f);
      } else st.conn.send(frame);
      st.sent++;
      total++;
    }
  };
  const timer = setInterval(tick, 1);
  await sleep(warmup);
  recording = true;
  const c0 = cpu();
  const ts = now();
  await sleep(duration);
  recording = false;
  const elapsed = (now() - ts) / 1000;
  clearInterval(timer);
  const cpuMs = cpu() - c0;
  for (const st of state) st.conn.close();
  return { target: rate, achieved: received / elapsed, latency: lat.summary(), loadCpu: cpuMs / 1000 / elapsed };
}

// ---- fan-out ---------------------------------------------------------------------------------

let subState = null;

async function subscribe({ url, kind, conns: n, topic, deflate }) {
  const wg = kind === 'wiregate';
  const sio = kind === 'socketio';
  const lat = new Lat(500_000);
  subState = { received: 0, lat, recording: false, acks: 0, positioned: 0, perConn: new Uint32Array(n) };
  const onMessage = (ci, b, s, e) => {
    if (wg) {
      if (b[s + 1] === 0x10) {
        subState.acks++;
        // [16, id, {seq, epoch}]: the topic keeps history (a plain subscribe answers [16, id])
        if (b[s] === 0x93) subState.positioned++;
        return;
      }
    }
    subState.received++;
    subState.perConn[ci]++; // total since subscribing, never reset
    if (subState.recording && !deflate) {
      // timestamp: float64 at TS_OFF of the payload, which is at the end of the frame
      // (socket.io: the decimal after 'T' in 42["m","T<ms>|aaaa"])
      const ts = sio ? Number(b.toString('latin1', s + 9, b.indexOf(0x7c, s))) : b.readDoubleLE(e - subState.size + TS_OFF);
      lat.add(now() - ts);
    }
  };
  const conns = await connectMany(url, wg ? 'wiregate.v1' : sio ? 'socketio' : undefined, n, onMessage, 200, deflate ? 'permessage-deflate; client_max_window_bits' : undefined);
  subState.conns = conns;
  for (const c of conns) c.send(wg ? clientFrame(Buffer.concat([Buffer.from([0x93, 0x01, 0x01]), str(topic)])) : sio ? sioEvent('s') : clientFrame(Buffer.from([1])));
  if (wg) while (subState.acks < n) await sleep(10);
  else await sleep(200);
  return { subscribed: n, positioned: subState.positioned };
}

async function publish({ url, kind, inflight, size, warmup, duration, topic }) {
  const wg = kind === 'wiregate';
  const sio = kind === 'socketio';
  const body = Buffer.alloc(size, 0x62);
  body[0] = 2;
  let sent = 0;
  let acked = 0;
  let running = true;
  let measuredFrom = -1;
  let measuredTo = -1;
  let conn;
  const build = () => {
    if (sio) {
      const t = `T${now()}|`;
      sent++;
      conn.send(sioEvent('p', t + 'b'.repeat(Math.max(0, size - t.length))));
      return;
    }
    body.writeDoubleLE(now(), TS_OFF);
    const msg = wg ? Buffer.concat([Buffer.from([0x94, 0x03]), u32(sent + 1), str(topic), binHeader(size), body]) : body;
    sent++;
    conn.send(clientFrame(msg));
  };
  const onAck = () => {
    acked++;
    if (running) build();
  };
  conn = sio ? await openSio(url, onAck) : await open(url, { protocol: wg ? 'wiregate.v1' : undefined, onMessage: onAck });
  for (let i = 0; i < inflight; i++) build();
  await sleep(warmup);
  measuredFrom = sent;
  send({ type: 'measuring' });
  const c0 = cpu();
  const t0 = now();
  await sleep(duration);
  running = false;
  measuredTo = sent;
  const elapsed = (now() - t0) / 1000;
  const cpuMs = cpu() - c0;
  // wait for outstanding acks (bounded)
  const end = now() + 10_000;
  while (acked < sent && now() < end) await sleep(20);
  conn.close();
  return { published: sent, acked, measured: measuredTo - measuredFrom, elapsed, loadCpu: cpuMs / 1000 / elapsed };
}

// ---- idle connections ------------------------------------------------------------------------

let idle = [];
async function openIdle({ url, kind, conns: n, batch, deflate }) {
  const t0 = now();
  const more = await connectMany(url, kind === 'wiregate' ? 'wiregate.v1' : undefined, n, () => {}, batch ?? 500, deflate ? 'permessage-deflate; client_max_window_bits' : undefined);
  idle.push(...more);
  return { opened: more.length, seconds: (now() - t0) / 1000 };
}

async function closeIdle() {
  for (const c of idle) c.close();
  idle = [];
  return true;
}

async function http({ url, body, connections, duration }) {
  const { default: autocannon } = await import('autocannon');
  const r = await autocannon({ url, method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer bench' }, body, connections, duration: duration / 1000, pipelining: 1 });
  return { requests: r.requests.total, rps: r.requests.average, latencyP50: r.latency.p50, latencyP99: r.latency.p99, errors: r.errors, non2xx: r.non2xx };
}

// ---- compression echo with the ws client (zlib is the bottleneck there) -----------------------

async function compressEcho({ url, conns: n, corpus, payloadFile, inflight, duration, warmup, deflate }) {
  const { default: WebSocket } = await import('ws');
  const { corpora } = await import('./lib/corpora.mjs');
  const messages = corpora(payloadFile).find((c) => c.name === corpus).messages;
  const { Packr } = await import('msgpackr');
  const packr = new Packr({ useRecords: false });
  const frames = messages.map((m, i) => packr.pack([4, (i % 1000) + 1, 'echo', m]));
  let count = 0;
  let recording = false;
  let running = true;
  const socks = await Promise.all(
    Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const ws = new WebSocket(url, 'wiregate.v1', { perMessageDeflate: deflate });
      ws.on('open', () => resolve(ws));
      ws.on('error', reject);
    })),
  );
  const rawBytes = () => socks.reduce((a, ws) => a + ws._socket.bytesRead + ws._socket.bytesWritten, 0);
  let i = 0;
  let payloadBytes = 0;
  for (const ws of socks) {
    ws.on('message', (data) => {
      if (recording) {
        count++;
        payloadBytes += data.length;
      }
      if (running) {
        const f = frames[i++ % frames.length];
        if (recording) payloadBytes += f.length;
        ws.send(f);
      }
    });
    for (let k = 0; k < inflight; k++) ws.send(frames[i++ % frames.length]);
  }
  await sleep(warmup);
  recording = true;
  const b0 = rawBytes();
  const c0 = cpu();
  const t0 = now();
  await sleep(duration);
  recording = false;
  const elapsed = (now() - t0) / 1000;
  const wire = rawBytes() - b0;
  const cpuMs = cpu() - c0;
  running = false;
  const negotiated = socks[0].extensions;
  socks.forEach((ws) => ws.terminate());
  // both directions: requests sent and replies received while recording, per echoed message
  return { messages: count, rate: count / elapsed, wireBytesPerMsg: count ? wire / count : null, payloadBytesPerMsg: count ? payloadBytes / count : null, negotiated, loadCpu: cpuMs / 1000 / elapsed };
}

// ---- compressed echo at server capacity (raw sockets, requests compressed once up front) --------
//
// The ws client above inflates and deflates every message through async zlib, so with it the load
// generator, not the server, sets the pace. Here each corpus message is deflated once, without
// context (valid under any negotiated context takeover: back-references are optional), as a
// pre-built compressed frame; replies are counted per frame and never inflated.

async function compressEchoRaw({ url, kind, conns: n, corpus, payloadFile, inflight, duration, warmup }) {
  const { deflateRawSync, constants } = await import('node:zlib');
  const { corpora } = await import('./lib/corpora.mjs');
  const { Packr } = await import('msgpackr');
  const packr = new Packr({ useRecords: false });
  const messages = corpora(payloadFile).find((c) => c.name === corpus).messages;
  const requests = messages.map((m, i) => packr.pack([4, (i % 1000) + 1, 'echo', m]));
  let count = 0;
  let recording = false;
  let running = true;
  let next = 0;
  let frames = null;
  const onMessage = (ci) => {
    if (recording) count++;
    if (running) conns[ci].send(frames[next++ % frames.length]);
  };
  const conns = await connectMany(url, kind === 'wiregate' ? 'wiregate.v1' : undefined, n, onMessage, 200, 'permessage-deflate; client_max_window_bits');
  const negotiated = conns[0].extensions;
  if (!/permessage-deflate/.test(negotiated)) throw new Error(`permessage-deflate not negotiated (${negotiated || 'no extensions'})`);
  const bits = Number(/client_max_window_bits=(\d+)/.exec(negotiated)?.[1] ?? 15);
  const sync = { finishFlush: constants.Z_SYNC_FLUSH, windowBits: Math.max(bits, 9) };
  frames = requests.map((r) => {
    const z = deflateRawSync(r, sync);
    return clientFrame(z.subarray(0, z.length - 4), 2, true);
  });
  const requestWire = frames.reduce((a, f) => a + f.length, 0) / frames.length;
  const requestPayload = requests.reduce((a, r) => a + r.length, 0) / requests.length;
  const rawBytes = () => conns.reduce((a, c) => a + c.socket.bytesRead, 0);
  send({ type: 'connected' });
  for (const c of conns) for (let k = 0; k < inflight; k++) c.send(frames[next++ % frames.length]);
  await sleep(warmup);
  recording = true;
  const b0 = rawBytes();
  const c0 = cpu();
  const t0 = now();
  await sleep(duration);
  recording = false;
  const elapsed = (now() - t0) / 1000;
  const replyWire = count ? (rawBytes() - b0) / count : null;
  const cpuMs = cpu() - c0;
  running = false;
  for (const c of conns) c.close();
  return { messages: count, rate: count / elapsed, negotiated, requestWire, requestPayload, replyWire, loadCpu: cpuMs / 1000 / elapsed };
}

// ---- recovery: a reconnect storm with `since` ---------------------------------------------------
//
// Clients subscribe to `rec/<t>` (t = client index modulo `topics`), remember {seq, epoch} and go
// away; the publisher (one more connection here) publishes while they are away; then they all
// reconnect at once and SUBSCRIBE with `since`. Every message is checked as it arrives (deliveries
// parsed by hand: [18, topic, seq, bin, flags?]): the RESULT first, {epoch unchanged, seq = last +
// missed, recovered: true}; then exactly seqs last+1..last+missed flagged RECOVERED (2), each with
// the payload published for that topic and seq; then the live message, unflagged. Anything else is
// a failure, counted and described (the first 20).

const REC_PAYLOAD = 64;
const F_RECOVERED = 2;
let rec = null;

function recFail(c, what) {
  rec.failures++;
  if (rec.samples.length < 20) rec.samples.push(`client ${c.i} (${c.topic}): ${what}`);
  if (!c.failed) {
    c.failed = true;
    rec.failedClients++;
    rec.check();
  }
}

/** One client's message handler: RESULT / ERROR through msgpackr, MESSAGE by hand. */
function recOnMessage(c, b, s, e) {
  if ((b[s] === 0x94 || b[s] === 0x95) && b[s + 1] === 0x12) {
    let p = s + 2;
    let len = -1;
    if ((b[p] & 0xe0) === 0xa0) len = b[p++] & 0x1f;
    else if (b[p] === 0xd9) {
      len = b[p + 1];
      p += 2;
    }
    if (len !== c.topicBuf.length || c.topicBuf.compare(b, p, p + len) !== 0) return recFail(c, `MESSAGE for another topic (${b.toString('latin1', p, p + Math.max(len, 0))})`);
    let seq;
    [seq, p] = readUint(b, p + len);
    if (b[p] !== 0xc4 || b[p + 1] !== REC_PAYLOAD) return recFail(c, `MESSAGE seq ${seq}: payload is not ${REC_PAYLOAD} B of bin`);
    const t = b.readUInt32BE(p + 2);
    const k = b.readUInt32BE(p + 6);
    const flags = b[s] === 0x95 ? b[p + 2 + REC_PAYLOAD] : 0;
    return recDelivery(c, seq, flags, t, k);
  }
  let m;
  try {
    m = rec.unpack(b.subarray(s, e));
  } catch (err) {
    return recFail(c, `undecodable message (${err.message})`);
  }
  if (Array.isArray(m) && m[0] === 16 && m[1] === 1) return recResult(c, m[2]);
  recFail(c, `unexpected ${JSON.stringify(m).slice(0, 200)}`);
}

function recResult(c, r) {
  if (c.phase !== 'result') return recFail(c, `RESULT in phase ${c.phase}: ${JSON.stringify(r)}`);
  c.resultAt = now();
  rec.results++;
  if (r === null || typeof r !== 'object' || typeof r.seq !== 'number' || typeof r.epoch !== 'string') return recFail(c, `RESULT without a position: ${JSON.stringify(r)}`);
  if (c.since) {
    const want = c.last + rec.missed;
    if (r.recovered !== true || r.epoch !== rec.epoch || r.seq !== want) return recFail(c, `RESULT ${JSON.stringify(r)}, expected {seq: ${want}, epoch: ${rec.epoch}, recovered: true}`);
    c.phase = 'recover';
    c.recovered = 0;
    if (rec.missed === 0) recDone(c);
  } else {
    if (c.base === null) {
      c.base = r.seq; // first subscribe: the topic's position before anything was published here
      c.last = r.seq;
      if (rec.epoch === null) rec.epoch = r.epoch;
    } else if (r.seq !== c.last) return recFail(c, `RESULT seq ${r.seq}, expected ${c.last} (nothing was published meanwhile)`);
    if (r.epoch !== rec.epoch) return recFail(c, `epoch ${r.epoch}, expected ${rec.epoch}`);
    recDone(c);
  }
}

function recDone(c) {
  c.phase = 'live';
  c.doneAt = now();
  rec.done++;
  rec.check();
}

function recDelivery(c, seq, flags, t, k) {
  if (seq !== c.last + 1) return recFail(c, `seq ${seq} after ${c.last} (phase ${c.phase})`);
  if (t !== c.t || k !== seq - c.base) return recFail(c, `seq ${seq} carries the payload of topic ${t} message ${k}, expected topic ${c.t} message ${seq - c.base}`);
  c.last = seq;
  if (c.phase === 'recover') {
    if (flags !== F_RECOVERED) return recFail(c, `seq ${seq}: flags ${flags} while recovering, expected ${F_RECOVERED}`);
    if (++c.recovered === rec.missed) recDone(c);
  } else if (c.phase === 'live') {
    if (flags !== 0) return recFail(c, `live seq ${seq}: flags ${flags}, expected none`);
    c.liveAt = now();
    c.lives++;
    rec.lives++;
    rec.check();
  } else recFail(c, `MESSAGE seq ${seq} in phase ${c.phase}`);
}

/** Waits until `cond()` (checked on each event that may change it) or `ms`; resolves false on timeout. */
function recWait(cond, ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      rec.check = () => {};
      resolve(false);
    }, ms);
    rec.check = () => {
      if (!cond()) return;
      clearTimeout(timer);
      rec.check = () => {};
      resolve(true);
    };
    rec.check();
  });
}

/** The publisher: publishes [3, id, topic, bin] with `window` unacknowledged at most; checks every ack's seq. */
function recPublish(perTopic, ms) {
  const order = [];
  for (let j = 0; j < perTopic; j++) for (let t = 0; t < rec.topics; t++) order.push(t);
  return new Promise((resolve, reject) => {
    const window = 256;
    let next = 0;
    let acked = 0;
    const t0 = now();
    const timer = setTimeout(() => reject(new Error(`publishing: ${acked} of ${order.length} acknowledged after ${ms} ms`)), ms);
    const sendNext = () => {
      const t = order[next++];
      const k = ++rec.topicK[t];
      const body = Buffer.alloc(REC_PAYLOAD, 0x63);
      body.writeUInt32BE(t, 0);
      body.writeUInt32BE(k, 4);
      const id = ++rec.pubId;
      rec.pending.set(id, { t, k });
      rec.pub.send(clientFrame(Buffer.concat([Buffer.from([0x94, 0x03]), u32(id), str(`rec/${t}`), binHeader(REC_PAYLOAD), body])));
    };
    rec.onAck = (id, seq, err) => {
      const p = rec.pending.get(id);
      rec.pending.delete(id);
      if (err || p === undefined) {
        clearTimeout(timer);
        return reject(new Error(`publish ${id}: ${err ?? 'unknown id'}`));
      }
      if (seq !== rec.topicBase[p.t] + p.k) {
        clearTimeout(timer);
        return reject(new Error(`publish to rec/${p.t} #${p.k} got seq ${seq}, expected ${rec.topicBase[p.t] + p.k}`));
      }
      if (++acked === order.length) {
        clearTimeout(timer);
        resolve({ published: acked, seconds: (now() - t0) / 1000 });
      } else if (next < order.length) sendNext();
    };
    for (let i = 0; i < window && next < order.length; i++) sendNext();
    if (order.length === 0) {
      clearTimeout(timer);
      resolve({ published: 0, seconds: 0 });
    }
  });
}

/** Opens every client's connection at once and subscribes (with `since` or not); resolves with the timings. */
async function recConnectAll(url, since, ms) {
  const { Packr } = await import('msgpackr');
  const packr = new Packr({ useRecords: false });
  const c0 = cpu();
  const t0 = now();
  let connected = 0;
  let connectedAt = t0;
  rec.results = 0;
  rec.done = 0;
  for (const c of rec.clients) {
    c.phase = 'result';
    c.since = since;
    c.closing = false;
    c.connectedAt = c.resultAt = c.doneAt = null;
  }
  const finished = recWait(() => rec.done + rec.failedClients >= rec.clients.length, ms);
  for (const c of rec.clients) {
    const opts = since ? { since: { seq: c.last, epoch: rec.epoch } } : undefined;
    const sub = clientFrame(packr.pack(opts ? [1, 1, c.topic, opts] : [1, 1, c.topic]));
    const gen = ++c.gen; // a close of an earlier connection of this client is not a failure
    const onClose = () => c.gen !== gen || c.closing || recFail(c, `connection closed by the server in phase ${c.phase}`);
    open(url, { protocol: 'wiregate.v1', onMessage: (b, s, e) => recOnMessage(c, b, s, e), onClose }).then(
      (conn) => {
        c.conn = conn;
        c.connectedAt = now();
        connected++;
        connectedAt = c.connectedAt;
        conn.send(sub);
      },
      (err) => recFail(c, `connect: ${err.message}`),
    );
  }
  const complete = await finished;
  const elapsed = (now() - t0) / 1000;
  const ok = rec.clients.filter((c) => !c.failed && c.doneAt !== null);
  const quantiles = (values) => {
    const a = values.sort((x, y) => x - y);
    const q = (p) => (a.length ? a[Math.min(a.length - 1, Math.floor(p * a.length))] : null);
    return { p50: q(0.5), p99: q(0.99), max: a.length ? a[a.length - 1] : null };
  };
  const firstResult = Math.min(...rec.clients.map((c) => c.resultAt ?? Infinity));
  return {
    clients: rec.clients.length,
    complete,
    connected,
    connectMs: connectedAt - t0,
    // handshakes that took a second or more: a SYN the kernel dropped (full listen queue) and retried
    slowConnects: rec.clients.filter((c) => c.connectedAt !== null && c.connectedAt - t0 >= 1000).length,
    firstResultMs: Number.isFinite(firstResult) ? firstResult - t0 : null,
    resultsMs: ok.length ? Math.max(...ok.map((c) => c.resultAt)) - t0 : null,
    doneMs: ok.length ? Math.max(...ok.map((c) => c.doneAt)) - t0 : null,
    // per client: from the first connect of the storm, and from its own completed handshake
    perClient: quantiles(ok.map((c) => c.doneAt - t0)),
    afterHandshake: quantiles(ok.map((c) => c.doneAt - c.connectedAt)),
    recoveredMessages: since ? rec.clients.reduce((a, c) => a + (c.recovered ?? 0), 0) : 0,
    loadCpu: (cpu() - c0) / 1000 / elapsed,
  };
}

/** Connects `clients` clients (plus the publisher), subscribes each to its topic, publishes `warm` messages per topic and waits for them. */
async function recoverySetup({ url, clients: n, topics, warm }) {
  const { unpack } = await import('msgpackr');
  rec = {
    unpack,
    topics,
    missed: 0, // messages published to each topic since the clients went away
    epoch: null,
    failures: 0,
    failedClients: 0,
    samples: [],
    results: 0,
    done: 0,
    lives: 0,
    check: () => {},
    pubId: 0,
    pending: new Map(),
    onAck: () => {},
    topicK: new Uint32Array(topics),
    topicBase: new Array(topics).fill(null),
    clients: Array.from({ length: n }, (_, i) => {
      const t = i % topics;
      return { i, t, topic: `rec/${t}`, topicBuf: Buffer.from(`rec/${t}`), conn: null, gen: 0, base: null, last: 0, lives: 0, failed: false, phase: 'result', closing: false };
    }),
  };
  rec.pub = await open(url, {
    protocol: 'wiregate.v1',
    onMessage: (b, s, e) => {
      if (b[s] === 0x93 && b[s + 1] === 0x10) {
        const [id, p] = readUint(b, s + 2);
        return rec.onAck(id, readUint(b, p)[0]);
      }
      const m = rec.unpack(b.subarray(s, e));
      rec.onAck(m[1], null, JSON.stringify(m).slice(0, 200));
    },
  });
  // the first connection of every client, in batches like the other scenarios (not measured)
  const saved = [...rec.clients];
  for (let i = 0; i < saved.length; i += 200) {
    rec.clients = saved.slice(i, i + 200);
    const r = await recConnectAll(url, false, 30_000);
    if (!r.complete) break;
  }
  rec.clients = saved;
  for (const c of rec.clients) if (rec.topicBase[c.t] === null) rec.topicBase[c.t] = c.base;
  if (rec.failures) return recSummary({ phase: 'setup' });
  rec.lives = 0;
  const live = recWait(() => rec.lives + rec.failedClients * warm >= n * warm, 30_000);
  await recPublish(warm, 30_000);
  const complete = await live;
  return recSummary({ phase: 'setup', complete, epoch: rec.epoch });
}

/** Every client goes away at once (sockets destroyed, as a dropped network would). */
async function recoveryDisconnect() {
  rec.missed = 0;
  for (const c of rec.clients) {
    c.closing = true;
    c.phase = 'away';
    c.conn?.close();
    c.conn = null;
  }
  return true;
}

/** While the clients are away: the publisher publishes `perTopic` messages to every topic and waits for their acks. */
async function recoveryPublish({ perTopic }) {
  const r = await recPublish(perTopic, 60_000);
  rec.missed += perTopic;
  return r;
}

/** The reconnect storm: everyone at once, with `since` (or a plain SUBSCRIBE). */
async function recoveryStorm({ url, since, timeoutMs }) {
  const r = await recConnectAll(url, since, timeoutMs);
  return { ...r, ...recSummary({}) };
}

/** One live message per topic; waits until every client has it, then a grace period for duplicates or extras. */
async function recoveryLive({ timeoutMs, graceMs }) {
  rec.lives = 0;
  for (const c of rec.clients) c.lives = 0;
  const n = rec.clients.length;
  const all = recWait(() => rec.lives + rec.failedClients >= n, timeoutMs);
  const t0 = now();
  await recPublish(1, timeoutMs);
  const complete = await all;
  const liveMs = now() - t0;
  await sleep(graceMs);
  for (const c of rec.clients) {
    if (c.failed) continue;
    if (c.phase !== 'live') recFail(c, `never finished (phase ${c.phase}, ${c.recovered ?? 0} recovered)`);
    else if (c.lives !== 1) recFail(c, `${c.lives} live messages, expected 1`);
  }
  return { complete, liveMs, ...recSummary({}) };
}

function recSummary(extra) {
  return { ...extra, failures: rec.failures, failedClients: rec.failedClients, samples: rec.samples };
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

const handlers = { echo, paced, subscribe, publish, openIdle, closeIdle, compressEcho, compressEchoRaw, http, recoverySetup, recoveryDisconnect, recoveryPublish, recoveryStorm, recoveryLive };

process.on('message', async (m) => {
  if (m.cmd === 'exit') {
    for (const c of idle) c.close();
    if (subState?.conns) for (const c of subState.conns) c.close();
    if (rec) {
      rec.pub?.close();
      for (const c of rec.clients) {
        c.closing = true;
        c.conn?.close();
      }
    }
    process.exit(0);
  }
  if (m.cmd === 'subStats') {
    send({ type: 'result', id: m.id, result: { received: subState.received, latency: subState.lat.summary(), minPerConn: Math.min(...subState.perConn), maxPerConn: Math.max(...subState.perConn) } });
    return;
  }
  if (m.cmd === 'record') {
    subState.size = m.size;
    subState.recording = m.on;
    if (m.reset) subState.received = 0;
    send({ type: 'result', id: m.id, result: true });
    return;
  }
  try {
    const result = await handlers[m.cmd](m.args);
    send({ type: 'result', id: m.id, result, cpu: cpu() });
  } catch (err) {
    send({ type: 'result', id: m.id, error: String(err?.stack ?? err) });
  }
});
send({ type: 'ready' });
