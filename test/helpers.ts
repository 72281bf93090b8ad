// Test helpers: real gateways on port 0 and real `ws` clients speaking wiregate.v1.
import { once } from 'node:events';
import WebSocket from 'ws';
import { createGateway, type CreateGatewayOptions, type Gateway } from '../src/index.js';
import { decodeFrame, encode } from '../src/protocol/messages.js';

export interface Started {
  gw: Gateway;
  port: number;
  url: string;
  http: string;
}

export async function startGateway(options: CreateGatewayOptions = {}): Promise<Started> {
  const gw = createGateway({ log: { level: 'silent' }, host: '127.0.0.1', port: 0, ...options });
  const { port } = await gw.listen();
  return { gw, port, url: `ws://127.0.0.1:${port}${gw.config.path}`, http: `http://127.0.0.1:${port}` };
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
    return this.call(4, method, payload);
  }

  /** Next delivery `[18, topic, seq, payload]`. */
  delivery(topic?: string) {
    return this.next<[number, string, number, unknown]>((m) => Array.isArray(m) && m[0] === 18 && (topic === undefined || m[1] === topic));
  }

  close(): Promise<Closed> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close();
    return this.closed;
  }
}

export async function connect(url: string, protocols: string | string[] = 'wiregate.v1', opts: WebSocket.ClientOptions = {}): Promise<Client> {
  const c = new Client(url, protocols, opts);
  await c.opened;
  return c;
}

/** Performs an upgrade that is expected to fail and returns the HTTP status and JSON body. */
export function rejectedUpgrade(url: string, protocols: string | string[] = 'wiregate.v1', opts: WebSocket.ClientOptions = {}): Promise<{ status: number; body: any; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, opts);
    ws.on('open', () => {
      ws.close();
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
