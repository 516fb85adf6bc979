// Block-quantised weights (--quantization int8|int4) for the native kernels (decode_layer.c): the
// engine's MatMulNBits codes and scales (src/engine/quant/block_quant.ts: W[n, k] = (code - zp) * s,
// zp = 128 or 8, one float32 scale per 32 inputs) repacked into panels of 16 rows, and y = W x for up
// to MAX_ROWS inputs with the inputs quantised to int8 per block of 32 (scale max|x| / 127, round to
// nearest), as MatMulNBits' accuracy level 4 and llama.cpp's Q8_0 activations do.
//
// Panel layout, per panel of 16 rows and per block b of 32 inputs (one 64-byte-aligned run):
//   int8: 8 x 64 bytes: step s holds, for row j of the panel, its codes of inputs 32b + 4s .. 32b + 4s + 3
//         at bytes 4j .. 4j + 3 (vpdpbusd's four products per 32-bit lane: lane j = row j)
//   int4: 4 x 64 bytes: step t holds row j's codes of inputs 32b + 8t + i (low nibble) and
//         32b + 8t + 4 + i (high nibble) at byte 4j + i
//   then 16 scales (row j's scale of block b; 0 for padding rows): float16 when every scale of the weight is
//   exactly one (block_quant.ts snaps scales to float16 wherever float16 holds them, so in practice always:
//   20 -> 18 bytes per 32 int4 weights, Q4_0's size), else float32. Blocks are 32-byte aligned then.
// So one vector of codes meets one broadcast of 4 activation bytes, the 16 lanes are the panel's 16 rows
// (no horizontal sums), and one pass over the panel serves every input row. Codes stay unsigned (code =
// q + zp: vpdpbusd's unsigned operand); sum_i code_i x_i - zp sum_i x_i = sum_i q_i x_i is exact in int32.
//
// Rows come in `groups` of group_rows that read their own K inputs (group g reads x + g * K and writes
// y + g * gys): the per-head products W_UK and W_UV; a plain matrix is one group. Each group is padded
// to whole panels.
//
// Exactness: each output is one float32 accumulation over the blocks in order, by one thread, whatever
// the thread count or the number of input rows.
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { QBLOCK = 32, QPANEL = 16 };

// ---------------------------------------------------------------------------------------------------
// Where packed weights live: chunks mapped on 2 MiB boundaries and marked MADV_HUGEPAGE before they are
// written, so the pages are 2 MiB ones from the first fault. From malloc (glibc's heap, grown a little at a
// time) a bench-lite start from BF16 got 2 MiB pages for only 4.9 of its 10.4 GB in some runs, and its
// routed experts then decoded 4-8x slower (1.5-7 tok/s against 17-23 with 9.3 GB in 2 MiB pages; TLB
// misses, and likely khugepaged collapsing pages under the reads: the slow runs got slower over time). Weights are handed out from the current chunk in
// order; a chunk is unmapped when the last weight in it is freed (engines come and go in one process).
enum { QARENA_CHUNK = 256 << 20, QARENA_ALIGN = 2 << 20 };

typedef struct {
  uint8_t* base;
  size_t size, used;
  int refs;
} QChunk;

static pthread_mutex_t qarena_lock = PTHREAD_MUTEX_INITIALIZER;
static QChunk* qarena_current;

// A mapping of `size` bytes (a multiple of QARENA_ALIGN) starting on a QARENA_ALIGN boundary; NULL on failure.
static uint8_t* qarena_map(size_t size) {
  uint8_t* p = mmap(NULL, size + QARENA_ALIGN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  const size_t lead = (QARENA_ALIGN - (uintptr_t)p % QARENA_ALIGN) % QARENA_ALIGN;
  if (lead) munmap(p, lead);
  if (QARENA_ALIGN - lead) munmap(p + lead + size, QARENA_ALIGN - lead);
  madvise(p + lead, size, MADV_HUGEPAGE);  // advice only: without THP the chunk is plain pages
  return p + lead;
}

// 64-byte aligned room for `bytes` in a chunk (*chunk: which one, for qarena_free); NULL when out of memory.
static uint8_t* qarena_alloc(size_t bytes, QChunk** chunk) {
  bytes = (bytes + 63) & ~(size_t)63;
  pthread_mutex_lock(&qarena_lock);
  QChunk* c = qarena_current;
  if (!c || c->used + bytes > c->size) {
    c = calloc(1, sizeof(QChunk));
    const size_t size = bytes > QARENA_CHUNK ? (bytes + QARENA_ALIGN - 1) / QARENA_ALIGN * QARENA_ALIGN : QARENA_CHUNK;
    if (c) c->base = qarena_map(size), c->size = size;
    if (!c || !c->base) {
      free(c);
      pthread_mutex_unlock(&qarena_lock);
      return NULL;
    }
    if (qarena_current && qarena_current->refs == 0) {  // nothing of the old one is in use
      munmap(qarena_current->base, qarena_current->size);
      free(qarena_current);
    }
    qarena_current = c;
  }
  uint8_t* p = c->base + c->used;
  c->used += bytes, c->refs++;
  *chunk = c;
  pthread_mutex_unlock(&qarena_lock);
  return p;
}

static void qarena_free(QChunk* c) {
  pthread_mutex_lock(&qarena_lock);
  if (--c->refs == 0) {
    if (c == qarena_current) qarena_current = NULL;
    munmap(c->base, c->size);
    free(c);
  }
  pthread_mutex_unlock(&qarena_lock);
}

enum { QWEIGHT_MAGIC = 0x51574754 };

typedef struct {
  uint32_t magic;                        // QWEIGHT_MAGIC: what a JS external must hold to be taken for one
  int bits;                              // 8 or 4
  int half;                              // scales stored as float16 (exactly: see the layout above)
  int K, nb;                             // inputs per group; blocks of QBLOCK (K zero-padded to nb * QBLOCK)
  int groups, group_rows, group_panels;  // rows = groups * group_rows
  size_t codes_bytes, block_bytes;       // per panel and block: codes, codes + 16 scales
  uint8_t* data;                         // [groups * group_panels][nb][block_bytes], 64-byte aligned start
  QChunk* chunk;                         // where data lives
} QWeight;

static size_t qweight_bytes(const QWeight* w) { return (size_t)w->groups * w->group_panels * w->nb * w->block_bytes; }

// Whether every scale survives a round trip through float16 unchanged.
static int scales_fit_half(const float* scales, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((float)(_Float16)scales[i] != scales[i]) return 0;
  return 1;
}

// Repacks a MatMulNBits weight (packed [rows, nb, 32 * bits / 8], scales [rows * nb]) into panels; NULL
// when out of memory. rows must be a multiple of group_rows.
static QWeight* qweight_pack(int bits, int rows, int K, int group_rows, const uint8_t* packed, const float* scales) {
  QWeight* w = calloc(1, sizeof(QWeight));
  if (!w) return NULL;
  w->magic = QWEIGHT_MAGIC, w->bits = bits, w->K = K, w->nb = (K + QBLOCK - 1) / QBLOCK;
  w->groups = rows / group_rows, w->group_rows = group_rows, w->group_panels = (group_rows + QPANEL - 1) / QPANEL;
  w->half = scales_fit_half(scales, (size_t)rows * w->nb);
  w->codes_bytes = (size_t)QPANEL * QBLOCK * bits / 8, w->block_bytes = w->codes_bytes + QPANEL * (w->half ? 2 : 4);
  w->data = qarena_alloc(qweight_bytes(w), &w->chunk);
  if (!w->data) {
    free(w);
    return NULL;
  }
  const int nb = w->nb, blob = QBLOCK * bits / 8, zp = bits == 8 ? 128 : 8;
  for (int g = 0; g < w->groups; g++)
    for (int pp = 0; pp < w->group_panels; pp++)
      for (int b = 0; b < nb; b++) {
        uint8_t* blk = w->data + (((size_t)g * w->group_panels + pp) * nb + b) * w->block_bytes;
        for (int j = 0; j < QPANEL; j++) {
          const int local = pp * QPANEL + j, valid = local < group_rows;
          const size_t r = (size_t)g * group_rows + local;
          const uint8_t* src = valid ? packed + (r * nb + b) * blob : NULL;
          const float sc = valid ? scales[r * nb + b] : 0.0f;
          if (w->half) {
            const _Float16 h = (_Float16)sc;
            memcpy(blk + w->codes_bytes + 2 * j, &h, 2);
          } else {
            memcpy(blk + w->codes_bytes + 4 * j, &sc, 4);
          }
          if (bits == 8) {
            for (int s = 0; s < 8; s++)
              for (int i = 0; i < 4; i++) blk[(s * QPANEL + j) * 4 + i] = valid ? src[4 * s + i] : (uint8_t)zp;
          } else {
            for (int t = 0; t < 4; t++)
              for (int i = 0; i < 4; i++) {
                const int e0 = 8 * t + i, e1 = 8 * t + 4 + i;
                const int lo = valid ? (src[e0 >> 1] >> ((e0 & 1) * 4)) & 15 : zp, hi = valid ? (src[e1 >> 1] >> ((e1 & 1) * 4)) & 15 : zp;
                blk[(t * QPANEL + j) * 4 + i] = (uint8_t)(lo | hi << 4);
              }
          }
        }
      }
  return w;
}

static void qweight_free(QWeight* w) {
  if (w) qarena_free(w->chunk);
  free(w);
}

// One call's inputs quantised: [M][groups][nb] blocks of 32 int8 (padded with zeros), their scales dx and
// zp * sum(codes) (the zero point's share, subtracted from each block's integer dot).
typedef struct {
  const QWeight* w;
  const int8_t* xq;
  const float* dx;
  const int32_t* zs;
  float* y;
  int M;
  size_t ys, gys;
} QGemm;

static void quantize_inputs(const QWeight* w, const float* x, int M, size_t xs, int8_t* xq, float* dx, int32_t* zs) {
  const int nb = w->nb, K = w->K, zp = w->bits == 8 ? 128 : 8;
  for (int m = 0; m < M; m++)
    for (int g = 0; g < w->groups; g++) {
      const float* xr = x + (size_t)m * xs + (size_t)g * K;
      const size_t row = (size_t)m * w->groups + g;
      for (int b = 0; b < nb; b++) {
        const int k0 = b * QBLOCK, n = K - k0 < QBLOCK ? K - k0 : QBLOCK;
        int8_t* q = xq + (row * nb + b) * QBLOCK;
#if defined(__AVX512F__)
        {  // the same operations 16 lanes at a time (cvtps rounds to nearest even, as lrintf does)
          const __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1), m1 = n >= 32 ? 0xFFFF : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
          const __m512 x0 = _mm512_maskz_loadu_ps(m0, xr + k0), x1 = _mm512_maskz_loadu_ps(m1, xr + k0 + 16);
          const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
          const __m512 inv = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
          const __m512i lim = _mm512_set1_epi32(127);
          const __m512i q0 = _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(x0, inv)), lim), _mm512_sub_epi32(_mm512_setzero_si512(), lim));
          const __m512i q1 = _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(x1, inv)), lim), _mm512_sub_epi32(_mm512_setzero_si512(), lim));
          _mm_storeu_si128((__m128i*)q, _mm512_cvtepi32_epi8(q0));
          _mm_storeu_si128((__m128i*)(q + 16), _mm512_cvtepi32_epi8(q1));
          dx[row * nb + b] = amax / 127.0f;
          zs[row * nb + b] = zp * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
          continue;
        }
#endif
        float amax = 0;
        for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(xr[k0 + i]));
        const float d = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int i = 0; i < QBLOCK; i++) {
          const int v = i < n ? (int)lrintf(xr[k0 + i] * inv) : 0;
          q[i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
          sum += q[i];
        }
        dx[row * nb + b] = d;
        zs[row * nb + b] = zp * sum;
      }
    }
}

static inline int32_t load4(const int8_t* p) {
  int32_t v;
  memcpy(&v, p, 4);
  return v;
}

#if defined(__AVX512F__) && defined(__AVX512VNNI__)
// Panels [p0, p1) for input rows in register groups of MG (rows past M repeat the group's first and are
// not stored); BITS 8 or 4; HALF: float16 scales.
static inline __attribute__((always_inline)) void qgemm_tile(const QGemm* c, int p0, int p1, const int MG, const int BITS, const int HALF) {
  const QWeight* w = c->w;
  const int nb = w->nb, G = w->groups;
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int p = p0; p < p1; p++) {
    const int g = p / w->group_panels, pp = p % w->group_panels;
    const uint8_t* base = w->data + (size_t)p * nb * w->block_bytes;
    const int lanes = w->group_rows - pp * QPANEL < QPANEL ? w->group_rows - pp * QPANEL : QPANEL;
    for (int m0 = 0; m0 < c->M; m0 += MG) {
      const int8_t* xq[MG];
      const float* dx[MG];
      const int32_t* zs[MG];
      __m512 acc[MG];
      for (int j = 0; j < MG; j++) {
        const size_t row = (size_t)(m0 + j < c->M ? m0 + j : m0) * G + g;
        xq[j] = c->xq + row * nb * QBLOCK, dx[j] = c->dx + row * nb, zs[j] = c->zs + row * nb;
        acc[j] = _mm512_setzero_ps();
      }
      for (int b = 0; b < nb; b++) {
        const uint8_t* blk = base + (size_t)b * w->block_bytes;
        __m512i dot[MG];
        for (int j = 0; j < MG; j++) dot[j] = _mm512_setzero_si512();
        if (BITS == 8) {
          for (int s = 0; s < 8; s++) {
            const __m512i wv = _mm512_loadu_si512((const void*)(blk + 64 * s));
            for (int j = 0; j < MG; j++) dot[j] = _mm512_dpbusd_epi32(dot[j], wv, _mm512_set1_epi32(load4(xq[j] + b * QBLOCK + 4 * s)));
          }
        } else {
          for (int t = 0; t < 4; t++) {
            const __m512i v = _mm512_loadu_si512((const void*)(blk + 64 * t));
            const __m512i lo = _mm512_and_si512(v, low4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
            for (int j = 0; j < MG; j++) {
              dot[j] = _mm512_dpbusd_epi32(dot[j], lo, _mm512_set1_epi32(load4(xq[j] + b * QBLOCK + 8 * t)));
              dot[j] = _mm512_dpbusd_epi32(dot[j], hi, _mm512_set1_epi32(load4(xq[j] + b * QBLOCK + 8 * t + 4)));
            }
          }
        }
        const __m512 sc = HALF ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(blk + w->codes_bytes))) : _mm512_loadu_ps((const float*)(blk + w->codes_bytes));
        for (int j = 0; j < MG; j++) {
          const __m512 d = _mm512_cvtepi32_ps(_mm512_sub_epi32(dot[j], _mm512_set1_epi32(zs[j][b])));
          acc[j] = _mm512_fmadd_ps(d, _mm512_mul_ps(sc, _mm512_set1_ps(dx[j][b])), acc[j]);
        }
      }
      for (int j = 0; j < MG && m0 + j < c->M; j++) {
        float out[QPANEL];
        _mm512_storeu_ps(out, acc[j]);
        float* y = c->y + (size_t)(m0 + j) * c->ys + (size_t)g * c->gys + (size_t)pp * QPANEL;
        for (int i = 0; i < lanes; i++) y[i] = out[i];
      }
    }
  }
}
#endif

// The same math one lane at a time (CPUs without AVX512-VNNI): correct, not fast.
__attribute__((unused)) static void qgemm_scalar(const QGemm* c, int p0, int p1) {
  const QWeight* w = c->w;
  const int nb = w->nb, G = w->groups;
  for (int p = p0; p < p1; p++) {
    const int g = p / w->group_panels, pp = p % w->group_panels;
    const int lanes = w->group_rows - pp * QPANEL < QPANEL ? w->group_rows - pp * QPANEL : QPANEL;
    for (int m = 0; m < c->M; m++) {
      const size_t row = (size_t)m * G + g;
      for (int j = 0; j < lanes; j++) {
        float acc = 0;
        for (int b = 0; b < nb; b++) {
          const uint8_t* blk = w->data + ((size_t)p * nb + b) * w->block_bytes;
          const int8_t* xq = c->xq + (row * nb + b) * QBLOCK;
          int32_t dot = 0;
          for (int i = 0; i < QBLOCK; i++) {
            int code;
            if (w->bits == 8)
              code = blk[((i / 4) * QPANEL + j) * 4 + i % 4];
            else {
              const int t = i / 8, u = i % 8;
              const uint8_t byte = blk[(t * QPANEL + j) * 4 + u % 4];
              code = u < 4 ? byte & 15 : byte >> 4;
            }
            dot += code * xq[i];
          }
          float s;
          if (w->half) {
            _Float16 h;
            memcpy(&h, blk + w->codes_bytes + 2 * j, 2);
            s = (float)h;
          } else {
            memcpy(&s, blk + w->codes_bytes + 4 * j, 4);
          }
          acc += (float)(dot - c->zs[row * nb + b]) * (s * c->dx[row * nb + b]);
        }
        c->y[(size_t)m * c->ys + (size_t)g * c->gys + (size_t)pp * QPANEL + j] = acc;
      }
    }
  }
}

#if defined(__AVX512F__) && defined(__AVX512VNNI__)
static inline __attribute__((always_inline)) void qgemm_rows(const QGemm* c, int p0, int p1, const int BITS, const int HALF) {
  if (c->M == 1)
    qgemm_tile(c, p0, p1, 1, BITS, HALF);
  else if (c->M <= 4)
    qgemm_tile(c, p0, p1, 4, BITS, HALF);
  else
    qgemm_tile(c, p0, p1, 8, BITS, HALF);
}
#endif

static void qgemm_panels(const void* ctx, int p0, int p1) {
  const QGemm* c = ctx;
#if defined(__AVX512F__) && defined(__AVX512VNNI__)
  if (c->w->bits == 8)
    c->w->half ? qgemm_rows(c, p0, p1, 8, 1) : qgemm_rows(c, p0, p1, 8, 0);
  else
    c->w->half ? qgemm_rows(c, p0, p1, 4, 1) : qgemm_rows(c, p0, p1, 4, 0);
#else
  qgemm_scalar(c, p0, p1);
#endif
}

// y[m * ys + g * gys + r] = W_g x_m,g for M <= MAX_ROWS inputs, x_m,g = x + m * xs + g * K. Returns 0 when out
// of memory (scratch for the quantised inputs).
static int qgemm(const QWeight* w, const float* x, float* y, int M, size_t xs, size_t ys, size_t gys) {
  const size_t blocks = (size_t)M * w->groups * w->nb;
  uint8_t* s = thread_scratch(SCRATCH_QX, blocks * (QBLOCK + sizeof(float) + sizeof(int32_t)));
  if (!s) return 0;
  int8_t* xq = (int8_t*)s;
  float* dx = (float*)(s + blocks * QBLOCK);
  int32_t* zs = (int32_t*)(dx + blocks);
  quantize_inputs(w, x, M, xs, xq, dx, zs);
  QGemm c = { w, xq, dx, zs, y, M, ys, gys };
  parallel_for(qgemm_panels, &c, w->groups * w->group_panels, 1, 2);
  return 1;
}
