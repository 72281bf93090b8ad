// The client subcommands of `wiregate`: sub, pub, call, history and presence talk to a running
// gateway through the client SDK (src/client); token mints a development JWT for it. main.ts
// dispatches here, so `wiregate start` never loads the client.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { SignJWT } from 'jose';
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

// ---- entry point ---------------------------------------------------------------------------------

/** Runs one subcommand; sets process.exitCode (and may exit the process once its output is written). */
export async function runTool(tool: ToolName, argv: string[]): Promise<void> {
  try {
    const a = parseToolArgs(tool, argv);
    if (a.help) {
      process.stdout.write(USAGES[tool] + '\n');
      return;
    }
    switch (tool) {
      case 'token':
        return await token(a);
      default:
        throw new ToolUsageError(`wiregate ${tool} is not available yet`);
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
