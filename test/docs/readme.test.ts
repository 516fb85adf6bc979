// The README stays true: the two commands, every option, and CI running the same test command.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { OPTIONS, optionsMarkdownTable } from '../../src/config.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

test('the README gives the two set-up commands and CI runs the same test command, lint included', () => {
  assert.match(readme, /^npm ci && npm start\b/m);
  assert.match(readme, /^npm test\b/m);
  const ci = readFileSync(path.join(ROOT, '.ci/run'), 'utf8');
  assert.match(ci, /^npm ci$/m);
  assert.match(ci, /^npm test$/m);
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  assert.ok(pkg.scripts.start && pkg.scripts.test);
  // The layer boundaries fail the build: the lint runs before the test runner.
  assert.match(pkg.scripts.test, /\bnpm run lint && .*\bnode\b.*--test\b/);
  assert.ok(pkg.scripts.lint);
});

test('the README lists every option exactly as the config table documents it', () => {
  assert.ok(readme.includes(optionsMarkdownTable().trim()), 'README option table is out of date: paste optionsMarkdownTable()');
  for (const spec of OPTIONS) assert.ok(readme.includes(`--${spec.flag}`), `--${spec.flag} missing`);
});
