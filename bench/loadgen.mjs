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
  subState = { received: 0, lat, recording: false, acks: 0, perConn: new Uint32Array(n) };
  const onMessage = (ci, b, s, e) => {
    if (wg) {
      if (b[s + 1] === 0x10) {
        subState.acks++;
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
  return { subscribed: n };
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

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

const handlers = { echo, paced, subscribe, publish, openIdle, closeIdle, compressEcho, compressEchoRaw, http };

process.on('message', async (m) => {
  if (m.cmd === 'exit') {
    for (const c of idle) c.close();
    if (subState?.conns) for (const c of subState.conns) c.close();
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
