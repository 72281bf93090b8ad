// A Broker (src/pubsub/broker.ts) on NATS (nats-server 2.9+ with JetStream enabled): core NATS
// subjects for the fan-out between nodes, a JetStream KV bucket for each topic's {seq, epoch}.
//
// What it claims: features { history: false, retained: false, presence: false } (configuration
// needing them must be refused at start). seq + epoch ARE implemented: publish returns a gap-free
// per-topic seq (1, 2, 3, ...) with an epoch, shared by every node on the same server and prefix;
// position() reads it. history()/retained()/presence*() throw.
//
// Topic -> subject mapping (documented contract; prefix P is a dot-separated subject prefix):
//   subject = P + '.' + level_1 + '.' + ... + '.' + level_n
//   Each wiregate level (separator '/') becomes one NATS token (separator '.'). Inside a level,
//   percent-style escaping makes every allowed topic character (A-Z a-z 0-9 _ - . : @ ~ = ,) a
//   valid token character and keeps the mapping reversible:
//     '%' -> '%25' (the escape character itself; not a legal topic character, escaped anyway)
//     '.' -> '%2E' (NATS's separator)
//     '*' -> '%2A', '>' -> '%3E' (NATS wildcards; not legal topic characters either)
//     whitespace/control characters -> '%XX' (never legal topics; NATS forbids them in subjects)
//   A level that is exactly '+' or '#' can only occur in patterns: '+' -> '*' (one token), and
//   '#' (last level) -> '>' (one or more tokens). Wiregate's 'a/#' also matches 'a' itself while
//   NATS's 'a.>' does not, so 'a/#' subscribes to both 'P.a.>' and 'P.a' ('#' alone: 'P.>').
//   Decoding splits the subject after P on '.', percent-decodes each token and joins with '/'.
//
// Seq + epoch: KV bucket `<bucket>` (default: derived from P; created in memory storage, since a
// lost counter only means a new epoch; an existing bucket is used as it is), key = base64url(topic) (KV keys
// allow only [-/_=.A-Za-z0-9]), value = `<epoch>|<seq>`. publish reads the entry and writes
// seq + 1 with an expected revision (kv.update; kv.create when absent or deleted, with a fresh
// random epoch and seq 1), retrying on a revision conflict: that makes the seq atomic across
// nodes. A missing key (deleted/purged, or a server that lost its JetStream store) means a new
// epoch, so old positions can never be taken for the new stream. Publishes on one topic are
// queued inside the process and reserved in batches (one KV update for everything waiting), so a
// node's own publishes go out in seq order; the message is then sent on the topic's subject as the frame
// `seq|epoch|exclude|node|payload` (payload: the raw bytes after the fourth '|').
//
// Ordering across nodes: two nodes may take seq 5 and 6 and the core publishes may reach NATS in
// the opposite order. Each receiving node therefore delivers per topic in seq order: a message
// with seq = last + 1 goes out at once (and drains the held ones that follow); a later one is
// held until the missing seqs arrive or `reorderWait` ms pass (a publisher that died between the
// increment and the publish leaves a hole; after the wait the held ones go out in order). The
// first message seen on a topic goes out at once when its seq is 1, else it is held the same way
// (so a node that subscribes to a busy topic hands over its first messages up to `reorderWait`
// late). A message arriving after its hole was given up on is dropped, never delivered out of
// order. Holes can come from a publisher dying between the KV update and the core publish, from a
// KV update whose reply was lost (the retry burns a seq), or from core NATS itself (at most once):
// this broker gives the hub gap-free numbers, not guaranteed delivery.
// Each node caches the last counter value + KV revision it wrote per topic (bounded) and tries the
// update against it first, so a topic published from one node costs one KV round trip; a
// conflict (another node wrote, or the key was purged) re-reads the entry.
//
// Fan-out is interest-based: one NATS subscription per subscribed pattern (two for 'a/#'),
// refcounted per pattern. A topic matched by several subscribed patterns arrives once per
// subscription; the per-topic last-delivered seq drops the repeats, and every message is checked
// against the subscribed patterns (topicMatches) so that in-flight messages of an unsubscribed
// pattern are not handed over: `filters` is honestly true. `exclude` is handed over only on the
// node that published (node id in the frame).
//
// Reconnection: nats.js reconnects forever (maxReconnectAttempts -1) and re-sends the
// subscriptions; start()'s onStatus hears of the loss and, after the bucket is opened again and a
// flush confirmed the re-sent subscriptions, of the recovery. A publish is acked only after a flush
// round trip that followed it, so an acked message was processed by the server.
//
// Not done here: history, retained values, presence (JetStream streams per topic with
// expected-last-subject-sequence would be the way), stats().
import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection, type NodeConnectionOptions, type Subscription } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { jetstream } from '@nats-io/jetstream';
import { topicMatches } from '../protocol/topic.js';
import { encodeBrokerFrame, parseBrokerFrame } from './broker-frame.js';
import type {
  Broker,
  BrokerDeliver,
  BrokerFeatures,
  BrokerPublishOptions,
  BrokerPublishResult,
  BrokerStatusListener,
  HistoryPage,
  PresenceEntry,
  PresenceListener,
  RetainedMessage,
  StreamPosition,
} from './broker.js';

export interface NatsBrokerOptions {
  /** nats://host:port (or several, comma-separated). */
  servers: string | string[];
  /** Subject prefix shared by every node of one cluster: NATS tokens joined by '.'. */
  prefix?: string;
  /** KV bucket for the seq/epoch counters (default: the prefix with '.' -> '_'). */
  bucket?: string;
  /** How long a message that arrived ahead of a missing seq is held, in ms. */
  reorderWait?: number;
  /** Requests (KV reads and updates) not answered within this many ms fail; pings every timeout/2 find a stalled server. */
  timeout?: number;
  /** Extra connection options. */
  nats?: Partial<NodeConnectionOptions>;
}


function newId(): string {
  return randomBytes(6).toString('base64url');
}

/** Escapes one wiregate level into one NATS token (see the header). */
export function encodeLevel(level: string): string {
  return level.replace(/[%.*>\s\x00-\x1f\x7f]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

export function decodeToken(token: string): string {
  return token.replace(/%([0-9A-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** The NATS subject of a concrete topic. */
export function topicToSubject(prefix: string, topic: string): string {
  return `${prefix}.${topic.split('/').map(encodeLevel).join('.')}`;
}

/** The topic of a subject under `prefix` (the inverse of topicToSubject), or null. */
export function subjectToTopic(prefix: string, subject: string): string | null {
  if (!subject.startsWith(`${prefix}.`)) return null;
  return subject.slice(prefix.length + 1).split('.').map(decodeToken).join('/');
}

/** The NATS subjects (one, or two for a trailing '#') whose union is exactly what `pattern` matches. */
export function patternToSubjects(prefix: string, pattern: string): string[] {
  const levels = pattern.split('/');
  const out: string[] = [];
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i];
    if (l === '#' && i === levels.length - 1) {
      const gt = [prefix, ...out, '>'].join('.');
      return out.length === 0 ? [gt] : [gt, [prefix, ...out].join('.')];
    }
    out.push(l === '+' ? '*' : encodeLevel(l));
  }
  return [[prefix, ...out].join('.')];
}

interface Counter extends StreamPosition {
  rev: number;
}

const COUNTER_CACHE = 10_000;

/** Most publishes of one topic that share one KV update. */
const BATCH = 256;

interface Pending {
  payload: Uint8Array;
  exclude: number;
  resolve(r: BrokerPublishResult): void;
  reject(err: unknown): void;
}

interface TopicState {
  epoch: string;
  /** Last seq handed over (0: none yet in this epoch). */
  last: number;
  held: Map<number, { exclude: number; payload: Uint8Array }>;
  timer: ReturnType<typeof setTimeout> | null;
}

export class NatsBroker implements Broker {
  readonly features: BrokerFeatures = Object.freeze({ history: false, retained: false, presence: false });
  /** This node's id (in published frames, so that `exclude` is honoured only here). */
  readonly node = newId();
  readonly prefix: string;
  readonly bucket: string;
  private readonly opts: NatsBrokerOptions;
  private readonly reorderWait: number;
  private readonly timeout: number;
  private nc: NatsConnection | null = null;
  private kv: KV | null = null;
  private deliver: BrokerDeliver | null = null;
  /** Subscribed patterns (refcounted) and their NATS subscriptions. */
  private readonly patterns = new Map<string, { n: number; subs: Subscription[] }>();
  private readonly topics = new Map<string, TopicState>();
  /** Last counter value and KV revision this node saw per topic (a hint; verified by the update). */
  private readonly counters = new Map<string, Counter>();
  /** Per-topic queue of this node's publishes waiting for their seqs (present while being drained). */
  private readonly queues = new Map<string, Pending[]>();
  private closed = false;
  private flushing: Promise<void> | null = null;
  private nextFlush: Promise<void> | null = null;

  constructor(opts: NatsBrokerOptions) {
    this.opts = opts;
    this.prefix = opts.prefix ?? 'wg';
    if (this.prefix === '' || this.prefix.split('.').some((t) => t === '' || /[\s*>]/.test(t))) throw new Error(`invalid NATS subject prefix: ${this.prefix}`);
    this.bucket = opts.bucket ?? `${this.prefix.replace(/[^A-Za-z0-9_-]/g, '_')}_seq`;
    if (!/^[A-Za-z0-9_-]+$/.test(this.bucket)) throw new Error(`invalid KV bucket name: ${this.bucket} (set bucket)`);
    this.reorderWait = opts.reorderWait ?? 250;
    this.timeout = Math.max(1000, opts.timeout ?? 3000);
  }

  async start(deliver: BrokerDeliver, _onPresence?: PresenceListener, onStatus?: BrokerStatusListener): Promise<void> {
    this.deliver = deliver;
    const timeout = this.timeout;
    try {
      this.nc = await connect({
        // never give up reconnecting (nats.js stops after 10 tries by default); subscriptions are re-sent by nats.js
        maxReconnectAttempts: -1,
        reconnectTimeWait: 1000,
        reconnectJitter: 500,
        pingInterval: Math.max(500, Math.floor(timeout / 2)),
        maxPingOut: 2,
        timeout,
        ...this.opts.nats,
        servers: this.opts.servers,
      });
      this.kv = await this.openBucket(this.nc);
      if (onStatus !== undefined) void this.watch(this.nc, onStatus);
    } catch (err) {
      await this.nc?.close().catch(() => undefined);
      this.nc = null;
      const where = ([] as string[]).concat(this.opts.servers).join(',');
      throw new Error(`cannot connect to the NATS broker at ${where} (JetStream must be enabled: nats-server -js): ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** Reports connection loss and recovery (after the re-sent subscriptions are confirmed by a flush). */
  private async watch(nc: NatsConnection, onStatus: BrokerStatusListener): Promise<void> {
    let up = true;
    for await (const st of nc.status()) {
      if (this.closed) return;
      if ((st.type === 'disconnect' || st.type === 'staleConnection') && up) {
        up = false;
        onStatus(false, st.type === 'disconnect' ? 'the connection to NATS was lost' : 'NATS stopped answering pings');
      } else if (st.type === 'reconnect' && !up) {
        try {
          // The server may have come back without its JetStream store: create the bucket again
          // (a no-op when it is there) and forget the cached counters (a lost key = a new epoch).
          this.kv = await this.openBucket(nc);
          this.counters.clear();
          await nc.flush();
        } catch {
          continue;
        }
        if (this.closed) return;
        up = true;
        onStatus(true, '');
      }
    }
  }

  /**
   * The counters' KV bucket, created in memory storage when absent: a counter lost with a server
   * restart only means a new epoch (which the design handles), and memory storage halves the
   * update's cost. A bucket that already exists (another storage, made by hand) is used as it is.
   */
  private async openBucket(nc: NatsConnection): Promise<KV> {
    const kvm = new Kvm(jetstream(nc, { timeout: this.timeout }));
    try {
      return await kvm.create(this.bucket, { history: 1, storage: 'memory' } as Parameters<Kvm['create']>[1]);
    } catch (err) {
      if (!/different configuration|already in use/i.test(err instanceof Error ? err.message : String(err))) throw err;
      return kvm.open(this.bucket);
    }
  }

  /** One round trip to the server. */
  async ping(): Promise<void> {
    await this.conn().flush();
  }

  /** Deletes a topic's seq/epoch (as if the server had lost it): the next one gets a new epoch. */
  async forget(topic: string): Promise<void> {
    this.counters.delete(topic);
    await this.store().purge(this.key(topic));
  }

  /**
   * Publishes are queued per topic; each turn of a topic's queue takes everything waiting (up to
   * BATCH), reserves that many seqs with ONE KV update, sends the frames, and goes on with the next
   * turn while the confirming round trip is in flight. A busy topic thus costs one KV round trip per
   * batch, not per message, and the node's own publishes of a topic still leave in seq order.
   */
  publish(topic: string, payload: Uint8Array, opts: BrokerPublishOptions): Promise<BrokerPublishResult> {
    return new Promise<BrokerPublishResult>((resolve, reject) => {
      let q = this.queues.get(topic);
      if (q === undefined) {
        q = [];
        this.queues.set(topic, q);
        q.push({ payload, exclude: opts.exclude, resolve, reject });
        void this.send(topic, q);
      } else q.push({ payload, exclude: opts.exclude, resolve, reject });
    });
  }

  private async send(topic: string, q: Pending[]): Promise<void> {
    // the caller pushed the first entry; the queue is removed once it is empty
    while (q.length > 0) {
      const batch = q.splice(0, BATCH);
      let first: StreamPosition;
      try {
        first = await this.reserve(topic, batch.length);
      } catch (err) {
        for (const p of batch) p.reject(err);
        continue;
      }
      try {
        const nc = this.conn();
        const subject = topicToSubject(this.prefix, topic);
        for (let i = 0; i < batch.length; i++) nc.publish(subject, encodeBrokerFrame(first.seq + i, first.epoch, batch[i].exclude, this.node, batch[i].payload));
      } catch (err) {
        for (const p of batch) p.reject(err);
        continue;
      }
      // Core publishes are fire-and-forget: answer only once the server has processed them (a
      // PING sent after them was answered), so an acked message never died in a socket buffer.
      this.confirm().then(
        () => batch.forEach((p, i) => p.resolve({ seq: first.seq + i, epoch: first.epoch })),
        (err: unknown) => batch.forEach((p) => p.reject(err)),
      );
    }
    this.queues.delete(topic);
  }

  subscribe(pattern: string): void {
    const p = this.patterns.get(pattern);
    if (p !== undefined) {
      p.n++;
      return;
    }
    const nc = this.conn();
    const subs = patternToSubjects(this.prefix, pattern).map((subject) =>
      nc.subscribe(subject, {
        callback: (err, msg) => {
          if (err === null) this.onMessage(msg.subject, msg.data);
        },
      }),
    );
    this.patterns.set(pattern, { n: 1, subs });
  }

  async unsubscribe(pattern: string): Promise<void> {
    const p = this.patterns.get(pattern);
    if (p === undefined) return;
    if (--p.n > 0) return;
    this.patterns.delete(pattern);
    if (this.closed) return;
    for (const s of p.subs) s.unsubscribe();
    if (this.patterns.size === 0) this.resetTopics();
    else {
      // Forget the ordering state of topics no longer subscribed (their next message starts afresh).
      for (const [topic, st] of this.topics) {
        if (this.wanted(topic)) continue;
        if (st.timer !== null) clearTimeout(st.timer);
        this.topics.delete(topic);
      }
    }
    // SUB/UNSUB take effect in order on the connection; flush so the server has seen them.
    await this.conn().flush();
  }

  async position(topic: string): Promise<StreamPosition> {
    const kv = this.store();
    const key = this.key(topic);
    for (;;) {
      const e = await kv.get(key);
      if (e !== null && e.operation === 'PUT') return parseValue(e.string());
      // No counter (never published, or lost): create one at seq 0 with a new epoch, so that the
      // epoch reported now is the one the next publish continues.
      const epoch = newId();
      try {
        await kv.create(key, `${epoch}|0`);
        return { seq: 0, epoch };
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
    }
  }

  history(): Promise<HistoryPage> {
    return Promise.reject(new Error('NatsBroker does not implement history'));
  }

  retained(): Promise<RetainedMessage[]> {
    return Promise.reject(new Error('NatsBroker does not implement retained values'));
  }

  presenceAdd(): Promise<void> {
    return Promise.reject(new Error('NatsBroker does not implement presence'));
  }

  presenceRemove(): Promise<void> {
    return Promise.reject(new Error('NatsBroker does not implement presence'));
  }

  presence(): Promise<PresenceEntry[]> {
    return Promise.reject(new Error('NatsBroker does not implement presence'));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.deliver = null;
    this.resetTopics();
    this.patterns.clear();
    const nc = this.nc;
    this.nc = null;
    this.kv = null;
    if (nc !== null && !nc.isClosed()) {
      try {
        await nc.close();
      } catch {
        // already gone
      }
    }
  }

  /** Reserves `n` consecutive seqs of `topic` (one KV update with the expected revision); returns the first. */
  private async reserve(topic: string, n: number): Promise<StreamPosition> {
    const kv = this.store();
    const key = this.key(topic);
    // The last counter this node wrote (or read) for the topic: try it first, read on a conflict.
    let cur: Counter | null | undefined = this.counters.get(topic);
    for (;;) {
      if (cur === undefined) {
        const e = await kv.get(key);
        cur = e === null || e.operation !== 'PUT' ? null : { ...parseValue(e.string()), rev: e.revision };
      }
      try {
        if (cur === null) {
          const epoch = newId();
          const rev = await kv.create(key, `${epoch}|${n}`);
          this.remember(topic, { seq: n, epoch, rev });
          return { seq: 1, epoch };
        }
        const last = cur.seq + n;
        const rev = await kv.update(key, `${cur.epoch}|${last}`, cur.rev);
        this.remember(topic, { seq: last, epoch: cur.epoch, rev });
        return { seq: cur.seq + 1, epoch: cur.epoch };
      } catch (err) {
        this.counters.delete(topic);
        if (!isConflict(err)) throw err;
        cur = undefined;
      }
    }
  }

  /**
   * Resolves after a round trip that started after the caller's publish. Publishes arriving while
   * a round trip is in flight share the next one: at most two flushes are outstanding at any time.
   */
  private confirm(): Promise<void> {
    if (this.flushing === null) {
      this.flushing = this.conn().flush().finally(() => (this.flushing = null));
      return this.flushing;
    }
    // publishes from now on wait for the flush that starts when the current one ends
    const next = () => {
      this.nextFlush = null;
      return this.confirm();
    };
    this.nextFlush ??= this.flushing.then(next, next);
    return this.nextFlush;
  }

  private onMessage(subject: string, data: Uint8Array): void {
    if (this.closed || this.deliver === null) return;
    const topic = subjectToTopic(this.prefix, subject);
    if (topic === null || !this.wanted(topic)) return;
    const f = parseBrokerFrame(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    if (f === null) return;
    const { seq, epoch, payload } = f;
    const exclude = f.node === this.node ? f.exclude : 0;

    let st = this.topics.get(topic);
    if (st === undefined || st.epoch !== epoch) {
      if (st !== undefined) this.flush(topic, st);
      st = { epoch, last: 0, held: new Map(), timer: null };
      this.topics.set(topic, st);
    }
    if (seq <= st.last || st.held.has(seq)) return; // a repeat (several matching subscriptions)
    if (seq === st.last + 1 || (st.last === 0 && seq === 1)) {
      st.last = seq;
      this.deliver(topic, seq, epoch, payload, exclude);
      this.drain(topic, st);
      return;
    }
    st.held.set(seq, { exclude, payload });
    if (st.timer === null) {
      const s = st;
      s.timer = setTimeout(() => {
        s.timer = null;
        if (this.topics.get(topic) === s) this.flush(topic, s);
      }, this.reorderWait);
      s.timer.unref?.();
    }
  }

  /** Hands over the held messages that now follow `last` without a hole. */
  private drain(topic: string, st: TopicState): void {
    for (;;) {
      const next = st.held.get(st.last + 1);
      if (next === undefined) break;
      st.held.delete(st.last + 1);
      st.last++;
      this.deliver?.(topic, st.last, st.epoch, next.payload, next.exclude);
    }
    if (st.held.size === 0 && st.timer !== null) {
      clearTimeout(st.timer);
      st.timer = null;
    }
  }

  /** Gives up waiting for missing seqs: hands over everything held, in seq order. */
  private flush(topic: string, st: TopicState): void {
    if (st.timer !== null) clearTimeout(st.timer);
    st.timer = null;
    const seqs = [...st.held.keys()].sort((x, y) => x - y);
    for (const seq of seqs) {
      const m = st.held.get(seq)!;
      st.held.delete(seq);
      if (seq <= st.last) continue;
      st.last = seq;
      if (this.wanted(topic)) this.deliver?.(topic, seq, st.epoch, m.payload, m.exclude);
    }
  }

  /** Caches a counter this node wrote (bounded: the oldest entries go first). */
  private remember(topic: string, c: Counter): void {
    this.counters.delete(topic);
    this.counters.set(topic, c);
    if (this.counters.size > COUNTER_CACHE) this.counters.delete(this.counters.keys().next().value as string);
  }

  private resetTopics(): void {
    for (const st of this.topics.values()) if (st.timer !== null) clearTimeout(st.timer);
    this.topics.clear();
  }

  /** Whether any subscribed pattern matches. */
  private wanted(topic: string): boolean {
    if (this.patterns.has(topic)) return true;
    for (const p of this.patterns.keys()) if (topicMatches(p, topic)) return true;
    return false;
  }

  private key(topic: string): string {
    return Buffer.from(topic, 'utf8').toString('base64url');
  }

  private conn(): NatsConnection {
    if (this.nc === null) throw new Error(this.closed ? 'NatsBroker is closed' : 'NatsBroker is not started');
    return this.nc;
  }

  private store(): KV {
    if (this.kv === null) throw new Error(this.closed ? 'NatsBroker is closed' : 'NatsBroker is not started');
    return this.kv;
  }
}

function parseValue(v: string): StreamPosition {
  const bar = v.lastIndexOf('|');
  return { epoch: v.slice(0, bar), seq: Number(v.slice(bar + 1)) };
}

/** A revision conflict from kv.create/kv.update (someone else wrote first): JetStream API errors
 * 10071 (wrong last sequence) and 10164 (wrong last sequence, unknown). */
function isConflict(err: unknown): boolean {
  if (!(err instanceof Error) || err.name !== 'JetStreamApiError') return false;
  const code = (err as Error & { code?: unknown }).code;
  return code === 10071 || code === 10164;
}
