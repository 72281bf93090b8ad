// JWT authentication (jose) and topic permissions carried in token claims.
import { readFileSync } from 'node:fs';
import { createPublicKey, createSecretKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { createLocalJWKSet, decodeProtectedHeader, errors, importSPKI, jwtVerify, type JWTPayload, type JWTVerifyOptions, type JSONWebKeySet } from 'jose';
import { ConfigError } from '../config/index.js';
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
  /**
   * Resolves once the key material is loaded and usable; rejects with a ConfigError naming the
   * field (`auth.publicKey`, `auth.jwksFile`) and the reason otherwise. Loading starts when the
   * authenticator is created; every call returns the same promise. Await it before serving:
   * with unusable keys every verify() rejects with that same error.
   */
  ready(): Promise<void>;
}

/**
 * Builds a verifier; keys are imported once, starting now (see `ready()`). Throws for an unusable
 * config shape (not exactly one key source, alg none) and, as a ConfigError, for a JWKS file that
 * cannot be read or parsed; unusable key material rejects `ready()`.
 */
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
    algorithms = cfg.algorithms ?? ASYM_ALGS;
    keyPromise = loadPublicKey(cfg.publicKey, cfg.algorithms ?? PEM_ALG_GUESS);
  } else {
    const file = cfg.jwksFile!;
    const fail = (rule: string) => new ConfigError('auth.jwksFile', rule, file, '');
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw fail(`cannot read JWKS file: ${(err as Error).message}`);
    }
    let jwks: JSONWebKeySet;
    try {
      jwks = JSON.parse(text) as JSONWebKeySet;
    } catch (err) {
      throw fail(`JWKS file is not valid JSON: ${(err as Error).message}`);
    }
    if (!jwks || typeof jwks !== 'object' || !Array.isArray(jwks.keys)) throw fail('JWKS file has no "keys" array');
    // jose verifies no HMAC token against a key set (and oct keys are refused above)
    algorithms = cfg.algorithms ?? ASYM_ALGS;
    keyPromise = (async () => {
      checkJwks(jwks.keys, fail);
      try {
        return createLocalJWKSet(jwks);
      } catch (err) {
        throw fail(`JWKS file is not a JSON Web Key Set: ${(err as Error).message}`);
      }
    })();
  }
  const ready = keyPromise.then(() => undefined);
  // reported by ready() and by every verify(); never an unhandled rejection
  keyPromise.catch(() => {});
  ready.catch(() => {});

  const options: JWTVerifyOptions = {
    algorithms,
    clockTolerance: cfg.clockTolerance ?? 5,
    ...(cfg.issuer ? { issuer: cfg.issuer } : {}),
    ...(cfg.audience ? { audience: cfg.audience } : {}),
  };
  const userClaim = cfg.userClaim ?? 'sub';
  const permClaim = cfg.permissionsClaim ?? 'wg';

  return {
    ready: () => ready,
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

/** How a PEM value is shown in errors: its first line only (never key material). */
function pemLabel(pem: string): string {
  const first = pem.trim().split('\n', 1)[0].trim();
  return /^-----BEGIN [A-Z0-9 ]+-----$/.test(first) ? first : `${pem.length} characters, no PEM header`;
}

/** The node:crypto view of a public key, or why it cannot verify JWTs. */
function keyProblem(key: KeyObject): string | null {
  if (key.type !== 'public') return 'is not a public key';
  const t = key.asymmetricKeyType;
  if (t === 'rsa' || t === 'rsa-pss') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    return bits < 2048 ? `is a ${bits}-bit RSA key; JWT verification needs 2048 bits or more` : null;
  }
  if (t === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    return curve === 'prime256v1' || curve === 'secp384r1' || curve === 'secp521r1' ? null : `is an EC key on curve ${curve}; JWTs use P-256, P-384 or P-521`;
  }
  if (t === 'ed25519') return null;
  return `is a ${t} key, which cannot verify JWTs (RSA, EC P-256/P-384/P-521 or Ed25519)`;
}

/** Imports a PEM (SPKI) public key for the first algorithm it fits, after checking it is one. */
async function loadPublicKey(pem: string, algs: string[]): Promise<KeyInput> {
  const fail = (rule: string) => new ConfigError('auth.publicKey', rule, pemLabel(pem), '');
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) throw fail('is a private key; give the public key (PEM "BEGIN PUBLIC KEY", SPKI), and keep the private one secret');
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw fail(`is not a PEM public key (SPKI, "-----BEGIN PUBLIC KEY-----"): ${(err as Error).message}`);
  }
  const problem = keyProblem(key);
  if (problem !== null) throw fail(problem);
  // importSPKI needs an algorithm; try them until one fits the key type.
  let last: unknown;
  for (const alg of algs) {
    try {
      return await importSPKI(pem, alg, { extractable: false });
    } catch (err) {
      last = err;
    }
  }
  throw fail(`is not a PEM SPKI public key usable for ${algs.join(', ')}: ${(last as Error | undefined)?.message ?? 'no algorithm'}`);
}

/**
 * Checks every key of a JWKS that could be picked to verify a token (jose picks keys whose `use`
 * is absent or `sig` and whose `key_ops`, if any, include `verify`): each must be a usable public
 * key, and there must be at least one.
 */
function checkJwks(keys: unknown[], fail: (rule: string) => ConfigError): void {
  let usable = 0;
  keys.forEach((jwk, i) => {
    if (jwk === null || typeof jwk !== 'object' || Array.isArray(jwk)) throw fail(`JWKS key ${i} is not an object`);
    const k = jwk as JsonWebKey & { kid?: unknown; use?: unknown; key_ops?: unknown };
    const name = typeof k.kid === 'string' ? `JWKS key ${i} (kid ${JSON.stringify(k.kid)})` : `JWKS key ${i}`;
    if (k.use !== undefined && k.use !== 'sig') return;
    if (Array.isArray(k.key_ops) && !k.key_ops.includes('verify')) return;
    if (k.kty === 'oct') throw fail(`${name} is a symmetric (oct) key; a JWKS file holds public keys (use auth.secret for HMAC)`);
    if (k.kty !== 'RSA' && k.kty !== 'EC' && k.kty !== 'OKP') throw fail(`${name} has an unsupported kty ${JSON.stringify(k.kty)}`);
    if ('d' in k) throw fail(`${name} is a private key; a JWKS file must hold public keys only`);
    let key: KeyObject;
    try {
      key = createPublicKey({ key: k, format: 'jwk' });
    } catch (err) {
      throw fail(`${name} is not a valid ${k.kty} public key: ${(err as Error).message}`);
    }
    const problem = keyProblem(key);
    if (problem !== null) throw fail(`${name} ${problem}`);
    usable++;
  });
  if (usable === 0) throw fail('JWKS file has no key for verifying signatures');
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
