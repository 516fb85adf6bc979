// Probe kernels (bench only, not used by the server): batch-1 GEMV y = W x over an int4 weight in the
// engine's layout (block_quant.ts: MatMulNBits' codes, element 2i in the low nibble of byte i, code - 8,
// one float32 scale per 32 weights) and over a float32 weight, AVX-512, rows split over a persistent
// pool of threads. Question it answers: how close to the machine's read bandwidth can one call get
// without ONNX Runtime's per-node costs and its 24-byte int4 blocks (bench/native_gemv.ts).
// Built on first use by bench/native_gemv.ts (gcc -O3 -march=native, node's headers) into the bench cache.
#include <immintrin.h>
#include <math.h>
#include <node_api.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/native/thread_pool.h"

enum { BLOCK = 32, BLOB = 16 };

typedef struct {
  int kind;  // 0: int4 (float dots), 1: float32, 2: int4 with int8 activations (VNNI)
  const uint8_t* packed;
  const float* scales;
  const float* w;
  const float* x;  // int4: x de-interleaved per block ([even 16][odd 16]); float32: x as given
  float* y;
  int rows, cols, kb;
  // kind 2: x quantised per block of 32 to int8 (scale dx[b] = max|x| / 127), laid out per pair of blocks
  // as [b0 even 16, b1 even 16, b0 odd 16, b1 odd 16] so that one 64-byte register of unpacked nibbles
  // ([lo b0, lo b1, hi b0, hi b1]: no shuffle) meets its activations; corr[b] = 8 dx[b] sum(xq in b), the
  // zero point's share (sum (q - 8) xq = sum q xq - 8 sum xq).
  const int8_t* xq;
  const float* dx;
  const float* corr;
} Job;

// Dot products of rows [r0, r1) with x.
static void run_rows(const Job* j, int r0, int r1) {
  if (j->kind == 0) {
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m512i eight = _mm512_set1_epi32(8);
    for (int r = r0; r < r1; r++) {
      const uint8_t* p = j->packed + (size_t)r * j->kb * BLOB;
      const float* s = j->scales + (size_t)r * j->kb;
      __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
      int b = 0;
      for (; b + 1 < j->kb; b += 2) {
        __m128i q0 = _mm_loadu_si128((const __m128i*)(p + b * BLOB));
        __m128i q1 = _mm_loadu_si128((const __m128i*)(p + (b + 1) * BLOB));
        __m512 lo0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(q0, mask)), eight));
        __m512 hi0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(q0, 4), mask)), eight));
        __m512 lo1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(q1, mask)), eight));
        __m512 hi1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(q1, 4), mask)), eight));
        const float* x0 = j->x + (size_t)b * BLOCK;
        __m512 t0 = _mm512_fmadd_ps(hi0, _mm512_loadu_ps(x0 + 16), _mm512_mul_ps(lo0, _mm512_loadu_ps(x0)));
        __m512 t1 = _mm512_fmadd_ps(hi1, _mm512_loadu_ps(x0 + 48), _mm512_mul_ps(lo1, _mm512_loadu_ps(x0 + 32)));
        acc0 = _mm512_fmadd_ps(t0, _mm512_set1_ps(s[b]), acc0);
        acc1 = _mm512_fmadd_ps(t1, _mm512_set1_ps(s[b + 1]), acc1);
      }
      for (; b < j->kb; b++) {
        __m128i q0 = _mm_loadu_si128((const __m128i*)(p + b * BLOB));
        __m512 lo0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(q0, mask)), eight));
        __m512 hi0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(q0, 4), mask)), eight));
        const float* x0 = j->x + (size_t)b * BLOCK;
        __m512 t0 = _mm512_fmadd_ps(hi0, _mm512_loadu_ps(x0 + 16), _mm512_mul_ps(lo0, _mm512_loadu_ps(x0)));
        acc0 = _mm512_fmadd_ps(t0, _mm512_set1_ps(s[b]), acc0);
      }
      j->y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    }
  } else if (j->kind == 2) {
    const __m256i mask = _mm256_set1_epi8(0x0F);
    for (int r = r0; r < r1; r++) {
      const uint8_t* p = j->packed + (size_t)r * j->kb * BLOB;
      const float* s = j->scales + (size_t)r * j->kb;
      __m512 acc = _mm512_setzero_ps();
      __m512 corr = _mm512_setzero_ps();
      for (int b = 0; b < j->kb; b += 2) {
        __m256i q = _mm256_loadu_si256((const __m256i*)(p + b * BLOB));  // blocks b, b + 1
        __m256i lo = _mm256_and_si256(q, mask);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
        __m512i codes = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, _mm512_loadu_si512((const void*)(j->xq + (size_t)b * BLOCK)));
        __m512 sv = _mm512_set1_ps(s[b] * j->dx[b]);
        sv = _mm512_mask_mov_ps(sv, 0xF0F0, _mm512_set1_ps(s[b + 1] * j->dx[b + 1]));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), sv, acc);
      }
      int b = 0;
      for (; b + 16 <= j->kb; b += 16) corr = _mm512_fmadd_ps(_mm512_loadu_ps(s + b), _mm512_loadu_ps(j->corr + b), corr);
      float tail = 0;
      for (; b < j->kb; b++) tail += s[b] * j->corr[b];
      j->y[r] = _mm512_reduce_add_ps(acc) - _mm512_reduce_add_ps(corr) - tail;
    }
  } else {
    for (int r = r0; r < r1; r++) {
      const float* w = j->w + (size_t)r * j->cols;
      __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
      int c = 0;
      for (; c + 64 <= j->cols; c += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c), _mm512_loadu_ps(j->x + c), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c + 16), _mm512_loadu_ps(j->x + c + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c + 32), _mm512_loadu_ps(j->x + c + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c + 48), _mm512_loadu_ps(j->x + c + 48), a3);
      }
      float tail = 0;
      for (; c < j->cols; c++) tail += w[c] * j->x[c];
      j->y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))) + tail;
    }
  }
}

// Rows on the server's pool (src/native/thread_pool.h); this probe keeps its longer spin.
static void rows_fn(const void* ctx, int r0, int r1) { run_rows(ctx, r0, r1); }

static void run_job(const Job* j, int nthreads) {
  pool_set_threads(nthreads, 20000);
  parallel_for(rows_fn, j, j->rows, 1, 1);
}

static void* typed(napi_env env, napi_value v, size_t* bytes) {
  napi_typedarray_type t;
  size_t len, off;
  void* data;
  napi_value ab;
  napi_get_typedarray_info(env, v, &t, &len, &data, &ab, &off);
  if (bytes) *bytes = len;
  return data;
}

static int32_t int_arg(napi_env env, napi_value v) {
  int32_t n = 0;
  napi_get_value_int32(env, v, &n);
  return n;
}

// The int4 entry points' arguments: (packed: Uint8Array, scales: Float32Array, x: Float32Array,
// y: Float32Array, rows, cols, threads); x is left to the caller (each kernel wants its own layout).
static Job int4_job(napi_env env, napi_callback_info info, int kind, const float** x, int* threads) {
  size_t argc = 7;
  napi_value a[7];
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  Job j = { .kind = kind };
  j.packed = typed(env, a[0], NULL);
  j.scales = typed(env, a[1], NULL);
  *x = typed(env, a[2], NULL);
  j.y = typed(env, a[3], NULL);
  j.rows = int_arg(env, a[4]);
  j.cols = int_arg(env, a[5]);
  j.kb = (j.cols + BLOCK - 1) / BLOCK;
  *threads = int_arg(env, a[6]);
  return j;
}

// gemvQ4(packed, scales, xDeinterleaved: x per block of 32 as [even 16, odd 16], y, rows, cols, threads)
static napi_value gemv_q4(napi_env env, napi_callback_info info) {
  const float* x;
  int threads;
  Job j = int4_job(env, info, 0, &x, &threads);
  j.x = x;
  run_job(&j, threads);
  return NULL;
}

// gemvQ4Vnni(packed, scales, x: Float32Array (in order), y, rows, cols, threads): int8 activations per
// block of 32, as MatMulNBits' accuracy level 4 and llama.cpp's Q4_0 x Q8_0 do. cols: a multiple of 64.
static napi_value gemv_q4_vnni(napi_env env, napi_callback_info info) {
  const float* x;
  int threads;
  Job j = int4_job(env, info, 2, &x, &threads);
  if (j.cols % 64 != 0) {
    napi_throw_error(env, NULL, "gemvQ4Vnni: cols must be a multiple of 64");
    return NULL;
  }
  static int8_t* xq;
  static float *dx, *corr;
  static int cap;
  if (cap < j.kb) {
    free(xq), free(dx), free(corr);
    xq = aligned_alloc(64, (size_t)j.kb * BLOCK);
    dx = malloc(sizeof(float) * j.kb);
    corr = malloc(sizeof(float) * j.kb);
    cap = j.kb;
  }
  for (int b = 0; b < j.kb; b++) {
    const float* xb = x + (size_t)b * BLOCK;
    float amax = 0;
    for (int i = 0; i < BLOCK; i++) amax = fabsf(xb[i]) > amax ? fabsf(xb[i]) : amax;
    float d = amax / 127, inv = d > 0 ? 1 / d : 0;
    int sum = 0;
    int8_t* pair = xq + (size_t)(b & ~1) * BLOCK;  // [b0 even, b1 even, b0 odd, b1 odd]
    int half = b & 1;
    for (int i = 0; i < 16; i++) {
      int e = (int)lrintf(xb[2 * i] * inv), o = (int)lrintf(xb[2 * i + 1] * inv);
      pair[half * 16 + i] = (int8_t)e;
      pair[32 + half * 16 + i] = (int8_t)o;
      sum += e + o;
    }
    dx[b] = d;
    corr[b] = 8 * d * (float)sum;
  }
  j.xq = xq, j.dx = dx, j.corr = corr;
  run_job(&j, threads);
  return NULL;
}

// gemvF32(w: Float32Array, x: Float32Array, y: Float32Array, rows, cols, threads)
static napi_value gemv_f32(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value a[6];
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  Job j = { .kind = 1 };
  j.w = typed(env, a[0], NULL);
  j.x = typed(env, a[1], NULL);
  j.y = typed(env, a[2], NULL);
  j.rows = int_arg(env, a[3]);
  j.cols = int_arg(env, a[4]);
  run_job(&j, int_arg(env, a[5]));
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value f;
  napi_create_function(env, "gemvQ4", NAPI_AUTO_LENGTH, gemv_q4, NULL, &f);
  napi_set_named_property(env, exports, "gemvQ4", f);
  napi_create_function(env, "gemvQ4Vnni", NAPI_AUTO_LENGTH, gemv_q4_vnni, NULL, &f);
  napi_set_named_property(env, exports, "gemvQ4Vnni", f);
  napi_create_function(env, "gemvF32", NAPI_AUTO_LENGTH, gemv_f32, NULL, &f);
  napi_set_named_property(env, exports, "gemvF32", f);
  return exports;
}
