import assert from 'node:assert/strict';
import { test } from 'node:test';
import { z } from 'zod';
import { EngineError } from '../../../src/common/errors.ts';
import { structuredOutputFields, structuredOutputOf } from '../../../src/server/structured/request_grammar.ts';
import { at } from '../../helpers/at.ts';

const schema = z.strictObject(structuredOutputFields);
const of = (body: object) => structuredOutputOf(schema.parse(body));

test('each spelling maps to its grammar and names its field', () => {
  const person = { type: 'object', properties: { name: { type: 'string' } } };
  assert.deepEqual(of({ response_format: { type: 'json_object' } }), { param: 'response_format', grammar: { kind: 'json_object' } });
  assert.deepEqual(of({ response_format: { type: 'json_schema', json_schema: { name: 'p', schema: person, strict: true } } }), {
    param: 'response_format',
    grammar: { kind: 'json_schema', schema: JSON.stringify(person) },
  });
  assert.deepEqual(of({ structured_outputs: { json: JSON.stringify(person) } }), {
    param: 'structured_outputs.json',
    grammar: { kind: 'json_schema', schema: JSON.stringify(person) },
  });
  assert.deepEqual(of({ structured_outputs: { regex: '\\d+' } }), { param: 'structured_outputs.regex', grammar: { kind: 'regex', pattern: '\\d+' } });
  assert.deepEqual(of({ structured_outputs: { choice: ['a', 'b'] } }), {
    param: 'structured_outputs.choice',
    grammar: { kind: 'choice', choices: ['a', 'b'] },
  });
  assert.deepEqual(of({ structured_outputs: { grammar: 'root ::= "x"' } }), {
    param: 'structured_outputs.grammar',
    grammar: { kind: 'ebnf', grammar: 'root ::= "x"' },
  });
  assert.deepEqual(of({ guided_json: person }), { param: 'guided_json', grammar: { kind: 'json_schema', schema: JSON.stringify(person) } });
  assert.deepEqual(of({ guided_regex: 'a|b' }), { param: 'guided_regex', grammar: { kind: 'regex', pattern: 'a|b' } });
  assert.deepEqual(of({ guided_choice: ['x'] }), { param: 'guided_choice', grammar: { kind: 'choice', choices: ['x'] } });
  assert.deepEqual(of({ guided_grammar: 'root ::= "y"', guided_decoding_backend: 'xgrammar' }), {
    param: 'guided_grammar',
    grammar: { kind: 'ebnf', grammar: 'root ::= "y"' },
  });
  assert.equal(of({ response_format: { type: 'text' } }), null);
  assert.equal(of({}), null);
});

test('two constraints, bad JSON text and unsupported options are 400s naming the field', () => {
  assert.throws(
    () => of({ response_format: { type: 'json_object' }, guided_regex: 'x' }),
    (e: unknown) => e instanceof EngineError && e.param === 'guided_regex' && /response_format is already set/.test(e.message),
  );
  assert.throws(
    () => of({ guided_json: '{"type": ' }),
    (e: unknown) => e instanceof EngineError && e.param === 'guided_json' && /not valid JSON/.test(e.message),
  );
  const refused = (body: object, path: string) => {
    const r = schema.safeParse(body);
    assert.ok(!r.success);
    assert.equal(at(r.error.issues, 0, 'issue').path.join('.'), path);
  };
  refused({ guided_decoding_backend: 'outlines' }, 'guided_decoding_backend');
  refused({ structured_outputs: { regex: 'a', whitespace_pattern: ' ' } }, 'structured_outputs.whitespace_pattern');
  refused({ response_format: { type: 'json_schema', json_schema: { name: 'has space', schema: {} } } }, 'response_format.json_schema.name');
  refused({ guided_choice: [] }, 'guided_choice');
});
