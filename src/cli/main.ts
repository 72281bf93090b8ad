// The `wiregate` command.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigError, readConfigFile, redactConfig, resolveConfig, FIELDS, envName } from '../config/index.js';
import { createGateway } from '../gateway.js';

const USAGE = `Usage:
  wiregate start [options]      start the gateway (embedded in-memory broker)
  wiregate bench <scenario> ... run a benchmark scenario (see docs/benchmarks.md)
  wiregate --version

Options for start:
  -c, --config <file>           JSON config file
  -p, --port <n>                same as --port=<n>
  --host <addr>
  --print-config                print the effective config (secrets redacted) and exit
  --<key>=<value>               any config key in dotted form, e.g. --heartbeat.interval=15000
                                (see docs/configuration.md; also WIREGATE_* environment variables)
Precedence: defaults < config file < environment < flags.`;

export interface StartArgs {
  configFile?: string;
  printConfig: boolean;
  flags: Map<string, string>;
}

/** Parses `start` arguments; throws ConfigError for unknown flags or missing values. */
export function parseStartArgs(argv: string[]): StartArgs {
  const out: StartArgs = { printConfig: false, flags: new Map() };
  const known = new Set(FIELDS.map((f) => f.key));
  // kebab-case aliases: --heartbeat-interval, --max-payload, --limits-max-connections-per-ip
  const kebab = new Map(FIELDS.map((f) => [f.key.replace(/([a-z0-9])([A-Z])/g, '$1-$2').replace(/\./g, '-').toLowerCase(), f.key]));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--print-config') {
      out.printConfig = true;
      continue;
    }
    let key: string;
    let value: string | undefined;
    if (a === '-c' || a === '--config') {
      out.configFile = argv[++i];
      if (!out.configFile) throw new ConfigError('config', 'needs a file path', undefined, `flag ${a}`);
      continue;
    }
    if (a.startsWith('--config=')) {
      out.configFile = a.slice(9);
      continue;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      key = eq === -1 ? a.slice(2) : a.slice(2, eq);
      value = eq === -1 ? undefined : a.slice(eq + 1);
    } else if (a === '-p') {
      key = 'port';
    } else {
      throw new ConfigError(a, 'unexpected argument', a, 'command line');
    }
    // accept kebab-case too: --heartbeat-interval, --max-payload
    if (!known.has(key)) {
      const alias = kebab.get(key);
      if (alias === undefined) throw new ConfigError(key, 'unknown option', value, `flag --${key}`);
      key = alias;
    }
    const field = FIELDS.find((f) => f.key === key)!;
    if (value === undefined) {
      const next = argv[i + 1];
      if (field.type === 'bool' && (next === undefined || next.startsWith('-'))) value = 'true';
      else if (next === undefined) throw new ConfigError(key, 'needs a value', undefined, `flag --${key}`);
      else value = argv[++i];
    }
    out.flags.set(key, value);
  }
  return out;
}

export async function main(argv: string[]): Promise<void> {
  const cmd = argv[0];
  if (cmd === '--version' || cmd === '-v') {
    const { createRequire } = await import('node:module');
    console.log((createRequire(import.meta.url)('../../package.json') as { version: string }).version);
    return;
  }
  if (cmd === 'bench') return runBench(argv.slice(1));
  if (cmd !== 'start') {
    console.log(USAGE);
    if (cmd !== '--help' && cmd !== '-h' && cmd !== 'help') process.exitCode = cmd === undefined ? 0 : 2;
    return;
  }
  let config;
  let args: StartArgs;
  try {
    args = parseStartArgs(argv.slice(1));
    const file = args.configFile ?? process.env.WIREGATE_CONFIG;
    config = resolveConfig({
      file: file ? readConfigFile(file) : undefined,
      filePath: file,
      env: process.env,
      flags: args.flags,
    });
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`wiregate: ${err.message}`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
  if (args.printConfig) {
    console.log(JSON.stringify(redactConfig(config), null, 2));
    return;
  }
  const gw = createGateway({ config });
  await gw.listen();
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      gw.log.warn({ signal }, 'second signal, exiting now');
      process.exit(1);
    }
    stopping = true;
    gw.log.info({ signal }, 'shutting down');
    gw.close().then(
      () => process.exit(0),
      (err) => {
        gw.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

function runBench(args: string[]): void {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const runner = ['bench/run.ts', 'bench/run.mjs', 'bench/run.js'].map((p) => root + p).find((p) => existsSync(p));
  if (!runner) {
    console.error('wiregate bench: the bench/ folder is not available in this installation (it ships with the source repository)');
    process.exitCode = 2;
    return;
  }
  const nodeArgs = runner.endsWith('.ts') ? ['--import', 'tsx', runner, ...args] : [runner, ...args];
  const child = spawn(process.execPath, nodeArgs, { stdio: 'inherit', cwd: root });
  child.on('exit', (code) => (process.exitCode = code ?? 1));
}

export { envName };
