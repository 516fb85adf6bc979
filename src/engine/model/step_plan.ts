// The model's step inputs: one batched step (sequences with their new tokens and block tables) as
// flat, execution-ordered arrays. Short sequences (at most MAX_GROUPED_QUERY_LEN new tokens: decodes,
// speculative verification chunks of the last token + k drafts, the MTP module's rows) run first, one
// attention group per query length; each longer chunk (prefill) is its own group, so no group pads queries.
// Built by the ModelRunner from the scheduler's output; token ids were validated when the request
// entered the engine, so only invariants are asserted here.
import { assert } from '../../common/errors.ts';
import { slotMapping } from '../../kvcache/paged_kv_storage.ts';

/**
 * Longest chunk that shares an attention group with other sequences of its length: 1 + the most drafts
 * a verification chunk carries (speculative_config.ts MAX_SPECULATIVE_TOKENS). A verification chunk in
 * a group of its own cost one attention run per request and layer: at 16 requests with k 1 a
 * speculative step made 83 graph runs instead of 16 (bench/spec_decode.ts, models/default).
 */
export const MAX_GROUPED_QUERY_LEN = 5;

export interface StepSequence {
  /** The new tokens of this step: a prefill chunk of any length, one decode token, or a verification chunk. */
  readonly tokenIds: ArrayLike<number>;
  /** Tokens already in the cache; the first new token sits at this position. */
  readonly numComputedTokens: number;
  /** Block ids covering positions 0 .. numComputedTokens + tokenIds.length - 1. */
  readonly blockTable: readonly number[];
  /** Which rows return logits: the last new token, every new token (prompt logprobs), or none. */
  readonly logits: 'last' | 'all' | 'none';
}

/** Sequences that attend together: B sequences with S query rows each. */
export interface AttentionGroup {
  readonly rowStart: number; // first execution row of the group; rows are contiguous
  readonly numSeqs: number; // B
  readonly queryLen: number; // S
  readonly seqIndex: Int32Array; // [B] index into the caller's sequence list
  readonly startPos: Int32Array; // [B] position of each sequence's first query row
  readonly maxContext: number; // T = max over b of startPos + S
  readonly keySlots: Int32Array; // [B, T] cache slot of positions 0 .. ctx_b - 1, padded with position 0's slot
  /** B = 1: the smallest range of slots holding positions 0 .. T - 1 (whole blocks); null for B > 1. */
  readonly keySlotSpan: { readonly first: number; readonly count: number } | null;
}

export interface StepPlan {
  readonly numTokens: number; // N
  readonly tokenIds: Int32Array; // [N] execution order
  readonly positions: Int32Array; // [N]
  readonly slots: Int32Array; // [N] cache slot each new token is written to
  readonly groups: readonly AttentionGroup[];
  /** Execution rows whose logits are returned, in the caller's sequence order. */
  readonly logitRows: Int32Array;
  /** [numSeqs + 1] prefix offsets into the logits rows per caller sequence. */
  readonly logitOffsets: Int32Array;
}

export function planStep(seqs: readonly StepSequence[], blockSize: number, maxPositions: number): StepPlan {
  // Execution order: short sequences by length (decodes first), then each longer chunk; stable within each.
  const rank = (s: StepSequence): number => (s.tokenIds.length <= MAX_GROUPED_QUERY_LEN ? s.tokenIds.length : MAX_GROUPED_QUERY_LEN + 1);
  const ordered = [...seqs.entries()].sort(([, a], [, b]) => rank(a) - rank(b));
  const numTokens = seqs.reduce((n, s) => n + s.tokenIds.length, 0);
  const tokenIds = new Int32Array(numTokens);
  const positions = new Int32Array(numTokens);
  const slots = new Int32Array(numTokens);
  const rowStartOf = new Int32Array(seqs.length);
  let row = 0;
  for (const [i, s] of ordered) {
    const n = s.tokenIds.length;
    assert(n > 0, `sequence ${i}: no new tokens`);
    assert(s.numComputedTokens + n <= maxPositions, `sequence ${i}: ${s.numComputedTokens + n} tokens exceed ${maxPositions} positions`);
    rowStartOf[i] = row;
    slotMapping(s.blockTable, blockSize, s.numComputedTokens, n, slots.subarray(row, row + n));
    tokenIds.set(s.tokenIds, row);
    for (let j = 0; j < n; j++) positions[row + j] = s.numComputedTokens + j;
    row += n;
  }
  const groups: AttentionGroup[] = [];
  for (let S = 1; S <= MAX_GROUPED_QUERY_LEN; S++) {
    const members = ordered.filter(([, s]) => s.tokenIds.length === S);
    if (members.length > 0) groups.push(makeGroup(members, rowStartOf[members[0]![0]]!, blockSize));
  }
  for (const member of ordered) if (member[1].tokenIds.length > MAX_GROUPED_QUERY_LEN) groups.push(makeGroup([member], rowStartOf[member[0]]!, blockSize));

  const logitOffsets = new Int32Array(seqs.length + 1);
  const rows: number[] = [];
  seqs.forEach((s, i) => {
    const n = s.tokenIds.length;
    const start = rowStartOf[i]!;
    if (s.logits === 'last') rows.push(start + n - 1);
    else if (s.logits === 'all') for (let j = 0; j < n; j++) rows.push(start + j);
    logitOffsets[i + 1] = rows.length;
  });
  return { numTokens, tokenIds, positions, slots, groups, logitRows: Int32Array.from(rows), logitOffsets };
}

/** One attention group of sequences [index in the caller's list, sequence] that share a query length. */
function makeGroup(members: readonly (readonly [number, StepSequence])[], rowStart: number, blockSize: number): AttentionGroup {
  const S = members[0]?.[1].tokenIds.length;
  assert(S !== undefined, 'an attention group needs a member');
  const startPos = Int32Array.from(members, ([, s]) => s.numComputedTokens);
  const T = Math.max(...startPos) + S;
  const keySlots = new Int32Array(members.length * T);
  members.forEach(([, s], b) => {
    const ctx = s.numComputedTokens + S;
    const row = keySlots.subarray(b * T, (b + 1) * T);
    slotMapping(s.blockTable, blockSize, 0, ctx, row);
    row.fill(row[0]!, ctx); // ctx >= 1: position 0's slot exists
  });
  const keySlotSpan = members.length === 1 ? blockSpan(members[0]![1].blockTable, Math.ceil(T / blockSize), blockSize) : null;
  return { rowStart, numSeqs: members.length, queryLen: S, seqIndex: Int32Array.from(members, ([i]) => i), startPos, maxContext: T, keySlots, keySlotSpan };
}

/** The slots from the lowest to the highest of the first n blocks of a table. */
function blockSpan(blockTable: readonly number[], n: number, blockSize: number): { first: number; count: number } {
  let [lo, hi] = [blockTable[0]!, blockTable[0]!];
  for (let i = 1; i < n; i++) [lo, hi] = [Math.min(lo, blockTable[i]!), Math.max(hi, blockTable[i]!)];
  return { first: lo * blockSize, count: (hi - lo + 1) * blockSize };
}

/** The first execution row of each of the plan's numSeqs sequences (its rows are contiguous). */
export function sequenceRowStarts(plan: StepPlan, numSeqs: number): Int32Array {
  const starts = new Int32Array(numSeqs);
  for (const g of plan.groups) g.seqIndex.forEach((seq, b) => (starts[seq] = g.rowStart + b * g.queryLen));
  return starts;
}
