import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseToolCalls, ToolCallStreamParser, type ToolParseEvent } from '../../../src/server/tools/tool_call_parser.ts';
import { at } from '../../helpers/at.ts';

const ids = () => {
  let n = 0;
  return () => `call_${n++}`;
};

const V3 =
  'Let me look. <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>lookup_verse\n```json\n{"book": "Genesis", "chapter": 1, "verse": 3}\n```<｜tool▁call▁end｜>\n' +
  '<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>';
const V31 =
  '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>lookup_verse<｜tool▁sep｜>{"book": "Exodus"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>x<｜tool▁sep｜>{"a":"```"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>';

test('V3 markup: content before the calls, each call with its name and exact arguments', () => {
  assert.deepEqual(parseToolCalls(V3, ids()), {
    content: 'Let me look. ',
    toolCalls: [
      { id: 'call_0', name: 'lookup_verse', arguments: '{"book": "Genesis", "chapter": 1, "verse": 3}' },
      { id: 'call_1', name: 'get_time', arguments: '{}' },
    ],
  });
});

test('V3.1 markup (name before the separator, bare arguments)', () => {
  assert.deepEqual(parseToolCalls(V31, ids()), {
    content: null,
    toolCalls: [
      { id: 'call_0', name: 'lookup_verse', arguments: '{"book": "Exodus"}' },
      { id: 'call_1', name: 'x', arguments: '{"a":"```"}' },
    ],
  });
});

test('text without markup is content; a lone "<" is only held back until it cannot start markup', () => {
  assert.deepEqual(parseToolCalls('In the beginning <b> God', ids()), { content: 'In the beginning <b> God', toolCalls: [] });
  const p = new ToolCallStreamParser(ids());
  assert.deepEqual(p.push('a <'), [{ type: 'content', text: 'a ' }]);
  assert.deepEqual(p.push('b'), [{ type: 'content', text: '<b' }]);
});

function streamed(text: string, cuts: readonly number[]): ToolParseEvent[] {
  const p = new ToolCallStreamParser(ids());
  const events: ToolParseEvent[] = [];
  let from = 0;
  for (const cut of [...cuts, text.length]) {
    events.push(...p.push(text.slice(from, cut)));
    from = cut;
  }
  return [...events, ...p.finish()];
}

function collect(events: readonly ToolParseEvent[]) {
  let content = '';
  const calls: { id: string; name: string; arguments: string }[] = [];
  for (const e of events) {
    if (e.type === 'content') content += e.text;
    else if (e.type === 'call_start') calls.push({ id: e.id, name: e.name, arguments: '' });
    else at(calls, e.index, 'call').arguments += e.text;
  }
  return { content: content || null, toolCalls: calls };
}

test('streaming at every split point (and char by char) gives the whole-text parse; no markup leaks', () => {
  for (const text of [V3, V31]) {
    const whole = parseToolCalls(text, ids());
    for (let cut = 0; cut <= text.length; cut++) assert.deepEqual(collect(streamed(text, [cut])), whole, `cut at ${cut}`);
    const charByChar = streamed(
      text,
      [...text].map((_, i) => i),
    );
    assert.deepEqual(collect(charByChar), whole);
    for (const e of charByChar) if (e.type !== 'call_start') assert.ok(!/[｜]/.test(e.text), `markup leaked: ${JSON.stringify(e)}`);
    // The name arrives before any of its arguments.
    assert.equal(charByChar.findIndex((e) => e.type === 'call_arguments') > charByChar.findIndex((e) => e.type === 'call_start'), true);
  }
});

test('output cut off inside a call: the arguments so far stay arguments', () => {
  const cut = V3.indexOf('"chapter"');
  assert.deepEqual(parseToolCalls(V3.slice(0, cut), ids()), {
    content: 'Let me look. ',
    toolCalls: [{ id: 'call_0', name: 'lookup_verse', arguments: '{"book": "Genesis", ' }],
  });
});

test('output cut off inside closing or opening markup, even mid-character (the flush spells it U+FFFD): no markup leaks into arguments or content', () => {
  const firstCall = V3.slice(0, V3.indexOf('<｜tool▁call▁end｜>'));
  const whole = parseToolCalls(`${firstCall}<｜tool▁call▁end｜>`, ids());
  for (const [tail, what] of [
    ['\n```<｜tool▁call\uFFFD', 'the call end, cut after "call"'],
    ['\n```<\uFFFD', 'the call end, cut inside "｜"'],
    ['<｜tool▁call▁end｜>\n<｜tool\uFFFD', 'the next call begin'],
    ['<｜tool▁call▁end｜><｜tool▁calls▁e', 'the calls end'],
  ] as const) {
    const text = `${firstCall.slice(0, firstCall.length - (tail.startsWith('\n```') ? '\n```'.length : 0))}${tail}`;
    assert.deepEqual(parseToolCalls(text, ids()), whole, what);
    // The cut character arrives with the last delta (the detokenizer's flush), after everything else.
    const at = text.length - 1;
    assert.deepEqual(collect(streamed(text, [at])), whole, `${what}, streamed`);
  }
  assert.deepEqual(parseToolCalls('The verse\uFFFD', ids()), { content: 'The verse\uFFFD', toolCalls: [] }, 'a cut character in plain content stays content');
});
