// --speculative-config (vLLM's flag and JSON keys): which draft model proposes tokens and how many.
// The only method is DeepSeek's MTP module ("mtp"; vLLM's older name "deepseek_mtp" is accepted).
import { z } from 'zod';

/** Most drafts per step: a longer chain of one MTP module drifts, and each draft costs an MTP pass. */
export const MAX_SPECULATIVE_TOKENS = 4;

/**
 * Default of disable_by_batch_size: no drafts in steps with more requests (running + waiting) than
 * this. Measured on bench-mini + MTP (bench/spec_decode.ts, k 1, loaded machine): a speculative step
 * costs 1.75x a plain one at batch 1, 1.35x at 2 and 1.8-2.4x at 4-16 (each verification chunk is its
 * own attention group, and the module's shared head is as large as lm_head), so with DeepSeek's
 * reported ~0.8-0.9 acceptance for k 1 it pays at batch 1-2 and not beyond.
 */
export const DEFAULT_DISABLE_BY_BATCH_SIZE = 2;

export interface SpeculativeConfig {
  readonly method: 'mtp';
  /** k: draft tokens proposed per step and verified in the next one. */
  readonly numSpeculativeTokens: number;
  /** Speculation is off in steps with more running requests than this. */
  readonly disableByBatchSize: number;
}

export const speculativeConfigSchema = z
  .strictObject({
    method: z.string().refine((m) => m === 'mtp' || m === 'deepseek_mtp', { message: 'unknown method: the only method is "mtp" (DeepSeek\'s MTP module)' }),
    num_speculative_tokens: z
      .number({ message: 'num_speculative_tokens must be a number' })
      .int({ message: 'num_speculative_tokens must be an integer' })
      .min(1, { message: 'num_speculative_tokens must be at least 1' })
      .max(MAX_SPECULATIVE_TOKENS, { message: `num_speculative_tokens must be at most ${MAX_SPECULATIVE_TOKENS}` }),
    disable_by_batch_size: z.number().int().positive({ message: 'disable_by_batch_size must be a positive integer' }).optional(),
  })
  .transform((v): SpeculativeConfig => ({
    method: 'mtp',
    numSpeculativeTokens: v.num_speculative_tokens,
    disableByBatchSize: v.disable_by_batch_size ?? DEFAULT_DISABLE_BY_BATCH_SIZE,
  }));
