// Upgrade admission: the policy checks that run before a WebSocket exists (draining, origin,
// connection limits, handshake rate, subprotocol), and the reservations that keep concurrent
// handshakes from overshooting the limits while authentication runs.
//
// A reservation is taken only for a request ws will accept as a WebSocket handshake (method, Upgrade,
// key and version are checked first, as ws does), and it is released exactly once on every path:
// refused, authentication failed, ws aborting the handshake, the client going away at any point
// before the upgrade completes (the socket's 'close'), or, once accepted, the connection closing.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { SUBPROTOCOL, SUBPROTOCOL_BATCH } from '../protocol/messages.js';
import { TokenBucket } from '../connection/rate.js';
import { abortHandshake } from './http-util.js';

export interface AdmissionLimits {
  readonly maxConnections: number;
  readonly maxConnectionsPerIp: number;
  readonly maxConnectionsPerUser: number;
  readonly handshakeRate: number;
  readonly handshakeBurst: number;
}

export interface AdmissionPolicy {
  readonly limits: AdmissionLimits;
  readonly allowedOrigins: readonly string[];
  readonly allowNoOrigin: boolean;
  readonly requireSubprotocol: boolean;
}

/** An answer to an upgrade request that is refused before any WebSocket exists. */
export interface Refusal {
  status: number;
  /** Label of wiregate_upgrades_rejected_total. */
  reason: string;
  body: { error: string; message: string };
  headers?: Record<string, string | number>;
}

/** Most per-IP handshake buckets kept at once; past it the oldest entries are evicted. */
export const MAX_HANDSHAKE_BUCKETS = 100_000;

const KEY = /^[+/0-9A-Za-z]{22}==$/;

/** Whether ws will treat `req` as a WebSocket handshake (the checks ws's handleUpgrade makes first). */
export function isWebSocketHandshake(req: IncomingMessage): boolean {
  // exactly ws's tests (lib/websocket-server.js handleUpgrade): the version is compared as a number
  const version = +(req.headers['sec-websocket-version'] as string);
  const key = req.headers['sec-websocket-key'];
  return (
    req.method === 'GET' &&
    req.headers.upgrade?.toLowerCase() === 'websocket' &&
    key !== undefined &&
    KEY.test(key) &&
    (version === 13 || version === 8)
  );
}

export const DRAINING: Refusal = { status: 503, reason: 'draining', body: { error: 'UNAVAILABLE', message: 'server shutting down' }, headers: { 'Retry-After': 1 } };

export class Admission {
  /** Upgrades refused, by reason. */
  readonly rejected = new Map<string, number>();
  private readonly perIp = new Map<string, number>();
  private readonly perUser = new Map<string, number>();
  private readonly buckets = new Map<string, TokenBucket>();
  /** Handshakes holding a slot that have not become connections yet. */
  private reserved = 0;
  /** Accepted connections still open. */
  private open = 0;

  constructor(
    private readonly policy: AdmissionPolicy,
    private readonly maxBuckets = MAX_HANDSHAKE_BUCKETS,
  ) {}

  /** What is held right now (for tests and /info): every number returns to 0 when nothing is connected. */
  get holding(): { reserved: number; open: number; ips: number; users: number } {
    return { reserved: this.reserved, open: this.open, ips: this.perIp.size, users: this.perUser.size };
  }

  get handshakeBuckets(): number {
    return this.buckets.size;
  }

  /** Answers a refused upgrade and counts it. */
  refuse(socket: Duplex, r: Refusal): void {
    this.rejected.set(r.reason, (this.rejected.get(r.reason) ?? 0) + 1);
    abortHandshake(socket, r.status, r.body, r.headers);
  }

  /** The subprotocol to select, or a refusal. */
  subprotocol(req: IncomingMessage): string | Refusal {
    const offered = parseProtocols(req.headers['sec-websocket-protocol']);
    const protocol = pickProtocol(offered);
    if (protocol !== null) return protocol;
    // Nothing offered: wiregate.v1 unless it is required. Something offered but not ours (a lone
    // `bearer.<jwt>` included): RFC 6455 clients fail a 101 that selects none of their offers, so
    // a clear 426 serves them better than a connection they would drop.
    if (offered.size === 0 && !this.policy.requireSubprotocol) return SUBPROTOCOL;
    return { status: 426, reason: 'subprotocol', body: { error: 'SUBPROTOCOL_REQUIRED', message: `offer Sec-WebSocket-Protocol: ${SUBPROTOCOL}` }, headers: { 'Sec-WebSocket-Protocol': SUBPROTOCOL } };
  }

  /** Checks that need no identity: origin, connection limits, handshake rate. */
  check(req: IncomingMessage, ip: string): Refusal | null {
    const { limits, allowedOrigins } = this.policy;
    if (allowedOrigins.length > 0) {
      const origin = req.headers.origin;
      if (origin === undefined ? !this.policy.allowNoOrigin : !allowedOrigins.includes(origin)) {
        return { status: 403, reason: 'origin', body: { error: 'ORIGIN_NOT_ALLOWED', message: 'origin not allowed' } };
      }
    }
    if (this.open + this.reserved >= limits.maxConnections) {
      return { status: 503, reason: 'max_connections', body: { error: 'TOO_MANY_CONNECTIONS', message: 'server is at its connection limit' }, headers: { 'Retry-After': 5 } };
    }
    if (limits.maxConnectionsPerIp > 0 && (this.perIp.get(ip) ?? 0) >= limits.maxConnectionsPerIp) {
      return { status: 429, reason: 'max_connections_per_ip', body: { error: 'TOO_MANY_CONNECTIONS_FROM_IP', message: 'too many connections from this address' }, headers: { 'Retry-After': 5 } };
    }
    if (limits.handshakeRate > 0) {
      const wait = this.takeHandshake(ip);
      if (wait > 0) {
        return { status: 429, reason: 'handshake_rate', body: { error: 'HANDSHAKE_RATE_LIMITED', message: 'too many connection attempts' }, headers: { 'Retry-After': Math.ceil(wait / 1000) } };
      }
    }
    return null;
  }

  /**
   * Holds a slot for `ip` until the returned reservation is accepted or released. The socket's
   * 'close' releases it too, so a client that goes away mid-handshake (or a handshake ws aborts)
   * never leaks a slot.
   */
  reserve(ip: string, socket: Duplex): Reservation {
    this.reserved++;
    inc(this.perIp, ip);
    return new Reservation(this, ip, socket);
  }

  /** A per-user check once the identity is known; counts the user on success. */
  claimUser(userId: string): Refusal | null {
    const max = this.policy.limits.maxConnectionsPerUser;
    if (max > 0 && (this.perUser.get(userId) ?? 0) >= max) {
      return { status: 429, reason: 'max_connections_per_user', body: { error: 'TOO_MANY_CONNECTIONS_FOR_USER', message: 'too many connections for this user' }, headers: { 'Retry-After': 5 } };
    }
    inc(this.perUser, userId);
    return null;
  }

  /** An accepted connection closed. */
  closed(ip: string, userId: string | null): void {
    this.open--;
    dec(this.perIp, ip);
    if (userId !== null) dec(this.perUser, userId);
  }

  /** @internal Reservation bookkeeping. */
  settle(r: Reservation, accepted: boolean): void {
    this.reserved--;
    if (accepted) this.open++;
    else {
      dec(this.perIp, r.ip);
      if (r.userId !== null) dec(this.perUser, r.userId);
    }
  }

  /** Drops buckets that have refilled (idle IPs); called once a second. */
  prune(): void {
    for (const [ip, b] of this.buckets) {
      b.refill();
      if (b.full) this.buckets.delete(ip);
    }
  }

  private takeHandshake(ip: string): number {
    let b = this.buckets.get(ip);
    if (b === undefined) {
      if (this.buckets.size >= this.maxBuckets) {
        this.prune();
        // still full: evict the oldest entries (Map order is insertion order)
        for (const k of this.buckets.keys()) {
          if (this.buckets.size < this.maxBuckets) break;
          this.buckets.delete(k);
        }
      }
      this.buckets.set(ip, (b = new TokenBucket(this.policy.limits.handshakeRate, this.policy.limits.handshakeBurst)));
    }
    const wait = b.take(1);
    if (wait > 0) b.tokens += 1; // a refused handshake costs nothing
    return wait;
  }
}

/** One handshake's hold on a connection slot (and its IP's and, once known, its user's). */
export class Reservation {
  userId: string | null = null;
  private done = false;
  private readonly onClose = (): void => this.release();

  constructor(
    private readonly admission: Admission,
    readonly ip: string,
    private readonly socket: Duplex,
  ) {
    socket.once('close', this.onClose);
  }

  get released(): boolean {
    return this.done;
  }

  /** Counts the user against its limit; a refusal when over it. */
  claimUser(userId: string): Refusal | null {
    const r = this.admission.claimUser(userId);
    if (r === null) this.userId = userId;
    return r;
  }

  /** Gives the slot back (idempotent). */
  release(): void {
    if (this.done) return;
    this.done = true;
    this.socket.removeListener('close', this.onClose);
    this.admission.settle(this, false);
  }

  /** The handshake completed: the slot now belongs to the connection (release with Admission.closed). */
  accept(): void {
    if (this.done) return;
    this.done = true;
    this.socket.removeListener('close', this.onClose);
    this.admission.settle(this, true);
  }
}

function inc(m: Map<string, number>, k: string): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}

function dec(m: Map<string, number>, k: string): void {
  const v = (m.get(k) ?? 0) - 1;
  if (v <= 0) m.delete(k);
  else m.set(k, v);
}

function parseProtocols(h: string | undefined): Set<string> {
  const out = new Set<string>();
  if (!h) return out;
  for (const p of h.split(',')) {
    const t = p.trim();
    if (t) out.add(t);
  }
  return out;
}

export function pickProtocol(offered: Set<string>): string | null {
  if (offered.has(SUBPROTOCOL_BATCH)) return SUBPROTOCOL_BATCH;
  if (offered.has(SUBPROTOCOL)) return SUBPROTOCOL;
  return null;
}
