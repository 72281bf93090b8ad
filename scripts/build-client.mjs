// Builds the browser bundles of the client SDK from src/client/browser.ts (esbuild, minified,
// msgpackr included through its "browser" export, src/protocol shared with the gateway):
//   dist/client/wiregate-client.mjs  ESM:  import { WiregateClient } from './wiregate-client.mjs'
//   dist/client/wiregate-client.js   IIFE: <script src="wiregate-client.js">, then new Wiregate.WiregateClient(url)
// Prints raw and gzip sizes, and fails if a bundle would load a Node module. `npm run build` runs
// it after tsc (the Node entry, dist/client/index.js, comes from tsc); test/client-bundle.test.ts
// builds the same bundles in memory through clientBundles().
import { build } from 'esbuild';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = fileURLToPath(new URL('..', import.meta.url));
const common = {
  absWorkingDir: root,
  entryPoints: ['src/client/browser.ts'],
  bundle: true,
  minify: true,
  platform: 'browser',
  target: 'es2020',
  legalComments: 'none',
  write: false,
  logLevel: 'warning',
};
const OUTPUTS = [
  { format: 'esm', outfile: 'dist/client/wiregate-client.mjs' },
  { format: 'iife', globalName: 'Wiregate', outfile: 'dist/client/wiregate-client.js' },
];

/** Builds both bundles in memory: [{ outfile, format, bytes, gzip }]. Throws if one refers to a Node module. */
export async function clientBundles() {
  const out = [];
  for (const o of OUTPUTS) {
    const r = await build({ ...common, ...o });
    const bytes = r.outputFiles[0].contents;
    const nodeOnly = new TextDecoder().decode(bytes).match(/\bnode:[a-z_]+|\brequire\(["'][a-z]/);
    if (nodeOnly !== null) throw new Error(`${o.outfile} refers to a Node module (${nodeOnly[0]})`);
    out.push({ outfile: o.outfile, format: o.format, bytes, gzip: gzipSync(bytes, { level: 9 }).length });
  }
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
  try {
    mkdirSync(`${root}/dist/client`, { recursive: true });
    for (const b of await clientBundles()) {
      writeFileSync(`${root}/${b.outfile}`, b.bytes);
      console.log(`${b.outfile}  ${kib(b.bytes.length)} raw, ${kib(b.gzip)} gzip`);
    }
  } catch (err) {
    console.error(`build-client: ${err.message}`);
    process.exit(1);
  }
}
