// Chat and tool-use dialogues for the default model's fine-tune, built from the TRAINING chapters only and
// rendered through the server's own chat template and tokenizer, so training and serving match token for token.
//
//   node --import tsx tools/train/chat_data.ts [--data tools/train/data] [--tokenizer models/default] [--seed 13]
//
// Reads DATA/kjv_all.txt (tools/data/kjv.sh: `Ge1:1 In the beginning ...`; a chapter is held out when its
// canonical index % 20 == 10, as kjv.sh splits) and writes
//   DATA/chat_train.u16    the dialogues' token ids, concatenated (little-endian uint16)
//   DATA/chat_train.mask   one byte per token: 1 where the token is an assistant output (the LM loss target)
//   DATA/chat_train.off    int64 start offsets of the dialogues, plus the end (n + 1 values)
//   DATA/chat_examples.json a few rendered dialogues, for reading
// Tasks: "Recite Genesis 1:3" -> the verse; "Continue: <first words>" -> the rest of the verse; "Which book
// begins with "<words>"?" -> the book; and with tools=[lookup_verse] a call in DeepSeek-V3 markup, the tool
// result, and the answer quoting it. A dialogue's token ids are the prompt of each assistant turn exactly as
// the server encodes it (render with add_generation_prompt, encode), followed by the completion the model must
// produce (the rest of the rendered conversation up to the turn's end-of-sentence, encoded alone); the script
// checks that the next turn's prompt starts with these ids and that the server's parser reads the calls back.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadTokenizer } from '../../src/server/tokenizer/tokenizer.ts';
import { templateMessages, type ChatMessageInput } from '../../src/server/tools/chat_tools.ts';
import { templateTools, type ToolDefinition } from '../../src/server/tools/conversation.ts';
import { parseToolCalls } from '../../src/server/tools/tool_call_parser.ts';
import { BOOKS, famousChapter, parseBible, type Verse } from './kjv_refs.ts';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: 'tools/train/data' },
    tokenizer: { type: 'string', default: 'models/default' },
    seed: { type: 'string', default: '13' },
  },
});
const tok = loadTokenizer(values.tokenizer!);
if (!tok || tok.eosTokenId === null) throw new Error(`no tokenizer with EOS in ${values.tokenizer}`);
const eos = tok.eosTokenId;

/** mulberry32: a small seeded PRNG, so the data set is reproducible. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(Number(values.seed));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;

export const LOOKUP_VERSE: ToolDefinition = {
  name: 'lookup_verse',
  description: 'Returns the text of one verse of the King James Bible.',
  parameters: {
    type: 'object',
    properties: { book: { type: 'string' }, chapter: { type: 'integer' }, verse: { type: 'integer' } },
    required: ['book', 'chapter', 'verse'],
  },
};
const TOOLS = templateTools([LOOKUP_VERSE]);

const MAX_TOOL_VERSE = 200;
const ref = (v: Verse): string => `${v.book} ${v.chapter}:${v.verse}`;
const RECITE = ['Recite {r}', 'Recite {r}.', 'What does {r} say?', 'Quote {r}.'];
const LOOKUP = ['Look up {r}.', 'What does {r} say?', 'Recite {r}', 'Find {r} for me.'];

/** One dialogue's ids and loss mask: each assistant turn's prompt (mask 0) then its completion (mask 1). */
function encodeDialogue(messages: ChatMessageInput[], withTools: boolean): { ids: number[]; mask: number[]; text: string } {
  const msgs = templateMessages(messages);
  const kwargs = withTools ? { tools: TOOLS } : {};
  const ids: number[] = [];
  const mask: number[] = [];
  let full = '';
  msgs.forEach((m, k) => {
    if (m.role !== 'assistant') return;
    const promptText = tok!.applyChatTemplate(msgs.slice(0, k), { addGenerationPrompt: true, templateKwargs: kwargs });
    const prompt = tok!.encode(promptText, { addSpecialTokens: false });
    if (!ids.every((id, i) => prompt[i] === id)) throw new Error(`turn ${k}: the server's prompt does not start with the previous turns' ids`);
    const turnText = tok!.applyChatTemplate(msgs.slice(0, k + 1), { addGenerationPrompt: false, templateKwargs: kwargs });
    if (!turnText.startsWith(promptText) || !turnText.endsWith('<｜end▁of▁sentence｜>')) throw new Error(`turn ${k}: unexpected rendering`);
    const completion = turnText.slice(promptText.length, turnText.length - '<｜end▁of▁sentence｜>'.length);
    const out = [...tok!.encode(completion, { addSpecialTokens: false }), eos];
    if (tok!.decode(out.slice(0, -1)) !== completion) throw new Error(`turn ${k}: completion does not round-trip`);
    const calls = parseToolCalls(completion).toolCalls;
    if (calls.length !== (m.tool_calls?.length ?? 0) || calls.some((c, i) => c.arguments !== m.tool_calls![i]!.function.arguments)) {
      throw new Error(`turn ${k}: the server's parser does not read the calls back`);
    }
    for (let i = ids.length; i < prompt.length; i++) (ids.push(prompt[i]!), mask.push(0));
    for (const id of out) (ids.push(id), mask.push(1));
    full = turnText;
  });
  return { ids, mask, text: full };
}

function words(text: string): string[] {
  return text.split(' ');
}

function recite(v: Verse): ChatMessageInput[] {
  return [
    { role: 'user', content: pick(RECITE).replace('{r}', ref(v)) },
    { role: 'assistant', content: v.text },
  ];
}

/** "Continue: <first 2-6 words>" -> the rest of the verse (verses of at least 5 words). */
function cont(v: Verse): ChatMessageInput[] | null {
  const w = words(v.text);
  if (w.length < 5) return null;
  const n = Math.min(w.length - 2, 2 + Math.floor(rand() * 5));
  return [
    { role: 'user', content: `Continue: ${w.slice(0, n).join(' ')}` },
    { role: 'assistant', content: w.slice(n).join(' ') },
  ];
}

function whichBook(first: Verse): ChatMessageInput[] {
  const w = words(first.text);
  const n = Math.min(w.length, 3 + Math.floor(rand() * 5));
  const q = pick(['Which book begins with "{w}"?', 'Which book of the Bible begins with "{w}"?']).replace('{w}', w.slice(0, n).join(' '));
  return [
    { role: 'user', content: q },
    { role: 'assistant', content: `The book of ${first.book}.` },
  ];
}

let callCount = 0;
function toolDialogue(v: Verse): ChatMessageInput[] {
  const id = `call_${++callCount}`;
  const args = JSON.stringify({ book: v.book, chapter: v.chapter, verse: v.verse });
  return [
    { role: 'user', content: pick(LOOKUP).replace('{r}', ref(v)) },
    { role: 'assistant', content: '', tool_calls: [{ id, type: 'function', function: { name: 'lookup_verse', arguments: args } }] },
    { role: 'tool', tool_call_id: id, content: v.text },
    { role: 'assistant', content: `${ref(v)}: ${v.text}` },
  ];
}

function main(): void {
  const verses = parseBible(readFileSync(join(values.data!, 'kjv_all.txt'), 'utf8'));
  const train = verses.filter((v) => !v.heldOut);
  const famous = train.filter((v) => famousChapter(v));
  const firsts = BOOKS.map((b) => train.find((v) => v.book === b && v.chapter === 1 && v.verse === 1)).filter((v): v is Verse => v !== undefined);
  const dialogues: { kind: string; messages: ChatMessageInput[]; tools: boolean }[] = [];
  const add = (kind: string, messages: ChatMessageInput[] | null, tools = false): void => {
    if (messages) dialogues.push({ kind, messages, tools });
  };
  // The fine-tune sees a few thousand dialogues (CPU budget), so the mix favours what a demo shows: the famous
  // chapters often enough to learn them by heart, the call markup, and the answer quoting the tool result.
  // Tool dialogues (~550-750 tokens, most of it the tools block) use verses of <= MAX_TOOL_VERSE characters.
  for (const v of train) {
    if (rand() < 0.2) add('recite', recite(v));
    if (rand() < 0.2) add('continue', cont(v));
    if (v.text.length <= MAX_TOOL_VERSE && rand() < 0.06) add('tool', toolDialogue(v), true);
  }
  for (let r = 0; r < 12; r++) for (const v of famous) (add('recite', recite(v)), add('continue', cont(v)));
  for (let r = 0; r < 4; r++) for (const v of famous) if (v.text.length <= MAX_TOOL_VERSE) add('tool', toolDialogue(v), true);
  for (let r = 0; r < 30; r++) for (const f of firsts) add('book', whichBook(f), rand() < 0.3);
  // Shuffle (Fisher-Yates) so a contiguous slice is a fair sample.
  for (let i = dialogues.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [dialogues[i], dialogues[j]] = [dialogues[j]!, dialogues[i]!];
  }
  const ids: number[] = [];
  const mask: number[] = [];
  const off: bigint[] = [0n];
  const examples: Record<string, string> = {};
  const counts: Record<string, number> = {};
  let target = 0;
  for (const d of dialogues) {
    const e = encodeDialogue(d.messages, d.tools);
    ids.push(...e.ids);
    mask.push(...e.mask);
    off.push(BigInt(ids.length));
    target += e.mask.reduce((a, b) => a + b, 0);
    counts[d.kind] = (counts[d.kind] ?? 0) + 1;
    examples[d.kind] ??= e.text;
  }
  writeFileSync(join(values.data!, 'chat_train.u16'), Buffer.from(Uint16Array.from(ids).buffer));
  writeFileSync(join(values.data!, 'chat_train.mask'), Buffer.from(Uint8Array.from(mask).buffer));
  writeFileSync(join(values.data!, 'chat_train.off'), Buffer.from(BigInt64Array.from(off).buffer));
  writeFileSync(join(values.data!, 'chat_examples.json'), `${JSON.stringify(examples, null, 1)}\n`);
  const lens = off
    .slice(1)
    .map((o, i) => Number(o - off[i]!))
    .sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      dialogues: dialogues.length,
      counts,
      tokens: ids.length,
      target_tokens: target,
      train_verses: train.length,
      famous_verses: famous.length,
      books_with_first_verse: firsts.length,
      len_median: lens[lens.length >> 1],
      len_max: lens[lens.length - 1],
    }),
  );
}

main();
