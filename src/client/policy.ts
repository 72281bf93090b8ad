// Reconnect policy: the backoff formula and what a close code means to a client. Platform-neutral.
// docs/protocol.md section 6 has the same table; test/client-policy.test.ts checks the two agree.
import { CloseCode, shouldReconnect } from '../protocol/codes.js';

/** What a client does after its connection closed with a code. */
export type CloseAction = 'reconnect' | 'refresh' | 'terminal';

/**
 * 'refresh': get a new token (getToken) and reconnect; terminal without getToken, and when the token
 * it just got is refused too. 'reconnect': reconnect with backoff. 'terminal': stop; reconnecting
 * cannot help without a change (new code, new configuration). Everything but the two auth codes
 * follows the ranges of shouldReconnect (protocol/codes.ts).
 */
export function closeAction(code: number): CloseAction {
  if (code === CloseCode.TOKEN_EXPIRED || code === CloseCode.UNAUTHORIZED) return 'refresh';
  return shouldReconnect(code) ? 'reconnect' : 'terminal';
}

/** What a client does when the upgrade is refused with an HTTP status (Node only: browsers see a 1006). */
export function refusalAction(status: number): CloseAction {
  if (status === 401) return 'refresh';
  return status === 400 || status === 403 || status === 404 || status === 426 || status === 431 ? 'terminal' : 'reconnect';
}

/**
 * Delay before reconnection attempt `attempt` (0 for the first retry): full jitter applied after the
 * cap, random(0, min(maxDelay, initialDelay * 2^attempt)). Capping first keeps a herd of clients
 * spread over the whole window; jitter before the cap (Socket.IO) puts them all at the cap.
 */
export function backoffDelay(attempt: number, initialDelay = 500, maxDelay = 20_000, random: () => number = Math.random): number {
  return Math.floor(random() * Math.min(maxDelay, initialDelay * 2 ** attempt));
}

/** Milliseconds to wait from a Retry-After header (seconds or an HTTP date), or 0. At most one hour. */
export function retryAfterMs(header: string | undefined, now = Date.now()): number {
  if (header === undefined || header === '') return 0;
  const s = Number(header);
  const ms = Number.isFinite(s) ? s * 1000 : Date.parse(header) - now;
  return ms > 0 ? Math.min(ms, 3_600_000) : 0;
}

/** The `exp` of a JWT in milliseconds since the epoch, read without verifying; null if none. */
export function tokenExpiry(jwt: string): number | null {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0)));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === 'number' ? exp * 1000 : null;
  } catch {
    return null;
  }
}
