// Interleaved repetitions: every figure of a comparison is measured in rounds, each round running every
// participant once in a fixed order (ours, peer A, peer B, ours, peer A, peer B, ...), so a change in the
// machine's state during the run hits all participants alike instead of whichever ran last. The per-round
// figures give the median and spread; ratios are taken within a round (pure; unit-tested).

/** The fewest rounds a reported figure may come from. */
export const MIN_ROUNDS = 5;

export interface Slot<P> {
  readonly round: number;
  readonly participant: P;
}

export function interleavedSchedule<P>(participants: readonly P[], rounds: number): Slot<P>[] {
  if (!Number.isInteger(rounds) || rounds < MIN_ROUNDS) throw new RangeError(`interleavedSchedule: need at least ${MIN_ROUNDS} rounds, got ${rounds}`);
  if (participants.length === 0) throw new RangeError('interleavedSchedule: no participants');
  if (new Set(participants).size !== participants.length) throw new RangeError('interleavedSchedule: participants must be distinct');
  const out: Slot<P>[] = [];
  for (let round = 0; round < rounds; round++) for (const participant of participants) out.push({ round, participant });
  return out;
}

/**
 * Runs `measure` in the schedule's order and returns, per participant, its figures in round order (one per
 * round; `measure` returns the figure of one participant in one round).
 */
export async function runInterleaved<P, R>(schedule: readonly Slot<P>[], measure: (slot: Slot<P>) => Promise<R>): Promise<Map<P, R[]>> {
  const out = new Map<P, R[]>();
  for (const slot of schedule) {
    const r = await measure(slot);
    const list = out.get(slot.participant) ?? [];
    if (list.length !== slot.round) throw new Error(`runInterleaved: round ${slot.round} of ${String(slot.participant)} out of order`);
    list.push(r);
    out.set(slot.participant, list);
  }
  return out;
}
