// The client subcommands of `wiregate`: sub, pub, call, history and presence talk to a running
// gateway through the client SDK (src/client); token mints a development JWT for it. main.ts
// dispatches here, so `wiregate start` never loads the client.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { SignJWT } from 'jose';
import type WebSocket from 'ws';
import { ClientError, WiregateClient, type Message, type SocketLike, type Subscription } from '../client/index.js';
import { APP_ERROR_CODE_MIN, ErrorCode } from '../protocol/codes.js';
import { ConfigError, readConfigFile, resolveConfig } from '../config/index.js';
import { FIELD_BY_KEY } from '../config/schema.js';

/** Exit codes of the client subcommands (their --help and README "Command-line client" list them). */
export const TOOL_EXIT = {
  /** Done: the operation succeeded, --count messages arrived, or SIGINT / SIGTERM ended `sub`. */
  OK: 0,
  /** Unexpected error. */
  FAILURE: 1,
  /** Usage error: unknown option, missing or invalid value, unreadable file, unusable config. */
  USAGE: 2,
  /** Cannot connect: refused, unreachable, handshake rejected (HTTP 401, 403, 426, 429, 503), or the connection was lost. */
  CONNECT: 3,
  /** The server refused the operation (an ERROR answer: forbidden, invalid topic, ...), or did not answer within --timeout. */
  REFUSED: 4,
} as const;

export const TOOLS_EXIT_CODES = `Exit codes:
  0  done (for sub: --count messages received, or SIGINT / SIGTERM)
  1  unexpected error
  2  usage error (unknown option, missing or invalid value, unreadable file or config)
  3  cannot connect: refused, unreachable, handshake rejected (HTTP 401, 403, 426, ...),
     or the connection was lost (sub: the client gave up reconnecting)
  4  the server refused the operation (an ERROR answer, e.g. 104 FORBIDDEN; code and name
     on stderr), or no answer within --timeout`;

/** The subcommands this module runs, with their one-line summaries for `wiregate --help`. */
export const TOOLS = {
  sub: 'subscribe and print messages as JSON lines',
  pub: 'publish a JSON value, a file, or stdin lines',
  call: 'call a method (REQUEST) and print its result',
  history: "print a topic's kept messages as JSON lines",
  presence: "print a topic's presence list",
  token: 'mint a development HS256 JWT',
} as const;
export type ToolName = keyof typeof TOOLS;

export const isTool = (name: string): name is ToolName => Object.hasOwn(TOOLS, name);

const DEFAULT_PORT = FIELD_BY_KEY.get('port')!.default as number;
const DEFAULT_PATH = FIELD_BY_KEY.get('path')!.default as string;
const DEFAULT_URL = `ws://127.0.0.1:${DEFAULT_PORT}${DEFAULT_PATH}`;
const DEFAULT_TIMEOUT = 10_000;

const CONNECTION_OPTIONS = `Connection options:
  --url <ws-url>          gateway endpoint (default WIREGATE_URL or ${DEFAULT_URL};
                          a URL without a path gets ${DEFAULT_PATH})
  --token <jwt>           token for gateways with auth (default WIREGATE_TOKEN)
  --timeout <ms>          connect and answer timeout (default ${DEFAULT_TIMEOUT})
  -h, --help              print this help and exit`;

const JSON_NOTE = `Payloads are JSON. Binary payloads (msgpack bin) are written as {"$base64": "<base64>"}, and
such an object is sent as binary by pub; integers beyond 2^53 are written as strings.`;

const USAGES: Record<ToolName, string> = {
  sub: `Usage: wiregate sub <pattern> [options]

Subscribes to a topic pattern (+ one level, # the rest) and prints one JSON line per message:
  {"topic": "...", "seq": 7, "epoch": "...", "payload": ..., "retained": false, "recovered": false}
("epoch" only for topics with history). Reconnects after a lost connection and resumes from the
last message seen when the topic keeps history; a resumption that could not recover everything
is reported on stderr. With --presence, presence events are printed too, as
  {"presence": "join" | "leave", "topic": "...", "entry": {"client", "user", "info"}}

Options:
  --since <seq>:<epoch>   first recover the messages after this position (a topic with history)
  --retained              also print the retained values of the matching topics first
  --presence              also print presence events (a topic in presence.topics)
  --count <n>             exit 0 after n messages (retained and recovered ones count)
${CONNECTION_OPTIONS}

${JSON_NOTE}

${TOOLS_EXIT_CODES}`,

  pub: `Usage: wiregate pub <topic> <json | @file | -> [options]

Publishes one message: a JSON value given inline, the JSON contents of a file (@file), or with
"-" one message per line of stdin (JSON per line; empty lines are skipped), in order.

Options:
  --retain                keep each message as the topic's retained value
  --qos <none|ack>        none (default): exit once the messages are written; a refused publish
                          goes unnoticed. ack: wait for the server's answer to each message and
                          stop at the first refusal (exit 4, its code on stderr)
  --raw                   send the text itself (a line, the file, the argument) as a string
                          payload instead of parsing it as JSON
${CONNECTION_OPTIONS}

${JSON_NOTE}

${TOOLS_EXIT_CODES}`,

  call: `Usage: wiregate call <method> [json | @file | -] [options]

Sends a REQUEST to a method registered on the gateway (gateway.handle) with the JSON value as its
parameters (none if omitted) and prints the result as one JSON line. An unknown method is
ERROR 106 UNKNOWN_METHOD (exit 4).

Options:
${CONNECTION_OPTIONS}

${JSON_NOTE}

${TOOLS_EXIT_CODES}`,

  history: `Usage: wiregate history <topic> [options]

Prints the messages a topic keeps (history.topics), one JSON line each, oldest first, in the
format of wiregate sub. A topic without history is ERROR 115 NOT_ENABLED (exit 4).

Options:
  --since <seq>:<epoch>   only the messages after this position
  --limit <n>             at most n messages (the newest n; default and maximum history.maxRecover)
  --reverse               newest first (not with --since)
${CONNECTION_OPTIONS}

${JSON_NOTE}

${TOOLS_EXIT_CODES}`,

  presence: `Usage: wiregate presence <topic> [options]

Prints the connections subscribed to a topic in presence.topics as one JSON array of
{"client", "user", "info"}. A topic without presence is ERROR 115 NOT_ENABLED (exit 4).

Options:
${CONNECTION_OPTIONS}

${TOOLS_EXIT_CODES}`,

  token: `Usage: wiregate token [options]

Mints an HS256 JWT for development and prints it. The secret is auth.secret of the configuration,
resolved like wiregate start does it (config file, WIREGATE_* environment, --secret); the
configuration's auth.issuer and auth.audience become the iss and aud claims.

Options:
  --sub <user>            user id, the sub claim (default "dev")
  --ttl <duration>        lifetime: 90s, 15m, 1h, 7d or plain seconds; "none" for no exp
                          (default 1h)
  --allow-sub <pattern>   may subscribe to this pattern (repeatable; the wg.sub claim)
  --allow-pub <pattern>   may publish on this pattern (repeatable; the wg.pub claim)
  --claim <key>=<value>   any other claim (repeatable); the value is JSON if it parses as JSON,
                          otherwise a string. It replaces a claim set by the options above
  --secret <secret>       the HS256 secret (or WIREGATE_AUTH_SECRET, or auth.secret in --config)
  -c, --config <file>     JSON config file (or WIREGATE_CONFIG=<file>)
  -h, --help              print this help and exit
With authentication on, the gateway refuses every topic a token does not allow (deny by default):
e.g. --allow-sub 'demo/#' --allow-pub 'demo/#'. See docs/security.md.

Exit codes:
  0  the token is printed
  1  unexpected error
  2  usage error, or no usable secret (none given, or the config uses a public key or a JWKS)`,
};

/** A command-line mistake (exit 2). */
export class ToolUsageError extends Error {
  override name = 'ToolUsageError';
}

/** Exit with this code after printing the message (if any) on stderr. */
class ToolExit extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

// ---- argument parsing ----------------------------------------------------------------------------

type OptionSpec = { type: 'string' | 'boolean'; short?: string; multiple?: boolean };

const COMMON: Record<string, OptionSpec> = {
  url: { type: 'string' },
  token: { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

const SPECS: Record<ToolName, { options: Record<string, OptionSpec>; positionals: [min: number, max: number, names: string] }> = {
  sub: { options: { ...COMMON, since: { type: 'string' }, retained: { type: 'boolean' }, presence: { type: 'boolean' }, count: { type: 'string' } }, positionals: [1, 1, '<pattern>'] },
  pub: { options: { ...COMMON, retain: { type: 'boolean' }, qos: { type: 'string' }, raw: { type: 'boolean' } }, positionals: [2, 2, '<topic> <json | @file | ->'] },
  call: { options: { ...COMMON }, positionals: [1, 2, '<method> [json | @file | -]'] },
  history: { options: { ...COMMON, since: { type: 'string' }, limit: { type: 'string' }, reverse: { type: 'boolean' } }, positionals: [1, 1, '<topic>'] },
  presence: { options: { ...COMMON }, positionals: [1, 1, '<topic>'] },
  token: {
    options: {
      sub: { type: 'string' },
      ttl: { type: 'string' },
      'allow-sub': { type: 'string', multiple: true },
      'allow-pub': { type: 'string', multiple: true },
      claim: { type: 'string', multiple: true },
      secret: { type: 'string' },
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
    },
    positionals: [0, 0, ''],
  },
};

export interface ToolArgs {
  help: boolean;
  positionals: string[];
  /** Option name -> values in the order given (one for single options). Booleans are 'true'. */
  values: Map<string, string[]>;
}

/**
 * Parses a subcommand's arguments (node:util parseArgs tokenises). Throws ToolUsageError for
 * unknown options, missing values, values on boolean options, repeated single options and a wrong
 * number of arguments; --help anywhere wins.
 */
export function parseToolArgs(tool: ToolName, argv: string[]): ToolArgs {
  const spec = SPECS[tool];
  const out: ToolArgs = { help: false, positionals: [], values: new Map() };
  const { tokens } = parseArgs({ args: argv, options: spec.options, strict: false, allowPositionals: true, tokens: true });
  if (tokens.some((t) => t.kind === 'option' && t.name === 'help')) {
    out.help = true;
    return out;
  }
  for (const t of tokens) {
    if (t.kind === 'option-terminator') continue;
    if (t.kind === 'positional') {
      out.positionals.push(t.value);
      continue;
    }
    const o = spec.options[t.name];
    if (o === undefined) throw new ToolUsageError(`unknown option ${t.rawName}`);
    let value: string;
    if (o.type === 'string') {
      // parseArgs takes the next argument as the value even when it is an option
      if (t.value === undefined || (!t.inlineValue && t.value.startsWith('-') && t.value.length > 1)) throw new ToolUsageError(`option ${t.rawName} needs a value`);
      value = t.value;
    } else {
      if (t.value !== undefined) throw new ToolUsageError(`option ${t.rawName} takes no value`);
      value = 'true';
    }
    const list = out.values.get(t.name) ?? [];
    if (list.length > 0 && !o.multiple) throw new ToolUsageError(`option ${t.rawName} given twice`);
    list.push(value);
    out.values.set(t.name, list);
  }
  const [min, max, names] = spec.positionals;
  if (out.positionals.length < min) throw new ToolUsageError(`missing argument${min - out.positionals.length > 1 ? 's' : ''}: wiregate ${tool} ${names}`);
  if (out.positionals.length > max) throw new ToolUsageError(`unexpected argument '${out.positionals[max]}'`);
  return out;
}

const one = (a: ToolArgs, name: string): string | undefined => a.values.get(name)?.[0];
const flag = (a: ToolArgs, name: string): boolean => a.values.has(name);

function intOption(a: ToolArgs, name: string, min: number, fallback?: number): number | undefined {
  const raw = one(a, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || !Number.isSafeInteger(Number(raw))) throw new ToolUsageError(`option --${name} must be an integer >= ${min}, not '${raw}'`);
  return Number(raw);
}

/** `<seq>:<epoch>`: the epoch is everything after the first colon. */
export function parsePosition(raw: string, option = '--since'): { seq: number; epoch: string } {
  const m = /^(\d+):(.{1,64})$/.exec(raw);
  if (m === null || !Number.isSafeInteger(Number(m[1]))) throw new ToolUsageError(`option ${option} must be <seq>:<epoch> (e.g. 42:Zq3vR8tw), not '${raw}'`);
  return { seq: Number(m[1]), epoch: m[2] };
}

/** `90s`, `15m`, `1h`, `7d`, or plain seconds -> seconds. */
export function parseDuration(raw: string): number {
  const m = /^(\d+)(s|m|h|d)?$/.exec(raw);
  if (m === null || Number(m[1]) === 0) throw new ToolUsageError(`option --ttl must be a duration like 90s, 15m, 1h, 7d (or "none"), not '${raw}'`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
}

// ---- token ---------------------------------------------------------------------------------------

async function token(a: ToolArgs): Promise<void> {
  const file = one(a, 'config') ?? process.env.WIREGATE_CONFIG;
  const secretFlag = one(a, 'secret');
  if (secretFlag === '') throw new ToolUsageError('option --secret needs a value');
  let config;
  try {
    config = resolveConfig({
      file: file ? readConfigFile(file) : undefined,
      filePath: file,
      env: process.env,
      flags: secretFlag !== undefined ? new Map([['auth.secret', secretFlag]]) : undefined,
    });
  } catch (err) {
    if (err instanceof ConfigError) throw new ToolUsageError(err.message);
    throw err;
  }
  const secret = config.auth.secret;
  if (secret === '') {
    const other = config.auth.publicKey ? 'auth.publicKey' : config.auth.jwksFile ? 'auth.jwksFile' : null;
    throw new ToolUsageError(
      other
        ? `the configuration verifies tokens with ${other}; wiregate token mints HS256 tokens only (sign with your private key instead)`
        : 'no secret: pass --secret <secret>, set WIREGATE_AUTH_SECRET, or give a config file with auth.secret (-c)',
    );
  }
  const ttl = one(a, 'ttl') ?? '1h';
  const seconds = ttl === 'none' ? null : parseDuration(ttl);
  const sub = one(a, 'sub') ?? 'dev';
  if (sub === '') throw new ToolUsageError('option --sub needs a value');

  const claims: Record<string, unknown> = { sub };
  const allowSub = a.values.get('allow-sub') ?? [];
  const allowPub = a.values.get('allow-pub') ?? [];
  if (allowSub.length > 0 || allowPub.length > 0) claims.wg = { sub: allowSub, pub: allowPub };
  if (config.auth.issuer) claims.iss = config.auth.issuer;
  if (config.auth.audience) claims.aud = config.auth.audience;
  for (const c of a.values.get('claim') ?? []) {
    const eq = c.indexOf('=');
    if (eq <= 0) throw new ToolUsageError(`option --claim must be <key>=<value>, not '${c}'`);
    const raw = c.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      /* a plain string */
    }
    claims[c.slice(0, eq)] = value;
  }
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt(now);
  if (seconds !== null) jwt.setExpirationTime(now + seconds);
  process.stdout.write((await jwt.sign(new TextEncoder().encode(secret))) + '\n');
}

// ---- connecting ----------------------------------------------------------------------------------

interface Common {
  url: string;
  token: string | undefined;
  timeout: number;
}

function common(a: ToolArgs): Common {
  let url = one(a, 'url') ?? (process.env.WIREGATE_URL || DEFAULT_URL);
  if (!/^wss?:\/\/[^/?#]/i.test(url)) throw new ToolUsageError(`--url must be a ws:// or wss:// URL, not '${url}'`);
  if (/^wss?:\/\/[^/?#]+$/i.test(url)) url += DEFAULT_PATH;
  try {
    new URL(url);
  } catch {
    throw new ToolUsageError(`--url is not a valid URL: '${url}'`);
  }
  const token = one(a, 'token') ?? (process.env.WIREGATE_TOKEN || undefined);
  if (token === '') throw new ToolUsageError('option --token needs a value');
  return { url, token, timeout: intOption(a, 'timeout', 1, DEFAULT_TIMEOUT)! };
}

const NET_ERRORS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'timed out',
};

/**
 * The SDK's Node client, noting why the last connection attempt failed, for the exit-3 line: the
 * network error behind it (refused, unreachable...), which the client itself only sees as a close
 * with 1006, or the HTTP status and error code of a refused upgrade (which the client reports when
 * it gives up, but not when it will retry: a 429 or 503 on the first attempt of `sub`).
 */
class CliClient extends WiregateClient {
  lastFailure: string | null = null;

  protected override createSocket(url: string, protocols: string[], token: string | undefined): SocketLike {
    const sock = super.createSocket(url, protocols, token);
    (sock as unknown as WebSocket).on('error', (err: NodeJS.ErrnoException) => {
      // ws reports its own abort of a refused upgrade as an error too: keep the refusal
      this.lastFailure ??= err.code !== undefined && NET_ERRORS[err.code] ? `${NET_ERRORS[err.code]} (${err.code})` : err.message;
    });
    this.lastFailure = null;
    return sock;
  }

  protected override refused(sock: SocketLike, refusal: { status: number; retryAfter: number; error: string }): void {
    this.lastFailure = `upgrade refused: HTTP ${refusal.status}${refusal.error ? ` ${refusal.error}` : ''}`;
    super.refused(sock, refusal);
  }
}

const CODE_NAMES = new Map<number, string>(Object.entries(ErrorCode).map(([name, code]) => [code, name]));

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The exit for a failed operation: an ERROR answer or no answer is 4, a lost connection 3. */
function failed(what: string, err: unknown, c: Common): ToolExit {
  if (err instanceof ClientError) {
    if (typeof err.code === 'number') {
      const name = CODE_NAMES.get(err.code) ?? (err.code >= APP_ERROR_CODE_MIN ? 'application error' : 'error');
      return new ToolExit(TOOL_EXIT.REFUSED, `${what} refused: ${err.code} ${name}: ${err.message}`);
    }
    if (err.code === 'TIMEOUT') return new ToolExit(TOOL_EXIT.REFUSED, `${what}: no answer within ${c.timeout} ms (TIMEOUT)`);
    if (err.code === 'CLOSED' || err.code === 'DISCONNECTED') return new ToolExit(TOOL_EXIT.CONNECT, `${what}: the connection was lost (${err.code}: ${err.message})`);
  }
  return new ToolExit(TOOL_EXIT.FAILURE, `${what} failed: ${describe(err)}`);
}

/**
 * A connected client, or ToolExit 3 with the reason: refused, unreachable, the handshake's HTTP
 * answer, or no connection within the timeout. `reconnect` is for `sub`: the first attempt decides
 * here all the same (a second attempt means the first failed), later losses are reconnected. The
 * one-shot commands fail on a lost connection instead of waiting for the next one.
 */
async function open(c: Common, reconnect: boolean): Promise<CliClient> {
  const client = new CliClient(c.url, {
    ...(c.token !== undefined ? { token: c.token } : {}),
    reconnect: reconnect ? {} : false,
    requestTimeout: c.timeout,
  });
  client.on('error', () => {}); // every failure that matters here also fails an operation or closes
  const cannot = (why: string) => {
    // "upgrade refused: HTTP 401 TOKEN_SIGNATURE_INVALID" from the client says it all; a network
    // failure is only "closed with 1006" to it
    const reason = /^upgrade refused/.test(why) ? why : (client.lastFailure ?? why);
    return new ToolExit(TOOL_EXIT.CONNECT, `cannot connect to ${c.url}: ${reason}`);
  };
  let timer: NodeJS.Timeout | undefined;
  let onConnecting: ((e: { attempt: number }) => void) | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => reject(cannot(`no connection within ${c.timeout} ms`)), c.timeout);
      onConnecting = (e) => {
        if (e.attempt > 1) reject(cannot('connection failed'));
      };
      client.on('connecting', onConnecting);
      client.connect().then(resolve, (err: unknown) => reject(cannot(describe(err))));
    });
  } catch (err) {
    await client.close().catch(() => {});
    throw err;
  } finally {
    clearTimeout(timer);
    if (onConnecting) client.off('connecting', onConnecting);
  }
  return client;
}

async function closeQuietly(client: CliClient): Promise<void> {
  await client.close().catch(() => {});
}

// ---- JSON in and out ------------------------------------------------------------------------------

/** JSON.stringify with binary as {"$base64": ...} (Buffer's own toJSON runs before a replacer sees the value, so look at the holder) and big integers as strings. */
export function toJsonLine(value: unknown): string {
  return JSON.stringify(value, function (this: Record<string, unknown>, key: string, v: unknown) {
    const raw = this[key];
    if (raw instanceof Uint8Array) return { $base64: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64') };
    if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
    return v;
  });
}

/** JSON.parse where an object that is exactly {"$base64": "<string>"} becomes binary. */
export function fromJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text, (_k, v: unknown) => {
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
        const keys = Object.keys(v);
        const b64 = (v as { $base64?: unknown }).$base64;
        if (keys.length === 1 && typeof b64 === 'string') return Buffer.from(b64, 'base64');
      }
      return v;
    });
  } catch (err) {
    throw new ToolUsageError(`${where} is not valid JSON (${describe(err)}); use --raw to send text as a string`);
  }
}

function messageLine(m: Message, epoch?: string): string {
  return toJsonLine({ topic: m.topic, seq: m.seq, epoch: m.epoch ?? epoch, payload: m.payload ?? null, retained: Boolean(m.retained), recovered: Boolean(m.recovered) });
}

function out(line: string): void {
  process.stdout.write(line + '\n');
}

/** One value from an argument: inline JSON, @file, or all of stdin with `-`. */
async function readValue(source: string, raw: boolean): Promise<unknown> {
  let text: string;
  let where: string;
  if (source === '-') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    text = Buffer.concat(chunks).toString('utf8');
    where = 'stdin';
  } else if (source.startsWith('@')) {
    text = readArgFile(source.slice(1));
    where = source.slice(1);
  } else {
    text = source;
    where = 'the argument';
  }
  return raw ? text : fromJson(text, where);
}

// ---- the commands ----------------------------------------------------------------------------------

async function sub(a: ToolArgs): Promise<void> {
  const c = common(a);
  const pattern = a.positionals[0];
  const sinceRaw = one(a, 'since');
  const since = sinceRaw === undefined ? undefined : parsePosition(sinceRaw);
  const count = intOption(a, 'count', 1);
  const client = await open(c, true);
  let received = 0;
  let finish!: (e: ToolExit | null) => void;
  const finished = new Promise<ToolExit | null>((resolve) => (finish = resolve));
  const stop = () => finish(null);
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  client.on('presence', (e) => out(toJsonLine({ presence: e.kind, topic: e.topic, entry: e.entry })));
  client.on('disconnected', (e) => {
    if (e.reconnect) console.error(`wiregate sub: connection lost (${e.code}${e.reason ? ` ${e.reason}` : ''}), reconnecting`);
    else finish(new ToolExit(TOOL_EXIT.CONNECT, `connection lost (${e.code}${e.reason ? ` ${e.reason}` : ''}), not reconnecting`));
  });
  client.on('resubscribed', (e) => {
    for (const s of e.subscriptions) {
      if (!s.recovered) console.error(`wiregate sub: resubscribed to ${s.pattern}; what was published meanwhile is not recovered (the topic keeps no history, or too much was missed)`);
    }
  });
  let subscription: Subscription;
  try {
    subscription = await client.subscribe(
      pattern,
      (m) => {
        if (count !== undefined && received >= count) return;
        out(messageLine(m));
        received++;
        if (count !== undefined && received >= count) finish(null);
      },
      { ...(since ? { since } : {}), retained: flag(a, 'retained'), presence: flag(a, 'presence'), recover: true },
    );
  } catch (err) {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await closeQuietly(client);
    throw failed(`subscribe to ${pattern}`, err, c);
  }
  // on stderr, like every diagnostic: scripts read stdout; people and tests see when messages can come
  const at = subscription.position;
  console.error(`wiregate sub: subscribed to ${pattern}${at ? ` at ${at.seq}:${at.epoch}` : ''}`);
  const result = await finished;
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  await closeQuietly(client);
  if (result !== null) throw result;
}

async function pub(a: ToolArgs): Promise<void> {
  const c = common(a);
  const [topic, source] = a.positionals;
  const qos = one(a, 'qos') ?? 'none';
  if (qos !== 'none' && qos !== 'ack') throw new ToolUsageError(`option --qos must be none or ack, not '${qos}'`);
  const raw = flag(a, 'raw');
  const opts = { ack: qos === 'ack', retain: flag(a, 'retain'), timeout: c.timeout };
  // an inline value or a file is checked before connecting; stdin lines as they come
  let values: AsyncIterable<unknown> | unknown[];
  if (source === '-') {
    values = (async function* () {
      let n = 0;
      for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
        n++;
        if (line.trim() === '') continue;
        yield raw ? line : fromJson(line, `stdin line ${n}`);
      }
    })();
  } else values = [await readValue(source, raw)];
  const client = await open(c, false);
  let n = 0;
  try {
    for await (const v of values) {
      n++;
      try {
        await client.publish(topic, v, opts);
      } catch (err) {
        throw failed(`publish${source === '-' ? ` #${n}` : ''} to ${topic}`, err, c);
      }
    }
  } finally {
    await closeQuietly(client);
  }
}

async function call(a: ToolArgs): Promise<void> {
  const c = common(a);
  const [method, source] = a.positionals;
  const params = source === undefined ? undefined : await readValue(source, false);
  const client = await open(c, false);
  try {
    const result = await client.request(method, params, { timeout: c.timeout }).catch((err: unknown) => {
      throw failed(`call ${method}`, err, c);
    });
    out(toJsonLine(result ?? null));
  } finally {
    await closeQuietly(client);
  }
}

async function history(a: ToolArgs): Promise<void> {
  const c = common(a);
  const topic = a.positionals[0];
  const sinceRaw = one(a, 'since');
  const since = sinceRaw === undefined ? undefined : parsePosition(sinceRaw);
  const limit = intOption(a, 'limit', 0);
  const reverse = flag(a, 'reverse');
  if (reverse && since) throw new ToolUsageError('--reverse cannot be combined with --since');
  const client = await open(c, false);
  try {
    const r = await client.history(topic, { ...(since ? { since } : {}), ...(limit !== undefined ? { limit } : {}), reverse }).catch((err: unknown) => {
      throw failed(`history of ${topic}`, err, c);
    });
    for (const m of r.publications) out(messageLine(m, r.position.epoch));
  } finally {
    await closeQuietly(client);
  }
}

async function presence(a: ToolArgs): Promise<void> {
  const c = common(a);
  const topic = a.positionals[0];
  const client = await open(c, false);
  try {
    const entries = await client.presence(topic).catch((err: unknown) => {
      throw failed(`presence of ${topic}`, err, c);
    });
    out(toJsonLine(entries));
  } finally {
    await closeQuietly(client);
  }
}

// ---- entry point ---------------------------------------------------------------------------------

/** Runs one subcommand; sets process.exitCode (and may exit the process once its output is written). */
export async function runTool(tool: ToolName, argv: string[]): Promise<void> {
  // `wiregate sub ... | head -1`: a reader that went away ends the command, quietly and successfully
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(TOOL_EXIT.OK);
    throw err;
  });
  try {
    const a = parseToolArgs(tool, argv);
    if (a.help) {
      process.stdout.write(USAGES[tool] + '\n');
      return;
    }
    switch (tool) {
      case 'token':
        return await token(a);
      case 'sub':
        return await sub(a);
      case 'pub':
        return await pub(a);
      case 'call':
        return await call(a);
      case 'history':
        return await history(a);
      case 'presence':
        return await presence(a);
    }
  } catch (err) {
    if (err instanceof ToolUsageError) {
      console.error(`wiregate ${tool}: ${err.message} (see wiregate ${tool} --help)`);
      process.exitCode = TOOL_EXIT.USAGE;
      return;
    }
    if (err instanceof ToolExit) {
      if (err.message) console.error(`wiregate ${tool}: ${err.message}`);
      process.exitCode = err.code;
      return;
    }
    console.error(`wiregate ${tool}: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = TOOL_EXIT.FAILURE;
  }
}

/** Reads a file for `@file` arguments (exit 2 when it cannot be read). */
export function readArgFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ToolUsageError(`cannot read ${path}: ${(err as Error).message}`);
  }
}
