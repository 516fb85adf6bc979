// --kv-cache-dtype auto = float32 on this server (the fastest cache on ONNX Runtime's CPU provider); an
// explicit dtype is taken as given.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeKvCacheDtype, resolveKvCacheDtype } from '../../../src/engine/kv_cache_dtype_auto.ts';

describe('resolveKvCacheDtype', () => {
  it('auto is float32, and the log line says why', () => {
    const r = resolveKvCacheDtype('auto');
    assert.equal(r.dtype, 'float32');
    assert.equal(describeKvCacheDtype(r), 'auto -> float32 (the fastest on the CPU)');
  });

  it('an explicit dtype is taken as given', () => {
    for (const requested of ['float32', 'bfloat16', 'fp8'] as const) {
      const r = resolveKvCacheDtype(requested);
      assert.equal(r.dtype, requested);
      assert.equal(describeKvCacheDtype(r), `${requested} (--kv-cache-dtype ${requested})`);
    }
  });
});
