// allowedOrigins with allowNoOrigin: clients that send no Origin header (non-browser) may connect,
// browsers (which always send one) are still held to the list.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveConfig } from '../src/config/index.js';
import { connect, rejectedUpgrade, startGateway, type Client } from './helpers.js';

test('allowNoOrigin: an upgrade without Origin is accepted, a foreign or empty Origin still gets 403', async (t) => {
  const s = await startGateway({ allowedOrigins: ['https://app.example'], allowNoOrigin: true });
  const clients: Client[] = [];
  t.after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await s.gw.close();
  });
  clients.push(await connect(s.url)); // ws sends no Origin unless told to
  const res = await clients[0].request('nope');
  assert.equal(res[0], 17, 'the connection without Origin works');
  clients.push(await connect(s.url, 'wiregate.v1', { origin: 'https://app.example' }));
  for (const origin of ['https://evil.example', 'null']) {
    const r = await rejectedUpgrade(s.url, 'wiregate.v1', { origin });
    assert.equal(r.status, 403, origin);
    assert.equal(r.body.error, 'ORIGIN_NOT_ALLOWED');
  }
  const empty = await rejectedUpgrade(s.url, 'wiregate.v1', { headers: { origin: '' } });
  assert.equal(empty.status, 403, 'an empty Origin header is not "no Origin"');
});

test('without allowNoOrigin (the default) an upgrade without Origin gets 403', async (t) => {
  const s = await startGateway({ allowedOrigins: ['https://app.example'] });
  t.after(() => s.gw.close());
  const r = await rejectedUpgrade(s.url);
  assert.equal(r.status, 403);
  assert.equal(r.body.error, 'ORIGIN_NOT_ALLOWED');
});

test('allowNoOrigin is settable from a file, WIREGATE_ALLOW_NO_ORIGIN and --allowNoOrigin=', () => {
  assert.equal(resolveConfig().allowNoOrigin, false);
  assert.equal(resolveConfig({ file: { allowNoOrigin: true } }).allowNoOrigin, true);
  assert.equal(resolveConfig({ env: { WIREGATE_ALLOW_NO_ORIGIN: 'yes' } }).allowNoOrigin, true);
  assert.equal(resolveConfig({ flags: new Map([['allowNoOrigin', 'true']]) }).allowNoOrigin, true);
  assert.throws(() => resolveConfig({ options: { allowNoOrigin: 'yes' as never } }), /allowNoOrigin .*must be a boolean/);
});
