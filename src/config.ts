// Server configuration: the only module that reads process.env and config files.
// Precedence: flags > env > config file > defaults. Each value is validated where it enters, and an
// error names where it came from (flag, env var, or file + key) but never echoes a secret.
import { readFileSync } from 'node:fs';
import { basename, extname, resolve } from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { type AnyOptionSpec, type ConfigKey, type ConfigValues, type NonEmptyList, OPTIONS } from './config_schema.ts';
import { EngineError } from './common/errors.ts';
import type { EngineWorkerData } from './engine/worker/messages.ts';

export { DEFAULT_MODEL_DIR, LOG_LEVELS, OPTIONS, formatByteSize, parseByteSize } from './config_schema.ts';
export type { AnyOptionSpec, ConfigKey, ConfigValues, LogLevel, NonEmptyList, OptionSpec } from './config_schema.ts';

export interface ServerConfig extends Omit<ConfigValues, 'servedModelName'> {
  /** The first name is the one reported. */
  readonly servedModelName: NonEmptyList;
}

/** A bad option value, flag or config file; the message names the source. */
export class ConfigError extends EngineError {
  constructor(message: string) {
    super('DSV_ERR_CONFIG', message);
    this.name = 'ConfigError';
  }
}

/** Thrown by loadConfig for --help / -h: print `usage` and exit 0. */
export class HelpRequested extends Error {
  readonly usage = usageText();
  constructor() {
    super('help requested');
    this.name = 'HelpRequested';
  }
}

/** A validated value and where it came from ("--port", "DSV_PORT", `file: key "port"`, "default"). */
interface Setting {
  readonly value: unknown;
  readonly origin: string;
}
type Layer = Map<ConfigKey, Setting>;

const PROGRAM = 'dsv32-server';
const isSwitch = (spec: AnyOptionSpec): boolean => spec.valueName === null;
const FLAGS = new Map<string, AnyOptionSpec>(OPTIONS.map((spec) => [spec.flag, spec]));
const FLAG_NAMES = [...FLAGS.keys(), ...OPTIONS.filter(isSwitch).map((s) => `no-${s.flag}`), 'help'];
const FILE_OPTIONS = OPTIONS.filter((spec) => spec.inFile);
const FILE_KEYS = new Map<string, AnyOptionSpec>(
  FILE_OPTIONS.flatMap((spec) => [
    [spec.key, spec],
    [spec.flag, spec],
  ]),
);

export function helpRequested(argv: readonly string[] = process.argv.slice(2)): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).some((arg) => arg === '--help' || arg === '-h');
}

/**
 * Reads the server options from flags, env and the config file (--config / DSV_CONFIG).
 * @throws ConfigError naming the bad value's source; HelpRequested for --help.
 */
export function loadConfig(argv: readonly string[] = process.argv.slice(2), env: NodeJS.ProcessEnv = process.env): ServerConfig {
  if (helpRequested(argv)) throw new HelpRequested();
  const fromFlags = readFlags(argv);
  const fromEnv = readEnv(env);
  const file = (fromFlags.get('configFile') ?? fromEnv.get('configFile'))?.value as string | undefined;
  const fromFile: Layer = file === undefined ? new Map() : readConfigFile(file);
  const merged: Layer = new Map(OPTIONS.map((spec) => [spec.key, { value: spec.default, origin: 'default' }]));
  for (const layer of [fromFile, fromEnv, fromFlags]) {
    for (const [key, setting] of layer) merged.set(key, setting);
  }
  checkCrossFields(merged);
  const values = Object.fromEntries([...merged].map(([key, setting]) => [key, setting.value])) as unknown as ConfigValues;
  const model = resolve(values.model);
  const servedModelName = values.servedModelName ?? [basename(model)];
  return deepFreeze({ ...values, model, servedModelName });
}

/**
 * The environment of the engine worker: this process's, with ONNX Runtime's usage telemetry off
 * unless the operator set ORT_DISABLE_TELEMETRY (onnxruntime-node 1.30 otherwise writes a device id
 * and an event database under ~/.cache on Linux).
 */
export function engineWorkerEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, ORT_DISABLE_TELEMETRY: env.ORT_DISABLE_TELEMETRY ?? '1' };
}

/** glibc's tunables this process started with (read once by glibc; see common/huge_pages.ts). */
export function glibcTunables(env: NodeJS.ProcessEnv = process.env): string {
  return env.GLIBC_TUNABLES ?? '';
}

/** A copy safe to log: API keys replaced. */
export function redactConfig(config: ServerConfig): ServerConfig {
  return { ...config, apiKey: config.apiKey && config.apiKey.map(() => '<redacted>') };
}

/** What the engine worker needs; maxModelLen is config.maxModelLen or the checkpoint's limit. */
export function toEngineWorkerData(config: ServerConfig, maxModelLen: number): EngineWorkerData {
  if (!Number.isSafeInteger(maxModelLen) || maxModelLen < 1) {
    throw new ConfigError(`max-model-len: expected a positive integer, got ${show(maxModelLen)}`);
  }
  return {
    modelDir: config.model,
    engine: {
      runner: {
        blockSize: config.blockSize,
        kvCacheMemory: config.kvCacheMemory,
        ...(config.numKvBlocks !== null && { numKvBlocks: config.numKvBlocks }),
        denseAttention: config.denseAttention,
        kvCacheDtype: config.kvCacheDtype,
        numThreads: config.threads,
        nativeKernels: config.nativeKernels,
        quantization: config.quantization,
        quantizedWeightsDir: config.quantizedWeightsDir === null ? null : resolve(config.quantizedWeightsDir),
      },
      scheduler: {
        maxNumSeqs: config.maxNumSeqs,
        maxNumBatchedTokens: config.maxNumBatchedTokens,
        longPrefillTokenThreshold: config.longPrefillTokenThreshold,
        maxModelLen,
        maxQueuedRequests: config.maxQueuedRequests,
        maxQueuedTokens: config.maxQueuedTokens,
      },
      enablePrefixCaching: config.enablePrefixCaching,
      speculative: config.speculativeConfig,
    },
  };
}

function readFlags(argv: readonly string[]): Layer {
  const layer: Layer = new Map();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!; // i < argv.length (a value flag advances i only after checking argv[i + 1])
    if (/^-[A-Za-z]/.test(arg)) throw unknownFlag(arg.slice(1), arg);
    if (!arg.startsWith('--') || arg === '--') throw unexpectedArgument(argv, i);
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    const inline = eq < 0 ? undefined : arg.slice(eq + 1);
    const negated = !FLAGS.has(name) && name.startsWith('no-') && FLAGS.get(name.slice(3))?.valueName === null;
    const spec = FLAGS.get(negated ? name.slice(3) : name);
    if (spec === undefined) throw unknownFlag(name, `--${name}`);
    const origin = `--${name}`;
    let raw: unknown = inline;
    if (isSwitch(spec)) {
      if (negated && inline !== undefined) throw new ConfigError(`${origin}: takes no value`);
      raw ??= !negated;
    } else if (inline === undefined) {
      raw = argv[i + 1];
      if (raw === undefined || (raw as string).startsWith('--')) throw new ConfigError(`${origin}: expected a value (${spec.valueName})`);
      i++;
    }
    addSetting(layer, spec, readValue(spec, raw, origin), origin);
  }
  return layer;
}

/** Repeated list flags accumulate; any other repeated flag keeps its last value. */
function addSetting(layer: Layer, spec: AnyOptionSpec, value: unknown, origin: string): void {
  const previous = layer.get(spec.key);
  const isList = spec.codec.type === 'list' && Array.isArray(previous?.value) && Array.isArray(value);
  layer.set(spec.key, { value: isList ? [...(previous!.value as string[]), ...value] : value, origin });
}

function readEnv(env: NodeJS.ProcessEnv): Layer {
  const layer: Layer = new Map();
  for (const spec of OPTIONS) {
    // An empty variable counts as unset, as compose files often pass `${VAR:-}`.
    const name = spec.env.find((n) => env[n] !== undefined && env[n] !== '');
    if (name !== undefined) layer.set(spec.key, { value: readValue(spec, env[name], name), origin: name });
  }
  return layer;
}

function readConfigFile(file: string): Layer {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read the config file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const data = parseDocument(file, text);
  const layer: Layer = new Map();
  if (data === null || data === undefined) return layer;
  if (typeof data !== 'object' || Array.isArray(data)) throw new ConfigError(`${file}: expected a mapping of option keys to values`);
  const seen = new Map<ConfigKey, string>();
  for (const [key, raw] of Object.entries(data)) {
    const spec = FILE_KEYS.get(key);
    if (spec === undefined) throw unknownFileKey(file, key);
    if (seen.has(spec.key)) throw new ConfigError(`${file}: keys "${seen.get(spec.key)}" and "${key}" set the same option`);
    seen.set(spec.key, key);
    // A key without a value (YAML `key:` or null) leaves the option unset.
    if (raw === null) continue;
    const origin = `${file}: key "${key}"`;
    layer.set(spec.key, { value: readValue(spec, raw, origin), origin });
  }
  return layer;
}

/** Parse errors carry line and column but never the text: the file may hold API keys. */
function parseDocument(file: string, text: string): unknown {
  if (extname(file).toLowerCase() === '.json') {
    try {
      return JSON.parse(text);
    } catch {
      throw new ConfigError(`${file}: invalid JSON`);
    }
  }
  try {
    return parseYaml(text, { logLevel: 'error' });
  } catch (err) {
    if (!(err instanceof YAMLParseError)) throw new ConfigError(`${file}: invalid YAML`);
    const at = err.linePos ? ` at line ${err.linePos[0].line}, column ${err.linePos[0].col}` : '';
    throw new ConfigError(`${file}: invalid YAML (${err.code})${at}`);
  }
}

function readValue(spec: AnyOptionSpec, raw: unknown, origin: string): unknown {
  const candidate = typeof raw === 'string' ? spec.codec.fromText(raw) : raw;
  const result = spec.codec.schema.safeParse(candidate);
  if (result.success) return result.data;
  const reason = spec.codec.explains
    ? ` (${result.error.issues.map((i) => (i.path.length > 0 && !i.message.includes(String(i.path[0])) ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ')})`
    : '';
  throw new ConfigError(`${origin}: expected ${spec.codec.expected}${spec.secret ? '' : `, got ${show(raw)}`}${reason}`);
}

function checkCrossFields(merged: Layer): void {
  const threshold = merged.get('longPrefillTokenThreshold')!;
  const budget = merged.get('maxNumBatchedTokens')!;
  if (threshold.value !== 0 && (threshold.value as number) > (budget.value as number)) {
    const from = budget.origin === 'default' ? 'the default' : `from ${budget.origin}`;
    throw new ConfigError(
      `${threshold.origin}: ${threshold.value} exceeds max-num-batched-tokens = ${budget.value} (${from}); use 0 (off) or at most ${budget.value}`,
    );
  }
}

function unknownFlag(name: string, shown: string): ConfigError {
  const match = closest(name.replace(/_/g, '-').toLowerCase(), FLAG_NAMES);
  return new ConfigError(`unknown flag ${shown.split('=')[0]}${match === null ? '' : ` (did you mean --${match}?)`}; see --help`);
}

function unexpectedArgument(argv: readonly string[], i: number): ConfigError {
  // The stray word may be (part of) an API key: echo it only when no secret flag was given.
  const hasSecret = argv.some((arg) => OPTIONS.some((s) => s.secret && arg.startsWith(`--${s.flag}`)));
  const what = hasSecret || argv[i] === '--' ? 'argument' : `argument ${show(argv[i])}`;
  return new ConfigError(`unexpected ${what}: every value follows its flag (e.g. --model DIR), and lists are comma-separated or repeated flags`);
}

function unknownFileKey(file: string, key: string): ConfigError {
  if (key === 'config' || key === 'configFile') return new ConfigError(`${file}: key "${key}": a config file cannot name another one`);
  const kebabStyle = /[-_]/.test(key);
  const candidates = FILE_OPTIONS.map((spec) => (kebabStyle ? spec.flag : spec.key));
  const normalized = kebabStyle ? key.replace(/_/g, '-').toLowerCase() : key;
  const match = closest(normalized, candidates);
  return new ConfigError(`${file}: unknown key ${show(key)}${match === null ? '' : ` (did you mean "${match}"?)`}`);
}

/** The nearest candidate by case-insensitive edit distance, if near enough to be a typo. */
function closest(input: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(input.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return bestDistance <= Math.max(2, Math.floor(input.length / 4)) ? best : null;
}

function editDistance(a: string, b: string): number {
  // Invariant: row and next hold b.length + 1 entries (next is filled left to right before use).
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length]!;
}

function show(value: unknown): string {
  const text = value === undefined ? 'nothing' : (JSON.stringify(value) ?? String(value));
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function deepFreeze<T extends object>(config: T): T {
  for (const value of Object.values(config)) {
    if (Array.isArray(value)) Object.freeze(value);
  }
  return Object.freeze(config);
}

// ---- Docs: --help and the README's table come from the same option table.

function flagSyntax(spec: AnyOptionSpec): string {
  return isSwitch(spec) ? `--[no-]${spec.flag}` : `--${spec.flag} ${spec.valueName}`;
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  return [...lines, line];
}

export function usageText(program = PROGRAM): string {
  const column = 38;
  const pad = ' '.repeat(column);
  const lines = [
    `Usage: ${program} [options]`,
    '',
    'OpenAI-compatible inference server for DeepSeek-V3.2-architecture models.',
    ...wrap('Precedence: flags > environment > config file (--config) > defaults. An empty environment variable counts as unset.', 100),
    '',
    'Options:',
  ];
  for (const spec of OPTIONS) {
    const head = `  ${flagSyntax(spec)}`;
    const body = wrap(spec.help, 100 - column);
    const env = `[env ${spec.env.join(', ')}; default ${spec.defaultText}]`;
    lines.push(head.length < column ? head.padEnd(column) + body[0] : head, ...(head.length < column ? body.slice(1) : body).map((l) => pad + l));
    lines.push(...wrap(env, 100 - column).map((l) => pad + l));
  }
  lines.push(`${'  -h, --help'.padEnd(column)}Show this help and exit.`);
  return `${lines.join('\n')}\n`;
}

export function optionsMarkdownTable(): string {
  const cell = (text: string): string => text.replace(/\|/g, '\\|');
  const rows = OPTIONS.map((spec) => {
    const flag = isSwitch(spec) ? `\`--${spec.flag}\`, \`--no-${spec.flag}\`` : `\`--${spec.flag} ${spec.valueName}\``;
    const env = spec.env.map((e) => `\`${e}\``).join(', ');
    const key = spec.inFile ? `\`${spec.key}\`` : '—';
    return `| ${cell(flag)} | ${env} | ${key} | ${cell(spec.defaultText)} | ${cell(spec.help)} |`;
  });
  return ['| Flag | Env | Config key | Default | Description |', '| --- | --- | --- | --- | --- |', ...rows].join('\n') + '\n';
}
