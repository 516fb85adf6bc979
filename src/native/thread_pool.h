// A persistent thread pool for the native kernels (src/native/decode_layer.c; the probe
// bench/native/gemv.c includes it too). A job's range is cut into one contiguous share per thread, each
// share into SUBCHUNKS pieces; a thread runs its own share's pieces in order, then takes what is left of
// the others'. So with every thread on time each one streams its own contiguous share (what the hardware
// prefetcher wants), and a worker that wakes late (the scheduler on a busy 2-vCPU VM: ~0.5 ms measured
// after ONNX Runtime graphs) costs at most the piece it has started, not its whole share.
// Workers spin for a while after a job (the next GEMV of the same layer follows within microseconds), then
// sleep on a condition variable so that an idle pool costs no CPU while ONNX Runtime runs. One pool per
// process: engines in two JS threads share it, one dispatcher at a time (the other runs its range inline).
// Which thread runs a piece never changes a result: every kernel writes each output from one piece.
#ifndef DSV32_THREAD_POOL_H
#define DSV32_THREAD_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

enum { MAX_THREADS = 16, POOL_DEFAULT_SPIN = 4000, SUBCHUNKS = 4 };

typedef void (*RangeFn)(const void* ctx, int r0, int r1);

static struct {
  pthread_t threads[MAX_THREADS];
  int started;
  int nthreads;
  int spin;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_mutex_t busy;  // one dispatcher at a time
  atomic_uint generation;
  // per share: (generation << 32) | next piece; a claim for another generation fails, so a worker that wakes
  // after its job ended never runs a piece of the next one with the old job's function
  _Atomic uint64_t next[MAX_THREADS];
  atomic_int done;  // pieces finished in this job
  RangeFn fn;
  const void* ctx;
  int n, align, parts;
} pool = { .nthreads = 1, .spin = POOL_DEFAULT_SPIN, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .busy = PTHREAD_MUTEX_INITIALIZER };

// Share i of n items in units of `align` (threads write disjoint cache lines of y).
static void share(int n, int align, int i, int parts, int* r0, int* r1) {
  int units = (n + align - 1) / align;
  *r0 = (int)((int64_t)units * i / parts) * align;
  *r1 = (int)((int64_t)units * (i + 1) / parts) * align;
  if (*r0 > n) *r0 = n;
  if (*r1 > n) *r1 = n;
}

// Runs the pieces of share p (of job generation gen) that nobody has claimed yet.
static void pool_run_share(unsigned gen, int p) {
  int s0, s1;
  share(pool.n, pool.align, p, pool.parts, &s0, &s1);
  uint64_t v = atomic_load_explicit(&pool.next[p], memory_order_acquire);
  for (;;) {
    const int piece = (int)(uint32_t)v;
    if ((unsigned)(v >> 32) != gen || piece >= SUBCHUNKS) return;
    if (!atomic_compare_exchange_weak_explicit(&pool.next[p], &v, v + 1, memory_order_acq_rel, memory_order_acquire)) continue;
    int r0, r1;
    share(s1 - s0, pool.align, piece, SUBCHUNKS, &r0, &r1);
    if (r0 < r1) pool.fn(pool.ctx, s0 + r0, s0 + r1);
    atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
    v = atomic_load_explicit(&pool.next[p], memory_order_acquire);
  }
}

// Thread i's part of job gen: its own share first, then what is left of the others'.
static void pool_run_job(unsigned gen, int i) {
  const int parts = pool.parts;
  for (int k = 0; k < parts; k++) pool_run_share(gen, (i + k) % parts);
}

static void* worker(void* arg) {
  int i = (int)(intptr_t)arg;
  unsigned seen = 0;
  for (;;) {
    int spins = 0;
    while (atomic_load_explicit(&pool.generation, memory_order_acquire) == seen) {
      if (++spins < pool.spin) {
        CPU_RELAX();
        continue;
      }
      pthread_mutex_lock(&pool.mu);
      while (atomic_load(&pool.generation) == seen) pthread_cond_wait(&pool.cv, &pool.mu);
      pthread_mutex_unlock(&pool.mu);
    }
    seen = atomic_load_explicit(&pool.generation, memory_order_acquire);
    if (i < pool.parts) pool_run_job(seen, i);
  }
  return NULL;
}

// The pool's size (the calling thread included; at most MAX_THREADS) and how long workers spin.
static void pool_set_threads(int n, int spin) {
  if (n < 1) n = 1;
  if (n > MAX_THREADS) n = MAX_THREADS;
  pool.spin = spin;
  while (pool.started < n - 1) {
    if (pthread_create(&pool.threads[pool.started], NULL, worker, (void*)(intptr_t)(pool.started + 1)) != 0) break;
    pool.started++;
  }
  pool.nthreads = pool.started + 1 < n ? pool.started + 1 : n;
}

// fn over [0, n) split across the pool; runs inline when n is below `grain` items per thread.
static void parallel_for(RangeFn fn, const void* ctx, int n, int align, int grain) {
  int parts = pool.nthreads;
  if (parts <= 1 || n < grain * parts || pthread_mutex_trylock(&pool.busy) != 0) {
    fn(ctx, 0, n);
    return;
  }
  const unsigned gen = atomic_load(&pool.generation) + 1;
  pool.fn = fn, pool.ctx = ctx, pool.n = n, pool.align = align, pool.parts = parts;
  const int pieces = parts * SUBCHUNKS;  // every piece is claimed and counted, empty or not
  for (int p = 0; p < parts; p++) atomic_store_explicit(&pool.next[p], (uint64_t)gen << 32, memory_order_relaxed);
  atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
  pthread_mutex_lock(&pool.mu);
  atomic_store_explicit(&pool.generation, gen, memory_order_release);
  pthread_cond_broadcast(&pool.cv);
  pthread_mutex_unlock(&pool.mu);
  pool_run_job(gen, 0);
  while (atomic_load_explicit(&pool.done, memory_order_acquire) < pieces) CPU_RELAX();
  pthread_mutex_unlock(&pool.busy);
}

#endif
