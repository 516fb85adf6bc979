import assert from 'node:assert/strict';
import { DEFAULT_DISABLE_BY_BATCH_SIZE } from '../../../src/engine/speculative/speculative_config.ts';
import { basename, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { DEFAULT_MODEL_DIR, OPTIONS, loadConfig, toEngineWorkerData } from '../../../src/config.ts';
import { configErrorMessage, writeConfigFile } from './helpers.ts';

describe('loadConfig defaults', () => {
  it('gives every option its default', () => {
    const config = loadConfig([], {});
    assert.deepEqual(config, {
      model: DEFAULT_MODEL_DIR,
      host: '127.0.0.1',
      port: 8000,
      servedModelName: ['default'],
      maxModelLen: null,
      maxNumSeqs: 64,
      maxNumBatchedTokens: 2048,
      longPrefillTokenThreshold: 0,
      blockSize: 64,
      kvCacheMemory: 2 ** 30,
      numKvBlocks: null,
      enablePrefixCaching: true,
      kvCacheDtype: 'auto',
      apiKey: null,
      maxQueuedRequests: 256,
      maxQueuedTokens: 1048576,
      denseAttention: false,
      quantization: 'none',
      quantizedWeightsDir: null,
      speculativeConfig: null,
      nativeKernels: 'auto',
      threads: 2,
      logLevel: 'info',
      maxRequestBody: 32 * 2 ** 20,
      requestTimeout: 30,
      maxConnections: null,
      drainTimeout: 30,
      streamWriteTimeout: 30,
      maxLogprobs: 20,
      configFile: null,
    });
    assert.equal(DEFAULT_MODEL_DIR, resolve(import.meta.dirname, '../../../models/default'));
  });

  it('is frozen, lists included', () => {
    const config = loadConfig(['--served-model-name', 'a,b'], {});
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.servedModelName));
    assert.throws(() => ((config as { port: number }).port = 1), TypeError);
  });

  it('derives the served model name from the resolved model dir', () => {
    const config = loadConfig(['--model', 'some/where/my-model/'], {});
    assert.equal(config.model, resolve('some/where/my-model'));
    assert.deepEqual(config.servedModelName, ['my-model']);
    assert.equal(basename(config.model), 'my-model');
  });
});

describe('loadConfig sources', () => {
  it('reads every option from flags', () => {
    const config = loadConfig(
      [
        '--model',
        '/m/x',
        '--host',
        '0.0.0.0',
        '--port',
        '0',
        '--served-model-name',
        'a,b',
        '--served-model-name',
        'c',
        '--max-model-len',
        '4096',
        '--max-num-seqs',
        '8',
        '--max-num-batched-tokens',
        '512',
        '--long-prefill-token-threshold=128',
        '--block-size',
        '16',
        '--kv-cache-memory',
        '512MiB',
        '--num-kv-blocks',
        '100',
        '--no-enable-prefix-caching',
        '--kv-cache-dtype',
        'FP8',
        '--api-key',
        'k1,k2',
        '--max-queued-requests',
        '3',
        '--max-queued-tokens',
        '9000',
        '--dense-attention',
        '--native-kernels',
        'off',
        '--threads',
        '4',
        '--log-level',
        'debug',
        '--max-request-body',
        '1M',
        '--drain-timeout',
        '2.5',
        '--stream-write-timeout',
        '0.5',
        '--max-logprobs',
        '0',
        '--request-timeout',
        '5',
        '--max-connections',
        '100',
        '--quantization',
        'INT4',
        '--quantized-weights-dir',
        '/cache/q',
        '--speculative-config',
        '{"method": "mtp", "num_speculative_tokens": 2}',
      ],
      {},
    );
    assert.deepEqual(
      { ...config },
      {
        model: '/m/x',
        host: '0.0.0.0',
        port: 0,
        servedModelName: ['a', 'b', 'c'],
        maxModelLen: 4096,
        maxNumSeqs: 8,
        maxNumBatchedTokens: 512,
        longPrefillTokenThreshold: 128,
        blockSize: 16,
        kvCacheMemory: 512 * 2 ** 20,
        numKvBlocks: 100,
        enablePrefixCaching: false,
        kvCacheDtype: 'fp8',
        apiKey: ['k1', 'k2'],
        maxQueuedRequests: 3,
        maxQueuedTokens: 9000,
        denseAttention: true,
        quantization: 'int4',
        quantizedWeightsDir: '/cache/q',
        speculativeConfig: { method: 'mtp', numSpeculativeTokens: 2, disableByBatchSize: DEFAULT_DISABLE_BY_BATCH_SIZE },
        nativeKernels: 'off',
        threads: 4,
        logLevel: 'debug',
        maxRequestBody: 1_000_000,
        requestTimeout: 5,
        maxConnections: 100,
        drainTimeout: 2.5,
        streamWriteTimeout: 0.5,
        maxLogprobs: 0,
        configFile: null,
      },
    );
  });

  it('reads every option from env', () => {
    const env = Object.fromEntries(OPTIONS.filter((s) => s.key !== 'configFile').map((s) => [s.env[0], '']));
    Object.assign(env, {
      DSV_MODEL: '/m/y',
      DSV_PORT: '9001',
      DSV_SERVED_MODEL_NAME: 'n1, n2',
      DSV_MAX_NUM_SEQS: '7',
      DSV_KV_CACHE_MEMORY: '2G',
      DSV_ENABLE_PREFIX_CACHING: 'FALSE',
      DSV_DENSE_ATTENTION: '1',
      DSV_API_KEY: 'secret',
      DSV_LOG_LEVEL: 'warn',
      DSV_MAX_MODEL_LEN: 'auto',
      DSV_DRAIN_TIMEOUT: '0',
      DSV_KV_CACHE_DTYPE: 'bfloat16',
      DSV_QUANTIZATION: 'int8',
      DSV_QUANTIZED_WEIGHTS_DIR: '/q',
    });
    const config = loadConfig([], env);
    assert.equal(config.kvCacheDtype, 'bfloat16');
    assert.equal(config.model, '/m/y');
    assert.equal(config.port, 9001);
    assert.deepEqual(config.servedModelName, ['n1', 'n2']);
    assert.equal(config.maxNumSeqs, 7);
    assert.equal(config.kvCacheMemory, 2e9);
    assert.equal(config.enablePrefixCaching, false);
    assert.equal(config.denseAttention, true);
    assert.deepEqual(config.apiKey, ['secret']);
    assert.equal(config.logLevel, 'warn');
    assert.equal(config.maxModelLen, null);
    assert.equal(config.drainTimeout, 0);
    assert.equal(config.quantization, 'int8');
    assert.equal(config.quantizedWeightsDir, '/q');
    assert.equal(config.host, '127.0.0.1', 'an empty variable counts as unset');
  });

  it('accepts VLLM_API_KEY, below DSV_API_KEY', () => {
    assert.deepEqual(loadConfig([], { VLLM_API_KEY: 'v' }).apiKey, ['v']);
    assert.deepEqual(loadConfig([], { VLLM_API_KEY: 'v', DSV_API_KEY: 'd' }).apiKey, ['d']);
  });

  it('takes switches as --x, --no-x and --x=BOOL; the last repeated scalar flag wins', () => {
    assert.equal(loadConfig(['--enable-prefix-caching'], { DSV_ENABLE_PREFIX_CACHING: '0' }).enablePrefixCaching, true);
    assert.equal(loadConfig(['--enable-prefix-caching=false'], {}).enablePrefixCaching, false);
    assert.equal(loadConfig(['--dense-attention', '--no-dense-attention'], {}).denseAttention, false);
    assert.equal(loadConfig(['--port', '1', '--port', '2'], {}).port, 2);
  });
});

describe('precedence: flags > env > file > defaults', () => {
  const file = writeConfigFile('precedence.yaml', 'maxNumSeqs: 10\nmax-num-batched-tokens: 1000\nblockSize: 32\nthreads: 3\n');

  it('layers each source over the ones below', () => {
    const config = loadConfig(['--config', file, '--max-num-seqs', '30'], { DSV_MAX_NUM_SEQS: '20', DSV_MAX_NUM_BATCHED_TOKENS: '2000', DSV_BLOCK_SIZE: '' });
    assert.equal(config.maxNumSeqs, 30, 'flag over env and file');
    assert.equal(config.maxNumBatchedTokens, 2000, 'env over file');
    assert.equal(config.blockSize, 32, 'file over default');
    assert.equal(config.threads, 3);
    assert.equal(config.maxQueuedRequests, 256, 'default');
    assert.equal(config.configFile, file);
  });

  it('finds the file through DSV_CONFIG, and --config wins over it', () => {
    const other = writeConfigFile('other.json', '{"threads": 7}');
    assert.equal(loadConfig([], { DSV_CONFIG: file }).threads, 3);
    assert.equal(loadConfig(['--config', other], { DSV_CONFIG: file }).threads, 7);
  });

  it('replaces, not merges, a list from a lower source', () => {
    const lists = writeConfigFile('lists.yaml', 'servedModelName: [a, b]\n');
    assert.deepEqual(loadConfig(['--config', lists], {}).servedModelName, ['a', 'b']);
    assert.deepEqual(loadConfig(['--config', lists], { DSV_SERVED_MODEL_NAME: 'c' }).servedModelName, ['c']);
  });
});

describe('cross-field checks', () => {
  it('bounds long-prefill-token-threshold by max-num-batched-tokens unless 0', () => {
    assert.equal(loadConfig(['--long-prefill-token-threshold', '2048'], {}).longPrefillTokenThreshold, 2048);
    assert.equal(loadConfig(['--max-num-batched-tokens', '16'], {}).longPrefillTokenThreshold, 0);
    assert.match(
      configErrorMessage(['--long-prefill-token-threshold', '4096']),
      /^--long-prefill-token-threshold: 4096 exceeds max-num-batched-tokens = 2048 \(the default\)/,
    );
    assert.match(
      configErrorMessage([], { DSV_LONG_PREFILL_TOKEN_THRESHOLD: '600', DSV_MAX_NUM_BATCHED_TOKENS: '512' }),
      /^DSV_LONG_PREFILL_TOKEN_THRESHOLD: 600 exceeds max-num-batched-tokens = 512 \(from DSV_MAX_NUM_BATCHED_TOKENS\)/,
    );
  });

  it('rejects a zero token budget', () => {
    assert.match(configErrorMessage(['--max-num-batched-tokens', '0']), /^--max-num-batched-tokens: expected a positive integer, got "0"$/);
  });

  it('names --speculative-config and the reason: unknown method, k out of 1-4, bad JSON, unknown keys', () => {
    const bad = (json: string): string => configErrorMessage(['--speculative-config', json]);
    assert.match(
      bad('{"method": "eagle", "num_speculative_tokens": 1}'),
      /^--speculative-config: expected a JSON object .*\(unknown method: the only method is "mtp"/,
    );
    assert.match(bad('{"method": "mtp", "num_speculative_tokens": 0}'), /^--speculative-config: .*\(num_speculative_tokens must be at least 1\)$/);
    assert.match(bad('{"method": "mtp", "num_speculative_tokens": 5}'), /^--speculative-config: .*\(num_speculative_tokens must be at most 4\)$/);
    assert.match(bad('{"method": "mtp"}'), /^--speculative-config: .*num_speculative_tokens/);
    assert.match(bad('{"method": "mtp", "num_speculative_tokens": 1, "draft_model": "x"}'), /^--speculative-config: .*draft_model/);
    assert.match(bad('{method: mtp}'), /^--speculative-config: expected a JSON object/);
    const ok = loadConfig(['--speculative-config', '{"method": "deepseek_mtp", "num_speculative_tokens": 4, "disable_by_batch_size": 9}'], {});
    assert.deepEqual(ok.speculativeConfig, { method: 'mtp', numSpeculativeTokens: 4, disableByBatchSize: 9 });
    assert.equal(loadConfig(['--speculative-config', 'none'], {}).speculativeConfig, null);
  });
});

describe('toEngineWorkerData', () => {
  it('maps the config onto the runner, scheduler and cache options', () => {
    const config = loadConfig(
      ['--model', '/m/z', '--num-kv-blocks', '12', '--threads', '3', '--dense-attention', '--quantization', 'int8', '--quantized-weights-dir', 'q'],
      {},
    );
    assert.deepEqual(toEngineWorkerData(config, 8192), {
      modelDir: '/m/z',
      engine: {
        runner: {
          blockSize: 64,
          kvCacheMemory: 2 ** 30,
          numKvBlocks: 12,
          denseAttention: true,
          kvCacheDtype: 'auto',
          numThreads: 3,
          nativeKernels: 'auto',
          quantization: 'int8',
          quantizedWeightsDir: resolve('q'),
        },
        scheduler: {
          maxNumSeqs: 64,
          maxNumBatchedTokens: 2048,
          longPrefillTokenThreshold: 0,
          maxModelLen: 8192,
          maxQueuedRequests: 256,
          maxQueuedTokens: 1048576,
        },
        enablePrefixCaching: true,
        speculative: null,
      },
    });
  });

  it('leaves numKvBlocks out when the budget decides, and checks maxModelLen', () => {
    const data = toEngineWorkerData(loadConfig([], {}), 100);
    assert.ok(!('numKvBlocks' in data.engine.runner));
    assert.equal(data.engine.runner.kvCacheDtype, 'auto', 'auto is resolved against the checkpoint by the engine (kv_cache_dtype_auto.ts)');
    assert.equal(toEngineWorkerData(loadConfig(['--kv-cache-dtype', 'fp8'], {}), 100).engine.runner.kvCacheDtype, 'fp8');
    assert.throws(() => toEngineWorkerData(loadConfig([], {}), 0), /max-model-len: expected a positive integer, got 0/);
  });
});
