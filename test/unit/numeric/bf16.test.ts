import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bf16BitsToFloat32, decodeBf16, encodeBf16, float32ToBf16Bits } from '../../../src/common/numeric/bf16.ts';
import { ortRoundTrip, spreadValues } from './ort_cast.ts';

describe('bfloat16 codec', () => {
  it('round-trips every non-NaN code exactly', () => {
    for (let code = 0; code < 65536; code++) {
      const v = bf16BitsToFloat32(code);
      if (Number.isNaN(v)) continue;
      assert.equal(float32ToBf16Bits(v), code);
    }
  });

  it('rounds to nearest even and keeps -0', () => {
    assert.equal(float32ToBf16Bits(1 + 2 ** -8), 0x3f80, 'tie to 1 (even)');
    assert.equal(float32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82, 'tie to 1 + 2^-6 (even)');
    assert.equal(float32ToBf16Bits(Math.fround(1 + 2 ** -8 + 2 ** -20)), 0x3f81);
    assert.equal(float32ToBf16Bits(-0), 0x8000);
    assert.equal(float32ToBf16Bits(1e-45), 0x0000, 'the smallest float32 subnormal rounds to 0');
  });

  it('saturates finite overflow instead of rounding to infinity; NaN stays NaN, inf stays inf', () => {
    assert.equal(float32ToBf16Bits(3.4028234663852886e38), 0x7f7f);
    assert.equal(float32ToBf16Bits(-3.4028234663852886e38), 0xff7f);
    assert.equal(float32ToBf16Bits(Infinity), 0x7f80);
    assert.ok(Number.isNaN(bf16BitsToFloat32(float32ToBf16Bits(NaN))));
  });

  it('bulk encode/decode agree with the scalar codec and with ONNX Runtime Cast(BFLOAT16)', async () => {
    const values = Float32Array.from([...spreadValues(50_000, -130, 127, 5), 0, -0, 1 + 2 ** -8, 65536 + 256]);
    const codes = new Uint16Array(values.length);
    encodeBf16(values, codes);
    const back = new Float32Array(values.length);
    decodeBf16(codes, back);
    values.forEach((v, i) => assert.equal(codes[i], float32ToBf16Bits(v)));
    const ort = await ortRoundTrip(values, 'BFLOAT16');
    let mismatches = 0;
    back.forEach((v, i) => {
      if (!Object.is(v, ort[i])) mismatches++;
    });
    assert.equal(mismatches, 0);
  });
});
