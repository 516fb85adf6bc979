// Works around a gap in XGrammar 0.1.27's JSON-schema converter: a string with minLength or
// maxLength (and no pattern or format) becomes `"\"" [^"\\\r\n]{min,max} "\""`, which admits the
// control characters U+0000-U+001F that JSON forbids inside strings (seen: a random-logits run
// produced "road\u001d"). We give such strings the equivalent pattern with those characters
// excluded, which XGrammar converts exactly. Like XGrammar's own rule, it admits no escapes.
import type { GrammarSpec, StructuralTagFormat } from './grammar_spec.ts';

type Json = unknown;

/** Keys whose values are data, not subschemas. */
const DATA_KEYWORDS = new Set(['enum', 'const', 'default', 'examples', 'required']);

export function patchJsonSchema(schema: Json): Json {
  if (Array.isArray(schema)) return schema.map(patchJsonSchema);
  if (schema === null || typeof schema !== 'object') return schema;
  const node = schema as Record<string, Json>;
  const out: Record<string, Json> = {};
  for (const [key, value] of Object.entries(node)) out[key] = DATA_KEYWORDS.has(key) ? value : patchJsonSchema(value);
  const lengthLimited = typeof node.minLength === 'number' || typeof node.maxLength === 'number';
  if (node.type === 'string' && lengthLimited && node.pattern === undefined && node.format === undefined) {
    const min = typeof node.minLength === 'number' ? node.minLength : 0;
    const max = typeof node.maxLength === 'number' ? String(node.maxLength) : '';
    out.pattern = `^[^\\x00-\\x1f"\\\\]{${min},${max}}$`;
    delete out.minLength;
    delete out.maxLength;
  }
  return out;
}

/** The spec with every JSON schema in it patched (JSON text that does not parse is left as is). */
export function patchGrammarSpec(grammar: GrammarSpec): GrammarSpec {
  if (grammar.kind === 'json_schema') {
    let parsed: Json;
    try {
      parsed = JSON.parse(grammar.schema);
    } catch {
      return grammar;
    }
    return { kind: 'json_schema', schema: JSON.stringify(patchJsonSchema(parsed)) };
  }
  if (grammar.kind === 'structural_tag') return { kind: 'structural_tag', format: patchFormat(grammar.format) };
  return grammar;
}

function patchFormat(format: StructuralTagFormat): StructuralTagFormat {
  switch (format.type) {
    case 'json_schema':
      return { type: 'json_schema', json_schema: patchJsonSchema(format.json_schema) as boolean | Record<string, unknown> };
    case 'sequence':
    case 'or':
      return { type: format.type, elements: format.elements.map(patchFormat) };
    case 'tag':
      return { ...format, content: patchFormat(format.content) };
    case 'tags_with_separator':
      return { ...format, tags: format.tags.map((t) => ({ ...t, content: patchFormat(t.content) })) };
    default:
      return format;
  }
}
