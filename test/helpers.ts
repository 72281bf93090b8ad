// Test helpers: real gateways on port 0 and real `ws` clients speaking wiregate.v1.
//
// Pass the test's context first (`startGateway(t, options)`, `connect(t, url)`) and what is
// created is closed when the test ends, passed or failed: a failing assertion halfway through a
// test must not leave a gateway or a socket open, which would keep the test file's process alive
// until the runner's 60 s timeout. Anything else a test creates (servers, raw sockets, timers,
// child processes) goes to `cleanup(t, fn)` on the line that creates it.
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { TestContext } from 'node:test';
import WebSocket from 'ws';
import { createGateway, type CreateGatewayOptions, type Gateway } from '../src/index.js';
import { decodeFrame, encode } from '../src/protocol/messages.js';
import { fastPaths } from '../src/transport/ws-internals.js';

/** The fast paths of this run (CI also runs the suite with WIREGATE_FAST_PATHS=off): tests that check
 * a fast path's own effect (shared compressed frames, batching, synchronous inflate) expect the
 * public-API behaviour when it is off. */
export const FAST = fastPaths();

/** What the helpers need from a test: node:test's per-test `after` hook (a TestContext). */
export type Owner = Pick<TestContext, 'after'>;

const cleanups = new WeakMap<Owner, Array<() => unknown>>();

/**
 * Runs `fn` when test `t` ends, whether it passed or failed (one `t.after` hook per test). The
 * cleanups of a test run last-registered first (clients before the gateway they are connected
 * to); each runs even if an earlier one threw, and the first error is rethrown afterwards.
 * Cleanups must be idempotent: the test may already have closed the thing itself.
 */
export function cleanup(t: Owner, fn: () => unknown): void {
  let fns = cleanups.get(t);
  if (fns === undefined) {
    const list: Array<() => unknown> = [];
    fns = list;
    cleanups.set(t, list);
    t.after(async () => {
      const errors: unknown[] = [];
      for (let f = list.pop(); f !== undefined; f = list.pop()) {
        try {
          await f();
        } catch (err) {
          errors.push(err);
        }
      }
      if (errors.length > 0) throw errors[0];
    });
  }
  fns.push(fn);
}

function isOwner(x: unknown): x is Owner {
  return typeof x === 'object' && x !== null && typeof (x as { after?: unknown }).after === 'function';
}

export interface Started {
  gw: Gateway;
  port: number;
  url: string;
  http: string;
}

/**
 * A gateway on 127.0.0.1, port 0. (The options-only form is declared last, so that
 * `Parameters<typeof startGateway>[0]` stays the options.) With a test context first, it is closed when the test ends
 * (`close({ drainTimeout: 0 })`: clients still connected are cut off at once; a test that closed
 * it already gets its own close back, gw.close() is idempotent).
 */
export async function startGateway(t: Owner, options?: CreateGatewayOptions): Promise<Started>;
export async function startGateway(options?: CreateGatewayOptions): Promise<Started>;
export async function startGateway(a?: Owner | CreateGatewayOptions, b?: CreateGatewayOptions): Promise<Started> {
  const t = isOwner(a) ? a : null;
  const options = (t !== null ? b : (a as CreateGatewayOptions | undefined)) ?? {};
  const gw = createGateway({ log: { level: 'silent' }, host: '127.0.0.1', port: 0, ...options });
  if (t !== null) cleanup(t, () => gw.close({ drainTimeout: 0 }));
  const { port } = await gw.listen();
  return { gw, port, url: `ws://127.0.0.1:${port}${gw.config.path}`, http: `http://127.0.0.1:${port}` };
}

/** Closes an http.Server and every connection it still has; does nothing if it is not listening. */
export function closeServer(server: Server): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

export interface Closed {
  code: number;
  reason: string;
}

/** A ws client that decodes every frame into a queue of messages. */
export class Client {
  readonly ws: WebSocket;
  readonly messages: unknown[] = [];
  private waiters: Array<{ pred: (m: unknown) => boolean; resolve: (m: unknown) => void; reject: (e: Error) => void }> = [];
  readonly closed: Promise<Closed>;
  readonly opened: Promise<void>;
  private nextId = 1;
  frames = 0;

  constructor(url: string, protocols: string | string[] = 'wiregate.v1', opts: WebSocket.ClientOptions = {}) {
    this.ws = new WebSocket(url, protocols, opts);
    this.ws.binaryType = 'nodebuffer';
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
      this.ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
    });
    this.closed = new Promise((resolve) => this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    this.closed.then(() => {
      for (const w of this.waiters) w.reject(new Error('connection closed while waiting for a message'));
      this.waiters = [];
    });
    this.ws.on('error', () => {});
    this.ws.on('message', (data: Buffer, isBinary) => {
      this.frames++;
      const msgs = isBinary ? decodeFrame(data) : [data.toString()];
      for (const m of msgs) this.push(m);
    });
  }

  private push(m: unknown): void {
    const i = this.waiters.findIndex((w) => w.pred(m));
    if (i !== -1) {
      const [w] = this.waiters.splice(i, 1);
      w.resolve(m);
    } else this.messages.push(m);
  }

  /** Resolves with the first message (queued or future) matching `pred`. */
  next<T = unknown[]>(pred: (m: any) => boolean = () => true): Promise<T> {
    const i = this.messages.findIndex(pred);
    if (i !== -1) return Promise.resolve(this.messages.splice(i, 1)[0] as T);
    return new Promise<T>((resolve, reject) => this.waiters.push({ pred, resolve: resolve as (m: unknown) => void, reject }));
  }

  send(...msgs: unknown[]): void {
    this.ws.send(Buffer.concat(msgs.map((m) => encode(m))));
  }

  id(): number {
    return this.nextId++;
  }

  /** Sends a message with a fresh id in position 1 and resolves with the RESULT or ERROR for it. */
  async call(type: number, ...rest: unknown[]): Promise<unknown[]> {
    const id = this.id();
    this.send([type, id, ...rest]);
    return this.next<unknown[]>((m) => Array.isArray(m) && (m[0] === 16 || m[0] === 17 || m[0] === 20) && m[1] === id);
  }

  subscribe(pattern: string) {
    return this.call(1, pattern);
  }

  publish(topic: string, payload: unknown, opts?: Record<string, unknown>) {
    return opts ? this.call(3, topic, payload, opts) : this.call(3, topic, payload);
  }

  request(method: string, payload?: unknown) {
    // msgpackr encodes `undefined` as an extension (d4 00 00), which the server refuses (1007)
    return payload === undefined ? this.call(4, method) : this.call(4, method, payload);
  }

  /** Next delivery `[18, topic, seq, payload]`. */
  delivery(topic?: string) {
    return this.next<[number, string, number, unknown]>((m) => Array.isArray(m) && m[0] === 18 && (topic === undefined || m[1] === topic));
  }

  close(): Promise<Closed> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close();
    return this.closed;
  }

  /**
   * Cuts the connection without a closing handshake (unless it is already closed) and resolves
   * once it is closed. Idempotent. Unlike close(), never waits for the server: ws's close() waits
   * up to 30 s for an answer that a stuck or paused peer never sends.
   */
  terminate(): Promise<Closed> {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate();
    return this.closed;
  }
}

/**
 * Opens a client and waits for the handshake. With a test context first, the client is
 * terminated when the test ends (registered before the handshake, so a failed one is covered too).
 */
export async function connect(t: Owner, url: string, protocols?: string | string[], opts?: WebSocket.ClientOptions): Promise<Client>;
export async function connect(url: string, protocols?: string | string[], opts?: WebSocket.ClientOptions): Promise<Client>;
export async function connect(...args: [string, (string | string[])?, WebSocket.ClientOptions?] | [Owner, string, (string | string[])?, WebSocket.ClientOptions?]): Promise<Client> {
  const t = typeof args[0] === 'string' ? null : args[0];
  const [url, protocols = 'wiregate.v1', opts = {}] = (t === null ? args : args.slice(1)) as [string, (string | string[])?, WebSocket.ClientOptions?];
  const c = new Client(url, protocols, opts);
  if (t !== null) cleanup(t, () => c.terminate());
  await c.opened;
  return c;
}

type Rejected = { status: number; body: any; headers: Record<string, unknown> };

/**
 * Performs an upgrade that is expected to fail and returns the HTTP status and JSON body. With a
 * test context first, the attempt's socket is also cut when the test ends.
 */
export function rejectedUpgrade(t: Owner, url: string, protocols?: string | string[], opts?: WebSocket.ClientOptions): Promise<Rejected>;
export function rejectedUpgrade(url: string, protocols?: string | string[], opts?: WebSocket.ClientOptions): Promise<Rejected>;
export function rejectedUpgrade(...args: [string, (string | string[])?, WebSocket.ClientOptions?] | [Owner, string, (string | string[])?, WebSocket.ClientOptions?]): Promise<Rejected> {
  const t = typeof args[0] === 'string' ? null : args[0];
  const [url, protocols = 'wiregate.v1', opts = {}] = (t === null ? args : args.slice(1)) as [string, (string | string[])?, WebSocket.ClientOptions?];
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, opts);
    if (t !== null) cleanup(t, () => ws.terminate());
    ws.on('open', () => {
      ws.terminate();
      reject(new Error('upgrade unexpectedly succeeded'));
    });
    ws.on('error', () => {});
    ws.on('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          /* plain text */
        }
        resolve({ status: res.statusCode ?? 0, body, headers: res.headers });
      });
    });
  });
}

export { once };
