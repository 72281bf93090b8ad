// JWT authentication (jose) and topic permissions carried in token claims.
import { readFileSync } from 'node:fs';
import { createSecretKey, type KeyObject } from 'node:crypto';
import { createLocalJWKSet, decodeProtectedHeader, errors, importSPKI, jwtVerify, type JWTPayload, type JWTVerifyOptions, type JSONWebKeySet } from 'jose';
import { topicError, topicMatches } from '../protocol/topic.js';

export interface AuthConfig {
  enabled: boolean;
  /** HS256/HS384/HS512 shared secret. */
  secret?: string;
  /** PEM (SPKI) public key for RS*, PS*, ES* or EdDSA tokens. */
  publicKey?: string;
  /** Path of a JWKS JSON file ({keys: [...]}); keys selected by `kid`. */
  jwksFile?: string;
  /** Allowed algorithms; default derived from the key type. `none` is never allowed. */
  algorithms?: string[];
  issuer?: string;
  audience?: string;
  /** Seconds of clock skew tolerated for exp/nbf (default 5). */
  clockTolerance?: number;
  /** Claim holding the user id (default `sub`). */
  userClaim?: string;
  /** Claim holding `{ pub?: string[], sub?: string[] }` topic patterns (default `wg`). */
  permissionsClaim?: string;
}

export interface Identity {
  userId: string;
  /** Topic patterns this user may publish to. */
  publish: string[];
  /** Topic patterns this user may subscribe to. */
  subscribe: string[];
  /** Expiry (ms since epoch) from `exp`, or null. */
  expiresAt: number | null;
  claims: Record<string, unknown>;
}

export type AuthErrorCode =
  | 'TOKEN_MISSING'
  | 'TOKEN_MALFORMED'
  | 'TOKEN_ALG_NOT_ALLOWED'
  | 'TOKEN_SIGNATURE_INVALID'
  | 'TOKEN_EXPIRED'
  | 'TOKEN_NOT_YET_VALID'
  | 'TOKEN_CLAIM_INVALID';

/** A token was refused. `code` is stable and sent to the client in the HTTP 401 body. */
export class AuthError extends Error {
  override name = 'AuthError';
  readonly status = 401;
  constructor(
    readonly code: AuthErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const HMAC_ALGS = ['HS256', 'HS384', 'HS512'];
const ASYM_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const PEM_ALG_GUESS = ['RS256', 'ES256', 'PS256', 'RS384', 'RS512', 'ES384', 'ES512', 'PS384', 'PS512', 'EdDSA'];

type KeyInput = KeyObject | Awaited<ReturnType<typeof importSPKI>> | ReturnType<typeof createLocalJWKSet>;

export interface Authenticator {
  verify(token: string): Promise<Identity>;
}

/** Builds a verifier; keys are imported once. Throws a plain Error for an unusable config. */
export function createAuthenticator(cfg: AuthConfig): Authenticator {
  const sources = [cfg.secret, cfg.publicKey, cfg.jwksFile].filter((x) => x !== undefined && x !== '');
  if (sources.length !== 1) throw new Error('auth: set exactly one of secret, publicKey, jwksFile');
  if (cfg.algorithms?.some((a) => a.toLowerCase() === 'none')) throw new Error("auth: algorithm 'none' is never allowed");

  let algorithms: string[];
  let keyPromise: Promise<KeyInput>;
  if (cfg.secret) {
    algorithms = cfg.algorithms ?? HMAC_ALGS;
    keyPromise = Promise.resolve(createSecretKey(Buffer.from(cfg.secret, 'utf8')));
  } else if (cfg.publicKey) {
    const pem = cfg.publicKey;
    algorithms = cfg.algorithms ?? ASYM_ALGS;
    // importSPKI needs an algorithm; try them until one fits the key type.
    keyPromise = (async () => {
      for (const alg of cfg.algorithms ?? PEM_ALG_GUESS) {
        try {
          return await importSPKI(pem, alg, { extractable: false });
        } catch {
          /* try the next one */
        }
      }
      throw new Error('auth: publicKey is not a PEM SPKI public key usable for JWT verification');
    })();
  } else {
    let jwks: JSONWebKeySet;
    try {
      jwks = JSON.parse(readFileSync(cfg.jwksFile!, 'utf8')) as JSONWebKeySet;
    } catch (err) {
      throw new Error(`auth: cannot read JWKS file ${cfg.jwksFile}: ${(err as Error).message}`);
    }
    if (!jwks || !Array.isArray(jwks.keys)) throw new Error(`auth: JWKS file ${cfg.jwksFile} has no "keys" array`);
    algorithms = cfg.algorithms ?? ASYM_ALGS.concat(HMAC_ALGS);
    keyPromise = Promise.resolve(createLocalJWKSet(jwks));
  }
  keyPromise.catch(() => {}); // surfaced on first verify

  const options: JWTVerifyOptions = {
    algorithms,
    clockTolerance: cfg.clockTolerance ?? 5,
    ...(cfg.issuer ? { issuer: cfg.issuer } : {}),
    ...(cfg.audience ? { audience: cfg.audience } : {}),
  };
  const userClaim = cfg.userClaim ?? 'sub';
  const permClaim = cfg.permissionsClaim ?? 'wg';

  return {
    async verify(token: string): Promise<Identity> {
      if (typeof token !== 'string' || token.length === 0) throw new AuthError('TOKEN_MISSING', 'no token');
      let header;
      try {
        header = decodeProtectedHeader(token);
      } catch {
        throw new AuthError('TOKEN_MALFORMED', 'token is not a JWT');
      }
      if (typeof header.alg !== 'string' || header.alg.toLowerCase() === 'none') {
        throw new AuthError('TOKEN_ALG_NOT_ALLOWED', 'unsigned tokens (alg none) are not accepted');
      }
      if (!algorithms.includes(header.alg)) throw new AuthError('TOKEN_ALG_NOT_ALLOWED', `algorithm ${header.alg} is not allowed`);
      const key = await keyPromise;
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, key as Parameters<typeof jwtVerify>[1], options));
      } catch (err) {
        throw mapJoseError(err);
      }
      return identityFrom(payload, userClaim, permClaim);
    },
  };
}

function mapJoseError(err: unknown): AuthError {
  if (err instanceof errors.JWTExpired) return new AuthError('TOKEN_EXPIRED', 'token expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return new AuthError('TOKEN_NOT_YET_VALID', 'token not valid yet (nbf)');
    return new AuthError('TOKEN_CLAIM_INVALID', `claim ${err.claim} invalid: ${err.reason}`);
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return new AuthError('TOKEN_SIGNATURE_INVALID', 'signature verification failed');
  if (err instanceof errors.JOSEAlgNotAllowed) return new AuthError('TOKEN_ALG_NOT_ALLOWED', 'algorithm not allowed');
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
    return new AuthError('TOKEN_SIGNATURE_INVALID', 'no key in the JWKS verifies this token');
  }
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid || err instanceof errors.JOSENotSupported) {
    return new AuthError('TOKEN_MALFORMED', 'token is malformed');
  }
  if (err instanceof TypeError) return new AuthError('TOKEN_ALG_NOT_ALLOWED', 'token algorithm does not match the key');
  return new AuthError('TOKEN_MALFORMED', 'token could not be verified');
}

function patternList(v: unknown, field: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((p) => typeof p !== 'string')) throw new AuthError('TOKEN_CLAIM_INVALID', `permission ${field} must be a list of topic patterns`);
  for (const p of v as string[]) {
    const e = topicError(p, true);
    if (e !== null) throw new AuthError('TOKEN_CLAIM_INVALID', `permission ${field} has an invalid pattern ${JSON.stringify(p)}: ${e}`);
  }
  return v as string[];
}

function identityFrom(payload: JWTPayload, userClaim: string, permClaim: string): Identity {
  const user = (payload as Record<string, unknown>)[userClaim];
  if (typeof user !== 'string' || user.length === 0 || user.length > 256) throw new AuthError('TOKEN_CLAIM_INVALID', `claim ${userClaim} (user id) missing`);
  const perms = (payload as Record<string, unknown>)[permClaim];
  let publish: string[] = [];
  let subscribe: string[] = [];
  if (perms !== undefined) {
    if (perms === null || typeof perms !== 'object' || Array.isArray(perms)) throw new AuthError('TOKEN_CLAIM_INVALID', `claim ${permClaim} must be an object {pub, sub}`);
    publish = patternList((perms as Record<string, unknown>).pub, `${permClaim}.pub`);
    subscribe = patternList((perms as Record<string, unknown>).sub, `${permClaim}.sub`);
  }
  return {
    userId: user,
    publish,
    subscribe,
    expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : null,
    claims: payload as Record<string, unknown>,
  };
}

/**
 * Token from `Authorization: Bearer`, then `?token=`, then a `bearer.<token>` entry of
 * Sec-WebSocket-Protocol (browsers cannot set headers). Null when there is none.
 */
export function extractToken(req: { headers: Record<string, string | string[] | undefined>; url?: string }): string | null {
  const auth = req.headers.authorization;
  const a = Array.isArray(auth) ? auth[0] : auth;
  if (a) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(a);
    if (m) return m[1];
  }
  const url = req.url ?? '';
  const q = url.indexOf('?');
  if (q !== -1) {
    const t = new URLSearchParams(url.slice(q + 1)).get('token');
    if (t) return t;
  }
  const proto = req.headers['sec-websocket-protocol'];
  const p = Array.isArray(proto) ? proto.join(',') : proto;
  if (p) {
    for (const entry of p.split(',')) {
      const e = entry.trim();
      if (e.startsWith('bearer.') && e.length > 7) return e.slice(7);
    }
  }
  return null;
}

/** Compiles allowed publish patterns into a matcher for concrete topics (exact ones in a Set). */
export function createPermissionChecker(patterns: string[]): (topic: string) => boolean {
  if (patterns.length === 0) return () => false;
  const exact = new Set<string>();
  const wild: string[] = [];
  for (const p of patterns) {
    if (p.includes('+') || p.includes('#')) wild.push(p);
    else exact.add(p);
  }
  if (wild.includes('#')) return () => true;
  return (topic) => {
    if (exact.has(topic)) return true;
    for (const p of wild) if (topicMatches(p, topic)) return true;
    return false;
  };
}

/**
 * Whether every topic matched by `requested` (a subscription pattern) is also matched by one
 * of the `allowed` patterns.
 */
export function patternWithin(requested: string, allowed: string[]): boolean {
  const r = requested.split('/');
  for (const a of allowed) if (covers(a.split('/'), r)) return true;
  return false;
}

function covers(a: string[], r: string[]): boolean {
  for (let i = 0; i < a.length; i++) {
    const seg = a[i];
    if (seg === '#') return true; // a's remainder matches anything, including r's level i onwards
    if (i >= r.length) return false; // r ends (r matches shorter topics than a requires)
    const rs = r[i];
    if (rs === '#') return false; // r matches arbitrarily deep topics; a does not
    if (seg === '+') continue; // any single level (r's literal or '+') is covered
    if (rs === '+' || rs !== seg) return false;
  }
  // a exhausted: r must end here too (r's trailing '#' would also match deeper topics)
  return r.length === a.length;
}
