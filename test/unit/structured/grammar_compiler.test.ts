// XGrammar through StructuredOutputCompiler on the default model's vocabulary: every grammar kind
// forces well-formed output from random logits, bad specs are 400s naming the field (and do not
// break the instance), the compile cache, special tokens and vocabulary padding.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { EngineError } from '../../../src/common/errors.ts';
import { StructuredOutputCompiler } from '../../../src/engine/structured/grammar_compiler.ts';
import type { GrammarSpec } from '../../../src/engine/structured/grammar_spec.ts';
import { readEncodedVocab } from '../../../src/engine/structured/tokenizer_vocab.ts';
import { DEFAULT_MODEL_DIR, EOS, VOCAB_SIZE, decodeWithGrammar, defaultCompiler, defaultTokenizer } from './helpers.ts';
import { at } from '../../helpers/at.ts';

const tokenizer = defaultTokenizer();
const spec = (grammar: GrammarSpec, param = 'response_format') => ({ grammar, param });

const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 6 },
    age: { type: 'integer', minimum: 0, maximum: 120 },
    role: { enum: ['king', 'prophet', 'scribe'] },
    alive: { type: 'boolean' },
  },
  required: ['name', 'age', 'role', 'alive'],
  additionalProperties: false,
};

async function generate(grammar: GrammarSpec, seed: number, maxTokens = 200): Promise<string> {
  const matcher = await (await defaultCompiler()).createMatcher(spec(grammar));
  try {
    const { ids, terminated } = await decodeWithGrammar(matcher, seed, maxTokens);
    assert.ok(terminated, `grammar did not finish in ${maxTokens} tokens: ${JSON.stringify(tokenizer.decode(ids))}`);
    return tokenizer.decode(ids, { skipSpecialTokens: false });
  } finally {
    matcher.dispose();
  }
}

// Seeds 1 and 2 hit XGrammar's length-limited string rule, which admits control characters
// (json_schema_patch.ts works around it).
test('a JSON schema forces valid, schema-conforming JSON from random logits', async () => {
  for (let seed = 1; seed <= 4; seed++) {
    const text = await generate({ kind: 'json_schema', schema: JSON.stringify(PERSON) }, seed);
    const value = JSON.parse(text) as Record<string, unknown>;
    assert.deepEqual(Object.keys(value).sort(), ['age', 'alive', 'name', 'role']);
    assert.ok(typeof value.name === 'string' && value.name.length >= 1 && value.name.length <= 6, text);
    assert.ok(Number.isInteger(value.age) && (value.age as number) >= 0 && (value.age as number) <= 120, text);
    assert.ok(['king', 'prophet', 'scribe'].includes(value.role as string), text);
    assert.equal(typeof value.alive, 'boolean');
  }
});

test('regex, choice and EBNF grammars', async () => {
  const date = await generate({ kind: 'regex', pattern: '(19|20)[0-9]{2}-(0[1-9]|1[0-2])' }, 7);
  assert.match(date, /^(19|20)\d{2}-(0[1-9]|1[0-2])$/);
  const choice = await generate({ kind: 'choice', choices: ['Genesis', 'Exodus', 'say "amen"'] }, 8);
  assert.ok(['Genesis', 'Exodus', 'say "amen"'].includes(choice), choice);
  const ebnf = await generate({ kind: 'ebnf', grammar: 'root ::= "verse " [1-9] [0-9]? ("." [1-9])?' }, 9);
  assert.match(ebnf, /^verse [1-9][0-9]?(\.[1-9])?$/);
});

test('json_object allows exactly JSON', async () => {
  const matcher = await (await defaultCompiler()).createMatcher(spec({ kind: 'json_object' }));
  const mask = await matcher.nextTokenBitmask();
  const allowed = (id: number) => ((at(mask, id >> 5) >>> (id & 31)) & 1) === 1;
  const letterA = tokenizer.encode('a', { addSpecialTokens: false });
  assert.equal(letterA.length, 1);
  assert.ok(!allowed(at(letterA, 0)), 'a bare letter cannot start JSON');
  assert.ok(allowed(at(tokenizer.encode('{', { addSpecialTokens: false }), 0)));
  assert.ok(!allowed(EOS), 'empty output is not JSON');
  matcher.dispose();
});

test('special tokens never appear inside matched text; EOS only where the grammar may end', async () => {
  const matcher = await (await defaultCompiler()).createMatcher(spec({ kind: 'ebnf', grammar: 'root ::= "\\"" [^"]* "\\""' }));
  assert.ok(matcher.acceptToken(at(tokenizer.encode('"', { addSpecialTokens: false }), 0)));
  const inside = await matcher.nextTokenBitmask();
  for (const id of tokenizer.specialTokenIds) assert.equal((at(inside, id >> 5) >>> (id & 31)) & 1, 0, `special token ${id} allowed inside a string`);
  assert.ok(matcher.acceptToken(at(tokenizer.encode('"', { addSpecialTokens: false }), 0)));
  const end = await matcher.nextTokenBitmask();
  const allowedIds = [...Array(VOCAB_SIZE).keys()].filter((id) => (at(end, id >> 5) >>> (id & 31)) & 1);
  assert.deepEqual(allowedIds, [EOS]);
  assert.ok(matcher.acceptToken(EOS));
  assert.ok(matcher.isTerminated);
  matcher.dispose();
});

test('a vocabulary padded beyond the tokenizer never allows the padding ids', async () => {
  const padded = 4096 + 40;
  const compiler = await StructuredOutputCompiler.create(readEncodedVocab(path.join(DEFAULT_MODEL_DIR, 'tokenizer.json'), padded), [EOS]);
  const matcher = await compiler.createMatcher(spec({ kind: 'ebnf', grammar: 'root ::= [a-z ]*' }));
  const mask = await matcher.nextTokenBitmask();
  assert.equal(mask.length, Math.ceil(padded / 32));
  for (let id = 4096; id < padded; id++) assert.equal((at(mask, id >> 5) >>> (id & 31)) & 1, 0, `padding id ${id} allowed`);
  matcher.dispose();
  compiler.dispose();
});

test("bad specs are 400s naming the field and XGrammar's reason; the compiler keeps working", async () => {
  const compiler = await defaultCompiler();
  const cases: [GrammarSpec, RegExp][] = [
    [{ kind: 'json_schema', schema: '{"type": "nope"}' }, /Unsupported type "nope"/],
    [{ kind: 'json_schema', schema: '{"type": "object"' }, /JSON/],
    [{ kind: 'json_schema', schema: '{"properties": {"a": {"$ref": "#/$defs/missing"}}}' }, /missing/],
    [{ kind: 'regex', pattern: '[0-9' }, /Unclosed '\['/],
    [{ kind: 'json_schema', schema: '{"type": "string", "pattern": "^a+$", "maxLength": 3}' }, /would ignore.*minLength\/maxLength/],
    [{ kind: 'ebnf', grammar: 'root ::= "a" b' }, /Rule "b" is not defined/],
  ];
  for (const [grammar, reason] of cases) {
    await assert.rejects(compiler.createMatcher(spec(grammar, 'structured_outputs.json')), (err: unknown) => {
      assert.ok(err instanceof EngineError && err.code === 'DSV_ERR_INVALID_REQUEST', String(err));
      assert.equal(err.param, 'structured_outputs.json');
      assert.match(err.message, /^structured_outputs\.json: XGrammar (cannot compile|would ignore part of)/);
      assert.match(err.message, reason);
      return true;
    });
  }
  const text = await generate({ kind: 'choice', choices: ['yes', 'no'] }, 3);
  assert.ok(text === 'yes' || text === 'no');
});

test('compiled grammars are cached by spec; eviction does not break live matchers', async () => {
  const compiler = await StructuredOutputCompiler.create(readEncodedVocab(path.join(DEFAULT_MODEL_DIR, 'tokenizer.json'), VOCAB_SIZE), [EOS], 1);
  const a = spec({ kind: 'choice', choices: ['alpha', 'omega'] });
  const first = await compiler.createMatcher(a);
  (await compiler.createMatcher(a)).dispose();
  assert.deepEqual([compiler.compilerStats.numCompiles, compiler.compilerStats.numCacheHits], [1, 1]);
  (await compiler.createMatcher(spec({ kind: 'choice', choices: ['beta'] }))).dispose();
  assert.equal(compiler.numCached, 1);
  const { ids, terminated } = await decodeWithGrammar(first, 5, 20);
  assert.ok(terminated);
  assert.ok(['alpha', 'omega'].includes(tokenizer.decode(ids)));
  first.dispose();
  compiler.dispose();
});

test('JSON inside a structural tag (tool-call arguments) allows at most 16 whitespace characters in a row, like a top-level schema', async () => {
  const compiler = await defaultCompiler();
  const args = { type: 'object', properties: { book: { enum: ['Genesis', 'John'] } }, required: ['book'], additionalProperties: false };
  const grammar: GrammarSpec = {
    kind: 'structural_tag',
    format: { type: 'tag', begin: '<call>', content: { type: 'json_schema', json_schema: args }, end: '</call>' },
  };
  const accepts = async (text: string): Promise<boolean> => {
    const matcher = await compiler.createMatcher(spec(grammar, 'tools'));
    try {
      return tokenizer.encode(text, { addSpecialTokens: false }).every((id) => matcher.acceptToken(id)) && matcher.acceptToken(EOS);
    } finally {
      matcher.dispose();
    }
  };
  assert.equal(await accepts(`<call>{"book":${' '.repeat(16)}"John"}</call>`), true);
  assert.equal(await accepts(`<call>{"book":\n${'\t'.repeat(15)}"John"}</call>`), true);
  assert.equal(await accepts(`<call>{"book":${' '.repeat(17)}"John"}</call>`), false);
  assert.equal(await accepts('<call>{"book": "Mark"}</call>'), false, 'the schema still binds');
  const { ids, terminated } = await decodeWithGrammar(await compiler.createMatcher(spec(grammar, 'tools')), 11, 60);
  assert.ok(terminated);
  const text = tokenizer.decode(ids, { skipSpecialTokens: false });
  assert.ok(['Genesis', 'John'].includes((JSON.parse(text.slice('<call>'.length, -'</call>'.length)) as { book: string }).book), text);
});
