// llama.cpp's own llama-bench as the single-stream peer: one invocation per round and configuration,
// `-r` repetitions inside it, results read from its JSON output (validated with zod at this edge).
import { spawn } from 'node:child_process';
import { peerEnv } from '../server_process.ts';
import { z } from 'zod';
import type { BenchTest, TestSamples } from './bench_test.ts';

/** The peer's configurations on the same F32 weights: as shipped, and like-for-like with our F32 cache. */
export interface PeerConfig {
  readonly id: string;
  readonly label: string;
  /** Extra llama-bench arguments (the same cache / attention flags llama-server takes). */
  readonly benchArgs: readonly string[];
  readonly serverArgs: readonly string[];
}

export const PEER_CONFIGS: readonly PeerConfig[] = [
  { id: 'default', label: 'llama.cpp defaults (f16 cache, flash attn auto)', benchArgs: [], serverArgs: [] },
  {
    id: 'f32',
    label: 'llama.cpp F32 cache, no flash attn',
    benchArgs: ['-ctk', 'f32', '-ctv', 'f32', '-fa', 'off'],
    serverArgs: ['--cache-type-k', 'f32', '--cache-type-v', 'f32', '--flash-attn', 'off'],
  },
];

const Row = z
  .object({
    n_prompt: z.number().int(),
    n_gen: z.number().int(),
    n_depth: z.number().int(),
    n_threads: z.number().int(),
    type_k: z.string(),
    type_v: z.string(),
    flash_attn: z.number().int(),
    build_commit: z.string(),
    samples_ts: z.array(z.number().positive()).min(1),
  })
  .passthrough();
export type LlamaBenchRow = z.infer<typeof Row>;

export function parseLlamaBenchJson(text: string): LlamaBenchRow[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`llama-bench printed no JSON (${err instanceof Error ? err.message : String(err)}): ${text.slice(0, 300)}`);
  }
  const res = z.array(Row).min(1).safeParse(json);
  if (!res.success) throw new Error(`llama-bench JSON is not the expected shape: ${res.error.message.slice(0, 500)}`);
  return res.data;
}

/** The row's test in llama-bench's terms (a row is pp when n_gen is 0, tg when n_prompt is 0). */
export function rowTest(row: LlamaBenchRow): BenchTest {
  if (row.n_gen === 0) return { kind: 'pp', tokens: row.n_prompt, depth: row.n_depth };
  if (row.n_prompt === 0) return { kind: 'tg', tokens: row.n_gen, depth: row.n_depth };
  throw new Error(`llama-bench row mixes prompt ${row.n_prompt} and gen ${row.n_gen} (-pg): not used by this bench`);
}

export function llamaBenchArgs(
  gguf: string,
  prompt: number,
  gen: number,
  depths: readonly number[],
  threads: number,
  reps: number,
  config: PeerConfig,
): string[] {
  return [
    '-m',
    gguf,
    '-p',
    String(prompt),
    '-n',
    String(gen),
    '-d',
    depths.join(','),
    '-t',
    String(threads),
    '-r',
    String(reps),
    '-o',
    'json',
    ...config.benchArgs,
  ];
}

/** Runs llama-bench (asynchronously, so the load monitor keeps sampling) and returns each test's samples. */
export function runLlamaBench(binary: string, args: readonly string[]): Promise<TestSamples[]> {
  return new Promise((resolve, reject) => {
    const proc = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], env: peerEnv() });
    let out = '';
    let err = '';
    proc.stdout.on('data', (b: Buffer) => void (out += b.toString('utf8')));
    proc.stderr.on('data', (b: Buffer) => void (err = (err + b.toString('utf8')).slice(-4000)));
    proc.once('error', reject);
    proc.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`llama-bench ${args.join(' ')} exited ${String(code)}:\n${err.trim().split('\n').slice(-10).join('\n')}`));
      try {
        resolve(parseLlamaBenchJson(out).map((row) => ({ test: rowTest(row), samplesTs: row.samples_ts })));
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  });
}
