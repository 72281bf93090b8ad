// The one place that reaches into ws internals: writing pre-framed bytes straight to the socket
// (frame once, share across subscribers, coalesce per tick), inflating inbound messages
// synchronously, and running a hook before ws writes a close frame of its own.
//
// Direct writes are safe only while ws's Sender is idle (`_state === 0`, nothing being compressed
// or queued); otherwise callers fall back to the public `ws.send`, which queues in order.
//
// ws is a caret dependency, so a ws fix reaches users without a wiregate release. The internals
// are a contract with one exact ws version at a time: each fast path is enabled only when the
// installed ws is on TESTED_WS_VERSIONS (versions the whole suite, including
// test/ws-internals.test.ts's behavioural contract tests, has passed against); on any other
// version wiregate uses ws's public API only, says so in /info and /metrics, and logs a warning at
// start. At run time every entry point also checks the shape it relies on and returns null/false
// when it is not what we expect. WIREGATE_FAST_PATHS=off turns every fast path off (CI runs the
// suite a second time that way, so the public-API path stays correct).
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { OutputLimitError, createSyncInflate, syncZlibSupported, type SyncZlib } from './zlib-sync.js';

const require = createRequire(import.meta.url);
export const WS_VERSION: string = (require('ws/package.json') as { version: string }).version;
/** Exact ws versions whose internals the fast paths were written and tested against. */
export const TESTED_WS_VERSIONS: readonly string[] = ['8.23.0'];

/** Whether each fast path may be used in this process, and why not when it may not. */
export interface FastPaths {
  /** Pre-framed writes straight to the socket, coalesced per tick (and the batch subprotocol, shared compressed frames). */
  directWrites: boolean;
  /** Inbound permessage-deflate inflated synchronously instead of on the threadpool. */
  syncInflate: boolean;
  /** A hook that runs before ws writes a close frame of its own (needed to batch for wiregate.v1.batch clients). */
  closeHook: boolean;
  /** Empty when every path is on; otherwise why some are off. */
  reason: string;
}

/** Decides the fast paths from the installed ws version and the environment (read once, at gateway construction). */
export function fastPaths(env: Record<string, string | undefined> = process.env, wsVersion = WS_VERSION): FastPaths {
  const off = env.WIREGATE_FAST_PATHS === 'off' || env.WIREGATE_NO_FAST_PATH === '1';
  if (off) return { directWrites: false, syncInflate: false, closeHook: false, reason: 'disabled by WIREGATE_FAST_PATHS=off' };
  if (!TESTED_WS_VERSIONS.includes(wsVersion)) {
    return { directWrites: false, syncInflate: false, closeHook: false, reason: `ws ${wsVersion} is not one of the versions the fast paths are tested against (${TESTED_WS_VERSIONS.join(', ')}): using ws's public API only` };
  }
  if (!syncZlibSupported) return { directWrites: true, syncInflate: false, closeHook: true, reason: "this Node's zlib internals are not the ones synchronous inflate expects" };
  return { directWrites: true, syncInflate: true, closeHook: true, reason: '' };
}

/** Counts synchronous inflates (read by tests that check the fast path has not been silently lost). */
export const inflateStats = { sync: 0 };

interface SenderInternals {
  _state: number;
  _queue: unknown[];
}
interface WsInternals {
  _socket: Socket | null;
  _sender: SenderInternals | null;
}

/** The raw socket of an open WebSocket when the fast path can be used, else null. */
export function fastPathSocket(ws: WebSocket): Socket | null {
  const w = ws as unknown as WsInternals;
  const sender = w._sender;
  if (!(w._socket instanceof Socket) || sender === null || typeof sender !== 'object') return null;
  if (typeof sender._state !== 'number' || !Array.isArray(sender._queue)) return null;
  return w._socket;
}

/** True when ws's Sender has nothing in flight, so a direct socket write keeps message order. */
export function senderIdle(ws: WebSocket): boolean {
  const s = (ws as unknown as WsInternals)._sender!;
  return s._state === 0 && s._queue.length === 0;
}

// ---- the receiver's close ---------------------------------------------------------------------
//
// When the peer's close frame arrives (Receiver 'conclude') or its data breaks the protocol
// (Receiver 'error'), ws writes its own close frame straight away (lib/websocket.js
// receiverOnConclude / receiverOnError call websocket.close). Whatever a caller holds back for the
// end of the tick must be written before it: a listener prepended to ws's own runs first.

export interface CloseAware {
  beforeClose(): void;
}
const kOwner = Symbol('wiregate.owner');
type ClosingReceiver = EventEmitter & { [kOwner]?: CloseAware };

function receiverClosing(this: ClosingReceiver): void {
  this[kOwner]!.beforeClose();
}

/** Calls owner.beforeClose() before ws answers a close frame or an error itself; false if ws's shape is unknown. */
export function beforeReceiverClose(ws: WebSocket, owner: CloseAware): boolean {
  const r = (ws as unknown as { _receiver?: unknown })._receiver;
  if (!(r instanceof EventEmitter) || r.listenerCount('conclude') !== 1 || r.listenerCount('error') !== 1) return false;
  const receiver = r as ClosingReceiver;
  receiver[kOwner] = owner;
  receiver.prependListener('conclude', receiverClosing);
  receiver.prependListener('error', receiverClosing);
  return true;
}

interface DeflateInternals {
  params: Record<string, unknown> | null;
}

/**
 * The negotiated permessage-deflate parameters when the server compressor starts fresh for every
 * message (server_no_context_takeover): then wiregate may compress outbound messages itself and
 * share one compressed frame among subscribers. Returns the server window bits, or 0 when
 * wiregate must leave compression to ws (context takeover, or deflate not negotiated).
 */
export function sharedDeflateWindowBits(ws: WebSocket): number {
  const ext = (ws as unknown as { _extensions?: Record<string, DeflateInternals> })._extensions?.['permessage-deflate'];
  const params = ext?.params;
  if (!params || params.server_no_context_takeover !== true) return 0;
  const bits = params.server_max_window_bits;
  if (bits === undefined || bits === true) return 15;
  // a window wiregate's compressor cannot honour (8: zlib's raw deflate starts at 9): leave it to ws
  return typeof bits === 'number' && bits >= 9 && bits <= 15 ? bits : 0;
}

// ---- inbound permessage-deflate, synchronously ------------------------------------------------
//
// ws inflates every compressed message through an asynchronous zlib stream (a threadpool round
// trip per message, at most `concurrencyLimit` at a time): that, not zlib itself, bounded echo
// with compression. Here the Receiver's `decompress` step is replaced, per connection, with a
// synchronous inflate. ws 8 lib/receiver.js calls `decompress(data, cb)` from its parsing loop
// (getData, with `_state` = INFLATING) and expects it to append the inflated bytes to
// `_fragments`, count them in `_messageLength`, then call `dataMessage(cb)`; the async original
// then restarts the loop itself. Done synchronously, the loop that called us simply continues with
// the state dataMessage left (GET_INFO, or DEFER_EVENT which ends the loop until ws's deferred
// emit restarts it), so `cb` is called exactly once, by that loop. Errors go through the
// Receiver's own createError, with ws's status codes (1007 bad data, 1009 too large).
//
// Without client context takeover every message inflates on its own: one process-wide inflater,
// reset per message, and no zlib memory per connection at all. With context takeover each
// connection gets its own inflater, created on its first compressed message.

interface ReceiverInternals {
  decompress: (data: Buffer, cb: (err?: Error) => void) => void;
  dataMessage: (cb: (err?: Error) => void) => void;
  createError: (ctor: ErrorConstructor | RangeErrorConstructor, message: string, prefix: boolean, status: number, code: string) => Error;
  _fin: boolean;
  _fragments: Buffer[];
  _messageLength: number;
  _maxPayload: number;
}

const shared = new Map<number, SyncZlib | null>();

function sharedInflater(bits: number): SyncZlib | null {
  let z = shared.get(bits);
  if (z === undefined || (z !== null && !z.usable)) shared.set(bits, (z = createSyncInflate(bits)));
  return z;
}

function clientWindowBits(v: unknown): number {
  return typeof v === 'number' && v >= 8 && v <= 15 ? Math.max(v, 9) : 15;
}

/**
 * Makes this connection inflate inbound messages synchronously. Returns a function that releases
 * the connection's zlib state (call it on close), or null when nothing was installed (no deflate
 * negotiated, or the ws/Node internals are not what this code expects: ws's own path stays).
 */
export function installSyncInflate(ws: WebSocket): (() => void) | null {
  if (!syncZlibSupported) return null;
  const params = (ws as unknown as { _extensions?: Record<string, DeflateInternals> })._extensions?.['permessage-deflate']?.params;
  const r = (ws as unknown as { _receiver?: ReceiverInternals })._receiver;
  if (!params || !r) return null;
  if (typeof r.decompress !== 'function' || typeof r.dataMessage !== 'function' || typeof r.createError !== 'function') return null;
  if (!Array.isArray(r._fragments) || typeof r._messageLength !== 'number' || typeof r._fin !== 'boolean') return null;
  const bits = clientWindowBits(params.client_max_window_bits);
  const contextFree = params.client_no_context_takeover === true;
  if (contextFree && sharedInflater(bits) === null) return null;
  let own: SyncZlib | null = null; // context takeover: this connection's inflater
  let pending: Buffer[] | null = null; // context-free: compressed fragments of the current message

  r.decompress = function decompress(this: ReceiverInternals, data: Buffer, cb: (err?: Error) => void): void {
    const fin = this._fin;
    const limit = this._maxPayload > 0 ? this._maxPayload - this._messageLength : Infinity;
    let out: Buffer;
    try {
      if (contextFree) {
        // the shared inflater serves every connection, so a fragmented message is inflated whole
        // at its last fragment (ws has already bounded the compressed total by maxPayload)
        if (!fin) {
          (pending ??= []).push(data);
          this.dataMessage(cb);
          return;
        }
        const z = sharedInflater(bits)!;
        z.reset();
        if (pending !== null) {
          const parts = pending;
          pending = null;
          parts.push(data);
          out = z.write(Buffer.concat(parts), true, limit);
        } else out = z.write(data, true, limit);
      } else {
        own ??= createSyncInflate(bits)!;
        out = own.write(data, fin, limit);
      }
    } catch (err) {
      pending = null;
      if (err instanceof OutputLimitError) cb(this.createError(RangeError, 'Max payload size exceeded', false, 1009, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH'));
      else cb(this.createError(Error, 'invalid compressed data', false, 1007, 'WS_ERR_INVALID_COMPRESSED_DATA'));
      return;
    }
    inflateStats.sync++;
    if (out.length > 0) {
      this._messageLength += out.length;
      this._fragments.push(out);
    }
    this.dataMessage(cb);
  };
  return () => {
    pending = null;
    if (own !== null) {
      own.close();
      own = null;
    }
  };
}
