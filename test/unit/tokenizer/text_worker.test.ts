// The text worker encodes exactly as the tokenizer does inline, renders chat prompts to the same
// ids, and keeps serving its queue after a job overran its deadline.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { BoundedTokenizer, INLINE_ENCODE_MAX_CHARS } from '../../../src/server/tokenizer/bounded_tokenizer.ts';
import { TextWorkerClient } from '../../../src/server/tokenizer/text_worker_client.ts';
import { loadTokenizer } from '../../../src/server/tokenizer/tokenizer.ts';
import { MULTILINGUAL, trainedTokenizerDir } from './helpers.ts';

describe('TextWorkerClient', () => {
  const dir = trainedTokenizerDir();
  const inner = loadTokenizer(dir)!;
  const worker = new TextWorkerClient({ modelDir: dir, maxChars: 1e6 }, 500);
  const bounded = new BoundedTokenizer(inner, 1e6 / inner.maxTokenChars, worker);
  after(() => worker.close());

  it('encodes long texts in the worker to exactly the inline ids', async () => {
    const text = MULTILINGUAL.repeat(Math.ceil((2 * INLINE_ENCODE_MAX_CHARS) / MULTILINGUAL.length));
    assert.ok(text.length > INLINE_ENCODE_MAX_CHARS);
    for (const addSpecialTokens of [true, false]) {
      assert.deepEqual(await bounded.encodeAsync(text, { addSpecialTokens }), inner.encode(text, { addSpecialTokens }));
    }
  });

  it('renders and encodes chat prompts as the inline path does', async () => {
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: MULTILINGUAL },
    ];
    const options = { addGenerationPrompt: true };
    assert.deepEqual(await bounded.encodeChat(messages, options), inner.encode(inner.applyChatTemplate(messages, options), { addSpecialTokens: false }));
  });

  it('reports template errors as the inline path does, and serves the queue after them', async () => {
    await assert.rejects(bounded.encodeChat([{ role: 'wizard', content: 'x' }], { addGenerationPrompt: true }), /chat template failed|roles/);
    assert.deepEqual(await bounded.encodeAsync('x'.repeat(INLINE_ENCODE_MAX_CHARS + 1)), inner.encode('x'.repeat(INLINE_ENCODE_MAX_CHARS + 1)));
  });
});
