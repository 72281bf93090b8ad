import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ConfigError, resolveConfig } from '../src/config/index.js';
import { FIELDS, envName } from '../src/config/schema.js';
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
    [{ outbound: { policy: 'maybe' } }, /outbound.policy .*must be one of close, drop, got "maybe"/],
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
  assert.throws(() => resolveConfig({ env: { WIREGATE_TRUST_PROXY: 'maybe' } }), /must be true or false/);
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
