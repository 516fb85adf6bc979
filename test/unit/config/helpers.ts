import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../../../src/config.ts';

let dir: string | null = null;

/** Writes a config file into a per-process temp dir (removed at exit) and returns its path. */
export function writeConfigFile(name: string, text: string): string {
  if (dir === null) {
    const created = mkdtempSync(join(tmpdir(), 'dsv-config-'));
    dir = created;
    // At exit, not in an after() hook: node:test binds a hook made inside a test to that test.
    process.on('exit', () => rmSync(created, { recursive: true, force: true }));
  }
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** loadConfig must throw a ConfigError; returns its message. */
export function configErrorMessage(argv: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    loadConfig(argv, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'DSV_ERR_CONFIG');
    return err.message;
  }
  assert.fail(`loadConfig(${JSON.stringify(argv)}) did not throw`);
}
