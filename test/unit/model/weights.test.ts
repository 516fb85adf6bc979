import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { LoadedModel } from '../../../src/engine/checkpoint/types.ts';
import { loadModel } from '../../../src/engine/checkpoint/weights.ts';
import { namedTensors } from '../../helpers/named_tensors.ts';
import { randomTinyCheckpoint, readRawSafetensors, writeCheckpoint, type HostTensor, type TinyOptions } from '../../helpers/checkpoint_writer.ts';

const fixtureDir = fileURLToPath(new URL('../../fixtures/tiny-dsv32/', import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'dsv-weights-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

let counter = 0;
function writeAndLoad(cfg: Record<string, unknown>, tensors: Map<string, HostTensor>, dtype: 'F32' | 'BF16' | 'F16' | 'F8_E4M3', shards = 1): LoadedModel {
  const dir = path.join(tmp, `m${counter++}`);
  writeCheckpoint(dir, cfg, tensors, { dtype, shards });
  return loadModel(dir);
}

describe('loadModel on the shared tiny-dsv32 fixture', () => {
  it('matches golden.json checkpoint_sha256', () => {
    const golden = JSON.parse(readFileSync(path.join(fixtureDir, 'golden.json'), 'utf8'));
    for (const file of ['config.json', 'model.safetensors']) {
      const digest = createHash('sha256')
        .update(readFileSync(path.join(fixtureDir, file)))
        .digest('hex');
      assert.equal(digest, golden.checkpoint_sha256[file], file);
    }
  });

  it('gives the README config values and every tensor with its stored shape and values', () => {
    const model = loadModel(fixtureDir);
    const c = model.config;
    assert.deepEqual(
      [c.vocabSize, c.hiddenSize, c.numHiddenLayers, c.intermediateSize, c.numAttentionHeads, c.qLoraRank, c.kvLoraRank],
      [512, 64, 3, 128, 4, 32, 32],
    );
    assert.deepEqual([c.qkNopeHeadDim, c.qkRopeHeadDim, c.vHeadDim, c.rmsNormEps, c.ropeTheta, c.maxPositionEmbeddings], [16, 8, 16, 1e-6, 10000, 512]);
    assert.deepEqual(c.indexer, { nHeads: 4, headDim: 16, topk: 16 });
    const m = c.moe!;
    assert.deepEqual(
      [m.nRoutedExperts, m.nSharedExperts, m.numExpertsPerTok, m.moeIntermediateSize, m.nGroup, m.topkGroup, m.firstKDenseReplace],
      [8, 1, 2, 32, 4, 2, 1],
    );
    assert.deepEqual([m.scoringFunc, m.topkMethod, m.normTopkProb, m.routedScalingFactor], ['sigmoid', 'noaux_tc', true, 2.5]);
    assert.equal(c.ropeScaling!.factor, 8);
    assert.deepEqual(
      model.weights.layers.map((l) => l.mlp.kind),
      ['dense', 'moe', 'moe'],
    );

    const { header, data } = readRawSafetensors(path.join(fixtureDir, 'model.safetensors'));
    const names = Object.keys(header).filter((k) => k !== '__metadata__');
    const loaded = namedTensors(model);
    assert.deepEqual([...loaded.keys()].sort(), names.sort());
    let total = 0;
    for (const name of names) {
      const {
        shape,
        data_offsets: [b, e],
      } = header[name];
      const stored = new Float32Array(data.buffer.slice(data.byteOffset + b, data.byteOffset + e));
      assert.deepEqual(loaded.get(name)!.shape, shape, name);
      assert.deepEqual(loaded.get(name)!.data, stored, name);
      total += stored.length;
    }
    assert.equal(model.numParameters, total);
    assert.equal(model.dir, path.resolve(fixtureDir));
  });
});

function assertClose(name: string, got: Float32Array, want: Float32Array, bound: (v: number, k: number) => number): void {
  assert.equal(got.length, want.length, name);
  for (let k = 0; k < want.length; k++) {
    const w = want[k]!;
    const err = Math.abs(got[k]! - w);
    if (!(err <= bound(w, k))) assert.fail(`${name}[${k}]: ${got[k]} vs ${w} (err ${err}, bound ${bound(w, k)})`);
  }
}

/** Per-element FP8 bound: half an e4m3 ulp, i.e. 2^-4 |v| for normals and 2^-10 * scale in the subnormal range. */
function fp8Bound(t: HostTensor): (v: number, k: number) => number {
  const [rows, cols] = t.shape as readonly [number, number];
  const bc = Math.ceil(cols / 128);
  const amax = new Float64Array(Math.ceil(rows / 128) * bc);
  t.data.forEach((v, k) => {
    const b = Math.floor(k / cols / 128) * bc + Math.floor((k % cols) / 128);
    amax[b] = Math.max(amax[b]!, Math.abs(v));
  });
  return (v, k) => {
    const s = amax[Math.floor(k / cols / 128) * bc + Math.floor((k % cols) / 128)]! / 448;
    return (2 ** -4 * Math.abs(v) + 2 ** -10 * s) * 1.0001;
  };
}

describe('F32 / BF16 / F16 / FP8 / sharded versions of one random checkpoint', () => {
  const { config, tensors } = randomTinyCheckpoint({ seed: 42 });
  const f32 = writeAndLoad(config, tensors, 'F32');

  it('F32 loads every tensor bit-exactly and counts parameters', () => {
    const loaded = namedTensors(f32);
    assert.deepEqual([...loaded.keys()].sort(), [...tensors.keys()].sort());
    for (const [name, t] of tensors) assert.deepEqual(loaded.get(name)!.data, t.data, name);
    assert.equal(
      f32.numParameters,
      [...tensors.values()].reduce((s, t) => s + t.data.length, 0),
    );
  });

  it('sharded F32 (3 shards, with index) equals the single file', () => {
    const sharded = namedTensors(writeAndLoad(config, tensors, 'F32', 3));
    for (const [name, t] of tensors) assert.deepEqual(sharded.get(name)!.data, t.data, name);
  });

  it('BF16 within 2^-8 relative and F16 within 2^-11 relative', () => {
    const bf16 = namedTensors(writeAndLoad(config, tensors, 'BF16'));
    const f16 = namedTensors(writeAndLoad(config, tensors, 'F16'));
    for (const [name, t] of tensors) {
      assertClose(name, bf16.get(name)!.data, t.data, (v) => 2 ** -8 * Math.abs(v));
      assertClose(name, f16.get(name)!.data, t.data, (v) => 2 ** -11 * Math.abs(v) + 2 ** -25);
    }
  });

  it('FP8 (ragged 128x128 blocks) within half an e4m3 ulp per element; norms, biases and gate exact', () => {
    const fp8Model = writeAndLoad(config, tensors, 'F8_E4M3');
    const fp8 = namedTensors(fp8Model);
    const sharded = namedTensors(writeAndLoad(config, tensors, 'F8_E4M3', 4));
    let quantised = 0;
    for (const [name, t] of tensors) {
      const exact = t.shape.length === 1 || name.endsWith('mlp.gate.weight') || name.includes('embed_tokens') || name.startsWith('lm_head');
      if (exact) assert.deepEqual(fp8.get(name)!.data, t.data, name);
      else {
        assertClose(name, fp8.get(name)!.data, t.data, fp8Bound(t));
        quantised++;
      }
      assert.deepEqual(sharded.get(name)!.data, fp8.get(name)!.data, name);
    }
    assert.ok(quantised > 20);
    assert.equal(fp8Model.numParameters, f32.numParameters); // scale tensors are not parameters
  });
});

describe('model variants', () => {
  const load = (opts: TinyOptions): { model: LoadedModel; tensors: Map<string, HostTensor> } => {
    const { config, tensors } = randomTinyCheckpoint(opts);
    return { model: writeAndLoad(config, tensors, 'F32'), tensors };
  };

  it('V2-Lite style: direct q_proj, softmax greedy routing without correction bias, no rope scaling, no indexer', () => {
    for (const normTopkProb of [true, false]) {
      const { model, tensors } = load({ modelType: 'deepseek_v2', qLoraRank: null, ropeScaling: false, normTopkProb });
      const c = model.config;
      assert.equal(c.moe!.normTopkProb, normTopkProb);
      assert.deepEqual([c.moe!.scoringFunc, c.moe!.topkMethod, c.ropeScaling, c.indexer], ['softmax', 'greedy', null, null]);
      const attn = model.weights.layers[0]!.attn;
      assert.ok(attn.query.kind === 'direct');
      assert.deepEqual(attn.query.qProj.shape, [2 * 24, 160]);
      const moe = model.weights.layers[1]!.mlp;
      assert.ok(moe.kind === 'moe' && moe.weights.eScoreCorrectionBias === null);
      assert.ok(moe.kind === 'moe' && moe.weights.sharedExperts!.gateProj.shape[0] === 72 * 2);
      assert.equal(namedTensors(model).size, tensors.size);
    }
  });

  it('V3 with q_lora and no indexer', () => {
    const { model } = load({ modelType: 'deepseek_v3' });
    assert.equal(model.weights.layers[0]!.attn.indexer, null);
    const query = model.weights.layers[0]!.attn.query;
    assert.ok(query.kind === 'lora');
    assert.deepEqual(query.qBProj.shape, [48, 136]);
  });

  it('ignores MTP layers and rotary inv_freq buffers', () => {
    const { model, tensors } = load({ extraTensors: true });
    assert.equal(model.weights.layers.length, 3);
    assert.ok(tensors.has('model.layers.3.self_attn.kv_b_proj.weight'));
    assert.equal(namedTensors(model).size, [...tensors.keys()].filter((n) => !n.startsWith('model.layers.3.') && !n.includes('inv_freq')).length);
  });
});
