// The credentials of live connections: token expiry (closes with 4002 unless refreshed) and the
// in-band REFRESH that replaces a connection's token. Deadlines sit in one heap that a periodic
// sweep visits only where something is due.
import { CloseCode, ErrorCode } from '../protocol/codes.js';
import { encodeResult } from '../protocol/messages.js';
import { ExpiryHeap } from '../util/expiry-heap.js';
import { AuthError, createPermissionChecker, patternWithin, type Authenticator, type Identity } from './jwt.js';

/** Topic permissions derived from an identity (null: no checks, auth is off). */
export interface Permissions {
  canPublish: ((topic: string) => boolean) | null;
  canSubscribe: ((pattern: string) => boolean) | null;
}

/** What the credentials manager needs from a connection. */
export interface Credentialed {
  readonly userId: string | null;
  readonly expiresAt: number | null;
  readonly closing: boolean;
  /** Replaces the connection's identity and permissions (a successful REFRESH). */
  setIdentity(identity: Identity, permissions: Permissions): void;
  send(msg: Uint8Array): boolean;
  sendError(id: number, code: number, message: string): void;
  close(code: number, reason: string): void;
}

export function permissionsFor(identity: Identity | null, authOn: boolean): Permissions {
  if (!authOn) return NO_CHECKS;
  const subscribe = identity?.subscribe ?? [];
  return { canPublish: createPermissionChecker(identity?.publish ?? []), canSubscribe: (pattern) => patternWithin(pattern, subscribe) };
}

const NO_CHECKS: Permissions = Object.freeze({ canPublish: null, canSubscribe: null });

export class Credentials<C extends Credentialed> {
  private readonly expiries = new ExpiryHeap<C>();

  constructor(
    /** JWT verifier for REFRESH; null when JWT auth is off. */
    private readonly authenticator: Authenticator | null,
    /** Whether a connection is still open (stale heap entries are dropped). */
    private readonly isOpen: (c: C) => boolean,
  ) {}

  /** Starts watching a connection's token expiry (no-op without one). */
  track(c: C): void {
    if (c.expiresAt !== null) this.expiries.push(c.expiresAt, c);
  }

  /** A connection closed. */
  forget(c: C): void {
    if (c.expiresAt !== null) this.expiries.forget(this.isOpen);
  }

  /** Closes connections whose token expired (only those due are visited). */
  sweep(now = Date.now()): void {
    this.expiries.popDue(now, (c, at) => {
      // stale entries: the connection refreshed its token (a newer entry exists) or is gone
      if (c.expiresAt === at && !c.closing && this.isOpen(c)) c.close(CloseCode.TOKEN_EXPIRED, 'token expired');
    });
  }

  /**
   * REFRESH `[6, id, token]`: verifies the token and, for the same user, replaces the
   * connection's identity. Answers `[16, id, {expiresAt}]`: the new expiry in integer
   * milliseconds since the epoch, 0 when the token has no `exp` (the connection then no longer
   * expires).
   */
  refresh(c: C, id: number, token: string): void {
    if (this.authenticator === null) return c.sendError(id, ErrorCode.UNAUTHORIZED, 'token refresh needs JWT auth to be enabled');
    this.authenticator.verify(token).then(
      (identity) => {
        if (c.closing) return;
        if (identity.userId !== c.userId) return c.sendError(id, ErrorCode.TOKEN_INVALID, 'token is for another user');
        c.setIdentity(identity, permissionsFor(identity, true));
        this.track(c);
        c.send(encodeResult(id, { expiresAt: identity.expiresAt === null ? 0 : Math.floor(identity.expiresAt) }));
      },
      (err) => {
        if (c.closing) return;
        c.sendError(id, ErrorCode.TOKEN_INVALID, err instanceof AuthError ? `${err.code}: ${err.message}` : 'token rejected');
      },
    );
  }
}
