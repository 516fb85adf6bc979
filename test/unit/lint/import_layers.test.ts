// The layer rule (tools/lint/import_layers.js) against the real table (tools/lint/layers.js): each
// boundary accepts what it should and rejects one import across it. `npm run lint` applies the same
// table to the tree; this file shows the rule can fail.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ESLint, RuleTester } from 'eslint';
import tseslint from 'typescript-eslint';
import importLayers from '../../../tools/lint/import_layers.js';
import { ENV_READERS, LAYERS } from '../../../tools/lint/layers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

RuleTester.describe = describe;
RuleTester.it = it;
const tester = new RuleTester({ languageOptions: { parser: tseslint.parser, sourceType: 'module' } });
const options = [{ root: ROOT, ...LAYERS }];

const ok = (file: string, code: string) => ({ filename: path.join(ROOT, file), code, options });
const bad = (file: string, code: string, messageId: 'layer' | 'package' | 'outsideSource') => ({ ...ok(file, code), errors: [{ messageId }] });

tester.run('layers/imports', importLayers, {
  valid: [
    ok('src/kvcache/block_pool.ts', "import { assert } from '../common/errors.ts';"),
    ok('src/kvcache/block_pool.ts', "import type { BlockId } from './types.ts'; import { createHash } from 'node:crypto';"),
    ok('src/engine/checkpoint/weights.ts', "import { readSafetensors } from './safetensors.ts'; import { assert } from '../../common/errors.ts';"),
    ok('src/engine/onnx/session.ts', "import * as ort from 'onnxruntime-node';"),
    ok('src/engine/model/mla.ts', "import { buildGraph } from '../onnx/graph_builder.ts'; import { PagedKVStorage } from '../../kvcache/paged_kv_storage.ts';"),
    ok('src/engine/model/deepseek_model.ts', "import type { StepProfiler } from '../step_profiler.ts'; import { gatherRows } from '../quant/rows.ts';"),
    ok('src/server/metrics.ts', "import { Registry } from 'prom-client'; import type { FastifyInstance } from 'fastify';"),
    ok(
      'src/server/context.ts',
      "import { resolveSamplingParams } from '../engine/sampling/sampling_params.ts'; import { EngineClient } from '../engine/engine_client.ts';",
    ),
    ok('src/server/generation.ts', "import type { RequestOutputDelta } from '../engine/request.ts';"),
    ok('src/server/routes/shared.ts', "import { type ModelInfo } from '../../engine/worker/messages.ts';"),
    ok('src/server/serve.ts', "import { ConfigError } from '../config.ts';"),
    ok(
      'src/cli/check.ts',
      "import { createModelExecutor } from '../engine/model_executor.ts'; import { loadTokenizer } from '../server/tokenizer/tokenizer.ts';",
    ),
    ok('test/engine/engine_core.test.ts', "import * as ort from 'onnxruntime-node'; import { golden } from '../helpers/golden.ts';"),
  ],
  invalid: [
    bad('src/common/errors.ts', "import type { Request } from '../engine/request.ts';", 'layer'),
    bad('src/kvcache/block_pool.ts', "import { assert } from '../engine/errors.ts';", 'layer'),
    bad('src/engine/model/deepseek_model.ts', "import type { Scheduler } from '../scheduler.ts';", 'layer'),
    bad('src/engine/attention/sparse_mla.ts', "import { sampleToken } from '../sampling/sampler.ts';", 'layer'),
    bad('src/engine/checkpoint/weights.ts', "import { Mla } from '../model/mla.ts';", 'layer'),
    bad('src/engine/onnx/ops.ts', "import type { LayerWeights } from '../model/types.ts';", 'layer'),
    bad('src/engine/scheduler.ts', "export * from '../server/metrics.ts';", 'layer'),
    bad('src/engine/engine_core.ts', "type Ctx = import('../server/context.ts').ServerContext;", 'layer'),
    bad('src/engine/worker/engine_worker.ts', "import { loadConfig } from '../../config.ts';", 'layer'),
    bad('src/server/metrics.ts', "import type { StepStats } from '../engine/engine_core.ts';", 'layer'),
    bad('src/server/generation.ts', "import { Request } from '../engine/request.ts';", 'layer'),
    bad('src/server/serve.ts', "import { readModelConfig } from '../engine/checkpoint/config.ts';", 'layer'),
    bad('src/engine/model/mla.ts', "import * as ort from 'onnxruntime-node';", 'package'),
    bad('src/engine/engine_core.ts', "import type { FastifyInstance } from 'fastify';", 'package'),
    bad('src/server/app.ts', "import { Counter } from 'prom-client';", 'package'),
    bad('src/kvcache/block_pool.ts', "import { check } from '../../test/helpers/golden.ts';", 'outsideSource'),
    bad('src/engine/engine_core.ts', "const run = () => import('../../bench/run.ts');", 'outsideSource'),
  ],
});

test('the lint config applies the layer rule to src/ and lets only the config edge read process.env', async () => {
  const eslint = new ESLint({ cwd: ROOT });
  const rules = async (file: string) => ((await eslint.calculateConfigForFile(path.join(ROOT, file))) as { rules: Record<string, unknown[]> }).rules;
  const severity = (rule: unknown[] | undefined) => rule?.[0];
  for (const file of ['src/kvcache/block_pool.ts', 'src/server/app.ts', 'src/engine/onnx/session.ts']) {
    const r = await rules(file);
    assert.equal(severity(r['layers/imports']), 2, file);
    assert.equal(severity(r['no-restricted-properties']), 2, file);
  }
  for (const file of ENV_READERS) assert.equal(severity((await rules(file))['no-restricted-properties']), 0, file);
  assert.equal((await rules('test/unit/lint/import_layers.test.ts'))['layers/imports'], undefined);
});
