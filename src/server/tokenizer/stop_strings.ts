// Stop strings over streamed text (vLLM semantics: generation ends at the first stop string; the
// stop string itself is dropped unless includeStopStrInOutput).
//
// Invariant (without includeStopStrInOutput): `held` is the longest suffix of the text seen so far
// that is a proper prefix of some stop string. Any stop string that will ever match starts inside
// `held` or in text not yet pushed, so emitted text can never contain any part of a stop string.
// With includeStopStrInOutput nothing needs holding back (a match is emitted whole anyway); the
// last maxLen-1 emitted characters are kept only so a match spanning pushes is still found.
//
// Differences from vLLM, on purpose: vLLM holds back a fixed max(len(stop))-1 characters and, when
// several stop strings occur in one delta, takes the first in list order. Here only a possible
// prefix is held (less latency), and the stop string that is complete first in the text wins (ties:
// the one starting earlier), so the result does not depend on how the text was split into deltas.

export interface StopResult {
  /** Text that is safe to emit now. */
  readonly text: string;
  readonly stopped: boolean;
  /** The stop string that matched (OpenAI `stop_reason`), or null. */
  readonly stop: string | null;
}

interface Match {
  readonly index: number;
  readonly stop: string;
}

export class StopStringMatcher {
  private readonly stops: readonly string[];
  private readonly maxStopLength: number;
  /** Text seen but not emitted. */
  private held = '';
  /** Tail of emitted text (only with includeStopStrInOutput), for matches that span pushes. */
  private emittedTail = '';
  private stoppedAt: string | null = null;

  constructor(
    stops: readonly string[],
    private readonly includeStopStrInOutput = false,
  ) {
    // An empty stop string would match before any text: ignore it rather than stop at once.
    this.stops = [...new Set(stops.filter((s) => s.length > 0))];
    this.maxStopLength = Math.max(0, ...this.stops.map((s) => s.length));
  }

  get stopped(): boolean {
    return this.stoppedAt !== null;
  }

  push(delta: string): StopResult {
    if (this.stoppedAt !== null) return { text: '', stopped: true, stop: this.stoppedAt };
    const text = this.held + delta;
    const haystack = this.emittedTail + text;
    const match = this.firstMatch(haystack);
    if (match) return this.stopAt(haystack, match);
    if (this.includeStopStrInOutput) {
      this.held = '';
      const numKept = this.maxStopLength - 1;
      this.emittedTail = numKept > 0 ? haystack.slice(-numKept) : '';
      return { text, stopped: false, stop: null };
    }
    const numHeld = this.longestPartialSuffix(text);
    this.held = text.slice(text.length - numHeld);
    return { text: text.slice(0, text.length - numHeld), stopped: false, stop: null };
  }

  /** Natural end of the text: releases what was held (it can no longer become a stop string). */
  flush(): string {
    const text = this.held;
    this.held = '';
    return this.stoppedAt === null ? text : '';
  }

  private stopAt(haystack: string, match: Match): StopResult {
    this.stoppedAt = match.stop;
    this.held = '';
    const start = this.emittedTail.length;
    const end = this.includeStopStrInOutput ? match.index + match.stop.length : match.index;
    return { text: haystack.slice(start, Math.max(start, end)), stopped: true, stop: match.stop };
  }

  /** The match that ends first (then starts first); indexOf gives each stop's earliest end. */
  private firstMatch(haystack: string): Match | null {
    let best: Match | null = null;
    for (const stop of this.stops) {
      const index = haystack.indexOf(stop);
      if (index < 0) continue;
      const end = index + stop.length;
      const bestEnd = best === null ? Infinity : best.index + best.stop.length;
      if (end < bestEnd || (end === bestEnd && index < best!.index)) best = { index, stop };
    }
    return best;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
  private longestPartialSuffix(text: string): number {
    let longest = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, text.length); n > longest; n--) {
        if (text.endsWith(stop.slice(0, n))) {
          longest = n;
          break;
        }
      }
    }
    return longest;
  }
}
