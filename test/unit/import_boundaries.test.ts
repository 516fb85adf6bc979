// Import boundaries (STYLE rule 8): one module owns each outside dependency.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src');

function sources(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

const RULES: { what: RegExp; allowed: (rel: string) => boolean; owner: string }[] = [
  { what: /from 'onnxruntime-node'/, allowed: (f) => f === 'engine/onnx/session.ts', owner: 'src/engine/onnx/session.ts' },
  { what: /from 'prom-client'/, allowed: (f) => f === 'server/metrics.ts', owner: 'src/server/metrics.ts' },
  { what: /from 'fastify'/, allowed: (f) => f.startsWith('server/'), owner: 'src/server/' },
  { what: /process\.env/, allowed: (f) => f === 'config.ts' || f === 'config_schema.ts', owner: 'src/config.ts' },
];

test('outside dependencies are imported only by their owner module', () => {
  const files = sources();
  assert.ok(files.length > 30);
  for (const file of files) {
    const rel = path.relative(SRC, file).split(path.sep).join('/');
    const text = readFileSync(file, 'utf8');
    for (const rule of RULES) assert.ok(!rule.what.test(text) || rule.allowed(rel), `${rel} uses ${rule.what} (only ${rule.owner} may)`);
  }
});
