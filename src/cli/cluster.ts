// `wiregate start --workers N` on node:cluster. The primary serves nothing itself: it forks N
// workers that each run the single-process start path (one full gateway each, sharing the
// listening port through cluster's round-robin and the messages through the shared broker),
// replaces the ones that crash, forwards SIGTERM / SIGINT, and answers what a worker cannot know
// alone over IPC: /metrics of every worker (aggregated with prom-client's AggregatorRegistry) and
// the worker list of /info. A single process (workers 1, or 0 without a shared broker) never
// loads any of this beyond the module itself: no IPC, no cost.
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { pino, type Logger } from 'pino';
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';
import { redactConfig, type GatewayConfig } from '../config/index.js';
import type { ClusterLink, WorkerInfo } from '../http/routes.js';
import type { Runtime } from '../runtime.js';
import { onShutdownSignals } from './signals.js';

/** Replacement delay after a crash: doubles per crash, from the first to the last value. */
export const RESTART_DELAY_MS = { first: 100, max: 10_000 } as const;
/** A worker that stayed up this long resets the replacement delay to its first value. */
export const STABLE_AFTER_MS = 30_000;
/** How long the primary waits for the workers' answers (metrics, connection counts). */
const QUERY_TIMEOUT_MS = 5000;
/** How long a worker waits for the primary's answer (the primary's own wait included). */
const ASK_TIMEOUT_MS = QUERY_TIMEOUT_MS + 5000;
/** After drainTimeout, how much longer a worker may take to exit before the primary kills it. */
const EXIT_GRACE_MS = 5000;

/** Set in the environment of the workers this primary forks (and read by nothing else). */
const WORKER_ENV = 'WIREGATE_CLUSTER_WORKER';

// IPC messages (both directions carry `type` and a request id, prom-client's own have other types).
const ASK = 'wiregate:ask'; // worker -> primary: { id, what: 'metrics' | 'workers' }
const ANSWER = 'wiregate:answer'; // primary -> worker: { id, value } or { id, error }
const QUERY = 'wiregate:query'; // primary -> worker: { id, what: 'metrics' | 'connections' }
const REPLY = 'wiregate:reply'; // worker -> primary: { id, value }

type Message = { type: string; id: number; what?: string; value?: unknown; error?: string };

function isMessage(m: unknown): m is Message {
  return typeof m === 'object' && m !== null && typeof (m as Message).type === 'string' && typeof (m as Message).id === 'number';
}

/** How many processes `wiregate start` runs for `c`: 1 is a single process, no cluster. */
export function workerCount(c: GatewayConfig): number {
  if (c.workers > 0) return c.workers;
  // 0 = auto; the config accepts no other broker than memory and the shared ones
  return c.broker === 'memory' ? 1 : availableParallelism();
}

/** Whether `start` should run the cluster primary: more than one worker, and not a worker already. */
export function runsPrimary(c: GatewayConfig): boolean {
  return cluster.isPrimary && workerCount(c) > 1;
}

/**
 * Whether this process is a worker forked by runPrimary. A process forked by another cluster
 * primary (pm2's cluster mode, say) is not: it runs as a single process.
 */
export function isClusterWorker(): boolean {
  return cluster.isWorker && process.env[WORKER_ENV] === '1';
}

/** A worker's logger: the gateway's, with the worker id on every line. */
export function workerLogger(c: GatewayConfig): Logger {
  return pino({ level: c.log.level, base: { name: 'wiregate', worker: cluster.worker?.id } });
}

// ---- worker side ---------------------------------------------------------------------------------

/** Makes a worker's gateway part of the cluster: answers the primary's queries, asks it for /metrics and /info. */
export function joinCluster(rt: Runtime): void {
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: ReturnType<typeof setTimeout> }>();
  let nextId = 1;
  const send = (m: Message, failed: (err: Error) => void = () => {}) => {
    if (!process.connected) return failed(new Error('no IPC channel to the cluster primary'));
    process.send!(m, undefined, undefined, (err: Error | null) => {
      if (err) failed(err);
    });
  };
  const ask = (what: 'metrics' | 'workers') =>
    new Promise<unknown>((resolve, reject) => {
      const id = nextId++;
      const fail = (err: Error) => {
        if (!pending.delete(id)) return;
        clearTimeout(timer);
        reject(err);
      };
      const timer = setTimeout(() => fail(new Error(`the cluster primary did not answer (${what}) within ${ASK_TIMEOUT_MS} ms`)), ASK_TIMEOUT_MS);
      pending.set(id, { resolve, reject, timer });
      send({ type: ASK, id, what }, fail);
    });
  process.on('message', (m: unknown) => {
    if (!isMessage(m)) return;
    if (m.type === ANSWER) {
      const p = pending.get(m.id);
      if (p === undefined) return;
      pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.error !== undefined) p.reject(new Error(m.error));
      else p.resolve(m.value);
    } else if (m.type === QUERY) {
      if (m.what === 'connections') return send({ type: REPLY, id: m.id, value: rt.connections });
      if (m.what === 'metrics') {
        (rt.metrics?.getMetricsAsJSON() ?? Promise.resolve([])).then(
          (value) => send({ type: REPLY, id: m.id, value }),
          (err: Error) => send({ type: REPLY, id: m.id, error: err.message }),
        );
      }
    }
  });
  const link: ClusterLink = {
    worker: cluster.worker!.id,
    metrics: () => ask('metrics') as Promise<string>,
    workers: () => ask('workers') as Promise<WorkerInfo[]>,
  };
  rt.cluster = link;
}

// ---- primary -------------------------------------------------------------------------------------

interface WorkerState {
  worker: Worker;
  pid: number;
  forkedAt: number;
  listening: boolean;
}

interface Query {
  /** Ids of the workers that have not answered yet. */
  waiting: Set<number>;
  /** Worker id -> its answer. */
  answers: Map<number, { value?: unknown; error?: string }>;
  done: () => void;
}

/**
 * Runs the primary until every worker has exited, then exits: 0 when a shutdown drained every
 * worker cleanly, 1 otherwise, or the exit code of a worker that could not start (2, 3).
 */
export function runPrimary(config: GatewayConfig, count: number): void {
  new Primary(config, count).start();
}

class Primary {
  private readonly log: Logger;
  private readonly workers = new Map<number, WorkerState>();
  private readonly restarts = new Set<ReturnType<typeof setTimeout>>();
  private readonly queries = new Map<number, Query>();
  private readonly registry: Registry | null;
  private readonly crashes: Counter | null;
  private nextQuery = 1;
  private delay: number = RESTART_DELAY_MS.first;
  /** Every worker of the first start has listened (until then, one that fails to start stops all). */
  private up = false;
  private forkedAll = false;
  /** The signal being forwarded to the workers, once shutting down. */
  private stopping: NodeJS.Signals | null = null;
  /** Exit code once every worker is gone: a worker's start failure, or 1 when a worker did not exit cleanly. */
  private code = 0;

  constructor(
    private readonly config: GatewayConfig,
    private readonly count: number,
  ) {
    // synchronous: its few lines keep their order and are all out before process.exit()
    this.log = pino({ level: config.log.level, base: { name: 'wiregate', primary: true } }, pino.destination({ fd: 1, sync: true }));
    if (config.metrics.enabled) {
      const register = (this.registry = new Registry());
      const workers = this.workers;
      new Gauge({
        name: 'wiregate_workers',
        help: 'Cluster workers listening (wiregate start --workers)',
        registers: [register],
        collect() {
          this.set([...workers.values()].filter((w) => w.listening).length);
        },
      });
      this.crashes = new Counter({ name: 'wiregate_worker_crashes_total', help: 'Cluster workers that exited without being asked to (each is replaced)', registers: [register] });
    } else {
      this.registry = null;
      this.crashes = null;
    }
  }

  start(): void {
    // structured clone keeps NaN and Infinity in metric values (JSON would turn them into null)
    cluster.setupPrimary({ serialization: 'advanced' });
    onShutdownSignals(
      this.log,
      (signal) => this.shutdown(signal),
      () => process.exit(1), // workers exit as soon as their IPC channel to the primary closes
    );
    this.log.info({ workers: this.count, broker: redactConfig(this.config).broker }, 'starting workers');
    // One worker first: a start that cannot work (broker unreachable, port in use, unusable keys)
    // then fails once, with one line, instead of N times at once.
    this.fork();
  }

  private fork(): void {
    const worker = cluster.fork({ [WORKER_ENV]: '1' });
    const state: WorkerState = { worker, pid: worker.process.pid ?? 0, forkedAt: Date.now(), listening: false };
    this.workers.set(worker.id, state);
    this.log.info({ worker: worker.id, pid: state.pid }, 'worker started');
    worker.on('listening', () => this.listening(state));
    worker.on('message', (m: unknown) => this.message(state, m));
    worker.on('exit', (code: number | null, signal: NodeJS.Signals | null) => this.exited(state, code, signal));
    // an IPC send to a worker that is going away; its exit is handled above
    worker.on('error', (err) => this.log.debug({ err, worker: worker.id }, 'worker IPC error'));
  }

  private listening(state: WorkerState): void {
    if (state.listening) return;
    state.listening = true;
    if (this.stopping !== null) return;
    if (!this.forkedAll) {
      this.forkedAll = true;
      for (let i = 1; i < this.count; i++) this.fork();
    }
    if (!this.up && [...this.workers.values()].filter((w) => w.listening).length >= this.count) {
      this.up = true;
      this.log.info({ workers: this.count }, 'all workers listening');
    }
  }

  private exited(state: WorkerState, code: number | null, signal: NodeJS.Signals | null): void {
    const id = state.worker.id;
    this.workers.delete(id);
    for (const q of this.queries.values()) {
      if (q.waiting.delete(id) && q.waiting.size === 0) q.done();
    }
    const fields = { worker: id, pid: state.pid, code, signal };
    if (this.stopping !== null) {
      // killed by the forwarded signal before it could handle it: it was not serving yet
      const clean = code === 0 || (!state.listening && signal === this.stopping);
      if (!clean && this.code === 0) this.code = 1;
      this.log[clean ? 'info' : 'error'](fields, 'worker exited');
      if (this.workers.size === 0) this.finish();
      return;
    }
    if (!this.up && !state.listening) {
      // The worker printed why (one line on stderr): the start cannot work as configured.
      this.code = code !== null && code > 0 ? code : 1;
      this.log.error(fields, 'worker could not start; stopping');
      this.shutdown('SIGTERM');
      return;
    }
    this.crashes?.inc();
    const uptime = Date.now() - state.forkedAt;
    if (uptime >= STABLE_AFTER_MS) this.delay = RESTART_DELAY_MS.first;
    const wait = this.delay;
    this.delay = Math.min(this.delay * 2, RESTART_DELAY_MS.max);
    this.log.error({ ...fields, uptime, restartIn: wait }, 'worker crashed; replacing it');
    const timer = setTimeout(() => {
      this.restarts.delete(timer);
      if (this.stopping === null) this.fork();
    }, wait);
    this.restarts.add(timer);
  }

  private shutdown(signal: NodeJS.Signals): void {
    this.stopping = signal;
    for (const t of this.restarts) clearTimeout(t);
    this.restarts.clear();
    this.log.info({ signal, workers: this.workers.size }, 'stopping workers');
    // the raw signal, not worker.kill(): that disconnects first, which closes the worker's
    // servers before it could answer 503 during its drain
    for (const s of this.workers.values()) signalWorker(s, signal);
    if (this.workers.size === 0) return this.finish();
    // each worker terminates its stragglers after drainTimeout; one that still has not exited is stuck
    setTimeout(() => {
      this.log.error({ workers: [...this.workers.keys()] }, 'workers did not exit in time; killing them');
      this.code ||= 1;
      for (const s of this.workers.values()) signalWorker(s, 'SIGKILL');
    }, this.config.drainTimeout + EXIT_GRACE_MS).unref();
  }

  private finish(): void {
    this.log.info({ code: this.code }, 'all workers exited');
    process.exit(this.code);
  }

  // ---- IPC ---------------------------------------------------------------------------------------

  private message(state: WorkerState, m: unknown): void {
    if (!isMessage(m)) return;
    if (m.type === REPLY) {
      const q = this.queries.get(m.id);
      if (q === undefined || !q.waiting.delete(state.worker.id)) return;
      q.answers.set(state.worker.id, { value: m.value, error: m.error });
      if (q.waiting.size === 0) q.done();
    } else if (m.type === ASK) {
      const answer = m.what === 'metrics' ? this.metrics() : m.what === 'workers' ? this.workerList() : Promise.reject(new Error(`unknown question ${m.what}`));
      answer.then(
        (value) => send(state.worker, { type: ANSWER, id: m.id, value }),
        (err: Error) => send(state.worker, { type: ANSWER, id: m.id, error: err.message }),
      );
    }
  }

  /**
   * Asks every listening worker. A worker that exits meanwhile is left out; one that does not
   * answer within QUERY_TIMEOUT_MS is in `late`.
   */
  private query(what: 'metrics' | 'connections'): Promise<{ answers: Query['answers']; late: number[] }> {
    const id = this.nextQuery++;
    const targets = [...this.workers.values()].filter((s) => s.listening && s.worker.isConnected());
    return new Promise((resolve) => {
      const q: Query = {
        waiting: new Set(targets.map((s) => s.worker.id)),
        answers: new Map(),
        done: () => {
          clearTimeout(timer);
          this.queries.delete(id);
          resolve({ answers: q.answers, late: [...q.waiting] });
        },
      };
      const timer = setTimeout(q.done, QUERY_TIMEOUT_MS);
      this.queries.set(id, q);
      for (const s of targets) send(s.worker, { type: QUERY, id, what });
      if (q.waiting.size === 0) q.done();
    });
  }

  /** Every listening worker's registry, aggregated by each metric's `aggregator` (sum unless set). */
  private async metrics(): Promise<string> {
    const { answers, late } = await this.query('metrics');
    if (late.length > 0) throw new Error(`worker ${late.join(', ')} did not answer within ${QUERY_TIMEOUT_MS} ms`);
    const all: object[] = [];
    for (const [worker, a] of answers) {
      if (a.error !== undefined) throw new Error(`worker ${worker}: ${a.error}`);
      all.push(a.value as object);
    }
    if (this.registry) all.push(await this.registry.getMetricsAsJSON());
    return AggregatorRegistry.aggregate(all).metrics();
  }

  private async workerList(): Promise<WorkerInfo[]> {
    const { answers } = await this.query('connections');
    return [...this.workers.values()].map((s) => {
      const n = answers.get(s.worker.id)?.value;
      return { id: s.worker.id, pid: s.pid, startedAt: new Date(s.forkedAt).toISOString(), listening: s.listening, connections: typeof n === 'number' ? n : null };
    });
  }
}

function send(worker: Worker, m: Message): void {
  if (!worker.isConnected()) return;
  worker.send(m, undefined, (err: Error | null) => {
    // the worker is going away; its exit is handled by the primary
    void err;
  });
}

function signalWorker(s: WorkerState, signal: NodeJS.Signals): void {
  try {
    s.worker.process.kill(signal);
  } catch {
    /* already gone */
  }
}
