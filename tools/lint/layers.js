// The layers of src/ and who owns each outside package: the one source of truth, enforced by
// `npm run lint` (rule layers/imports, tools/lint/import_layers.js). Paths are relative to the repo;
// a trailing '/' means a directory and everything below it.
//
//   src/common                 vocabulary of every layer (error codes + assert, Tensor, quickselect)
//   src/kvcache                block ids and paged storage            -> common
//   src/engine/checkpoint      checkpoint reading and validation      -> common
//   src/engine/onnx            graph building, the ORT session        -> common
//   src/engine/native          the C kernels' build and binding       -> common
//   src/engine/model, attention the forward pass (graphs + how they run) -> common, kvcache, checkpoint,
//                                                                        onnx, native, quant, step_profiler.ts
//   src/engine/**              model, attention, sampling, scheduler, core, worker, client
//                                                                     -> common, kvcache, engine
//   src/server                 HTTP                                   -> common, config, the engine's
//                                                                        client and boundary types
//   src/config.ts, src/cli, src/main.ts: the edges and entry points, free within src/.

/** Files under src/server may use from the engine: values and types. */
const ENGINE_API = ['src/engine/engine_client.ts', 'src/engine/sampling/sampling_params.ts'];
/** ... and types only (the request/output shapes that cross the worker boundary). */
const ENGINE_API_TYPES = ['src/engine/request.ts', 'src/engine/worker/messages.ts', 'src/engine/step_stats.ts', 'src/engine/structured/grammar_spec.ts'];

export const LAYERS = {
  sourceDir: 'src/',
  modules: [
    {
      files: ['src/common/'],
      mayImport: ['src/common/'],
      why: 'src/common is the bottom layer and imports nothing else from the project.',
    },
    {
      files: ['src/kvcache/'],
      mayImport: ['src/common/', 'src/kvcache/'],
      why: 'src/kvcache hands out block ids and imports only src/common.',
    },
    {
      files: ['src/engine/checkpoint/'],
      mayImport: ['src/common/', 'src/engine/checkpoint/'],
      why: 'src/engine/checkpoint reads and validates files; it imports only src/common.',
    },
    {
      files: ['src/engine/onnx/'],
      mayImport: ['src/common/', 'src/engine/onnx/'],
      why: 'src/engine/onnx builds and runs graphs; it imports only src/common.',
    },
    {
      files: ['src/engine/native/'],
      mayImport: ['src/common/', 'src/engine/native/'],
      why: 'src/engine/native builds and loads the C kernels; it imports only src/common.',
    },
    {
      files: ['src/engine/model/', 'src/engine/attention/'],
      mayImport: [
        'src/common/',
        'src/kvcache/',
        'src/engine/checkpoint/',
        'src/engine/onnx/',
        'src/engine/native/',
        'src/engine/quant/',
        'src/engine/model/',
        'src/engine/attention/',
        'src/engine/step_profiler.ts',
      ],
      why: 'the forward pass knows nothing of requests, scheduling, sampling or the step loop: the ModelRunner hands it a StepPlan.',
    },
    {
      files: ['src/engine/'],
      mayImport: ['src/common/', 'src/kvcache/', 'src/engine/'],
      why: 'the engine never imports the server, the config edge or the CLIs (they pass it plain options).',
    },
    {
      files: ['src/server/'],
      mayImport: ['src/common/', 'src/server/', 'src/config.ts', ...ENGINE_API],
      mayImportTypes: ENGINE_API_TYPES,
      why: `src/server uses the engine only through ${ENGINE_API.join(', ')} and the types of ${ENGINE_API_TYPES.join(', ')}.`,
    },
  ],
  packages: {
    'onnxruntime-node': { owners: ['src/engine/onnx/session.ts'], why: 'one module owns the native runtime' },
    fastify: { owners: ['src/server/'], why: 'HTTP stays in the server' },
    'prom-client': { owners: ['src/server/metrics.ts'], why: 'one module owns the metric registry' },
    pino: { owners: ['src/server/'], why: 'the server owns logging' },
    yaml: { owners: ['src/config.ts'], why: 'config files are read at the config edge' },
    '@huggingface/tokenizers': { owners: ['src/server/tokenizer/'], why: 'tokenization lives in src/server/tokenizer' },
    '@huggingface/jinja': { owners: ['src/server/tokenizer/'], why: 'chat templates live in src/server/tokenizer' },
    '@mlc-ai/web-xgrammar': { owners: ['src/engine/structured/xgrammar_module.ts'], why: 'one module loads the XGrammar WASM bundle' },
  },
};

/** Only these files read the environment (no-restricted-properties on process.env elsewhere in src/). */
export const ENV_READERS = ['src/config.ts', 'src/config_schema.ts'];
