import { APP_ERROR_CODE_MIN, ErrorCode } from './protocol/codes.js';

const KNOWN = new Set<number>(Object.values(ErrorCode));

/**
 * Throw from a method handler (or an authorize hook) to send the caller an ERROR with this code
 * and message. Codes are the protocol's ErrorCode values or application codes >= 1000. Any other
 * thrown value becomes HANDLER_ERROR without its message (so internals never leak).
 */
export class ReplyError extends Error {
  override name = 'ReplyError';
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    if (!Number.isInteger(code) || (!KNOWN.has(code) && code < APP_ERROR_CODE_MIN)) {
      throw new RangeError(`ReplyError code must be a wiregate ErrorCode or an integer >= ${APP_ERROR_CODE_MIN}, got ${code}`);
    }
  }
}
