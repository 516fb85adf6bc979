// The memory plan (memory_plan.ts) is checked against the machine's size; this checks it against what is
// free. At start-up, other processes may already hold part of the machine; while a large model loads
// (minutes for bench-lite), they may grow. Either way the load would end in an OOM kill, which names
// nothing. Before the load and before each layer, the guard compares what the plan still expects this
// process to allocate (plan total minus its resident size now) with the kernel's available memory and
// stops with the numbers instead. (A helper's bench-lite load was OOM-killed at 13.8 GiB when other
// processes had grown to 7.7 GiB; the plan had fitted at start.)
import { availableMemory, formatGiB, type MachineMemory } from '../common/machine_memory.ts';
import { EngineError } from '../common/errors.ts';
import type { MemoryPlan } from './memory_plan.ts';
import type { RunnerWeightSource } from './model_runner.ts';

export class LoadMemoryGuard {
  constructor(
    private readonly plan: MemoryPlan,
    private readonly available: () => MachineMemory | null = availableMemory,
    private readonly residentBytes: () => number = () => process.memoryUsage.rss(),
  ) {}

  /** Throws DSV_ERR_CONFIG when the rest of the plan no longer fits in the available memory. */
  check(stage: string): void {
    const avail = this.available();
    if (avail === null) return;
    const resident = this.residentBytes();
    const need = this.plan.total - resident;
    if (need <= avail.bytes) return;
    throw new EngineError(
      'DSV_ERR_CONFIG',
      `not enough free memory ${stage}: the memory plan (${formatGiB(this.plan.total)}) needs ${formatGiB(need)} more than this process holds` +
        ` (${formatGiB(resident)}), but only ${formatGiB(avail.bytes)} is available (${avail.source}); other processes hold the rest of the` +
        ` ${formatGiB(this.plan.machine.bytes)}. Stop them, or choose a smaller --quantization or --kv-cache-memory (plan: ${formatGiB(this.plan.weights)} of weights, ${formatGiB(this.plan.kvCache)} of KV cache)`,
    );
  }

  /** The same weights, with a check before each layer, the head and each MTP module is read. */
  guard(source: RunnerWeightSource): RunnerWeightSource {
    return {
      config: source.config,
      quantBits: source.quantBits,
      numMtpModules: source.numMtpModules,
      embedding: () => source.embedding(),
      layer: (l) => {
        this.check(`while loading layer ${l}`);
        return source.layer(l);
      },
      head: () => {
        this.check('while loading the output head');
        return source.head();
      },
      mtp: (i) => {
        this.check(`while loading MTP module ${i}`);
        return source.mtp(i);
      },
    };
  }
}
