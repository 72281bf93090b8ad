#!/usr/bin/env node
// Entry point of the `wiregate` command (the compiled CLI lives in dist/, built by `npm run build`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const compiled = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(compiled)) {
  console.error('wiregate: dist/ is missing; run `npm run build` (npm ci runs it for you)');
  process.exit(1);
}
const { main } = await import(compiled);
await main(process.argv.slice(2));
