// Builds the browser bundles of the client SDK from src/client/browser.ts (esbuild, minified,
// src/protocol shared with the gateway; msgpackr's decoder, the small encoder of
// src/client/msgpack-lite.ts), and copies the demo page's files to dist/demo:
//   dist/client/wiregate-client.mjs  ESM:  import { WiregateClient } from './wiregate-client.mjs'
//   dist/client/wiregate-client.js   IIFE: <script src="wiregate-client.js">, then new Wiregate.WiregateClient(url)
// Prints raw and gzip sizes, and fails if a bundle would load a Node module. `npm run build` runs
// it after tsc (the Node entry, dist/client/index.js, comes from tsc); test/client-bundle.test.ts
// builds the same bundles in memory through clientBundles().
import { build } from 'esbuild';
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = fileURLToPath(new URL('..', import.meta.url));
// src/protocol imports msgpackr; in the browser the encoder is src/client/msgpack-lite.ts (which
// keeps msgpackr's decoder): msgpackr's encoder alone would cost about 6 KiB gzip more.
const liteMsgpack = {
  name: 'wiregate-msgpack-lite',
  setup(b) {
    b.onResolve({ filter: /^msgpackr$/ }, () => ({ path: `${root}src/client/msgpack-lite.ts` }));
  },
};
const common = {
  plugins: [liteMsgpack],
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
    // the demo page's static files, so that an installed package (files: dist) serves /demo too
    cpSync(`${root}/src/demo`, `${root}/dist/demo`, { recursive: true });
    for (const b of await clientBundles()) {
      writeFileSync(`${root}/${b.outfile}`, b.bytes);
      console.log(`${b.outfile}  ${kib(b.bytes.length)} raw, ${kib(b.gzip)} gzip`);
    }
  } catch (err) {
    console.error(`build-client: ${err.message}`);
    process.exit(1);
  }
}
