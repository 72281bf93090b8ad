// permessage-deflate: wiregate compresses each broadcast once (server_no_context_takeover) and
// every client decodes it, whatever it negotiated; ws keeps compressing when context takeover is on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, startGateway, type Client } from './helpers.js';

const payload = (i: number) => ({ i, readings: Array.from({ length: 40 }, (_, k) => ({ sensor: `temp-${k}`, value: 20 + k / 10, unit: 'C' })) });

test('one compressed frame per broadcast, decoded by clients with different deflate offers', async () => {
  const s = await startGateway({ compression: { preset: 'fast', threshold: 128 } });
  const clients: Client[] = [
    await connect(s.url, 'wiregate.v1', { perMessageDeflate: true }),
    await connect(s.url, 'wiregate.v1', { perMessageDeflate: { clientNoContextTakeover: true } }),
    await connect(s.url, 'wiregate.v1', { perMessageDeflate: { serverNoContextTakeover: true } }),
    await connect(s.url, 'wiregate.v1', { perMessageDeflate: false }),
  ];
  for (const c of clients) await c.subscribe('telemetry/#');
  const sessions = [...s.gw.sessions];
  assert.deepEqual(sessions.map((x) => x.zBits), [15, 15, 15, 0]);
  const before = clients.map((c) => (c.ws as unknown as { _socket: { bytesRead: number } })._socket.bytesRead);
  const n = 20;
  for (let i = 0; i < n; i++) await s.gw.publish(`telemetry/dev${i}`, payload(i));
  for (const c of clients) {
    for (let i = 0; i < n; i++) assert.deepEqual(await c.delivery(), [18, `telemetry/dev${i}`, 1, payload(i)]);
  }
  assert.equal(s.gw.stats.deflated, n, 'compressed once per publish, not once per subscriber');
  const read = clients.map((c, k) => (c.ws as unknown as { _socket: { bytesRead: number } })._socket.bytesRead - before[k]);
  assert.ok(read[0] * 3 < read[3], `compressed clients read far fewer bytes (${read[0]} vs ${read[3]})`);
  await Promise.all(clients.map((c) => c.close()));
  await s.gw.close();
});

test('a client limiting server_max_window_bits gets frames compressed for its window', async () => {
  const s = await startGateway({ compression: { preset: 'fast', threshold: 64, serverMaxWindowBits: 15 } });
  const small = await connect(s.url, 'wiregate.v1', { perMessageDeflate: { serverMaxWindowBits: 10 } });
  const big = await connect(s.url, 'wiregate.v1', { perMessageDeflate: true });
  await small.subscribe('w');
  await big.subscribe('w');
  assert.deepEqual([...s.gw.sessions].map((x) => x.zBits), [10, 15]);
  const p = { text: 'wiregate '.repeat(500) };
  await s.gw.publish('w', p);
  assert.deepEqual((await small.delivery())[3], p);
  assert.deepEqual((await big.delivery())[3], p);
  await Promise.all([small.close(), big.close()]);
  await s.gw.close();
});

test('replies are compressed per connection; inbound compressed messages are inflated', async () => {
  const s = await startGateway({ compression: { preset: 'fast', threshold: 128 } });
  s.gw.handle('echo', (_c, p) => p);
  const c = await connect(s.url, 'wiregate.v1', { perMessageDeflate: { threshold: 0 } });
  for (let i = 0; i < 10; i++) {
    const r = await c.request('echo', payload(i));
    assert.deepEqual(r[2], payload(i));
  }
  assert.ok(s.gw.stats.deflated >= 10);
  await c.close();
  await s.gw.close();
});

test('context takeover (preset max): ws compresses, order and content preserved', async () => {
  const s = await startGateway({ compression: { preset: 'max' } });
  const c = await connect(s.url, 'wiregate.v1', { perMessageDeflate: true });
  await c.subscribe('m');
  assert.equal([...s.gw.sessions][0].zBits, 0);
  for (let i = 0; i < 50; i++) void s.gw.publish('m', i % 2 ? i : payload(i));
  for (let i = 0; i < 50; i++) assert.deepEqual((await c.delivery())[3], i % 2 ? i : payload(i));
  assert.equal(s.gw.stats.deflated, 0);
  await c.close();
  await s.gw.close();
});
