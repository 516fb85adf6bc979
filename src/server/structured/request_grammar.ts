// The request fields that constrain the output, for /v1/completions and /v1/chat/completions:
// OpenAI's response_format, vLLM's structured_outputs, and vLLM's older guided_* names. At most one
// constraint per request; options XGrammar-with-our-settings cannot honour are refused by name.
import { z } from 'zod';
import { EngineError } from '../../common/errors.ts';
import type { GrammarSpec, StructuredOutputSpec } from '../../engine/structured/grammar_spec.ts';

const jsonSchemaValue = z.union([z.record(z.string(), z.unknown()), z.boolean()]);
/** vLLM accepts a schema as an object or as its JSON text. */
const jsonSchemaOrText = z.union([jsonSchemaValue, z.string()]);
const choices = z.array(z.string()).min(1, 'must list at least one choice').max(4096);

/** Refused unless absent or null/false (the default behaviour). */
const notSupported = (why: string) => z.unknown().refine((v) => v === undefined || v === null || v === false, { message: `not supported: ${why}` });

export const responseFormatSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('text') }),
  z.strictObject({ type: z.literal('json_object') }),
  z.strictObject({
    type: z.literal('json_schema'),
    json_schema: z.strictObject({
      name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, underscores or dashes'),
      description: z.string().optional(),
      schema: jsonSchemaValue.optional(),
      strict: z.boolean().nullish(),
    }),
  }),
]);

export const structuredOutputsSchema = z.strictObject({
  json: jsonSchemaOrText.nullish(),
  regex: z.string().nullish(),
  choice: choices.nullish(),
  grammar: z.string().nullish(),
  json_object: z.boolean().nullish(),
  structural_tag: notSupported('structural_tag (use tools with tool_choice)'),
  disable_any_whitespace: notSupported('disable_any_whitespace (JSON output allows up to 16 whitespace characters between tokens)'),
  disable_additional_properties: notSupported('disable_additional_properties (schemas are already strict: no properties beyond the schema)'),
  disable_fallback: z.boolean().nullish(),
  whitespace_pattern: notSupported('whitespace_pattern'),
});

/** Spread into a request schema: the constraint fields, each optional. */
export const structuredOutputFields = {
  response_format: responseFormatSchema.nullish(),
  structured_outputs: structuredOutputsSchema.nullish(),
  guided_json: jsonSchemaOrText.nullish(),
  guided_regex: z.string().nullish(),
  guided_choice: choices.nullish(),
  guided_grammar: z.string().nullish(),
  guided_decoding_backend: z.enum(['xgrammar', 'auto']).nullish(),
  guided_whitespace_pattern: notSupported('guided_whitespace_pattern'),
};

export type StructuredOutputFields = { [K in keyof typeof structuredOutputFields]?: z.infer<(typeof structuredOutputFields)[K]> };

function schemaText(value: unknown, param: string): string {
  if (typeof value !== 'string') return JSON.stringify(value);
  try {
    JSON.parse(value);
  } catch (err) {
    throw new EngineError('DSV_ERR_INVALID_REQUEST', `${param}: not valid JSON: ${err instanceof Error ? err.message : String(err)}`, { param });
  }
  return value;
}

/** Every constraint the request sets, as [field, grammar]. */
function constraintsOf(f: StructuredOutputFields): [string, GrammarSpec][] {
  const found: [string, GrammarSpec][] = [];
  const rf = f.response_format;
  if (rf?.type === 'json_object') found.push(['response_format', { kind: 'json_object' }]);
  if (rf?.type === 'json_schema') {
    const schema = rf.json_schema.schema;
    found.push(['response_format', schema === undefined ? { kind: 'json_object' } : { kind: 'json_schema', schema: JSON.stringify(schema) }]);
  }
  const so = f.structured_outputs;
  if (so) {
    if (so.json != null) found.push(['structured_outputs.json', { kind: 'json_schema', schema: schemaText(so.json, 'structured_outputs.json') }]);
    if (so.regex != null) found.push(['structured_outputs.regex', { kind: 'regex', pattern: so.regex }]);
    if (so.choice != null) found.push(['structured_outputs.choice', { kind: 'choice', choices: so.choice }]);
    if (so.grammar != null) found.push(['structured_outputs.grammar', { kind: 'ebnf', grammar: so.grammar }]);
    if (so.json_object) found.push(['structured_outputs.json_object', { kind: 'json_object' }]);
  }
  if (f.guided_json != null) found.push(['guided_json', { kind: 'json_schema', schema: schemaText(f.guided_json, 'guided_json') }]);
  if (f.guided_regex != null) found.push(['guided_regex', { kind: 'regex', pattern: f.guided_regex }]);
  if (f.guided_choice != null) found.push(['guided_choice', { kind: 'choice', choices: f.guided_choice }]);
  if (f.guided_grammar != null) found.push(['guided_grammar', { kind: 'ebnf', grammar: f.guided_grammar }]);
  return found;
}

/** The request's output constraint, or null; a 400 naming the second field when there are two. */
export function structuredOutputOf(f: StructuredOutputFields): StructuredOutputSpec | null {
  const found = constraintsOf(f);
  if (found.length > 1) {
    const [first, second] = [found[0]![0], found[1]![0]];
    throw new EngineError('DSV_ERR_INVALID_REQUEST', `${second}: only one output constraint per request (${first} is already set)`, { param: second });
  }
  if (found.length === 0) return null;
  const [param, grammar] = found[0]!;
  return { grammar, param };
}
