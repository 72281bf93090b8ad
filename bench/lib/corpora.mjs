import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

function rng(seed) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 4294967296);
}

/** Payload corpora for the compression scenario, generated deterministically (seeded). */
export function corpora(payloadFile) {
  const r = rng(42);
  const telemetry = Array.from({ length: 2000 }, (_, i) => ({
    device: `sensor-${1000 + (i % 50)}`,
    ts: 1_700_000_000_000 + i * 1000,
    fw: '2.4.1',
    readings: Array.from({ length: 26 }, (_, k) => ({ name: ['temp', 'humidity', 'pressure', 'co2'][k % 4], value: Math.round(r() * 10000) / 100, unit: ['C', '%', 'hPa', 'ppm'][k % 4] })),
    status: r() > 0.9 ? 'warn' : 'ok',
  }));
  const game = Array.from({ length: 2000 }, (_, i) => ({
    tick: i,
    entities: Array.from({ length: 24 }, (_, k) => ({ id: k, x: r() * 1000, y: r() * 1000, vx: r() - 0.5, vy: r() - 0.5, hp: Math.floor(r() * 100), state: ['idle', 'run', 'jump'][k % 3] })),
  }));
  const random = Array.from({ length: 2000 }, () => randomBytes(1024));
  const out = [
    { name: 'iot-telemetry', messages: telemetry },
    { name: 'game-state', messages: game },
    { name: 'incompressible-1KiB', messages: random },
  ];
  if (payloadFile) {
    // one JSON document per line; lines that are not JSON are sent as strings
    const lines = readFileSync(payloadFile, 'utf8').split('\n').filter(Boolean).slice(0, 5000);
    out.push({ name: `file:${payloadFile.split('/').pop()}`, messages: lines.map((l) => { try { return JSON.parse(l); } catch { return l; } }) });
  }
  return out;
}

