// Builds the browser bundles of the client SDK from src/client/browser.ts (esbuild, minified,
// msgpackr included through its "browser" export, src/protocol shared with the gateway):
//   dist/client/wiregate-client.mjs  ESM:  import { WiregateClient } from './wiregate-client.mjs'
//   dist/client/wiregate-client.js   IIFE: <script src="wiregate-client.js">, then new Wiregate.WiregateClient(url)
// Prints raw and gzip sizes; fails if a bundle would load a Node module. `npm run build` runs it
// after tsc (the Node entry, dist/client/index.js, comes from tsc).
import { build } from 'esbuild';
import { gzipSync } from 'node:zlib';

const common = {
  entryPoints: ['src/client/browser.ts'],
  bundle: true,
  minify: true,
  platform: 'browser',
  target: 'es2020',
  legalComments: 'none',
  write: false,
  logLevel: 'warning',
};
const outputs = [
  { format: 'esm', outfile: 'dist/client/wiregate-client.mjs' },
  { format: 'iife', globalName: 'Wiregate', outfile: 'dist/client/wiregate-client.js' },
];
const { writeFileSync, mkdirSync } = await import('node:fs');
mkdirSync('dist/client', { recursive: true });
for (const o of outputs) {
  const r = await build({ ...common, ...o });
  const bytes = r.outputFiles[0].contents;
  const text = new TextDecoder().decode(bytes);
  const nodeOnly = text.match(/\bnode:[a-z_]+|\brequire\(["'][a-z]/);
  if (nodeOnly !== null) {
    console.error(`build-client: ${o.outfile} refers to a Node module (${nodeOnly[0]})`);
    process.exit(1);
  }
  writeFileSync(o.outfile, bytes);
  const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;
  console.log(`${o.outfile}  ${kb(bytes.length)} raw, ${kb(gzipSync(bytes, { level: 9 }).length)} gzip`);
}
