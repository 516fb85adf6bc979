// The GGUF writer and the DeepSeek -> llama.cpp conversion, checked by reading the files back (no llama.cpp).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { f16ToFloat32, float32ToF16 } from '../../src/engine/checkpoint/dtype.ts';
import { loadModel } from '../../src/engine/checkpoint/weights.ts';
import { byteLevelAlphabet, convertDeepseekToGguf, splitKvB, stackMatrices, syntheticVocab, TOKEN_TYPE } from '../../bench/gguf/convert_deepseek.ts';
import { readGguf, readGgufTensor } from '../../bench/gguf/gguf_reader.ts';
import { lazyModel } from '../../bench/gguf/lazy_model.ts';
import { GgmlType, GgufValueType, GgufWriter, ggmlBlocks, gguf } from '../../bench/gguf/gguf_writer.ts';
import { dequantizeMatrix, quantizeMatrix } from '../../src/engine/quant/block_quant.ts';
import { seededRandom } from '../../tools/checkpoint/random_weights.ts';
import { FIXTURE_DIR } from '../helpers/golden.ts';
import { randomCheckpoint, tinyHfConfig, writeCheckpoint } from '../helpers/checkpoint_writer.ts';
import { at } from '../helpers/at.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'gguf-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const fixture = loadModel(FIXTURE_DIR);

describe('GgufWriter', () => {
  it('writes a GGUF v3 file whose header, metadata and tensors read back exactly', () => {
    const w = new GgufWriter();
    w.set('general.architecture', gguf.str('test'));
    w.set('k.u8', gguf.u8(255)).set('k.i8', gguf.i8(-128)).set('k.u16', gguf.u16(65535)).set('k.i16', gguf.i16(-32768));
    w.set('k.u32', gguf.u32(4294967295))
      .set('k.i32', gguf.i32(-2147483648))
      .set('k.u64', gguf.u64(2n ** 64n - 1n))
      .set('k.i64', gguf.i64(-(2n ** 63n)));
    w.set('k.f32', gguf.f32(0.1)).set('k.f64', gguf.f64(0.1)).set('k.bool', gguf.bool(true)).set('k.str', gguf.str('héllo'));
    w.set('k.arr_str', gguf.arr(GgufValueType.STRING, ['a', '', 'Ċ'])).set('k.arr_i32', gguf.arr(GgufValueType.INT32, [1, -2, 3]));
    w.set('k.arr_empty', gguf.arr(GgufValueType.STRING, []));
    const a = Float32Array.from({ length: 6 }, (_, i) => i - 2.5);
    const b = Float32Array.from({ length: 24 }, (_, i) => (i * 0.37) % 3);
    w.addTensor({ name: 'a', shape: [2, 3], type: GgmlType.F32, data: a });
    w.addTensor({ name: 'b', shape: [2, 3, 4], type: GgmlType.F16, data: () => b });
    w.addTensor({ name: 'c', shape: [5], type: GgmlType.F32, data: new Float32Array(5).fill(7) });
    const file = path.join(dir, 'basic.gguf');
    const res = w.write(file);

    const raw = readFileSync(file);
    assert.equal(raw.toString('latin1', 0, 4), 'GGUF');
    assert.equal(raw.readUInt32LE(4), 3);
    assert.equal(raw.readBigUInt64LE(8), 3n); // tensors
    assert.equal(raw.readBigUInt64LE(16), 16n); // keys
    assert.equal(res.bytes, raw.length);
    assert.equal(res.dataOffset % 32, 0);

    const g = readGguf(file);
    assert.equal(g.version, 3);
    assert.equal(g.dataOffset, res.dataOffset);
    assert.equal(g.metadata.get('general.architecture'), 'test');
    assert.equal(g.metadata.get('k.u8'), 255);
    assert.equal(g.metadata.get('k.i8'), -128);
    assert.equal(g.metadata.get('k.u16'), 65535);
    assert.equal(g.metadata.get('k.i16'), -32768);
    assert.equal(g.metadata.get('k.u32'), 4294967295);
    assert.equal(g.metadata.get('k.i32'), -2147483648);
    assert.equal(g.metadata.get('k.u64'), 2n ** 64n - 1n);
    assert.equal(g.metadata.get('k.i64'), -(2n ** 63n));
    assert.equal(g.metadata.get('k.f32'), Math.fround(0.1));
    assert.equal(g.metadata.get('k.f64'), 0.1);
    assert.equal(g.metadata.get('k.bool'), true);
    assert.equal(g.metadata.get('k.str'), 'héllo');
    assert.deepEqual(g.metadata.get('k.arr_str'), ['a', '', 'Ċ']);
    assert.deepEqual(g.metadata.get('k.arr_i32'), [1, -2, 3]);
    assert.deepEqual(g.metadata.get('k.arr_empty'), []);
    assert.equal(g.types.get('k.u32'), GgufValueType.UINT32);
    assert.equal(g.types.get('k.arr_i32'), GgufValueType.ARRAY);
    assert.equal(g.arrayTypes.get('k.arr_i32'), GgufValueType.INT32);
    assert.equal(g.arrayTypes.get('k.arr_empty'), GgufValueType.STRING);

    // ggml dims are reversed numpy shapes; every tensor starts 32-byte aligned
    assert.deepEqual(
      g.tensors.map((t) => [t.name, t.ne, t.type]),
      [
        ['a', [3, 2], GgmlType.F32],
        ['b', [4, 3, 2], GgmlType.F16],
        ['c', [5], GgmlType.F32],
      ],
    );
    assert.deepEqual(
      g.tensors.map((t) => t.offset),
      [0, 32, 96],
    );
    assert.deepEqual(readGgufTensor(file, g, 'a'), a);
    assert.deepEqual(
      readGgufTensor(file, g, 'b'),
      b.map((x) => f16ToFloat32(float32ToF16(x))),
    );
    assert.deepEqual(readGgufTensor(file, g, 'c'), new Float32Array(5).fill(7));
    assert.equal(raw.length, g.dataOffset + 96 + 32); // the last tensor is padded to the alignment too
  });

  it('writes general.alignment for a non-default alignment and honours it', () => {
    const w = new GgufWriter({ alignment: 64 });
    w.addTensor({ name: 'x', shape: [3], type: GgmlType.F32, data: new Float32Array(3) });
    w.addTensor({ name: 'y', shape: [1], type: GgmlType.F32, data: new Float32Array([1]) });
    const file = path.join(dir, 'align.gguf');
    w.write(file);
    const g = readGguf(file);
    assert.equal(g.metadata.get('general.alignment'), 64);
    assert.equal(g.dataOffset % 64, 0);
    assert.deepEqual(
      g.tensors.map((t) => t.offset),
      [0, 64],
    );
  });

  it('rejects what llama.cpp could not read', () => {
    const w = new GgufWriter();
    w.set('a', gguf.u32(1));
    assert.throws(() => w.set('a', gguf.u32(2)), /duplicate GGUF key/);
    assert.throws(() => w.addTensor({ name: 'x'.repeat(64), shape: [1], type: GgmlType.F32, data: new Float32Array(1) }), /63-byte/);
    assert.throws(() => w.addTensor({ name: 't', shape: [2, 2], type: GgmlType.F32, data: new Float32Array(3) }), /3 values/);
    assert.throws(() => w.addTensor({ name: 't', shape: [1, 1, 1, 1, 1], type: GgmlType.F32, data: new Float32Array(1) }), /1\.\.4/);
    w.set('bad', gguf.u32(-1));
    assert.throws(() => w.write(path.join(dir, 'bad.gguf')), /bad: -1/);
    assert.throws(() => w.addTensor({ name: 'q', shape: [2, 40], type: GgmlType.Q8_0, data: new Float32Array(80) }), /multiple of 32, got 40/);
  });

  it("writes Q8_0 and Q4_0 blocks that ggml dequantises to exactly the engine's quantised weights", () => {
    const rng = seededRandom(9);
    const rows = 6;
    const cols = 96;
    const x = Float32Array.from({ length: rows * cols }, () => rng.normal() * 0.05);
    const q8 = quantizeMatrix(x, rows, cols, 8);
    const q4 = quantizeMatrix(x, rows, cols, 4);
    const w = new GgufWriter();
    w.addTensor({ name: 'q8', shape: [rows, cols], type: GgmlType.Q8_0, data: q8 });
    w.addTensor({ name: 'q4', shape: [2, 3, cols], type: GgmlType.Q4_0, data: () => q4 });
    w.addTensor({ name: 'q4_from_f32', shape: [rows, cols], type: GgmlType.Q4_0, data: x });
    const file = path.join(dir, 'quant.gguf');
    w.write(file);
    const g = readGguf(file);
    assert.deepEqual(
      g.tensors.map((t) => [t.name, t.type]),
      [
        ['q8', 8],
        ['q4', 2],
        ['q4_from_f32', 2],
      ],
    );
    // 18 blocks: Q8_0 34 bytes each (612, padded to 640), Q4_0 18 bytes each (324, padded to 352)
    assert.deepEqual(
      g.tensors.map((t) => t.offset),
      [0, 640, 992],
    );
    assert.deepEqual(readGgufTensor(file, g, 'q8'), dequantizeMatrix(q8));
    assert.deepEqual(readGgufTensor(file, g, 'q4'), dequantizeMatrix(q4));
    assert.deepEqual(readGgufTensor(file, g, 'q4_from_f32'), dequantizeMatrix(q4));
    // Q4_0 byte j of a block holds elements j (low nibble) and j + 16 (high); MatMulNBits holds 2j and 2j + 1.
    const raw = readFileSync(file).subarray(g.dataOffset + 640, g.dataOffset + 640 + 18);
    const code = (k: number): number => (k & 1 ? at(q4.packed, k >> 1) >> 4 : at(q4.packed, k >> 1) & 15);
    assert.equal(raw.readUInt16LE(0), float32ToF16(at(q4.scales, 0)));
    for (let j = 0; j < 16; j++) assert.equal(raw[2 + j], code(j) | (code(j + 16) << 4), `byte ${j}`);
    assert.throws(() => ggmlBlocks(q8, GgmlType.Q4_0), /8-bit matrix cannot be written as Q4_0/);
  });
});

describe('DeepSeek -> GGUF conversion', () => {
  const c = fixture.config;
  const heads = c.numAttentionHeads;
  const nope = c.qkNopeHeadDim;
  const v = c.vHeadDim;
  const r = c.kvLoraRank;

  it("splits kv_b_proj into k_b (transposed per head) and v_b like llama.cpp's absorbed MLA", () => {
    const kvB = fixture.weights.layers[0]!.attn.kvBProj;
    const { kB, vB } = splitKvB(kvB, heads, nope, v);
    for (let h = 0; h < heads; h++) {
      for (let c2 = 0; c2 < r; c2++) {
        for (let d = 0; d < nope; d++) assert.equal(kB[(h * r + c2) * nope + d], kvB.data[(h * (nope + v) + d) * r + c2]);
        for (let d = 0; d < v; d++) assert.equal(vB[(h * v + d) * r + c2], kvB.data[(h * (nope + v) + nope + d) * r + c2]);
      }
    }
  });

  it('writes deepseek32 metadata with the types llama.cpp reads and every tensor with its ggml shape', () => {
    const file = path.join(dir, 'tiny-ds32.gguf');
    const res = convertDeepseekToGguf(fixture, file, { arch: 'auto' });
    assert.equal(res.arch, 'deepseek32');
    assert.deepEqual(res.warnings, []);
    const g = readGguf(file);
    const m = (k: string): unknown => g.metadata.get(k);
    const u32 = (k: string, want: number): void => {
      assert.equal(g.types.get(k), GgufValueType.UINT32, k);
      assert.equal(m(k), want, k);
    };
    const f32 = (k: string, want: number): void => {
      assert.equal(g.types.get(k), GgufValueType.FLOAT32, k);
      assert.equal(m(k), Math.fround(want), k);
    };
    assert.equal(m('general.architecture'), 'deepseek32');
    u32('deepseek32.block_count', 3);
    u32('deepseek32.context_length', 512);
    u32('deepseek32.embedding_length', 64);
    u32('deepseek32.feed_forward_length', 128);
    u32('deepseek32.attention.head_count', 4);
    u32('deepseek32.attention.head_count_kv', 1);
    u32('deepseek32.attention.q_lora_rank', 32);
    u32('deepseek32.attention.kv_lora_rank', 32);
    u32('deepseek32.attention.key_length', 32 + 8);
    u32('deepseek32.attention.value_length', 32);
    u32('deepseek32.attention.key_length_mla', 16 + 8);
    u32('deepseek32.attention.value_length_mla', 16);
    u32('deepseek32.rope.dimension_count', 8);
    u32('deepseek32.leading_dense_block_count', 1);
    u32('deepseek32.expert_count', 8);
    u32('deepseek32.expert_used_count', 2);
    u32('deepseek32.expert_shared_count', 1);
    u32('deepseek32.expert_feed_forward_length', 32);
    u32('deepseek32.expert_group_count', 4);
    u32('deepseek32.expert_group_used_count', 2);
    u32('deepseek32.expert_gating_func', 2);
    u32('deepseek32.attention.indexer.head_count', 4);
    u32('deepseek32.attention.indexer.key_length', 16);
    u32('deepseek32.attention.indexer.top_k', 16);
    u32('deepseek32.rope.scaling.original_context_length', 64);
    f32('deepseek32.expert_weights_scale', 2.5);
    f32('deepseek32.rope.freq_base', 10000);
    f32('deepseek32.attention.layer_norm_rms_epsilon', 1e-6);
    f32('deepseek32.rope.scaling.factor', 8);
    f32('deepseek32.rope.scaling.yarn_log_multiplier', 0.1);
    f32('deepseek32.rope.scaling.yarn_beta_fast', 32);
    f32('deepseek32.rope.scaling.yarn_beta_slow', 1);
    assert.equal(m('deepseek32.rope.scaling.type'), 'yarn');
    assert.equal(m('deepseek32.expert_weights_norm'), true);
    assert.equal(m('tokenizer.ggml.model'), 'gpt2');
    assert.equal((m('tokenizer.ggml.tokens') as string[]).length, 512);
    assert.equal(g.arrayTypes.get('tokenizer.ggml.token_type'), GgufValueType.INT32);
    assert.equal(g.arrayTypes.get('tokenizer.ggml.merges'), GgufValueType.STRING);

    const ne = new Map(g.tensors.map((t) => [t.name, t.ne]));
    const expectNe = (name: string, want: number[]): void => assert.deepEqual(ne.get(name), want, name);
    expectNe('token_embd.weight', [64, 512]);
    expectNe('output.weight', [64, 512]);
    expectNe('output_norm.weight', [64]);
    expectNe('blk.0.attn_q_a.weight', [64, 32]);
    expectNe('blk.0.attn_q_b.weight', [32, 4 * 24]);
    expectNe('blk.0.attn_kv_a_mqa.weight', [64, 32 + 8]);
    expectNe('blk.0.attn_k_b.weight', [16, 32, 4]); // {nope, kv_lora, heads}
    expectNe('blk.0.attn_v_b.weight', [32, 16, 4]); // {kv_lora, v, heads}
    expectNe('blk.0.attn_output.weight', [4 * 16, 64]);
    expectNe('blk.0.indexer.attn_q_b.weight', [32, 4 * 16]);
    expectNe('blk.0.indexer.attn_k.weight', [64, 16]);
    expectNe('blk.0.indexer.k_norm.weight', [16]);
    expectNe('blk.0.indexer.k_norm.bias', [16]);
    expectNe('blk.0.indexer.proj.weight', [64, 4]);
    expectNe('blk.0.ffn_gate.weight', [64, 128]);
    expectNe('blk.0.ffn_down.weight', [128, 64]);
    expectNe('blk.1.ffn_gate_inp.weight', [64, 8]);
    expectNe('blk.1.exp_probs_b.bias', [8]);
    expectNe('blk.1.ffn_gate_exps.weight', [64, 32, 8]);
    expectNe('blk.1.ffn_up_exps.weight', [64, 32, 8]);
    expectNe('blk.1.ffn_down_exps.weight', [32, 64, 8]);
    expectNe('blk.1.ffn_gate_shexp.weight', [64, 32]);
    expectNe('blk.2.ffn_down_shexp.weight', [32, 64]);
    assert.equal(g.tensors.length, 3 + 3 * (10 + 5) + 3 + 2 * 8);
    assert.ok(g.tensors.every((t) => t.type === GgmlType.F32));

    // expert e of the stacked tensor is HF's experts.e, and the other tensors are copied verbatim
    const exps = readGgufTensor(file, g, 'blk.2.ffn_down_exps.weight');
    const ex = fixture.weights.layers[2]!.mlp;
    assert.equal(ex.kind, 'moe');
    if (ex.kind === 'moe') {
      const size = 64 * 32;
      for (const e of [0, 5, 7]) assert.deepEqual(exps.subarray(e * size, (e + 1) * size), ex.weights.experts[e]!.downProj.data);
      assert.deepEqual(readGgufTensor(file, g, 'blk.2.exp_probs_b.bias'), ex.weights.eScoreCorrectionBias!.data);
    }
    assert.deepEqual(readGgufTensor(file, g, 'blk.1.indexer.k_norm.bias'), fixture.weights.layers[1]!.attn.indexer!.kNormBias.data);
    assert.deepEqual(readGgufTensor(file, g, 'blk.1.attn_k_b.weight'), splitKvB(fixture.weights.layers[1]!.attn.kvBProj, heads, nope, v).kB);
  });

  it('deepseek2 drops the indexer, F16 keeps norms, biases and the router in F32', () => {
    const file = path.join(dir, 'tiny-ds2-f16.gguf');
    const res = convertDeepseekToGguf(fixture, file, { arch: 'deepseek2', dtype: 'F16' });
    assert.equal(res.indexerDropped, true);
    const g = readGguf(file);
    assert.equal(g.metadata.get('general.architecture'), 'deepseek2');
    assert.equal(g.metadata.get('general.file_type'), 1);
    assert.ok(![...g.metadata.keys()].some((k) => k.includes('indexer')));
    assert.ok(!g.tensors.some((t) => t.name.includes('indexer')));
    const type = new Map(g.tensors.map((t) => [t.name, t.type]));
    assert.equal(type.get('blk.1.ffn_gate_inp.weight'), GgmlType.F32);
    assert.equal(type.get('blk.1.exp_probs_b.bias'), GgmlType.F32);
    assert.equal(type.get('blk.0.attn_norm.weight'), GgmlType.F32);
    assert.equal(type.get('blk.0.attn_k_b.weight'), GgmlType.F16);
    assert.equal(type.get('blk.1.ffn_up_exps.weight'), GgmlType.F16);
    assert.equal(type.get('token_embd.weight'), GgmlType.F16);
  });

  it("Q8_0 / Q4_0: the engine quantiser's blocks for every weight, the embedding F16, router and norms F32", () => {
    // Every row length a multiple of 32 (Q types need whole blocks along ne0).
    const cfg = {
      ...tinyHfConfig(),
      hidden_size: 64,
      intermediate_size: 96,
      moe_intermediate_size: 32,
      q_lora_rank: 64,
      kv_lora_rank: 32,
      qk_nope_head_dim: 32,
      v_head_dim: 32,
      index_head_dim: 32,
    };
    const mdir = path.join(dir, 'q-model');
    writeCheckpoint(mdir, cfg, randomCheckpoint(cfg, { seed: 3 }), { dtype: 'BF16' });
    const model = loadModel(mdir);
    const layer = at(model.weights.layers, 1, 'layer');
    const attn = layer.attn;
    const mlp = layer.mlp;
    assert.ok(mlp.kind === 'moe');
    const deq = (data: Float32Array, cols: number, bits: 4 | 8): Float32Array => dequantizeMatrix(quantizeMatrix(data, data.length / cols, cols, bits));
    for (const [dtype, type, bits] of [
      ['Q8_0', GgmlType.Q8_0, 8],
      ['Q4_0', GgmlType.Q4_0, 4],
    ] as const) {
      const file = path.join(dir, `q-${dtype}.gguf`);
      convertDeepseekToGguf(model, file, { dtype });
      const g = readGguf(file);
      const types = new Map(g.tensors.map((t) => [t.name, t.type]));
      assert.equal(g.metadata.get('general.file_type'), dtype === 'Q8_0' ? 7 : 2);
      assert.equal(types.get('token_embd.weight'), GgmlType.F16);
      assert.equal(types.get('blk.1.ffn_gate_inp.weight'), GgmlType.F32);
      assert.equal(types.get('blk.1.attn_norm.weight'), GgmlType.F32);
      for (const name of ['output.weight', 'blk.0.attn_q_b.weight', 'blk.1.attn_k_b.weight', 'blk.1.ffn_down_exps.weight', 'blk.1.indexer.proj.weight']) {
        assert.equal(types.get(name), type, name);
      }
      assert.deepEqual(
        readGgufTensor(file, g, 'token_embd.weight'),
        model.weights.embedTokens.data.map((x) => f16ToFloat32(float32ToF16(x))),
      );
      assert.ok(attn.query.kind === 'lora');
      assert.deepEqual(readGgufTensor(file, g, 'blk.1.attn_q_b.weight'), deq(attn.query.qBProj.data, 64, bits));
      const { kB } = splitKvB(attn.kvBProj, 2, 32, 32);
      assert.deepEqual(readGgufTensor(file, g, 'blk.1.attn_k_b.weight'), deq(kB, 32, bits));
      assert.deepEqual(readGgufTensor(file, g, 'blk.1.ffn_down_exps.weight'), deq(stackMatrices(mlp.weights.experts.map((e) => e.downProj)), 32, bits));
    }
  });

  it('a lazily read model (one layer in memory at a time) converts to the same bytes', () => {
    const eager = path.join(dir, 'eager.gguf');
    const lazy = path.join(dir, 'lazy.gguf');
    convertDeepseekToGguf(fixture, eager, { dtype: 'F16' });
    const model = lazyModel(FIXTURE_DIR);
    try {
      convertDeepseekToGguf(model, lazy, { dtype: 'F16' });
    } finally {
      model.close();
    }
    assert.ok(readFileSync(lazy).equals(readFileSync(eager)));
  });

  it('refuses what llama.cpp cannot run', () => {
    assert.throws(() => convertDeepseekToGguf({ ...fixture, config: { ...c, indexer: null } }, path.join(dir, 'x.gguf'), { arch: 'deepseek32' }), /indexer/);
    assert.throws(
      () => convertDeepseekToGguf({ ...fixture, config: { ...c, moe: { ...c.moe!, moeLayerFreq: 2 } } }, path.join(dir, 'x.gguf')),
      /moe_layer_freq/,
    );
  });

  it('builds a byte-level vocabulary of exactly vocab_size unique tokens with the specials as control tokens', () => {
    const v2 = syntheticVocab(600, [0, 1]);
    assert.equal(v2.tokens.length, 600);
    assert.equal(new Set(v2.tokens).size, 600);
    assert.deepEqual(v2.types.slice(0, 3), [TOKEN_TYPE.control, TOKEN_TYPE.control, TOKEN_TYPE.normal]);
    const alphabet = byteLevelAlphabet();
    assert.equal(new Set(alphabet).size, 256);
    assert.equal(alphabet[10], 'Ċ'); // "\n", so llama.cpp finds a newline token
    assert.equal(alphabet[65], 'A');
    assert.equal(v2.tokens[2 + 10], 'Ċ');
    assert.equal(v2.tokens[599], '<t599>');
  });
});
