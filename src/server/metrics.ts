// Prometheus metrics with vLLM's names and types (label model_name), so existing dashboards,
// autoscalers and inference gateways work unchanged; dsv:* metrics are this server's own (DSA).
// The only module that imports prom-client.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { StepStats } from '../engine/step_stats.ts';
import type { GenerationObserver } from './generation.ts';

const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const REQUEST_BUCKETS = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];
const ITERATION_BUCKETS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];
const STEP_PARTS = ['schedule', 'dense', 'indexer', 'attention', 'experts', 'grammar', 'sampling', 'draft', 'other'] as const;

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly labels: { model_name: string };
  private readonly running: Gauge;
  private readonly waiting: Gauge;
  private readonly kvUsage: Gauge;
  private readonly prefixQueries: Counter;
  private readonly prefixHits: Counter;
  private readonly preemptions: Counter;
  private readonly promptTokens: Counter;
  private readonly generationTokens: Counter;
  private readonly success: Counter;
  private readonly ttft: Histogram;
  private readonly itl: Histogram;
  private readonly e2e: Histogram;
  private readonly queueTime: Histogram;
  private readonly prefillTime: Histogram;
  private readonly decodeTime: Histogram;
  private readonly iterationTokens: Histogram;
  private readonly stepSeconds: Counter;
  private readonly dsaQueries: Counter;
  private readonly dsaVisible: Counter;
  private readonly dsaSelected: Counter;
  private readonly cacheBytes: Gauge;
  private readonly specDecode: { drafts: Counter; draftTokens: Counter; accepted: Counter; acceptedPerPos: Counter } | null;
  private last = { prefixQueries: 0, prefixHits: 0, preemptions: 0 };

  /** @param numSpeculativeTokens k of --speculative-config: the vllm:spec_decode_* series exist only when it is set (as in vLLM). */
  constructor(modelName: string, numSpeculativeTokens = 0) {
    this.labels = { model_name: modelName };
    const r = [this.registry];
    const names = ['model_name'];
    this.running = new Gauge({ name: 'vllm:num_requests_running', help: 'Number of requests in model execution batches.', labelNames: names, registers: r });
    this.waiting = new Gauge({ name: 'vllm:num_requests_waiting', help: 'Number of requests waiting to be processed.', labelNames: names, registers: r });
    this.kvUsage = new Gauge({ name: 'vllm:kv_cache_usage_perc', help: 'KV-cache usage. 1 means 100 percent usage.', labelNames: names, registers: r });
    this.prefixQueries = new Counter({
      name: 'vllm:prefix_cache_queries_total',
      help: 'Prefix cache queries, in terms of number of queried tokens.',
      labelNames: names,
      registers: r,
    });
    this.prefixHits = new Counter({
      name: 'vllm:prefix_cache_hits_total',
      help: 'Prefix cache hits, in terms of number of cached tokens.',
      labelNames: names,
      registers: r,
    });
    this.preemptions = new Counter({
      name: 'vllm:num_preemptions_total',
      help: 'Cumulative number of preemptions from the engine.',
      labelNames: names,
      registers: r,
    });
    // vLLM v1 semantics: each engine request adds its whole prompt once, at its first output token
    // (cache hits included, recomputes after preemption not), so the count is in observer().
    this.promptTokens = new Counter({ name: 'vllm:prompt_tokens_total', help: 'Number of prefill tokens processed.', labelNames: names, registers: r });
    this.generationTokens = new Counter({
      name: 'vllm:generation_tokens_total',
      help: 'Number of generation tokens processed.',
      labelNames: names,
      registers: r,
    });
    this.success = new Counter({
      name: 'vllm:request_success_total',
      help: 'Count of successfully processed requests.',
      labelNames: [...names, 'finished_reason'],
      registers: r,
    });
    const hist = (name: string, help: string, buckets: number[]) => new Histogram({ name, help, buckets, labelNames: names, registers: r });
    this.ttft = hist('vllm:time_to_first_token_seconds', 'Histogram of time to first token in seconds.', TTFT_BUCKETS);
    this.itl = hist('vllm:inter_token_latency_seconds', 'Histogram of inter-token latency in seconds.', ITL_BUCKETS);
    this.e2e = hist('vllm:e2e_request_latency_seconds', 'Histogram of e2e request latency in seconds.', REQUEST_BUCKETS);
    this.queueTime = hist('vllm:request_queue_time_seconds', 'Histogram of time spent in WAITING phase for request.', REQUEST_BUCKETS);
    this.prefillTime = hist('vllm:request_prefill_time_seconds', 'Histogram of time spent in PREFILL phase for request.', REQUEST_BUCKETS);
    this.decodeTime = hist('vllm:request_decode_time_seconds', 'Histogram of time spent in DECODE phase for request.', REQUEST_BUCKETS);
    this.iterationTokens = hist('vllm:iteration_tokens_total', 'Histogram of number of tokens per engine_step.', ITERATION_BUCKETS);
    this.stepSeconds = new Counter({
      name: 'dsv:engine_step_seconds_total',
      help: 'Engine step time by part (rate(part="indexer") / rate(all parts) = indexer time share).',
      labelNames: [...names, 'part'],
      registers: r,
    });
    this.dsaQueries = new Counter({
      name: 'dsv:dsa_queries_total',
      help: 'Attention query rows (per layer) that went through DSA key selection.',
      labelNames: names,
      registers: r,
    });
    this.dsaVisible = new Counter({
      name: 'dsv:dsa_visible_keys_total',
      help: 'Causally visible keys summed over query rows and layers.',
      labelNames: names,
      registers: r,
    });
    this.dsaSelected = new Counter({
      name: 'dsv:dsa_selected_keys_total',
      help: 'Keys attended after indexer top-k, summed over query rows and layers (selected / visible = DSA density).',
      labelNames: names,
      registers: r,
    });
    this.cacheBytes = new Gauge({
      name: 'dsv:kv_cache_bytes_in_use',
      help: 'Bytes of KV cache blocks in use, by cache (latent, indexer).',
      labelNames: [...names, 'cache'],
      registers: r,
    });
    this.specDecode = numSpeculativeTokens > 0 ? this.specDecodeCounters(numSpeculativeTokens) : null;
    collectDefaultMetrics({ register: this.registry, labels: this.labels });
    // Export every series from the start (a scrape before the first request sees zeros, not gaps).
    for (const g of [this.running, this.waiting, this.kvUsage]) g.set(this.labels, 0);
    for (const c of [
      this.prefixQueries,
      this.prefixHits,
      this.preemptions,
      this.promptTokens,
      this.generationTokens,
      this.dsaQueries,
      this.dsaVisible,
      this.dsaSelected,
    ])
      c.inc(this.labels, 0);
    for (const reason of ['stop', 'length', 'abort', 'error']) this.success.inc({ ...this.labels, finished_reason: reason }, 0);
    for (const part of STEP_PARTS) this.stepSeconds.inc({ ...this.labels, part }, 0);
    for (const cache of ['latent', 'indexer']) this.cacheBytes.set({ ...this.labels, cache }, 0);
    for (const h of [this.ttft, this.itl, this.e2e, this.queueTime, this.prefillTime, this.decodeTime, this.iterationTokens]) h.zero(this.labels);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** Engine step stats -> gauges and counters (counters from the engine's cumulative totals). */
  onStepStats(s: StepStats): void {
    const l = this.labels;
    this.running.set(l, s.numRunning);
    this.waiting.set(l, s.numWaiting);
    this.kvUsage.set(l, s.kvCacheUsage);
    this.prefixQueries.inc(l, s.prefixCacheQueryTokens - this.last.prefixQueries);
    this.prefixHits.inc(l, s.prefixCacheHitTokens - this.last.prefixHits);
    this.preemptions.inc(l, s.numPreemptionsTotal - this.last.preemptions);
    this.last = { prefixQueries: s.prefixCacheQueryTokens, prefixHits: s.prefixCacheHitTokens, preemptions: s.numPreemptionsTotal };
    this.generationTokens.inc(l, s.numGeneratedTokens);
    if (s.numScheduledTokens > 0) this.iterationTokens.observe(l, s.numScheduledTokens);
    for (const part of STEP_PARTS) this.stepSeconds.inc({ ...l, part }, s.timings[part] / 1000);
    this.dsaQueries.inc(l, s.sparsity.queries);
    this.dsaVisible.inc(l, s.sparsity.visibleKeys);
    this.dsaSelected.inc(l, s.sparsity.selectedKeys);
    this.cacheBytes.set({ ...l, cache: 'latent' }, s.kvCacheBytesInUse.latent);
    this.cacheBytes.set({ ...l, cache: 'indexer' }, s.kvCacheBytesInUse.indexer);
    const spec = this.specDecode;
    if (spec && s.specDecode) {
      spec.drafts.inc(l, s.specDecode.numDrafts);
      spec.draftTokens.inc(l, s.specDecode.numDraftTokens);
      spec.accepted.inc(l, s.specDecode.numAcceptedTokens);
      s.specDecode.acceptedPerPos.forEach((n, position) => spec.acceptedPerPos.inc({ ...l, position: String(position) }, n));
    }
  }

  /**
   * vLLM's vllm:cache_config_info: a constant 1 whose labels carry the KV cache configuration, so a
   * dashboard shows the dtype --kv-cache-dtype auto resolved to.
   */
  setCacheConfig(cache: { readonly cacheDtype: string; readonly blockSize: number; readonly numBlocks: number }): void {
    const info = new Gauge({
      name: 'vllm:cache_config_info',
      help: 'Information of the KV cache configuration (the resolved cache_dtype, block_size, num_gpu_blocks = KV blocks).',
      labelNames: ['model_name', 'cache_dtype', 'block_size', 'num_gpu_blocks'],
      registers: [this.registry],
    });
    info.set({ ...this.labels, cache_dtype: cache.cacheDtype, block_size: String(cache.blockSize), num_gpu_blocks: String(cache.numBlocks) }, 1);
  }

  /** vLLM's speculative decoding counters (acceptance rate = accepted / draft tokens; mean length = 1 + accepted / drafts). */
  private specDecodeCounters(k: number): NonNullable<ServerMetrics['specDecode']> {
    const r = [this.registry];
    const names = ['model_name'];
    const counter = (name: string, help: string, labelNames = names) => new Counter({ name, help, labelNames, registers: r });
    const c = {
      drafts: counter('vllm:spec_decode_num_drafts_total', 'Number of spec decoding drafts.'),
      draftTokens: counter('vllm:spec_decode_num_draft_tokens_total', 'Number of draft tokens.'),
      accepted: counter('vllm:spec_decode_num_accepted_tokens_total', 'Number of accepted tokens.'),
      acceptedPerPos: counter('vllm:spec_decode_num_accepted_tokens_per_pos_total', 'Accepted tokens per draft position.', [...names, 'position']),
    };
    for (const x of [c.drafts, c.draftTokens, c.accepted]) x.inc(this.labels, 0);
    for (let position = 0; position < k; position++) c.acceptedPerPos.inc({ ...this.labels, position: String(position) }, 0);
    return c;
  }

  /** Per-request latency metrics for one API request's choices. */
  observer(): GenerationObserver {
    const lastTokenAt = new Map<number, number>();
    const l = this.labels;
    return {
      onTokens: (choice, count, now, numPromptTokens) => {
        const prev = lastTokenAt.get(choice);
        if (prev === undefined) this.promptTokens.inc(l, numPromptTokens);
        else for (let i = 0; i < count; i++) this.itl.observe(l, (now - prev) / 1000 / count);
        lastTokenAt.set(choice, now);
      },
      onFinish: (info) => {
        const e2e = (info.now - info.arrival) / 1000;
        this.e2e.observe(l, e2e);
        this.success.inc({ ...l, finished_reason: info.reason });
        const queue = (info.queueTimeMs ?? 0) / 1000;
        if (info.queueTimeMs !== null) this.queueTime.observe(l, queue);
        if (info.firstTokenAt !== null) {
          const ttft = (info.firstTokenAt - info.arrival) / 1000;
          this.ttft.observe(l, ttft);
          this.prefillTime.observe(l, Math.max(0, ttft - queue));
          this.decodeTime.observe(l, (info.now - info.firstTokenAt) / 1000);
        }
      },
    };
  }
}
