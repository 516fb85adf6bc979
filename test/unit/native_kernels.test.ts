// The native decode kernels (src/native/decode_layer.c) against float64 references: GEMV over sizes that
// are not multiples of the vector width, and MLA 5 over contexts inside and across its key chunks. Both
// must give the same bits at 1 and 2 threads (each output is one thread's fixed-order sum). The layer
// kernels (pre / post / experts / lm_head) are checked end to end by the golden parity tests, whose steps of
// up to 16 rows run through them (test/parity/tiny_dsv32.test.ts, variants.test.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadNativeKernels } from '../../src/engine/native/native_kernels.ts';
import { dequantizeMatrix, quantizeMatrix } from '../../src/engine/quant/block_quant.ts';

const load = loadNativeKernels();
const skip = load.kernels === null ? `native kernels unavailable: ${load.reason}` : false;

let seed = 99;
function random(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 2 ** 32 - 0.5;
}
const randoms = (n: number): Float32Array => Float32Array.from({ length: n }, random);

function maxRelError(got: Float32Array, want: Float64Array): number {
  let scale = 0;
  want.forEach((v) => (scale = Math.max(scale, Math.abs(v))));
  let err = 0;
  got.forEach((v, i) => (err = Math.max(err, Math.abs(v - want[i]!))));
  return err / scale;
}

test('native gemv: float64 reference, any size, same bits at 1 and 2 threads', { skip }, () => {
  const k = load.kernels!;
  for (const [R, K] of [
    [1, 1],
    [7, 15],
    [130, 37],
    [300, 513],
    [1024, 256],
  ] as const) {
    const w = randoms(R * K);
    const x = randoms(K);
    const want = new Float64Array(R);
    for (let r = 0; r < R; r++) for (let c = 0; c < K; c++) want[r]! += w[r * K + c]! * x[c]!;
    const ys = [1, 2].map((threads) => {
      k.setThreads(threads);
      const y = new Float32Array(R);
      k.gemv(w, x, y);
      return y;
    });
    assert.ok(maxRelError(ys[0]!, want) < 1e-5, `[${R}, ${K}]`);
    assert.deepEqual(ys[1], ys[0], `[${R}, ${K}]: 2 threads differ from 1`);
  }
  assert.throws(() => k.gemv(new Float32Array(10), new Float32Array(3), new Float32Array(3)), /gemv/);
});

test('native attend: softmax attention over scattered slots, across key chunks', { skip }, () => {
  const k = load.kernels!;
  // [H, L, dr]: whole blocks of 4 heads and 16 columns; 10 heads (8 + 2 in the scores, 4 + 4 + 2 in the sums) and
  // 136 columns (2 x 64 + 8)
  for (const [H, L, dr] of [
    [4, 40, 8],
    [10, 136, 8],
  ] as const)
    attendCase(k, H, L, dr);
});

function attendCase(k: NonNullable<typeof load.kernels>, H: number, L: number, dr: number): void {
  const C = L + dr;
  const P = 700;
  const pool = randoms(P * C).map((v) => 4 * v); // spread the scores so softmax is not flat
  for (const T of [1, 5, 128, 129, 300, 640]) {
    const slots = Int32Array.from({ length: T }, (_, t) => (t * 379 + 11) % P);
    const q = randoms(H * C);
    const want = new Float64Array(H * L);
    for (let h = 0; h < H; h++) {
      const s = Array.from(slots, (slot) => {
        let d = 0;
        for (let c = 0; c < C; c++) d += q[h * C + c]! * pool[slot * C + c]!;
        return d;
      });
      const m = Math.max(...s);
      const e = s.map((v) => Math.exp(v - m));
      const z = e.reduce((a, b) => a + b, 0);
      slots.forEach((slot, t) => {
        for (let j = 0; j < L; j++) want[h * L + j]! += (e[t]! / z) * pool[slot * C + j]!;
      });
    }
    const os = [1, 2].map((threads) => {
      k.setThreads(threads);
      const o = new Float32Array(H * L);
      k.attend(q, pool, slots, o, L);
      return o;
    });
    assert.ok(maxRelError(os[0]!, want) < 1e-5, `T ${T}: ${maxRelError(os[0]!, want)}`);
    assert.deepEqual(os[1], os[0], `T ${T}: 2 threads differ from 1`);
  }
  assert.throws(() => k.attend(randoms(H * C), pool, Int32Array.of(0, P), new Float32Array(H * L), L), /slot out of range/);
}

test('native DSA decode: indexer top-k with ties to the lower position, then attention over the kept rows', { skip }, () => {
  const k = load.kernels!;
  const [H, L, dr, Hi, Di, topk, T] = [2, 24, 8, 3, 16, 40, 300];
  const C = L + dr;
  const P = 320;
  const slots = Int32Array.from({ length: T }, (_, t) => (t * 7 + 3) % P);
  const iq = randoms(Hi * Di).map(Math.abs); // non-negative queries: a key with only negative entries scores exactly 0
  const iw = Float32Array.of(0.5, 0.25, 1);
  const keys = new Float32Array(P * Di);
  const positive = new Set([5, 17, 60, 61, 99, 150, 151, 152, 200, 299, 1, 2, 3, 250, 251, 120, 121, 122, 123, 124]);
  slots.forEach((slot, t) => {
    for (let d = 0; d < Di; d++) keys[slot * Di + d] = positive.has(t) ? 0.1 + ((t * 13 + d) % 17) / 10 : -0.5 - (d % 3) / 10;
  });
  const pool = randoms(P * C);
  const q = randoms(H * C);
  // Expected: the 20 positive-score positions, then the 20 lowest positions of the exact-zero ties.
  const zeros = Array.from({ length: T }, (_, t) => t).filter((t) => !positive.has(t));
  const want = [...positive, ...zeros.slice(0, topk - positive.size)].sort((a, b) => a - b);
  const wantO = new Float64Array(H * L);
  for (let h = 0; h < H; h++) {
    const s = want.map((t) => {
      let d = 0;
      for (let c = 0; c < C; c++) d += q[h * C + c]! * pool[slots[t]! * C + c]!;
      return d;
    });
    const m = Math.max(...s);
    const e = s.map((v) => Math.exp(v - m));
    const z = e.reduce((a, b) => a + b, 0);
    want.forEach((t, i) => {
      for (let j = 0; j < L; j++) wantO[h * L + j]! += (e[i]! / z) * pool[slots[t]! * C + j]!;
    });
  }
  for (const threads of [1, 2]) {
    k.setThreads(threads);
    const o = new Float32Array(H * L);
    const sel = new Int32Array(topk);
    k.dsaDecode(q, iq, iw, pool, keys, slots, o, sel, L);
    assert.deepEqual(Array.from(sel), want, `threads ${threads}`);
    assert.ok(maxRelError(o, wantO) < 1e-5, `threads ${threads}: ${maxRelError(o, wantO)}`);
  }
  assert.throws(() => k.dsaDecode(q, iq, iw, pool, keys, slots.subarray(0, topk), new Float32Array(H * L), new Int32Array(topk), L), /dsaDecode/);
});

/** bf16 bits of each value (rounded to nearest even) and the float32 values they stand for. */
function toBf16(x: Float32Array): { bits: Uint16Array; widened: Float32Array } {
  const u = new Uint32Array(x.buffer.slice(x.byteOffset, x.byteOffset + x.byteLength));
  const bits = Uint16Array.from(u, (v) => (v + 0x7fff + ((v >>> 16) & 1)) >>> 16);
  const widened = new Float32Array(new Uint32Array(Array.from(bits, (b) => b << 16)).buffer);
  return { bits, widened };
}

test('native DSA decode: every lane layout of the indexer heads (1 to 128, and the scalar path beyond) keeps the float64 top-k', { skip }, () => {
  const k = load.kernels!;
  const [H, L, dr, topk, T] = [2, 16, 8, 32, 203]; // T not a multiple of the 8-key tile
  const C = L + dr;
  const P = 256;
  const slots = Int32Array.from({ length: T }, (_, t) => (t * 5 + 1) % P);
  for (const [Hi, Di] of [
    [1, 16],
    [2, 32],
    [4, 16],
    [8, 64],
    [16, 32],
    [24, 16],
    [40, 16],
    [64, 32],
    [100, 16],
    [130, 16],
    [8, 24], // dims not a whole vector: the scalar path
  ] as const) {
    const iq = randoms(Hi * Di);
    const iw = randoms(Hi).map((v) => v + 0.6); // mostly positive head weights, one may be negative
    const keys = randoms(P * Di);
    const pool = randoms(P * C);
    const q = randoms(H * C);
    const score = Array.from(slots, (slot) => {
      let s = 0;
      for (let h = 0; h < Hi; h++) {
        let d = 0;
        for (let i = 0; i < Di; i++) d += iq[h * Di + i]! * keys[slot * Di + i]!;
        s += iw[h]! * Math.max(d, 0);
      }
      return s;
    });
    const runs = [1, 2].map((threads) => {
      k.setThreads(threads);
      const o = new Float32Array(H * L);
      const sel = new Int32Array(topk);
      k.dsaDecode(q, iq, iw, pool, keys, slots, o, sel, L);
      return { o, sel };
    });
    const sel = Array.from(runs[0]!.sel);
    assert.deepEqual(
      sel,
      [...sel].sort((a, b) => a - b),
      `Hi ${Hi} Di ${Di}: ascending`,
    );
    assert.equal(new Set(sel).size, topk, `Hi ${Hi} Di ${Di}: distinct positions`);
    // every kept key scores at least as high (float64) as every dropped one, up to float32 rounding
    const kept = new Set(sel);
    const minKept = Math.min(...sel.map((t) => score[t]!));
    const maxDropped = Math.max(...score.filter((_, t) => !kept.has(t)));
    const scale = Math.max(...score.map(Math.abs));
    assert.ok(minKept >= maxDropped - 1e-5 * scale, `Hi ${Hi} Di ${Di}: kept ${minKept} < dropped ${maxDropped}`);
    assert.deepEqual(runs[1], runs[0], `Hi ${Hi} Di ${Di}: 2 threads differ from 1`);
  }
});

test('native attention and DSA decode over a bfloat16 cache: the same bits as over its values widened to float32', { skip }, () => {
  const k = load.kernels!;
  const [H, L, dr, Hi, Di, topk, T] = [4, 32, 16, 8, 64, 48, 300];
  const C = L + dr;
  const P = 320;
  const slots = Int32Array.from({ length: T }, (_, t) => (t * 7 + 3) % P);
  const latent = toBf16(randoms(P * C).map((v) => 3 * v));
  const keys = toBf16(randoms(P * Di));
  const q = randoms(H * C);
  const iq = randoms(Hi * Di);
  const iw = randoms(Hi).map((v) => v + 0.6);
  for (const threads of [1, 2]) {
    k.setThreads(threads);
    const [a, b] = [latent.bits, latent.widened].map((pool) => {
      const o = new Float32Array(H * L);
      k.attend(q, pool, slots, o, L);
      return o;
    });
    assert.deepEqual(a, b, `attend, threads ${threads}`);
    const [c, d] = [
      [latent.bits, keys.bits],
      [latent.widened, keys.widened],
    ].map(([pool, ks]) => {
      const o = new Float32Array(H * L);
      const sel = new Int32Array(topk);
      k.dsaDecode(q, iq, iw, pool!, ks!, slots, o, sel, L);
      return { o, sel };
    });
    assert.deepEqual(c, d, `dsaDecode, threads ${threads}`);
  }
  assert.throws(() => k.attend(q, new Int32Array(P * C) as unknown as Float32Array, slots, new Float32Array(H * L), L), /bad pool/);
});

test('native attendRows: each row as the attend / dsaDecode call of one row at its position, same bits', { skip }, () => {
  const k = load.kernels!;
  const [H, L, dr, Hi, Di, topk] = [4, 32, 16, 8, 64, 24];
  const C = L + dr;
  const P = 500;
  const pool = randoms(P * C).map((v) => 3 * v);
  const keys = randoms(P * Di);
  // decode rows (S 1) around topk (every key, or the indexer's selection); chunks (S 7) from the first position,
  // across topk and across key chunks of 128
  for (const [S, startPos] of [
    [1, Int32Array.of(0, 23, 24, 89, 6, 199)],
    [7, Int32Array.of(0, 3, 20, 130, 250)],
  ] as const) {
    const B = startPos.length;
    const T = Math.max(...startPos) + S;
    const slots = new Int32Array(B * T);
    startPos.forEach((p0, b) => {
      for (let t = 0; t < T; t++) slots[b * T + t] = t < p0 + S ? (b * 97 + t * 13) % P : (b * 97) % P; // padding: position 0's slot
    });
    const q = randoms(B * S * H * C);
    const iq = randoms(B * S * Hi * Di);
    const iw = randoms(B * S * Hi).map((v) => v + 0.6);
    for (const withKeys of [true, false]) {
      for (const threads of [1, 2]) {
        k.setThreads(threads);
        const o = new Float32Array(B * S * H * L);
        const sel = new Int32Array(B * topk);
        k.attendRows(q, withKeys ? iq : null, withKeys ? iw : null, pool, withKeys ? keys : null, slots, startPos, S, o, sel, L);
        for (let r = 0; r < B * S; r++) {
          const [b, i] = [Math.floor(r / S), r % S];
          const n = startPos[b]! + i + 1;
          const rowSlots = slots.subarray(b * T, b * T + n);
          const qr = q.subarray(r * H * C, (r + 1) * H * C);
          const want = new Float32Array(H * L);
          let wantSel = Array.from({ length: Math.min(n, topk) }, (_, j) => j);
          if (withKeys && n > topk) {
            const s = new Int32Array(topk);
            k.dsaDecode(qr, iq.subarray(r * Hi * Di, (r + 1) * Hi * Di), iw.subarray(r * Hi, (r + 1) * Hi), pool, keys, rowSlots, want, s, L);
            wantSel = Array.from(s);
          } else {
            k.attend(qr, pool, rowSlots, want, L);
          }
          const what = `S ${S}: row ${i} of sequence ${b} (keys ${withKeys}, threads ${threads})`;
          assert.deepEqual(o.subarray(r * H * L, (r + 1) * H * L), want, what);
          if (i === S - 1) assert.deepEqual(Array.from(sel.subarray(b * topk, b * topk + wantSel.length)), wantSel, `${what}: selection`);
        }
      }
    }
    const args = (start: Int32Array, out: Float32Array): Parameters<typeof k.attendRows> => [
      q,
      null,
      null,
      pool,
      null,
      slots,
      start,
      S,
      out,
      new Int32Array(B * topk),
      L,
    ];
    const late = Int32Array.from(startPos, (p0, b) => (b === B - 1 ? T - S + 1 : p0)); // its rows past the slots
    assert.throws(() => k.attendRows(...args(late, new Float32Array(B * S * H * L))), /start positions/);
    assert.throws(() => k.attendRows(...args(startPos, new Float32Array(B * S * H * L + 1))), /bad arguments/);
  }
});

/** x quantised per block of 32 as quant_gemm.h does: scale max|x| / 127, codes rounded half to even. */
function quantizedInputs(x: Float32Array): Float64Array {
  const out = new Float64Array(x.length);
  for (let k0 = 0; k0 < x.length; k0 += 32) {
    const block = x.subarray(k0, k0 + 32);
    const amax = block.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
    const d = Math.fround(amax / 127);
    const inv = amax > 0 ? Math.fround(127 / amax) : 0;
    block.forEach((v, i) => {
      const t = Math.fround(v * inv);
      const r = Math.abs(t % 1) === 0.5 ? 2 * Math.round(t / 2) : Math.round(t);
      out[k0 + i] = Math.max(-127, Math.min(127, r)) * d;
    });
  }
  return out;
}

test('native quantised matmul: int8 and int4 panels against the dequantised weights times the int8 inputs, any size and grouping', { skip }, () => {
  const k = load.kernels!;
  for (const bits of [8, 4] as const) {
    for (const [groups, rows, cols, M, tiny] of [
      [1, 1, 32, 1],
      [1, 17, 40, 3],
      [1, 300, 256, 16],
      [4, 5, 16, 2], // per-head groups of 5 rows over 16 inputs each (padded to a block)
      [3, 64, 100, 9],
      [1, 40, 64, 5, 1e-7], // scales below float16's normal range: kept as float32 (the other cases pack float16 scales)
    ] as const) {
      const R = groups * rows;
      const q = quantizeMatrix(
        randoms(R * cols).map((v) => v * (tiny ?? 1)),
        R,
        cols,
        bits,
      );
      const wd = dequantizeMatrix(q);
      const handle = k.packQuantized(bits, R, cols, rows, q.packed, q.scales);
      const scaleBytes = tiny === undefined ? 2 : 4;
      assert.equal(k.quantizedWeightBytes(handle), groups * Math.ceil(rows / 16) * Math.ceil(cols / 32) * 16 * (4 * bits + scaleBytes));
      const x = randoms(M * groups * cols);
      const want = new Float64Array(M * R);
      for (let m = 0; m < M; m++)
        for (let g = 0; g < groups; g++) {
          const xq = quantizedInputs(x.subarray((m * groups + g) * cols, (m * groups + g + 1) * cols));
          for (let r = g * rows; r < (g + 1) * rows; r++) for (let c = 0; c < cols; c++) want[m * R + r]! += wd[r * cols + c]! * xq[c]!;
        }
      const ys = [1, 2].map((threads) => {
        k.setThreads(threads);
        const y = new Float32Array(M * R);
        k.quantizedMatmul(handle, x, y);
        return y;
      });
      const what = `int${bits} ${groups} x [${rows}, ${cols}], M ${M}`;
      assert.ok(maxRelError(ys[0]!, want) < 1e-5, `${what}: ${maxRelError(ys[0]!, want)}`);
      assert.deepEqual(ys[1], ys[0], `${what}: 2 threads differ from 1`);
      // Each row alone gives the same bits as in the batch (the engine's steps batch any rows together).
      const y1 = new Float32Array(R);
      k.quantizedMatmul(handle, x.subarray((M - 1) * groups * cols), y1);
      assert.deepEqual(y1, ys[0]!.subarray((M - 1) * R), `${what}: the last row alone differs`);
    }
  }
  const q = quantizeMatrix(randoms(64), 2, 32, 8);
  assert.throws(() => k.packQuantized(8, 2, 32, 2, q.packed.subarray(1), q.scales), /packQuantized/);
  assert.throws(() => k.packQuantized(8, 2, 32, 3, q.packed, q.scales), /packQuantized/);
  assert.throws(() => k.quantizedMatmul(k.packQuantized(8, 2, 32, 2, q.packed, q.scales), new Float32Array(31), new Float32Array(2)), /quantizedMatmul/);
});
