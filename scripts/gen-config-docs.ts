// Renders the options table of docs/configuration.md from src/config/schema.ts.
// `npx tsx scripts/gen-config-docs.ts` rewrites the block between the markers;
// test/config.test.ts fails when the docs are out of date.
import { readFileSync, writeFileSync } from 'node:fs';
import { COMPRESSION_PRESETS, FIELDS, envName } from '../src/config/schema.js';

export const BEGIN = '<!-- BEGIN GENERATED OPTIONS -->';
export const END = '<!-- END GENERATED OPTIONS -->';
export const PBEGIN = '<!-- BEGIN GENERATED PRESETS -->';
export const PEND = '<!-- END GENERATED PRESETS -->';

export function optionsTable(): string {
  const rows = FIELDS.map((f) => {
    const def = Array.isArray(f.default) ? (f.default.length ? f.default.join(',') : '(empty)') : f.default === '' ? '(empty)' : String(f.default);
    const rule =
      f.type === 'int'
        ? `integer ${f.min}..${f.max}`
        : f.type === 'enum'
          ? f.values.join(' \\| ')
          : f.type === 'list'
            ? 'comma-separated list'
            : f.type === 'proxy'
              ? `false, true (= 1), hop count 0..${f.max}, or comma-separated addresses/CIDRs`
              : f.type;
    return `| \`${f.key}\` | \`${envName(f.key)}\` | ${def} | ${rule} | ${f.doc} |`;
  });
  return ['| option (flag `--<option>=`) | environment | default | rule | meaning |', '|---|---|---|---|---|', ...rows].join('\n');
}

export function presetsTable(): string {
  const keys = ['level', 'memLevel', 'threshold', 'serverMaxWindowBits', 'clientMaxWindowBits', 'serverNoContextTakeover', 'clientNoContextTakeover'] as const;
  const rows = Object.entries(COMPRESSION_PRESETS).map(([name, p]) => `| \`${name}\` | ${keys.map((k) => (k in p ? String((p as Record<string, unknown>)[k]) : '-')).join(' | ')} |`);
  return [`| preset | ${keys.join(' | ')} |`, `|---|${keys.map(() => '---').join('|')}|`, ...rows].join('\n');
}

export function render(doc: string): string {
  const swap = (text: string, b: string, e: string, body: string) => {
    const i = text.indexOf(b);
    const j = text.indexOf(e);
    if (i === -1 || j === -1) throw new Error(`markers ${b} / ${e} missing`);
    return text.slice(0, i + b.length) + '\n' + body + '\n' + text.slice(j);
  };
  return swap(swap(doc, BEGIN, END, optionsTable()), PBEGIN, PEND, presetsTable());
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  const path = new URL('../docs/configuration.md', import.meta.url);
  writeFileSync(path, render(readFileSync(path, 'utf8')));
  console.log('docs/configuration.md updated');
}
