// The demo page (config `demo`, off by default): GET /demo and its static files. Everything is read
// once, when the gateway is built; the page talks to the gateway only through its WebSocket
// endpoint, as any other client, so it adds no capability (docs/security.md, "The demo page").
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';

/** The URL path of the page; its files are under `${DEMO_PATH}/`. */
export const DEMO_PATH = '/demo';

interface Asset {
  type: string;
  body: Buffer;
}

export interface DemoOptions {
  /** The WebSocket path (config `path`), written into the page. */
  wsPath: string;
  /** Whether upgrades need a token: the page then waits for one instead of connecting at once. */
  authRequired: boolean;
  /** Told once, at start, when the demo cannot be served. */
  warn?: (message: string) => void;
}

// From src/http (tsx) and from dist/http (built) alike: the page's own files live in src/demo, the
// browser bundle of the client in dist/client (`npm run build`).
const PAGE_DIRS = ['../demo/', '../../src/demo/'];
const BUNDLE_FILES = ['../client/wiregate-client.js', '../../dist/client/wiregate-client.js'];

function readFirst(candidates: string[], name = ''): Buffer | null {
  for (const c of candidates) {
    try {
      return readFileSync(fileURLToPath(new URL(c + name, import.meta.url)));
    } catch {
      /* next candidate */
    }
  }
  return null;
}

const FILES: ReadonlySet<string> = new Set([DEMO_PATH, ...['demo.css', 'demo.js', 'wiregate-client.js'].map((f) => `${DEMO_PATH}/${f}`)]);

const escapeAttr = (s: string) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

const HEADERS = {
  'Cache-Control': 'no-cache',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

/**
 * The page has no inline script or style, so the policy forbids both. The WebSocket goes to the
 * page's own host: 'self' covers ws: / wss: on it in current browsers, the explicit sources (from
 * the Host the browser sent, characters checked) cover older ones.
 */
function contentSecurityPolicy(req: IncomingMessage): string {
  const host = req.headers.host;
  const ws = host !== undefined && /^[A-Za-z0-9.\-:[\]]{1,300}$/.test(host) ? ` ws://${host} wss://${host}` : '';
  return `default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'${ws}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;
}

/**
 * Builds the demo route: a function that answers the request and returns true when the path is the
 * page or one of its files, false otherwise. A missing client bundle (or missing page files in an
 * installation without src/demo) turns every demo path into a 500 that says what to do.
 */
export function createDemoRoute(opts: DemoOptions): (path: string, req: IncomingMessage, res: ServerResponse) => boolean {
  const assets = new Map<string, Asset>();
  const problems: string[] = [];
  const page = readFirst(PAGE_DIRS, 'index.html');
  const css = readFirst(PAGE_DIRS, 'demo.css');
  const js = readFirst(PAGE_DIRS, 'demo.js');
  const bundle = readFirst(BUNDLE_FILES);
  if (page === null || css === null || js === null) problems.push('the demo page files (src/demo/) are not part of this installation; run wiregate from a source checkout');
  if (bundle === null) problems.push('the browser client bundle dist/client/wiregate-client.js is missing: run `npm run build`, then restart the gateway');
  if (page !== null) {
    const html = page
      .toString('utf8')
      .replace('{{WS_PATH}}', escapeAttr(opts.wsPath))
      .replace('{{AUTH}}', opts.authRequired ? 'required' : 'off');
    assets.set(DEMO_PATH, { type: 'text/html; charset=utf-8', body: Buffer.from(html) });
  }
  if (css !== null) assets.set(`${DEMO_PATH}/demo.css`, { type: 'text/css; charset=utf-8', body: css });
  if (js !== null) assets.set(`${DEMO_PATH}/demo.js`, { type: 'text/javascript; charset=utf-8', body: js });
  if (bundle !== null) assets.set(`${DEMO_PATH}/wiregate-client.js`, { type: 'text/javascript; charset=utf-8', body: bundle });
  const failure = problems.length > 0 ? Buffer.from(`wiregate demo unavailable: ${problems.join('; ')}\n`) : null;
  if (failure !== null) opts.warn?.(`demo is on but unavailable (GET ${DEMO_PATH} answers 500): ${problems.join('; ')}`);

  return (path, req, res) => {
    if (path !== DEMO_PATH && !path.startsWith(`${DEMO_PATH}/`)) return false;
    if (path === `${DEMO_PATH}/`) {
      // relative links in the page resolve against /demo, not /demo/
      res.writeHead(308, { Location: DEMO_PATH, 'Content-Length': 0 });
      res.end();
      return true;
    }
    const asset = assets.get(path);
    if (failure !== null && FILES.has(path)) {
      res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': failure.length, 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : failure);
      return true;
    }
    if (asset === undefined) {
      const body = Buffer.from('not found\n');
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': body.length });
      res.end(body);
      return true;
    }
    res.writeHead(200, { 'Content-Type': asset.type, 'Content-Length': asset.body.length, ...HEADERS, 'Content-Security-Policy': contentSecurityPolicy(req) });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
    return true;
  };
}
