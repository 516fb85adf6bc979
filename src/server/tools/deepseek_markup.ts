// DeepSeek's tool-call markup, as its chat templates render calls and its models emit them:
//
//   V3 (and this server's built-in template):
//     <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>
//     \n<｜tool▁call▁begin｜>...<｜tool▁call▁end｜><｜tool▁calls▁end｜>
//   V3.1 / V3.2-Exp:
//     <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
//
// Tool results go back as <｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>RESULT<｜tool▁output▁end｜>
// ...<｜tool▁outputs▁end｜> (V3) or bare <｜tool▁output▁begin｜>...<｜tool▁output▁end｜> (V3.1).
// DeepSeek-V3.2's own encoder (DSML, <｜DSML｜function_calls>) is not a Jinja template and is not
// supported here.

export const TOOL_CALLS_BEGIN = '<｜tool▁calls▁begin｜>';
export const TOOL_CALLS_END = '<｜tool▁calls▁end｜>';
export const TOOL_CALL_BEGIN = '<｜tool▁call▁begin｜>';
export const TOOL_CALL_END = '<｜tool▁call▁end｜>';
export const TOOL_SEP = '<｜tool▁sep｜>';
export const TOOL_OUTPUTS_BEGIN = '<｜tool▁outputs▁begin｜>';
export const TOOL_OUTPUTS_END = '<｜tool▁outputs▁end｜>';
export const TOOL_OUTPUT_BEGIN = '<｜tool▁output▁begin｜>';
export const TOOL_OUTPUT_END = '<｜tool▁output▁end｜>';

/** V3 wraps the arguments in a ```json fence after a newline; V3.1 writes them right after the separator. */
export type ToolCallFormat = 'v3' | 'v3.1';

/** V3's fence around the arguments. */
export const V3_ARGS_OPEN = '\n```json\n';
export const V3_ARGS_CLOSE = '\n```';
/** Between two calls of one V3 message (V3.1 puts nothing). */
export const V3_CALL_SEPARATOR = '\n';

/** One call as the model writes it (the grammar for forced calls produces exactly this). */
export function callPrefix(format: ToolCallFormat, name: string): string {
  return format === 'v3' ? `${TOOL_CALL_BEGIN}function${TOOL_SEP}${name}${V3_ARGS_OPEN}` : `${TOOL_CALL_BEGIN}${name}${TOOL_SEP}`;
}

export function callSuffix(format: ToolCallFormat): string {
  return format === 'v3' ? `${V3_ARGS_CLOSE}${TOOL_CALL_END}` : TOOL_CALL_END;
}

/**
 * Which markup a chat template teaches, read from its source; null when it renders no tool calls
 * (then a request with tools is refused rather than sent to a model that never saw them).
 */
export function templateToolCallFormat(templateSource: string): ToolCallFormat | null {
  if (!templateSource.includes(TOOL_CALLS_BEGIN)) return null;
  return templateSource.includes('```json') ? 'v3' : 'v3.1';
}
