// How JSON-schema grammars are built (XGrammar's compile_json_schema arguments), in one place so
// the checker and the serving compiler agree, and so JSON inside structural tags (tool-call
// arguments) is bounded like a top-level json_schema.
import type { StructuralTagFormat } from './grammar_spec.ts';
import type { XGrammarApi } from './xgrammar_module.ts';

export const JSON_SCHEMA_OPTIONS = Object.freeze({
  /** Any whitespace between tokens (as vLLM does by default), so a model keeps its own style ... */
  anyWhitespace: true,
  indent: undefined as number | undefined,
  separators: undefined as [string, string] | undefined,
  /** No properties or items beyond the schema's (unevaluatedProperties: false), like OpenAI's strict mode. */
  strictMode: true,
  /**
   * ... but at most this many whitespace characters in a row: otherwise a weak model can emit
   * whitespace until max_tokens and never produce a complete document. 16 covers pretty-printing
   * to depth 7 at two spaces.
   */
  maxWhitespaceCount: 16,
});

/**
 * The format with every `json_schema` content replaced by that schema's EBNF built with
 * JSON_SCHEMA_OPTIONS (a `grammar` content). XGrammar 0.1.27 converts a structural tag's
 * json_schema with unlimited whitespace and takes no options for it: on random weights a forced
 * tool call's arguments ran to ~100 whitespace characters and max_tokens ended the call.
 * Testings._jsonSchemaToEBNF is the converter behind Grammar.fromJSONSchema, before normalization.
 */
export async function withBoundedJson(api: XGrammarApi, format: StructuralTagFormat): Promise<StructuralTagFormat> {
  const o = JSON_SCHEMA_OPTIONS;
  const map = (f: StructuralTagFormat) => withBoundedJson(api, f);
  switch (format.type) {
    case 'json_schema': {
      const grammar = await api.Testings._jsonSchemaToEBNF(
        JSON.stringify(format.json_schema),
        o.anyWhitespace,
        o.indent,
        o.separators,
        o.strictMode,
        o.maxWhitespaceCount,
      );
      return { type: 'grammar', grammar };
    }
    case 'sequence':
    case 'or':
      return { type: format.type, elements: await Promise.all(format.elements.map(map)) };
    case 'tag':
      return { ...format, content: await map(format.content) };
    case 'tags_with_separator':
      return { ...format, tags: await Promise.all(format.tags.map(async (t) => ({ ...t, content: await map(t.content) }))) };
    default:
      return format;
  }
}
