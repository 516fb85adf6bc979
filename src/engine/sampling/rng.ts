// Per-request seeded PRNG: xoshiro128** (Blackman & Vigna, https://prng.di.unimi.it/), seeded
// through a splitmix32-style Weyl sequence with the murmur3 finaliser. The whole state is four
// uint32, so a request's RNG crosses worker_threads as plain data (RngState) and resumes exactly.
import { randomFillSync } from 'node:crypto';
import { assert } from '../../common/errors.ts';

/** xoshiro128** state words s0..s3; never all zero. */
export type RngState = readonly [number, number, number, number];

const GOLDEN_GAMMA = 0x9e3779b9;
const TWO_POW_32 = 4294967296;
const TWO_POW_53_INV = 1 / 9007199254740992;

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  private constructor(state: RngState) {
    assert(state.length === 4 && state.every((w) => Number.isInteger(w) && w >= 0 && w < TWO_POW_32), 'RngState must be four uint32');
    assert(
      state.some((w) => w !== 0),
      'xoshiro128** state must not be all zero',
    );
    [this.s0, this.s1, this.s2, this.s3] = state;
  }

  /** Same seed, same stream. Any safe integer (negative too) is a valid seed. */
  static fromSeed(seed: number): Rng {
    return new Rng(seedState(seed));
  }

  /** Unseeded requests: 128 bits from node:crypto. */
  static fromEntropy(): Rng {
    const words = new Uint32Array(4);
    do randomFillSync(words);
    while (words.every((w) => w === 0));
    return new Rng([words[0]!, words[1]!, words[2]!, words[3]!]);
  }

  static fromState(state: RngState): Rng {
    return new Rng(state);
  }

  /** A copy of the state; Rng.fromState(rng.state) continues the same stream. */
  get state(): RngState {
    return [this.s0 >>> 0, this.s1 >>> 0, this.s2 >>> 0, this.s3 >>> 0];
  }

  /** Next uint32 of the xoshiro128** stream. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits (two uint32 draws). */
  nextFloat(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) * TWO_POW_53_INV;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Splits the seed into its low and high 32 bits (two's complement for negatives, so -1 and
 * 2^53 - 1 differ) and expands them into four words: word k mixes the low and high halves
 * through two independent Weyl sequences, so distinct seeds give unrelated streams.
 */
function seedState(seed: number): RngState {
  assert(Number.isSafeInteger(seed), `seed must be a safe integer, got ${seed}`);
  const lo = seed >>> 0;
  const hi = Math.floor(seed / TWO_POW_32) >>> 0;
  const words: number[] = [];
  for (let k = 1; k <= 4; k++) {
    const a = fmix32((lo + Math.imul(k, GOLDEN_GAMMA)) >>> 0);
    const b = fmix32((hi ^ Math.imul(k, 0x6c8e9cf5)) >>> 0);
    words.push((a ^ Math.imul(b, 0x27d4eb2d) ^ rotl(b, 13)) >>> 0);
  }
  if (!words.some((w) => w !== 0)) words[0] = GOLDEN_GAMMA;
  return [words[0]!, words[1]!, words[2]!, words[3]!];
}
