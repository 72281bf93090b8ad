// Client address behind proxies (trustProxy): which X-Forwarded-For entry is the client, and that
// a client writing its own entries cannot escape its per-IP limit.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { compileTrustProxy, parseForwardedAddress, trustProxyEntryError, type TrustProxy } from '../src/transport/http-util.js';
import { ConfigError, resolveConfig } from '../src/config/index.js';
import { connect, rejectedUpgrade, startGateway, type Client } from './helpers.js';

/** A request as compileTrustProxy sees it: the TCP peer and the headers. */
function req(peer: string | undefined, xff?: string | string[]): IncomingMessage {
  return { socket: { remoteAddress: peer }, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } } as unknown as IncomingMessage;
}

function ip(setting: TrustProxy, peer: string | undefined, xff?: string | string[]): string {
  return compileTrustProxy(setting)(req(peer, xff));
}

describe('compileTrustProxy: which address is the client', () => {
  test('off (false, 0, [], "off"): the TCP peer, X-Forwarded-For ignored', () => {
    for (const off of [false, 0, [], 'off', 'false', '0'] as TrustProxy[]) {
      assert.equal(ip(off, '203.0.113.7', '1.1.1.1'), '203.0.113.7', JSON.stringify(off));
      assert.equal(ip(off, '::ffff:203.0.113.7', '1.1.1.1'), '203.0.113.7', 'IPv4-mapped peer unwrapped');
    }
    assert.equal(ip(false, undefined), 'unknown');
  });

  test('true = 1 hop: the rightmost entry; entries the client prepended are never read', () => {
    for (const one of [true, 1, '1', 'true'] as TrustProxy[]) {
      assert.equal(ip(one, '127.0.0.1', '203.0.113.7'), '203.0.113.7', JSON.stringify(one));
      assert.equal(ip(one, '127.0.0.1', '10.0.0.1, 6.6.6.6, 203.0.113.7'), '203.0.113.7');
      assert.equal(ip(one, '127.0.0.1'), '127.0.0.1', 'no header: the peer');
    }
  });

  test('hop counts: the entry just left of the N nearest proxies, else the leftmost', () => {
    // client 203.0.113.7 -> proxy A 198.51.100.1 -> proxy B (the peer 10.0.0.2): A appended the
    // client, B appended A; the client itself wrote 192.0.2.66
    const chain = '192.0.2.66, 203.0.113.7, 198.51.100.1';
    assert.equal(ip(1, '10.0.0.2', chain), '198.51.100.1');
    assert.equal(ip(2, '10.0.0.2', chain), '203.0.113.7');
    assert.equal(ip('2', '10.0.0.2', chain), '203.0.113.7');
    assert.equal(ip(3, '10.0.0.2', chain), '192.0.2.66', 'one hop too many trusts what the client wrote');
    assert.equal(ip(9, '10.0.0.2', chain), '192.0.2.66', 'fewer entries than hops: the leftmost');
    assert.equal(ip(2, '10.0.0.2'), '10.0.0.2');
  });

  test('CIDR list: walk left from the peer while the address is a listed proxy', () => {
    const trust = ['10.0.0.0/8', '::1', '127.0.0.1'];
    assert.equal(ip(trust, '10.0.0.2', '6.6.6.6, 203.0.113.7, 10.1.2.3'), '203.0.113.7');
    assert.equal(ip('10.0.0.0/8, ::1, 127.0.0.1', '10.0.0.2', '6.6.6.6, 203.0.113.7, 10.1.2.3'), '203.0.113.7', 'same as a string');
    assert.equal(ip(trust, '::1', '203.0.113.7'), '203.0.113.7');
    // the peer is not a proxy: whatever it sends in X-Forwarded-For is its own claim
    assert.equal(ip(trust, '198.51.100.9', '10.0.0.5, 203.0.113.7'), '198.51.100.9');
    // every address is a listed proxy: the leftmost
    assert.equal(ip(trust, '127.0.0.1', '10.0.0.9, 10.0.0.5'), '10.0.0.9');
    // a client inside a trusted range that forges entries is still stopped at the first untrusted one
    assert.equal(ip(['10.0.0.0/8'], '10.0.0.2', '1.1.1.1, 172.16.0.4, 10.9.9.9'), '172.16.0.4');
    // named ranges
    assert.equal(ip(['loopback'], '::1', '192.168.1.20'), '192.168.1.20');
    assert.equal(ip(['loopback', 'uniquelocal'], '127.0.0.1', '203.0.113.7, 192.168.1.20, 10.0.0.3'), '203.0.113.7');
    assert.equal(ip(['linklocal'], '169.254.1.1', '203.0.113.7'), '203.0.113.7');
  });

  test('IPv6: ranges, brackets and ports, case and compression normalised', () => {
    const trust = ['fd00::/8', '2001:db8:ffff::/48'];
    assert.equal(ip(trust, 'fd00::1', '2001:DB8:0:0::1, fd12::7'), '2001:db8::1');
    assert.equal(ip(trust, 'fd00::1', '[2001:db8::1]:4711, 2001:db8:ffff:1::9'), '2001:db8::1');
    assert.equal(ip(trust, 'fe80::1', '2001:db8::1'), 'fe80::1', 'peer outside the ranges');
    assert.equal(ip(1, '::1', '203.0.113.7:51234'), '203.0.113.7', 'IPv4 with a port');
    assert.equal(ip(1, '::1', '[2001:db8::5]'), '2001:db8::5');
  });

  test('IPv4-mapped IPv6: matched against IPv4 ranges and returned as IPv4', () => {
    assert.equal(ip(['10.0.0.0/8'], '::ffff:10.0.0.2', '::ffff:203.0.113.7'), '203.0.113.7');
    assert.equal(ip(['10.0.0.0/8'], '::ffff:10.0.0.2', '203.0.113.7, ::FFFF:10.1.1.1'), '203.0.113.7');
    assert.equal(ip(['::ffff:10.0.0.0/104'], '10.0.0.2', '203.0.113.7'), '203.0.113.7', 'a mapped range is its IPv4 range');
    assert.equal(ip(1, '::1', '::ffff:cb00:7107'), '203.0.113.7', 'hex form of a mapped address');
  });

  test('malformed entries end the walk at the proxy that added them; they are never returned', () => {
    for (const bad of ['unknown', '', ' ', 'garbage', 'evil.example', '1.2.3', '256.1.1.1', '1.2.3.4.5', '[::1', '[::1]x', '1.2.3.4:port', '_hidden']) {
      assert.equal(ip(1, '10.0.0.2', `203.0.113.7, ${bad}`), '10.0.0.2', JSON.stringify(bad));
      assert.equal(ip(['10.0.0.0/8'], '10.0.0.2', `203.0.113.7, ${bad}, 10.0.0.3`), '10.0.0.3', JSON.stringify(bad));
      assert.equal(ip(1, '10.0.0.2', bad), '10.0.0.2', `${JSON.stringify(bad)} alone`);
    }
    // garbage beyond the client entry is never looked at
    assert.equal(ip(1, '10.0.0.2', 'garbage, , unknown, 203.0.113.7'), '203.0.113.7');
    assert.equal(parseForwardedAddress(' 203.0.113.7 '), '203.0.113.7');
    assert.equal(parseForwardedAddress('2001:db8::1%eth0'), '2001:db8::1', 'zone index dropped');
  });

  test('several X-Forwarded-For headers read as one list, in order', () => {
    assert.equal(ip(1, '127.0.0.1', ['6.6.6.6', '203.0.113.7']), '203.0.113.7');
    assert.equal(ip(2, '127.0.0.1', ['203.0.113.7', '198.51.100.1']), '203.0.113.7');
  });

  test('unusable settings throw at compile time with the reason', () => {
    const cases: Array<[TrustProxy, RegExp]> = [
      [['10.0.0.0/33'], /"10.0.0.0\/33" has a prefix length that is not 0..32/],
      [['::/129'], /prefix length that is not 0..128/],
      [['proxy.internal'], /is not an IP address, a CIDR range/],
      [['10.0.0.0/8', '1.2.3'], /"1.2.3" is not an IP address/],
      [['fe80::1%eth0'], /zone index/],
      ['10.0.0.0/x', /prefix length/],
      [-1, /hop count must be a non-negative integer/],
      [1.5, /hop count/],
      [[7 as unknown as string], /list entries must be strings/],
    ];
    for (const [setting, re] of cases) assert.throws(() => compileTrustProxy(setting), (e: unknown) => e instanceof TypeError && re.test(e.message), JSON.stringify(setting));
    assert.equal(trustProxyEntryError(' 10.0.0.0/8 '), null);
    assert.equal(trustProxyEntryError('Loopback'), null);
    assert.match(trustProxyEntryError('10.0.0.0/-1') ?? '', /prefix length/);
  });

  test('the compiled function gives the same answers on repeated calls and for every setting form', () => {
    const list = compileTrustProxy(Object.freeze(['10.0.0.0/8']));
    assert.equal(list(req('10.0.0.2', '6.6.6.6, 203.0.113.7')), '203.0.113.7');
    assert.equal(list(req('10.0.0.2', '6.6.6.6, 203.0.113.7')), '203.0.113.7');
    assert.equal(compileTrustProxy(true)(req('127.0.0.1', '6.6.6.6, 203.0.113.7')), '203.0.113.7');
    assert.equal(compileTrustProxy(false)(req('::ffff:127.0.0.1', '6.6.6.6')), '127.0.0.1');
  });
});

describe('trustProxy in the configuration', () => {
  test('file, WIREGATE_TRUST_PROXY and --trustProxy= accept false, true, hop counts and lists', () => {
    assert.equal(resolveConfig().trustProxy, false);
    assert.equal(resolveConfig({ file: { trustProxy: true } }).trustProxy, true);
    assert.equal(resolveConfig({ file: { trustProxy: 2 } }).trustProxy, 2);
    assert.deepEqual(resolveConfig({ file: { trustProxy: ['10.0.0.0/8', '::1'] } }).trustProxy, ['10.0.0.0/8', '::1']);
    assert.deepEqual(resolveConfig({ file: { trustProxy: '10.0.0.0/8, ::1' } }).trustProxy, ['10.0.0.0/8', '::1'], 'a string in a file is split');
    assert.equal(resolveConfig({ file: { trustProxy: '3' } }).trustProxy, 3);
    assert.equal(resolveConfig({ env: { WIREGATE_TRUST_PROXY: 'yes' } }).trustProxy, true);
    assert.equal(resolveConfig({ env: { WIREGATE_TRUST_PROXY: 'off' } }).trustProxy, false);
    assert.equal(resolveConfig({ env: { WIREGATE_TRUST_PROXY: '2' } }).trustProxy, 2);
    assert.deepEqual(resolveConfig({ env: { WIREGATE_TRUST_PROXY: '10.0.0.0/8,::1,127.0.0.1' } }).trustProxy, ['10.0.0.0/8', '::1', '127.0.0.1']);
    assert.deepEqual(resolveConfig({ flags: new Map([['trustProxy', 'loopback, fd00::/8']]) }).trustProxy, ['loopback', 'fd00::/8']);
    assert.equal(resolveConfig({ flags: new Map([['trustProxy', 'true']]) }).trustProxy, true);
    assert.deepEqual(resolveConfig({ options: { trustProxy: ['192.168.0.0/16'] } }).trustProxy, ['192.168.0.0/16']);
    assert.ok(Object.isFrozen(resolveConfig({ options: { trustProxy: ['192.168.0.0/16'] } }).trustProxy));
  });

  test('invalid values name the field, the entry and the source', () => {
    const cases: Array<[Parameters<typeof resolveConfig>[0], RegExp]> = [
      [{ env: { WIREGATE_TRUST_PROXY: '10.0.0.0/33' } }, /invalid config trustProxy \(from env WIREGATE_TRUST_PROXY\): .*entry "10.0.0.0\/33" has a prefix length that is not 0..32/],
      [{ env: { WIREGATE_TRUST_PROXY: 'maybe' } }, /trustProxy .*entry "maybe" is not an IP address/],
      [{ flags: new Map([['trustProxy', '10.0.0.0/8,proxy.local']]) }, /trustProxy \(from flag --trustProxy\): .*"proxy.local"/],
      [{ file: { trustProxy: -1 } }, /trustProxy \(from file\): .*hop count must be an integer 0..100/],
      [{ options: { trustProxy: 1.5 } }, /trustProxy \(from options\): .*hop count/],
      [{ options: { trustProxy: { a: 1 } as never } }, /trustProxy .*must be false, true \(one proxy\), a hop count or a list/],
      [{ options: { trustProxy: [1] as never } }, /trustProxy .*must be false, true/],
    ];
    for (const [sources, re] of cases) {
      assert.throws(() => resolveConfig(sources), (e: unknown) => e instanceof ConfigError && e.field === 'trustProxy' && re.test(e.message), JSON.stringify(sources, (_k, v) => (v instanceof Map ? [...v] : v)));
    }
  });
});

describe('live: per-IP limits behind a proxy', () => {
  const xff = (value: string) => ({ headers: { 'x-forwarded-for': value } });

  for (const trustProxy of [true, ['127.0.0.1', '10.0.0.0/8'], 1] as const) {
    test(`trustProxy ${JSON.stringify(trustProxy)}: a client prepending fake entries still hits its per-IP limit`, async (t) => {
      const s = await startGateway({ limits: { maxConnectionsPerIp: 2 }, trustProxy: trustProxy as never });
      const clients: Client[] = [];
      t.after(async () => {
        await Promise.all(clients.map((c) => c.close()));
        await s.gw.close();
      });
      // the proxy (this test, on 127.0.0.1) appends the client's address 203.0.113.7 on the right
      clients.push(await connect(s.url, 'wiregate.v1', xff('203.0.113.7')));
      clients.push(await connect(s.url, 'wiregate.v1', xff('1.1.1.1, 203.0.113.7')));
      for (const forged of ['2.2.2.2, 203.0.113.7', '3.3.3.3, 4.4.4.4, 203.0.113.7', 'unknown, 203.0.113.7', '10.0.0.1, 203.0.113.7']) {
        const r = await rejectedUpgrade(s.url, 'wiregate.v1', xff(forged));
        assert.equal(r.status, 429, forged);
        assert.equal(r.body.error, 'TOO_MANY_CONNECTIONS_FROM_IP');
      }
      // a different client behind the same proxy has its own slots
      clients.push(await connect(s.url, 'wiregate.v1', xff('203.0.113.7, 198.51.100.4')));
      const res = await clients[2].request('nope');
      assert.equal(res[0], 17, 'the connection works');
    });
  }

  test('a peer that is not a listed proxy is limited by its own address, whatever it forwards', async (t) => {
    const s = await startGateway({ limits: { maxConnectionsPerIp: 2 }, trustProxy: ['10.0.0.0/8'] });
    const clients: Client[] = [];
    t.after(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await s.gw.close();
    });
    clients.push(await connect(s.url, 'wiregate.v1', xff('203.0.113.1')));
    clients.push(await connect(s.url, 'wiregate.v1', xff('203.0.113.2')));
    const r = await rejectedUpgrade(s.url, 'wiregate.v1', xff('203.0.113.3'));
    assert.equal(r.status, 429);
    assert.equal(r.body.error, 'TOO_MANY_CONNECTIONS_FROM_IP');
  });
});
