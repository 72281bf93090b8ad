import type { Duplex } from 'node:stream';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { BlockList, isIP } from 'node:net';
import type { TrustProxySetting } from '../config/schema.js';

/** Answers an upgrade request with a plain HTTP error and closes the socket (no WebSocket exists). */
export function abortHandshake(socket: Duplex, status: number, body: unknown, headers: Record<string, string | number> = {}): void {
  if (socket.destroyed) return;
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const h: Record<string, string | number> = {
    Connection: 'close',
    'Content-Type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  };
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
      Object.entries(h)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('') +
      '\r\n' +
      text,
  );
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string | number> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Reads a request body up to `limit` bytes; resolves null (and answers 413) when larger. */
export function readBody(req: IncomingMessage, res: ServerResponse, limit: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > limit) {
      sendJson(res, 413, { error: 'PAYLOAD_TOO_LARGE', message: `body larger than ${limit} bytes` }, { Connection: 'close' });
      req.resume();
      return resolve(null);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > limit) {
        done = true;
        sendJson(res, 413, { error: 'PAYLOAD_TOO_LARGE', message: `body larger than ${limit} bytes` }, { Connection: 'close' });
        req.resume();
        return resolve(null);
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!done) {
        done = true;
        resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
      }
    });
    req.on('error', (err) => {
      if (!done) {
        done = true;
        reject(err);
      }
    });
  });
}

// ---- client address behind proxies (trustProxy) ----------------------------------------------
//
// X-Forwarded-For is a list each proxy appends its peer's address to, so only the entries on the
// right, added by proxies we trust, are facts; anything further left may have been written by the
// client itself. The address is found by walking from the TCP peer leftwards through the list
// while the address at hand is a trusted proxy (proxy-addr's model, used by express and fastify).

/** What trustProxy accepts: a TrustProxySetting, or the same written as a string ("2", "10.0.0.0/8, ::1"). */
export type TrustProxy = TrustProxySetting | string;

/** Named ranges usable in a trustProxy list (proxy-addr's names). */
const NAMED_RANGES: Readonly<Record<string, readonly string[]>> = {
  loopback: ['127.0.0.0/8', '::1/128'],
  linklocal: ['169.254.0.0/16', 'fe80::/10'],
  uniquelocal: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
};

const MAPPED_V4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

interface Range {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** Parses one trustProxy entry (address or CIDR, not a name) or says what is wrong with it. */
function parseRange(entry: string): Range | string {
  const slash = entry.indexOf('/');
  let address = slash === -1 ? entry : entry.slice(0, slash);
  const v = isIP(address);
  if (v === 0) return 'is not an IP address, a CIDR range (10.0.0.0/8, fd00::/8) or one of loopback, linklocal, uniquelocal';
  if (address.includes('%')) return 'must not carry a zone index';
  let family: Range['family'] = v === 4 ? 'ipv4' : 'ipv6';
  let bits = v === 4 ? 32 : 128;
  let prefix = bits;
  if (slash !== -1) {
    const p = entry.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > bits) return `has a prefix length that is not 0..${bits}`;
    prefix = Number(p);
  }
  // ::ffff:10.0.0.0/104 is written as the IPv4 range it stands for
  const mapped = MAPPED_V4.exec(address);
  if (mapped && prefix >= 96) {
    address = mapped[1];
    family = 'ipv4';
    bits = 32;
    prefix -= 96;
  }
  return { address, prefix, family };
}

/** Why `entry` cannot be used in a trustProxy list, or null when it can. */
export function trustProxyEntryError(entry: string): string | null {
  const e = entry.trim();
  if (Object.hasOwn(NAMED_RANGES, e.toLowerCase())) return null;
  const r = parseRange(e);
  return typeof r === 'string' ? r : null;
}

/**
 * The IP address in one X-Forwarded-For entry, normalised (IPv6 lower-case and compressed,
 * IPv4-mapped IPv6 as IPv4, a port or brackets removed), or null when the entry is not an address
 * (empty, `unknown`, a host name, garbage).
 */
export function parseForwardedAddress(entry: string): string | null {
  let a = entry.trim();
  if (a.startsWith('[')) {
    // [v6] or [v6]:port
    const end = a.indexOf(']');
    if (end === -1 || !/^(:\d{1,5})?$/.test(a.slice(end + 1))) return null;
    a = a.slice(1, end);
    if (isIP(a) !== 6) return null;
  } else if (/^[\d.]+:\d{1,5}$/.test(a)) {
    a = a.slice(0, a.indexOf(':')); // IPv4:port
  }
  return normaliseIp(a);
}

/** Canonical text of an IP address; null when `a` is not one. */
function normaliseIp(a: string): string | null {
  const v = isIP(a);
  if (v === 4) return a;
  if (v !== 6) return null;
  const zone = a.indexOf('%');
  let host: string;
  try {
    host = new URL(`http://[${zone === -1 ? a : a.slice(0, zone)}]/`).hostname.slice(1, -1);
  } catch {
    return null;
  }
  // ::ffff:a.b.c.d serialises as ::ffff:xxxx:yyyy
  const m = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (m) {
    const hi = parseInt(m[1], 16);
    const lo = parseInt(m[2], 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return host;
}

/** The TCP peer's address (IPv4-mapped IPv6 unwrapped), 'unknown' once the socket is gone. */
function peerAddress(req: IncomingMessage): string {
  const a = req.socket.remoteAddress;
  if (a === undefined) return 'unknown';
  return MAPPED_V4.test(a) ? a.slice(7) : a;
}

/**
 * Walks from the TCP peer leftwards through X-Forwarded-For while `trusted(address, hop)` says the
 * address is a proxy (hop 0 is the peer); returns the first address that is not. Past the left
 * end the leftmost address is the client. An entry that is not an IP address ends the walk at
 * the proxy that added it: the client behind it cannot be known.
 */
function walk(req: IncomingMessage, trusted: (address: string, hop: number) => boolean): string {
  const peer = peerAddress(req);
  if (!trusted(peer, 0)) return peer;
  const header = req.headers['x-forwarded-for'];
  const xff = Array.isArray(header) ? header.join(',') : header;
  if (xff === undefined) return peer;
  const entries = xff.split(',');
  let last = peer;
  for (let i = entries.length - 1, hop = 1; i >= 0; i--, hop++) {
    const address = parseForwardedAddress(entries[i]);
    if (address === null) return last;
    if (!trusted(address, hop)) return address;
    last = address;
  }
  return last;
}

function invalid(value: unknown, why: string): never {
  throw new TypeError(`trustProxy ${why}, got ${JSON.stringify(value)}`);
}

/**
 * Compiles a trustProxy setting into the function that gives a request's client address (the key
 * of per-IP limits). Call it once, at construction; the returned function only reads the request.
 *
 * - `false`, `0`, `[]`: the TCP peer; X-Forwarded-For is ignored.
 * - `true` or `1`: exactly one proxy in front: the rightmost X-Forwarded-For entry.
 * - a hop count N: the peer and the N-1 rightmost entries are proxies; the client is the entry
 *   left of them, or the leftmost when there are fewer.
 * - a list of proxy addresses and CIDR ranges (IPv4, IPv6, or `loopback`, `linklocal`,
 *   `uniquelocal`), or the same as a comma-separated string: the rightmost address, starting at
 *   the peer, that is not a listed proxy.
 *
 * Entries left of the client address are never read, so a client that prepends its own entries
 * changes nothing. An entry that is not an IP address stops the walk at the proxy that wrote it.
 * Returned addresses are normalised: IPv4-mapped IPv6 as IPv4, IPv6 lower-case and compressed.
 * Throws a TypeError for a setting it cannot use (resolveConfig rejects those with a ConfigError).
 */
export function compileTrustProxy(value: TrustProxy): (req: IncomingMessage) => string {
  let setting: unknown = value;
  if (typeof setting === 'string') {
    const t = setting.trim();
    setting = /^(true|yes|on)$/i.test(t) ? true : /^(false|no|off)$/i.test(t) ? false : /^\d+$/.test(t) ? Number(t) : t.split(',').map((s) => s.trim()).filter(Boolean);
  }
  if (setting === true) setting = 1;
  if (setting === false || setting === 0) return peerAddress;
  if (typeof setting === 'number') {
    if (!Number.isInteger(setting) || setting < 0) invalid(value, 'hop count must be a non-negative integer');
    const hops = setting;
    return (req) => walk(req, (_address, hop) => hop < hops);
  }
  if (!Array.isArray(setting)) invalid(value, 'must be a boolean, a hop count or a list of proxy addresses/CIDRs');
  if (setting.length === 0) return peerAddress;
  const proxies = new BlockList();
  for (const raw of setting as unknown[]) {
    if (typeof raw !== 'string') invalid(value, 'list entries must be strings');
    const entry = raw.trim();
    for (const item of NAMED_RANGES[entry.toLowerCase()] ?? [entry]) {
      const r = parseRange(item);
      if (typeof r === 'string') invalid(value, `entry ${JSON.stringify(raw)} ${r}`);
      proxies.addSubnet(r.address, r.prefix, r.family);
    }
  }
  return (req) => walk(req, (address) => proxies.check(address, isIP(address) === 4 ? 'ipv4' : 'ipv6'));
}
