// The attention and indexer graphs read bf16 / fp8 pools in place (gather, then widen the gathered rows).
// Oracle: the float32 graph over a float32 pool holding the JS codec's dequantised rows (kv_row_codec.ts),
// so this checks that the in-graph decoding equals the storage's own.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { E4M3_VALUES } from '../../../src/common/numeric/fp8_e4m3.ts';
import { bf16BitsToFloat32 } from '../../../src/common/numeric/bf16.ts';
import { buildDsaDecodeGraph } from '../../../src/engine/model/dsa_decode.ts';
import { buildDsaRowsGraph } from '../../../src/engine/model/dsa_rows.ts';
import { buildIndexerSelectGraph } from '../../../src/engine/model/indexer.ts';
import { indexerKeyPoolFeed, indexerKeySpanFeed, latentPoolFeed } from '../../../src/engine/model/kv_cache_graph.ts';
import { buildAttentionGraph } from '../../../src/engine/model/mla.ts';
import { floatTensor, GraphSession, int32Tensor, uint16Tensor, uint8Tensor, type Feed } from '../../../src/engine/onnx/session.ts';
import type { ModelConfig } from '../../../src/engine/checkpoint/types.ts';
import { PagedKVStorage } from '../../../src/kvcache/paged_kv_storage.ts';
import type { PagedKVStorageOptions } from '../../../src/kvcache/types.ts';
import type { KVCacheDtype } from '../../../src/kvcache/kv_dtype.ts';
import { seededRandom } from '../kvcache/helpers.ts';

const H = 2;
const Hi = 3;
const Di = 16;
const P = 40; // slots
const B = 2;
const K = 7;
const TOPK = 4;

function config(kvLoraRank: number, qkRopeHeadDim: number): ModelConfig {
  return { numAttentionHeads: H, kvLoraRank, qkRopeHeadDim, indexer: { nHeads: Hi, headDim: Di, topk: TOPK } } as unknown as ModelConfig;
}

function randoms(n: number, seed: number, scale = 1): Float32Array {
  const rand = seededRandom(seed);
  return Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
}

function filledStorage(dtype: KVCacheDtype, L: number, dr: number): PagedKVStorage {
  const s = new PagedKVStorage({
    numLayers: 1,
    numBlocks: P / 8,
    blockSize: 8,
    latentDim: L + dr,
    ropeDim: dr,
    indexerDim: Di,
    dtype,
  } as PagedKVStorageOptions);
  const slots = Int32Array.from({ length: P }, (_, i) => i);
  s.writeLatent(0, slots, randoms(P * (L + dr), 1, 3));
  s.writeIndexerKey(0, slots, randoms(P * Di, 2));
  return s;
}

/** float32 copies of what `s` holds (dequantised; fp8 indexer keys in the stored, rotated basis). */
function dequantisedCopy(s: PagedKVStorage): { latent: Float32Array; keys: Float32Array } {
  const slots = Int32Array.from({ length: P }, (_, i) => i);
  const pool = s.indexerKeyPool(0);
  const keys = pool.dtype === 'fp8' ? Float32Array.from(pool.keys, (c, i) => E4M3_VALUES[c]! * pool.scales[Math.floor(i / Di)]!) : s.readIndexerKey(0, slots);
  return { latent: s.readLatent(0, slots), keys };
}

async function runOnce(model: Uint8Array, feed: Feed, output: string): Promise<Float32Array | Int32Array> {
  const session = await GraphSession.create('t', model, { numThreads: 1 });
  try {
    return (await session.runTyped(feed, [output]))[0] as Float32Array | Int32Array;
  } finally {
    await session.release();
  }
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return m / scale;
}

const idx = Int32Array.from({ length: B * K }, (_, i) => (i * 11) % P);
const qpos = (S: number): Int32Array => Int32Array.from({ length: B * S }, (_, i) => K - S + (i % S)); // last S positions

for (const [L, dr] of [
  [256, 16],
  [200, 8],
] as const) {
  describe(`latent pool L = ${L}, dr = ${dr}`, () => {
    for (const dtype of ['bfloat16', 'fp8'] as const) {
      it(`${dtype}: sparse MLA over the typed pool equals float32 attention over the decoded rows`, async () => {
        const s = filledStorage(dtype, L, dr);
        const C = L + dr;
        const common = {
          q: floatTensor(randoms(B * H * C, 3, 0.1), [B, 1, H, C]),
          idx: int32Tensor(idx, [B, K]),
          qpos: int32Tensor(qpos(1), [B, 1]),
        };
        const quantised = await runOnce(
          buildAttentionGraph(config(L, dr), 'dense', dtype),
          { ...common, ...latentPoolFeed(s.latentPool(0), config(L, dr)) },
          'o',
        );
        const ref = dequantisedCopy(s);
        const f32 = await runOnce(buildAttentionGraph(config(L, dr), 'dense'), { ...common, cache: floatTensor(ref.latent, [P, C]) }, 'o');
        assert.equal(quantised.length, B * H * L);
        const d = maxRelDiff(quantised as Float32Array, f32 as Float32Array);
        assert.ok(d < 1e-6, `${d}`);
      });
    }

    it('fp8: the DSA decode graph (latent rows read in two parts, scales folded) equals float32 over the decoded rows', async () => {
      const s = filledStorage('fp8', L, dr);
      const C = L + dr;
      const cfg = config(L, dr);
      const common = {
        q: floatTensor(randoms(B * H * C, 3, 0.1), [B, 1, H, C]),
        iq: floatTensor(randoms(B * Hi * Di, 4), [B, 1, Hi, Di]),
        iw: floatTensor(randoms(B * Hi, 5), [B, 1, Hi]),
        idx: int32Tensor(idx, [B, K]),
        qpos: int32Tensor(qpos(1), [B, 1]),
      };
      const feed = { ...common, ...latentPoolFeed(s.latentPool(0), cfg), ...indexerKeyPoolFeed(s.indexerKeyPool(0), Di) };
      const ref = dequantisedCopy(s);
      const refFeed = { ...common, cache: floatTensor(ref.latent, [P, C]), index_cache: floatTensor(ref.keys, [P, Di]) };
      const [fp8Sel, f32Sel] = [
        await runOnce(buildDsaDecodeGraph(cfg, cfg.indexer!, 'fp8'), feed, 'sel'),
        await runOnce(buildDsaDecodeGraph(cfg, cfg.indexer!), refFeed, 'sel'),
      ];
      assert.deepEqual(
        [...fp8Sel].sort((a, b) => a - b),
        [...f32Sel].sort((a, b) => a - b),
      );
      const quantised = await runOnce(buildDsaDecodeGraph(cfg, cfg.indexer!, 'fp8'), feed, 'o');
      const f32 = await runOnce(buildDsaDecodeGraph(cfg, cfg.indexer!), refFeed, 'o');
      assert.equal(quantised.length, B * H * L);
      const d = maxRelDiff(quantised as Float32Array, f32 as Float32Array);
      assert.ok(d < 1e-6, `${d}`);
    });

    it('fp8: the short-chunk DSA graph (dsa_rows, S = 2) equals float32 over the decoded rows', async () => {
      const S = 2;
      const s = filledStorage('fp8', L, dr);
      const C = L + dr;
      const cfg = config(L, dr);
      const common = {
        q: floatTensor(randoms(B * S * H * C, 6, 0.1), [B, S, H, C]),
        iq: floatTensor(randoms(B * S * Hi * Di, 7), [B, S, Hi, Di]),
        iw: floatTensor(randoms(B * S * Hi, 8), [B, S, Hi]),
        idx: int32Tensor(idx, [B, K]),
        qpos: int32Tensor(qpos(S), [B, S]),
      };
      const feed = { ...common, ...latentPoolFeed(s.latentPool(0), cfg), ...indexerKeyPoolFeed(s.indexerKeyPool(0), Di) };
      const ref = dequantisedCopy(s);
      const refFeed = { ...common, cache: floatTensor(ref.latent, [P, C]), index_cache: floatTensor(ref.keys, [P, Di]) };
      const [fp8Sel, f32Sel] = [
        await runOnce(buildDsaRowsGraph(cfg, cfg.indexer!, 'fp8'), feed, 'sel'),
        await runOnce(buildDsaRowsGraph(cfg, cfg.indexer!), refFeed, 'sel'),
      ];
      assert.deepEqual(
        [...fp8Sel].sort((a, b) => a - b),
        [...f32Sel].sort((a, b) => a - b),
      );
      const quantised = await runOnce(buildDsaRowsGraph(cfg, cfg.indexer!, 'fp8'), feed, 'o');
      const f32 = await runOnce(buildDsaRowsGraph(cfg, cfg.indexer!), refFeed, 'o');
      assert.equal(quantised.length, B * S * H * L);
      const d = maxRelDiff(quantised as Float32Array, f32 as Float32Array);
      assert.ok(d < 1e-6, `${d}`);
    });
  });
}

describe('indexer key pool', () => {
  for (const dtype of ['bfloat16', 'fp8'] as const) {
    for (const decode of [false, true]) {
      it(`${dtype}, ${decode ? 'decode' : 'prefill'} graph: the selection over the typed pool equals the float32 one over the decoded keys`, async () => {
        const s = filledStorage(dtype, 32, 8);
        const S = decode ? 1 : 3;
        const common = {
          iq: floatTensor(randoms(B * S * Hi * Di, 4), [B, S, Hi, Di]),
          idx: int32Tensor(idx, [B, K]),
          iw: floatTensor(randoms(B * S * Hi, 5), [B, S, Hi]),
          qpos: int32Tensor(qpos(S), [B, S]),
        };
        const sorted = (sel: Float32Array | Int32Array): number[][] =>
          Array.from({ length: B * S }, (_, r) => Array.from(sel.subarray(r * TOPK, (r + 1) * TOPK)).sort((a, b) => a - b));
        const indexer = config(32, 8).indexer!;
        const quantised = await runOnce(buildIndexerSelectGraph(indexer, decode, dtype), { ...common, ...indexerKeyPoolFeed(s.indexerKeyPool(0), Di) }, 'sel');
        const f32 = await runOnce(buildIndexerSelectGraph(indexer, decode), { ...common, index_cache: floatTensor(dequantisedCopy(s).keys, [P, Di]) }, 'sel');
        assert.equal(quantised.length, B * S * TOPK);
        assert.deepEqual(sorted(quantised), sorted(f32));
      });
    }
  }
});

describe('DSA decode of one sequence scoring its keys in place over a span of slots', () => {
  for (const dtype of ['float32', 'bfloat16', 'fp8'] as const) {
    it(`${dtype}: the graph fed a view of the key pool span equals the one gathering the keys`, async () => {
      const [L, dr] = [32, 8];
      const s = filledStorage(dtype, L, dr);
      const T = 24; // > TOPK: the indexer selects
      // Positions in scattered slots between 3 and 38 (not in order, not all of the span).
      const slots = Int32Array.from({ length: T }, (_, i) => 3 + ((i * 11) % 35));
      const cfg = config(L, dr);
      const common = {
        q: floatTensor(randoms(H * (L + dr), 6, 0.1), [1, 1, H, L + dr]),
        iq: floatTensor(randoms(Hi * Di, 7), [1, 1, Hi, Di]),
        iw: floatTensor(randoms(Hi, 8), [1, 1, Hi]),
        idx: int32Tensor(slots, [1, T]),
        qpos: int32Tensor(Int32Array.of(T - 1), [1, 1]),
        ...latentPoolFeed(s.latentPool(0), cfg),
      };
      const run = async (inPlace: boolean): Promise<[Float32Array, Int32Array]> => {
        const session = await GraphSession.create('t', buildDsaDecodeGraph(cfg, cfg.indexer!, dtype, inPlace), { numThreads: 1 });
        try {
          const keys = inPlace ? indexerKeySpanFeed(s.indexerKeyPool(0), Di, 3, 35) : indexerKeyPoolFeed(s.indexerKeyPool(0), Di);
          const [o, sel] = await session.runTyped({ ...common, ...keys }, ['o', 'sel']);
          return [o as Float32Array, sel as Int32Array];
        } finally {
          await session.release();
        }
      };
      const [span, gathered] = [await run(true), await run(false)];
      assert.deepEqual(
        Array.from(span[1]).sort((a, b) => a - b),
        Array.from(gathered[1]).sort((a, b) => a - b),
      );
      assert.deepEqual(span[0], gathered[0]);
    });
  }
});

describe('e4m3 decoding inside the graph', () => {
  it('gives every finite code its exact value (subnormals included), times its group scale', async () => {
    // One latent row holding all 254 finite codes (L = 254: groups of 128 and a ragged 126) attended alone:
    // softmax over one key is exactly 1, so o = the decoded latent values.
    const L = 254;
    const dr = 2;
    const codes = Uint8Array.from({ length: 256 }, (_, c) => c).filter((c) => (c & 0x7f) !== 0x7f);
    const scales = Float32Array.of(0.5, 3);
    const rope = Uint16Array.of(0x3f80, 0xc040); // 1, -3
    const o = await runOnce(
      buildAttentionGraph({ ...config(L, dr), numAttentionHeads: 1 } as ModelConfig, 'dense', 'fp8'),
      {
        q: floatTensor(new Float32Array(L + dr), [1, 1, 1, L + dr]),
        idx: int32Tensor(Int32Array.of(0), [1, 1]),
        qpos: int32Tensor(Int32Array.of(0), [1, 1]),
        cache: uint8Tensor(codes, [1, L]),
        cache_scale: floatTensor(scales, [1, 2]),
        cache_rope: uint16Tensor(rope, [1, dr]),
      },
      'o',
    );
    codes.forEach((c, j) => assert.ok(o[j] === E4M3_VALUES[c]! * scales[j < 128 ? 0 : 1]!, `code 0x${c.toString(16)}: ${o[j]}`));
    assert.equal(bf16BitsToFloat32(rope[1]!), -3);
  });
});
