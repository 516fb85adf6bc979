// --kv-cache-dtype auto = the checkpoint's dtype (vLLM's rule): the decision table, without loading weights.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeKvCacheDtype, resolveKvCacheDtype } from '../../../src/engine/kv_cache_dtype_auto.ts';
import type { DType } from '../../../src/engine/checkpoint/safetensors.ts';

const weights = (entries: [DType, number][]) => new Map(entries);
const F32_WEIGHTS = weights([['F32', 1000]]);
const BF16_WEIGHTS = weights([
  ['BF16', 900],
  ['F32', 100],
]);

describe('resolveKvCacheDtype', () => {
  it('auto follows config.json torch_dtype: float32 stays float32, half and FP8 checkpoints get bfloat16', () => {
    const cases: [string, string][] = [
      ['float32', 'float32'],
      ['torch.float32', 'float32'],
      ['bfloat16', 'bfloat16'],
      ['float16', 'bfloat16'],
      ['float8_e4m3fn', 'bfloat16'],
    ];
    for (const [torchDtype, want] of cases) {
      // The weights say the opposite: torch_dtype wins when it names a dtype.
      const stored = want === 'float32' ? BF16_WEIGHTS : F32_WEIGHTS;
      const r = resolveKvCacheDtype('auto', { torchDtype, parametersByDtype: stored });
      assert.equal(r.dtype, want, torchDtype);
      assert.equal(describeKvCacheDtype(r), `auto -> ${want} (checkpoint dtype ${torchDtype.replace('torch.', '')})`);
    }
  });

  it('without a known torch_dtype, the dtype holding most weight parameters decides', () => {
    assert.equal(resolveKvCacheDtype('auto', { torchDtype: 'unknown', parametersByDtype: BF16_WEIGHTS }).dtype, 'bfloat16');
    assert.equal(resolveKvCacheDtype('auto', { torchDtype: 'unknown', parametersByDtype: F32_WEIGHTS }).dtype, 'float32');
    const fp8 = weights([
      ['F8_E4M3', 5000],
      ['BF16', 300],
      ['F32', 400],
    ]);
    const r = resolveKvCacheDtype('auto', { torchDtype: 'unknown', parametersByDtype: fp8 });
    assert.equal(r.dtype, 'bfloat16');
    assert.match(r.reason, /mostly F8_E4M3/);
  });

  it('an explicit dtype wins over the checkpoint', () => {
    for (const requested of ['float32', 'bfloat16', 'fp8'] as const) {
      for (const torchDtype of ['float32', 'bfloat16']) {
        const r = resolveKvCacheDtype(requested, { torchDtype, parametersByDtype: F32_WEIGHTS });
        assert.equal(r.dtype, requested);
        assert.equal(describeKvCacheDtype(r), `${requested} (--kv-cache-dtype ${requested})`);
      }
    }
  });
});
