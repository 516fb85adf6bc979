import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bf16BitsToFloat32, float32ToBf16BitsIeee } from '../../../src/common/numeric/bf16.ts';
import { e4m3ToFloat32, float32ToE4m3 } from '../../../src/common/numeric/fp8_e4m3.ts';
import {
  decodeToFloat32,
  dequantizeFp8Blocks,
  encodeFromFloat32,
  f16ToFloat32,
  f16ToFloat32Into,
  float32ToF16,
  float32ToF16Into,
  quantizeFp8Blocks,
} from '../../../src/engine/checkpoint/dtype.ts';
import { seededRandom } from '../../helpers/checkpoint_writer.ts';
import { at } from '../../helpers/at.ts';

const sameBits = (a: number, b: number): boolean => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));

describe('F8_E4M3 (e4m3fn)', () => {
  it('decodes known bit patterns, including subnormals, max and NaN', () => {
    const cases: [number, number][] = [
      [0x00, 0],
      [0x80, -0],
      [0x01, 2 ** -9],
      [0x07, 7 * 2 ** -9],
      [0x08, 2 ** -6],
      [0x38, 1],
      [0x3f, 1.875],
      [0x40, 2],
      [0x7e, 448],
      [0xfe, -448],
      [0xb8, -1],
      [0x77, 240],
      [0x78, 256],
    ];
    for (const [code, value] of cases) assert.ok(Object.is(e4m3ToFloat32(code), value), `0x${code.toString(16)}`);
    assert.ok(Number.isNaN(e4m3ToFloat32(0x7f)));
    assert.ok(Number.isNaN(e4m3ToFloat32(0xff)));
  });

  it('encodes every finite code back to itself', () => {
    for (let c = 0; c < 256; c++) {
      if ((c & 0x7f) === 0x7f) continue;
      assert.equal(float32ToE4m3(e4m3ToFloat32(c)), c, `0x${c.toString(16)}`);
    }
  });

  it('rounds to nearest even, saturates at 448 and maps NaN to 0x7f', () => {
    assert.equal(float32ToE4m3(1.0625), 0x38); // tie between 1 and 1.125 -> even mantissa
    assert.equal(float32ToE4m3(1.1875), 0x3a); // tie between 1.125 and 1.25 -> even
    assert.equal(float32ToE4m3(1.07), 0x39);
    assert.equal(float32ToE4m3(0.5 * 2 ** -9), 0x00); // subnormal tie -> 0
    assert.equal(float32ToE4m3(1.5 * 2 ** -9), 0x02);
    assert.equal(float32ToE4m3(7.5 * 2 ** -9), 0x08); // rounds up out of the subnormal range
    assert.equal(float32ToE4m3(15.5 * 2 ** -9), 0x10); // carry into the next exponent
    assert.equal(float32ToE4m3(460), 0x7e);
    assert.equal(float32ToE4m3(1e9), 0x7e);
    assert.equal(float32ToE4m3(-Infinity), 0xfe);
    assert.equal(float32ToE4m3(NaN), 0x7f);
  });

  it('bulk decode matches the scalar decoder for all 256 codes', () => {
    const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const out = decodeToFloat32(codes, 'F8_E4M3');
    for (let c = 0; c < 256; c++) assert.ok(sameBits(out[c]!, e4m3ToFloat32(c)));
  });
});

describe('BF16 and F16', () => {
  it('decode known bf16 patterns', () => {
    assert.equal(bf16BitsToFloat32(0x3f80), 1);
    assert.equal(bf16BitsToFloat32(0xc000), -2);
    assert.equal(bf16BitsToFloat32(0x7f80), Infinity);
    assert.equal(bf16BitsToFloat32(0x0001), 2 ** -133); // smallest subnormal
    assert.ok(Object.is(bf16BitsToFloat32(0x8000), -0));
    assert.ok(Number.isNaN(bf16BitsToFloat32(0x7fc0)));
  });

  it('bf16 encoder rounds to nearest even', () => {
    assert.equal(float32ToBf16BitsIeee(1 + 2 ** -8), 0x3f80);
    assert.equal(float32ToBf16BitsIeee(1 + 3 * 2 ** -8), 0x3f82);
    assert.equal(float32ToBf16BitsIeee(1 + 2 ** -8 + 2 ** -20), 0x3f81);
    assert.equal(float32ToBf16BitsIeee(3.4e38), 0x7f80); // overflow rounds to infinity
    assert.ok(Number.isNaN(bf16BitsToFloat32(float32ToBf16BitsIeee(NaN))));
  });

  it('decode known f16 patterns including subnormals', () => {
    assert.equal(f16ToFloat32(0x3c00), 1);
    assert.equal(f16ToFloat32(0x0001), 2 ** -24);
    assert.equal(f16ToFloat32(0x03ff), 1023 * 2 ** -24);
    assert.equal(f16ToFloat32(0x0400), 2 ** -14);
    assert.equal(f16ToFloat32(0x7bff), 65504);
    assert.equal(f16ToFloat32(0xfc00), -Infinity);
    assert.ok(Number.isNaN(f16ToFloat32(0x7e00)));
  });

  it('f16 encoder rounds to nearest even with overflow to infinity', () => {
    assert.equal(float32ToF16(65519), 0x7bff);
    assert.equal(float32ToF16(65520), 0x7c00);
    assert.equal(float32ToF16(2 ** -25), 0x0000);
    assert.equal(float32ToF16(3 * 2 ** -25), 0x0002);
    assert.equal(float32ToF16(1 + 2 ** -11), 0x3c00);
    assert.equal(float32ToF16(-(1 + 3 * 2 ** -11)), 0xbc02);
  });

  it('every 16-bit pattern survives decode -> encode', () => {
    for (let h = 0; h < 65536; h++) {
      const b = bf16BitsToFloat32(h);
      const f = f16ToFloat32(h);
      if (Number.isNaN(b)) assert.ok(Number.isNaN(bf16BitsToFloat32(float32ToBf16BitsIeee(b))));
      else assert.equal(float32ToBf16BitsIeee(b), h);
      if (Number.isNaN(f)) assert.ok(Number.isNaN(f16ToFloat32(float32ToF16(f))));
      else assert.equal(float32ToF16(f), h);
    }
  });

  it('bulk f16 encode (float32ToF16Into) equals the scalar encoder bit for bit; f16ToFloat32Into widens', () => {
    const n = 200_000;
    const v = new Float32Array(n);
    const bits = new Uint32Array(v.buffer);
    let s = 12345;
    for (let i = 0; i < n; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      bits[i] = s >>> 0; // every exponent: subnormal, normal, overflow, inf and NaN patterns
    }
    const edges = [
      0,
      -0,
      65504,
      65519,
      65520,
      -65536,
      2 ** -24,
      2 ** -25,
      2 ** -25 * 1.0001,
      3 * 2 ** -25,
      2 ** -14,
      2 ** -14 * 0.99,
      1 / 3,
      Infinity,
      -Infinity,
    ];
    edges.forEach((e, i) => (v[i] = e));
    const out = new Uint16Array(n);
    float32ToF16Into(v, out);
    for (let i = 0; i < n; i++) {
      const [x, h] = [at(v, i), at(out, i)];
      if (Number.isNaN(x)) assert.ok((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0, `NaN at ${i}`);
      else assert.equal(h, float32ToF16(x), `value ${x} (bits ${at(bits, i).toString(16)})`);
    }
    const back = new Float32Array(n);
    f16ToFloat32Into(out, back);
    for (let i = 0; i < 1000; i++) if (!Number.isNaN(at(v, i))) assert.equal(back[i], f16ToFloat32(at(out, i)));
  });

  it('bulk decode equals scalar decode, also from a misaligned view', () => {
    const rng = seededRandom(7);
    const raw = Uint8Array.from({ length: 2001 }, () => Math.floor(rng.uniform() * 256));
    const misaligned = raw.subarray(1);
    for (const dtype of ['BF16', 'F16'] as const) {
      const out = decodeToFloat32(misaligned, dtype);
      const scalar = dtype === 'BF16' ? bf16BitsToFloat32 : f16ToFloat32;
      for (let i = 0; i < out.length; i++) assert.ok(sameBits(out[i]!, scalar(misaligned[2 * i]! | (misaligned[2 * i + 1]! << 8))));
    }
    const f32 = Float32Array.of(1.5, -0, 3.4e38, 1e-45);
    assert.deepEqual(decodeToFloat32(encodeFromFloat32(f32, 'F32').subarray(0), 'F32'), f32);
  });
});

describe('FP8 block scales', () => {
  const rows = 130;
  const cols = 300; // 2 x 3 blocks, ragged on both axes

  it('dequantises ragged edge blocks exactly as e4m3(q) * scale_inv[i/128, j/128]', () => {
    const rng = seededRandom(11);
    const q = Uint8Array.from({ length: rows * cols }, () => {
      const c = Math.floor(rng.uniform() * 256);
      return (c & 0x7f) === 0x7f ? 0 : c;
    });
    const scales = Float32Array.from({ length: 2 * 3 }, () => 2 ** (rng.uniform() * 8 - 10) * (1 + rng.uniform()));
    const out = dequantizeFp8Blocks(q, rows, cols, scales);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        const ref = Math.fround(e4m3ToFloat32(q[i * cols + j]!) * scales[Math.floor(i / 128) * 3 + Math.floor(j / 128)]!);
        assert.ok(Object.is(out[i * cols + j], ref), `(${i}, ${j})`);
      }
    }
  });

  it('quantiser: scale = amax / 448, block max hits code 448, error within e4m3 rounding', () => {
    const rng = seededRandom(5);
    const x = Float32Array.from({ length: rows * cols }, () => rng.normal() * 0.05);
    for (let i = 128; i < rows; i++) x.fill(0, i * cols + 256, (i + 1) * cols); // one all-zero block
    const { q, scaleInv } = quantizeFp8Blocks(x, rows, cols);
    assert.equal(scaleInv[5], 1); // all-zero block (rows 128.., cols 256..)
    const deq = dequantizeFp8Blocks(q, rows, cols, scaleInv);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        const s = scaleInv[Math.floor(i / 128) * 3 + Math.floor(j / 128)]!;
        const v = x[i * cols + j]!;
        // 3 mantissa bits: half an ulp is <= 2^-4 |v| for normals, 2^-10 * s in the subnormal range.
        const bound = (2 ** -4 * Math.abs(v) + 2 ** -10 * s) * 1.0001;
        assert.ok(Math.abs(deq[i * cols + j]! - v) <= bound, `(${i}, ${j}): ${deq[i * cols + j]} vs ${v}`);
      }
    }
    let amax = 0;
    for (let i = 0; i < 128; i++) for (let j = 0; j < 128; j++) amax = Math.max(amax, Math.abs(x[i * cols + j]!));
    assert.equal(scaleInv[0], Math.fround(amax / 448));
    assert.ok(q.some((c, k) => (c & 0x7f) === 0x7e && Math.floor(k / cols) < 128 && k % cols < 128));
  });
});
