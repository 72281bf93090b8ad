// permessage-deflate negotiation (RFC 7692), done by wiregate instead of by ws.
//
// ws 8 (lib/permessage-deflate.js acceptAsServer) fails the whole handshake with HTTP 400 when no
// offer fits its options exactly: a numeric `clientMaxWindowBits` refuses every offer without
// `client_max_window_bits` (gorilla/websocket, many embedded stacks, a bare `permessage-deflate`), a
// numeric `serverMaxWindowBits` refuses an offer asking for a smaller server window, and
// `serverNoContextTakeover: false` refuses an offer asking for server_no_context_takeover; unknown
// parameters or values throw too. RFC 7692 lets a server decline an offer it cannot honour and go
// on without compression; it never requires failing the handshake.
//
// So ws gets options that accept any well-formed offer as it is (no window sizes, no `false`), and
// the request's Sec-WebSocket-Extensions header is replaced, before ws reads it, by one normalised
// offer: the first permessage-deflate offer wiregate can honour, rewritten to carry exactly the
// parameters of the answer (ws echoes the accepted offer's parameters in its 101 response and runs
// its compressor and inflater from them, and wiregate's own compressed frames and synchronous
// inflater read the same parameters, src/transport/ws-internals.ts). No acceptable offer: the header
// is removed and the connection continues uncompressed. A header that is not syntactically valid is
// handed to ws unchanged, which answers 400 as before.
import type { IncomingHttpHeaders } from 'node:http';
import * as wsModule from 'ws';
import type { PerMessageDeflateOptions } from 'ws';
import type { CompressionConfig } from '../config/index.js';

type ParamValue = string | true;
/** One offer: parameter name -> every value given for it, in order (ws's parsed form). */
type Params = Record<string, ParamValue[]>;

interface ExtensionCodec {
  parse(header: string): Record<string, Params[]>;
  format(extensions: Record<string, Record<string, ParamValue | number> | Array<Record<string, ParamValue | number>>>): string;
}

// ws's own Sec-WebSocket-Extensions parser and formatter: exported by the package's entry points
// (`extension`) but not by its type declarations.
const { extension } = wsModule as unknown as { extension: ExtensionCodec };

export const PERMESSAGE_DEFLATE = 'permessage-deflate';

/** The compression settings negotiation depends on (a subset of the resolved `compression` config). */
export type DeflateNegotiation = Pick<CompressionConfig, 'serverMaxWindowBits' | 'clientMaxWindowBits' | 'serverNoContextTakeover' | 'clientNoContextTakeover'>;

/** The parameters wiregate answers an accepted offer with (the shape of ws's negotiated `params`). */
export interface DeflateAnswer {
  server_no_context_takeover?: true;
  client_no_context_takeover?: true;
  server_max_window_bits?: number;
  client_max_window_bits?: number;
}

/**
 * ws's `perMessageDeflate` option for the WebSocketServer (false when compression is off). The
 * window sizes are left unset and the context-takeover flags are never `false`, so ws accepts the
 * normalised offer from {@link negotiateDeflateOffer} as it is instead of refusing the handshake;
 * the configured windows and flags reach the connection through that offer.
 */
export function perMessageDeflateOptions(c: CompressionConfig): PerMessageDeflateOptions | false {
  if (!c.enabled) return false;
  return {
    threshold: c.threshold,
    concurrencyLimit: c.concurrencyLimit,
    // `true` only: ws adds the parameter to every answer (the normalised offer already carries it);
    // `false` would make ws refuse clients that ask for server_no_context_takeover.
    serverNoContextTakeover: c.serverNoContextTakeover ? true : undefined,
    clientNoContextTakeover: c.clientNoContextTakeover ? true : undefined,
    zlibDeflateOptions: { level: c.level, memLevel: c.memLevel },
    zlibInflateOptions: { chunkSize: 16 * 1024 },
  };
}

/** A window-bits value of an offer: an integer 8..15, else null (the offer is declined). */
function windowBits(v: ParamValue): number | null {
  if (v === true || !/^[0-9]{1,2}$/.test(v)) return null;
  const n = Number(v);
  return n >= 8 && n <= 15 ? n : null;
}

/**
 * The answer to one permessage-deflate offer, or null when wiregate declines it (RFC 7692 section
 * 5: unknown parameter, invalid value, a parameter given twice, or a configuration the server does
 * not support).
 */
export function answerOffer(offer: Params, c: DeflateNegotiation): DeflateAnswer | null {
  let serverNoContext = false;
  let clientNoContext = false;
  let serverBits: number | undefined;
  let clientBits: number | true | undefined;
  for (const name of Object.keys(offer)) {
    const values = offer[name];
    if (values.length !== 1) return null;
    const v = values[0];
    switch (name) {
      case 'server_no_context_takeover':
        if (v !== true) return null;
        serverNoContext = true;
        break;
      case 'client_no_context_takeover':
        if (v !== true) return null;
        clientNoContext = true;
        break;
      case 'server_max_window_bits': {
        const n = windowBits(v);
        if (n === null) return null;
        serverBits = n;
        break;
      }
      case 'client_max_window_bits':
        if (v === true) clientBits = true;
        else {
          const n = windowBits(v);
          if (n === null) return null;
          clientBits = n;
        }
        break;
      default:
        return null;
    }
  }
  // zlib has no 256-byte deflate window (it uses 512), and wiregate's shared compressed frames are
  // built for 9..15: a client that can only inflate an 8-bit window is declined.
  if (serverBits === 8) return null;
  const answer: DeflateAnswer = {};
  // Asked for by the client (accepting the offer means honouring it) or configured.
  if (serverNoContext || c.serverNoContextTakeover) answer.server_no_context_takeover = true;
  if (clientNoContext || c.clientNoContextTakeover) answer.client_no_context_takeover = true;
  // The server window: the configured one, or the client's limit if smaller. Stated whenever it is
  // not the protocol default of 15 (a server may state it even if the offer did not ask), and
  // always when the offer asked for it (accepting that parameter means answering it).
  const server = Math.min(c.serverMaxWindowBits, serverBits ?? 15);
  if (serverBits !== undefined || server < 15) answer.server_max_window_bits = server;
  // The client window only when the offer says the client supports the parameter (section
  // 7.1.2.2): the configured one, or the client's own hint if smaller. Without it the client may
  // use up to 15 bits and wiregate inflates with 15.
  if (clientBits !== undefined) answer.client_max_window_bits = Math.min(c.clientMaxWindowBits, clientBits === true ? 15 : clientBits);
  return answer;
}

/**
 * The Sec-WebSocket-Extensions value to hand to ws for a request's header: one permessage-deflate
 * offer whose parameters are exactly the answer (the first offer wiregate accepts, see
 * {@link answerOffer}); undefined to decline compression (no permessage-deflate offer, or none
 * acceptable; other extensions are never accepted); the header unchanged when it cannot be parsed
 * (ws then answers 400).
 */
export function negotiateDeflateOffer(header: string | undefined, c: DeflateNegotiation): string | undefined {
  if (header === undefined) return undefined;
  let offers: Record<string, Params[]>;
  try {
    offers = extension.parse(header);
  } catch {
    return header;
  }
  const list = Object.prototype.hasOwnProperty.call(offers, PERMESSAGE_DEFLATE) ? offers[PERMESSAGE_DEFLATE] : [];
  for (const offer of list) {
    const answer = answerOffer(offer, c);
    if (answer !== null) return extension.format({ [PERMESSAGE_DEFLATE]: answer as Record<string, ParamValue | number> });
  }
  return undefined;
}

/**
 * Rewrites (or removes) `headers['sec-websocket-extensions']` in place so that ws negotiates what
 * {@link negotiateDeflateOffer} decided. Does nothing when compression is off (ws then ignores the
 * header). Call it right before `WebSocketServer.handleUpgrade`.
 */
export function normaliseDeflateOffer(headers: IncomingHttpHeaders, c: CompressionConfig): void {
  if (!c.enabled) return;
  const value = negotiateDeflateOffer(headers['sec-websocket-extensions'], c);
  if (value === undefined) delete headers['sec-websocket-extensions'];
  else headers['sec-websocket-extensions'] = value;
}
