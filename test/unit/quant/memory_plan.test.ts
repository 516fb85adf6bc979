import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { benchLite } from '../../../bench/models.ts';
import { EngineError } from '../../../src/common/errors.ts';
import type { MachineMemory } from '../../../src/common/machine_memory.ts';
import { parseModelConfig } from '../../../src/engine/checkpoint/config.ts';
import { numKvBlocksFor } from '../../../src/engine/model_runner.ts';
import { PagedKVStorage } from '../../../src/kvcache/paged_kv_storage.ts';
import {
  checkMemoryPlan,
  describePlan,
  fittingLoaderThreads,
  HEADROOM_FRACTION,
  MALLOC_SLACK_FRACTION,
  QUANTISER_ARENA_BYTES,
  RUNTIME_BASE_BYTES,
  planMemory,
  weightBytes,
  type MemoryPlanInput,
} from '../../../src/engine/memory_plan.ts';

const GiB = 2 ** 30;
const lite = parseModelConfig(benchLite);
const machine24: MachineMemory = { bytes: 24 * GiB, source: 'os.totalmem()' };
const input = (quantization: MemoryPlanInput['quantization'], kvCacheBytes = GiB): MemoryPlanInput => ({
  config: lite,
  quantization,
  kvCacheBytes,
  maxNumBatchedTokens: 2048,
  maxAttentionScoreElements: 1 << 25,
  loaderThreads: 2,
});

describe('memory plan', () => {
  it('weights of DeepSeek-V2-Lite at each mode follow from the config alone', () => {
    const none = weightBytes(lite, 'none');
    const int8 = weightBytes(lite, 'int8');
    const int4 = weightBytes(lite, 'int4');
    assert.ok(Math.abs(none.numParameters - 15.706e9) < 0.01e9, `${none.numParameters} parameters`);
    assert.equal(none.total, none.numParameters * 4);
    // Linear weights as ORT holds them: 40 bytes per 32 (int8) or 24 per 32 (int4) (every K here is a
    // multiple of 32); the 209.7M embedding as float16; norms and router gates float32.
    const embed = 102400 * 2048;
    const small = 27 * 2 * 2048 + 27 * 512 + 2048 + 26 * 64 * 2048;
    const linear = none.numParameters - embed - small;
    assert.equal(int8.total, (linear * 40) / 32 + embed * 2 + small * 4);
    assert.equal(int4.total, (linear * 24) / 32 + embed * 2 + small * 4);
    // Sessions hold everything but the float16 embedding table.
    assert.equal(int4.inSessions, int4.total - embed * 2);
    // The largest graph is one layer's 64 routed experts, 3 x 64 x 1408 x 2048 weights, whose ModelProto
    // carries 16 bytes of int4 codes + a float32 scale per 32; the largest load group is the embedding.
    assert.equal(int4.largestGraphRaw, (3 * 64 * 1408 * 2048 * 20) / 32);
    assert.equal(int8.largestGraphRaw, (3 * 64 * 1408 * 2048 * 36) / 32);
    assert.equal(int4.largestGroupRaw, embed * 2);
    assert.ok(int4.total / GiB > 11.2 && int4.total / GiB < 11.3, `${int4.total / GiB} GiB`);
  });

  it('refuses float32 V2-Lite on 24 GiB with the numbers and the settings that fit', () => {
    assert.throws(
      () => checkMemoryPlan(input('none'), machine24),
      (e: unknown) => {
        assert.ok(e instanceof EngineError && e.code === 'DSV_ERR_CONFIG');
        assert.match(e.message, /^the model does not fit in memory: weights 58\.5 GiB \(float32\) \+ malloc slack 26\.0 GiB \+ KV cache 1\.0 GiB/);
        // Float32 loads in this thread: no read-ahead, no quantiser arenas.
        assert.match(e.message, /max\(load \d+\.\d GiB \(2 x \d+\.\d GiB weight groups \+ ModelProto \d+\.\d GiB\), activations/);
        assert.match(e.message, /of 22\.1 GiB usable \(24\.0 GiB from os\.totalmem\(\)\)/);
        // ORT holds int8 V2-Lite in 18.4 GiB, plus 45% malloc slack: no KV budget makes it fit 22.1 GiB.
        assert.match(e.message, /would fit: --quantization int4 \(20\.2 GiB\)$/);
        return true;
      },
    );
  });

  it('suggests a smaller KV cache when that is what fits', () => {
    // int4 does not fit 24 GiB with 6 GiB of KV (19.3 GiB without it), but does with less; nothing else fits.
    const plan = planMemory(input('int4', 6 * GiB), machine24);
    assert.equal(plan.fits, false);
    assert.throws(
      () => checkMemoryPlan(input('int4', 6 * GiB), machine24),
      (e: unknown) => {
        const m = (e as Error).message;
        const room = Math.floor((plan.usable - (plan.total - plan.kvCache)) / 2 ** 20);
        assert.ok(room > 2 * 1024 && room < 4 * 1024, `${room} MiB`);
        assert.ok(m.endsWith(`; would fit: --quantization int4 with --kv-cache-memory ${room}MiB or less`), m);
        return true;
      },
    );
  });

  it('adds up its measured parts, each named in the log line', () => {
    const p = planMemory(input('int4', GiB / 4), machine24);
    const w = weightBytes(lite, 'int4');
    assert.equal(p.mallocSlack, Math.ceil(w.inSessions * MALLOC_SLACK_FRACTION));
    // Two loader threads: two groups read ahead, the one being compiled, the previous one until collected.
    assert.deepEqual(p.load, {
      groups: 4,
      groupBytes: w.largestGroupRaw,
      modelProto: w.largestGraphRaw,
      quantiserArenas: 2 * QUANTISER_ARENA_BYTES,
      total: 4 * w.largestGroupRaw + w.largestGraphRaw + 2 * QUANTISER_ARENA_BYTES,
    });
    assert.equal(p.total, RUNTIME_BASE_BYTES + w.total + p.mallocSlack + GiB / 4 + Math.max(p.load.total, p.activations));
    assert.ok(p.load.total > p.activations, 'loading, not a step, is the transient that counts for V2-Lite at 2048 tokens');
    assert.equal(
      describePlan(p),
      'weights 11.2 GiB (int4) + malloc slack 4.9 GiB + KV cache 256 MiB + runtime 256 MiB + max(load 2.9 GiB' +
        ' (4 x 400 MiB weight groups + ModelProto 330 MiB + quantiser arenas 1.0 GiB), activations 1.7 GiB)' +
        ' = 19.5 GiB of 22.1 GiB usable (24.0 GiB from os.totalmem())',
    );
    // Measured peaks of this load: from the cache 15.22-15.24 GiB, from BF16 15.83 GiB; from the cache with
    // 2 MiB pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1, npm start's default) 18.60 GiB.
    assert.ok(p.total / GiB > 18.6);
    // Without loader threads (a small model quantised in this thread) there is no read-ahead and no arena.
    const inThread = planMemory({ ...input('int4', GiB / 4), loaderThreads: 0 }, machine24);
    assert.equal(inThread.load.total, 2 * w.largestGroupRaw + w.largestGraphRaw);
  });

  it('says so when nothing fits', () => {
    const tiny: MachineMemory = { bytes: 4 * GiB, source: '/x/memory.max' };
    assert.throws(() => checkMemoryPlan(input('int4'), tiny), /no --quantization or --kv-cache-memory setting fits this machine/);
  });

  it('accepts int4 on 24 GiB and refuses int8 at any KV budget; the plan adds up', () => {
    const p = checkMemoryPlan(input('int4', GiB / 2), machine24);
    assert.equal(p.total, p.runtimeBase + p.weights + p.mallocSlack + p.kvCache + Math.max(p.load.total, p.activations));
    assert.equal(p.usable, Math.floor(24 * GiB * (1 - HEADROOM_FRACTION)));
    const int8 = planMemory(input('int8', 0), machine24);
    assert.ok(!int8.fits && int8.total - int8.usable > 5 * GiB, `${int8.total / GiB} GiB`);
  });

  it('with the native kernels, quantised routed experts are counted once (packed in C, no ONNX Runtime copy)', () => {
    const ort = planMemory(input('int4'), machine24);
    const native = planMemory({ ...input('int4'), nativeKernels: true }, machine24);
    const experts = weightBytes(lite, 'int4').total - weightBytes(lite, 'int4', 0, true).total;
    assert.ok(experts > 9 * GiB, `${experts / GiB} GiB of routed experts as ORT holds them`); // 24 bytes per 32 weights
    assert.equal(native.weights, ort.weights - experts);
    // the copies: every linear weight of the layers and lm_head at 16 + 2 bytes per 32 (codes + float16 scale)
    const linearWeights = 15.7e9 - lite.vocabSize * lite.hiddenSize; // all but the embedding
    assert.ok(Math.abs(native.nativeWeights - (linearWeights * 18) / 32) < 0.02 * native.nativeWeights, `${native.nativeWeights / GiB} GiB`);
    assert.ok(native.total < ort.total - 2 * GiB, `${native.total / GiB} vs ${ort.total / GiB} GiB`);
  });

  it('gives way with fewer loader threads when the default count does not fit, and keeps it when none does', () => {
    const int8 = { ...input('int8', GiB / 4), nativeKernels: true };
    const roomFor = (threads: number): MachineMemory => ({
      bytes: Math.ceil(planMemory({ ...int8, loaderThreads: threads }, machine24).total / (1 - HEADROOM_FRACTION)) + 1,
      source: 'test',
    });
    assert.equal(fittingLoaderThreads(int8, 4, roomFor(4)), 4);
    assert.equal(fittingLoaderThreads(int8, 4, roomFor(1)), 1);
    assert.equal(fittingLoaderThreads(int8, 4, roomFor(0)), 0);
    assert.equal(fittingLoaderThreads(int8, 4, { bytes: 4 * GiB, source: 'test' }), 4);
  });
});

describe('KV blocks for the memory plan', () => {
  it('numKvBlocksFor sizes the cache at the chosen --kv-cache-dtype, so the plan counts KV bytes at that dtype', () => {
    const dsa = parseModelConfig(benchLite);
    const at = (kvCacheDtype: 'float32' | 'bfloat16' | 'fp8') => {
      const { shape, numBlocks } = numKvBlocksFor(dsa, { kvCacheMemory: GiB, kvCacheDtype });
      assert.equal(shape.dtype, kvCacheDtype);
      const bytes = numBlocks * PagedKVStorage.bytesPerBlock(shape);
      assert.ok(bytes <= GiB && bytes + PagedKVStorage.bytesPerBlock(shape) > GiB, `${kvCacheDtype}: ${bytes} bytes in ${numBlocks} blocks`);
      return { numBlocks, perBlock: PagedKVStorage.bytesPerBlock(shape) };
    };
    const f32 = at('float32');
    const bf16 = at('bfloat16');
    const fp8 = at('fp8');
    assert.equal(bf16.perBlock * 2, f32.perBlock);
    assert.ok(fp8.perBlock < bf16.perBlock && fp8.numBlocks > bf16.numBlocks && bf16.numBlocks > f32.numBlocks);
  });
});

describe('speculative decoding in the plan', () => {
  it('counts the MTP module (weights at the mode) and its cache layer only when speculation is on', () => {
    const v3 = parseModelConfig({ ...benchLite, num_nextn_predict_layers: 1 });
    for (const mode of ['none', 'int4'] as const) {
      const plain = weightBytes(v3, mode);
      const spec = weightBytes(v3, mode, 1);
      // One more MoE layer plus eh_proj [D, 2D] and the shared head [vocab, D] (lm_head's size).
      const layer = weightBytes(v3, mode).total - weightBytes({ ...v3, numHiddenLayers: v3.numHiddenLayers - 1 }, mode).total;
      assert.ok(spec.total - plain.total > layer, `${mode}: module ${spec.total - plain.total} bytes vs a layer ${layer}`);
      assert.ok(planMemory({ ...input(mode), config: v3, numMtpModules: 1 }, machine24).weights === spec.total);
    }
    const plain = numKvBlocksFor(v3, { kvCacheMemory: GiB, kvCacheDtype: 'float32' });
    const spec = numKvBlocksFor(v3, { kvCacheMemory: GiB, kvCacheDtype: 'float32', speculative: true });
    assert.equal(spec.shape.numLayers, plain.shape.numLayers + 1);
    assert.equal(PagedKVStorage.bytesPerBlock(spec.shape) * plain.shape.numLayers, PagedKVStorage.bytesPerBlock(plain.shape) * spec.shape.numLayers);
    assert.ok(spec.numBlocks < plain.numBlocks, 'the same budget holds fewer blocks');
  });
});
