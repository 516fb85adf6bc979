// Clock and FMA-throughput probe for bench/machine (compiled on first use by clock_probe.ts with the
// system C compiler; x86-64 only). Usage: cpu_probe <threads> <trials> <avx512|avx2>
//
// Clock: each thread runs blocks of 1000 dependent 64-bit `add` instructions (one cycle of latency each on
// every x86-64 core since the P6; the loop overhead runs in parallel with the chain), so a block takes
// 1000 cycles; the fastest of `trials` short timed trials (a preempted trial is only ever slower) gives
// cycles per nanosecond = the clock the core runs at while all `threads` cores are busy.
// FMA: each thread runs 12 independent chains of vfmadd231ps on zmm (avx512) or ymm (avx2) registers, enough
// to cover FMA latency x units on current cores; FLOP per cycle per core = 12 x lanes x 2 x reps / cycles.
// Output: one JSON line {"threads":T,"clockMHz":[per thread],"fmaFlopsPerCycle":[per thread]}.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_trials;
static int g_avx512;
static pthread_barrier_t g_barrier;

typedef struct { double clock_mhz; double fma_flops_per_cycle; } result_t;

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

#define ADD10 "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" \
              "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t"
#define ADD100 ADD10 ADD10 ADD10 ADD10 ADD10 ADD10 ADD10 ADD10 ADD10 ADD10

// 1000 dependent adds per block
static uint64_t add_blocks(uint64_t x, int blocks) {
  for (int b = 0; b < blocks; b++) {
    __asm__ volatile(ADD100 ADD100 ADD100 ADD100 ADD100 ADD100 ADD100 ADD100 ADD100 ADD100 : "+r"(x));
  }
  return x;
}

#define FMA12(R) \
  "vfmadd231ps %%" R "0, %%" R "0, %%" R "1\n\t" "vfmadd231ps %%" R "0, %%" R "0, %%" R "2\n\t" \
  "vfmadd231ps %%" R "0, %%" R "0, %%" R "3\n\t" "vfmadd231ps %%" R "0, %%" R "0, %%" R "4\n\t" \
  "vfmadd231ps %%" R "0, %%" R "0, %%" R "5\n\t" "vfmadd231ps %%" R "0, %%" R "0, %%" R "6\n\t" \
  "vfmadd231ps %%" R "0, %%" R "0, %%" R "7\n\t" "vfmadd231ps %%" R "0, %%" R "0, %%" R "8\n\t" \
  "vfmadd231ps %%" R "0, %%" R "0, %%" R "9\n\t" "vfmadd231ps %%" R "0, %%" R "0, %%" R "10\n\t" \
  "vfmadd231ps %%" R "0, %%" R "0, %%" R "11\n\t" "vfmadd231ps %%" R "0, %%" R "0, %%" R "12\n\t"

// 12 x 10 FMAs per block on registers 1..12 (register 0 is the zero multiplicand: no denormals, no overflow)
static void fma_blocks(int blocks) {
  if (g_avx512) {
    __asm__ volatile("vpxord %%zmm0, %%zmm0, %%zmm0\n\t" ::: "xmm0");
    for (int b = 0; b < blocks; b++) {
      __asm__ volatile(FMA12("zmm") FMA12("zmm") FMA12("zmm") FMA12("zmm") FMA12("zmm")
                       FMA12("zmm") FMA12("zmm") FMA12("zmm") FMA12("zmm") FMA12("zmm")
                       ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12");
    }
  } else {
    __asm__ volatile("vpxor %%ymm0, %%ymm0, %%ymm0\n\t" ::: "xmm0");
    for (int b = 0; b < blocks; b++) {
      __asm__ volatile(FMA12("ymm") FMA12("ymm") FMA12("ymm") FMA12("ymm") FMA12("ymm")
                       FMA12("ymm") FMA12("ymm") FMA12("ymm") FMA12("ymm") FMA12("ymm")
                       ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12");
    }
  }
  __asm__ volatile("vzeroupper" ::: "memory");
}

static void *worker(void *arg) {
  result_t *res = (result_t *)arg;
  const int add_per_trial = 500;  // 500k cycles, ~0.15-0.25 ms: short enough that most trials run unpreempted
  const int fma_per_trial = 500;  // 60k FMAs
  double best_add = 1e300, best_fma = 1e300;
  volatile uint64_t sink = 0;
  pthread_barrier_wait(&g_barrier);
  sink += add_blocks(1, add_per_trial * 4);  // warm-up: lets the core reach its busy clock
  fma_blocks(fma_per_trial * 4);
  for (int t = 0; t < g_trials; t++) {
    double t0 = now_ns();
    sink += add_blocks(t, add_per_trial);
    double t1 = now_ns();
    fma_blocks(fma_per_trial);
    double t2 = now_ns();
    if (t1 - t0 < best_add) best_add = t1 - t0;
    if (t2 - t1 < best_fma) best_fma = t2 - t1;
  }
  (void)sink;
  const double ghz = (add_per_trial * 1000.0) / best_add;  // cycles per ns
  const double lanes = g_avx512 ? 16.0 : 8.0;
  const double flops = fma_per_trial * 120.0 * lanes * 2.0;
  res->clock_mhz = ghz * 1000.0;
  res->fma_flops_per_cycle = flops / (best_fma * ghz);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s <threads> <trials> <avx512|avx2>\n", argv[0]);
    return 2;
  }
  const int threads = atoi(argv[1]);
  g_trials = atoi(argv[2]);
  g_avx512 = strcmp(argv[3], "avx512") == 0;
  if (threads < 1 || threads > 1024 || g_trials < 1) {
    fprintf(stderr, "threads must be in [1, 1024] and trials >= 1\n");
    return 2;
  }
  pthread_t *tids = calloc((size_t)threads, sizeof(pthread_t));
  result_t *res = calloc((size_t)threads, sizeof(result_t));
  pthread_barrier_init(&g_barrier, NULL, (unsigned)threads);
  for (int i = 0; i < threads; i++) pthread_create(&tids[i], NULL, worker, &res[i]);
  for (int i = 0; i < threads; i++) pthread_join(tids[i], NULL);
  printf("{\"threads\":%d,\"clockMHz\":[", threads);
  for (int i = 0; i < threads; i++) printf("%s%.1f", i ? "," : "", res[i].clock_mhz);
  printf("],\"fmaFlopsPerCycle\":[");
  for (int i = 0; i < threads; i++) printf("%s%.2f", i ? "," : "", res[i].fma_flops_per_cycle);
  printf("]}\n");
  return 0;
}
