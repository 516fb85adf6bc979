// Tokenizes the KJV train/validation text (tools/data/kjv.sh) with the model's tokenizer into flat
// little-endian uint16 token streams for the PyTorch trainer.
//
//   node --import tsx tools/train/tokenize.ts [--data tools/train/data] [--tokenizer models/default]
//
// Each chapter (blank-line separated paragraph of verses, one verse per line) becomes
//   BOS, tokens("verse\nverse\n...verse\n"), EOS
// so the model sees a document start like the server's prompts (the tokenizer adds BOS) and learns to
// end a chapter. Writes DATA/train.u16 and DATA/valid.u16 and prints the token counts.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadTokenizer } from '../../src/server/tokenizer/tokenizer.ts';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: 'tools/train/data' },
    tokenizer: { type: 'string', default: 'models/default' },
  },
});
const tok = loadTokenizer(values.tokenizer!);
if (!tok || tok.bosTokenId === null || tok.eosTokenId === null) throw new Error(`no tokenizer with BOS/EOS in ${values.tokenizer}`);
if (tok.vocabSize > 65536) throw new Error('vocabulary does not fit uint16');

export function chapters(text: string): string[] {
  return text
    .split(/\n\s*\n/)
    .map((c) => c.trim())
    .filter((c) => c.length > 0)
    .map((c) => `${c}\n`);
}

for (const split of ['train', 'valid']) {
  const text = readFileSync(join(values.data!, `kjv_${split}.txt`), 'utf8');
  const ids: number[] = [];
  const parts = chapters(text);
  for (const c of parts) ids.push(tok.bosTokenId, ...tok.encode(c, { addSpecialTokens: false }), tok.eosTokenId);
  writeFileSync(join(values.data!, `${split}.u16`), Buffer.from(Uint16Array.from(ids).buffer));
  console.log(`${split}: ${parts.length} chapters, ${ids.length} tokens -> ${join(values.data!, `${split}.u16`)}`);
}
