// stringifyInSlices is JSON.stringify, built per top-level array element with event-loop turns.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isGenerationBody, stringifyInSlices } from '../../src/server/json_slices.ts';

describe('stringifyInSlices', () => {
  it('equals JSON.stringify', async () => {
    const values: Record<string, unknown>[] = [
      {},
      { a: 1, b: 'x"\\\n\u2028😀', c: null, d: undefined, e: () => 1, f: [], g: [1, undefined, () => 2, { h: [true] }], i: { j: [1, 2] } },
      {
        id: 'cmpl-1',
        object: 'text_completion',
        choices: [
          {
            index: 0,
            text: 'héllo',
            logprobs: { tokens: ['a'], token_logprobs: [null, -1.5e-300], top_logprobs: [null, { a: -0.1 }], text_offset: [0] },
            finish_reason: 'length',
          },
        ],
        usage: { prompt_tokens: 3 },
      },
    ];
    for (const v of values) assert.equal(await stringifyInSlices(v, 8), JSON.stringify(v));
  });

  it('yields to the event loop between slices of a large array', async () => {
    const body = { choices: Array.from({ length: 100 }, (_, i) => ({ index: i, text: 'x'.repeat(1000) })) };
    // Another task on the check queue runs once per turn of the loop that serialising gives up.
    let turns = 0;
    let serialising = true;
    const other = () => {
      if (!serialising) return;
      turns++;
      setImmediate(other);
    };
    setImmediate(other);
    const json = await stringifyInSlices(body, 10_000); // ~103,000 characters: ~10 slices
    serialising = false;
    assert.equal(json, JSON.stringify(body));
    assert.ok(turns >= 9, `only ${turns} other tasks ran while serialising`);
  });

  it('recognises generation bodies', () => {
    assert.ok(isGenerationBody({ choices: [] }));
    assert.ok(!isGenerationBody({ error: {} }));
    assert.ok(!isGenerationBody([{ choices: [] }]));
    assert.ok(!isGenerationBody('{"choices": []}'));
  });
});
