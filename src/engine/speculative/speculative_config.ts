// --speculative-config (vLLM's flag and JSON keys): which draft model proposes tokens and how many.
// The only method is DeepSeek's MTP module ("mtp"; vLLM's older name "deepseek_mtp" is accepted).
import { z } from 'zod';

/** Most drafts per step: a longer chain of one MTP module drifts, and each draft costs an MTP pass. */
export const MAX_SPECULATIVE_TOKENS = 4;

/**
 * Default of disable_by_batch_size: speculation stops while more requests run than this. Measured on
 * bench-mini (see the README's speculative decoding section): verification chunks run as one attention
 * group each, so past a few sequences the extra rows cost more than the accepted drafts save.
 */
export const DEFAULT_DISABLE_BY_BATCH_SIZE = 4;

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
