// Generates docker/grafana/dashboards/dsv32.json (the committed file; Grafana provisions it):
//   node docker/grafana/generate-dashboard.mjs > docker/grafana/dashboards/dsv32.json
// Edit panels here, regenerate, and run `npm test` (test/deploy checks the JSON matches this output
// and that every metric it names is exported by the server).
const DS = { type: 'prometheus', uid: '${datasource}' };
const S = 'model_name=~"$model_name", instance=~"$instance"';
const R = '$__rate_interval';
let id = 0;
let y = 0;
const panels = [];
function row(title) {
  panels.push({ type: 'row', id: ++id, title, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y }, panels: [] });
  y += 1;
}
let x = 0;
let rowH = 0;
function place(w, h) {
  if (x + w > 24) {
    x = 0;
    y += rowH;
    rowH = 0;
  }
  const g = { h, w, x, y };
  x += w;
  rowH = Math.max(rowH, h);
  return g;
}
function endRow() {
  if (x > 0) {
    y += rowH;
    x = 0;
    rowH = 0;
  }
}
function targets(list) {
  return list.map(([expr, legendFormat], i) => ({ refId: String.fromCharCode(65 + i), datasource: DS, expr, legendFormat, range: true, instant: false }));
}
function ts(title, description, unit, list, { w = 12, h = 8, stack = false, min = 0, max } = {}) {
  const custom = {
    drawStyle: 'line',
    lineWidth: 1,
    fillOpacity: stack ? 40 : 10,
    showPoints: 'never',
    spanNulls: false,
    stacking: { mode: stack ? 'normal' : 'none', group: 'A' },
  };
  const defaults = { unit, min, custom };
  if (max !== undefined) defaults.max = max;
  panels.push({
    type: 'timeseries',
    id: ++id,
    title,
    description,
    datasource: DS,
    gridPos: place(w, h),
    fieldConfig: { defaults, overrides: [] },
    options: { legend: { displayMode: 'list', placement: 'bottom', showLegend: true }, tooltip: { mode: 'multi', sort: 'desc' } },
    targets: targets(list),
  });
}
function stat(title, description, unit, expr, { w = 4, h = 4, decimals } = {}) {
  const defaults = { unit, color: { mode: 'thresholds' }, thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }] } };
  if (decimals !== undefined) defaults.decimals = decimals;
  panels.push({
    type: 'stat',
    id: ++id,
    title,
    description,
    datasource: DS,
    gridPos: place(w, h),
    fieldConfig: { defaults, overrides: [] },
    options: {
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      colorMode: 'value',
      graphMode: 'area',
      justifyMode: 'auto',
      textMode: 'auto',
    },
    targets: targets([[expr, title]]),
  });
}
const q = (p, m, by = 'le') => `histogram_quantile(${p}, sum by (${by}) (rate(${m}_bucket{${S}}[${R}])))`;
const mean = (m) => `sum(rate(${m}_sum{${S}}[${R}])) / sum(rate(${m}_count{${S}}[${R}]))`;
const rate = (m, extra = '') => `sum(rate(${m}{${S}${extra}}[${R}]))`;

row('Overview');
stat('Replicas reporting', 'Server processes whose /metrics Prometheus scrapes (one engine each).', 'none', `count(vllm:num_requests_running{${S}})`);
stat('Running requests', 'Sequences in the running batch, all replicas.', 'none', `sum(vllm:num_requests_running{${S}})`);
stat('Waiting requests', 'Requests queued for admission, all replicas: the autoscaling signal.', 'none', `sum(vllm:num_requests_waiting{${S}})`);
stat('KV cache usage (max)', 'Fullest replica KV cache (1 = every block in use).', 'percentunit', `max(vllm:kv_cache_usage_perc{${S}})`, { decimals: 1 });
stat('Generation throughput', 'Output tokens per second, all replicas.', 'none', rate('vllm:generation_tokens_total'), { decimals: 1 });
stat('TTFT p99', 'p99 time to first token over the rate interval.', 's', q(0.99, 'vllm:time_to_first_token_seconds'), { decimals: 3 });
endRow();

row('Latency');
ts('Time to first token', 'histogram_quantile over vllm:time_to_first_token_seconds (queueing + prefill).', 's', [
  [q(0.5, 'vllm:time_to_first_token_seconds'), 'p50'],
  [q(0.9, 'vllm:time_to_first_token_seconds'), 'p90'],
  [q(0.99, 'vllm:time_to_first_token_seconds'), 'p99'],
]);
ts('Inter-token latency', 'histogram_quantile over vllm:inter_token_latency_seconds (one decode step per token).', 's', [
  [q(0.5, 'vllm:inter_token_latency_seconds'), 'p50'],
  [q(0.9, 'vllm:inter_token_latency_seconds'), 'p90'],
  [q(0.99, 'vllm:inter_token_latency_seconds'), 'p99'],
]);
ts('End-to-end request latency', 'histogram_quantile over vllm:e2e_request_latency_seconds.', 's', [
  [q(0.5, 'vllm:e2e_request_latency_seconds'), 'p50'],
  [q(0.99, 'vllm:e2e_request_latency_seconds'), 'p99'],
]);
ts(
  'Request phases (mean)',
  'Mean time a request spends queued, in prefill and in decode.',
  's',
  [
    [mean('vllm:request_queue_time_seconds'), 'queue'],
    [mean('vllm:request_prefill_time_seconds'), 'prefill'],
    [mean('vllm:request_decode_time_seconds'), 'decode'],
  ],
  { stack: true },
);
endRow();

row('Throughput and load');
ts('Token throughput', 'Prompt (prefill) and generated tokens per second, all replicas.', 'none', [
  [rate('vllm:prompt_tokens_total'), 'prompt tokens/s'],
  [rate('vllm:generation_tokens_total'), 'generation tokens/s'],
]);
ts('Running and waiting requests', 'Per replica: what an inference gateway balances on.', 'none', [
  [`sum by (instance) (vllm:num_requests_running{${S}})`, 'running {{instance}}'],
  [`sum by (instance) (vllm:num_requests_waiting{${S}})`, 'waiting {{instance}}'],
]);
ts('Tokens per engine step', 'histogram_quantile over vllm:iteration_tokens_total: the batch size of one step (decode tokens + prefill chunk).', 'none', [
  [q(0.5, 'vllm:iteration_tokens_total'), 'p50'],
  [q(0.99, 'vllm:iteration_tokens_total'), 'p99'],
]);
ts(
  'Finished requests by reason',
  'vllm:request_success_total by finished_reason (stop, length, abort, error).',
  'reqps',
  [[`sum by (finished_reason) (rate(vllm:request_success_total{${S}}[${R}]))`, '{{finished_reason}}']],
  { stack: true },
);
ts('Preemptions', 'Sequences preempted (KV blocks reclaimed, recomputed later) per second.', 'none', [[rate('vllm:num_preemptions_total'), 'preemptions/s']]);
ts('Requests per second', 'Finished requests per second, all reasons.', 'reqps', [[rate('vllm:request_success_total'), 'requests/s']]);
endRow();

row('KV cache');
ts(
  'KV cache usage',
  'Per replica, 1 = every KV block in use (vllm:kv_cache_usage_perc).',
  'percentunit',
  [[`max by (instance) (vllm:kv_cache_usage_perc{${S}})`, '{{instance}}']],
  { w: 8, max: 1 },
);
ts(
  'KV cache memory in use',
  'Bytes held by the MLA latent cache and the DSA indexer-key cache.',
  'bytes',
  [[`sum by (cache) (dsv:kv_cache_bytes_in_use{${S}})`, '{{cache}}']],
  { w: 8, stack: true },
);
ts(
  'Prefix cache hit rate',
  'Prompt tokens served from cached blocks / prompt tokens looked up.',
  'percentunit',
  [[`${rate('vllm:prefix_cache_hits_total')} / ${rate('vllm:prefix_cache_queries_total')}`, 'hit rate']],
  { w: 8, max: 1 },
);
endRow();

row('DeepSeek Sparse Attention');
ts(
  'DSA sparsity',
  'Keys attended / keys visible (1 = dense). The indexer picks top-k keys once the context exceeds k.',
  'percentunit',
  [[`${rate('dsv:dsa_selected_keys_total')} / ${rate('dsv:dsa_visible_keys_total')}`, 'selected / visible']],
  { w: 8, max: 1 },
);
ts(
  'Keys per query',
  'Mean visible and selected keys per attention query.',
  'none',
  [
    [`${rate('dsv:dsa_visible_keys_total')} / ${rate('dsv:dsa_queries_total')}`, 'visible'],
    [`${rate('dsv:dsa_selected_keys_total')} / ${rate('dsv:dsa_queries_total')}`, 'selected'],
  ],
  { w: 8 },
);
ts(
  'Indexer time share',
  'Share of engine step time spent in the DSA lightning indexer.',
  'percentunit',
  [[`${rate('dsv:engine_step_seconds_total', ', part="indexer"')} / ${rate('dsv:engine_step_seconds_total')}`, 'indexer']],
  { w: 8, max: 1 },
);
ts(
  'Engine step time by part',
  'Seconds of engine time per second, by part (schedule, dense, indexer, attention, experts, sampling, other); the total is engine utilisation.',
  's',
  [[`sum by (part) (rate(dsv:engine_step_seconds_total{${S}}[${R}]))`, '{{part}}']],
  { w: 24, stack: true },
);
endRow();

const variable = (name, label, query) => ({
  name,
  label,
  type: 'query',
  datasource: DS,
  query: { query, refId: 'PrometheusVariableQueryEditor-VariableQuery', qryType: 1 },
  definition: query,
  refresh: 2,
  multi: true,
  includeAll: true,
  allValue: '.*',
  current: { selected: true, text: ['All'], value: ['$__all'] },
  sort: 1,
  hide: 0,
  regex: '',
  options: [],
});
const dashboard = {
  uid: 'dsv32-server',
  title: 'DSV32 server',
  description: 'dsv32-server (DeepSeek-V3.2 architecture, vLLM-compatible metrics): latency, throughput, load, KV cache, DSA sparsity.',
  tags: ['dsv32', 'vllm', 'llm'],
  editable: true,
  graphTooltip: 1,
  refresh: '10s',
  schemaVersion: 39,
  version: 1,
  time: { from: 'now-30m', to: 'now' },
  timepicker: {},
  timezone: 'browser',
  annotations: { list: [] },
  links: [],
  templating: {
    list: [
      { name: 'datasource', label: 'Data source', type: 'datasource', query: 'prometheus', current: {}, hide: 0, refresh: 1, regex: '', options: [] },
      variable('model_name', 'Model', 'label_values(vllm:num_requests_running, model_name)'),
      variable('instance', 'Instance', 'label_values(vllm:num_requests_running{model_name=~"$model_name"}, instance)'),
    ],
  },
  panels,
};
process.stdout.write(JSON.stringify(dashboard, null, 2) + '\n');
