/**
 * The E2E NLG data (Novikova et al. 2017) in the two formats the project meets, and the
 * training examples of Li & Liang's Prefix-Tuning code.
 *
 * - Text files of the paper's code: one `MR||reference` pair a line, with the MR linearised as
 *   `name : The Vaults | Type : pub | ...` and tokenised references.
 * - The official CSVs: header `mr,ref` (or just `MR` for the test MRs), MR as
 *   `name[The Vaults], eatType[pub], ...`; the MR is converted to the paper's linearisation.
 *
 * Training text, as built by the paper's `LineByLineData2TextTextDataset`:
 * `" {MR} <|endoftext|> {reference} <|endoftext|>"`. Its labels are -100 up to and including
 * the first `<|endoftext|>`; generation conditions on `" {MR} <|endoftext|>"`, the same tokens.
 *
 * @module
 */

import { IGNORE_INDEX } from "./batching.ts";
import { ENDOFTEXT } from "./tokenizer.ts";

/** One meaning representation and one reference text. */
export interface E2EPair {
  /** MR in the paper's linearisation, as in the file (text) or converted (CSV). */
  mr: string;
  /**
   * Reference text exactly as in the file (text files keep their trailing space, which the
   * paper's training text keeps too). "" for the MR-only CSV (`testset.csv`).
   */
  ref: string;
  /** 1-based line of the file where the pair starts. */
  line: number;
}

/** One MR with all its references, in file order. */
export interface MRGroup {
  /** The MR (paper's linearisation). */
  mr: string;
  /** Its references; empty for an MR-only file. */
  refs: string[];
}

/**
 * Official E2E attribute names → the names of the paper's linearisation
 * (from the paper's data files; e.g. `eatType` is `Type`, `priceRange` is `price`).
 */
export const OFFICIAL_TO_LINEAR_ATTRIBUTE: Readonly<Record<string, string>> = Object.freeze({
  name: "name",
  eatType: "Type",
  food: "food",
  priceRange: "price",
  "customer rating": "customer rating",
  area: "area",
  familyFriendly: "family friendly",
  near: "near",
});

/**
 * Tokenises an official MR value as the paper's files have it: each character that is not a
 * letter, digit or space stands alone (`£20-25` → `£ 20 - 25`, `less than £20` →
 * `less than £ 20`); letters with accents stay (`Café Rouge`).
 */
export function tokenizeMRValue(value: string): string {
  return value.replace(/[^\p{L}\p{N}\s]/gu, " $& ").trim().split(/\s+/u).join(" ");
}

/**
 * Converts an official MR (`name[The Vaults], eatType[pub], priceRange[£20-25]`) to the paper's
 * linearisation (`name : The Vaults | Type : pub | price : £ 20 - 25`), keeping the attribute
 * order (the official files already use the paper's order). `where` (e.g. `file:line`)
 * prefixes error messages about malformed MRs or unknown attributes.
 */
export function officialMRToLinear(mr: string, where = "MR"): string {
  const item = /\s*([^[\],]*?)\s*\[([^\]]*)\]\s*(,|$)/y;
  const parts: string[] = [];
  let pos = 0;
  while (pos < mr.length) {
    item.lastIndex = pos;
    const m = item.exec(mr);
    if (m === null) {
      throw new Error(
        `${where}: malformed MR at character ${pos + 1}, expected "attribute[value]": ${
          JSON.stringify(mr)
        }`,
      );
    }
    const [, attr, value, comma] = m;
    if (!Object.hasOwn(OFFICIAL_TO_LINEAR_ATTRIBUTE, attr)) {
      throw new Error(`${where}: unknown MR attribute ${JSON.stringify(attr)}`);
    }
    const v = tokenizeMRValue(value);
    if (v === "") throw new Error(`${where}: empty value for MR attribute ${JSON.stringify(attr)}`);
    parts.push(`${OFFICIAL_TO_LINEAR_ATTRIBUTE[attr]} : ${v}`);
    pos = item.lastIndex;
    if (comma === "," && pos >= mr.length) throw new Error(`${where}: MR ends with a comma`);
  }
  if (parts.length === 0) throw new Error(`${where}: empty MR`);
  return parts.join(" | ");
}

/**
 * Parses the paper's `MR||reference` text format. Blank lines are skipped (as the paper's
 * code does); a line without exactly one `||`, or with an empty MR, throws naming
 * `source:line`.
 */
export function parseE2EText(text: string, source: string): E2EPair[] {
  const pairs: E2EPair[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].endsWith("\r") ? lines[i].slice(0, -1) : lines[i];
    if (line.trim() === "") continue;
    const fields = line.split("||");
    if (fields.length !== 2) {
      throw new Error(
        `${source}:${i + 1}: expected one "||" between MR and reference, found ${
          fields.length - 1
        }`,
      );
    }
    const [mr, ref] = fields;
    if (mr.trim() === "") throw new Error(`${source}:${i + 1}: empty MR`);
    pairs.push({ mr, ref, line: i + 1 });
  }
  return pairs;
}

/** A CSV record with the line it starts on. */
interface CsvRow {
  fields: string[];
  line: number;
}

/**
 * RFC 4180 CSV: fields separated by commas, optionally quoted with `"` (a quote inside doubled),
 * quoted fields may hold commas and newlines, CRLF or LF line ends. Blank lines are skipped.
 * Throws naming `source:line` on an unterminated quote or a quote in the wrong place.
 */
function parseCsv(text: string, source: string): CsvRow[] {
  const rows: CsvRow[] = [];
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  const n = text.length;
  while (i < n) {
    const rowLine = line;
    const fields: string[] = [];
    // One record.
    for (;;) {
      let field = "";
      if (text[i] === '"') {
        const quoteLine = line;
        i++;
        for (;;) {
          if (i >= n) {
            throw new Error(`${source}:${quoteLine}: quoted field never closed`);
          }
          const c = text[i];
          if (c === '"') {
            if (text[i + 1] === '"') {
              field += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (c === "\n") line++;
          field += c;
          i++;
        }
        const after = text[i];
        if (i < n && after !== "," && after !== "\n" && !(after === "\r" && text[i + 1] === "\n")) {
          throw new Error(
            `${source}:${line}: unexpected ${JSON.stringify(after)} after a closing quote`,
          );
        }
      } else {
        const start = i;
        while (i < n && text[i] !== "," && text[i] !== "\n" && text[i] !== "\r") {
          if (text[i] === '"') {
            throw new Error(`${source}:${line}: quote inside an unquoted field`);
          }
          i++;
        }
        if (text[i] === "\r" && text[i + 1] !== "\n") {
          throw new Error(`${source}:${line}: carriage return inside an unquoted field`);
        }
        field = text.slice(start, i);
      }
      fields.push(field);
      if (text[i] === ",") {
        i++;
        continue;
      }
      // End of record: CRLF, LF or end of text.
      if (text[i] === "\r") i++;
      if (text[i] === "\n") {
        i++;
        line++;
      }
      break;
    }
    if (!(fields.length === 1 && fields[0] === "")) rows.push({ fields, line: rowLine });
  }
  return rows;
}

/**
 * Parses an official E2E CSV: header `mr,ref` (any case, quoted or not) or the MR-only header
 * `MR`. MRs are converted with {@linkcode officialMRToLinear}; references are kept as they
 * are (untokenised). Throws naming `source:line` for a wrong header, a wrong number of
 * fields, bad quoting, an empty or malformed MR.
 */
export function parseE2ECsv(text: string, source: string): E2EPair[] {
  const rows = parseCsv(text, source);
  if (rows.length === 0) throw new Error(`${source}:1: empty file, expected header "mr,ref"`);
  const header = rows[0].fields.map((f) => f.trim().toLowerCase());
  const withRefs = header.length === 2 && header[0] === "mr" && header[1] === "ref";
  if (!withRefs && !(header.length === 1 && header[0] === "mr")) {
    throw new Error(
      `${source}:${rows[0].line}: header must be "mr,ref" (or "MR"), got ${
        JSON.stringify(rows[0].fields.join(","))
      }`,
    );
  }
  const pairs: E2EPair[] = [];
  for (const { fields, line } of rows.slice(1)) {
    if (fields.length !== header.length) {
      throw new Error(
        `${source}:${line}: expected ${header.length} field(s), got ${fields.length}`,
      );
    }
    const official = fields[0];
    if (official.trim() === "") throw new Error(`${source}:${line}: empty MR`);
    const mr = officialMRToLinear(official, `${source}:${line}`);
    pairs.push({ mr, ref: withRefs ? fields[1] : "", line });
  }
  return pairs;
}

/**
 * Index of the first byte of `bytes` that is not valid UTF-8 (overlong forms, surrogates and
 * code points above U+10FFFF count as invalid), or -1.
 */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    let len: number, min: number, cp: number;
    if (b >= 0xc2 && b <= 0xdf) [len, min, cp] = [2, 0x80, b & 0x1f];
    else if (b >= 0xe0 && b <= 0xef) [len, min, cp] = [3, 0x800, b & 0x0f];
    else if (b >= 0xf0 && b <= 0xf4) [len, min, cp] = [4, 0x10000, b & 0x07];
    else return i;
    for (let k = 1; k < len; k++) {
      const c = bytes[i + k];
      if (i + k >= n || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += len;
  }
  return -1;
}

/**
 * Decodes UTF-8 text strictly: an invalid byte is an error naming `source`, the line, the
 * column (in bytes) and the byte's offset in the file. A leading byte-order mark is dropped.
 */
export function decodeUtf8(bytes: Uint8Array, source: string): string {
  const bad = firstInvalidUtf8(bytes);
  if (bad >= 0) {
    let line = 1, lineStart = 0;
    for (let i = 0; i < bad; i++) {
      if (bytes[i] === 0x0a) {
        line++;
        lineStart = i + 1;
      }
    }
    throw new Error(
      `${source}:${line}: invalid UTF-8 byte 0x${
        bytes[bad].toString(16).padStart(2, "0")
      } at column ${bad - lineStart + 1} (byte ${bad} of the file)`,
    );
  }
  const text = new TextDecoder("utf-8").decode(bytes);
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

async function readBytes(path: string): Promise<Uint8Array> {
  const raw = await Deno.readFile(path);
  if (!path.toLowerCase().endsWith(".gz")) return raw;
  const stream = new Blob([raw]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * Reads an E2E file, choosing the format by extension: `.csv` official CSV, `.txt` the paper's
 * `MR||reference` lines; either may be gzipped (`.txt.gz`). The text must be valid UTF-8 (an
 * error names file, line and byte otherwise).
 */
export async function readE2E(path: string): Promise<E2EPair[]> {
  const lower = path.toLowerCase().replace(/\.gz$/, "");
  if (!lower.endsWith(".csv") && !lower.endsWith(".txt")) {
    throw new Error(`${path}: unknown E2E file type, expected .txt (MR||reference) or .csv`);
  }
  const text = decodeUtf8(await readBytes(path), path);
  return lower.endsWith(".csv") ? parseE2ECsv(text, path) : parseE2EText(text, path);
}

/** The three splits of the paper's files. */
export type E2ESplit = "train" | "valid" | "test";

/** Path of a split in a data folder: `split.txt`, else `split.txt.gz`. */
export async function e2eSplitPath(dir: string, split: E2ESplit): Promise<string> {
  for (const name of [`${split}.txt`, `${split}.txt.gz`]) {
    const p = `${dir}/${name}`;
    if (await Deno.stat(p).then(() => true, () => false)) return p;
  }
  throw new Error(`${dir}: no ${split}.txt (or ${split}.txt.gz)`);
}

/**
 * Reads one split of a data folder; an empty split (no pair, e.g. a blank-only file) is an
 * error naming the file.
 */
export async function readE2ESplit(dir: string, split: E2ESplit): Promise<E2EPair[]> {
  const path = await e2eSplitPath(dir, split);
  const pairs = await readE2E(path);
  if (pairs.length === 0) {
    throw new Error(`${path}: no MR||reference pair (the file is empty or blank)`);
  }
  return pairs;
}

/**
 * The E2E files shipped with the library (`data/e2e/`: the paper's train, valid and test files,
 * gzipped; CC BY-SA 4.0, see the LICENSE there), or null where the module is not a local file.
 */
export function shippedE2EDir(): string | null {
  const url = new URL("./e2e", import.meta.url);
  return url.protocol === "file:" ? decodeURIComponent(url.pathname) : null;
}

/**
 * Groups consecutive pairs with the same MR, keeping file order (the test and validation files
 * list each MR's references together). An MR that reappears later starts a new group. Empty
 * references (MR-only files) are not listed.
 */
export function groupByMR(pairs: readonly E2EPair[]): MRGroup[] {
  const groups: MRGroup[] = [];
  for (const p of pairs) {
    let last = groups[groups.length - 1];
    if (last === undefined || last.mr !== p.mr) {
      last = { mr: p.mr, refs: [] };
      groups.push(last);
    }
    if (p.ref !== "") last.refs.push(p.ref);
  }
  return groups;
}

/** What {@linkcode encodeExample} and {@linkcode encodePrompt} need of a tokenizer. */
export interface TextEncoderLike {
  /** Token ids of a text, `<|endoftext|>` recognised as a special token. */
  encode(text: string): number[];
  /** Id of `<|endoftext|>`. */
  readonly eosTokenId: number;
}

/** A tokenised training example; `labels` is -100 where no loss is taken. */
export interface EncodedExample {
  /** Token ids of the whole training text. */
  ids: number[];
  /** -100 over the MR and the first `<|endoftext|>`, the ids over the reference and final eos. */
  labels: number[];
}

/** The paper's training text: `" {mr} <|endoftext|> {ref} <|endoftext|>"`. */
export function exampleText(mr: string, ref: string): string {
  return ` ${mr} ${ENDOFTEXT} ${ref} ${ENDOFTEXT}`;
}

/** The paper's generation prompt: `" {mr} <|endoftext|>"`. */
export function promptText(mr: string): string {
  return ` ${mr} ${ENDOFTEXT}`;
}

function checkMR(mr: string): void {
  if (mr.includes(ENDOFTEXT)) {
    throw new Error(
      `MR contains ${ENDOFTEXT}, which would move the separator: ${JSON.stringify(mr)}`,
    );
  }
}

/**
 * Tokenises one training example as the paper does: ids of {@linkcode exampleText}; labels
 * -100 up to and including the first `<|endoftext|>` (the separator), equal to the ids after
 * it (reference and final `<|endoftext|>`). Throws if the MR contains `<|endoftext|>`.
 */
export function encodeExample(tok: TextEncoderLike, mr: string, ref: string): EncodedExample {
  checkMR(mr);
  const ids = tok.encode(exampleText(mr, ref));
  const sep = ids.indexOf(tok.eosTokenId);
  if (sep < 0) {
    throw new Error(`encodeExample: the tokenizer did not encode ${ENDOFTEXT} as one id`);
  }
  const labels = ids.map((id, i) => (i <= sep ? IGNORE_INDEX : id));
  return { ids, labels };
}

/**
 * Token ids generation conditions on: {@linkcode promptText}, i.e. the MR and the separator;
 * equal to the first tokens of {@linkcode encodeExample}'s ids, up to the separator.
 */
export function encodePrompt(tok: TextEncoderLike, mr: string): number[] {
  checkMR(mr);
  return tok.encode(promptText(mr));
}

/** Options of {@linkcode encodePairs}. */
export interface EncodePairsOptions {
  /** Longest allowed example in tokens (the model's n_positions less the prefix length). */
  maxLength: number;
  /** Cut longer examples to `maxLength` instead of failing. */
  truncate?: boolean;
  /** File the pairs came from, named in errors. */
  source?: string;
}

/**
 * Encodes training pairs with {@linkcode encodeExample}. An example longer than `maxLength`
 * is an error naming the file and line (or is cut, with `truncate`).
 */
export function encodePairs(
  tok: TextEncoderLike,
  pairs: readonly E2EPair[],
  opts: EncodePairsOptions,
): EncodedExample[] {
  return pairs.map((p) => {
    const e = encodeExample(tok, p.mr, p.ref);
    if (e.ids.length <= opts.maxLength) return e;
    if (opts.truncate) {
      return { ids: e.ids.slice(0, opts.maxLength), labels: e.labels.slice(0, opts.maxLength) };
    }
    throw new Error(
      `${
        opts.source ?? "E2E data"
      }:${p.line}: example is ${e.ids.length} tokens, longer than the ${opts.maxLength} the model takes (n_positions less the prefix); shorten it or set truncate_long`,
    );
  });
}
