import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ConfigError, resolveConfig, type CompressionConfig, type GatewayConfig, type GatewayOptions } from '../src/config/index.js';
import { FIELDS, envName, type CompressionPreset, type TrustProxySetting } from '../src/config/schema.js';
import { render } from '../scripts/gen-config-docs.js';

test('defaults resolve, are frozen and match the table', () => {
  const c = resolveConfig();
  assert.equal(c.port, 8080);
  assert.equal(c.maxPayload, 65536);
  assert.equal(c.compression.enabled, false);
  assert.equal(c.heartbeat.interval, 30000);
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.limits));
  assert.throws(() => {
    (c as { port: number }).port = 1;
  }, TypeError);
});

test('validation names the field, the rule, the value and the source', () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ port: 70000 }, /invalid config port \(from options\): must be <= 65535, got 70000/],
    [{ port: 'x' }, /invalid config port \(from options\): must be an integer, got "x"/],
    [{ heartbeat: { interval: -1 } }, /heartbeat.interval .*must be >= 0, got -1/],
    [{ outbound: { policy: 'maybe' } }, /outbound.policy .*must be one of close, drop, conflate, got "maybe"/],
    [{ bogus: 1 }, /invalid config bogus .*unknown option/],
    [{ limits: { nope: 1 } }, /limits.nope .*unknown option/],
    [{ path: 'ws' }, /path .*must start with '\/'/],
    [{ compression: { level: 12 } }, /compression.level .*must be <= 9/],
    [{ auth: { enabled: true } }, /auth .*exactly one of auth.secret/],
    [{ requireSubprotocol: 'yes' }, /requireSubprotocol .*must be a boolean/],
    [{ allowedOrigins: 'x' }, /allowedOrigins .*must be a list of strings/],
    [{ outbound: { topicPolicies: ['a/#=maybe'] } }, /outbound.topicPolicies .*entries must be/],
    [{ outbound: { topicPolicies: ['a/#/b=drop'] } }, /outbound.topicPolicies .*entries must be/],
  ];
  for (const [options, re] of cases) {
    assert.throws(
      () => resolveConfig({ options: options as never }),
      (err: unknown) => err instanceof ConfigError && re.test(err.message),
      JSON.stringify(options),
    );
  }
  try {
    resolveConfig({ options: { port: -5 } });
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.field, 'port');
    assert.equal(err.rule, 'must be >= 0');
    assert.equal(err.value, -5);
  }
});

test('precedence: defaults < file < env < flags < options; env and flag parsing', () => {
  const c = resolveConfig({
    file: { port: 1000, heartbeat: { interval: 5000, timeout: 2000 }, log: { level: 'warn' } },
    env: { WIREGATE_PORT: '2000', WIREGATE_HEARTBEAT_TIMEOUT: '3000', WIREGATE_ALLOWED_ORIGINS: 'https://a, https://b', WIREGATE_TRUST_PROXY: 'yes', OTHER: 'x' },
    flags: new Map([['port', '3000']]),
  });
  assert.equal(c.port, 3000);
  assert.equal(c.heartbeat.interval, 5000);
  assert.equal(c.heartbeat.timeout, 3000);
  assert.equal(c.log.level, 'warn');
  assert.deepEqual(c.allowedOrigins, ['https://a', 'https://b']);
  assert.equal(c.trustProxy, true);
  assert.throws(() => resolveConfig({ env: { WIREGATE_PORT: 'eighty' } }), /port \(from env WIREGATE_PORT\): must be an integer/);
  assert.throws(() => resolveConfig({ env: { WIREGATE_REQUIRE_SUBPROTOCOL: 'maybe' } }), /requireSubprotocol \(from env WIREGATE_REQUIRE_SUBPROTOCOL\): must be true or false/);
  assert.throws(() => resolveConfig({ flags: new Map([['nope', '1']]) }), /nope \(from flag --nope\): unknown option/);
  assert.equal(envName('limits.maxConnectionsPerIp'), 'WIREGATE_LIMITS_MAX_CONNECTIONS_PER_IP');
});

test('compression presets sit under explicit fields', () => {
  const fast = resolveConfig({ options: { compression: { preset: 'fast' } } });
  assert.equal(fast.compression.enabled, true);
  assert.equal(fast.compression.level, 1);
  assert.equal(fast.compression.serverNoContextTakeover, true);
  const tuned = resolveConfig({ options: { compression: { preset: 'max', level: 6 } } });
  assert.equal(tuned.compression.level, 6);
  assert.equal(tuned.compression.memLevel, 9);
  const custom = resolveConfig({ options: { compression: { enabled: true, level: 4 } } });
  assert.equal(custom.compression.preset, 'custom');
  assert.equal(custom.compression.level, 4);
  const off = resolveConfig({ options: { compression: { preset: 'off' } } });
  assert.equal(off.compression.enabled, false);
});

test('docs/configuration.md lists every option exactly as the schema says', () => {
  const doc = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8');
  assert.equal(render(doc), doc, 'docs/configuration.md is stale: run `npx tsx scripts/gen-config-docs.ts`');
  for (const f of FIELDS) assert.ok(doc.includes(`\`${f.key}\``), f.key);
});

// ---- the GatewayConfig type is derived from the table: checked by `tsc` (npm run typecheck) ----

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type IsAny<T> = 0 extends 1 & T ? true : false;
/** true if `any` or `unknown` appears anywhere in T. */
type Loose<T> = IsAny<T> extends true ? true : unknown extends T ? true : T extends readonly (infer E)[] ? Loose<E> : T extends object ? { [K in keyof T]-?: Loose<T[K]> }[keyof T] : false;

const typeChecks: [
  Equals<Loose<GatewayConfig>, false>,
  Equals<Loose<GatewayOptions>, false>,
  Equals<GatewayConfig['port'], number>,
  Equals<GatewayConfig['requireSubprotocol'], boolean>,
  Equals<GatewayConfig['allowNoOrigin'], boolean>,
  Equals<GatewayConfig['allowedOrigins'], readonly string[]>,
  Equals<GatewayConfig['trustProxy'], TrustProxySetting>,
  Equals<GatewayConfig['outbound']['policy'], 'close' | 'drop' | 'conflate'>,
  Equals<GatewayConfig['log']['level'], 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'>,
  Equals<GatewayConfig['compression'], CompressionConfig>,
  Equals<CompressionConfig['preset'], CompressionPreset>,
  Equals<keyof GatewayConfig['heartbeat'], 'interval' | 'timeout'>,
  Equals<keyof GatewayConfig['auth'], 'enabled' | 'secret' | 'publicKey' | 'jwksFile' | 'issuer' | 'audience'>,
  Equals<GatewayOptions['limits'], Partial<GatewayConfig['limits']> | undefined>,
] = [true, true, true, true, true, true, true, true, true, true, true, true, true, true];

test('the config type has one property per row, nested by the dotted keys', () => {
  assert.ok(typeChecks.every(Boolean));
  const c = resolveConfig();
  const keys = (o: object, prefix = ''): string[] =>
    Object.entries(o).flatMap(([k, v]) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? keys(v, `${prefix}${k}.`) : [`${prefix}${k}`]));
  assert.deepEqual(keys(c).sort(), FIELDS.map((f) => f.key).sort());
  // every default passes its own rule
  for (const f of FIELDS) {
    const options: Record<string, unknown> = {};
    const parts = f.key.split('.');
    let cur = options;
    for (const p of parts.slice(0, -1)) cur = (cur[p] = {}) as Record<string, unknown>;
    cur[parts[parts.length - 1]] = f.default;
    assert.doesNotThrow(() => resolveConfig({ options: options as GatewayOptions }), f.key);
  }
});
