import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  E4M3_ENCODE_TABLE,
  E4M3_MAX,
  E4M3_NAN,
  E4M3_VALUES,
  e4m3FromF32Bits,
  e4m3TableIndex,
  e4m3ToFloat32,
  float32ToE4m3,
} from '../../../src/common/numeric/fp8_e4m3.ts';
import { ortRoundTrip, spreadValues } from './ort_cast.ts';

const isNanCode = (c: number): boolean => (c & 0x7f) === 0x7f;

describe('float8 e4m3fn codec', () => {
  it('decodes the format: max 448, smallest normal 2^-6, subnormals m * 2^-9, two NaN codes', () => {
    assert.equal(e4m3ToFloat32(0x7e), 448);
    assert.equal(e4m3ToFloat32(0xfe), -448);
    assert.equal(e4m3ToFloat32(0x08), 2 ** -6);
    assert.equal(e4m3ToFloat32(0x01), 2 ** -9);
    assert.equal(e4m3ToFloat32(0x07), 7 * 2 ** -9);
    assert.equal(e4m3ToFloat32(0x38), 1);
    assert.ok(Object.is(e4m3ToFloat32(0x80), -0));
    assert.ok(Number.isNaN(e4m3ToFloat32(0x7f)) && Number.isNaN(e4m3ToFloat32(0xff)));
    assert.equal(E4M3_VALUES.filter((v) => Number.isNaN(v)).length, 2);
  });

  it('round-trips every finite code exactly', () => {
    for (let code = 0; code < 256; code++) {
      if (isNanCode(code)) continue;
      assert.equal(float32ToE4m3(e4m3ToFloat32(code)), code, `code 0x${code.toString(16)}`);
    }
  });

  it('rounds to nearest even, at ties and in the subnormal range', () => {
    assert.equal(float32ToE4m3(2 ** -10), 0x00, 'half the smallest subnormal ties to 0 (even)');
    assert.equal(float32ToE4m3(3 * 2 ** -10), 0x02, '1.5 * 2^-9 ties to 2 * 2^-9 (even)');
    assert.equal(float32ToE4m3(1.0625), 0x38, '1 + 1/16 ties to 1 (mantissa 0 is even)');
    assert.equal(float32ToE4m3(1.1875), 0x3a, '1 + 3/16 ties to 1.25 (even)');
    assert.equal(float32ToE4m3(7.75 * 2 ** -9), 0x08, 'just under 2^-6 rounds up into the smallest normal');
    assert.equal(float32ToE4m3(7.25 * 2 ** -9), 0x07, 'the largest subnormal');
    assert.equal(float32ToE4m3(Math.fround(1.0625 + 2 ** -20)), 0x39, 'above the tie rounds up');
  });

  it('saturates at 448 (overflow and infinities) and never produces NaN from a finite input', () => {
    assert.equal(float32ToE4m3(E4M3_MAX), 0x7e);
    assert.equal(float32ToE4m3(464), 0x7e, 'the tie between 448 and 480 saturates');
    assert.equal(float32ToE4m3(479.9), 0x7e);
    assert.equal(float32ToE4m3(1e6), 0x7e);
    assert.equal(float32ToE4m3(3.4028234663852886e38), 0x7e);
    assert.equal(float32ToE4m3(-1e30), 0xfe);
    assert.equal(float32ToE4m3(Infinity), 0x7e);
    assert.equal(float32ToE4m3(-Infinity), 0xfe);
    assert.equal(float32ToE4m3(NaN), E4M3_NAN);
    for (const v of spreadValues(20_000, -149, 128, 7)) assert.ok(!isNanCode(float32ToE4m3(v)), `${v}`);
  });

  it('keeps the sign of zero and of values that round to zero', () => {
    assert.equal(float32ToE4m3(0), 0x00);
    assert.equal(float32ToE4m3(-0), 0x80);
    assert.equal(float32ToE4m3(-(2 ** -12)), 0x80);
    assert.equal(float32ToE4m3(1e-45), 0x00);
  });

  it('matches ONNX Runtime Cast(FLOAT8E4M3FN) on values over every binade and on every tie', async () => {
    const ties: number[] = [];
    for (let code = 0; code < 0x7e; code++) ties.push((E4M3_VALUES[code]! + E4M3_VALUES[code + 1]!) / 2);
    const values = Float32Array.from([...spreadValues(50_000, -14, 10, 3), ...ties, ...ties.map((t) => -t), 0, -0, 448, 500, -500]);
    const ort = await ortRoundTrip(values, 'FLOAT8E4M3FN');
    let mismatches = 0;
    values.forEach((v, i) => {
      if (!Object.is(e4m3ToFloat32(float32ToE4m3(v)), ort[i])) mismatches++;
    });
    assert.equal(mismatches, 0);
  });

  it('encodes by table exactly as e4m3FromF32Bits, for every top half of the float32 bits and any low half', () => {
    // The table claims the low 16 bits matter only as "any set"; try patterns that sit on and around a
    // tie (0x8000 is the half-way point only for bit 15, far below every rounding point) and at the ends.
    const lows = [0, 1, 0x7fff, 0x8000, 0x8001, 0xfffe, 0xffff, 0x1234];
    let mismatches = 0;
    for (let hi = 0; hi < 1 << 16; hi++) {
      for (const lo of lows) {
        const b = ((hi << 16) | lo) >>> 0;
        if (E4M3_ENCODE_TABLE[e4m3TableIndex(b)] !== e4m3FromF32Bits(b)) mismatches++;
      }
    }
    assert.equal(mismatches, 0);
    assert.equal(E4M3_ENCODE_TABLE[e4m3TableIndex(0x7f800000)], 0x7e, '+inf saturates');
    assert.equal(E4M3_ENCODE_TABLE[e4m3TableIndex(0x7f800001)], E4M3_NAN, 'a NaN whose payload is only in the low half stays NaN');
    assert.equal(E4M3_ENCODE_TABLE[e4m3TableIndex(0x80000000)], 0x80, '-0 keeps its sign');
  });
});
