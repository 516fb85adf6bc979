// text_offset (completions logprobs) indexes the choice's text: a token the text does not show,
// like the BOS the tokenizer adds to a text prompt, takes no room.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../../src/server/serve.ts';
import { startTestServer } from '../helpers/server.ts';
import { textModelDir } from '../helpers/text_model.ts';

describe('completions text_offset', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer(textModelDir());
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('text_offset indexes the returned text; a BOS that is not in the echoed prompt takes no room', async () => {
    const res = await fetch(`${server.address}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Hello world', echo: true, logprobs: 1, max_tokens: 6, temperature: 0 }),
    });
    const choice = ((await res.json()) as { choices: { text: string; logprobs: { tokens: string[]; text_offset: number[] } }[] }).choices.at(0);
    assert.ok(choice !== undefined, 'one choice');
    const { tokens, text_offset: offsets } = choice.logprobs;
    const bos = server.ctx.tokenizer!.tokenText(server.ctx.tokenizer!.bosTokenId!);
    assert.equal(tokens[0], bos, 'the prompt starts with BOS');
    assert.ok(!choice.text.includes(bos), 'the echoed text does not');
    assert.equal(offsets[0], 0);
    assert.equal(offsets.length, tokens.length);
    for (const [i, token] of tokens.entries()) {
      if (i === 0) continue;
      const offset = offsets[i]!; // same length, asserted above
      assert.equal(
        choice.text.slice(offset, offset + token.length),
        token,
        `token ${i} ${JSON.stringify(token)} at ${offset} in ${JSON.stringify(choice.text)}`,
      );
    }
  });
});
