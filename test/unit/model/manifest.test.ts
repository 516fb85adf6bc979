// The manifest (config -> tensors) names exactly what loadModel loads, with the same shapes, for every
// architecture variant; the memory plan and the quantising loader rely on it.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { numel, weightManifest } from '../../../src/engine/checkpoint/manifest.ts';
import { loadModel } from '../../../src/engine/checkpoint/weights.ts';
import { namedTensors } from '../../helpers/named_tensors.ts';
import { randomCheckpoint, tinyHfConfig, writeCheckpoint, type HfConfig, type TinyOptions } from '../../helpers/checkpoint_writer.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'dsv-manifest-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function checkDir(dir: string): void {
  const model = loadModel(dir);
  const loaded = new Map([...namedTensors(model)].map(([name, t]) => [name, [...t.shape]]));
  const manifest = weightManifest(model.config);
  assert.deepEqual(new Map(manifest.map((s) => [s.name, [...s.shape]])), loaded);
  assert.equal(manifest.length, loaded.size, 'no duplicate names');
  assert.equal(
    manifest.reduce((n, s) => n + numel(s), 0),
    model.numParameters,
  );
  const roles = new Map(manifest.map((s) => [s.name, s.role]));
  assert.equal(roles.get('model.embed_tokens.weight'), 'embedding');
  assert.equal(roles.get('lm_head.weight'), 'linear');
  for (const [name, role] of roles) {
    if (name.endsWith('mlp.gate.weight')) assert.equal(role, 'router', name);
    if (/norm|bias/.test(name)) assert.equal(role, 'vector', name);
  }
}

const variants: [string, TinyOptions, HfConfig][] = [
  ['deepseek_v32', {}, {}],
  ['deepseek_v3', { modelType: 'deepseek_v3' }, {}],
  ['deepseek_v3, direct q_proj', { modelType: 'deepseek_v3', qLoraRank: null }, {}],
  ['deepseek_v2, no shared experts, top-1', { modelType: 'deepseek_v2' }, { n_shared_experts: 0, num_experts_per_tok: 1 }],
  ['deepseek_v32 with MTP and inv_freq extras', { extraTensors: true }, {}],
];

describe('weightManifest', () => {
  for (const [name, opts, overrides] of variants) {
    it(`${name}: same names, shapes and parameter count as loadModel`, () => {
      const config = { ...tinyHfConfig(opts), ...overrides };
      const dir = mkdtempSync(path.join(tmp, 'v-'));
      writeCheckpoint(dir, config, randomCheckpoint(config, { seed: 1, extraTensors: opts.extraTensors }), { dtype: 'BF16' });
      checkDir(dir);
    });
  }

  it('the shared fixture and the embedded default model', () => {
    checkDir(fileURLToPath(new URL('../../fixtures/tiny-dsv32/', import.meta.url)));
    checkDir(fileURLToPath(new URL('../../../models/default/', import.meta.url)));
  });
});
