// The fp32 FMA peak of the cores a benchmark uses, from its factors, and the physics check that a measured
// GEMM figure must pass (pure; unit-tested in test/bench/machine.test.ts).
//
//   peak GFLOP/s = cores x FMA units per core x fp32 lanes per unit x 2 (an FMA is a multiply and an add) x GHz
//
// cores: lscpu's physical cores, capped by the CPUs this process may use (cpu_info.ts). Units and lanes: from
// the microarchitecture (vendor + family, and the SIMD flags), per the vendors' optimisation manuals:
//   AMD family 1Ah (Zen 5): 2 FMA pipes with a full 512-bit datapath on server parts (EPYC 9005; the
//     mobile parts split 512-bit ops, so this is an upper bound for them) -> 2 x 16;
//   AMD family 19h (Zen 3, Zen 4): 2 FMA pipes of 256 bits; Zen 4 runs AVX-512 as two 256-bit halves -> 2 x 8;
//   AMD family 17h (Zen 1: 2 x 128-bit; Zen 2: 2 x 256-bit) -> 2 x 8 as the upper bound;
//   anything else: 2 units x the widest SIMD width its flags allow (avx512f 16, avx/fma 8, else 4), the
//     most any x86 core has had, so the peak stays an upper bound.
// GHz: the clock the cores run at while all are busy, measured by cpu_probe.c (a dependent-add chain; lscpu's
// "CPU MHz" under a hypervisor is the TSC rate, not the core clock).

export interface FmaShape {
  readonly unitsPerCore: number;
  readonly lanesPerUnit: number;
  readonly source: string;
}

export function fmaShape(vendor: string, family: number | null, flags: readonly string[]): FmaShape {
  const has = (f: string): boolean => flags.includes(f);
  const amd = vendor === 'AuthenticAMD';
  if (amd && family === 0x1a) return { unitsPerCore: 2, lanesPerUnit: 16, source: 'AMD family 1Ah (Zen 5): 2 FMA pipes x 512 bits (server datapath)' };
  if (amd && family === 0x19)
    return {
      unitsPerCore: 2,
      lanesPerUnit: 8,
      source: `AMD family 19h (Zen 3/4): 2 FMA pipes x 256 bits${has('avx512f') ? ' (AVX-512 runs as 2 x 256)' : ''}`,
    };
  if (amd && family === 0x17) return { unitsPerCore: 2, lanesPerUnit: 8, source: 'AMD family 17h (Zen 1/2): at most 2 FMA pipes x 256 bits' };
  const lanes = has('avx512f') ? 16 : has('fma') || has('avx') ? 8 : 4;
  return {
    unitsPerCore: 2,
    lanesPerUnit: lanes,
    source: `${vendor} family ${family ?? '?'}: not in the table; 2 units x ${lanes * 32}-bit (widest SIMD in its flags) as an upper bound`,
  };
}

export interface FmaPeak {
  readonly gflops: number;
  readonly cores: number;
  readonly unitsPerCore: number;
  readonly lanesPerUnit: number;
  readonly clockGHz: number;
  /** How each factor was obtained. */
  readonly sources: { readonly cores: string; readonly shape: string; readonly clock: string };
}

export function fmaPeak(cores: number, shape: FmaShape, clockGHz: number, sources: { cores: string; clock: string }): FmaPeak {
  if (!(cores >= 1) || !(clockGHz > 0)) throw new RangeError(`fmaPeak: cores ${cores}, clock ${clockGHz} GHz`);
  return {
    gflops: cores * shape.unitsPerCore * shape.lanesPerUnit * 2 * clockGHz,
    cores,
    unitsPerCore: shape.unitsPerCore,
    lanesPerUnit: shape.lanesPerUnit,
    clockGHz,
    sources: { cores: sources.cores, shape: shape.source, clock: sources.clock },
  };
}

/**
 * The measured clock carries a small error (the fastest trial of a dependent chain; the FMA loop on this
 * kind of machine measured 64.7-64.9 FLOP/cycle against a physical 64): a figure is above the peak only
 * when it exceeds it by more than this fraction.
 */
export const PEAK_TOLERANCE = 0.03;

export type GemmVerdict =
  | { readonly ok: true; readonly gflops: number; readonly fractionOfPeak: number }
  | { readonly ok: false; readonly gflops: number; readonly fractionOfPeak: number; readonly reason: string };

/** A GEMM figure above the FMA peak (beyond the tolerance) is not physics: rejected, with the reason. */
export function checkGemm(gflops: number, peak: FmaPeak, tolerance = PEAK_TOLERANCE): GemmVerdict {
  const fractionOfPeak = gflops / peak.gflops;
  if (!Number.isFinite(gflops) || gflops <= 0) return { ok: false, gflops, fractionOfPeak, reason: `not a positive figure (${gflops})` };
  if (fractionOfPeak > 1 + tolerance) {
    return {
      ok: false,
      gflops,
      fractionOfPeak,
      reason: `${gflops.toFixed(0)} GFLOP/s is ${(fractionOfPeak * 100).toFixed(0)}% of the FMA peak ${peak.gflops.toFixed(0)} GFLOP/s (${peak.cores} cores x ${peak.unitsPerCore} x ${peak.lanesPerUnit} lanes x 2 x ${peak.clockGHz.toFixed(2)} GHz): the probe is wrong (timing, or work skipped), not the machine`,
    };
  }
  return { ok: true, gflops, fractionOfPeak };
}
