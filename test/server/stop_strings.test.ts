// Stop strings through the HTTP stack: the text ends right before the stop string, finish_reason
// is "stop" with the string as stop_reason, and streaming never leaks any part of it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../../src/server/serve.ts';
import { parseSse, startTestServer } from '../helpers/server.ts';
import { textModelDir } from '../helpers/text_model.ts';
import { at } from '../helpers/at.ts';

describe('stop strings', () => {
  let server: RunningServer;
  let full: string;
  const base = { prompt: 'The quick brown fox', max_tokens: 40, temperature: 0, ignore_eos: true };
  before(async () => {
    server = await startTestServer(textModelDir());
    const res = await server.app.inject({ method: 'POST', url: '/v1/completions', payload: base });
    full = res.json().choices[0].text;
    assert.ok(full.length >= 12, `greedy text too short to pick a stop string: ${JSON.stringify(full)}`);
  });
  after(async () => {
    await server.drainAndClose();
  });

  test('non-streamed and streamed outputs stop before the stop string', async () => {
    const mid = Math.floor(full.length / 2);
    const stop = full.slice(mid, mid + 3);
    const expected = full.slice(0, full.indexOf(stop));
    const res = await server.app.inject({ method: 'POST', url: '/v1/completions', payload: { ...base, stop: [stop, 'never-appears'] } });
    const choice = res.json().choices[0];
    assert.equal(choice.text, expected);
    assert.equal(choice.finish_reason, 'stop');
    assert.equal(choice.stop_reason, stop);
    const streamed = await server.app.inject({ method: 'POST', url: '/v1/completions', payload: { ...base, stop, stream: true } });
    const chunks = parseSse(streamed.body).events.slice(0, -1) as { choices: { text: string; finish_reason: string | null }[] }[];
    assert.equal(chunks.map((c) => at(c.choices, 0).text).join(''), expected);
    assert.equal(at(chunks.at(-1)!.choices, 0).finish_reason, 'stop');
    const usage = res.json().usage;
    assert.ok(usage.completion_tokens < 40, 'the engine stopped generating');
  });

  test('include_stop_str_in_output keeps the stop string', async () => {
    const stop = full.slice(4, 7);
    const res = await server.app.inject({ method: 'POST', url: '/v1/completions', payload: { ...base, stop, include_stop_str_in_output: true } });
    assert.equal(res.json().choices[0].text, full.slice(0, full.indexOf(stop) + stop.length));
  });
});
