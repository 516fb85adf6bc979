// One single-stream test in llama-bench's terms, shared by both sides of the comparison:
//   pp P @ d D: the KV cache holds D tokens (prefilled, untimed); time the prefill of P more prompt tokens
//               (in batches; logits of each batch's last token only); tok/s = P / time.
//   tg N @ d D: the KV cache holds D tokens (untimed); time N decode steps of one token each (the next token
//               is random, not sampled, so sampling costs nothing on either side); tok/s = N / time.
// Before the timed repetitions of a test: one untimed prefill of P (pp) and one untimed 1-token step (tg).
// Each repetition starts again from the D cached tokens (llama-bench restores its saved state; ours rewrites
// the positions after D, which the next step never reads past its own length).
export interface BenchTest {
  readonly kind: 'pp' | 'tg';
  readonly tokens: number;
  readonly depth: number;
}

/** The tests llama-bench runs for `-p P -n N -d D[,D2...]`: pp P and tg N at every depth (P or N of 0 = none). */
export function benchTests(prompt: number, gen: number, depths: readonly number[]): BenchTest[] {
  const out: BenchTest[] = [];
  for (const depth of depths) {
    if (prompt > 0) out.push({ kind: 'pp', tokens: prompt, depth });
    if (gen > 0) out.push({ kind: 'tg', tokens: gen, depth });
  }
  return out;
}

/** "pp512", "tg128 @ d4096" (llama-bench's own test names). */
export function testKey(t: BenchTest): string {
  return `${t.kind}${t.tokens}${t.depth > 0 ? ` @ d${t.depth}` : ''}`;
}

/** One test's per-repetition tokens/s, as llama-bench's `samples_ts`. */
export interface TestSamples {
  readonly test: BenchTest;
  readonly samplesTs: readonly number[];
  /** Ours only, decode tests: ONNX Runtime graph runs per decode token. */
  readonly graphRunsPerToken?: number;
}
