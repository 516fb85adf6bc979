// The server's option table: one row per option, read by the flag, env and config-file parsers
// in config.ts, by --help and by the README's table. Adding an option means adding a row here
// and a field to ConfigValues; the mapped type below fails to compile if either is missing.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { QUANTIZATION_MODES, type QuantizationMode } from './engine/quant/quant_mode.ts';
import { NATIVE_KERNELS_MODES, type NativeKernelsMode } from './engine/native/native_kernels.ts';
import { KV_CACHE_DTYPE_CHOICES, type KVCacheDtypeChoice } from './kvcache/kv_dtype.ts';
import {
  DEFAULT_DISABLE_BY_BATCH_SIZE,
  MAX_SPECULATIVE_TOKENS,
  speculativeConfigSchema,
  type SpeculativeConfig,
} from './engine/speculative/speculative_config.ts';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The package root: the nearest directory holding package.json (src/ from sources, dist/src/ when built). */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}

/** The embedded default model, `models/default` at the repo root. */
export const DEFAULT_MODEL_DIR = path.join(packageRoot(), 'models', 'default');

/** What the option table produces; ServerConfig resolves the derived defaults. */
export interface ConfigValues {
  /** Model directory (absolute once loaded). */
  readonly model: string;
  readonly host: string;
  readonly port: number;
  /** null = the basename of the model directory. */
  readonly servedModelName: NonEmptyList | null;
  /** null = the checkpoint's max_position_embeddings (resolved by the caller). */
  readonly maxModelLen: number | null;
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  /** 0 = off: only the step's token budget limits a prefill chunk. */
  readonly longPrefillTokenThreshold: number;
  readonly blockSize: number;
  /** Bytes. */
  readonly kvCacheMemory: number;
  /** null = as many as fit in kvCacheMemory. */
  readonly numKvBlocks: number | null;
  readonly enablePrefixCaching: boolean;
  readonly kvCacheDtype: KVCacheDtypeChoice;
  /** null = no authentication. Never log these. */
  readonly apiKey: readonly string[] | null;
  readonly maxQueuedRequests: number;
  readonly maxQueuedTokens: number;
  readonly denseAttention: boolean;
  readonly quantization: QuantizationMode;
  /** null = no cache: quantise on every start. */
  readonly quantizedWeightsDir: string | null;
  /** null = no speculative decoding. */
  readonly speculativeConfig: SpeculativeConfig | null;
  readonly nativeKernels: NativeKernelsMode;
  readonly threads: number;
  readonly logLevel: LogLevel;
  /** Bytes. */
  readonly maxRequestBody: number;
  /** Seconds to receive one request's headers and body; 0 = no limit. */
  readonly requestTimeout: number;
  /** Open connections beyond this are refused with 503; null = auto (from the open-file limit). */
  readonly maxConnections: number | null;
  /** Seconds. */
  readonly drainTimeout: number;
  /** Seconds. */
  readonly streamWriteTimeout: number;
  readonly maxLogprobs: number;
  /** The config file as given on the command line or in DSV_CONFIG. */
  readonly configFile: string | null;
}

export type ConfigKey = keyof ConfigValues;

/** How one kind of value is read from text (flags, env, strings in a file) and validated. */
/** A list option's value: at least one entry (the codec rejects an empty list). */
export type NonEmptyList = readonly [string, ...string[]];

export interface Codec<T> {
  /** Short type name for the docs. */
  readonly type: string;
  /** Completes "expected ..., got ..." in error messages. */
  readonly expected: string;
  /** Error messages also give the schema's reason (values with several ways to be wrong, e.g. JSON objects). */
  readonly explains?: boolean;
  /** Text to a candidate value; returns the text itself when it cannot be read, for the schema to reject. */
  readonly fromText: (text: string) => unknown;
  readonly schema: z.ZodType<T>;
}

export interface OptionSpec<K extends ConfigKey = ConfigKey> {
  readonly key: K;
  /** Flag name without the leading dashes. */
  readonly flag: string;
  /** Environment variables, highest precedence first. */
  readonly env: readonly string[];
  /** Placeholder in the usage text; null for boolean switches. */
  readonly valueName: string | null;
  readonly codec: Codec<ConfigValues[K]>;
  readonly default: ConfigValues[K];
  readonly defaultText: string;
  readonly help: string;
  /** Never echoed in errors, usage or logs. */
  readonly secret: boolean;
  /** Accepted as a config-file key. */
  readonly inFile: boolean;
}

export type AnyOptionSpec = { [K in ConfigKey]: OptionSpec<K> }[ConfigKey];

const BYTE_UNITS = {
  '': 1,
  k: 1e3,
  m: 1e6,
  g: 1e9,
  t: 1e12,
  ki: 2 ** 10,
  mi: 2 ** 20,
  gi: 2 ** 30,
  ti: 2 ** 40,
};

/**
 * "512MiB", "2GiB", "1G", "100M", "64k", "4096", "4096B": K/M/G/T are powers of 1000, Ki/Mi/Gi/Ti
 * of 1024, a trailing B is optional, case is ignored. Returns null for anything else.
 */
export function parseByteSize(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?$/i.exec(text.trim());
  if (!m) return null;
  const [, digits = '', unitText = ''] = m;
  const unit = unitText.toLowerCase() as keyof typeof BYTE_UNITS; // the pattern admits only these units
  if (unit === '' && digits.includes('.')) return null;
  const bytes = Math.round(Number(digits) * BYTE_UNITS[unit]);
  return Number.isSafeInteger(bytes) ? bytes : null;
}

/** 1073741824 → "1GiB"; sizes that are not a whole number of a binary unit stay in bytes. */
export function formatByteSize(bytes: number): string {
  for (const [unit, scale] of [
    ['Ti', BYTE_UNITS.ti],
    ['Gi', BYTE_UNITS.gi],
    ['Mi', BYTE_UNITS.mi],
    ['Ki', BYTE_UNITS.ki],
  ] as const) {
    if (bytes >= scale && bytes % scale === 0) return `${bytes / scale}${unit}B`;
  }
  return String(bytes);
}

const intText = (text: string): unknown => (/^\s*[+-]?\d+\s*$/.test(text) ? Number(text) : text);
const safeInt = z.number().int().max(Number.MAX_SAFE_INTEGER);

function intCodec(min: 0 | 1): Codec<number> {
  return {
    type: 'integer',
    expected: min === 1 ? 'a positive integer' : 'a non-negative integer',
    fromText: intText,
    schema: safeInt.min(min),
  };
}

const positiveInt = intCodec(1);
const nonNegativeInt = intCodec(0);

const optionalPositiveInt: Codec<number | null> = {
  type: 'integer',
  expected: 'a positive integer or "auto"',
  fromText: (text) => (text.trim().toLowerCase() === 'auto' ? null : intText(text)),
  schema: safeInt.min(1).nullable(),
};

const port: Codec<number> = {
  type: 'integer',
  expected: 'an integer 0-65535',
  fromText: intText,
  schema: safeInt.min(0).max(65535),
};

const byteSize: Codec<number> = {
  type: 'bytes',
  expected: 'a positive byte size such as 4096, 512MiB, 2GiB or 1G',
  fromText: (text) => parseByteSize(text) ?? text,
  schema: safeInt.min(1),
};

const seconds: Codec<number> = {
  type: 'seconds',
  expected: 'a non-negative number of seconds',
  fromText: (text) => (/^\s*\d+(\.\d+)?\s*$/.test(text) ? Number(text) : text),
  schema: z.number().finite().nonnegative(),
};

const BOOLEAN_TEXT: Record<string, boolean> = { true: true, '1': true, false: false, '0': false };

const boolean: Codec<boolean> = {
  type: 'boolean',
  expected: 'true, false, 1 or 0',
  fromText: (text) => BOOLEAN_TEXT[text.trim().toLowerCase()] ?? text,
  schema: z.boolean(),
};

const nonEmptyString: Codec<string> = {
  type: 'string',
  expected: 'a non-empty string',
  fromText: (text) => text,
  schema: z.string().trim().min(1),
};

const optionalString: Codec<string | null> = { ...nonEmptyString, schema: nonEmptyString.schema.nullable() };

function listCodec(expected: string): Codec<NonEmptyList | null> {
  const item = z.string().trim().min(1);
  return {
    type: 'list',
    expected,
    fromText: (text) => text.split(',').map((s) => s.trim()),
    schema: z.tuple([item], item).readonly().nullable(),
  };
}

const logLevel: Codec<LogLevel> = {
  type: 'enum',
  expected: `one of ${LOG_LEVELS.join(', ')}`,
  fromText: (text) => text.trim().toLowerCase(),
  schema: z.enum(LOG_LEVELS),
};

const kvCacheDtype: Codec<KVCacheDtypeChoice> = {
  type: 'enum',
  expected: `one of ${KV_CACHE_DTYPE_CHOICES.join(', ')}`,
  fromText: (text) => text.trim().toLowerCase(),
  schema: z.enum(KV_CACHE_DTYPE_CHOICES),
};

const quantization: Codec<QuantizationMode> = {
  type: 'enum',
  expected: `one of ${QUANTIZATION_MODES.join(', ')}`,
  fromText: (text) => text.trim().toLowerCase(),
  schema: z.enum(QUANTIZATION_MODES),
};

const nativeKernels: Codec<NativeKernelsMode> = {
  type: 'enum',
  expected: `one of ${NATIVE_KERNELS_MODES.join(', ')}`,
  fromText: (text) => text.trim().toLowerCase(),
  schema: z.enum(NATIVE_KERNELS_MODES),
};

const speculativeConfig: Codec<SpeculativeConfig | null> = {
  type: 'json',
  expected: `a JSON object {"method": "mtp", "num_speculative_tokens": 1-${MAX_SPECULATIVE_TOKENS}} (optional "disable_by_batch_size")`,
  explains: true,
  fromText: (text) => {
    if (text.trim().toLowerCase() === 'none') return null;
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  },
  schema: speculativeConfigSchema.nullable(),
};

const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const envName = (flag: string): string => `DSV_${flag.toUpperCase().replace(/-/g, '_')}`;

interface Row<K extends ConfigKey> {
  readonly valueName: string | null;
  readonly codec: Codec<ConfigValues[K]>;
  readonly default: ConfigValues[K];
  readonly defaultText?: string;
  readonly help: string;
  readonly flag?: string;
  readonly extraEnv?: readonly string[];
  readonly secret?: boolean;
  readonly inFile?: boolean;
}

function row<K extends ConfigKey>(key: K, r: Row<K>): OptionSpec<K> {
  const flag = r.flag ?? kebab(key);
  return Object.freeze({
    key,
    flag,
    env: Object.freeze([envName(flag), ...(r.extraEnv ?? [])]),
    valueName: r.valueName,
    codec: r.codec,
    default: r.default,
    defaultText: r.defaultText ?? String(r.default),
    help: r.help,
    secret: r.secret ?? false,
    inFile: r.inFile ?? true,
  });
}

const TABLE: { readonly [K in ConfigKey]: OptionSpec<K> } = {
  model: row('model', {
    valueName: 'DIR',
    codec: nonEmptyString,
    default: DEFAULT_MODEL_DIR,
    defaultText: 'models/default (in the repo)',
    help: 'Model directory: config.json, tokenizer and safetensors checkpoint. Relative paths are resolved against the working directory.',
  }),
  host: row('host', { valueName: 'HOST', codec: nonEmptyString, default: '127.0.0.1', help: 'Address to listen on.' }),
  port: row('port', { valueName: 'PORT', codec: port, default: 8000, help: 'Port to listen on; 0 picks a free one.' }),
  servedModelName: row('servedModelName', {
    valueName: 'NAME[,NAME...]',
    codec: listCodec('one or more non-empty names, comma-separated'),
    default: null,
    defaultText: 'basename of --model',
    help: 'Model names the API answers to (comma-separated or repeated); the first is reported by /v1/models and in responses.',
  }),
  maxModelLen: row('maxModelLen', {
    valueName: 'N',
    codec: optionalPositiveInt,
    default: null,
    defaultText: "the model's max_position_embeddings",
    help: 'Context length limit (prompt + output tokens); "auto" = the checkpoint\'s.',
  }),
  maxNumSeqs: row('maxNumSeqs', { valueName: 'N', codec: positiveInt, default: 64, help: 'Most sequences running in one step.' }),
  maxNumBatchedTokens: row('maxNumBatchedTokens', {
    valueName: 'N',
    codec: positiveInt,
    default: 2048,
    help: 'Token budget of one step (decode tokens plus prefill chunks).',
  }),
  longPrefillTokenThreshold: row('longPrefillTokenThreshold', {
    valueName: 'N',
    codec: nonNegativeInt,
    default: 0,
    defaultText: '0 (off)',
    help: 'Cap on one prefill chunk, so long prompts share steps with others; at most --max-num-batched-tokens.',
  }),
  blockSize: row('blockSize', { valueName: 'N', codec: positiveInt, default: 64, help: 'Tokens per KV cache block.' }),
  kvCacheMemory: row('kvCacheMemory', {
    valueName: 'BYTES',
    codec: byteSize,
    default: 2 ** 30,
    defaultText: '1GiB',
    help: 'KV cache budget (latent + indexer caches of all layers); suffixes K/M/G (1000) and KiB/MiB/GiB (1024).',
  }),
  numKvBlocks: row('numKvBlocks', {
    valueName: 'N',
    codec: optionalPositiveInt,
    default: null,
    defaultText: 'from --kv-cache-memory',
    help: 'Number of KV cache blocks; wins over --kv-cache-memory.',
  }),
  enablePrefixCaching: row('enablePrefixCaching', {
    valueName: null,
    codec: boolean,
    default: true,
    help: 'Reuse the KV blocks of shared prompt prefixes (--no-enable-prefix-caching turns it off).',
  }),
  kvCacheDtype: row('kvCacheDtype', {
    valueName: 'DTYPE',
    codec: kvCacheDtype,
    default: 'auto',
    help: "Element type of the latent and indexer caches: float32, bfloat16 (2 bytes per value) or fp8 (DeepSeek-V3.2 layout: e4m3 latent with one float32 scale per 128 values and bf16 RoPE dims; Hadamard-rotated e4m3 indexer keys with one scale per token). auto = float32, the fastest on ONNX Runtime's CPU provider; bfloat16 and fp8 hold 2x and 3.56x the tokens for a slower decode.",
  }),
  apiKey: row('apiKey', {
    valueName: 'KEY[,KEY...]',
    codec: listCodec('one or more non-empty keys, comma-separated'),
    default: null,
    defaultText: 'none (no auth)',
    extraEnv: ['VLLM_API_KEY'],
    secret: true,
    help: 'Require "Authorization: Bearer KEY" on /v1 routes; several keys may be given. Prefer the env var: flags show in ps.',
  }),
  maxQueuedRequests: row('maxQueuedRequests', { valueName: 'N', codec: positiveInt, default: 256, help: 'Waiting requests beyond this are refused with 429.' }),
  maxQueuedTokens: row('maxQueuedTokens', {
    valueName: 'N',
    codec: positiveInt,
    default: 1048576,
    help: 'Waiting prompt tokens beyond this are refused with 429.',
  }),
  denseAttention: row('denseAttention', {
    valueName: null,
    codec: boolean,
    default: false,
    help: 'Ignore the DSA indexer and attend to every token (A/B switch).',
  }),
  quantization: row('quantization', {
    valueName: 'MODE',
    codec: quantization,
    default: 'none',
    defaultText: 'none (float32)',
    help:
      'Weight-only quantisation at load time: int8 or int4 (symmetric, blocks of 32 along the input) for every linear layer, ' +
      'float16 rows for the embedding; router gates and norms stay float32. none keeps float32 weights.',
  }),
  quantizedWeightsDir: row('quantizedWeightsDir', {
    valueName: 'DIR',
    codec: optionalString,
    default: null,
    defaultText: 'none (quantise on every start)',
    help:
      'Cache of quantised weights, keyed by the checkpoint and the mode: the next start reads it instead of quantising. ' +
      'Stale or corrupt files are rebuilt; an unwritable folder only disables the cache.',
  }),
  speculativeConfig: row('speculativeConfig', {
    valueName: 'JSON',
    codec: speculativeConfig,
    default: null,
    defaultText: 'none (off)',
    help:
      "Speculative decoding with the checkpoint's MTP module (DeepSeek multi-token prediction; vLLM's flag): " +
      `{"method": "mtp", "num_speculative_tokens": k} drafts k tokens per step (1-${MAX_SPECULATIVE_TOKENS}) and verifies them in the next; ` +
      `greedy output is unchanged and sampling keeps the model's distribution (rejection sampling). "disable_by_batch_size" (default ${DEFAULT_DISABLE_BY_BATCH_SIZE}): ` +
      'no drafts in steps with more running requests. Requests with a grammar (structured outputs, forced tool calls) do not speculate.',
  }),
  nativeKernels: row('nativeKernels', {
    valueName: 'MODE',
    codec: nativeKernels,
    default: 'auto',
    help:
      'Steps of up to 16 rows (decode batches) of float32, int8 or int4 layers through C kernels, and the routed experts of quantised models in every step ' +
      '(src/native, compiled with gcc on first start into ~/.cache/dsv32-server): ' +
      'auto uses them when they build and says why not otherwise, on refuses to start without them, off runs every step through ONNX Runtime.',
  }),
  threads: row('threads', {
    valueName: 'N',
    codec: positiveInt,
    default: 2,
    help: "Intra-op threads of each ONNX Runtime session, and of the native kernels' pool.",
  }),
  logLevel: row('logLevel', { valueName: 'LEVEL', codec: logLevel, default: 'info', help: `Log level: ${LOG_LEVELS.join(', ')}.` }),
  maxRequestBody: row('maxRequestBody', {
    valueName: 'BYTES',
    codec: byteSize,
    default: 32 * 2 ** 20,
    defaultText: '32MiB',
    help: 'Largest accepted request body.',
  }),
  requestTimeout: row('requestTimeout', {
    valueName: 'SECONDS',
    codec: seconds,
    default: 30,
    help: 'Longest time to receive one request, headers and body; a slower client gets 408 and its connection is closed. 0 = no limit.',
  }),
  maxConnections: row('maxConnections', {
    valueName: 'N',
    codec: optionalPositiveInt,
    default: null,
    defaultText: 'auto: the open-file limit - 128, at most 4096',
    help: 'Most open client connections; a connection beyond them gets 503 with Retry-After and is closed.',
  }),
  drainTimeout: row('drainTimeout', {
    valueName: 'SECONDS',
    codec: seconds,
    default: 30,
    help: 'On SIGTERM, how long running requests may finish before the server stops.',
  }),
  streamWriteTimeout: row('streamWriteTimeout', {
    valueName: 'SECONDS',
    codec: seconds,
    default: 30,
    help: 'A streamed response whose client reads nothing for this long (its socket stays full) is aborted and its KV blocks freed.',
  }),
  maxLogprobs: row('maxLogprobs', { valueName: 'N', codec: nonNegativeInt, default: 20, help: 'Largest logprobs / top_logprobs a request may ask for.' }),
  configFile: row('configFile', {
    valueName: 'FILE',
    codec: optionalString,
    default: null,
    defaultText: 'none',
    flag: 'config',
    inFile: false,
    help: 'JSON or YAML file of options; keys are the flag names in camelCase or kebab-case.',
  }),
};

/** Every option, in usage-text order. */
export const OPTIONS: readonly AnyOptionSpec[] = Object.freeze(Object.values(TABLE));

/** Default values of every option, as the table gives them (derived defaults still null). */
export function defaultValues(): ConfigValues {
  const values: Record<string, unknown> = {};
  for (const spec of OPTIONS) values[spec.key] = spec.default;
  return values as unknown as ConfigValues;
}
