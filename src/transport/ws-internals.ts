// The one place that reaches into ws internals, for the outbound fast path: writing pre-framed
// bytes straight to the socket (frame once, share across subscribers, coalesce per tick).
//
// Safe only while ws's Sender is idle (`_state === 0`, nothing being compressed or queued);
// otherwise callers fall back to the public `ws.send`, which queues in order. Checked against ws
// 8.x (lib/websocket.js setSocket, lib/sender.js); test/ws-internals.test.ts fails if a ws
// upgrade changes these fields, and `fastPathSocket` returns null (public API only) when the
// shape is not what we expect.
import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import type { WebSocket } from 'ws';

const require = createRequire(import.meta.url);
const WS_VERSION: string = (require('ws/package.json') as { version: string }).version;
/** ws major version whose internals this module was written against. */
export const SUPPORTED_WS_MAJOR = 8;
export const wsInternalsSupported = Number(WS_VERSION.split('.')[0]) === SUPPORTED_WS_MAJOR;

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
  if (!wsInternalsSupported) return null;
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
  if (!wsInternalsSupported) return 0;
  const ext = (ws as unknown as { _extensions?: Record<string, DeflateInternals> })._extensions?.['permessage-deflate'];
  const params = ext?.params;
  if (!params || params.server_no_context_takeover !== true) return 0;
  const bits = params.server_max_window_bits;
  return typeof bits === 'number' && bits >= 9 && bits <= 15 ? bits : 15;
}
