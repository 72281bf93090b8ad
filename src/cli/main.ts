// The `wiregate` command.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, readConfigFile, redactConfig, resolveConfig, FIELDS, envName } from '../config/index.js';
import type { GatewayConfig } from '../config/index.js';
import { createGateway, internals } from '../gateway.js';
import { isClusterWorker, joinCluster, runPrimary, runsPrimary, workerCount, workerLogger } from './cluster.js';
import { DUPLICATE_SIGNAL_MS, onShutdownSignals } from './signals.js';

/** Exit codes of the `wiregate` command (also listed by `wiregate --help` and in README "Operate it"). */
export const EXIT = {
  /** Done: help, version, --print-config, or a clean shutdown after SIGTERM / SIGINT. */
  OK: 0,
  /** Unexpected error, failed shutdown, or a different / later second signal that cut the drain short. */
  FAILURE: 1,
  /** Usage or configuration error: unknown command or option, missing or invalid value, unreadable config. */
  USAGE: 2,
  /** The gateway could not start: cannot listen (address in use, permission denied, ...) or startup failed. */
  START: 3,
} as const;

export { DUPLICATE_SIGNAL_MS };

const EXIT_CODES = `Exit codes:
  0  done (help, --version, --print-config, or a clean shutdown on SIGTERM / SIGINT)
  1  unexpected error, failed shutdown, or a second signal that cut the drain short
  2  usage or configuration error (unknown option, invalid value, unreadable config or keys)
  3  cannot start: cannot listen on the address (in use, permission denied, ...)`;

const USAGE = `Usage:
  wiregate start [options]            start the gateway (in-memory broker; --broker redis:// or nats://)
  wiregate bench <scenario> [...]     run benchmarks (source checkout only; see docs/benchmarks.md)
  wiregate sub <pattern>              subscribe and print messages as JSON lines
  wiregate pub <topic> <json|@file|-> publish a JSON value, a file, or stdin lines
  wiregate call <method> [json]       call a method and print its result
  wiregate history <topic>            print a topic's kept messages as JSON lines
  wiregate presence <topic>           print a topic's presence list
  wiregate token [--sub <user>]       mint a development HS256 JWT
  wiregate --version
  wiregate <command> --help           usage of a command

${EXIT_CODES}
The client commands (sub, pub, call, history, presence) exit 3 when they cannot connect and 4
when the server refuses the operation (their --help has the details).`;

const START_USAGE = `Usage: wiregate start [options]

Options:
  -c, --config <file>       JSON config file (or WIREGATE_CONFIG=<file>)
  -p, --port <n>            TCP port (0 picks a free port)
  --host <addr>             interface to listen on
  --workers <n>             processes sharing the port (node:cluster): 0 = one per core with a
                            shared broker (redis://, nats://), else 1; more than 1 needs one
  --print-config            print the effective config (secrets redacted) and exit
  --<key>=<value>           any config key in dotted form, e.g. --heartbeat.interval=15000,
  --<key> <value>           or kebab-case, e.g. --heartbeat-interval 15000; boolean keys
                            need no value (--trust-proxy) or take one (--trust-proxy=false)
  -h, --help                print this help and exit
Every key is in docs/configuration.md and is also a WIREGATE_* environment variable.
Precedence: defaults < config file < environment < flags.
SIGTERM / SIGINT: new upgrades get 503, clients are closed with 1001, exit 0 once drained;
a different signal, or the same one again after ${DUPLICATE_SIGNAL_MS} ms, exits 1 at once.
With workers, the primary forwards the signal to every worker and exits 0 once all drained.

${EXIT_CODES}`;

const BENCH_USAGE = `Usage: wiregate bench <scenario|all|quick> [options]
Runs bench/run.mjs (same as \`npm run bench -- ...\`); it ships with the source repository only.
See docs/benchmarks.md.`;

/** A command-line mistake that is not about a config value (exit 2). */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface StartArgs {
  configFile?: string;
  printConfig: boolean;
  help: boolean;
  /** Dotted config key -> raw string value. */
  flags: Map<string, string>;
}

type Field = (typeof FIELDS)[number];
type OptionSpec = { type: 'string' | 'boolean'; short?: string };

const kebab = (key: string) => key.replace(/([a-z0-9])([A-Z])/g, '$1-$2').replace(/\./g, '-').toLowerCase();

/** Option name (dotted key or its kebab-case alias) -> config field. */
const CONFIG_OPTIONS = new Map<string, Field>();
for (const f of FIELDS) {
  CONFIG_OPTIONS.set(f.key, f);
  CONFIG_OPTIONS.set(kebab(f.key), f);
}

/** Config types whose flag may stand alone (meaning true) or take a value (--trust-proxy, --trust-proxy=2). */
const OPTIONAL_VALUE_TYPES: ReadonlySet<string> = new Set(['bool', 'proxy']);

// Options that may stand alone are 'boolean' for parseArgs (it never takes the next argument as
// their value); parseStartArgs takes it when it is a plain word.
const START_OPTIONS: Record<string, OptionSpec> = {};
for (const [name, f] of CONFIG_OPTIONS) START_OPTIONS[name] = { type: OPTIONAL_VALUE_TYPES.has(f.type) ? 'boolean' : 'string' };
START_OPTIONS.port = { type: 'string', short: 'p' };
START_OPTIONS.config = { type: 'string', short: 'c' };
START_OPTIONS['print-config'] = { type: 'boolean' };
START_OPTIONS.help = { type: 'boolean', short: 'h' };

/**
 * Parses `start` arguments (node:util parseArgs does the tokenising). Throws UsageError for unknown
 * options, stray arguments and missing values; values themselves are checked by resolveConfig.
 */
export function parseStartArgs(argv: string[]): StartArgs {
  const out: StartArgs = { printConfig: false, help: false, flags: new Map() };
  // Not strict: boolean config keys may still carry a value (--trust-proxy=false), and the
  // messages below name the option the way it was typed.
  const { tokens } = parseArgs({ args: argv, options: START_OPTIONS, strict: false, allowPositionals: true, tokens: true });
  if (tokens.some((t) => t.kind === 'option' && t.name === 'help')) {
    out.help = true;
    return out;
  }
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t.kind === 'option-terminator') continue;
    if (t.kind === 'positional') throw new UsageError(`unexpected argument '${t.value}'`);
    const spec = START_OPTIONS[t.name];
    if (spec === undefined) throw new UsageError(`unknown option ${t.rawName}`);
    let value = t.value;
    if (spec.type === 'string') {
      // parseArgs takes the next argument as the value even when it is an option
      if (value === undefined || (!t.inlineValue && value.startsWith('-') && value.length > 1)) {
        throw new UsageError(`option ${t.rawName} needs a value`);
      }
    } else if (value === undefined) {
      // standing alone it means true; `--trust-proxy false` takes the next word (start has no
      // positional arguments, so nothing else could use it)
      const next = tokens[i + 1];
      if (next?.kind === 'positional' && next.index === t.index + 1) {
        value = next.value;
        i++;
      }
    }
    if (t.name === 'config') {
      if (value === '') throw new UsageError(`option ${t.rawName} needs a value`);
      out.configFile = value;
    }
    else if (t.name === 'print-config') {
      if (value !== undefined) throw new UsageError(`option ${t.rawName} takes no value`);
      out.printConfig = true;
    } else out.flags.set(CONFIG_OPTIONS.get(t.name)!.key, value ?? 'true');
  }
  return out;
}

/** The one line printed when the gateway cannot start, and its exit code. */
export function describeStartError(err: unknown, config: Pick<GatewayConfig, 'host' | 'port'>): { line: string; code: number } {
  const oneLine = (s: string) => s.replace(/\s*\n\s*/g, ' ').trim();
  if (err instanceof ConfigError) return { line: `wiregate: ${oneLine(err.message)}`, code: EXIT.USAGE };
  const e = err as NodeJS.ErrnoException | undefined;
  const message = oneLine(String(e?.message ?? err));
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const reasons: Record<string, string> = {
    EADDRINUSE: 'address already in use',
    EACCES: config.port > 0 && config.port < 1024 ? 'permission denied (ports below 1024 need privileges)' : 'permission denied',
    EADDRNOTAVAIL: 'address not available on this machine',
    ENOTFOUND: 'host name not found',
    EAI_AGAIN: 'host name lookup failed (temporary)',
  };
  if (typeof e?.code === 'string' && ['listen', 'bind', 'getaddrinfo'].includes(String(e.syscall))) {
    return { line: `wiregate: cannot listen on ${host}:${config.port}: ${reasons[e.code] ?? message} (${e.code})`, code: EXIT.START };
  }
  return { line: `wiregate: cannot start: ${message}`, code: EXIT.START };
}

function usageFailure(message: string, hint: string): void {
  console.error(`wiregate: ${message} (see ${hint})`);
  process.exitCode = EXIT.USAGE;
}

export async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return;
    case '--version':
    case '-v': {
      const { createRequire } = await import('node:module');
      console.log((createRequire(import.meta.url)('../../package.json') as { version: string }).version);
      return;
    }
    case 'start':
      return start(rest);
    case 'bench':
      return runBench(rest);
    case 'sub':
    case 'pub':
    case 'call':
    case 'history':
    case 'presence':
    case 'token':
      // loaded only for these commands: `start` never loads the client
      return (await import('./tools.js')).runTool(cmd, rest);
    default:
      return usageFailure(cmd.startsWith('-') ? `unknown option ${cmd}` : `unknown command '${cmd}'`, 'wiregate --help');
  }
}

async function start(argv: string[]): Promise<void> {
  let config: GatewayConfig;
  let args: StartArgs;
  try {
    args = parseStartArgs(argv);
    if (args.help) {
      console.log(START_USAGE);
      return;
    }
    const file = args.configFile ?? process.env.WIREGATE_CONFIG;
    config = resolveConfig({
      file: file ? readConfigFile(file) : undefined,
      filePath: file,
      env: process.env,
      flags: args.flags,
    });
  } catch (err) {
    if (err instanceof UsageError) return usageFailure(err.message, 'wiregate start --help');
    if (err instanceof ConfigError) {
      console.error(`wiregate: ${err.message}`);
      process.exitCode = EXIT.USAGE;
      return;
    }
    throw err;
  }
  if (args.printConfig) {
    console.log(JSON.stringify(redactConfig(config), null, 2));
    return;
  }
  const cannotStart: (err: unknown) => never = (err) => {
    // Timers and the broker may already run: exit rather than wait for them.
    const { line, code } = describeStartError(err, config);
    console.error(line);
    process.exit(code);
  };
  if (runsPrimary(config)) return runPrimary(config, workerCount(config));
  const worker = isClusterWorker();
  let gw: ReturnType<typeof createGateway>;
  try {
    gw = createGateway({ config, logger: worker ? workerLogger(config) : undefined });
    if (worker) joinCluster(internals(gw));
  } catch (err) {
    cannotStart(err);
  }
  const listening = gw.listen();
  // Handlers go in before listen() resolves: its "wiregate listening" line is written first, and
  // a supervisor (or npm) may signal as soon as it sees that line.
  // (A cluster worker gets a terminal's Ctrl-C twice too: from the terminal and from the primary.)
  const stop = () => {
    listening
      .catch(() => new Promise(() => {})) // a failed start exits with its own code
      .then(() => gw.close())
      .then(
        () => process.exit(EXIT.OK),
        (err) => {
          gw.log.error({ err }, 'shutdown failed');
          process.exit(EXIT.FAILURE);
        },
      );
  };
  onShutdownSignals(gw.log, stop, () => process.exit(EXIT.FAILURE));
  try {
    await listening;
  } catch (err) {
    cannotStart(err);
  }
}

function runBench(args: string[]): void {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const runner = ['bench/run.ts', 'bench/run.mjs', 'bench/run.js'].map((p) => root + p).find((p) => existsSync(p));
  const help = args.includes('--help') || args.includes('-h');
  if (!runner) {
    if (help) {
      console.log(BENCH_USAGE);
      return;
    }
    console.error('wiregate bench: the bench/ folder is not available in this installation (it ships with the source repository)');
    process.exitCode = EXIT.USAGE;
    return;
  }
  if (help) console.log(BENCH_USAGE + '\n');
  const nodeArgs = runner.endsWith('.ts') ? ['--import', 'tsx', runner, ...args] : [runner, ...args];
  const child = spawn(process.execPath, nodeArgs, { stdio: 'inherit', cwd: root });
  child.on('exit', (code) => (process.exitCode = code ?? 1));
}

export { envName };
