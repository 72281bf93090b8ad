// Local fan-out. The hub keeps this node's subscriptions in a trie, tells the broker which
// patterns this node needs, and turns each brokered message into ONE encoded MESSAGE whose bytes
// are handed to every matching subscriber. The hub deals in encoded messages only: framing and
// compression belong to the transport, which caches them on the Outgoing (see transport/writer.ts).
import { encodeDelivery } from '../protocol/messages.js';
import { ErrorCode } from '../protocol/codes.js';
import { ReplyError } from '../errors.js';
import { isThenable } from '../util/thenable.js';
import type {
  Broker,
  BrokerPublishOptions,
  BrokerPublishResult,
  BrokerStatusListener,
  HistoryPage,
  HistoryPolicy,
  HistoryQuery,
  PresenceEntry,
  PresenceListener,
  RetainedMessage,
  StreamPosition,
} from './broker.js';
import { SubscriptionTrie } from './trie.js';

/** One published message as every local subscriber receives it: encoded once. */
export class Outgoing {
  /**
   * Transport caches, filled on first use and shared by every subscriber: the uncompressed
   * WebSocket frame, and the compressed frame for window bits `zBits`. The hub never reads them.
   */
  wire: Buffer | null = null;
  z: Buffer | null = null;
  zBits = 0;
  constructor(
    /** The msgpack MESSAGE `[18, topic, seq, payload]`, with frame headroom in front of it. */
    readonly msg: Uint8Array,
    readonly topic: string,
    readonly seq: number,
  ) {}
}

/**
 * What a subscriber over its outbound budget does with a delivery (`outbound.policy`, per topic via
 * `outbound.topicPolicies`): CLOSE the connection (4000), DROP the delivery (then GAP), or
 * CONFLATE (keep only the latest message per topic until the socket drains). A small integer,
 * decided once per published topic.
 */
export const SlowPolicy = { CLOSE: 0, DROP: 1, CONFLATE: 2 } as const;
export type SlowPolicy = (typeof SlowPolicy)[keyof typeof SlowPolicy];

export interface Subscriber {
  /** Unique non-zero id (used for publisher exclusion). */
  readonly id: number;
  /** Last delivery stamp seen: de-duplicates overlapping patterns within one publish. */
  stamp: number;
  /** Hands a shared MESSAGE to the subscriber, with its topic's slow-consumer policy. Its buffers must not be modified. */
  deliver(out: Outgoing, policy: SlowPolicy): void;
}

export class Hub {
  private readonly trie = new SubscriptionTrie<Subscriber>();
  private stamp = 0;
  private depth = 0;
  private readonly scratch: Set<Subscriber>[] = [];
  /** Deliveries handed to subscribers (after de-duplication and exclusion). */
  deliveries = 0;
  /** Messages received from the broker. */
  messages = 0;
  /**
   * False while the broker is unreachable or stalled: what needs it (publish, subscribe, history,
   * retained, presence reads) fails at once with BROKER_UNAVAILABLE instead of waiting.
   */
  up = true;

  /**
   * @param policyFor decides once per published topic what a subscriber over its outbound budget
   *   does with it (see SlowPolicy).
   */
  constructor(
    readonly broker: Broker,
    private readonly policyFor: (topic: string) => SlowPolicy = () => SlowPolicy.CLOSE,
    /** The history policy of a topic (null: no history), from the gateway's configuration. */
    private readonly historyFor: (topic: string) => HistoryPolicy | null = () => null,
  ) {}

  /** The history policy of `topic` (null: none kept). */
  historyPolicy(topic: string): HistoryPolicy | null {
    return this.historyFor(topic);
  }

  start(onPresence?: PresenceListener, onStatus?: BrokerStatusListener): void | Promise<void> {
    return this.broker.start((topic, seq, _epoch, payload, exclude) => this.deliver(topic, seq, payload, exclude), onPresence, onStatus);
  }

  /** The broker's answer, with a failure turned into BROKER_UNAVAILABLE (the cause is kept); rejected at once while it is down. */
  private guard<T>(call: () => T | Promise<T>): T | Promise<T> {
    if (!this.up) return Promise.reject(new BrokerUnavailable(DOWN));
    return brokerAnswer(call());
  }

  position(topic: string): StreamPosition | Promise<StreamPosition> {
    return this.guard(() => this.broker.position(topic));
  }

  history(topic: string, query: HistoryQuery): HistoryPage | Promise<HistoryPage> {
    return this.guard(() => this.broker.history(topic, query));
  }

  retained(pattern: string, limit: number): RetainedMessage[] | Promise<RetainedMessage[]> {
    return this.guard(() => this.broker.retained(pattern, limit));
  }

  presence(topic: string): PresenceEntry[] | Promise<PresenceEntry[]> {
    return this.guard(() => this.broker.presence(topic));
  }

  get patternCount(): number {
    return this.trie.patterns;
  }

  /** Adds `sub` to `pattern` (idempotent per subscriber; the caller tracks its own patterns). */
  subscribe(sub: Subscriber, pattern: string): void | Promise<void> {
    if (this.trie.add(pattern, sub)) return brokerAnswer(this.broker.subscribe(pattern));
  }

  unsubscribe(sub: Subscriber, pattern: string): void | Promise<void> {
    if (this.trie.remove(pattern, sub)) return this.broker.unsubscribe(pattern);
  }

  /** Publishes an encoded payload; resolves to the topic's {seq, epoch}. */
  publish(topic: string, payload: Uint8Array, exclude = 0, retain = false): BrokerPublishResult | Promise<BrokerPublishResult> {
    const history = this.historyFor(topic);
    const opts: BrokerPublishOptions = exclude === 0 && history === null && !retain ? PLAIN : { exclude, history, retain };
    if (!this.up) throw new BrokerUnavailable(DOWN);
    return brokerAnswer(this.broker.publish(topic, payload, opts));
  }

  /** Delivers one brokered message to every local subscriber whose pattern matches. */
  deliver(topic: string, seq: number, payload: Uint8Array, exclude: number): void {
    this.messages++;
    // A subscriber callback may publish again (re-entrancy): only the outermost call uses scratch.
    const sets = this.depth++ === 0 ? this.scratch : [];
    const n = this.trie.match(topic, sets);
    if (n === 0) {
      this.depth--;
      return;
    }
    // Encode once; every subscriber gets the same bytes.
    const out = new Outgoing(encodeDelivery(topic, seq, payload), topic, seq);
    const stamp = ++this.stamp;
    const policy = this.policyFor(topic);
    let count = 0;
    try {
      for (let i = 0; i < n; i++) {
        for (const sub of sets[i]) {
          if (sub.stamp === stamp || sub.id === exclude) continue;
          sub.stamp = stamp;
          count++;
          sub.deliver(out, policy);
        }
      }
    } finally {
      sets.length = 0;
      this.depth--;
      this.deliveries += count;
    }
  }

  close(): void | Promise<void> {
    return this.broker.close();
  }
}

/** Options of the common publish: no exclusion, no history, not retained (shared, never mutated). */
const PLAIN: BrokerPublishOptions = Object.freeze({ exclude: 0, history: null, retain: false });

/** BROKER_UNAVAILABLE: the broker is down, stalled, or failed the operation (`cause`: its error). */
export class BrokerUnavailable extends ReplyError {
  override name = 'BrokerUnavailable';
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.BROKER_UNAVAILABLE, message);
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

const DOWN = 'the broker is unreachable; try again later';

function brokerFailed(err: unknown): never {
  if (err instanceof ReplyError) throw err;
  throw new BrokerUnavailable('the broker did not complete the operation; try again later', { cause: err });
}

/** A network broker's answer with its failure turned into BROKER_UNAVAILABLE; a synchronous answer as it is. */
function brokerAnswer<T>(r: T | Promise<T>): T | Promise<T> {
  return isThenable(r) ? (r as Promise<T>).then(undefined, brokerFailed) : r;
}
