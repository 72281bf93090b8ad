// The documentation is a contract: the example client written from docs/protocol.md works against a
// real gateway, and the docs' code tables are exactly the code's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { CloseCode, ErrorCode, shouldReconnect } from '../src/protocol/codes.js';
import { startGateway } from './helpers.js';

function runExample(port: number): Promise<string> {
  return new Promise<string>((resolve, reject) =>
    execFile(process.execPath, ['examples/raw-client.mjs', String(port)], { timeout: 10_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stdout}\n${stderr}`)) : resolve(stdout))),
  );
}

// The gateway `npm start` runs: embedded defaults, no methods registered (startGateway only adds
// port 0, 127.0.0.1 and a silent log).
test('examples/raw-client.mjs (ws + msgpackr only) against a default-config gateway: subscribe, publish, and the documented ERROR 106 for its REQUEST', async (t) => {
  const s = await startGateway();
  t.after(() => s.gw.close());
  const out = await runExample(s.port);
  assert.match(out, /subscribed to sensors\/#/);
  assert.match(out, /published, seq 1/);
  assert.match(out, /received sensors\/42\/temp seq 1 payload \{"v":21\.5\}/);
  assert.match(out, /request answered with ERROR 106 UNKNOWN_METHOD: unknown method echo/);
  assert.match(out, /gw\.handle\('echo'/);
  assert.doesNotMatch(out, /echo replied/);
  assert.match(out, /^OK$/m);
});

test('examples/raw-client.mjs gets the RESULT from a gateway that registered echo (README "Embed it")', async (t) => {
  const s = await startGateway();
  t.after(() => s.gw.close());
  s.gw.handle('echo', (_ctx, p) => p);
  const out = await runExample(s.port);
  assert.match(out, /received sensors\/42\/temp seq 1 payload \{"v":21\.5\}/);
  assert.match(out, /echo replied "hi"/);
  assert.doesNotMatch(out, /ERROR 106/);
  assert.match(out, /^OK$/m);
});

function table(doc: string, heading: string): string[][] {
  const start = doc.indexOf(`\n## ${heading}\n`);
  assert.notEqual(start, -1, `heading ## ${heading}`);
  const rest = doc.slice(start + heading.length + 5);
  const end = rest.search(/\n## /);
  return (end === -1 ? rest : rest.slice(0, end))
    .split('\n')
    .filter((l) => /^\| \d+ \|/.test(l))
    .map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
}

test('docs/protocol.md error and close code tables match src/protocol/codes.ts exactly', () => {
  const doc = readFileSync(new URL('../docs/protocol.md', import.meta.url), 'utf8');
  const errors = table(doc, 'Error codes').map(([n, name]) => [name.replace(/`/g, ''), Number(n)]);
  assert.deepEqual(Object.fromEntries(errors), { ...ErrorCode });
  const closes = table(doc, 'Close codes');
  assert.deepEqual(Object.fromEntries(closes.map(([n, name]) => [name.replace(/`/g, ''), Number(n)])), { ...CloseCode });
  for (const [n, , reconnect] of closes) assert.equal(reconnect === 'yes', shouldReconnect(Number(n)), `reconnect column for ${n}`);
});
