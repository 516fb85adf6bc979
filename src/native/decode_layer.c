// Batch-1 decode of one decoder layer's dense parts in C (src/engine/native/native_decode_layer.ts):
// the pre-attention graph (MLA 1-4, IDX 1-4), the post-attention graph (MLA 6 + FFN / shared experts
// + router logits) and the routed experts, over float32 weights the JS side prepared in the same
// layouts as the ONNX graphs (pre_attention.ts, mla.ts, moe.ts). Why: at one token per step ONNX
// Runtime's per-run and per-node costs, not the weight bytes, bound the step (bench/native_gemv.ts:
// 5.9-8.1x on bench-mini's small GEMVs); three runs of ~40 nodes per layer become three calls.
//
// Exactness: every output row is one dot product computed by one thread in a fixed order, so results
// do not depend on the thread count; they differ from ONNX Runtime's only by float32 summation order.
// Built on first use (native_kernels.ts: gcc -O3 -march=native against node's headers).
#include <dlfcn.h>
#include <malloc.h>
#include <math.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "thread_pool.h"

// ---------------------------------------------------------------------------------------------------
// Dot products: y[r] = W[r, :] . x_r for rows [r0, r1), where x_r = x + (r / rows_per_x) * K (one x per
// group of rows: the per-head W_UV products use it; plain GEMVs pass rows_per_x = R).

typedef struct {
  const float* w;  // [R, K] row-major
  const float* x;
  float* y;        // [R]
  int K;
  int rows_per_x;
} Gemv;

#if defined(__AVX512F__) && defined(__AVX512VL__)
// Lane j = the sum of e[j]'s 16 lanes, by one fixed tree.
static inline __m256 hsum8(const __m512* e) {
  __m512 s1[4], s2[2];
  for (int p = 0; p < 4; p++) s1[p] = _mm512_add_ps(_mm512_unpacklo_ps(e[2 * p], e[2 * p + 1]), _mm512_unpackhi_ps(e[2 * p], e[2 * p + 1]));
  for (int p = 0; p < 2; p++) {
    const __m512d a = _mm512_castps_pd(s1[2 * p]), b = _mm512_castps_pd(s1[2 * p + 1]);
    s2[p] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  __m512 s3 = _mm512_add_ps(_mm512_shuffle_f32x4(s2[0], s2[1], _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(s2[0], s2[1], _MM_SHUFFLE(3, 1, 3, 1)));
  s3 = _mm512_add_ps(s3, _mm512_shuffle_f32x4(s3, s3, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_castps512_ps256(_mm512_shuffle_f32x4(s3, s3, _MM_SHUFFLE(0, 0, 2, 0)));
}
#endif

// pf: where the same walk reads PREFETCH_BYTES later, asked for ahead of the hardware prefetcher; NULL for
// none. Measured on this EPYC streaming 276 MiB of 0.5-4 MiB matrices at 2 threads, 7 interleaved rounds:
// none 38.5 GB/s (36.6-39.7), 4 KiB 42.8 (41.5-44.1), 8 KiB 42.1, 16 KiB 41.5.
static float dot_pf(const float* w, const float* x, int K, const char* pf) {
#if defined(__AVX512F__)
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int k = 0;
  for (; k + 32 <= K; k += 32) {
    if (pf) {
      __builtin_prefetch(pf + 4 * k, 0, 0);
      __builtin_prefetch(pf + 4 * k + 64, 0, 0);
    }
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k), _mm512_loadu_ps(x + k), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k + 16), _mm512_loadu_ps(x + k + 16), a1);
  }
  if (k + 16 <= K) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k), _mm512_loadu_ps(x + k), a0);
    k += 16;
  }
  if (k < K) {
    __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
    a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + k), _mm512_maskz_loadu_ps(m, x + k), a1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#else
  float s[8] = { 0 };
  int k = 0;
  for (; k + 8 <= K; k += 8)
    for (int i = 0; i < 8; i++) s[i] += w[k + i] * x[k + i];
  for (; k < K; k++) s[0] += w[k] * x[k];
  (void)pf;
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
#endif
}

static float dot(const float* w, const float* x, int K) { return dot_pf(w, x, K, NULL); }

#ifndef PREFETCH_BYTES
#define PREFETCH_BYTES 4096
#endif

static void gemv_rows(const void* ctx, int r0, int r1) {
  const Gemv* g = ctx;
  const char* end = (const char*)(g->w + (size_t)r1 * g->K);
  for (int r = r0; r < r1; r++) {
    const float* w = g->w + (size_t)r * g->K;
    const char* pf = (const char*)w + PREFETCH_BYTES;
    g->y[r] = dot_pf(w, g->x + (size_t)(r / g->rows_per_x) * g->K, g->K, pf < end ? pf : NULL);
  }
}

// ---------------------------------------------------------------------------------------------------
// GEMV on the pool (thread_pool.h).

static void gemv(const float* w, const float* x, float* y, int R, int K, int rows_per_x) {
  Gemv g = { w, x, y, K, rows_per_x };
  parallel_for(gemv_rows, &g, R, 16, 64);
}

// ---------------------------------------------------------------------------------------------------
// The same for M rows at once (decode batches): y[m * ys + r] = W[r, :] . x_m,r, x_m,r = x + m * xs +
// (r / rows_per_x) * K, each weight row read once for all M inputs. M = 1 is gemv; above, every output is
// one accumulator over K in order and one fixed reduction tree, whatever M and the thread count.

enum { MAX_ROWS = 16 };

typedef struct {
  const float* w;  // [R, K]
  const float* x;
  float* y;
  int K, M, rows_per_x;
  size_t xs, ys;
} Gemm;

#if defined(__AVX512F__) && defined(__AVX512VL__)
// Register tiles of 4 weight rows x 4 input rows: each 16-float step loads 4 + 4 vectors for 16 FMAs, so the
// inputs (up to 16 rows of K floats, more than L1 holds at K = 512) are read once per 4 weight rows instead of
// once per row, and the 4 weight rows (8 KiB at K = 512) are re-read from L1 for each group of 4 inputs.
// MP: M rounded up to 4, 8 or 16 (extra inputs repeat row 0 and are not stored); weight rows past r1 repeat
// r1 - 1 and are not stored. Measured (bench-mini lm_head, 32000 x 512, M = 16, 2 threads, in the engine):
// 6.5-6.7 ms with one weight row at a time.
static inline __attribute__((always_inline)) void gemm_tile(const Gemm* g, int r0, int r1, const int MP) {
  const int K = g->K;
  const char* end = (const char*)(g->w + (size_t)r1 * K);
  for (int r = r0; r < r1; r += 4) {
    const float* w[4];
    for (int i = 0; i < 4; i++) w[i] = g->w + (size_t)(r + i < r1 ? r + i : r1 - 1) * K;
    const char* pf = (const char*)(w[0] + 4 * (size_t)K);  // the next tile's rows, at the same k (2 or 4 tiles ahead: no faster)
    if (pf >= end) pf = NULL;
    // rows_per_x: weight rows of one group share an input block (per-head W_UV); a tile never spans two
    // groups, as rows_per_x is a multiple of 4 (gemm_rows checks)
    const size_t group = (size_t)(r / g->rows_per_x) * K;
    for (int m0 = 0; m0 < MP; m0 += 4) {
      const float* x[4];
      for (int j = 0; j < 4; j++) {
        const int m = m0 + j < g->M ? m0 + j : 0;
        x[j] = g->x + (size_t)m * g->xs + group;
      }
      __m512 acc[16];
      for (int t = 0; t < 16; t++) acc[t] = _mm512_setzero_ps();
      for (int k = 0; k < K; k += 16) {
        const __mmask16 mk = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
        if (pf && m0 == 0)
          for (int i = 0; i < 4; i++) __builtin_prefetch(pf + ((size_t)i * K + k) * sizeof(float), 0, 0);
        __m512 wv[4], xv[4];
        for (int i = 0; i < 4; i++) wv[i] = _mm512_maskz_loadu_ps(mk, w[i] + k);
        for (int j = 0; j < 4; j++) xv[j] = _mm512_maskz_loadu_ps(mk, x[j] + k);
        for (int i = 0; i < 4; i++)
          for (int j = 0; j < 4; j++) acc[i * 4 + j] = _mm512_fmadd_ps(wv[i], xv[j], acc[i * 4 + j]);
      }
      float sums[16];
      _mm256_storeu_ps(sums, hsum8(acc));
      _mm256_storeu_ps(sums + 8, hsum8(acc + 8));
      for (int i = 0; i < 4 && r + i < r1; i++)
        for (int j = 0; j < 4 && m0 + j < g->M; j++) g->y[(size_t)(m0 + j) * g->ys + r + i] = sums[i * 4 + j];
    }
  }
}
#endif

static void gemm_rows(const void* ctx, int r0, int r1) {
  const Gemm* g = ctx;
#if defined(__AVX512F__) && defined(__AVX512VL__)
  if (g->rows_per_x % 4 == 0) {
    if (g->M <= 4)
      gemm_tile(g, r0, r1, 4);
    else if (g->M <= 8)
      gemm_tile(g, r0, r1, 8);
    else
      gemm_tile(g, r0, r1, 16);
    return;
  }
#endif
  for (int r = r0; r < r1; r++)
    for (int m = 0; m < g->M; m++)
      g->y[(size_t)m * g->ys + r] = dot(g->w + (size_t)r * g->K, g->x + (size_t)m * g->xs + (size_t)(r / g->rows_per_x) * g->K, g->K);
}

// M <= MAX_ROWS rows.
static void gemm(const float* w, const float* x, float* y, int R, int K, int M, size_t xs, size_t ys, int rows_per_x) {
  if (M == 1) {
    gemv(w, x, y, R, K, rows_per_x);
    return;
  }
  if (rows_per_x >= R) rows_per_x = (R + 3) & ~3;  // one input per row: any multiple of 4 at or above R says so
  Gemm g = { w, x, y, K, M, rows_per_x, xs, ys };
  parallel_for(gemm_rows, &g, R, 16, 16);
}

// Per-thread scratch that grows and is kept: a fresh malloc of a few hundred KiB per call is an mmap and its
// page faults every time (measured ~100 us per DSA decode call at 16k keys). Thread-local, so engines in two
// JS threads never share it; one buffer per slot, so a kernel and one it calls hold theirs at once. NULL
// when out of memory.
enum { SCRATCH_DSA, SCRATCH_ATTEND, SCRATCH_CHUNK, SCRATCH_ROWS, SCRATCH_QX, SCRATCH_EXPERTS, SCRATCH_SEL, SCRATCH_SLOTS };

static void* thread_scratch(int slot, size_t bytes) {
  static __thread void* buf[SCRATCH_SLOTS];
  static __thread size_t cap[SCRATCH_SLOTS];
  if (bytes > cap[slot]) {  // grow by half again: a decode's context, and so its size, grows by one each step
    free(buf[slot]);
    const size_t grown = bytes + bytes / 2;
    buf[slot] = malloc(grown);
    cap[slot] = buf[slot] ? grown : 0;
  }
  return buf[slot];
}

#include "quant_gemm.h"

// ---------------------------------------------------------------------------------------------------
// Small vector ops (sizes of one row: a few thousand floats at most).

// y = w * x / sqrt(mean(x^2) + eps) (ONNX SimplifiedLayerNormalization).
static void rms_norm(const float* x, const float* w, float* y, int n, float eps) {
  double ss = 0;
  for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
  float inv = (float)(1.0 / sqrt(ss / n + eps));
  for (int i = 0; i < n; i++) y[i] = x[i] * inv * w[i];
}

// y = (x - mean) / sqrt(var + eps) * w + b, biased variance (ONNX LayerNormalization).
static void layer_norm(const float* x, const float* w, const float* b, float* y, int n, float eps) {
  double mean = 0, var = 0;
  for (int i = 0; i < n; i++) mean += x[i];
  mean /= n;
  for (int i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
  float inv = (float)(1.0 / sqrt(var / n + eps));
  for (int i = 0; i < n; i++) y[i] = (float)(x[i] - mean) * inv * w[i] + b[i];
}

// RoPE (model/rope.ts): y = x * cos + rot(x) * sin over `width` dims whose first d rotate in pairs
// (interleaved: (2i, 2i + 1), MLA; half-split: (i, i + d/2), the indexer); dims >= d pass through
// (their cos is 1, sin 0). In place.
static void rope(float* x, const float* cos, const float* sin, int d, int width, int interleaved) {
  float r[512];
  for (int i = 0; i < width; i++) r[i] = 0;
  for (int i = 0; i < d / 2; i++) {
    int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + d / 2;
    r[a] = -x[b];
    r[b] = x[a];
  }
  for (int i = 0; i < width; i++) x[i] = x[i] * cos[i] + r[i] * sin[i];
}

static float silu(float v) { return v / (1.0f + expf(-v)); }

#if defined(__AVX512F__)
// expf of 16 lanes (Cephes' polynomial: <= 2 ulp from expf; exp(-inf .. -104) = 0, NaN stays NaN, overflow
// gives inf).
static inline __m512 exp16(__m512 v) {
  // max(lo, v) returns v when v is NaN, so a NaN still poisons the result as expf's would
  v = _mm512_max_ps(_mm512_set1_ps(-104.0f), v);
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), v);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, k);
}
#endif

// act[i] = silu(gate[i]) * up[i] for i < n (SwiGLU's middle). A vector exp: prefill runs the routed experts
// of quantised models here, and expf per value was a large part of them (bench-mini int4 pp512, experts:
// 89-125 ms before this and the vector input quantiser, 28-55 ms after).
static void silu_mul(const float* gate, const float* up, float* act, int n) {
  int i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    const __m512 g = _mm512_loadu_ps(gate + i);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
    _mm512_storeu_ps(act + i, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), _mm512_loadu_ps(up + i)));
  }
#endif
  for (; i < n; i++) act[i] = silu(gate[i]) * up[i];
}

// ---------------------------------------------------------------------------------------------------
// One layer's weights (pointers into JS-owned Float32Arrays, or quantised weights packed by
// packQuantized, that the wrapper keeps alive) and scratch.

// A linear layer's weight: float32 [R, K] row-major, or quantised (quant_gemm.h).
typedef struct {
  const float* f;
  const QWeight* q;
} Lin;

// y[m * ys + r] = W[r, :] . x_m,r (x_m,r = x + m * xs + (r / rows_per_x) * K) for M <= MAX_ROWS rows; a
// quantised weight carries its groups (rows_per_x) itself. 0 when out of memory.
static int linear(Lin w, const float* x, float* y, int R, int K, int M, size_t xs, size_t ys, int rows_per_x) {
  if (w.q) return qgemm(w.q, x, y, M, xs, ys, (size_t)w.q->group_rows);
  gemm(w.f, x, y, R, K, M, xs, ys, rows_per_x);
  return 1;
}

enum {  // dims[]: the layout of createLayer's first argument
  D_HIDDEN, D_HEADS, D_KV_LORA, D_ROPE, D_NOPE, D_V, D_Q_LORA, D_IDX_HEADS, D_IDX_DIM, D_FFN_KIND, D_FFN_I, D_EXPERTS,
  D_EXPERT_I, D_X_ROWS, D_QR_ROWS, D_COUNT
};
enum { FFN_DENSE = 0, FFN_MOE = 1, FFN_MOE_SHARED = 2 };
enum {  // tensors[]: the layout of createLayer's second argument (null where a part does not exist)
  T_IN_NORM, T_WX, T_QA_NORM, T_WQR, T_WUK, T_KV_NORM, T_IK_NORM_W, T_IK_NORM_B, T_WUV, T_O_PROJ, T_POST_NORM,
  T_FFN_GATE_UP, T_FFN_DOWN, T_ROUTER, T_COUNT
};

typedef struct {
  int dims[D_COUNT];
  float eps, idx_eps;
  const float* t[T_COUNT];   // float32 tensors (NULL for a quantised or missing one)
  const QWeight* q[T_COUNT];  // quantised linear weights
  Lin* expert_gate_up;        // [E] -> [2 I, D]
  Lin* expert_down;           // [E] -> [D, I]
} Layer;

static Lin lin(const Layer* L, int i) { return (Lin){ L->t[i], L->q[i] }; }

// Per-row buffers of one call, M rows each (this thread's SCRATCH_ROWS): [M, size] row-major.
typedef struct {
  float *x, *xo, *qr, *qro, *v, *a, *h2, *gu, *act, *y, *xe, *yk;
} Rows;

static int ffn_width(const Layer* L) {
  int w = L->dims[D_FFN_I];
  if (L->dims[D_EXPERT_I] > w) w = L->dims[D_EXPERT_I];
  return w;
}

static void* typed(napi_env env, napi_value v, size_t* len) {
  napi_typedarray_type t;
  size_t n = 0, off;
  void* data = NULL;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &t, &n, &data, &ab, &off) != napi_ok) return NULL;
  if (len) *len = n;
  return data;
}

// The call's first n arguments into a (missing ones undefined); returns how many were passed.
static size_t args(napi_env env, napi_callback_info info, napi_value* a, size_t n) {
  size_t argc = n;
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  return argc;
}

static int is_null(napi_env env, napi_value v) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  return t == napi_null || t == napi_undefined;
}

// A quantised weight made by packQuantized (NULL for anything else).
static const QWeight* qweight_arg(napi_env env, napi_value v) {
  napi_valuetype t;
  void* p = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &p) != napi_ok || !p) return NULL;
  return ((const QWeight*)p)->magic == QWEIGHT_MAGIC ? p : NULL;
}

// A linear weight argument: Float32Array or a packQuantized external.
static Lin lin_arg(napi_env env, napi_value v) {
  const QWeight* q = qweight_arg(env, v);
  return (Lin){ q ? NULL : typed(env, v, NULL), q };
}

static void layer_finalize(napi_env env, void* data, void* hint) {
  (void)env, (void)hint;
  Layer* L = data;
  free(L->expert_gate_up);
  free(L->expert_down);
  free(L);
}

// createLayer(dims: Int32Array [D_COUNT], eps: Float64Array [rms, indexer LayerNorm], tensors: (Float32Array |
// quantised | null)[T_COUNT], expertGateUp: (Float32Array | quantised)[], expertDown: (...)[]) -> external.
// Quantised weights (packQuantized) are taken for the linear layers only; the caller keeps them alive.
static napi_value create_layer(napi_env env, napi_callback_info info) {
  napi_value a[5];
  args(env, info, a, 5);
  Layer* L = calloc(1, sizeof(Layer));
  size_t n = 0;
  const int32_t* dims = typed(env, a[0], &n);
  const double* eps = typed(env, a[1], NULL);
  if (!dims || n != D_COUNT || !eps) {
    free(L);
    napi_throw_error(env, NULL, "createLayer: bad dims or eps");
    return NULL;
  }
  memcpy(L->dims, dims, sizeof(L->dims));
  L->eps = (float)eps[0], L->idx_eps = (float)eps[1];
  for (int i = 0; i < T_COUNT; i++) {
    napi_value v;
    napi_get_element(env, a[2], i, &v);
    if (is_null(env, v)) continue;
    const Lin w = lin_arg(env, v);
    L->t[i] = w.f, L->q[i] = w.q;
  }
  int E = L->dims[D_EXPERTS];
  L->expert_gate_up = calloc(E > 0 ? E : 1, sizeof(Lin));
  L->expert_down = calloc(E > 0 ? E : 1, sizeof(Lin));
  for (int e = 0; e < E; e++) {
    napi_value v;
    napi_get_element(env, a[3], e, &v);
    L->expert_gate_up[e] = lin_arg(env, v);
    napi_get_element(env, a[4], e, &v);
    L->expert_down[e] = lin_arg(env, v);
  }
  napi_value ext;
  napi_create_external(env, L, layer_finalize, NULL, &ext);
  return ext;
}

static Layer* layer_arg(napi_env env, napi_value v) {
  void* p = NULL;
  napi_get_value_external(env, v, &p);
  return p;
}

// M rows of every per-row buffer (k: routed experts per row, for yk), NULL when out of memory.
static int rows_scratch(const Layer* L, int M, int k, Rows* r) {
  const int D = L->dims[D_HIDDEN], H = L->dims[D_HEADS], dv = L->dims[D_V], I = ffn_width(L);
  const size_t sizes[] = { D, L->dims[D_X_ROWS], L->dims[D_Q_LORA], L->dims[D_QR_ROWS], (size_t)H * dv, D, D, 2 * (size_t)I, I, D, D, (size_t)k * D };
  float** slots[] = { &r->x, &r->xo, &r->qr, &r->qro, &r->v, &r->a, &r->h2, &r->gu, &r->act, &r->y, &r->xe, &r->yk };
  size_t total = 0;
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) total += ((size_t)M * sizes[i] + 15) & ~(size_t)15;
  float* p = thread_scratch(SCRATCH_ROWS, total * sizeof(float));
  if (!p) return 0;
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    *slots[i] = p;
    p += ((size_t)M * sizes[i] + 15) & ~(size_t)15;
  }
  return 1;
}

// The number of rows M of a call's h [M, D] (0: not a whole number of rows, or more than MAX_ROWS).
static int row_count(size_t n, int D) { return n == 0 || n % (size_t)D != 0 || n / (size_t)D > MAX_ROWS ? 0 : (int)(n / (size_t)D); }

// W_UK absorption for heads [h0, h1) of M rows: q_lat[m, h] = q_nope[m, h] @ W_UK[h] ([dn] x [dn, L]; scale folded in).
typedef struct {
  const Layer* L;
  const float* q_nope;  // row m at q_nope + m * stride: [H, dn]
  size_t stride;
  float* q;  // [M, H, L + dr]
  int M;
} Absorb;

static void absorb_heads(const void* ctx, int h0, int h1) {
  const Absorb* c = ctx;
  const int L = c->L->dims[D_KV_LORA], dn = c->L->dims[D_NOPE], C = L + c->L->dims[D_ROPE], H = c->L->dims[D_HEADS];
  for (int h = h0; h < h1; h++) {
    const float* w = c->L->t[T_WUK] + (size_t)h * dn * L;
    for (int m = 0; m < c->M; m++) {
      float* out = c->q + ((size_t)m * H + h) * C;
      const float* qn = c->q_nope + m * c->stride + (size_t)h * dn;
      for (int i = 0; i < L; i++) out[i] = 0;
      for (int d = 0; d < dn; d++) {
        const float s = qn[d];
        const float* row = w + (size_t)d * L;
        for (int i = 0; i < L; i++) out[i] += s * row[i];
      }
    }
  }
}

// pre(layer, h [M, D], cos [M, dr], sin [M, dr], icos [M, Di] | null, isin [M, Di] | null,
//     q [M, H, L + dr], kv [M, L + dr], iq [M, Hi, Di] | null, ik [M, Di] | null, iw [M, Hi] | null), M <= MAX_ROWS
static napi_value pre(napi_env env, napi_callback_info info) {
  napi_value a[11];
  args(env, info, a, 11);
  Layer* L = layer_arg(env, a[0]);
  size_t hn = 0;
  const float *h = typed(env, a[1], &hn), *cos = typed(env, a[2], NULL), *sin = typed(env, a[3], NULL);
  const int D = L->dims[D_HIDDEN], H = L->dims[D_HEADS], Lr = L->dims[D_KV_LORA], dr = L->dims[D_ROPE];
  const int dn = L->dims[D_NOPE], qLora = L->dims[D_Q_LORA], Hi = L->dims[D_IDX_HEADS], Di = L->dims[D_IDX_DIM];
  const int C = Lr + dr, XR = L->dims[D_X_ROWS], QR = L->dims[D_QR_ROWS], M = row_count(hn, D);
  float *q = typed(env, a[6], NULL), *kv = typed(env, a[7], NULL);
  Rows r;
  if (M == 0 || !rows_scratch(L, M, 0, &r)) {
    napi_throw_range_error(env, NULL, "pre: h must be 1 to 16 rows (or out of memory)");
    return NULL;
  }
  for (int m = 0; m < M; m++) rms_norm(h + (size_t)m * D, L->t[T_IN_NORM], r.x + (size_t)m * D, D, L->eps);
  int ok = linear(lin(L, T_WX), r.x, r.xo, XR, D, M, D, XR, XR);  // 0: a quantised product's input scratch failed
  // [q_nope | q_pe] from x (direct q_proj) or from qr = RMSNorm(qa) (q-LoRA, with the indexer query).
  const float *q_nope, *q_pe, *kv_a;
  size_t q_stride;
  if (qLora > 0) {
    for (int m = 0; m < M; m++) rms_norm(r.xo + (size_t)m * XR, L->t[T_QA_NORM], r.qr + (size_t)m * qLora, qLora, L->eps);
    ok &= linear(lin(L, T_WQR), r.qr, r.qro, QR, qLora, M, qLora, QR, QR);
    q_nope = r.qro, q_pe = r.qro + H * dn, kv_a = r.xo + qLora, q_stride = QR;
  } else {
    q_nope = r.xo, q_pe = r.xo + H * dn, kv_a = r.xo + H * (dn + dr), q_stride = XR;
  }
  if (L->q[T_WUK]) {  // per-head [L, dn] blocks along qk_nope, written straight into q's [M, H, C] rows
    ok &= qgemm(L->q[T_WUK], q_nope, q, M, q_stride, (size_t)H * C, C);
  } else {
    Absorb ab = { L, q_nope, q_stride, q, M };
    parallel_for(absorb_heads, &ab, H, 1, 2);
  }
  const int indexer = Hi > 0 && !is_null(env, a[8]);
  const float *icos = indexer ? typed(env, a[4], NULL) : NULL, *isin = indexer ? typed(env, a[5], NULL) : NULL;
  float *iq = indexer ? typed(env, a[8], NULL) : NULL, *ik = indexer ? typed(env, a[9], NULL) : NULL, *iw = indexer ? typed(env, a[10], NULL) : NULL;
  for (int m = 0; m < M; m++) {
    const float *cm = cos + (size_t)m * dr, *sm = sin + (size_t)m * dr, *kva = kv_a + (size_t)m * XR;
    float *qm = q + (size_t)m * H * C, *kvm = kv + (size_t)m * C;
    for (int hd = 0; hd < H; hd++) {
      float* qp = qm + (size_t)hd * C + Lr;
      memcpy(qp, q_pe + m * q_stride + (size_t)hd * dr, sizeof(float) * dr);
      rope(qp, cm, sm, dr, dr, 1);
    }
    rms_norm(kva, L->t[T_KV_NORM], kvm, Lr, L->eps);
    memcpy(kvm + Lr, kva + Lr, sizeof(float) * dr);
    rope(kvm + Lr, cm, sm, dr, dr, 1);
    if (indexer) {
      const float *icm = icos + (size_t)m * Di, *ism = isin + (size_t)m * Di;
      const float* iq_raw = r.qro + (size_t)m * QR + H * (dn + dr);
      for (int hd = 0; hd < Hi; hd++) {
        float* dst = iq + ((size_t)m * Hi + hd) * Di;
        memcpy(dst, iq_raw + (size_t)hd * Di, sizeof(float) * Di);
        rope(dst, icm, ism, dr, Di, 0);
      }
      const float* ik_raw = kva + C;
      layer_norm(ik_raw, L->t[T_IK_NORM_W], L->t[T_IK_NORM_B], ik + (size_t)m * Di, Di, L->idx_eps);
      rope(ik + (size_t)m * Di, icm, ism, dr, Di, 0);
      memcpy(iw + (size_t)m * Hi, ik_raw + Di, sizeof(float) * Hi);
    }
  }
  if (!ok) napi_throw_error(env, NULL, "pre: out of memory");
  return NULL;
}

// SwiGLU over M rows x [M, D] with stacked [gate; up] [2I, D] and down [D, I]: y [M, D] (r.gu, r.act: scratch).
static int swiglu(const Layer* L, const Rows* r, Lin gate_up, Lin down, const float* x, float* y, int I, int M) {
  const int D = L->dims[D_HIDDEN];
  if (!linear(gate_up, x, r->gu, 2 * I, D, M, D, 2 * (size_t)I, 2 * I)) return 0;
  for (int m = 0; m < M; m++) silu_mul(r->gu + (size_t)m * 2 * I, r->gu + (size_t)m * 2 * I + I, r->act + (size_t)m * I, I);
  return linear(down, r->act, y, D, I, M, I, D, D);
}

// post(layer, h [M, D], o [M, H, L], hOut [M, D], x2 [M, D] | null, router [M, E] | null): MLA 6 (W_UV per
// head, o_proj, residual), RMSNorm_post, then the dense MLP (hOut = h2 + mlp(x2)) or, for MoE layers, the
// router logits and hOut = h2 + shared experts(x2).
static napi_value post(napi_env env, napi_callback_info info) {
  napi_value a[6];
  args(env, info, a, 6);
  Layer* L = layer_arg(env, a[0]);
  size_t hn = 0;
  const float *h = typed(env, a[1], &hn), *o = typed(env, a[2], NULL);
  float* h_out = typed(env, a[3], NULL);
  const int D = L->dims[D_HIDDEN], H = L->dims[D_HEADS], Lr = L->dims[D_KV_LORA], dv = L->dims[D_V], E = L->dims[D_EXPERTS], M = row_count(hn, D);
  Rows r;
  if (M == 0 || !rows_scratch(L, M, 0, &r)) {
    napi_throw_range_error(env, NULL, "post: h must be 1 to 16 rows (or out of memory)");
    return NULL;
  }
  if (!linear(lin(L, T_WUV), o, r.v, H * dv, Lr, M, (size_t)H * Lr, (size_t)H * dv, dv) ||
      !linear(lin(L, T_O_PROJ), r.v, r.a, D, H * dv, M, (size_t)H * dv, D, D)) {
    napi_throw_error(env, NULL, "post: out of memory");
    return NULL;
  }
  for (size_t i = 0; i < (size_t)M * D; i++) r.h2[i] = h[i] + r.a[i];
  float* x2 = is_null(env, a[4]) ? r.x : typed(env, a[4], NULL);
  for (int m = 0; m < M; m++) rms_norm(r.h2 + (size_t)m * D, L->t[T_POST_NORM], x2 + (size_t)m * D, D, L->eps);
  const int kind = L->dims[D_FFN_KIND];
  if (kind != FFN_DENSE) gemm(L->t[T_ROUTER], x2, typed(env, a[5], NULL), E, D, M, D, E, E);
  if (kind == FFN_MOE) {
    memcpy(h_out, r.h2, sizeof(float) * M * D);
    return NULL;
  }
  if (!swiglu(L, &r, lin(L, T_FFN_GATE_UP), lin(L, T_FFN_DOWN), x2, r.y, L->dims[D_FFN_I], M)) {
    napi_throw_error(env, NULL, "post: out of memory");
    return NULL;
  }
  for (size_t i = 0; i < (size_t)M * D; i++) h_out[i] = r.h2[i] + r.y[i];
  return NULL;
}

// experts(layer, x2 [M, D], h [M, D] (in place: h[m] += sum_j w[m, j] * expert_{ids[m, j]}(x2[m])), ids:
// Int32Array [M, k], w: Float32Array [M, k]), any M: decode steps, and with quantised weights every prefill
// chunk too (deepseek_model.ts runs no graph for them). Rows go in tiles whose k outputs per row fit
// EXPERT_TILE_BYTES; within a tile each expert runs once per EXPERT_ROWS of the rows that picked it (16
// for float32: gemm's register tiles), reading its weights once for them; a row's k outputs are then summed
// in j order and added (moe.ts's order), so a row's result does not depend on the other rows.
enum { EXPERT_ROWS_Q = 64, EXPERT_TILE_BYTES = 8 << 20 };

static napi_value experts(napi_env env, napi_callback_info info) {
  napi_value a[5];
  args(env, info, a, 5);
  Layer* L = layer_arg(env, a[0]);
  size_t xn = 0, n = 0;
  const float* x2 = typed(env, a[1], &xn);
  float* h = typed(env, a[2], NULL);
  const int32_t* ids = typed(env, a[3], &n);
  const float* w = typed(env, a[4], NULL);
  const int D = L->dims[D_HIDDEN], E = L->dims[D_EXPERTS], I = L->dims[D_EXPERT_I];
  const size_t Ms = xn % (size_t)D == 0 ? xn / (size_t)D : 0;
  const int M = Ms > 0 && Ms <= INT32_MAX / 64 ? (int)Ms : 0;
  const int k = M > 0 ? (int)(n / (size_t)M) : 0;
  if (M == 0 || k == 0 || k > 64 || n % (size_t)M != 0 || E == 0) {
    napi_throw_range_error(env, NULL, "experts: x2 must be whole rows with 1 to 64 expert ids each");
    return NULL;
  }
  for (size_t j = 0; j < n; j++)
    if (ids[j] < 0 || ids[j] >= E) {
      napi_throw_range_error(env, NULL, "experts: expert id out of range");
      return NULL;
    }
  const int rows = L->expert_gate_up[0].q ? EXPERT_ROWS_Q : MAX_ROWS;
  int tile = (int)(EXPERT_TILE_BYTES / ((size_t)k * D * sizeof(float)));
  if (tile < rows) tile = rows;
  if (tile > M) tile = M;
  // Scratch: per call of an expert, rows x (x, [gate; up], act, y); per tile, the k outputs of each row, the
  // picks sorted by expert and each expert's start in them.
  const size_t f_rows = (size_t)rows * (D + 2 * (size_t)I + I + D), f_yk = (size_t)tile * k * D;
  const size_t bytes = (f_rows + f_yk + D) * sizeof(float) + ((size_t)tile * k + E + 1) * sizeof(int);
  float* s = thread_scratch(SCRATCH_EXPERTS, bytes);
  if (!s) {
    napi_throw_error(env, NULL, "experts: out of memory");
    return NULL;
  }
  Rows r = { 0 };
  r.xe = s, r.gu = r.xe + (size_t)rows * D, r.act = r.gu + (size_t)rows * 2 * I, r.y = r.act + (size_t)rows * I;
  float *yk = r.y + (size_t)rows * D, *acc = yk + f_yk;
  int *pick = (int*)(acc + D), *start = pick + (size_t)tile * k;
  for (int m0 = 0; m0 < M; m0 += tile) {
    const int mt = M - m0 < tile ? M - m0 : tile;
    const int32_t* tid = ids + (size_t)m0 * k;
    for (int e = 0; e <= E; e++) start[e] = 0;
    for (int i = 0; i < mt * k; i++) start[tid[i] + 1]++;
    for (int e = 0; e < E; e++) start[e + 1] += start[e];
    for (int i = 0; i < mt * k; i++) pick[start[tid[i]]++] = i;  // start[e] is now the end of e's picks
    for (int e = 0, p0 = 0; e < E; p0 = start[e++]) {
      for (int c0 = p0; c0 < start[e]; c0 += rows) {
        const int cnt = start[e] - c0 < rows ? start[e] - c0 : rows;
        for (int p = 0; p < cnt; p++) memcpy(r.xe + (size_t)p * D, x2 + ((size_t)m0 + pick[c0 + p] / k) * D, sizeof(float) * D);
        if (!swiglu(L, &r, L->expert_gate_up[e], L->expert_down[e], r.xe, r.y, I, cnt)) {
          napi_throw_error(env, NULL, "experts: out of memory");
          return NULL;
        }
        for (int p = 0; p < cnt; p++) memcpy(yk + (size_t)pick[c0 + p] * D, r.y + (size_t)p * D, sizeof(float) * D);
      }
    }
    for (int m = 0; m < mt; m++) {
      for (int i = 0; i < D; i++) acc[i] = 0;
      for (int j = 0; j < k; j++) {
        const float wj = w[((size_t)m0 + m) * k + j], *y = yk + ((size_t)m * k + j) * D;
        for (int i = 0; i < D; i++) acc[i] += wj * y[i];
      }
      for (int i = 0; i < D; i++) h[((size_t)m0 + m) * D + i] += acc[i];
    }
  }
  return NULL;
}

// ---------------------------------------------------------------------------------------------------
// Cache pools as the kernels read them: float32, or bfloat16 bits (--kv-cache-dtype bfloat16), which widen to
// float32 exactly (the ONNX graphs' Cast does the same), so both dtypes share every sum below.

typedef struct {
  const void* rows;  // [P, width]
  int bf16;
  size_t P;  // rows in the pool
} Pool;

// The pool behind a Float32Array or a Uint16Array (bf16 bits) of P rows of `width`; rows NULL if neither.
static Pool pool_arg(napi_env env, napi_value v, size_t width) {
  Pool p = { NULL, 0, 0 };
  napi_typedarray_type t;
  size_t n = 0, off;
  void* data = NULL;
  napi_value ab;
  if (width == 0 || napi_get_typedarray_info(env, v, &t, &n, &data, &ab, &off) != napi_ok) return p;
  if (t != napi_float32_array && t != napi_uint16_array) return p;
  p.rows = data, p.bf16 = t == napi_uint16_array, p.P = n / width;
  return p;
}

// Row `slot` of a pool as float32: in place, or widened into out [width].
static const float* pool_row(const Pool* p, int32_t slot, int width, float* out) {
  if (!p->bf16) return (const float*)p->rows + (size_t)slot * width;
  const uint16_t* src = (const uint16_t*)p->rows + (size_t)slot * width;
  int i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= width; i += 16)
    _mm512_storeu_ps(out + i, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(src + i))), 16)));
#endif
  for (; i < width; i++) {
    const uint32_t u = (uint32_t)src[i] << 16;
    memcpy(out + i, &u, sizeof u);
  }
  return out;
}

static void prefetch_row(const Pool* p, int32_t slot, int width) {
  const size_t bytes = (size_t)width * (p->bf16 ? 2 : 4);
  const char* row = (const char*)p->rows + (size_t)slot * bytes;
  for (size_t b = 0; b < bytes; b += 64) __builtin_prefetch(row + b, 0, 0);
}

// ---------------------------------------------------------------------------------------------------
// MLA 5 for one query row over every visible key (mla.ts attendGatheredNodes, S = 1): scores of each head
// against the cached latent rows (q carries the softmax scale), softmax, o[h] = p . kv[:, :L]. Keys are
// taken in fixed chunks of ATTEND_CHUNK positions, each with its own running max and sum (flash-decoding),
// merged in chunk order: the result does not depend on how chunks are spread over threads.

enum { ATTEND_CHUNK = 128, ROW_PREFETCH = 8 };

typedef struct {
  const float* q;  // [H, C]
  Pool pool;       // [P, C]
  const int32_t* slots;  // [T]
  int T, H, C, L;
  float* m;    // [chunks, H] chunk max
  float* l;    // [chunks, H] chunk sum of exp
  float* acc;  // [chunks, H, L] chunk sum of exp * rows
  atomic_int* failed;  // set by a thread without scratch
} Attend;


// out[h * stride] = q[h] . row for h < H (q [H, C]). AVX-512: eight heads at a time share each load of the row,
// and their eight sums are reduced together (hsum8).
static void score_row(const float* q, const float* row, int H, int C, float* out, int stride) {
  int h0 = 0;
#if defined(__AVX512F__) && defined(__AVX512VL__)
  for (; h0 + 8 <= H; h0 += 8) {
    __m512 acc[8];
    for (int k = 0; k < 8; k++) acc[k] = _mm512_setzero_ps();
    const float* qh = q + (size_t)h0 * C;
    for (int c = 0; c < C; c += 16) {
      const __mmask16 m = C - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (C - c)) - 1);
      const __m512 r = _mm512_maskz_loadu_ps(m, row + c);
      for (int k = 0; k < 8; k++) acc[k] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, qh + (size_t)k * C + c), r, acc[k]);
    }
    float sums[8];
    _mm256_storeu_ps(sums, hsum8(acc));
    for (int k = 0; k < 8; k++) out[(size_t)(h0 + k) * stride] = sums[k];
  }
#endif
  for (int h = h0; h < H; h++) out[(size_t)h * stride] = dot(q + (size_t)h * C, row, C);
}

// score_row for two rows at once (out[h * stride] and out[h * stride + 1]), the same sums bit for bit: each
// load of eight heads' q serves both rows (10 loads per 16 FMAs instead of 9 per 8: the one-row form is
// bound by loads).
static void score_rows2(const float* q, const float* r0, const float* r1, int H, int C, float* out, int stride) {
  int h0 = 0;
#if defined(__AVX512F__) && defined(__AVX512VL__)
  for (; h0 + 8 <= H; h0 += 8) {
    __m512 a0[8], a1[8];
    for (int k = 0; k < 8; k++) a0[k] = a1[k] = _mm512_setzero_ps();
    const float* qh = q + (size_t)h0 * C;
    for (int c = 0; c < C; c += 16) {
      const __mmask16 m = C - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (C - c)) - 1);
      const __m512 x0 = _mm512_maskz_loadu_ps(m, r0 + c), x1 = _mm512_maskz_loadu_ps(m, r1 + c);
      for (int k = 0; k < 8; k++) {
        const __m512 qv = _mm512_maskz_loadu_ps(m, qh + (size_t)k * C + c);
        a0[k] = _mm512_fmadd_ps(qv, x0, a0[k]);
        a1[k] = _mm512_fmadd_ps(qv, x1, a1[k]);
      }
    }
    float s0[8], s1[8];
    _mm256_storeu_ps(s0, hsum8(a0));
    _mm256_storeu_ps(s1, hsum8(a1));
    for (int k = 0; k < 8; k++) {
      out[(size_t)(h0 + k) * stride] = s0[k];
      out[(size_t)(h0 + k) * stride + 1] = s1[k];
    }
  }
#endif
  for (int h = h0; h < H; h++) {
    out[(size_t)h * stride] = dot(q + (size_t)h * C, r0, C);
    out[(size_t)h * stride + 1] = dot(q + (size_t)h * C, r1, C);
  }
}

// x[i] = exp(x[i] - shift) for i < n. AVX-512: Cody-Waite reduction and Cephes' expf polynomial (within 2
// ulp of expf), 16 at a time: libm's scalar expf was half of a 128-key chunk's time.
static void exp_shifted(float* x, int n, float shift) {
  int i = 0;
#if defined(__AVX512F__)
  const __m512 sh = _mm512_set1_ps(shift);
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(x + i, m, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), sh)));
  }
#endif
  for (; i < n; i++) x[i] = expf(x[i] - shift);
}

#if defined(__AVX512F__)
// acc[h0 + a][j .. j + 16 NV) for a < HA over the n rows: HA x NV accumulators in registers, one FMA chain
// per output in row order.
static inline __attribute__((always_inline)) void accumulate_block(const float* p, int pstride, const float* const* rows, int n, int L, float* acc,
                                                                   int h0, int j, const int HA, const int NV) {
  __m512 s[4][4];
  for (int a = 0; a < HA; a++)
    for (int k = 0; k < NV; k++) s[a][k] = _mm512_setzero_ps();
  for (int i = 0; i < n; i++) {
    __m512 r[4];
    for (int k = 0; k < NV; k++) r[k] = _mm512_loadu_ps(rows[i] + j + 16 * k);
    for (int a = 0; a < HA; a++) {
      const __m512 pa = _mm512_set1_ps(p[(size_t)(h0 + a) * pstride + i]);
      for (int k = 0; k < NV; k++) s[a][k] = _mm512_fmadd_ps(pa, r[k], s[a][k]);
    }
  }
  for (int a = 0; a < HA; a++)
    for (int k = 0; k < NV; k++) _mm512_storeu_ps(acc + (size_t)(h0 + a) * L + j + 16 * k, s[a][k]);
}
#endif

// acc[h][j] = sum over i < n (in order) of p[h][i] * rows[i][j], for h < H, j < L (p [H, pstride], acc [H, L]).
// AVX-512: blocks of 4 heads x 64 columns in 16 registers across the rows, so each load of a row's block
// serves 4 heads (8 loads per 16 FMAs; a head at a time was one load per FMA, and the bound).
static void accumulate_rows(const float* p, int pstride, const float* const* rows, int n, int H, int L, float* acc) {
  int j0 = 0;
#if defined(__AVX512F__)
  for (int h = 0; h < H; h += 4) {
    const int four = H - h >= 4;
    int j = 0;
    for (; j + 64 <= L; j += 64) {
      if (four)
        accumulate_block(p, pstride, rows, n, L, acc, h, j, 4, 4);
      else
        for (int a = h; a < H; a++) accumulate_block(p, pstride, rows, n, L, acc, a, j, 1, 4);
    }
    for (; j + 16 <= L; j += 16) {
      if (four)
        accumulate_block(p, pstride, rows, n, L, acc, h, j, 4, 1);
      else
        for (int a = h; a < H; a++) accumulate_block(p, pstride, rows, n, L, acc, a, j, 1, 1);
    }
    j0 = j;
  }
#endif
  for (int h = 0; h < H; h++)
    for (int j = j0; j < L; j++) {
      float v = 0;
      for (int i = 0; i < n; i++) v += p[(size_t)h * pstride + i] * rows[i][j];
      acc[(size_t)h * L + j] = v;
    }
}

static void attend_chunks(const void* ctx, int c0, int c1) {
  const Attend* a = ctx;
  const int H = a->H, C = a->C, L = a->L;
  // [H, ATTEND_CHUNK] scores, then (bf16 pools) the chunk's rows widened to float32 [ATTEND_CHUNK, C]
  float* s = thread_scratch(SCRATCH_CHUNK, sizeof(float) * ((size_t)H * ATTEND_CHUNK + (a->pool.bf16 ? (size_t)ATTEND_CHUNK * C : 0)));
  if (!s) {
    atomic_store(a->failed, 1);
    return;
  }
  float* wide = s + (size_t)H * ATTEND_CHUNK;
  const float* rows[ATTEND_CHUNK];
  for (int c = c0; c < c1; c++) {
    const int t0 = c * ATTEND_CHUNK, n = a->T - t0 < ATTEND_CHUNK ? a->T - t0 : ATTEND_CHUNK;
    // Scores row by row (a row is read from DRAM once for every head), fetching ROW_PREFETCH rows ahead.
    for (int i = 0; i < n; i++) {
      if (i + ROW_PREFETCH < n) prefetch_row(&a->pool, a->slots[t0 + i + ROW_PREFETCH], C);
      rows[i] = pool_row(&a->pool, a->slots[t0 + i], C, wide + (size_t)i * C);
      if (i % 2 == 1) score_rows2(a->q, rows[i - 1], rows[i], H, C, s + i - 1, ATTEND_CHUNK);
    }
    if (n % 2 == 1) score_row(a->q, rows[n - 1], H, C, s + n - 1, ATTEND_CHUNK);
    for (int h = 0; h < H; h++) {
      float* sh = s + (size_t)h * ATTEND_CHUNK;
      float mx = -INFINITY;
      for (int i = 0; i < n; i++) mx = sh[i] > mx ? sh[i] : mx;
      exp_shifted(sh, n, mx);  // sh[i] = exp(sh[i] - mx)
      float sum = 0;
      for (int i = 0; i < n; i++) sum += sh[i];
      a->m[c * H + h] = mx;
      a->l[c * H + h] = sum;
    }
    accumulate_rows(s, ATTEND_CHUNK, rows, n, H, L, a->acc + (size_t)c * H * L);
  }
}

static int valid_slots(const int32_t* slots, size_t T, size_t P) {
  for (size_t i = 0; i < T; i++)
    if (slots[i] < 0 || (size_t)slots[i] >= P) return 0;
  return 1;
}

// MLA 5 over the rows at slots[0 .. T) of pool [P, C] for q [H, C]: o [H, L]. NULL, or what went wrong.
static const char* attend_rows(const float* q, const Pool* rows, const int32_t* slots, int T, int H, int C, int L, float* o) {
  const int chunks = (T + ATTEND_CHUNK - 1) / ATTEND_CHUNK;
  float* scratch = thread_scratch(SCRATCH_ATTEND, (size_t)chunks * H * (2 + L) * sizeof(float));
  if (!scratch || !thread_scratch(SCRATCH_CHUNK, sizeof(float) * ((size_t)H * ATTEND_CHUNK + (rows->bf16 ? (size_t)ATTEND_CHUNK * C : 0))))
    return "attend: out of memory";
  atomic_int failed = 0;
  Attend at = { q, *rows, slots, T, H, C, L, scratch, scratch + (size_t)chunks * H, scratch + (size_t)chunks * H * 2, &failed };
  parallel_for(attend_chunks, &at, chunks, 1, 1);
  if (atomic_load(&failed)) return "attend: out of memory in a worker thread";
  for (int h = 0; h < H; h++) {
    float mx = -INFINITY;
    for (int c = 0; c < chunks; c++) mx = at.m[c * H + h] > mx ? at.m[c * H + h] : mx;
    float* oh = o + (size_t)h * L;
    for (int j = 0; j < L; j++) oh[j] = 0;
    float sum = 0;
    for (int c = 0; c < chunks; c++) {
      const float w = expf(at.m[c * H + h] - mx);
      sum += w * at.l[c * H + h];
      const float* acc = at.acc + ((size_t)c * H + h) * L;
      for (int j = 0; j < L; j++) oh[j] += w * acc[j];
    }
    const float inv = 1.0f / sum;
    for (int j = 0; j < L; j++) oh[j] *= inv;
  }
  return NULL;
}

// attend(q: Float32Array [H, C], pool: Float32Array | Uint16Array (bf16) [P, C], slots: Int32Array [T],
// o: Float32Array [H, L], L)
static napi_value attend(napi_env env, napi_callback_info info) {
  napi_value a[5];
  args(env, info, a, 5);
  size_t qn = 0, T = 0, on = 0;
  const float* q = typed(env, a[0], &qn);
  const int32_t* slots = typed(env, a[2], &T);
  float* o = typed(env, a[3], &on);
  int32_t L = 0;
  napi_get_value_int32(env, a[4], &L);
  if (!q || !slots || !o || L <= 0 || T == 0 || on % (size_t)L != 0 || on == 0 || qn % (on / (size_t)L) != 0) {
    napi_throw_range_error(env, NULL, "attend: bad arguments");
    return NULL;
  }
  const int H = (int)(on / (size_t)L), C = (int)(qn / (size_t)H);
  const Pool latent = pool_arg(env, a[1], (size_t)C);
  if (!latent.rows || !valid_slots(slots, T, latent.P)) {
    napi_throw_range_error(env, NULL, "attend: bad pool or slot out of range");
    return NULL;
  }
  const char* err = attend_rows(q, &latent, slots, (int)T, H, C, L, o);
  if (err) napi_throw_error(env, NULL, err);
  return NULL;
}

// ---------------------------------------------------------------------------------------------------
// DSA decode for one query row (dsa_decode.ts's graph, B = 1): IDX 5 scores every visible key, IDX 6 keeps
// the topk best (ties to the lower position, as ONNX TopK and the reference), MLA 5 attends the kept rows.
// The row sits at position T - 1, so every key is visible. Each key's score is computed by one thread in a
// fixed order, whatever the thread count.

// Scores as unsigned keys in the same order (-0 first made +0: the two tie, as float comparison says); NaN,
// which never ranks, maps to 0 (no number does).
static uint32_t order_key(float f) {
  if (f != f) return 0;
  if (f == 0) f = 0;
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

enum { RADIX_BITS = 12, HIST = 1 << RADIX_BITS, MAX_SCORE_DI = 512, SCORE_TILE = 8 };

typedef struct {
  const float* iq;  // [Hi, Di]
  const float* iw;  // [Hi]
  const float* qT;  // the query in lanes (score_tiles), or NULL: the scalar path
  const float* w;   // the weights in the same lanes
  Pool keys;        // [P, Di]
  const int32_t* slots;  // [T]
  int T, Hi, HP, Di, parts;
  uint32_t* order;  // [T] order_key of each score
  uint32_t* hist;   // [parts, HIST] counts of the keys' top RADIX_BITS bits (NaN not counted)
} IndexerScores;

// The head count score_tiles' lanes hold (zero-padded): 1, 2, 4, 8, 16, 32, 48, 64 or 128 (more: no lanes).
static int padded_heads(int Hi) {
  static const int sizes[] = { 1, 2, 4, 8, 16, 32, 48, 64, 128 };
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
    if (Hi <= sizes[i]) return sizes[i];
  return Hi;
}

static void score_range_scalar(const IndexerScores* c, int t0, int t1, uint32_t* hist) {
  float wide[MAX_SCORE_DI];
  for (int t = t0; t < t1; t++) {
    if (t + 16 < t1) prefetch_row(&c->keys, c->slots[t + 16], c->Di);
    const float* k = pool_row(&c->keys, c->slots[t], c->Di, wide);  // bf16 keys: Di <= MAX_SCORE_DI (dsa_decode)
    float s = 0;
    for (int h = 0; h < c->Hi; h++) {
      const float d = dot(c->iq + (size_t)h * c->Di, k, c->Di);
      s += c->iw[h] * (d > 0 ? d : 0);
    }
    const uint32_t key = order_key(s);
    c->order[t] = key;
    hist[key >> (32 - RADIX_BITS)] += key != 0;
  }
}

#if defined(__AVX512F__) && defined(__AVX512VL__)
// Heads on lanes, keys broadcast: acc[key] += bcast(key dims) * qT[dims][heads], a tile of SCORE_TILE keys
// sharing each load of the query. With HP < 16 heads, lane h * R + p sums head h's products over the dims
// d = p (mod R), R = 16 / HP (R dims broadcast at once); with HP >= 16, NV = HP / 16 vectors per key, one dim
// per step. Measured against one dot product per head (the previous form), bench-mini-dsa's 8 heads x 64
// dims at 16k keys, 2 threads: 93 vs 315 us with the keys in cache, 109 vs 319 from DRAM.

// R consecutive floats at p, repeated over the 16 lanes.
static inline __m512 bcast_dims(const float* p, const int R) {
  if (R == 1) return _mm512_set1_ps(*p);
  if (R == 2) {
    double d;
    memcpy(&d, p, sizeof d);
    return _mm512_castpd_ps(_mm512_set1_pd(d));
  }
  if (R == 4) return _mm512_broadcast_f32x4(_mm_loadu_ps(p));
  if (R == 8) return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_loadu_pd((const double*)p)));
  return _mm512_loadu_ps(p);
}

// Each group of R adjacent lanes summed (into every lane of the group).
static inline __m512 group_sum(__m512 v, const int R) {
  if (R >= 2) v = _mm512_add_ps(v, _mm512_permute_ps(v, 0xB1));
  if (R >= 4) v = _mm512_add_ps(v, _mm512_permute_ps(v, 0x4E));
  if (R >= 8) v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  if (R >= 16) v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  return v;
}

// order_key() of 8 scores.
static inline __m256i order_keys8(__m256 f) {
  const __mmask8 nan = _mm256_cmp_ps_mask(f, f, _CMP_UNORD_Q);
  f = _mm256_mask_mov_ps(f, _mm256_cmp_ps_mask(f, _mm256_setzero_ps(), _CMP_EQ_OQ), _mm256_setzero_ps());
  const __m256i u = _mm256_castps_si256(f);
  const __m256i key = _mm256_xor_si256(u, _mm256_or_si256(_mm256_srai_epi32(u, 31), _mm256_set1_epi32((int)0x80000000u)));
  return _mm256_mask_mov_epi32(key, nan, _mm256_setzero_si256());
}

// KT * NV accumulators: 8, as a zmm FMA's latency (4 cycles) times its issue rate (2 per cycle) asks.
static inline __attribute__((always_inline)) void score_tiles(const IndexerScores* c, int t0, int t1, uint32_t* hist, const int R, const int NV, const int KT) {
  const int Di = c->Di;
  const size_t row_bytes = (size_t)Di * (c->keys.bf16 ? 2 : 4);
  float wide[KT][MAX_SCORE_DI] __attribute__((aligned(64)));
  for (int t = t0; t < t1; t += KT) {
    const int nk = t1 - t < KT ? t1 - t : KT;
    for (int j = 0; j < KT && t + 2 * KT + j < t1; j++) {  // two tiles ahead (8 tiles measured no faster)
      const char* ahead = (const char*)c->keys.rows + (size_t)c->slots[t + 2 * KT + j] * row_bytes;
      for (size_t b = 0; b < row_bytes; b += 64) __builtin_prefetch(ahead + b, 0, 0);
    }
    const float* k[KT];
    for (int j = 0; j < KT; j++) k[j] = pool_row(&c->keys, c->slots[t + (j < nk ? j : 0)], Di, wide[j]);
    __m512 acc[KT][NV];
    for (int j = 0; j < KT; j++)
      for (int v = 0; v < NV; v++) acc[j][v] = _mm512_setzero_ps();
    if (NV == 1) {
      for (int dg = 0; dg < Di / R; dg++) {
        const __m512 qv = _mm512_loadu_ps(c->qT + (size_t)dg * 16);
        for (int j = 0; j < KT; j++) acc[j][0] = _mm512_fmadd_ps(bcast_dims(k[j] + dg * R, R), qv, acc[j][0]);
      }
    } else {
      for (int d = 0; d < Di; d++)
        for (int v = 0; v < NV; v++) {
          const __m512 qv = _mm512_loadu_ps(c->qT + (size_t)d * c->HP + v * 16);
          for (int j = 0; j < KT; j++) acc[j][v] = _mm512_fmadd_ps(_mm512_set1_ps(k[j][d]), qv, acc[j][v]);
        }
    }
    // sum_h w[h] relu(dot_h) of every key in the tile, reduced together (w is zero on the lanes it skips)
    __m512 e[8];
    for (int j = 0; j < 8; j++) {
      if (j >= KT) {
        e[j] = _mm512_setzero_ps();
        continue;
      }
      e[j] = _mm512_mul_ps(_mm512_max_ps(group_sum(acc[j][0], R), _mm512_setzero_ps()), _mm512_loadu_ps(c->w));
      for (int v = 1; v < NV; v++) e[j] = _mm512_fmadd_ps(_mm512_max_ps(acc[j][v], _mm512_setzero_ps()), _mm512_loadu_ps(c->w + v * 16), e[j]);
    }
    // The histogram reads the keys from a plain aligned store: read back from the masked store into order,
    // each load waited for the store (no forwarding from a masked store): 11% of the scoring's samples at 64k.
    const __m256i keys = order_keys8(hsum8(e));
    uint32_t kv[8] __attribute__((aligned(32)));
    _mm256_store_si256((__m256i*)kv, keys);
    _mm256_mask_storeu_epi32(c->order + t, (__mmask8)((1u << nk) - 1), keys);
    for (int j = 0; j < nk; j++) hist[kv[j] >> (32 - RADIX_BITS)] += kv[j] != 0;
  }
}

// The query and weights in score_tiles' lanes: qT [Di / R, 16] or [Di, HP]; w [max(16, HP)].
static void lay_out_query(const IndexerScores* c, float* qT, float* w) {
  const int Hi = c->Hi, Di = c->Di, HP = c->HP, R = HP < 16 ? 16 / HP : 1, width = HP < 16 ? 16 : HP;
  memset(qT, 0, sizeof(float) * (size_t)Di / R * width);
  memset(w, 0, sizeof(float) * width);
  for (int h = 0; h < Hi; h++) {
    w[h * R] = c->iw[h];
    for (int d = 0; d < Di; d++) qT[(size_t)(d / R) * width + h * R + d % R] = c->iq[(size_t)h * Di + d];
  }
}
#endif

// Scores of part p of [0, T) into order and the part's histogram.
static void score_parts(const void* ctx, int p0, int p1) {
  const IndexerScores* c = ctx;
  for (int p = p0; p < p1; p++) {
    int t0, t1;
    share(c->T, SCORE_TILE, p, c->parts, &t0, &t1);
    uint32_t* hist = c->hist + (size_t)p * HIST;
    memset(hist, 0, sizeof(uint32_t) * HIST);
#if defined(__AVX512F__) && defined(__AVX512VL__)
    if (c->qT) {
      switch (c->HP) {
        case 1: score_tiles(c, t0, t1, hist, 16, 1, 8); break;
        case 2: score_tiles(c, t0, t1, hist, 8, 1, 8); break;
        case 4: score_tiles(c, t0, t1, hist, 4, 1, 8); break;
        case 8: score_tiles(c, t0, t1, hist, 2, 1, 8); break;
        case 16: score_tiles(c, t0, t1, hist, 1, 1, 8); break;
        case 32: score_tiles(c, t0, t1, hist, 1, 2, 4); break;
        case 48: score_tiles(c, t0, t1, hist, 1, 3, 2); break;
        case 64: score_tiles(c, t0, t1, hist, 1, 4, 2); break;
        default: score_tiles(c, t0, t1, hist, 1, 8, 1); break;  // 128
      }
      continue;
    }
#endif
    score_range_scalar(c, t0, t1, hist);
  }
}

// The k-th largest of a[0 .. n) (1 <= k <= n); reorders a. Hoare quickselect, median-of-three pivot.
static uint32_t kth_largest(uint32_t* a, int n, int k) {
  int lo = 0, hi = n - 1;
  const int target = k - 1;  // index in descending order
  while (lo < hi) {
    uint32_t x = a[lo], y = a[(lo + hi) / 2], z = a[hi];
    uint32_t pivot = x > y ? (y > z ? y : (x > z ? z : x)) : (x > z ? x : (y > z ? z : y));
    int i = lo, j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        uint32_t t = a[i];
        a[i] = a[j], a[j] = t;
        i++, j--;
      }
    }
    if (target <= j)
      hi = j;
    else if (target >= i)
      lo = i;
    else
      break;  // a[j + 1 .. i - 1] all equal the pivot
  }
  return a[target];
}

// The k best of keys[0 .. T) (order keys, 0 = NaN) into sel, positions ascending: every key above the k-th
// best, then the positions whose key equals it, lowest first (ties to the lower position); unfilled entries
// -1. hist [HIST] counts the keys' top RADIX_BITS bits: it finds the k-th best's bucket, one pass takes the
// positions above that bucket and the keys in it, and a quickselect over those few finds the k-th best.
// Scratch: cand [2 T] keys, cpos [T] and chosen [k] positions.
static void top_k(const uint32_t* keys, int T, int k, const uint32_t* hist, int32_t* sel, uint32_t* cand, int32_t* cpos, int32_t* chosen) {
  int n = 0;
  for (int b = 0; b < HIST; b++) n += (int)hist[b];
  const int want = k < n ? k : n;
  int m = 0;
  if (want > 0) {
    int b = HIST - 1, above = 0;
    while (above + (int)hist[b] < want) above += (int)hist[b--];
    const uint32_t lowest = (uint32_t)b << (32 - RADIX_BITS);  // the smallest key in bucket b
    int na = 0, nc = 0;
    for (int t = 0; t < T; t++) {
      const uint32_t key = keys[t];
      if (key < lowest) continue;
      if ((key >> (32 - RADIX_BITS)) == (uint32_t)b)
        cand[nc] = key, cpos[nc++] = t;
      else
        sel[na++] = t;  // above the bucket: na = above < want <= k
    }
    uint32_t* work = cand + nc;  // the quickselect reorders a copy; cand keeps position order for the ties
    memcpy(work, cand, sizeof(uint32_t) * (size_t)nc);
    const uint32_t kth = kth_largest(work, nc, want - above);
    int ties = want - above, nch = 0;
    for (int i = 0; i < nc; i++) ties -= cand[i] > kth;
    for (int i = 0; i < nc; i++)
      if (cand[i] > kth || (cand[i] == kth && ties-- > 0)) chosen[nch++] = cpos[i];
    // merge the two ascending lists, from the back (sel holds the first na)
    int i = na - 1, j = nch - 1, o = na + nch - 1;
    while (j >= 0) sel[o--] = i >= 0 && sel[i] > chosen[j] ? sel[i--] : chosen[j--];
    m = na + nch;
  }
  for (int i = m; i < k; i++) sel[i] = -1;
}

// DSA decode of one query row q [H, C] (iq [Hi, Di], iw [Hi]) over the T keys at slots (positions 0 .. T - 1,
// k < T): sel [k] gets the kept positions ascending, o [H, L] the attention over their rows. NULL, or what
// went wrong. Scoring and attention spread over the pool unless it is busy (then this thread does it all).
static const char* dsa_row(const float* q, const float* iq, const float* iw, int Hi, int Di, const Pool* latent, const Pool* keys, const int32_t* slots,
                           int T, int k, int H, int C, int L, float* o, int32_t* sel) {
  const int parts = pool.nthreads, HP = padded_heads(Hi), width = HP < 16 ? 16 : HP;
  int lanes = 0;  // score_tiles: AVX-512, whole vectors of dims, at most 128 heads
#if defined(__AVX512F__) && defined(__AVX512VL__)
  lanes = Di % 16 == 0 && Di <= MAX_SCORE_DI && HP <= 128;
#endif
  // order [T], cand [2 T], cpos [T], chosen [k], hist [parts, HIST], qT [Di * width], w [width]
  const size_t words = 4 * (size_t)T + k + (size_t)parts * HIST + (size_t)Di * width + width;
  uint32_t* order = thread_scratch(SCRATCH_DSA, words * sizeof(uint32_t));
  if (!order) return "dsaDecode: out of memory";
  uint32_t* cand = order + T;
  int32_t* cpos = (int32_t*)(cand + 2 * (size_t)T);
  int32_t* chosen = cpos + T;
  uint32_t* hist = (uint32_t*)(chosen + k);
  float* qT = (float*)(hist + (size_t)parts * HIST);
  IndexerScores sc = { iq, iw, lanes ? qT : NULL, qT + (size_t)Di * width, *keys, slots, T, Hi, HP, Di, parts, order, hist };
#if defined(__AVX512F__) && defined(__AVX512VL__)
  if (lanes) lay_out_query(&sc, qT, qT + (size_t)Di * width);
#endif
  parallel_for(score_parts, &sc, parts, 1, 1);
  for (int p = 1; p < parts; p++)
    for (int b = 0; b < HIST; b++) hist[b] += hist[(size_t)p * HIST + b];
  top_k(order, T, k, hist, sel, cand, cpos, chosen);
  int n = 0;
  for (int i = 0; i < k; i++)
    if (sel[i] >= 0) chosen[n++] = slots[sel[i]];
  return n > 0 ? attend_rows(q, latent, chosen, n, H, C, L, o) : "no finite indexer score";
}

// dsaDecode(q [H, C], iq [Hi, Di], iw [Hi], pool [P, C], keys [P, Di] (Float32Array, or Uint16Array of bf16
// bits), slots Int32Array [T] (positions 0 .. T - 1), o [H, L], sel Int32Array [topk] (out: the kept
// positions, ascending), L)
static napi_value dsa_decode(napi_env env, napi_callback_info info) {
  napi_value a[9];
  args(env, info, a, 9);
  size_t qn = 0, iqn = 0, Hi = 0, T = 0, on = 0, k = 0;
  const float *q = typed(env, a[0], &qn), *iq = typed(env, a[1], &iqn), *iw = typed(env, a[2], &Hi);
  const int32_t* slots = typed(env, a[5], &T);
  float* o = typed(env, a[6], &on);
  int32_t* sel = typed(env, a[7], &k);
  int32_t L = 0;
  napi_get_value_int32(env, a[8], &L);
  if (!q || !iq || !iw || !slots || !o || !sel || L <= 0 || Hi == 0 || iqn % Hi != 0 || on % (size_t)L != 0 || on == 0 ||
      qn % (on / (size_t)L) != 0 || k == 0 || k >= T) {
    napi_throw_range_error(env, NULL, "dsaDecode: bad arguments");
    return NULL;
  }
  const int H = (int)(on / (size_t)L), C = (int)(qn / (size_t)H), Di = (int)(iqn / Hi);
  const Pool latent = pool_arg(env, a[3], (size_t)C), keys = pool_arg(env, a[4], (size_t)Di);
  if (!latent.rows || !keys.rows || keys.P != latent.P || !valid_slots(slots, T, latent.P) || (keys.bf16 && Di > MAX_SCORE_DI)) {
    napi_throw_range_error(env, NULL, "dsaDecode: bad pools or slot out of range");
    return NULL;
  }
  const char* err = dsa_row(q, iq, iw, (int)Hi, Di, &latent, &keys, slots, (int)T, (int)k, H, C, L, o, sel);
  if (err) napi_throw_error(env, NULL, err);
  return NULL;
}

// ---------------------------------------------------------------------------------------------------
// MLA 5 (with DSA selection) of query rows in batches: B sequences with S rows each (decode: S = 1; prefill
// chunks: S > 1). Row r = b * S + i is sequence b's query at position startPos[b] + i: it attends every key up
// to it, or with DSA and more of them than topk the indexer's selection among them (dsa_row); no [S, T] score
// matrix or mask is built. Rows are spread over the pool's threads whole (each thread runs its rows' kernels
// alone: the pool is busy), instead of one call per row that splits every phase of it across the threads.

typedef struct {
  const float *q, *iq, *iw;  // [B * S, H, C], [B * S, Hi, Di] | NULL, [B * S, Hi] | NULL
  Pool latent, keys;         // keys.rows NULL: no indexer
  const int32_t *slots, *start;  // [B, T], [B]
  int T, S, H, C, L, Hi, Di, k;
  float* o;          // [B * S, H, L]
  int32_t* sel;      // [B, k]: the selection of each sequence's last row
  const char** err;  // [B * S]
} QueryRows;

static void query_rows(const void* ctx, int r0, int r1) {
  const QueryRows* d = ctx;
  const size_t HC = (size_t)d->H * d->C, HL = (size_t)d->H * d->L;
  for (int r = r0; r < r1; r++) {
    const int b = r / d->S, i = r % d->S, n = d->start[b] + i + 1;
    const int32_t* slots = d->slots + (size_t)b * d->T;
    int32_t* sel = i == d->S - 1 ? d->sel + (size_t)b * d->k : NULL;  // only the last row's selection is returned
    if (!d->keys.rows || n <= d->k) {  // every visible key (with DSA too: topk covers them all)
      if (sel)
        for (int j = 0; j < d->k; j++) sel[j] = j < n ? j : -1;
      d->err[r] = attend_rows(d->q + r * HC, &d->latent, slots, n, d->H, d->C, d->L, d->o + r * HL);
    } else if (!sel && !(sel = thread_scratch(SCRATCH_SEL, sizeof(int32_t) * (size_t)d->k))) {
      d->err[r] = "attendRows: out of memory";
    } else {
      d->err[r] = dsa_row(d->q + r * HC, d->iq + (size_t)r * d->Hi * d->Di, d->iw + (size_t)r * d->Hi, d->Hi, d->Di, &d->latent, &d->keys, slots, n, d->k,
                          d->H, d->C, d->L, d->o + r * HL, sel);
    }
  }
}

// attendRows(q [B * S, H, C], iq [B * S, Hi, Di] | null, iw [B * S, Hi] | null, pool [P, C], keys [P, Di] |
// null, slots Int32Array [B, T] (row b: positions 0 .. startPos[b] + S - 1, then padding), startPos Int32Array
// [B], S, o [B * S, H, L], sel Int32Array [B, topk] (out: each sequence's last row's kept positions, ascending,
// then -1), L). Pools: Float32Array or Uint16Array of bf16 bits. Without keys every row attends all it sees.
static napi_value attend_query_rows(napi_env env, napi_callback_info info) {
  napi_value a[11];
  args(env, info, a, 11);
  size_t qn = 0, iqn = 0, iwn = 0, BT = 0, B = 0, on = 0, sn = 0;
  const float* q = typed(env, a[0], &qn);
  const int dsa = !is_null(env, a[4]);
  const float *iq = dsa ? typed(env, a[1], &iqn) : NULL, *iw = dsa ? typed(env, a[2], &iwn) : NULL;
  const int32_t *slots = typed(env, a[5], &BT), *start = typed(env, a[6], &B);
  int32_t S = 0, L = 0;
  napi_get_value_int32(env, a[7], &S);
  float* o = typed(env, a[8], &on);
  int32_t* sel = typed(env, a[9], &sn);
  napi_get_value_int32(env, a[10], &L);
  const size_t R = B * (size_t)(S > 0 ? S : 0);
  if (!q || !slots || !start || !o || !sel || R == 0 || R > INT32_MAX || L <= 0 || BT % B != 0 || sn == 0 || sn % B != 0 || on == 0 || on % (R * (size_t)L) != 0 ||
      qn % (on / (size_t)L) != 0 || (dsa && (!iq || !iw || iwn == 0 || iwn % R != 0 || iqn % iwn != 0))) {
    napi_throw_range_error(env, NULL, "attendRows: bad arguments");
    return NULL;
  }
  const size_t T = BT / B, k = sn / B;
  const int H = (int)(on / (R * (size_t)L)), C = (int)(qn / (R * (size_t)H)), Hi = dsa ? (int)(iwn / R) : 0, Di = dsa ? (int)(iqn / iwn) : 0;
  const Pool latent = pool_arg(env, a[3], (size_t)C), keys = dsa ? pool_arg(env, a[4], (size_t)Di) : (Pool){ NULL, 0, 0 };
  int ok = latent.rows && C > L && valid_slots(slots, BT, latent.P) && (!dsa || (keys.rows && keys.P == latent.P && !(keys.bf16 && Di > MAX_SCORE_DI)));
  for (size_t b = 0; ok && b < B; b++) ok = start[b] >= 0 && (size_t)start[b] + (size_t)S <= T;
  if (!ok) {
    napi_throw_range_error(env, NULL, "attendRows: bad pools, slots or start positions");
    return NULL;
  }
  const char** err = calloc(R, sizeof(const char*));
  if (!err) {
    napi_throw_error(env, NULL, "attendRows: out of memory");
    return NULL;
  }
  QueryRows d = { q, iq, iw, latent, keys, slots, start, (int)T, S, H, C, L, Hi, Di, (int)k, o, sel, err };
  parallel_for(query_rows, &d, (int)R, 1, 1);  // one row runs inline, its kernels on the pool
  const char* first = NULL;
  for (size_t r = 0; r < R && !first; r++) first = err[r];
  free(err);
  if (first) napi_throw_error(env, NULL, first);
  return NULL;
}

// logits(h: Float32Array [M, D], norm: Float32Array [D], w: Float32Array [V, D] | quantised, out: Float32Array
// [M, V], eps): the final RMSNorm and lm_head of M <= MAX_ROWS rows (the lm_head graph of deepseek_model.ts).
static napi_value logits(napi_env env, napi_callback_info info) {
  napi_value a[5];
  args(env, info, a, 5);
  size_t hn = 0, D = 0, wn = 0, on = 0;
  const float *h = typed(env, a[0], &hn), *norm = typed(env, a[1], &D);
  const Lin w = lin_arg(env, a[2]);
  if (w.q)
    wn = w.q->K == (int)D && w.q->groups == 1 ? (size_t)w.q->group_rows * D : 0;
  else
    typed(env, a[2], &wn);
  float* out = typed(env, a[3], &on);
  double eps = 0;
  napi_get_value_double(env, a[4], &eps);
  const int M = D > 0 ? row_count(hn, (int)D) : 0;
  if (!h || !norm || !(w.f || w.q) || !out || M == 0 || wn == 0 || wn % D != 0 || on != (size_t)M * (wn / D)) {
    napi_throw_range_error(env, NULL, "logits: shapes do not match (or more than 16 rows)");
    return NULL;
  }
  const size_t V = wn / D;
  float* x = malloc((size_t)M * D * sizeof(float));
  if (!x) {
    napi_throw_error(env, NULL, "logits: out of memory");
    return NULL;
  }
  for (int m = 0; m < M; m++) rms_norm(h + (size_t)m * D, norm, x + (size_t)m * D, (int)D, (float)eps);
  const int ok = linear(w, x, out, (int)V, (int)D, M, D, V, (int)V);
  free(x);
  if (!ok) napi_throw_error(env, NULL, "logits: out of memory");
  return NULL;
}

static void qweight_finalize(napi_env env, void* data, void* hint) {
  (void)env, (void)hint;
  qweight_free(data);
}

// packQuantized(bits: 8 | 4, rows, cols, groupRows, packed: Uint8Array [rows, ceil(cols / 32), 32 * bits / 8],
// scales: Float32Array [rows * ceil(cols / 32)]) -> external: the weight repacked for the kernels (a copy:
// the arrays may be dropped afterwards). groupRows: rows per group of rows that read their own cols inputs
// (rows for a plain matrix; see quant_gemm.h).
static napi_value pack_quantized(napi_env env, napi_callback_info info) {
  napi_value a[6];
  args(env, info, a, 6);
  int32_t bits = 0, rows = 0, cols = 0, group = 0;
  napi_get_value_int32(env, a[0], &bits);
  napi_get_value_int32(env, a[1], &rows);
  napi_get_value_int32(env, a[2], &cols);
  napi_get_value_int32(env, a[3], &group);
  size_t pn = 0, sn = 0;
  const uint8_t* packed = typed(env, a[4], &pn);
  const float* scales = typed(env, a[5], &sn);
  const size_t nb = cols > 0 ? ((size_t)cols + QBLOCK - 1) / QBLOCK : 0;
  if ((bits != 8 && bits != 4) || rows <= 0 || cols <= 0 || group <= 0 || rows % group != 0 || !packed || !scales ||
      pn != (size_t)rows * nb * QBLOCK * bits / 8 || sn != (size_t)rows * nb) {
    napi_throw_range_error(env, NULL, "packQuantized: bits must be 8 or 4 and packed/scales must match [rows, cols] in groups of groupRows");
    return NULL;
  }
  QWeight* w = qweight_pack(bits, rows, cols, group, packed, scales);
  if (!w) {
    napi_throw_error(env, NULL, "packQuantized: out of memory");
    return NULL;
  }
  napi_value ext;
  napi_create_external(env, w, qweight_finalize, NULL, &ext);
  return ext;
}

// trimMemory(): returns the free memory at the top and inside glibc's heaps to the system (malloc_trim). Called
// after each layer is loaded: with 2 MiB pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1) the holes a loaded
// layer's buffers leave stay resident otherwise.
static napi_value trim_memory(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_get_boolean(env, malloc_trim(0) != 0, &out);
  return out;
}

// quantizedWeightBytes(w: quantised): the bytes its panels take (float16 or float32 scales: quant_gemm.h).
static napi_value quantized_weight_bytes(napi_env env, napi_callback_info info) {
  napi_value a[1], out;
  args(env, info, a, 1);
  const QWeight* w = qweight_arg(env, a[0]);
  if (!w) {
    napi_throw_type_error(env, NULL, "quantizedWeightBytes: not a packed quantised weight");
    return NULL;
  }
  napi_create_double(env, (double)qweight_bytes(w), &out);
  return out;
}

// quantizedMatmul(w: quantised, x: Float32Array [M, groups * cols], y: Float32Array [M, rows]): y = W x per
// group, M <= MAX_ROWS (tests and probes).
static napi_value quantized_matmul(napi_env env, napi_callback_info info) {
  napi_value a[3];
  args(env, info, a, 3);
  const QWeight* w = qweight_arg(env, a[0]);
  size_t xn = 0, yn = 0;
  const float* x = typed(env, a[1], &xn);
  float* y = typed(env, a[2], &yn);
  const size_t in = w ? (size_t)w->groups * w->K : 0, R = w ? (size_t)w->groups * w->group_rows : 0;
  const int M = in > 0 ? row_count(xn, (int)in) : 0;
  if (!w || !x || !y || M == 0 || yn != (size_t)M * R) {
    napi_throw_range_error(env, NULL, "quantizedMatmul: x must be 1 to 16 rows of groups * cols and y as many rows of rows");
    return NULL;
  }
  if (!qgemm(w, x, y, M, in, R, (size_t)w->group_rows)) napi_throw_error(env, NULL, "quantizedMatmul: out of memory");
  return NULL;
}

// gemv(w: Float32Array [R, K], x: Float32Array [K], y: Float32Array [R]): y = w x on the pool (tests, probes).
static napi_value gemv_js(napi_env env, napi_callback_info info) {
  napi_value a[3];
  args(env, info, a, 3);
  size_t wn = 0, xn = 0, yn = 0;
  const float *w = typed(env, a[0], &wn), *x = typed(env, a[1], &xn);
  float* y = typed(env, a[2], &yn);
  if (!w || !x || !y || xn == 0 || yn == 0 || wn != xn * yn) {
    napi_throw_range_error(env, NULL, "gemv: w must hold y.length x x.length floats");
    return NULL;
  }
  gemv(w, x, y, (int)yn, (int)xn, (int)yn);
  return NULL;
}

// setThreads(n, spinIterations): the pool's size (the calling thread included) and how long workers spin.
static napi_value set_threads(napi_env env, napi_callback_info info) {
  napi_value a[2];
  size_t argc = args(env, info, a, 2);
  int32_t n = 1, spin = POOL_DEFAULT_SPIN;
  napi_get_value_int32(env, a[0], &n);
  if (argc > 1) napi_get_value_int32(env, a[1], &spin);
  pool_set_threads(n, spin);
  return NULL;
}

// Node unloads an addon when the worker thread that loaded it exits (the engine runs in one); the pool's
// threads would then run unmapped code. A second, never-closed handle with RTLD_NODELETE keeps it mapped.
static void pin_library(void) {
  Dl_info info;
  if (dladdr((void*)pin_library, &info) && info.dli_fname) dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE);
}

NAPI_MODULE_INIT() {
  pin_library();
  const struct {
    const char* name;
    napi_callback fn;
  } fns[] = { { "createLayer", create_layer }, { "pre", pre }, { "post", post }, { "experts", experts }, { "setThreads", set_threads }, { "gemv", gemv_js }, { "attend", attend }, { "logits", logits }, { "dsaDecode", dsa_decode }, { "attendRows", attend_query_rows }, { "packQuantized", pack_quantized }, { "quantizedMatmul", quantized_matmul }, { "quantizedWeightBytes", quantized_weight_bytes }, { "trimMemory", trim_memory } };
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  return exports;
}
