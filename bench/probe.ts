// Machine limits for the engine-only bench runs (run.ts, engine_targets.ts): the same measurement as the
// llama.cpp comparison (bench/machine/ceilings.ts: medians of repeated probes, the GEMM figure checked
// against the computed FMA peak), reduced to the two figures those reports use.
import { measureCeilings, type MachineCeilings } from './machine/ceilings.ts';

export interface MachineLimits {
  /** Median read bandwidth of this run's probes, GB/s. */
  readonly readBandwidthGBs: number;
  /** This run's compute ceiling (the GEMM median if it passed the physics check, else the FMA peak); NaN when unknown. */
  readonly gemmGflops: number;
  readonly ceilings: MachineCeilings;
}

export async function probeMachine(numThreads = 2): Promise<MachineLimits> {
  const ceilings = await measureCeilings(numThreads);
  return { readBandwidthGBs: ceilings.readBandwidthGBs.median, gemmGflops: ceilings.computeCeilingGflops ?? Number.NaN, ceilings };
}
