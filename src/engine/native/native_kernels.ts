// The native decode kernels (src/native/decode_layer.c): compiled on first use by the machine's gcc
// against node's own headers (-O3 -march=native: the binary is for this CPU only), cached by a hash of
// the source, the flags, the compiler, the node ABI and the CPU, and loaded as a Node-API addon.
// Nothing is built at `npm ci` (.npmrc: ignore-scripts); a machine without gcc or node's headers runs
// every step through ONNX Runtime, with one log line saying why.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** --native-kernels: auto = use them when they build, on = refuse to start without them, off = never. */
export const NATIVE_KERNELS_MODES = ['auto', 'on', 'off'] as const;
export type NativeKernelsMode = (typeof NATIVE_KERNELS_MODES)[number];

/** A block-quantised weight repacked for the kernels (packQuantized; src/native/quant_gemm.h): C memory, freed with the handle. */
export type NativeQuantizedWeight = object & { readonly __nativeQuantizedWeight: never };

/** A linear layer's weight as the kernels take it. */
export type NativeLinear = Float32Array | NativeQuantizedWeight;

/** The addon's functions (argument layouts in decode_layer.c). */
export interface NativeDecodeKernels {
  createLayer(
    dims: Int32Array,
    eps: Float64Array,
    tensors: readonly (NativeLinear | null)[],
    expertGateUp: readonly NativeLinear[],
    expertDown: readonly NativeLinear[],
  ): object;
  /**
   * A copy of a MatMulNBits-layout weight (common/quantized.ts) in the kernels' panels. groupRows: rows per
   * group that reads its own `cols` inputs (the per-head W_UK / W_UV); `rows` for a plain matrix.
   */
  packQuantized(bits: 4 | 8, rows: number, cols: number, groupRows: number, packed: Uint8Array, scales: Float32Array): NativeQuantizedWeight;
  /** malloc_trim(0): hands glibc's free heap memory back to the system (after each loaded quantised layer). */
  trimMemory(): boolean;
  /** Bytes of the packed copy (float16 scales when every scale is exactly one, else float32). */
  quantizedWeightBytes(w: NativeQuantizedWeight): number;
  /** y [M, rows] = W x per group, x [M, groups * cols], M <= 16 (tests and probes). */
  quantizedMatmul(w: NativeQuantizedWeight, x: Float32Array, y: Float32Array): void;
  /** One layer's pre-attention graph over M <= 16 rows (h [M, D]; every other array M rows of its shape). */
  pre(
    layer: object,
    h: Float32Array,
    cos: Float32Array,
    sin: Float32Array,
    icos: Float32Array | null,
    isin: Float32Array | null,
    q: Float32Array,
    kv: Float32Array,
    iq: Float32Array | null,
    ik: Float32Array | null,
    iw: Float32Array | null,
  ): void;
  /** The post-attention graph over M <= 16 rows (h [M, D], o [M, H, L]; router [M, E]). */
  post(layer: object, h: Float32Array, o: Float32Array, hOut: Float32Array, x2: Float32Array | null, router: Float32Array | null): void;
  /** h[m] += the routed experts of row m (ids, weights [M, k]); each expert runs once over the rows that picked it. */
  experts(layer: object, x2: Float32Array, h: Float32Array, ids: Int32Array, weights: Float32Array): void;
  setThreads(threads: number, spinIterations?: number): void;
  /** MLA 5 for one query row q [H, C] over the latent rows at `slots` of pool [P, C] (float32, or bf16 bits): o [H, L]. */
  attend(q: Float32Array, pool: Float32Array | Uint16Array, slots: Int32Array, o: Float32Array, kvLoraRank: number): void;
  /**
   * DSA decode of one query row at position T - 1 over float32 or bfloat16 (Uint16Array of bits) pools: indexer scores of the keys at slots [T]
   * (positions 0 .. T - 1), the sel.length best kept (ties to the lower position; sel gets them ascending),
   * MLA 5 over their latent rows into o [H, L].
   */
  dsaDecode(
    q: Float32Array,
    iq: Float32Array,
    iw: Float32Array,
    pool: Float32Array | Uint16Array,
    keys: Float32Array | Uint16Array,
    slots: Int32Array,
    o: Float32Array,
    sel: Int32Array,
    kvLoraRank: number,
  ): void;
  /**
   * MLA 5 of query rows, B sequences with S rows each (decode: S = 1): row b * S + i of q [B * S, H, C] is
   * sequence b's query at position startPos[b] + i and attends every key up to it at slots [B, T] of the pool,
   * or with keys (DSA) and more of them than topk its indexer selection (iq [B * S, Hi, Di], iw [B * S, Hi]);
   * o [B * S, H, L]. sel [B, topk] gets each sequence's last row's kept positions, ascending, then -1.
   */
  attendRows(
    q: Float32Array,
    iq: Float32Array | null,
    iw: Float32Array | null,
    pool: Float32Array | Uint16Array,
    keys: Float32Array | Uint16Array | null,
    slots: Int32Array,
    startPos: Int32Array,
    queryLen: number,
    o: Float32Array,
    sel: Int32Array,
    kvLoraRank: number,
  ): void;
  /** The final RMSNorm and lm_head of M <= 16 rows: h [M, D], norm [D], w [V, D] -> out [M, V]. */
  logits(h: Float32Array, norm: Float32Array, w: NativeLinear, out: Float32Array, eps: number): void;
  /** y = w x, w [y.length, x.length] row-major, on the kernels' pool (tests and probes). */
  gemv(w: Float32Array, x: Float32Array, y: Float32Array): void;
}

// From src/engine/native/ under tsx, from dist/src/engine/native/ when built (tsc does not copy .c files).
const RUNNING_TS = import.meta.url.endsWith('.ts');
const NATIVE_DIR = fileURLToPath(new URL(`${RUNNING_TS ? '../..' : '../../../../src'}/native/`, import.meta.url));
const SOURCE = path.join(NATIVE_DIR, 'decode_layer.c');
/** Every file the build reads (the key of a compiled library covers them all). */
const INPUTS = [SOURCE, path.join(NATIVE_DIR, 'thread_pool.h'), path.join(NATIVE_DIR, 'quant_gemm.h')];
const FLAGS = ['-O3', '-march=native', '-shared', '-fPIC', '-pthread', '-std=c11', '-D_GNU_SOURCE'];
const LIBS = ['-lm', '-ldl'];

/** Where compiled kernels are kept: ~/.cache/dsv32-server/native, or under the temp dir without a writable home. */
export function nativeBuildDirs(): string[] {
  return [path.join(os.homedir(), '.cache', 'dsv32-server', 'native'), path.join(os.tmpdir(), `dsv32-server-native-${os.userInfo().uid}`)];
}

function nodeHeaders(): string | null {
  const candidates = [path.join(path.dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node', '/usr/local/include/node'];
  return candidates.find((d) => existsSync(path.join(d, 'node_api.h'))) ?? null;
}

/** The kernels, or the reason they are not available (no compiler, no headers, a failed build). */
export type NativeLoad = { readonly kernels: NativeDecodeKernels; readonly path: string } | { readonly kernels: null; readonly reason: string };

let loaded: NativeLoad | null = null;

/** Builds (once per source/compiler/ABI) and loads the kernels; never throws. */
export function loadNativeKernels(): NativeLoad {
  if (loaded) return loaded;
  loaded = build();
  return loaded;
}

function build(): NativeLoad {
  const include = nodeHeaders();
  if (include === null) return { kernels: null, reason: "node's headers (node_api.h) not found next to the node binary or in /usr/include/node" };
  const cc = 'gcc';
  const version = spawnSync(cc, ['--version'], { encoding: 'utf8' });
  if (version.status !== 0) return { kernels: null, reason: `no C compiler (${cc} --version failed: ${version.error?.message ?? version.stderr.trim()})` };
  const key = createHash('sha256')
    .update(Buffer.concat(INPUTS.map((f) => readFileSync(f))))
    .update([...FLAGS, ...LIBS].join(' '))
    .update(version.stdout)
    .update(`${process.versions.modules} ${process.arch} ${os.cpus()[0]?.model ?? ''}`)
    .digest('hex')
    .slice(0, 16);
  const errors: string[] = [];
  for (const dir of nativeBuildDirs()) {
    const lib = path.join(dir, `decode_layer-${key}.node`);
    try {
      if (!existsSync(lib)) {
        mkdirSync(dir, { recursive: true });
        const tmp = `${lib}.${process.pid}.tmp`;
        const res = spawnSync(cc, [...FLAGS, `-I${include}`, SOURCE, '-o', tmp, ...LIBS], { encoding: 'utf8' });
        if (res.status !== 0) {
          rmSync(tmp, { force: true });
          return { kernels: null, reason: `${cc} failed on ${SOURCE}: ${(res.stderr || res.error?.message || '').trim().slice(0, 500)}` };
        }
        renameSync(tmp, lib); // atomic: concurrent starts never load a half-written file
      }
      return { kernels: createRequire(import.meta.url)(lib) as NativeDecodeKernels, path: lib };
    } catch (err) {
      errors.push(`${lib}: ${(err as Error).message}`);
    }
  }
  return { kernels: null, reason: `building or loading the kernels: ${errors.join('; ')}` };
}
