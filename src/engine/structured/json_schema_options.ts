// How JSON-schema grammars are built (XGrammar's compile_json_schema arguments), in one place so
// the checker and the serving compiler agree.
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
