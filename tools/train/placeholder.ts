// Writes a seeded random-weight BF16 checkpoint of the default model's final shape into a model
// directory (config.json + model.safetensors; the tokenizer files already there are kept). Used as a
// loadable stand-in for models/default while the real model trains.
//
//   node --import tsx tools/train/placeholder.ts [--config tools/train/config_default.json] [--out models/default] [--seed 6]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { randomCheckpoint } from '../checkpoint/random_weights.ts';
import { writeCheckpoint, type HfConfig } from '../checkpoint/safetensors_writer.ts';

const { values } = parseArgs({
  options: {
    config: { type: 'string', default: 'tools/train/config_default.json' },
    out: { type: 'string', default: 'models/default' },
    seed: { type: 'string', default: '6' },
  },
});
const config = JSON.parse(readFileSync(values.config!, 'utf8')) as HfConfig;
const tensors = randomCheckpoint(config, { seed: Number(values.seed) });
writeCheckpoint(values.out!, config, tensors, { dtype: 'BF16' });
let params = 0;
for (const t of tensors.values()) params += t.data.length;
console.log(`wrote ${values.out}: ${tensors.size} tensors, ${params} parameters (BF16, seed ${values.seed})`);
