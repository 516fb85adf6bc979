// The KJV with references: `bible -f` output (tools/data/kjv.sh's kjv_all.txt, `Ge1:1 In the beginning ...`)
// parsed into verses with full book names, and the held-out flag of kjv.sh's split (chapter index % 20 == 10).

/** The 66 books in canonical order (the order in which `bible` prints them). */
export const BOOKS: readonly string[] = [
  'Genesis',
  'Exodus',
  'Leviticus',
  'Numbers',
  'Deuteronomy',
  'Joshua',
  'Judges',
  'Ruth',
  '1 Samuel',
  '2 Samuel',
  '1 Kings',
  '2 Kings',
  '1 Chronicles',
  '2 Chronicles',
  'Ezra',
  'Nehemiah',
  'Esther',
  'Job',
  'Psalms',
  'Proverbs',
  'Ecclesiastes',
  'Song of Solomon',
  'Isaiah',
  'Jeremiah',
  'Lamentations',
  'Ezekiel',
  'Daniel',
  'Hosea',
  'Joel',
  'Amos',
  'Obadiah',
  'Jonah',
  'Micah',
  'Nahum',
  'Habakkuk',
  'Zephaniah',
  'Haggai',
  'Zechariah',
  'Malachi',
  'Matthew',
  'Mark',
  'Luke',
  'John',
  'Acts',
  'Romans',
  '1 Corinthians',
  '2 Corinthians',
  'Galatians',
  'Ephesians',
  'Philippians',
  'Colossians',
  '1 Thessalonians',
  '2 Thessalonians',
  '1 Timothy',
  '2 Timothy',
  'Titus',
  'Philemon',
  'Hebrews',
  'James',
  '1 Peter',
  '2 Peter',
  '1 John',
  '2 John',
  '3 John',
  'Jude',
  'Revelation',
];

export interface Verse {
  readonly book: string;
  readonly chapter: number;
  readonly verse: number;
  readonly text: string;
  /** kjv.sh puts the chapter in kjv_valid.txt. */
  readonly heldOut: boolean;
}

/** Chapters the chat data repeats, so that the demo model knows them by heart (training split only). */
const FAMOUS: ReadonlySet<string> = new Set(['Genesis 1', 'Exodus 20', 'Psalms 1', 'Psalms 23', 'John 1', 'John 3', '1 Corinthians 13']);

export function famousChapter(v: Verse): boolean {
  return FAMOUS.has(`${v.book} ${v.chapter}`);
}

export function parseBible(text: string): Verse[] {
  const out: Verse[] = [];
  let book = -1;
  let abbrev = '';
  let chapterKey = '';
  let chapterIndex = -1;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const m = /^([0-9]?[A-Za-z]+)([0-9]+):([0-9]+) (.*)$/.exec(line);
    if (!m) throw new Error(`unexpected line: ${line}`);
    const [, ab, ch, vs, body] = m;
    if (ab !== abbrev) (book++, (abbrev = ab!));
    if (`${ab}${ch}` !== chapterKey) (chapterIndex++, (chapterKey = `${ab}${ch}`));
    const name = BOOKS[book];
    if (name === undefined) throw new Error(`more than ${BOOKS.length} books at: ${line}`);
    out.push({ book: name, chapter: Number(ch), verse: Number(vs), text: body!, heldOut: chapterIndex % 20 === 10 });
  }
  if (book !== BOOKS.length - 1 || chapterIndex !== 1188) throw new Error(`parsed ${book + 1} books and ${chapterIndex + 1} chapters, expected 66 and 1189`);
  return out;
}
