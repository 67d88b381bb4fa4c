/**
 * METEOR 1.5's English resources: the function-word list, the WordNet synonym dictionary
 * (`english.synsets` + `english.exceptions`, read as `edu.cmu.meteor.aligner.SynonymDictionary`
 * reads them) and the paraphrase table (`paraphrase-en.gz`, read as `ParaphraseTransducer`).
 *
 * Resource directory: `resourceDir` argument, else `$LF_METEOR_DIR`, else
 * `$LF_CACHE/meteor`, else `~/.cache/lf/meteor`. Files used there: `english.synsets`, `english.exceptions`
 * (synonym module), `paraphrase-en.gz` (paraphrase module) and optionally
 * `english.words` (function words; METEOR's list is built in, so it is only needed to
 * override it). METEOR never loads `english.relations`, and neither do we.
 *
 * @module
 */

/**
 * METEOR 1.5's English function words (`resources/function/english.words`), used when
 * the resource directory has no `english.words`. Content and function words are
 * weighted δ and 1−δ.
 */
export const ENGLISH_FUNCTION_WORDS: readonly string[] = [
  "the",
  ",",
  ".",
  "to",
  "of",
  "and",
  "a",
  "in",
  "that",
  "for",
  '"',
  "is",
  "on",
  "'s",
  "it",
  "with",
  "was",
  "as",
  "said",
  "at",
  "he",
  "by",
  "be",
  "from",
  "have",
  "has",
  "are",
  "his",
  "but",
  "an",
  "this",
  "not",
  "i",
  "will",
  "\u2019",
  "they",
  ")",
  "-rrb-",
  "(",
  "-lrb-",
  "who",
  "their",
  "had",
  "we",
  "which",
  "were",
  "been",
  "more",
  "or",
  "s",
  "its",
  "would",
  "about",
  "new",
  "one",
  "after",
  "you",
  ":",
  "also",
  "up",
  "when",
  "there",
  "than",
  "$",
  "all",
  "out",
  "her",
  "people",
  "she",
  "year",
  "two",
  "-",
  "can",
  "if",
  "last",
  "first",
  "\u201c",
  "over",
  "other",
  "\u201d",
  "into",
  "some",
  "what",
  "so",
  "--",
  "no",
  "time",
  "years",
  "could",
  "?",
  "'t",
  "\u2014",
  "'",
];

/**
 * Where METEOR's resource files are looked up: the argument, else `$LF_METEOR_DIR`, else
 * `$LF_CACHE/meteor`, else `~/.cache/lf/meteor` (the last two are where
 * `deno task download --data meteor` puts them).
 */
export function meteorResourceDir(resourceDir?: string): string {
  if (resourceDir !== undefined) return resourceDir;
  const env = readEnv("LF_METEOR_DIR");
  if (env !== undefined && env !== "") return env;
  const cache = readEnv("LF_CACHE");
  if (cache !== undefined && cache !== "") return joinPath(cache, "meteor");
  const home = readEnv("HOME") ?? readEnv("USERPROFILE") ?? ".";
  return `${home}/.cache/lf/meteor`;
}

function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env: behave as if unset
  }
}

/** Join a directory and a file name with a single slash. */
export function joinPath(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/** True when `path` names an existing regular file (false, not an error, if unreadable). */
export async function fileExists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** Split text into lines the way Java's `BufferedReader.readLine` does. */
function javaLines(text: string): string[] {
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/** Load the function-word list: `english.words` in `dir` if present, else the built-in list. */
export async function loadFunctionWords(dir: string): Promise<Set<string>> {
  const path = joinPath(dir, "english.words");
  if (await fileExists(path)) return new Set(javaLines(await Deno.readTextFile(path)));
  return new Set(ENGLISH_FUNCTION_WORDS);
}

// WordNet's morphological suffix rules (nouns, verbs, adjectives), as METEOR copies them.
const MORPH_SUFFIX = [
  "s",
  "ses",
  "xes",
  "zes",
  "ches",
  "shes",
  "men",
  "ies",
  "s",
  "ies",
  "es",
  "es",
  "ed",
  "ed",
  "ing",
  "ing",
  "er",
  "est",
  "er",
  "est",
];
const MORPH_ENDING = [
  "",
  "s",
  "x",
  "z",
  "ch",
  "sh",
  "man",
  "y",
  "",
  "y",
  "e",
  "",
  "e",
  "",
  "e",
  "",
  "",
  "",
  "e",
  "e",
];

const EMPTY: ReadonlySet<number> = new Set();

/** WordNet synonym sets by word, with METEOR's base-form lookup. */
export class SynonymDictionary {
  readonly #wordToSynsets: Map<string, ReadonlySet<number>>;
  readonly #wordToBases: Map<string, string[]>;
  readonly #allCache = new Map<string, ReadonlySet<number>>();

  /**
   * @param wordToSynsets synset ids of each word form (from `english.synsets`)
   * @param wordToBases base forms of irregular inflections (from `english.exceptions`)
   */
  constructor(wordToSynsets: Map<string, ReadonlySet<number>>, wordToBases: Map<string, string[]>) {
    this.#wordToSynsets = wordToSynsets;
    this.#wordToBases = wordToBases;
  }

  /** Synsets of the word itself (empty set when unknown). */
  synsets(word: string): ReadonlySet<number> {
    return this.#wordToSynsets.get(word) ?? EMPTY;
  }

  /** Synsets of the word's base form: irregular forms via exceptions, others via WordNet's suffix rules. */
  stemSynsets(word: string): ReadonlySet<number> {
    const bases = this.#wordToBases.get(word);
    if (bases !== undefined) {
      const out = new Set<number>();
      for (const b of bases) for (const id of this.synsets(b)) out.add(id);
      return out;
    }
    return this.synsets(this.#morph(word));
  }

  /** All synsets METEOR's synonym matcher attaches to a word (memoised: words recur a lot). */
  allSynsets(word: string): ReadonlySet<number> {
    let out = this.#allCache.get(word);
    if (out === undefined) {
      const set = new Set(this.synsets(word));
      for (const id of this.stemSynsets(word)) set.add(id);
      out = set;
      this.#allCache.set(word, out);
    }
    return out;
  }

  /**
   * METEOR's `morph`: the first suffix rule whose result is a known word. Its handling of
   * "-ful" is dead code in METEOR (no suffix rule can match a word ending in "l"), so it
   * is left out; words ending in "ss" or of two letters or fewer map to themselves.
   */
  #morph(word: string): string {
    if (word.endsWith("ss") || word.length <= 2) return word;
    for (let i = 0; i < MORPH_SUFFIX.length; i++) {
      const suf = MORPH_SUFFIX[i];
      if (!word.endsWith(suf)) continue;
      const base = word.slice(0, word.length - suf.length) + MORPH_ENDING[i];
      if (this.#wordToSynsets.has(base)) return base;
    }
    return "";
  }
}

/** Parse `english.synsets` (word line, then a line of synset ids) into a map. */
export function parseSynsets(text: string, source: string): Map<string, ReadonlySet<number>> {
  const lines = javaLines(text);
  const map = new Map<string, ReadonlySet<number>>();
  for (let i = 0; i < lines.length; i += 2) {
    const ids = lines[i + 1];
    if (ids === undefined) {
      throw new Error(`${source}:${i + 1}: word "${lines[i]}" has no synset line`);
    }
    const set = new Set<number>();
    for (const tok of ids.split(/[ \t\n\r\f]+/)) {
      if (tok === "") continue;
      const id = Number.parseInt(tok, 10);
      if (!/^[+-]?\d+$/.test(tok) || !Number.isFinite(id)) {
        throw new Error(`${source}:${i + 2}: synset id "${tok}" is not an integer`);
      }
      set.add(id);
    }
    map.set(lines[i], set);
  }
  return map;
}

/** Parse `english.exceptions` (base form line, then a line of inflected forms) into form -> bases. */
export function parseExceptions(text: string, source: string): Map<string, string[]> {
  const lines = javaLines(text);
  const map = new Map<string, string[]>();
  for (let i = 0; i < lines.length; i += 2) {
    const forms = lines[i + 1];
    if (forms === undefined) {
      throw new Error(`${source}:${i + 1}: base "${lines[i]}" has no forms line`);
    }
    for (const form of forms.split(/[ \t\n\r\f]+/)) {
      if (form === "") continue;
      const bases = map.get(form);
      if (bases === undefined) map.set(form, [lines[i]]);
      else bases.push(lines[i]);
    }
  }
  return map;
}

/** Load the synonym dictionary from `dir`, or return null (with the reason) if a file is missing. */
export async function loadSynonyms(
  dir: string,
): Promise<{ dict: SynonymDictionary | null; missing: string[] }> {
  const synPath = joinPath(dir, "english.synsets");
  const excPath = joinPath(dir, "english.exceptions");
  const missing = [];
  for (const p of [synPath, excPath]) if (!(await fileExists(p))) missing.push(p);
  if (missing.length > 0) return { dict: null, missing };
  const [syn, exc] = await Promise.all([Deno.readTextFile(synPath), Deno.readTextFile(excPath)]);
  return {
    dict: new SynonymDictionary(parseSynsets(syn, synPath), parseExceptions(exc, excPath)),
    missing,
  };
}

/** A growable Int32Array (the paraphrase table has millions of entries; plain objects would not fit). */
class IntList {
  data: Int32Array;
  length = 0;
  constructor(capacity = 1024) {
    this.data = new Int32Array(capacity);
  }
  push(v: number): void {
    if (this.length === this.data.length) {
      const bigger = new Int32Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = v;
  }
}

// Trie edges are keyed by node * 2^24 + word id in one Map (exact in a double up to 2^29 nodes).
const WORD_LIMIT = 1 << 24;

/**
 * METEOR's paraphrase table (`ParaphraseTransducer`): a trie over phrases whose nodes emit
 * the indices of their paraphrases, in file order. Stored in flat typed arrays.
 */
export class ParaphraseTable {
  readonly #vocab = new Map<string, number>();
  readonly #edges = new Map<number, number>();
  // Per trie node: first and last emitted entry (-1 if none); node 0 is the root.
  readonly #firstEmit = new IntList();
  readonly #lastEmit = new IntList();
  // Per entry: next entry emitted by the same node, and where its paraphrase words start.
  readonly #nextEmit = new IntList();
  readonly #parStart = new IntList();
  readonly #parWords = new IntList(4096);

  constructor() {
    this.#firstEmit.push(-1);
    this.#lastEmit.push(-1);
    this.#parStart.push(0);
  }

  /** Add one entry (phrase -> paraphrase), both as whitespace-separated words. */
  add(phrase: string, paraphrase: string): void {
    let node = 0;
    for (const w of this.#ids(phrase)) {
      const key = node * WORD_LIMIT + w;
      let child = this.#edges.get(key);
      if (child === undefined) {
        child = this.#firstEmit.length;
        this.#firstEmit.push(-1);
        this.#lastEmit.push(-1);
        this.#edges.set(key, child);
      }
      node = child;
    }
    const entry = this.#nextEmit.length;
    this.#nextEmit.push(-1);
    const last = this.#lastEmit.data[node];
    if (last === -1) this.#firstEmit.data[node] = entry;
    else this.#nextEmit.data[last] = entry;
    this.#lastEmit.data[node] = entry;
    for (const w of this.#ids(paraphrase)) this.#parWords.push(w);
    this.#parStart.push(this.#parWords.length);
  }

  #ids(phrase: string): number[] {
    const ids: number[] = [];
    for (const word of phrase.split(/[ \t\n\r\f]+/)) {
      if (word === "") continue;
      let id = this.#vocab.get(word);
      if (id === undefined) {
        id = this.#vocab.size;
        if (id >= WORD_LIMIT) {
          throw new Error(`paraphrase table: more than ${WORD_LIMIT} distinct words`);
        }
        this.#vocab.set(word, id);
      }
      ids.push(id);
    }
    return ids;
  }

  /** Vocabulary id of a word, -1 when the table never mentions it. */
  translate(word: string): number {
    return this.#vocab.get(word) ?? -1;
  }

  /** Number of entries. */
  get size(): number {
    return this.#nextEmit.length;
  }

  /** Flat [phraseLength, paraphraseIndex, ...] for every table phrase starting at `start`. */
  pathsFrom(words: Int32Array, start: number): number[] {
    const out: number[] = [];
    let node = 0;
    for (let i = 0; i < words.length - start; i++) {
      const w = words[start + i];
      if (w < 0) break;
      const child = this.#edges.get(node * WORD_LIMIT + w);
      if (child === undefined) break;
      node = child;
      for (let e = this.#firstEmit.data[node]; e !== -1; e = this.#nextEmit.data[e]) {
        out.push(i + 1, e);
      }
    }
    return out;
  }

  /** The paraphrase (vocabulary ids) with this index. */
  paraphrase(index: number): Int32Array {
    return this.#parWords.data.subarray(this.#parStart.data[index], this.#parStart.data[index + 1]);
  }
}

/**
 * Read a gzip'd METEOR paraphrase table: records of three lines (a probability METEOR
 * ignores, the phrase, its paraphrase).
 */
export async function loadParaphraseTable(path: string): Promise<ParaphraseTable> {
  const table = new ParaphraseTable();
  using file = await Deno.open(path, { read: true });
  const stream = file.readable
    .pipeThrough(new DecompressionStream("gzip"))
    .pipeThrough(new TextDecoderStream());
  let pending = "";
  let record: string[] = [];
  let lineNo = 0;
  const take = (line: string) => {
    lineNo++;
    record.push(line);
    if (record.length === 3) {
      table.add(record[1], record[2]);
      record = [];
    }
  };
  for await (const chunk of stream) {
    pending += chunk;
    const parts = pending.split(/\r\n|\n|\r(?=[\s\S])/);
    pending = parts.pop() ?? "";
    for (const line of parts) take(line);
  }
  if (pending !== "") take(pending.replace(/\r$/, ""));
  if (record.length !== 0) {
    throw new Error(
      `${path}:${lineNo}: truncated record (expected probability, phrase, paraphrase lines)`,
    );
  }
  return table;
}
