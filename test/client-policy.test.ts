// The client SDK's reconnect policy without sockets: the backoff formula and its spread, and the
// close-code / HTTP-refusal tables of docs/protocol.md section 6 against closeAction() and
// refusalAction(), row by row and code by code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { backoffDelay, closeAction, refusalAction, retryAfterMs, tokenExpiry, type CloseAction } from '../src/client/index.js';

test('backoff: random(0, min(maxDelay, initialDelay * 2^attempt)), jitter after the cap', () => {
  const half = () => 0.5;
  assert.equal(backoffDelay(0, 500, 20_000, half), 250);
  assert.equal(backoffDelay(3, 500, 20_000, half), 2000);
  assert.equal(backoffDelay(10, 500, 20_000, half), 10_000, 'capped at 20 s, then halved');
  assert.equal(backoffDelay(2000, 500, 20_000, half), 10_000, 'no overflow for huge attempts');
  assert.equal(backoffDelay(5, 500, 20_000, () => 0), 0);
  assert.ok(backoffDelay(5, 500, 20_000, () => 0.999999) < 16_000);
});

test('backoff at attempt 10: 2,000 delays spread evenly over [0, maxDelay), not piled at the cap', () => {
  const max = 20_000;
  const delays = Array.from({ length: 2000 }, () => backoffDelay(10, 500, max));
  assert.ok(delays.every((d) => d >= 0 && d < max));
  const deciles = new Array<number>(10).fill(0);
  for (const d of delays) deciles[Math.floor(d / (max / 10))]++;
  // uniform: 200 per decile, standard deviation ~13.4; +-70 is more than 5 of them
  for (const [i, n] of deciles.entries()) assert.ok(n > 130 && n < 270, `decile ${i}: ${n} of 2000 (${deciles.join(' ')})`);
  const atCap = delays.filter((d) => d >= max - 100).length;
  assert.ok(atCap < 40, `${atCap} delays within 100 ms of the cap`);
  // Socket.IO's order (jitter, then cap) for contrast: most of them land exactly on the cap
  const jitterThenCap = Array.from({ length: 2000 }, () => Math.min(max, 500 * 2 ** 10 * (0.5 + Math.random())));
  assert.ok(jitterThenCap.filter((d) => d === max).length > 1900);
});

/** Rows of the markdown tables in `text`: cells of lines that start with '|' (header and separator dropped). */
function rows(text: string): string[][] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('|') && !l.startsWith('|---'))
    .map((l) => l.split('|').slice(1, -1).map((c) => c.trim()))
    .filter((cells) => cells[1] !== 'action');
}

const ACTION: Record<string, CloseAction> = { reconnect: 'reconnect', refresh: 'refresh', stop: 'terminal' };

test('docs/protocol.md section 6 "What a client does after a close": closeAction and refusalAction follow every row', () => {
  const doc = readFileSync(new URL('../docs/protocol.md', import.meta.url), 'utf8');
  const start = doc.indexOf('\n### What a client does after a close\n');
  assert.notEqual(start, -1);
  const section = doc.slice(start, doc.indexOf('\n## ', start));
  const [closeTable, httpTable] = section.split('\nAn upgrade refused with an HTTP answer');
  assert.ok(httpTable !== undefined, 'the HTTP table follows the close-code table');

  const closes = rows(closeTable);
  assert.ok(closes.length >= 10);
  const explicit = new Map<number, CloseAction>();
  const ranges: Array<[number, number, CloseAction, string]> = [];
  for (const [cell, action] of closes) {
    const want = ACTION[action];
    assert.ok(want !== undefined, `action "${action}" in row ${cell}`);
    const range = /(\d{4})–(\d{4})/.exec(cell);
    if (range !== null) ranges.push([Number(range[1]), Number(range[2]), want, cell]);
    else for (const n of cell.match(/\b\d{4}\b/g) ?? []) explicit.set(Number(n), want);
  }
  for (const [code, want] of explicit) assert.equal(closeAction(code), want, `close code ${code}`);
  // every code of every range that no row names on its own
  let checked = 0;
  for (const [lo, hi, want, cell] of ranges) {
    for (let code = lo; code <= hi; code++) {
      if (explicit.has(code)) continue;
      assert.equal(closeAction(code), want, `close code ${code} (row "${cell}")`);
      checked++;
    }
  }
  assert.ok(checked > 3000, `${checked} codes checked by range`);
  for (const code of [1000, 1001, 1006, 1008, 4000, 4002, 4500, 4501, 4999]) assert.ok(explicit.has(code) || ranges.some(([lo, hi]) => code >= lo && code <= hi), `${code} has a row`);

  const http = rows(httpTable);
  assert.equal(http.length, 4);
  for (const [cell, action] of http) {
    const want = ACTION[action];
    const codes = (cell.match(/\b\d{3}\b/g) ?? []).map(Number);
    if (cell.startsWith('any other')) {
      for (const s of [500, 502, 504, 418, 407]) assert.equal(refusalAction(s), want, `HTTP ${s}`);
    } else for (const s of codes) assert.equal(refusalAction(s), want, `HTTP ${s}`);
  }
});

test('Retry-After in seconds or as an HTTP date; JWT exp read without verifying', () => {
  assert.equal(retryAfterMs('5'), 5000);
  assert.equal(retryAfterMs(undefined), 0);
  assert.equal(retryAfterMs('soon'), 0);
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(retryAfterMs('Thu, 01 Jan 2026 00:00:30 GMT', now), 30_000);
  assert.equal(retryAfterMs('999999'), 3_600_000, 'at most an hour');
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  assert.equal(tokenExpiry(`${b64({ alg: 'HS256' })}.${b64({ sub: 'é', exp: 1767225600 })}.sig`), 1767225600_000);
  assert.equal(tokenExpiry(`${b64({ alg: 'HS256' })}.${b64({ sub: 'x' })}.sig`), null);
  assert.equal(tokenExpiry('not a jwt'), null);
});
