// Every way a model dir can be broken must surface as a CheckpointError naming the file and the tensor or key.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { CheckpointError } from '../../../src/common/errors.ts';
import { loadModel } from '../../../src/engine/checkpoint/weights.ts';
import { randomTinyCheckpoint, rewriteHeader, safetensorsBytes, writeCheckpoint, type WriteOptions } from '../../helpers/checkpoint_writer.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'dsv-corrupt-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const base = randomTinyCheckpoint({ seed: 3 });
const KV_B = 'model.layers.1.self_attn.kv_b_proj.weight';
const NORM = 'model.layers.2.post_attention_layernorm.weight';
const SHARD1 = 'model-00001-of-00003.safetensors';

let counter = 0;
function makeDir(opts: WriteOptions = { dtype: 'F32' }, edit?: (cfg: Record<string, unknown>, t: typeof base.tensors) => void): string {
  const dir = path.join(tmp, `c${counter++}`);
  const config = { ...base.config };
  const tensors = new Map(base.tensors);
  edit?.(config, tensors);
  writeCheckpoint(dir, config, tensors, opts);
  return dir;
}

function expectError(dir: string, code: 'DSV_ERR_CONFIG' | 'DSV_ERR_CHECKPOINT', file: string, ...parts: string[]): void {
  assert.throws(
    () => loadModel(dir),
    (e: unknown) => {
      assert.ok(e instanceof CheckpointError, `expected CheckpointError, got ${String(e)}`);
      assert.equal(e.code, code);
      assert.equal(e.file, file);
      assert.ok(e.message.startsWith(`${file}: `), e.message);
      for (const p of parts) assert.ok(e.message.includes(p), `"${e.message}" lacks "${p}"`);
      return true;
    },
  );
}

describe('corrupt safetensors files', () => {
  it('bad header length', () => {
    const dir = makeDir();
    const file = path.join(dir, 'model.safetensors');
    const bytes = readFileSync(file);
    bytes.writeBigUInt64LE(1n << 33n, 0);
    writeFileSync(file, bytes);
    expectError(dir, 'DSV_ERR_CHECKPOINT', 'model.safetensors', 'header length', 'absurd');
    bytes.writeBigUInt64LE(BigInt(bytes.length), 0);
    writeFileSync(file, bytes);
    expectError(dir, 'DSV_ERR_CHECKPOINT', 'model.safetensors', 'exceeds the file size');
  });

  it('invalid JSON header', () => {
    const dir = makeDir();
    const file = path.join(dir, 'model.safetensors');
    const bytes = readFileSync(file);
    bytes.write('{"x', 8 + 1); // keeps the length, breaks the syntax
    writeFileSync(file, bytes);
    expectError(dir, 'DSV_ERR_CHECKPOINT', 'model.safetensors', 'not valid JSON');
  });

  it('offsets past the end of the data section', () => {
    const dir = makeDir();
    const file = path.join(dir, 'model.safetensors');
    const size = statSync(file).size;
    rewriteHeader(file, (h) => {
      const [b, e] = h[NORM].data_offsets;
      h[NORM].data_offsets = [b + size, e + size];
    });
    expectError(dir, 'DSV_ERR_CHECKPOINT', 'model.safetensors', `tensor "${NORM}"`, 'past the end');
  });

  it('overlapping ranges', () => {
    const dir = makeDir();
    const file = path.join(dir, 'model.safetensors');
    const other = 'model.layers.1.post_attention_layernorm.weight';
    rewriteHeader(file, (h) => {
      h[NORM].data_offsets = h[other].data_offsets;
    });
    expectError(dir, 'DSV_ERR_CHECKPOINT', 'model.safetensors', `"${NORM}"`, `"${other}"`, 'overlapping');
  });

  it('truncated file', () => {
    const dir = makeDir();
    const file = path.join(dir, 'model.safetensors');
    truncateSync(file, statSync(file).size - 10);
    expectError(dir, 'DSV_ERR_CHECKPOINT', 'model.safetensors', 'tensor "lm_head.weight"', 'truncated');
  });

  it('wrong shape (same byte size), in a shard', () => {
    const dir = makeDir({ dtype: 'F32', shards: 3 });
    const shard = JSON.parse(readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8')).weight_map[KV_B];
    rewriteHeader(path.join(dir, shard), (h) => {
      h[KV_B].shape = [32, 96];
    });
    expectError(
      dir,
      'DSV_ERR_CHECKPOINT',
      shard,
      `tensor "${KV_B}" has shape [32, 96], expected [64, 48] (heads * (qk_nope_head_dim + v_head_dim), kv_lora_rank)`,
    );
  });

  it('wrong dtype', () => {
    const dir = makeDir();
    rewriteHeader(path.join(dir, 'model.safetensors'), (h) => {
      h[NORM].dtype = 'I32';
    });
    expectError(dir, 'DSV_ERR_CHECKPOINT', 'model.safetensors', `tensor "${NORM}" has dtype I32, expected one of F32, BF16, F16`);
  });

  it('missing tensor, single file and sharded', () => {
    const drop = (_c: Record<string, unknown>, t: Map<string, unknown>): void => void t.delete(KV_B);
    expectError(makeDir({ dtype: 'F32' }, drop), 'DSV_ERR_CHECKPOINT', 'model.safetensors', `tensor "${KV_B}" is missing`, '[64, 48]');
    expectError(makeDir({ dtype: 'F32', shards: 3 }, drop), 'DSV_ERR_CHECKPOINT', 'model.safetensors.index.json', `tensor "${KV_B}" is missing`);
  });

  it('tensor listed in the index but absent from its shard', () => {
    const dir = makeDir({ dtype: 'F32', shards: 3 });
    const indexPath = path.join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(readFileSync(indexPath, 'utf8'));
    const wrongShard = index.weight_map[KV_B] === SHARD1 ? 'model-00002-of-00003.safetensors' : SHARD1;
    index.weight_map[KV_B] = wrongShard;
    writeFileSync(indexPath, JSON.stringify(index));
    expectError(dir, 'DSV_ERR_CHECKPOINT', wrongShard, `tensor "${KV_B}" is missing`);
  });

  it('FP8 weight without its scale_inv, or with a wrongly shaped one', () => {
    const gate = 'model.layers.0.mlp.gate_proj.weight';
    const dir = makeDir({ dtype: 'F8_E4M3' });
    const file = path.join(dir, 'model.safetensors');
    rewriteHeader(file, (h) => {
      h[`${gate}_scale_inv`].shape = [4, 1];
    });
    expectError(dir, 'DSV_ERR_CHECKPOINT', 'model.safetensors', `tensor "${gate}_scale_inv" has shape [4, 1], expected [2, 2]`);
    rewriteHeader(file, (h) => {
      h[`${gate}_scale_inv_renamed`] = h[`${gate}_scale_inv`];
      delete h[`${gate}_scale_inv`];
    });
    expectError(dir, 'DSV_ERR_CHECKPOINT', 'model.safetensors', `tensor "${gate}_scale_inv" is missing`);
  });
});

describe('broken config and model dir', () => {
  it('missing config key', () => {
    const dir = makeDir({ dtype: 'F32' }, (c) => void delete c.kv_lora_rank);
    expectError(dir, 'DSV_ERR_CONFIG', 'config.json', 'required key "kv_lora_rank" is missing');
  });

  it('contradictory config', () => {
    const dir = makeDir({ dtype: 'F32' }, (c) => void (c.num_experts_per_tok = 8));
    expectError(dir, 'DSV_ERR_CONFIG', 'config.json', 'key "num_experts_per_tok" (8) must be <= n_routed_experts (4)');
  });

  it('unknown model_type', () => {
    const dir = makeDir({ dtype: 'F32' }, (c) => void (c.model_type = 'qwen3'));
    expectError(dir, 'DSV_ERR_CONFIG', 'config.json', 'key "model_type" ("qwen3") must be one of');
  });

  it('invalid config JSON, missing config.json, missing weights, missing dir', () => {
    const dir = makeDir();
    writeFileSync(path.join(dir, 'config.json'), '{"model_type": ');
    expectError(dir, 'DSV_ERR_CONFIG', 'config.json', 'not valid JSON');
    rmSync(path.join(dir, 'config.json'));
    expectError(dir, 'DSV_ERR_CONFIG', 'config.json', 'not found');
    const noWeights = makeDir();
    rmSync(path.join(noWeights, 'model.safetensors'));
    expectError(noWeights, 'DSV_ERR_CHECKPOINT', 'model.safetensors', 'not found', 'model.safetensors.index.json');
    const missing = path.join(tmp, 'does-not-exist');
    expectError(missing, 'DSV_ERR_CONFIG', missing, 'model directory not found');
  });
});

describe('shard paths never leave the model dir', () => {
  const pointShard = (dir: string, target: string): void => {
    const indexPath = path.join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(readFileSync(indexPath, 'utf8'));
    index.weight_map[KV_B] = target;
    writeFileSync(indexPath, JSON.stringify(index));
  };

  it('rejects ../ and absolute names in weight_map', () => {
    const dir = makeDir({ dtype: 'F32', shards: 3 });
    // A perfectly valid file sits at the escaped path: it must still not be opened.
    writeFileSync(path.join(tmp, 'x.safetensors'), safetensorsBytes([]));
    pointShard(dir, '../x.safetensors');
    expectError(dir, 'DSV_ERR_CHECKPOINT', 'model.safetensors.index.json', `weight_map["${KV_B}"]`, '"../x.safetensors"', 'outside the model directory');
    pointShard(dir, path.join(tmp, 'x.safetensors'));
    expectError(dir, 'DSV_ERR_CHECKPOINT', 'model.safetensors.index.json', `weight_map["${KV_B}"]`, 'not a relative file name');
  });

  it('rejects a shard that is a symlink pointing outside', () => {
    const dir = makeDir({ dtype: 'F32', shards: 3 });
    const outside = path.join(tmp, `outside${counter++}`);
    mkdirSync(outside);
    renameSync(path.join(dir, SHARD1), path.join(outside, SHARD1));
    symlinkSync(path.join(outside, SHARD1), path.join(dir, SHARD1));
    expectError(dir, 'DSV_ERR_CHECKPOINT', 'model.safetensors.index.json', 'symlink', 'outside the model directory');
  });

  it('accepts symlinks inside the dir, and HF-cache snapshot links into ../../blobs', () => {
    const repo = path.join(tmp, `models--x--tiny${counter++}`);
    const snapshot = path.join(repo, 'snapshots', 'abc123');
    const blobs = path.join(repo, 'blobs');
    const src = makeDir({ dtype: 'F32', shards: 3 });
    mkdirSync(snapshot, { recursive: true });
    mkdirSync(blobs);
    for (const f of ['config.json', 'model.safetensors.index.json', SHARD1, 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors']) {
      renameSync(path.join(src, f), path.join(blobs, `blob-${f}`));
      symlinkSync(`../../blobs/blob-${f}`, path.join(snapshot, f));
    }
    assert.equal(loadModel(snapshot).config.hiddenSize, 160);
  });
});
