// A publisher at a fixed rate (open loop), in its own process (forked by scenarios/cluster.mjs;
// IPC like loadgen.mjs: {cmd, id, args} in, {type: 'result', id, result | error} out). Each PUBLISH
// [3, id, topic, bin] carries the payload layout of loadgen.mjs's publisher (type byte 2, then the
// send time as a float64 LE at offset 1), so loadgen.mjs's subscribers measure publish -> deliver
// latency with it. Acknowledgements are counted and timed (publish -> ack: the broker's round trip).
// A gateway that cannot keep up would let the backlog, and the run, grow without bound: at
// `maxUnacked` publishes without an answer the pacer skips its slots (counted in `skipped`) until
// answers come back, so a run that did not sustain the rate says so and still ends in time.
import { open, clientFrame, payloadOffset, readUint, binHeader, str, u32, now } from './rawclient.mjs';

const TS_OFF = 1;
let conn = null;

function cpu() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function quantiles(values) {
  const a = Float64Array.from(values).sort();
  const q = (p) => (a.length ? a[Math.min(a.length - 1, Math.floor(p * a.length))] : null);
  return { samples: a.length, p50: q(0.5), p99: q(0.99), max: a.length ? a[a.length - 1] : null };
}

async function pace({ url, topic, rate, size, duration, maxUnacked }) {
  const RING = 1 << 16;
  const sentAt = new Float64Array(RING);
  const ackMs = [];
  let acked = 0;
  let errors = 0;
  conn = await open(url, {
    protocol: 'wiregate.v1',
    onMessage: (b, s) => {
      // [16, id, seq] or an ERROR [17, id, code, message]
      if (b[s + 1] !== 0x10) {
        errors++;
        return;
      }
      const id = readUint(b, s + 2)[0];
      if (ackMs.length < 1_000_000) ackMs.push(now() - sentAt[id % RING]);
      acked++;
    },
  });
  const body = Buffer.alloc(size, 0x62);
  body[0] = 2;
  const msg = Buffer.concat([Buffer.from([0x94, 0x03]), u32(1), str(topic), binHeader(size), body]);
  const idOff = payloadOffset(msg.length) + 3; // after 0x94 0x03 0xce
  const tsOff = payloadOffset(msg.length) + msg.length - size + TS_OFF;
  const frame = clientFrame(msg);
  let sent = 0;
  let slots = 0;
  let skipped = 0;
  const c0 = cpu();
  const t0 = now();
  const tick = () => {
    const due = Math.floor(((now() - t0) / 1000) * rate);
    while (slots < due) {
      slots++;
      if (sent - acked - errors >= maxUnacked) {
        skipped++;
        continue;
      }
      const f = Buffer.from(frame); // a fresh copy: the previous one may still be queued
      const id = sent + 1;
      f.writeUInt32BE(id, idOff);
      const t = now();
      f.writeDoubleLE(t, tsOff);
      sentAt[id % RING] = t;
      conn.send(f);
      sent++;
    }
  };
  const timer = setInterval(tick, 1);
  await sleep(duration);
  clearInterval(timer);
  const elapsed = (now() - t0) / 1000;
  const cpuMs = cpu() - c0;
  const end = now() + 10_000;
  while (acked + errors < sent && now() < end) await sleep(20);
  conn.close();
  conn = null;
  return { target: rate, offered: slots, published: sent, skipped, acked, errors, rate: sent / elapsed, ack: quantiles(ackMs), loadCpu: cpuMs / 1000 / elapsed };
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

process.on('message', async (m) => {
  if (m.cmd === 'exit') {
    conn?.close();
    process.exit(0);
  }
  try {
    if (m.cmd !== 'pace') throw new Error(`unknown command ${m.cmd}`);
    process.send({ type: 'result', id: m.id, result: await pace(m.args) });
  } catch (err) {
    process.send({ type: 'result', id: m.id, error: String(err?.stack ?? err) });
  }
});
process.send({ type: 'ready' });
