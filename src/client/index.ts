// The client SDK's Node entry, `wiregate/client`: WiregateClient on the `ws` package, which adds
// what browsers cannot do: the token in an Authorization header, a permessage-deflate offer
// (`compression`), and the HTTP status and Retry-After of a refused upgrade. Browsers get
// browser.ts (the "browser" export condition, and the bundles built by scripts/build-client.mjs).
import WebSocket from 'ws';
import { WiregateClient as BaseClient } from './client.js';
import { retryAfterMs } from './policy.js';
import type { ClientOptions, SocketLike } from './types.js';

export { ClientError } from './errors.js';
export { backoffDelay, closeAction, refusalAction, retryAfterMs, tokenExpiry, type CloseAction } from './policy.js';
export type * from './types.js';

export class WiregateClient extends BaseClient {
  constructor(url: string, options: ClientOptions = {}) {
    super(url, options.WebSocket === undefined ? { ...options, WebSocket } : options);
  }

  protected override createSocket(url: string, protocols: string[], token: string | undefined): SocketLike {
    if (this.options.WebSocket !== WebSocket) return super.createSocket(url, protocols, token);
    const ws = new WebSocket(url, protocols, {
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      perMessageDeflate: this.options.compression === true,
    });
    ws.binaryType = 'nodebuffer'; // a Buffer is a Uint8Array: no copy into an ArrayBuffer
    ws.on('unexpected-response', (_req, res) => {
      // the upgrade was refused: read the JSON {error} (a few hundred bytes) and the Retry-After, then abort
      const status = res.statusCode ?? 0;
      const header = res.headers['retry-after'];
      let body = '';
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        let error = '';
        try {
          error = String((JSON.parse(body) as { error?: unknown }).error ?? '');
        } catch {
          /* not JSON (431, a proxy's page) */
        }
        this.refused(ws as unknown as SocketLike, { status, retryAfter: retryAfterMs(Array.isArray(header) ? header[0] : header), error });
        ws.terminate();
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
        if (body.length > 4096) finish();
      });
      res.once('end', finish);
      res.once('close', finish);
      res.once('error', finish);
    });
    return ws as unknown as SocketLike;
  }
}
