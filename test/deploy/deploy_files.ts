// Readers for the deployment files (Dockerfile, docker/**) shared by the test/deploy tests:
// a Dockerfile parser, the PromQL expressions the dashboards/alerts/autoscalers use, and the metric
// names those expressions reference.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DOCKER_DIR = path.join(REPO, 'docker');

/** Every file under docker/, repo-relative, sorted. */
export function dockerFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(path.relative(REPO, p));
    }
  };
  walk(DOCKER_DIR);
  return out.sort();
}

/** Parses a (possibly multi-document) YAML file strictly; throws naming the file on any error. */
export function readYamlDocs(rel: string): unknown[] {
  // An empty stream is an empty array.
  const list = [...YAML.parseAllDocuments(readFileSync(path.join(REPO, rel), 'utf8'), { uniqueKeys: true })];
  for (const d of list) {
    const problems = [...d.errors, ...d.warnings];
    if (problems.length > 0) throw new Error(`${rel}: ${problems.map((e) => e.message).join('; ')}`);
  }
  return list.map((d) => d.toJS({ maxAliasCount: 100 }));
}

export function readYaml<T = any>(rel: string): T {
  const docs = readYamlDocs(rel);
  if (docs.length !== 1) throw new Error(`${rel}: expected one YAML document, found ${docs.length}`);
  return docs[0] as T;
}

// ---- Dockerfile ----------------------------------------------------------------------------------

export interface Instruction {
  readonly keyword: string;
  /** The arguments as written (continuations joined). */
  readonly args: string;
  readonly line: number;
}

export interface Stage {
  readonly image: string;
  readonly name: string | null;
  readonly instructions: Instruction[];
}

/** Splits a Dockerfile into stages of instructions (comments dropped, `\` continuations joined). */
export function parseDockerfile(text: string): Stage[] {
  const instructions: Instruction[] = [];
  const lines = text.split('\n');
  // i < lines.length throughout: the continuation loop advances i only while i + 1 < lines.length.
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = lines[i]!;
    if (/^\s*(#.*)?$/.test(line)) continue;
    while (/\\\s*$/.test(line) && i + 1 < lines.length) {
      i++;
      const next = lines[i]!;
      if (/^\s*#/.test(next)) continue; // comment lines inside a continuation are dropped
      line = line.replace(/\\\s*$/, ' ') + next.trim();
    }
    const [, keyword, args] = /^\s*([A-Za-z]+)\s*(.*)$/.exec(line) ?? [];
    if (keyword === undefined || args === undefined) throw new Error(`Dockerfile line ${start + 1}: not an instruction: ${line}`);
    instructions.push({ keyword: keyword.toUpperCase(), args: args.trim(), line: start + 1 });
  }
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const [, image, name] = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args) ?? [];
      if (image === undefined) throw new Error(`Dockerfile line ${ins.line}: bad FROM ${ins.args}`);
      stages.push({ image, name: name ?? null, instructions: [] });
    } else if (ins.keyword === 'ARG' && stages.length === 0) {
      continue; // global ARGs before the first FROM
    } else {
      const stage = stages.at(-1);
      if (!stage) throw new Error(`Dockerfile line ${ins.line}: ${ins.keyword} before FROM`);
      stage.instructions.push(ins);
    }
  }
  return stages;
}

/** The JSON array of an exec-form instruction, or null for the shell form. */
export function execForm(args: string): string[] | null {
  if (!args.startsWith('[')) return null;
  try {
    const v: unknown = JSON.parse(args);
    return Array.isArray(v) && v.every((s) => typeof s === 'string') ? (v as string[]) : null;
  } catch {
    return null;
  }
}

/** ENV instruction arguments: `K=V K2="v 2"` or the legacy `K V`. */
export function parseEnv(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(args)) {
    const [, key, value] = /^(\S+)\s+(.*)$/.exec(args) ?? [];
    if (key !== undefined && value !== undefined) out[key] = value;
    return out;
  }
  for (const [, key, raw] of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)/g)) {
    if (key === undefined || raw === undefined) continue; // both groups are required: never taken
    out[key] = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw.startsWith("'") ? raw.slice(1, -1) : raw;
  }
  return out;
}

export interface CopyArgs {
  readonly from: string | null;
  readonly sources: string[];
  readonly dest: string;
}

export function parseCopy(args: string): CopyArgs {
  let from: string | null = null;
  let rest = args;
  for (;;) {
    const m = /^--([a-z-]+)(?:=(\S+))?\s+/.exec(rest);
    if (!m) break;
    if (m[1] === 'from') from = m[2] ?? null;
    rest = rest.slice(m[0].length);
  }
  const parts = execForm(rest) ?? rest.split(/\s+/).filter(Boolean);
  if (parts.length < 2) throw new Error(`COPY needs a source and a destination: ${args}`);
  return { from, sources: parts.slice(0, -1), dest: parts.at(-1)! };
}

export function dockerignorePatterns(): string[] {
  return readFileSync(path.join(REPO, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/** Whether .dockerignore excludes a context path (simple globs; `!` exceptions honoured in order). */
export function isDockerignored(rel: string, patterns: readonly string[]): boolean {
  const clean = path.posix.normalize(rel.replace(/^\.\//, '')).replace(/\/$/, '');
  const toRegex = (p: string) =>
    new RegExp(
      `^${p
        .replace(/^\//, '')
        .replace(/\/$/, '')
        .replace(/[.+^${}()|\\]/g, '\\$&')
        .replace(/\*\*/g, '\u0000')
        .replace(/\*/g, '[^/]*')
        .replace(/\?/g, '[^/]')
        .replace(/\u0000/g, '.*')}$`,
    );
  // A path is excluded when it or one of its parent directories matches.
  const prefixes = clean.split('/').map((_, i, a) => a.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const re = toRegex(negate ? raw.slice(1) : raw);
    if (prefixes.some((p) => re.test(p))) ignored = !negate;
  }
  return ignored;
}

// ---- PromQL --------------------------------------------------------------------------------------

export interface Expression {
  /** Where it came from, for messages. */
  readonly source: string;
  /** The expression as written. */
  readonly raw: string;
  /** Valid PromQL: template variables substituted, label_values() unwrapped. */
  readonly promql: string;
}

/** Grafana template variables: ranges -> 5m, everything else (regex label values) -> .* */
export function substituteGrafanaVariables(expr: string): string {
  return expr
    .replace(/\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}/g, '5m')
    .replace(/\$\{[A-Za-z0-9_]+(?::[a-z]+)?\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[A-Za-z0-9_]+\]\]/g, '.*');
}

/** label_values(metric{...}, label) -> metric{...}; other Grafana variable queries pass through. */
function unwrapLabelValues(query: string): string {
  return /^\s*label_values\(\s*(.+?)\s*,\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$/.exec(query)?.[1] ?? query;
}

/** The PromQL of the Grafana dashboard: panel targets (rows included) and query variables. */
export function dashboardExpressions(rel: string): Expression[] {
  const dash = JSON.parse(readFileSync(path.join(REPO, rel), 'utf8'));
  const out: Expression[] = [];
  const visit = (panels: any[] | undefined) => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) {
        if (typeof t.expr === 'string') out.push({ source: `${rel}: panel "${p.title}" ${t.refId}`, raw: t.expr, promql: substituteGrafanaVariables(t.expr) });
      }
      visit(p.panels);
    }
  };
  visit(dash.panels);
  for (const v of dash.templating?.list ?? []) {
    if (v.type !== 'query') continue;
    const q: string = typeof v.query === 'string' ? v.query : v.query?.query;
    out.push({ source: `${rel}: variable ${v.name}`, raw: q, promql: substituteGrafanaVariables(unwrapLabelValues(q)) });
  }
  return out;
}

/** Alerting/recording rule expressions of a Prometheus rules file. */
export function ruleExpressions(rel: string): Expression[] {
  const doc = readYaml<{ groups: { name: string; rules: { alert?: string; record?: string; expr: string }[] }[] }>(rel);
  return doc.groups.flatMap((g) => g.rules.map((r) => ({ source: `${rel}: ${r.alert ?? r.record}`, raw: String(r.expr), promql: String(r.expr) })));
}

export interface AdapterRule {
  readonly seriesQuery: string;
  readonly metricsQuery: string;
  readonly name: { matches: string; as: string };
}

/** The prometheus-adapter rules embedded in the example ConfigMap. */
export function adapterRules(rel: string): AdapterRule[] {
  const cm = readYaml<{ data: Record<string, string> }>(rel);
  const text = cm.data['config.yaml'];
  if (text === undefined) throw new Error(`${rel}: the ConfigMap has no data."config.yaml"`);
  const config = YAML.parse(text) as { rules: AdapterRule[] };
  return config.rules;
}

/** seriesQuery and metricsQuery of each adapter rule, with the adapter's Go templates filled in. */
export function adapterExpressions(rel: string): Expression[] {
  return adapterRules(rel).flatMap((r, i) => {
    const series = r.seriesQuery.trim();
    const metric = /^[A-Za-z_:][A-Za-z0-9_:]*/.exec(series)?.[0] ?? '';
    const filled = r.metricsQuery
      .replace(/<<\s*\.Series\s*>>/g, metric)
      .replace(/<<\s*\.LabelMatchers\s*>>/g, 'namespace="default",pod=~"dsv32-server-.*"')
      .replace(/<<\s*\.GroupBy\s*>>/g, 'pod');
    return [
      { source: `${rel}: rule ${i} seriesQuery`, raw: r.seriesQuery, promql: series },
      { source: `${rel}: rule ${i} metricsQuery`, raw: r.metricsQuery, promql: filled },
    ];
  });
}

/** Prometheus trigger queries of KEDA ScaledObjects. */
export function kedaExpressions(rel: string): Expression[] {
  return readYamlDocs(rel).flatMap((doc: any) =>
    (doc?.spec?.triggers ?? [])
      .filter((t: any) => t.type === 'prometheus')
      .map((t: any, i: number) => ({ source: `${rel}: trigger ${i}`, raw: t.metadata.query, promql: t.metadata.query })),
  );
}

/** Every PromQL expression in docker/: dashboard, alert rules, adapter rules, KEDA triggers. */
export function allExpressions(): Expression[] {
  return [
    ...dashboardExpressions('docker/grafana/dashboards/dsv32.json'),
    ...ruleExpressions('docker/prometheus/alerts.yml'),
    ...adapterExpressions('docker/k8s/prometheus-adapter-rules.yaml'),
    ...kedaExpressions('docker/k8s/keda-scaledobject.yaml'),
  ];
}

const PROMQL_KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'offset',
  'atan2',
  'inf',
  'nan',
  'start',
  'end',
]);

export interface MetricRef {
  readonly metric: string;
  /** Equality matchers on this selector (label -> value), regex matchers excluded. */
  readonly labels: Record<string, string>;
}

/** The metric selectors of a PromQL expression (names that are neither functions nor keywords). */
export function metricRefs(promql: string): MetricRef[] {
  // Blank out the contents of strings, keeping matchers parseable below.
  const strings: string[] = [];
  let s = promql.replace(/"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'/g, (_m, a, b) => `"\u0001${strings.push(a ?? b) - 1}\u0001"`);
  s = s.replace(/\[[^\]]*\]/g, ' '); // ranges and subqueries
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const refs: MetricRef[] = [];
  const matchers = (block: string) => {
    const labels: Record<string, string> = {};
    for (const [, label, index] of block.matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"\u0001(\d+)\u0001"/g)) {
      const value = strings[Number(index)];
      if (label !== undefined && value !== undefined) labels[label] = value; // index: a placeholder written above
    }
    return labels;
  };
  const re = /([A-Za-z_:][A-Za-z0-9_:]*)|(\{[^}]*\})/g;
  for (let m; (m = re.exec(s));) {
    if (m[2]) {
      // A bare {__name__="..."} selector names its metric in a matcher.
      const { __name__: name, ...labels } = matchers(m[2]);
      if (name) refs.push({ metric: name, labels });
      continue;
    }
    const name = m[1];
    if (name === undefined) continue; // one of the two alternatives always matched
    if (/[0-9.]$/.test(s.slice(0, m.index))) continue; // the tail of a number: 1e3
    const rest = s.slice(re.lastIndex);
    const [blockMatch, block] = /^\s*(\{[^}]*\})/.exec(rest) ?? [];
    if (blockMatch !== undefined && block !== undefined) {
      re.lastIndex += blockMatch.length;
      refs.push({ metric: name, labels: matchers(block) });
      continue;
    }
    if (/^\s*\(/.test(rest) || PROMQL_KEYWORDS.has(name.toLowerCase())) continue; // function, aggregation or keyword
    refs.push({ metric: name, labels: {} });
  }
  return refs;
}

/** vllm:/dsv: metric-looking tokens anywhere in a text (comments and docs included). */
export function prefixedMetricTokens(text: string): string[] {
  return [...text.matchAll(/\b(?:vllm|dsv):[A-Za-z0-9_:]*[A-Za-z0-9_]/g)].map((m) => m[0]);
}

// ---- promtool ------------------------------------------------------------------------------------

/** promtool on PATH (Debian/Ubuntu: apt-get install prometheus), or null. */
export function findPromtool(): string | null {
  const r = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  return r.error || r.status !== 0 ? null : 'promtool';
}

export function runPromtool(args: string[], input?: string): { code: number; output: string } {
  const r = spawnSync('promtool', args, { encoding: 'utf8', input, cwd: REPO, timeout: 30_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, output: `${r.stdout}${r.stderr}`.trim() };
}

/**
 * promtool check metrics findings that are deliberate: vLLM's metric names contain ':' (kept so
 * vLLM dashboards, autoscalers and gateways work unchanged; promtool's linter predates them), vLLM
 * names the iteration-tokens histogram *_total, and prom-client's default nodejs_active_*_total
 * gauges. Anything else is a real problem.
 */
export const ACCEPTED_METRICS_LINT: readonly RegExp[] = [
  /^(?:vllm|dsv):[A-Za-z0-9_:]+ metric names should not contain ':'$/,
  /^vllm:iteration_tokens_total non-counter metrics should not have "_total" suffix$/,
  /^nodejs_active_(?:handles|requests|resources)_total non-counter metrics should not have "_total" suffix$/,
];
