// Configuration: defaults from schema.ts, overridden in order by a config file, WIREGATE_*
// environment variables, CLI flags and programmatic options; validated once with precise
// messages, then frozen.
import { readFileSync } from 'node:fs';
import { topicError } from '../protocol/topic.js';
import { trustProxyEntryError } from '../transport/http-util.js';
import { COMPRESSION_PRESETS, FIELDS, FIELD_BY_KEY, envName, type CompressionPreset, type ConfigShape, type Field } from './schema.js';

/** The resolved, frozen configuration; its type is derived from the defaults table in schema.ts. */
export type GatewayConfig = ConfigShape;
export type CompressionConfig = GatewayConfig['compression'];

type DeepPartial<T> = { [K in keyof T]?: T[K] extends readonly unknown[] ? T[K] : T[K] extends object ? DeepPartial<T[K]> : T[K] };
export type GatewayOptions = DeepPartial<GatewayConfig>;

/**
 * Thrown for invalid configuration; `field`, `rule` and `value` say exactly what is wrong, `source`
 * where the value came from ('' when that is not known, e.g. for key material checked at start).
 */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly code = 'WG_ERR_INVALID_CONFIG';
  constructor(
    readonly field: string,
    readonly rule: string,
    readonly value: unknown,
    readonly source = 'options',
  ) {
    super(`invalid config ${field}${source ? ` (from ${source})` : ''}: ${rule}, got ${JSON.stringify(value) ?? String(value)}`);
  }
}

function getPath(obj: Record<string, unknown>, key: string): unknown {
  let cur: unknown = obj;
  for (const part of key.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function setPath(obj: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let cur = obj;
  for (let i = 0; i < parts.length - 1; i++) {
    const next = cur[parts[i]];
    if (next === null || typeof next !== 'object') cur[parts[i]] = {};
    cur = cur[parts[i]] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]] = value;
}

/** Flattens a nested options object to dotted keys, rejecting unknown keys. */
function flatten(obj: unknown, source: string, prefix = '', out = new Map<string, unknown>()): Map<string, unknown> {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new ConfigError(prefix || '(root)', 'must be an object', obj, source);
  }
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    if (v === undefined) continue;
    const key = prefix ? `${prefix}.${k}` : k;
    if (FIELD_BY_KEY.has(key)) out.set(key, v);
    else if (v !== null && typeof v === 'object' && !Array.isArray(v) && FIELDS.some((f) => f.key.startsWith(key + '.'))) flatten(v, source, key, out);
    else throw new ConfigError(key, 'unknown option', v, source);
  }
  return out;
}

/** Converts a string from the environment or the command line to the field's type. */
export function parseFieldString(field: Field, raw: string, source: string): unknown {
  switch (field.type) {
    case 'int': {
      const t = raw.trim().replace(/_/g, '');
      if (!/^-?\d+$/.test(t)) throw new ConfigError(field.key, 'must be an integer', raw, source);
      return Number(t);
    }
    case 'bool':
      if (/^(1|true|yes|on)$/i.test(raw)) return true;
      if (/^(0|false|no|off)$/i.test(raw)) return false;
      throw new ConfigError(field.key, 'must be true or false', raw, source);
    case 'list':
      return raw.split(',').map((s) => s.trim()).filter(Boolean);
    case 'proxy': {
      const t = raw.trim();
      if (/^(true|yes|on)$/i.test(t)) return true;
      if (/^(false|no|off)$/i.test(t)) return false;
      if (/^\d+$/.test(t)) return Number(t);
      return t.split(',').map((s) => s.trim()).filter(Boolean);
    }
    default:
      return raw;
  }
}

const PROXY_RULE = 'must be false, true (one proxy), a hop count or a list of proxy addresses/CIDRs';

function checkField(field: Field, v: unknown, source: string): void {
  switch (field.type) {
    case 'int':
      if (typeof v !== 'number' || !Number.isInteger(v)) throw new ConfigError(field.key, 'must be an integer', v, source);
      if (field.min !== undefined && v < field.min) throw new ConfigError(field.key, `must be >= ${field.min}`, v, source);
      if (field.max !== undefined && v > field.max) throw new ConfigError(field.key, `must be <= ${field.max}`, v, source);
      return;
    case 'bool':
      if (typeof v !== 'boolean') throw new ConfigError(field.key, 'must be a boolean', v, source);
      return;
    case 'string':
      if (typeof v !== 'string') throw new ConfigError(field.key, 'must be a string', v, source);
      return;
    case 'enum':
      if (typeof v !== 'string' || !field.values!.includes(v)) throw new ConfigError(field.key, `must be one of ${field.values!.join(', ')}`, v, source);
      return;
    case 'list':
      if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw new ConfigError(field.key, 'must be a list of strings', v, source);
      return;
    case 'proxy':
      if (typeof v === 'boolean') return;
      if (typeof v === 'number') {
        if (!Number.isInteger(v) || v < 0 || v > field.max) throw new ConfigError(field.key, `${PROXY_RULE}; a hop count must be an integer 0..${field.max}`, v, source);
        return;
      }
      if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw new ConfigError(field.key, PROXY_RULE, v, source);
      for (const entry of v as string[]) {
        const err = trustProxyEntryError(entry);
        if (err !== null) throw new ConfigError(field.key, `${PROXY_RULE}; entry ${JSON.stringify(entry)} ${err}`, v, source);
      }
      return;
  }
}

export interface ConfigSources {
  /** Parsed config file contents (JSON). */
  file?: unknown;
  filePath?: string;
  /** Environment (only WIREGATE_* variables are read). */
  env?: Record<string, string | undefined>;
  /** Dotted key -> raw string, from CLI flags. */
  flags?: Map<string, string>;
  /** Programmatic options (createGateway). */
  options?: GatewayOptions;
}

/** Reads and parses a JSON config file. */
export function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('config', `cannot read config file: ${(err as Error).message}`, path, 'file');
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ConfigError('config', `config file is not valid JSON: ${(err as Error).message}`, path, 'file');
  }
}

/** Merges all sources over the defaults, validates, and returns a deeply frozen config. */
export function resolveConfig(sources: ConfigSources = {}): GatewayConfig {
  const set = new Map<string, { value: unknown; source: string }>();
  const put = (m: Map<string, unknown>, source: string) => {
    for (const [k, v] of m) set.set(k, { value: v, source });
  };
  if (sources.file !== undefined) put(flatten(sources.file, sources.filePath ? `file ${sources.filePath}` : 'file'), sources.filePath ? `file ${sources.filePath}` : 'file');
  if (sources.env) {
    for (const field of FIELDS) {
      const raw = sources.env[envName(field.key)];
      if (raw !== undefined && raw !== '') set.set(field.key, { value: parseFieldString(field, raw, `env ${envName(field.key)}`), source: `env ${envName(field.key)}` });
    }
  }
  if (sources.flags) {
    for (const [k, raw] of sources.flags) {
      const field = FIELD_BY_KEY.get(k);
      if (!field) throw new ConfigError(k, 'unknown option', raw, `flag --${k}`);
      set.set(k, { value: parseFieldString(field, raw, `flag --${k}`), source: `flag --${k}` });
    }
  }
  if (sources.options !== undefined) put(flatten(sources.options, 'options'), 'options');
  // A config file may write trustProxy as a string too ("10.0.0.0/8, ::1", "2", "true").
  for (const [key, entry] of set) {
    const field = FIELD_BY_KEY.get(key)!;
    if (field.type === 'proxy' && typeof entry.value === 'string') entry.value = parseFieldString(field, entry.value, entry.source);
  }

  const cfg: Record<string, unknown> = {};
  for (const field of FIELDS) setPath(cfg, field.key, Array.isArray(field.default) ? [...field.default] : field.default);
  for (const [key, { value, source }] of set) checkField(FIELD_BY_KEY.get(key)!, value, source);

  // A preset sits between the defaults and explicitly set compression fields.
  const preset = (set.get('compression.preset')?.value ?? 'off') as CompressionPreset;
  if (preset !== 'custom') {
    for (const [k, v] of Object.entries(COMPRESSION_PRESETS[preset])) setPath(cfg, `compression.${k}`, v);
  }
  for (const [key, { value }] of set) setPath(cfg, key, value);
  // Setting any compression tuning field without a preset means "custom".
  if (preset === 'off' && !set.has('compression.preset') && [...set.keys()].some((k) => k.startsWith('compression.') && k !== 'compression.enabled' && k !== 'compression.concurrencyLimit')) {
    setPath(cfg, 'compression.preset', 'custom');
  }

  const c = cfg as unknown as GatewayConfig;
  if (!c.path.startsWith('/')) throw new ConfigError('path', "must start with '/'", c.path, set.get('path')?.source);
  if (c.heartbeat.interval > 0 && c.heartbeat.timeout > 3_600_000) throw new ConfigError('heartbeat.timeout', 'must be <= 3600000', c.heartbeat.timeout);
  for (const entry of c.outbound.topicPolicies) {
    const eq = entry.lastIndexOf('=');
    const pattern = entry.slice(0, eq);
    const policy = entry.slice(eq + 1);
    if (eq <= 0 || (policy !== 'close' && policy !== 'drop' && policy !== 'conflate') || topicError(pattern, true) !== null) {
      throw new ConfigError('outbound.topicPolicies', 'entries must be `<topic pattern>=close`, `<topic pattern>=drop` or `<topic pattern>=conflate`', entry, set.get('outbound.topicPolicies')?.source);
    }
  }
  if (c.broker !== 'memory' && !/^(rediss?|nats|tls):\/\/[^\s]+$/.test(c.broker)) {
    throw new ConfigError('broker', 'must be `memory`, a redis:// or rediss:// URL, or a nats:// (tls://) URL list', c.broker, set.get('broker')?.source);
  }
  if (c.workers > 1 && c.broker === 'memory') {
    const rule = 'more than 1 worker needs a shared broker: with broker `memory` each worker would be a separate gateway with its own in-memory broker (clients on different workers would not see each other\'s messages); configure a redis:// or nats:// broker, or use workers 1';
    throw new ConfigError('workers', rule, c.workers, set.get('workers')?.source);
  }
  for (const entry of c.history.topics) {
    if (parseHistoryEntry(entry) === null) {
      throw new ConfigError('history.topics', 'entries must be `<topic pattern>=<count>` or `<topic pattern>=<count>/<seconds>s` with count >= 1', entry, set.get('history.topics')?.source);
    }
  }
  for (const pattern of c.presence.topics) {
    if (topicError(pattern, true) !== null) throw new ConfigError('presence.topics', 'entries must be topic patterns', pattern, set.get('presence.topics')?.source);
  }
  if (c.auth.enabled) {
    const keys = [c.auth.secret, c.auth.publicKey, c.auth.jwksFile].filter(Boolean).length;
    if (keys !== 1) throw new ConfigError('auth', 'auth.enabled needs exactly one of auth.secret, auth.publicKey, auth.jwksFile', keys === 0 ? 'none set' : 'several set', set.get('auth.enabled')?.source);
  }
  return deepFreeze(c);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** The config with secrets masked, for --print-config and /info. */
export function redactConfig(c: GatewayConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of FIELDS) {
    const v = getPath(c as unknown as Record<string, unknown>, field.key);
    // a URL's password is a secret too (broker.url): shown as <redacted>, the rest kept
    const shown = typeof v === 'string' && /^[a-z]+:\/\/[^/@:]*:[^/@]*@/.test(v) ? v.replace(/^([a-z]+:\/\/[^/@:]*:)[^/@]*@/, '$1<redacted>@') : v;
    setPath(out, field.key, field.secret && v ? '<redacted>' : shown);
  }
  return out;
}

export { FIELDS, envName, COMPRESSION_PRESETS };

/** A `history.topics` entry: `<pattern>=<count>` or `<pattern>=<count>/<seconds>s`; null when malformed. */
export function parseHistoryEntry(entry: string): { pattern: string; limit: number; ttl: number } | null {
  const eq = entry.lastIndexOf('=');
  if (eq <= 0) return null;
  const pattern = entry.slice(0, eq);
  const m = /^(\d+)(?:\/(\d+)s)?$/.exec(entry.slice(eq + 1));
  if (m === null || topicError(pattern, true) !== null) return null;
  const limit = Number(m[1]);
  const ttl = m[2] === undefined ? 0 : Number(m[2]) * 1000;
  if (limit < 1 || limit > 1_000_000 || ttl > 365 * 86_400_000) return null;
  return { pattern, limit, ttl };
}
