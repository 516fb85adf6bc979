import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { DEFAULT_MODEL_DIR, loadConfig, OPTIONS, optionsMarkdownTable, usageText } from '../../../src/config.ts';
import { writeConfigFile } from './helpers.ts';

const DEFAULT_YAML = resolve(import.meta.dirname, '../../../config/default.yaml');

describe('config files', () => {
  it('reads YAML with camelCase and kebab-case keys', () => {
    const file = writeConfigFile(
      'mixed.yml',
      [
        'maxNumSeqs: 12',
        'max-num-batched-tokens: 4096',
        'kvCacheMemory: 2GiB',
        'served-model-name: [alpha, beta]',
        'enablePrefixCaching: false',
        'drain-timeout: 1.5',
        'logLevel: ERROR',
        'apiKey: "k1,k2"',
        'port: 0',
        '',
      ].join('\n'),
    );
    const config = loadConfig(['--config', file], {});
    assert.equal(config.maxNumSeqs, 12);
    assert.equal(config.maxNumBatchedTokens, 4096);
    assert.equal(config.kvCacheMemory, 2 ** 31);
    assert.deepEqual(config.servedModelName, ['alpha', 'beta']);
    assert.equal(config.enablePrefixCaching, false);
    assert.equal(config.drainTimeout, 1.5);
    assert.equal(config.logLevel, 'error');
    assert.deepEqual(config.apiKey, ['k1', 'k2']);
    assert.equal(config.port, 0);
  });

  it('reads JSON, numbers given as strings included', () => {
    const file = writeConfigFile(
      'prod.json',
      JSON.stringify({ 'max-num-seqs': '16', blockSize: 32, denseAttention: true, maxModelLen: 'auto', model: 'rel/dir' }),
    );
    const config = loadConfig(['--config', file], {});
    assert.equal(config.maxNumSeqs, 16);
    assert.equal(config.blockSize, 32);
    assert.equal(config.denseAttention, true);
    assert.equal(config.maxModelLen, null);
    assert.equal(config.model, resolve('rel/dir'), 'relative to the working directory');
  });

  it('config/default.yaml loads to exactly the defaults and sets every file key', () => {
    assert.deepEqual(loadConfig(['--config', DEFAULT_YAML], {}), { ...loadConfig([], {}), configFile: DEFAULT_YAML });
    const keys = Object.keys(parse(readFileSync(DEFAULT_YAML, 'utf8')) as object);
    assert.deepEqual(
      [...keys].sort(),
      OPTIONS.filter((s) => s.inFile)
        .map((s) => s.key)
        .sort(),
    );
    assert.equal(loadConfig(['--config', DEFAULT_YAML], {}).model, DEFAULT_MODEL_DIR);
  });
});

describe('docs from the option table', () => {
  it('the markdown table has one row per option', () => {
    const lines = optionsMarkdownTable().trimEnd().split('\n');
    assert.equal(lines.length, 2 + OPTIONS.length);
    for (const spec of OPTIONS) {
      const line = lines.find((l) => l.startsWith(`| \`--${spec.flag}`));
      assert.ok(line, `no row for --${spec.flag}`);
      for (const env of spec.env) assert.ok(line.includes(`\`${env}\``), `${spec.flag}: ${env}`);
      assert.equal(line.split(/(?<!\\)\|/).length, 7, `5 cells in ${line}`);
    }
  });

  it('the usage text names every flag, env var and default', () => {
    const usage = usageText();
    for (const spec of OPTIONS) {
      assert.ok(usage.includes(spec.valueName === null ? `--[no-]${spec.flag}` : `--${spec.flag} ${spec.valueName}`), spec.flag);
      for (const env of spec.env) assert.ok(usage.includes(env), env);
      assert.ok(usage.includes(`default ${spec.defaultText}`) || usage.includes('default'), spec.flag);
    }
    assert.ok(usage.includes('--help'));
    for (const line of usage.split('\n')) assert.ok(line.length <= 100, `too wide: ${line}`);
  });

  it('the table is consistent: unique flags, env vars and DSV_ names derived from flags', () => {
    const flags = OPTIONS.map((s) => s.flag);
    const envs = OPTIONS.flatMap((s) => s.env);
    assert.equal(new Set(flags).size, flags.length);
    assert.equal(new Set(envs).size, envs.length);
    for (const spec of OPTIONS) assert.equal(spec.env[0], `DSV_${spec.flag.toUpperCase().replace(/-/g, '_')}`);
  });
});
