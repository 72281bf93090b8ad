import { createRequire } from 'node:module';
import * as buffer from 'node:buffer';
import * as http from 'node:http';
import type { GatewayConfig } from './config/index.js';
import { SUBPROTOCOL, SUBPROTOCOL_BATCH } from './protocol/messages.js';

const require = createRequire(import.meta.url);

export interface RuntimeInfo {
  wiregate: string;
  node: string;
  ws: string;
  /** How ws masks/unmasks frames, in the order ws itself picks. */
  masking: string;
  /** How ws validates UTF-8 (text frames and close reasons). */
  utf8Validation: string;
  msgpackrNative: boolean;
  subprotocols: string[];
  compression: GatewayConfig['compression'];
}

function version(pkg: string): string {
  try {
    return (require(`${pkg}/package.json`) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** Mirrors ws's own choice in lib/buffer-util.js and lib/validation.js (ws 8.x). */
export function nativeHelpers(): { masking: string; utf8Validation: string } {
  let masking = 'JavaScript (ws built-in)';
  if (typeof (http as unknown as { websocketMask?: unknown }).websocketMask === 'function') masking = "node:http websocketMask (Node built-in, frames >= 24 bytes)";
  else if (!process.env.WS_NO_BUFFER_UTIL) {
    try {
      require('bufferutil');
      masking = `bufferutil ${version('bufferutil')} (native, frames >= 48 bytes)`;
    } catch {
      /* not installed */
    }
  }
  let utf8Validation = 'JavaScript (ws built-in)';
  if (typeof (buffer as unknown as { isUtf8?: unknown }).isUtf8 === 'function') {
    utf8Validation = 'node:buffer isUtf8 (Node built-in, inputs >= 24 bytes); utf-8-validate is installed but not used by ws on this Node';
  } else if (!process.env.WS_NO_UTF_8_VALIDATE) {
    try {
      require('utf-8-validate');
      utf8Validation = `utf-8-validate ${version('utf-8-validate')} (native)`;
    } catch {
      /* not installed */
    }
  }
  return { masking, utf8Validation };
}

let msgpackrNative = false;
try {
  // msgpackr-extract is optional: msgpackr uses it for faster string decoding when it loads.
  require('msgpackr-extract');
  msgpackrNative = true;
} catch {
  msgpackrNative = false;
}

export function runtimeInfo(config: GatewayConfig): RuntimeInfo {
  return {
    wiregate: (require('../package.json') as { version: string }).version,
    node: process.version,
    ws: version('ws'),
    ...nativeHelpers(),
    msgpackrNative,
    subprotocols: [SUBPROTOCOL, SUBPROTOCOL_BATCH],
    compression: config.compression,
  };
}
