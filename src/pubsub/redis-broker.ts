// A Broker (src/pubsub/broker.ts) backed by one Redis server (7.x, standalone), so that several
// gateway nodes share sequence numbers, history, retained values and presence.
//
// Keys (all under the instance's prefix P; T is the topic):
//   P{m}T   HASH  meta: s = last seq, e = epoch, h = last seq published WITHOUT history (a hole)
//   P{s}T   STREAM history: entry id `<seq>-0`, fields t = publish time (ms), x = expiry (ms, 0 =
//                 none), p = payload; trimmed to exactly `limit` entries (MAXLEN = limit: the
//                 conformance suite requires exactly the last N; `~` trims in whole macro nodes)
//   P{r}T   HASH  retained value: s, e, p
//   P{rz}   ZSET  every topic with a retained value, score 0, for ZRANGEBYLEX prefix scans
//   P{rs}   HASH  b = bytes of all retained payloads, x = retained publishes refused by the caps
//   P{p}T   HASH  presence: client -> msgpack [client, user, info]
//   P{pz}   ZSET  presence expiries of all topics: member `<len(T)>:<T><client>`, score expiry ms
// Channels: P{c}T carries a topic's messages, P{presence} the join/leave events.
//
// publish: one Lua script (defineCommand: EVALSHA, EVAL on NOSCRIPT) that atomically bumps the
// seq (a missing meta hash gets the random epoch the caller drew, and its stale stream is dropped:
// key loss => new epoch), appends to the stream under the history policy (XADD MAXLEN, PEXPIRE for
// ttl; expired entries are also cut from the stream's front when read), sets or clears the retained
// value, and PUBLISHes `seq|epoch|exclude|node|payload` (the payload is the raw bytes after the
// fourth `|`, so framing is binary-safe). Because PUBLISH happens inside the script, the channel
// order is the seq order, across nodes too.
//
// Fan-out is interest-based: an exact topic SUBSCRIBEs its channel; a wildcard pattern PSUBSCRIBEs
// a covering Redis glob (`+` -> `*`, which also spans levels; `a/#` -> `a*`, which covers `a` and
// `a/...` and some more). Glob metacharacters in topic text (and the prefix) are escaped. Globs and
// patterns are refcounted (two patterns can share one glob, e.g. `a/+` and `a/+/#`). Every message
// is then filtered locally against the subscribed patterns with topicMatches, and deduplicated
// (a topic matched by several subscriptions arrives once per subscription from Redis) by remembering
// the last {epoch, seq} delivered per topic: so `filters` is honestly true. Subscriptions use their
// own connection. `exclude` is handed over only on the node that published (node id in the frame).
//
// Presence: add/remove/sweep are Lua scripts that publish join/leave on P{presence}; every node
// sweeps expired entries periodically, and since removal and its leave event happen in one script,
// only one node emits each leave. Times come from the Redis server clock (TIME), so node clocks
// need not agree.
//
// Not done here (later slices): Redis Cluster (scripts touch keys computed from the prefix), caps
// on retained values, stats(), reconnection handling/positions check after a pub/sub outage.
import { randomBytes } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { pack, unpack } from 'msgpackr';
import { topicMatches } from '../protocol/topic.js';
import { parseBrokerFrame } from './broker-frame.js';
import type {
  Broker,
  BrokerDeliver,
  BrokerFeatures,
  BrokerPublishOptions,
  BrokerPublishResult,
  BrokerStats,
  BrokerStatusListener,
  HistoryPage,
  HistoryQuery,
  PresenceEntry,
  PresenceListener,
  Publication,
  RetainedMessage,
  StreamPosition,
} from './broker.js';

export interface RedisBrokerOptions {
  /** redis://host:port/db */
  url: string;
  /** Key and channel prefix shared by every node of one cluster. */
  prefix?: string;
  /** How often this node sweeps expired presence entries, in ms. */
  presenceSweep?: number;
  /** Caps of the retained values of all nodes together (retained.maxTopics / maxBytes). */
  retainedMaxTopics?: number;
  retainedMaxBytes?: number;
  /** Commands (publish, history, ...) not answered within this many ms fail (ioredis commandTimeout). */
  commandTimeout?: number;
  /** Extra ioredis options. */
  redis?: RedisOptions;
}

/** Reconnection backoff: 100 ms doubling to 3 s, with jitter, never giving up. */
function retryDelay(times: number): number {
  return Math.round(Math.min(3000, 50 * 2 ** Math.min(times, 10)) * (0.5 + Math.random() / 2));
}

const NOW = `local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
`;

// A missing meta hash gets the caller's candidate epoch; an orphan stream from the lost epoch goes.
const ENSURE = `local function ensure(meta, stream, cand)
  local e = redis.call('HGET', meta, 'e')
  if not e then
    e = cand
    redis.call('HSET', meta, 'e', e, 's', 0)
    redis.call('DEL', stream)
  end
  return e
end
`;

// KEYS: meta, stream, retained, retainedIndex. ARGV: topic, payload, epochCandidate, limit (0: no
// history), ttl, retain (0 keep, 1 set, 2 clear), exclude, node, channel
const PUBLISH_LUA = `${NOW}${ENSURE}
local e = ensure(KEYS[1], KEYS[2], ARGV[3])
local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
local limit = tonumber(ARGV[4])
if limit > 0 then
  local ttl = tonumber(ARGV[5])
  local x = 0
  if ttl > 0 then x = now + ttl end
  redis.call('XADD', KEYS[2], 'MAXLEN', limit, seq .. '-0', 't', string.format('%.0f', now), 'x', string.format('%.0f', x), 'p', ARGV[2])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) else redis.call('PERSIST', KEYS[2]) end
else
  redis.call('HSET', KEYS[1], 'h', seq)
end
local r = ARGV[6]
if r ~= '0' then
  -- retained values are capped like the memory broker's: past retained.maxTopics / maxBytes the
  -- message is delivered but not retained, and an older value of the topic goes (it would be stale)
  local old = redis.call('HSTRLEN', KEYS[3], 'p')
  local had = redis.call('EXISTS', KEYS[3]) == 1
  local keep = r == '1'
  if keep then
    local bytes = tonumber(redis.call('HGET', KEYS[5], 'b') or '0') - old + #ARGV[2]
    local topics = redis.call('ZCARD', KEYS[4])
    if not had then topics = topics + 1 end
    if topics > tonumber(ARGV[10]) or bytes > tonumber(ARGV[11]) then
      keep = false
      redis.call('HINCRBY', KEYS[5], 'x', 1)
    end
  end
  if keep then
    redis.call('HSET', KEYS[3], 's', seq, 'e', e, 'p', ARGV[2])
    redis.call('ZADD', KEYS[4], 0, ARGV[1])
    redis.call('HINCRBY', KEYS[5], 'b', #ARGV[2] - old)
  elseif had then
    redis.call('DEL', KEYS[3])
    redis.call('ZREM', KEYS[4], ARGV[1])
    redis.call('HINCRBY', KEYS[5], 'b', -old)
  end
end
redis.call('PUBLISH', ARGV[9], seq .. '|' .. e .. '|' .. ARGV[7] .. '|' .. ARGV[8] .. '|' .. ARGV[2])
return {seq, e}
`;

// KEYS: meta, stream. ARGV: epochCandidate. Returns {seq, epoch}.
const POSITION_LUA = `${ENSURE}
local e = ensure(KEYS[1], KEYS[2], ARGV[1])
return {tonumber(redis.call('HGET', KEYS[1], 's')), e}
`;

// KEYS: meta, stream. ARGV: epochCandidate, mode ('last' | 'from'), count, fromSeq.
// Cuts expired entries from the stream's front, then returns {seq, epoch, hole, entries}, where
// entries are the newest `count` (newest first) or `count` from `fromSeq` on (oldest first).
const HISTORY_LUA = `${NOW}${ENSURE}
local e = ensure(KEYS[1], KEYS[2], ARGV[1])
local seq = tonumber(redis.call('HGET', KEYS[1], 's'))
local hole = tonumber(redis.call('HGET', KEYS[1], 'h') or '0')
while true do
  local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 50)
  if #head == 0 then break end
  local cut = 0
  for _, entry in ipairs(head) do
    local f = entry[2]
    local x = 0
    for i = 1, #f, 2 do if f[i] == 'x' then x = tonumber(f[i + 1]) end end
    if x > 0 and x <= now then
      redis.call('XDEL', KEYS[2], entry[1])
      cut = cut + 1
    else
      break
    end
  end
  if cut < #head then break end
end
local count = tonumber(ARGV[3])
local entries
if count <= 0 then
  entries = {}
elseif ARGV[2] == 'last' then
  entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', count)
else
  entries = redis.call('XRANGE', KEYS[2], ARGV[4] .. '-0', '+', 'COUNT', count)
end
return {seq, e, hole, entries}
`;

// KEYS: hash, expiries. ARGV: client, entry, ttl, member, topic, channel.
const PRESENCE_ADD_LUA = `${NOW}
local added = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[4])
if added == 1 then
  redis.call('PUBLISH', ARGV[6], 'j|' .. #ARGV[5] .. '|' .. ARGV[5] .. ARGV[2])
end
return added
`;

// KEYS: hash, expiries. ARGV: client, member, topic, channel.
const PRESENCE_REMOVE_LUA = `
local entry = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
if not entry then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[4], 'l|' .. #ARGV[3] .. '|' .. ARGV[3] .. entry)
return 1
`;

// KEYS: expiries. ARGV: hash key prefix, channel, batch. Removes up to `batch` expired entries,
// publishing a leave for each; returns how many it removed.
const PRESENCE_SWEEP_LUA = `${NOW}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  local colon = string.find(m, ':', 1, true)
  local n = tonumber(string.sub(m, 1, colon - 1))
  local topic = string.sub(m, colon + 1, colon + n)
  local client = string.sub(m, colon + n + 1)
  local hash = ARGV[1] .. topic
  local entry = redis.call('HGET', hash, client)
  if entry then
    redis.call('HDEL', hash, client)
    redis.call('PUBLISH', ARGV[2], 'l|' .. #topic .. '|' .. topic .. entry)
  end
end
return #due
`;

// KEYS: hash, expiries. ARGV: member prefix (`<len>:<topic>`). Returns the live entries.
const PRESENCE_LIST_LUA = `${NOW}
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local score = redis.call('ZSCORE', KEYS[2], ARGV[1] .. all[i])
  if score and tonumber(score) > now then out[#out + 1] = all[i + 1] end
end
return out
`;

type Cmd = (...args: Array<string | Buffer | number>) => Promise<unknown>;

interface Scripted {
  wgPublish: Cmd;
  wgPosition: Cmd;
  wgHistoryBuffer: Cmd;
  wgPresenceAdd: Cmd;
  wgPresenceRemove: Cmd;
  wgPresenceSweep: Cmd;
  wgPresenceListBuffer: Cmd;
}

const NIL = 0xc0;
const BAR = 0x7c; // '|'

/** Escapes Redis glob metacharacters. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

function newId(): string {
  return randomBytes(6).toString('base64url');
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** Most topics whose last delivered {epoch, seq} is remembered for the overlap dedupe. */
const LAST_MAX = 65_536;

export class RedisBroker implements Broker {
  readonly features: BrokerFeatures = Object.freeze({ history: true, retained: true, presence: true });
  /** This node's id (in published frames, so that `exclude` is honoured only here). */
  readonly node = newId();
  readonly prefix: string;
  private readonly cmd: Redis;
  private readonly sub: Redis;
  private readonly s: Scripted;
  private deliver: BrokerDeliver | null = null;
  private onPresence: PresenceListener | null = null;
  private onStatus: BrokerStatusListener | null = null;
  /** What onStatus was last told. */
  private reported = true;
  private subPing: Promise<unknown> | null = null;
  private readonly channelPrefix: string;
  private readonly presenceChannel: string;
  /** Subscribed patterns (refcounted). */
  private readonly patterns = new Map<string, number>();
  /** Redis channels / globs subscribed (refcounted: several patterns may share one). */
  private readonly channels = new Map<string, number>();
  private readonly globs = new Map<string, number>();
  private readonly retainedMaxTopics: number;
  private readonly retainedMaxBytes: number;
  /** What stats() reports: read from Redis in the background, at most one read per second. */
  private lastStats: BrokerStats = { historyBytes: 0, historyMessages: 0, historyEvictions: 0, retainedTopics: 0, retainedBytes: 0, retainedRejected: 0 };
  private statsReadAt = 0;
  /** Last {epoch, seq} handed over per topic (dedupe across overlapping subscriptions). */
  private readonly last = new Map<string, { epoch: string; seq: number }>();
  private sweeper: ReturnType<typeof setInterval> | null = null;
  private sweeping = false;
  private readonly sweepEvery: number;
  private closed = false;
  /** The URL without its password, for messages. */
  private readonly where: string;

  constructor(opts: RedisBrokerOptions) {
    this.prefix = opts.prefix ?? 'wg:';
    this.where = opts.url.replace(/^([a-z]+:\/\/[^/@:]*:)[^/@]*@/, '$1<redacted>@');
    this.channelPrefix = `${this.prefix}{c}`;
    this.presenceChannel = `${this.prefix}{presence}`;
    this.sweepEvery = opts.presenceSweep ?? 1000;
    this.retainedMaxTopics = opts.retainedMaxTopics ?? 100_000;
    this.retainedMaxBytes = opts.retainedMaxBytes ?? 64 * 1024 * 1024;
    const ro: RedisOptions = { lazyConnect: true, maxRetriesPerRequest: 2, retryStrategy: retryDelay, commandTimeout: opts.commandTimeout, ...opts.redis };
    this.cmd = new Redis(opts.url, ro);
    // The subscriber's SUBSCRIBEs wait through a reconnection (ioredis re-subscribes on its own).
    this.sub = new Redis(opts.url, { ...ro, maxRetriesPerRequest: null, commandTimeout: undefined });
    // Errors surface through the commands' promises; keep ioredis from printing them unhandled.
    this.cmd.on('error', () => undefined);
    this.sub.on('error', () => undefined);
    this.cmd.defineCommand('wgPublish', { numberOfKeys: 5, lua: PUBLISH_LUA });
    this.cmd.defineCommand('wgPosition', { numberOfKeys: 2, lua: POSITION_LUA });
    this.cmd.defineCommand('wgHistory', { numberOfKeys: 2, lua: HISTORY_LUA });
    this.cmd.defineCommand('wgPresenceAdd', { numberOfKeys: 2, lua: PRESENCE_ADD_LUA });
    this.cmd.defineCommand('wgPresenceRemove', { numberOfKeys: 2, lua: PRESENCE_REMOVE_LUA });
    this.cmd.defineCommand('wgPresenceSweep', { numberOfKeys: 1, lua: PRESENCE_SWEEP_LUA });
    this.cmd.defineCommand('wgPresenceList', { numberOfKeys: 2, lua: PRESENCE_LIST_LUA });
    this.s = this.cmd as unknown as Scripted;
  }

  /** The keys holding a topic's state (for tests that simulate losing it). */
  topicKeys(topic: string): string[] {
    return [this.metaKey(topic), this.streamKey(topic), this.retainedKey(topic)];
  }

  /** Deletes a topic's seq/epoch, history and retained value (as if Redis had lost them). */
  async forget(topic: string): Promise<void> {
    const old = await this.cmd.hstrlen(this.retainedKey(topic), 'p');
    if (old > 0) await this.cmd.hincrby(this.retainedStatsKey(), 'b', -old);
    await this.cmd.zrem(this.retainedIndexKey(), topic);
    await this.cmd.del(...this.topicKeys(topic));
  }

  async start(deliver: BrokerDeliver, onPresence?: PresenceListener, onStatus?: BrokerStatusListener): Promise<void> {
    this.deliver = deliver;
    this.onPresence = onPresence ?? null;
    this.onStatus = onStatus ?? null;
    try {
      await Promise.all([this.cmd.connect(), this.sub.connect()]);
    } catch (err) {
      // stop ioredis retrying in the background: a gateway that cannot start must be able to exit
      this.cmd.disconnect();
      this.sub.disconnect();
      throw new Error(`cannot connect to the Redis broker at ${this.where}: ${err instanceof Error ? err.message : String(err)}`);
    }
    // Losing either connection makes the broker unusable; both ready again (and the subscriber's
    // SUBSCRIBEs, which ioredis re-sends before anything else, answered) makes it usable.
    for (const r of [this.cmd, this.sub]) {
      r.on('close', () => this.status(false, 'the connection to Redis was lost'));
      r.on('ready', () => {
        if (this.cmd.status !== 'ready' || this.sub.status !== 'ready') return;
        this.sub.ping().then(
          () => this.status(true, ''),
          () => undefined,
        );
      });
    }
    this.sub.on('messageBuffer', (channel: Buffer, message: Buffer) => this.onMessage(channel, message));
    this.sub.on('pmessageBuffer', (_glob: Buffer, channel: Buffer, message: Buffer) => this.onMessage(channel, message));
    await this.sub.subscribe(this.presenceChannel);
    this.sweeper = setInterval(() => void this.sweep(), this.sweepEvery);
    this.sweeper.unref();
  }

  /**
   * The retained values of every node on this Redis and prefix (history is not reported: its size
   * would cost a scan). Read in the background when asked, so a scrape sees the values of the
   * previous read (at most one read per second).
   */
  stats(): BrokerStats {
    const now = Date.now();
    if (now - this.statsReadAt >= 1000 && !this.closed && this.cmd.status === 'ready') {
      this.statsReadAt = now;
      this.readStats().catch(() => undefined);
    }
    return this.lastStats;
  }

  /** Reads the retained-value figures now (stats() then reports them). */
  async readStats(): Promise<BrokerStats> {
    const [topics, h] = await Promise.all([this.cmd.zcard(this.retainedIndexKey()), this.cmd.hmget(this.retainedStatsKey(), 'b', 'x')]);
    this.lastStats = { ...this.lastStats, retainedTopics: topics, retainedBytes: Number(h[0] ?? 0), retainedRejected: Number(h[1] ?? 0) };
    return this.lastStats;
  }

  /** One round trip on each connection (the subscriber's ping is not repeated while one is pending). */
  async ping(): Promise<void> {
    this.subPing ??= this.sub.ping().finally(() => (this.subPing = null));
    await Promise.all([this.cmd.ping(), this.subPing]);
  }

  private status(up: boolean, reason: string): void {
    if (this.closed || this.onStatus === null || up === this.reported) return;
    this.reported = up;
    this.onStatus(up, reason);
  }

  async publish(topic: string, payload: Uint8Array, opts: BrokerPublishOptions): Promise<BrokerPublishResult> {
    const h = opts.history;
    const retain = !opts.retain ? '0' : payload.length === 1 && payload[0] === NIL ? '2' : '1';
    const r = (await this.s.wgPublish(
      this.metaKey(topic),
      this.streamKey(topic),
      this.retainedKey(topic),
      this.retainedIndexKey(),
      this.retainedStatsKey(),
      topic,
      asBuffer(payload),
      newId(),
      h === null ? 0 : Math.max(1, Math.floor(h.limit)),
      h === null ? 0 : Math.max(0, Math.floor(h.ttl)),
      retain,
      opts.exclude,
      this.node,
      this.channelPrefix + topic,
      this.retainedMaxTopics,
      this.retainedMaxBytes,
    )) as [number, string];
    return { seq: Number(r[0]), epoch: String(r[1]) };
  }

  async subscribe(pattern: string): Promise<void> {
    const n = this.patterns.get(pattern) ?? 0;
    this.patterns.set(pattern, n + 1);
    if (n > 0) return;
    const [kind, name] = this.redisSubscription(pattern);
    const map = kind === 'channel' ? this.channels : this.globs;
    const m = map.get(name) ?? 0;
    map.set(name, m + 1);
    if (m > 0) return;
    if (kind === 'channel') await this.sub.subscribe(name);
    else await this.sub.psubscribe(name);
  }

  async unsubscribe(pattern: string): Promise<void> {
    const n = this.patterns.get(pattern);
    if (n === undefined) return;
    if (n > 1) {
      this.patterns.set(pattern, n - 1);
      return;
    }
    this.patterns.delete(pattern);
    if (this.patterns.size === 0) this.last.clear(); // nothing subscribed: no duplicate to catch
    const [kind, name] = this.redisSubscription(pattern);
    const map = kind === 'channel' ? this.channels : this.globs;
    const m = map.get(name) ?? 0;
    if (m > 1) {
      map.set(name, m - 1);
      return;
    }
    map.delete(name);
    if (this.closed) return;
    if (kind === 'channel') await this.sub.unsubscribe(name);
    else await this.sub.punsubscribe(name);
  }

  async position(topic: string): Promise<StreamPosition> {
    const r = (await this.s.wgPosition(this.metaKey(topic), this.streamKey(topic), newId())) as [number, string];
    return { seq: Number(r[0]), epoch: String(r[1]) };
  }

  async history(topic: string, query: HistoryQuery): Promise<HistoryPage> {
    const limit = Math.max(0, Math.floor(query.limit));
    const since = query.since;
    const keys = [this.metaKey(topic), this.streamKey(topic), newId()];
    if (since === undefined) {
      // The newest limit+1 entries tell whether the limit cut the page.
      const [position, , entries] = await this.readHistory(keys, 'last', limit + 1, 0);
      const pubs = entries.slice(0, limit);
      if (!query.reverse) pubs.reverse();
      // limit 0: `more` when anything is kept at all
      const more = limit === 0 ? entries.length > 0 || (await this.anyHistory(keys)) : entries.length > limit;
      return { publications: pubs, position, complete: true, more };
    }
    // Read from since+1; at least one entry, to check that since+1 is still held.
    const [position, hole, entries] = await this.readHistory(keys, 'from', Math.max(1, limit + 1), since.seq + 1);
    const incomplete: HistoryPage = { publications: [], position, complete: false, more: false };
    if (since.epoch !== position.epoch || since.seq > position.seq) return incomplete;
    if (since.seq === position.seq) return { publications: [], position, complete: true, more: false };
    // All or nothing: every seq after since.seq must have been kept (no publish without history
    // after it) and the oldest of them must still be there (trimming only cuts the front).
    if (hole > since.seq || entries.length === 0 || entries[0].seq !== since.seq + 1) return incomplete;
    return { publications: entries.slice(0, limit), position, complete: true, more: since.seq + limit < position.seq };
  }

  async retained(pattern: string, limit: number): Promise<RetainedMessage[]> {
    if (limit <= 0) return [];
    const levels = pattern.split('/');
    const w = levels.findIndex((l) => l === '+' || l === '#');
    let topics: string[];
    if (w === -1) {
      topics = [pattern];
    } else {
      // Scan only the topics that start with the levels before the first wildcard.
      const prefix = levels.slice(0, w).join('/');
      const min = prefix === '' ? '-' : Buffer.from(`[${prefix}`);
      const max = prefix === '' ? '+' : Buffer.concat([Buffer.from(`(${prefix}`), Buffer.from([0xff])]);
      topics = [];
      const batch = 500;
      for (let offset = 0; topics.length < limit; offset += batch) {
        const got = await this.cmd.zrangebylex(this.retainedIndexKey(), min as unknown as string, max as unknown as string, 'LIMIT', offset, batch);
        for (const t of got) if (topicMatches(pattern, t)) topics.push(t);
        if (got.length < batch) break;
      }
    }
    const out: RetainedMessage[] = [];
    // Values may be cleared meanwhile: read in order and skip what is gone.
    for (let i = 0; i < topics.length && out.length < limit; i += 100) {
      const chunk = topics.slice(i, i + 100);
      const p = this.cmd.pipeline();
      for (const t of chunk) p.hgetallBuffer(this.retainedKey(t));
      const res = (await p.exec()) ?? [];
      for (const [k, [err, v]] of res.entries()) {
        if (err !== null) throw err;
        const h = v as Record<string, Buffer>;
        if (h.p === undefined || out.length >= limit) continue;
        out.push({ topic: chunk[k], seq: Number(h.s.toString()), epoch: h.e.toString(), payload: h.p });
      }
    }
    return out;
  }

  async presenceAdd(topic: string, entry: PresenceEntry, ttl: number): Promise<void> {
    const encoded = pack([entry.client, entry.user, entry.info === null ? null : asBuffer(entry.info)]);
    await this.s.wgPresenceAdd(this.presenceKey(topic), this.presenceExpiryKey(), entry.client, encoded, Math.max(1, Math.floor(ttl)), this.member(topic, entry.client), topic, this.presenceChannel);
  }

  async presenceRemove(topic: string, client: string): Promise<void> {
    await this.s.wgPresenceRemove(this.presenceKey(topic), this.presenceExpiryKey(), client, this.member(topic, client), topic, this.presenceChannel);
  }

  async presence(topic: string): Promise<PresenceEntry[]> {
    const got = (await this.s.wgPresenceListBuffer(this.presenceKey(topic), this.presenceExpiryKey(), `${Buffer.byteLength(topic)}:${topic}`)) as Buffer[];
    return got.map(decodeEntry);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.deliver = null;
    this.onPresence = null;
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
    await Promise.all([quit(this.sub), quit(this.cmd)]);
  }

  /** Removes expired presence entries (any node may; each leave is emitted once). */
  private async sweep(): Promise<void> {
    if (this.sweeping || this.closed) return;
    this.sweeping = true;
    try {
      const batch = 200;
      while (!this.closed && Number(await this.s.wgPresenceSweep(this.presenceExpiryKey(), `${this.prefix}{p}`, this.presenceChannel, batch)) === batch);
    } catch {
      // Redis unreachable: the next sweep tries again
    } finally {
      this.sweeping = false;
    }
  }

  private async anyHistory(keys: string[]): Promise<boolean> {
    const [, , e] = await this.readHistory(keys, 'last', 1, 0);
    return e.length > 0;
  }

  private async readHistory(keys: string[], mode: 'last' | 'from', count: number, from: number): Promise<[StreamPosition, number, Publication[]]> {
    const r = (await this.s.wgHistoryBuffer(keys[0], keys[1], keys[2], mode, count, from)) as [number, Buffer, number, Array<[Buffer, Buffer[]]>];
    const position = { seq: Number(r[0]), epoch: r[1].toString() };
    const pubs: Publication[] = r[3].map(([id, fields]) => {
      let time = 0;
      let payload: Buffer = Buffer.alloc(0);
      for (let i = 0; i < fields.length; i += 2) {
        const f = fields[i].toString();
        if (f === 't') time = Number(fields[i + 1].toString());
        else if (f === 'p') payload = fields[i + 1];
      }
      const s = id.toString();
      return { seq: Number(s.slice(0, s.indexOf('-'))), payload, time };
    });
    return [position, Number(r[2]), pubs];
  }

  private onMessage(channel: Buffer, message: Buffer): void {
    if (this.closed) return;
    const name = channel.toString();
    if (name === this.presenceChannel) {
      this.onPresenceMessage(message);
      return;
    }
    const deliver = this.deliver;
    if (deliver === null || !name.startsWith(this.channelPrefix)) return;
    const topic = name.slice(this.channelPrefix.length);
    if (!this.wanted(topic)) return;
    const f = parseBrokerFrame(message);
    if (f === null) return;
    const { seq, epoch } = f;
    const prev = this.last.get(topic);
    if (prev !== undefined && prev.epoch === epoch && seq <= prev.seq) return; // a second matching subscription
    if (prev === undefined) {
      // Bounded: a repeat arrives right after the first copy, so forgetting the least recently
      // added topics costs nothing (a node serving millions of device topics must not keep them all).
      if (this.last.size >= LAST_MAX) this.last.delete(this.last.keys().next().value as string);
      this.last.set(topic, { epoch, seq });
    } else {
      prev.epoch = epoch;
      prev.seq = seq;
    }
    deliver(topic, seq, epoch, f.payload, f.node === this.node ? f.exclude : 0);
  }

  private onPresenceMessage(message: Buffer): void {
    const listener = this.onPresence;
    if (listener === null) return;
    const kind = message[0] === 0x6a ? 'join' : 'leave'; // 'j'
    const b = message.indexOf(BAR, 2);
    const n = Number(message.toString('latin1', 2, b));
    const topic = message.toString('utf8', b + 1, b + 1 + n);
    listener(topic, kind, decodeEntry(message.subarray(b + 1 + n)));
  }

  /** Whether any subscribed pattern matches (Redis globs are a superset). */
  private wanted(topic: string): boolean {
    if (this.patterns.has(topic)) return true;
    for (const p of this.patterns.keys()) if (topicMatches(p, topic)) return true;
    return false;
  }

  /** The Redis channel (exact topic) or glob (wildcard pattern) that covers `pattern`. */
  private redisSubscription(pattern: string): ['channel' | 'glob', string] {
    const levels = pattern.split('/');
    const w = levels.findIndex((l) => l === '+' || l === '#');
    if (w === -1) return ['channel', this.channelPrefix + pattern];
    const out: string[] = [];
    for (const l of levels) {
      if (l === '#') {
        // `a/#` matches `a` and `a/...`: drop the separator before it and cover everything after.
        return ['glob', globEscape(this.channelPrefix) + out.join('/') + '*'];
      }
      out.push(l === '+' ? '*' : globEscape(l));
    }
    return ['glob', globEscape(this.channelPrefix) + out.join('/')];
  }

  private member(topic: string, client: string): string {
    // Byte length: the sweep script splits the member with Lua's byte-based string functions.
    return `${Buffer.byteLength(topic)}:${topic}${client}`;
  }

  private metaKey(topic: string): string {
    return `${this.prefix}{m}${topic}`;
  }
  private streamKey(topic: string): string {
    return `${this.prefix}{s}${topic}`;
  }
  private retainedKey(topic: string): string {
    return `${this.prefix}{r}${topic}`;
  }
  private retainedIndexKey(): string {
    return `${this.prefix}{rz}`;
  }
  private retainedStatsKey(): string {
    return `${this.prefix}{rs}`;
  }
  private presenceKey(topic: string): string {
    return `${this.prefix}{p}${topic}`;
  }
  private presenceExpiryKey(): string {
    return `${this.prefix}{pz}`;
  }
}

function decodeEntry(b: Buffer): PresenceEntry {
  const [client, user, info] = unpack(b) as [string, string | null, Uint8Array | null];
  return { client, user: user ?? null, info: info ?? null };
}

async function quit(r: Redis): Promise<void> {
  try {
    if (r.status === 'ready') await r.quit();
    else r.disconnect();
  } catch {
    r.disconnect();
  }
}
