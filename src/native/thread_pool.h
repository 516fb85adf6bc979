// A persistent thread pool for the native kernels (src/native/decode_layer.c; the probe
// bench/native/gemv.c includes it too). The calling thread takes share 0 of a range, workers 1..n-1 the
// rest. Workers spin for a while after a job (the next GEMV of the same layer follows within
// microseconds), then sleep on a condition variable so that an idle pool costs no CPU while ONNX Runtime
// runs. One pool per process: engines in two JS threads share it, one dispatcher at a time (the other
// runs its range inline).
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

enum { MAX_THREADS = 16, POOL_DEFAULT_SPIN = 4000 };

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
  atomic_int pending;
  RangeFn fn;
  const void* ctx;
  int n, align;
} pool = { .nthreads = 1, .spin = POOL_DEFAULT_SPIN, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .busy = PTHREAD_MUTEX_INITIALIZER };

// Share i of n items in units of `align` (threads write disjoint cache lines of y).
static void share(int n, int align, int i, int parts, int* r0, int* r1) {
  int units = (n + align - 1) / align;
  *r0 = (int)((int64_t)units * i / parts) * align;
  *r1 = (int)((int64_t)units * (i + 1) / parts) * align;
  if (*r0 > n) *r0 = n;
  if (*r1 > n) *r1 = n;
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
    seen = atomic_load(&pool.generation);
    if (i < pool.nthreads) {
      int r0, r1;
      share(pool.n, pool.align, i, pool.nthreads, &r0, &r1);
      if (r0 < r1) pool.fn(pool.ctx, r0, r1);
    }
    atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_release);
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
  pool.fn = fn, pool.ctx = ctx, pool.n = n, pool.align = align;
  atomic_store(&pool.pending, pool.started);  // every started worker counts down (those past parts idle)
  pthread_mutex_lock(&pool.mu);
  atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
  pthread_cond_broadcast(&pool.cv);
  pthread_mutex_unlock(&pool.mu);
  int r0, r1;
  share(n, align, 0, parts, &r0, &r1);
  if (r0 < r1) fn(ctx, r0, r1);
  while (atomic_load_explicit(&pool.pending, memory_order_acquire) > 0) CPU_RELAX();
  pthread_mutex_unlock(&pool.busy);
}

#endif
