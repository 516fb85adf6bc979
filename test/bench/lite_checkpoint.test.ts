// The streaming random-checkpoint writer behind bench-lite, on a small config: a sharded BF16
// checkpoint the engine loads, with the intended magnitudes.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, it } from 'node:test';
import { writeRandomBf16Checkpoint } from '../../bench/lite_checkpoint.ts';
import { benchLite } from '../../bench/models.ts';
import { loadModel } from '../../src/engine/checkpoint/weights.ts';
import { tinyHfConfig } from '../helpers/checkpoint_writer.ts';
import { at } from '../helpers/at.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'dsv-lite-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function std(a: Float32Array, offset = 0): number {
  let s = 0;
  for (const v of a) s += (v - offset) ** 2;
  return Math.sqrt(s / a.length);
}

it('writes a sharded BF16 checkpoint that loads, with fan-in scaled weights and norms near 1', () => {
  const dir = path.join(tmp, 'm');
  const cfg = { ...tinyHfConfig({ modelType: 'deepseek_v2' }), rope_scaling: benchLite.rope_scaling };
  writeRandomBf16Checkpoint(dir, cfg, { shardBytes: 200_000, seed: 3 });
  assert.ok(!existsSync(`${dir}.partial`));
  const shards = readdirSync(dir).filter((f) => f.endsWith('.safetensors'));
  assert.ok(shards.length >= 3, `${shards.length} shards`);
  const m = loadModel(dir);
  assert.equal(m.config.torchDtype, 'bfloat16');
  const w = at(m.weights.layers, 1, 'layer');
  assert.ok(w.mlp.kind === 'moe');
  const [expert0, expert1] = w.mlp.weights.experts;
  assert.ok(expert0 && expert1, 'two routed experts');
  const down = expert0.downProj; // [hidden, moe_intermediate]
  assert.ok(Math.abs(std(down.data) * Math.sqrt(at(down.shape, 1)) - 1) < 0.1, `std ${std(down.data)}`);
  assert.ok(Math.abs(std(w.inputLayernorm.data, 1) - 0.1) < 0.03);
  // Different tensors get different values.
  assert.notDeepEqual(expert0.gateProj.data.slice(0, 8), expert1.gateProj.data.slice(0, 8));
});
