/**
 * Reading system outputs and references in the formats of the official E2E NLG
 * scoring script (`measure_scores.py` of tuetschek/e2e-metrics):
 *
 * - plain text outputs: one output per line (blank lines are empty outputs);
 * - plain text references: blocks of references separated by blank lines, one
 *   block per instance; a file with no blank line at all holds one reference
 *   per line (single-reference data);
 * - CSV or TSV (chosen by the `.csv` / `.tsv` file name suffix) with a
 *   meaning-representation column and an output or reference column, found by
 *   the official header patterns. References are grouped by MR: by the MRs of
 *   a CSV outputs file when it has them, else by runs of identical MRs.
 *
 * Lines are split and stripped like Python's `str.splitlines()` / `str.strip()`
 * as the official script does. Where the official script crashes or
 * misbehaves, this module raises an {@link EvalInputError} naming the file and
 * line instead: consecutive blank lines inside a references file, an
 * unterminated quoted CSV field, a CSV row with the wrong number of fields. Two
 * deliberate leniencies: blank lines at the start or end of a references file
 * are ignored, a leading byte-order mark is dropped, and a CSV file without a
 * header row is read as two columns (MR, text), which the official script
 * intends but crashes on.
 *
 * @module
 */

/** An input problem, with the file (and line, when known) at fault. */
export class EvalInputError extends Error {
  /** The file at fault. */
  readonly file: string;
  /** The 1-based line at fault, when known. */
  readonly line?: number;

  /**
   * @param message What is wrong.
   * @param file The file at fault.
   * @param line The 1-based line at fault, when known.
   */
  constructor(message: string, file: string, line?: number) {
    super(line === undefined ? `${file}: ${message}` : `${file}:${line}: ${message}`);
    this.name = "EvalInputError";
    this.file = file;
    this.line = line;
  }
}

/** Aligned evaluation data: one output and a group of references per instance. */
export interface EvalData {
  /** The MR of each instance ("" when the outputs file has none). */
  sources: string[];
  /** One system output per instance. */
  outputs: string[];
  /** The references of each instance (at least one each). */
  refs: string[][];
}

/** A file's name (for messages and format detection) and its decoded text. */
export interface NamedText {
  /** Path or name; a `.csv` / `.tsv` suffix selects the CSV reader. */
  name: string;
  /** The file's content. */
  text: string;
}

/**
 * Throws a RangeError unless outputs and refs are non-empty, of equal length,
 * and every instance has at least one reference.
 *
 * @param outputs One output per instance.
 * @param refs References per instance.
 */
export function checkAligned(outputs: string[], refs: string[][]): void {
  if (outputs.length !== refs.length) {
    throw new RangeError(
      `${outputs.length} outputs but ${refs.length} reference groups: they must pair up`,
    );
  }
  if (outputs.length === 0) throw new RangeError("no outputs to score");
  const i = refs.findIndex((r) => r.length === 0);
  if (i >= 0) throw new RangeError(`refs[${i}] is empty: every output needs a reference`);
}

// ---------------------------------------------------------------------------
// Text decoding and Python-compatible lines

/** Byte offset of the first invalid UTF-8 sequence, or -1 when the bytes are valid. */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    let need: number;
    let min: number;
    if (b < 0x80) {
      i++;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) [need, min] = [1, 0x80];
    else if (b >= 0xe0 && b <= 0xef) [need, min] = [2, 0x800];
    else if (b >= 0xf0 && b <= 0xf4) [need, min] = [3, 0x10000];
    else return i;
    let cp = b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    // overlong forms, UTF-16 surrogates and code points past U+10FFFF are invalid
    if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return i;
    i += need + 1;
  }
  return -1;
}

/**
 * Decodes UTF-8 strictly (a leading byte-order mark is dropped).
 *
 * @param bytes File content.
 * @param file File name for the error message.
 * @returns The text.
 * @throws EvalInputError naming the line of the first invalid byte.
 */
export function decodeUtf8(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    const at = Math.max(0, firstInvalidUtf8(bytes));
    let line = 1;
    for (let i = 0; i < at; i++) if (bytes[i] === 0x0a) line++;
    throw new EvalInputError(`invalid UTF-8 (byte offset ${at})`, file, line);
  }
}

/** Python's `str.splitlines()` line boundaries, control characters included on purpose. */
// deno-lint-ignore no-control-regex
const PY_LINE_BREAK = /\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]/;
/** Python's `str.strip()` whitespace (str.isspace). */
const PY_WS =
  "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const PY_STRIP = new RegExp(`^[${PY_WS}]+|[${PY_WS}]+$`, "g");

/** Python's `str.strip()` with no argument. */
export function pyStrip(s: string): string {
  return s.replace(PY_STRIP, "");
}

/**
 * Lines as Python iterates a text file opened with `codecs.open`: split at the
 * `str.splitlines()` boundaries, no extra empty line after a final line break.
 *
 * @param text Decoded file content.
 * @returns The lines without their terminators.
 */
export function pyLines(text: string): string[] {
  if (text === "") return [];
  const lines = text.split(PY_LINE_BREAK);
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

// ---------------------------------------------------------------------------
// Plain text formats

/**
 * Reads a plain text outputs file: one output per line, stripped; blank lines
 * are (empty) outputs as in the official script.
 *
 * @param text File content.
 * @param file File name for error messages.
 * @returns The outputs.
 */
export function parseOutputLines(text: string, file: string): string[] {
  const lines = pyLines(text).map(pyStrip);
  if (lines.every((l) => l === "")) throw new EvalInputError("empty file: no outputs", file);
  return lines;
}

/**
 * Reads a plain text references file: blocks separated by blank lines, one block
 * of references per instance; without any blank line, one reference per line.
 *
 * @param text File content.
 * @param file File name for error messages.
 * @returns The references of each instance.
 */
export function parseReferenceBlocks(text: string, file: string): string[][] {
  const lines = pyLines(text).map(pyStrip);
  let first = 0;
  while (first < lines.length && lines[first] === "") first++;
  let last = lines.length - 1;
  while (last >= first && lines[last] === "") last--;
  if (first > last) throw new EvalInputError("empty file: no references", file);
  const blocks: string[][] = [[]];
  for (let i = first; i <= last; i++) {
    if (lines[i] !== "") blocks[blocks.length - 1].push(lines[i]);
    else if (blocks[blocks.length - 1].length === 0) {
      throw new EvalInputError(
        "two blank lines in a row: an instance without references (blank lines separate instances)",
        file,
        i + 1,
      );
    } else blocks.push([]);
  }
  // the official script's rule: a single block is single-reference data
  if (blocks.length === 1) return blocks[0].map((r) => [r]);
  return blocks;
}

// ---------------------------------------------------------------------------
// CSV / TSV

/** measure_scores.py's header patterns (matched at the start of a header, case-insensitively). */
const HEADER_SRC =
  /^(?:mr|src|source|meaning(?:[_ .-]rep(?:resentation)?)?|da|dial(?:ogue)?[_ .-]act)s?/i;
const HEADER_SYS =
  /^(?:out(?:put)?|ref(?:erence)?|sys(?:tem)?(?:[_ .-](?:out(?:put)?|ref(?:erence)?))?)s?/i;
const HEADER_REF = /^(?:trg|tgt|target|ref(?:erence)?|human(?:[_ .-](?:ref(?:erence)?))?)s?/i;

/** One CSV record and the file line it starts on. */
interface CsvRow {
  fields: string[];
  line: number;
}

/**
 * Parses CSV records from already split lines as Python's `csv.reader` (excel
 * dialect, non-strict) does on a list of lines: a quoted field may continue on
 * the next line, joined without a separator.
 */
function parseCsvRows(
  lines: { text: string; line: number }[],
  delimiter: string,
  file: string,
): CsvRow[] {
  const rows: CsvRow[] = [];
  let fields: string[] = [];
  let field = "";
  let inQuotes = false;
  let quoteClosed = false; // just saw a quote inside a quoted field
  let startLine = 0;
  for (const { text, line } of lines) {
    if (!inQuotes) {
      fields = [];
      field = "";
      startLine = line;
    }
    let atFieldStart = !inQuotes;
    for (const ch of text) {
      if (inQuotes) {
        if (quoteClosed) {
          quoteClosed = false;
          if (ch === '"') {
            field += '"'; // doubled quote
            continue;
          }
          inQuotes = false;
          // fall through: the quoted part ended, this character continues the field
        } else if (ch === '"') {
          quoteClosed = true;
          continue;
        } else {
          field += ch;
          continue;
        }
      }
      if (ch === delimiter) {
        fields.push(field);
        field = "";
        atFieldStart = true;
      } else if (ch === '"' && atFieldStart) {
        inQuotes = true;
        atFieldStart = false;
      } else {
        field += ch;
        atFieldStart = false;
      }
    }
    if (inQuotes && quoteClosed) {
      inQuotes = false;
      quoteClosed = false;
    }
    if (!inQuotes) {
      fields.push(field);
      rows.push({ fields, line: startLine });
    }
  }
  if (inQuotes) throw new EvalInputError("unterminated quoted field", file, startLine);
  return rows;
}

/** Columns read from a CSV/TSV file: the MR column and the text column, with line numbers. */
export interface CsvColumns {
  /** The MR of each row. */
  sources: string[];
  /** The output or reference of each row. */
  texts: string[];
  /** The file line each row starts on. */
  lines: number[];
}

/**
 * Reads a CSV or TSV file as measure_scores.py's `read_tsv` does: lines stripped,
 * mojibake of "£" and "é" repaired, blank lines ignored, tab-separated if the
 * first line has a tab, the MR column and the text column found by header
 * patterns (exactly one each), and every row checked for the header's number
 * of fields.
 *
 * @param text File content.
 * @param file File name for error messages.
 * @param role "outputs" (text column: out/output/sys/system-output/ref...) or
 *   "references" (text column: ref/reference/target/trg/tgt/human-ref...).
 * @returns The two columns.
 */
export function parseCsvColumns(
  text: string,
  file: string,
  role: "outputs" | "references",
): CsvColumns {
  const textHeader = role === "outputs" ? HEADER_SYS : HEADER_REF;
  const lines = pyLines(text).map((t, i) => ({
    text: pyStrip(i === 0 ? t.replaceAll("\ufeff", "") : t)
      .replaceAll("\u0141", "\u00a3").replaceAll("\u00c2\u00a3", "\u00a3")
      .replaceAll("\u00c3\u00a9", "\u00e9").replaceAll("\u00e3\u00a9", "\u00e9"),
    line: i + 1,
  })).filter((l) => l.text !== "");
  if (lines.length === 0) throw new EvalInputError(`empty file: no ${role}`, file);
  const delimiter = lines[0].text.includes("\t") ? "\t" : ",";
  const rows = parseCsvRows(lines, delimiter, file);
  const header = rows[0].fields;
  const srcCols = header.flatMap((h, i) => (HEADER_SRC.test(h) ? [i] : []));
  const textCols = header.flatMap((h, i) => (textHeader.test(h) ? [i] : []));
  let data = rows;
  let srcCol = 0;
  let textCol = 1;
  if (srcCols.length === 1 && textCols.length === 1) {
    [srcCol, textCol] = [srcCols[0], textCols[0]];
    data = rows.slice(1);
  } else if (srcCols.length === 0 && textCols.length === 0) {
    if (header.length !== 2) {
      throw new EvalInputError(
        `no header row found and ${header.length} columns: without a header the file must have ` +
          `exactly 2 columns (MR, ${role === "outputs" ? "output" : "reference"})`,
        file,
        rows[0].line,
      );
    }
  } else {
    throw new EvalInputError(
      `strange column arrangement: header columns [${srcCols.join(",")}] look like an MR column ` +
        `and [${textCols.join(",")}] like a${role === "outputs" ? "n output" : " reference"} ` +
        `column; exactly one of each is needed`,
      file,
      rows[0].line,
    );
  }
  const bad = data.find((r) => r.fields.length !== header.length);
  if (bad !== undefined) {
    throw new EvalInputError(
      `${bad.fields.length} fields where the ${
        data === rows ? "first row" : "header"
      } has ${header.length}`,
      file,
      bad.line,
    );
  }
  if (data.length === 0) throw new EvalInputError(`no ${role} after the header row`, file);
  return {
    sources: data.map((r) => r.fields[srcCol]),
    texts: data.map((r) => r.fields[textCol]),
    lines: data.map((r) => r.line),
  };
}

/** Whether a file name selects the CSV/TSV reader, as in measure_scores.py. */
export function isCsvName(name: string): boolean {
  return /\.[ct]sv$/i.test(name);
}

/**
 * Loads and aligns outputs and references from decoded file contents, as the
 * official script's `load_data` does.
 *
 * @param refs The references file.
 * @param outputs The outputs file.
 * @returns The aligned data.
 * @throws EvalInputError for malformed input or a count mismatch.
 */
export function loadEvalData(refs: NamedText, outputs: NamedText): EvalData {
  let sources: string[];
  let outs: string[];
  let outLines: number[] | undefined;
  if (isCsvName(outputs.name)) {
    const cols = parseCsvColumns(outputs.text, outputs.name, "outputs");
    [sources, outs, outLines] = [cols.sources, cols.texts, cols.lines];
  } else {
    outs = parseOutputLines(outputs.text, outputs.name);
    sources = outs.map(() => "");
  }
  let groups: string[][];
  if (isCsvName(refs.name)) {
    const cols = parseCsvColumns(refs.text, refs.name, "references");
    if (sources.some((s) => s !== "")) {
      // the outputs name their MRs: collect every reference of each MR
      const byMr = new Map<string, string[]>();
      cols.sources.forEach((mr, i) => {
        const list = byMr.get(mr);
        if (list) list.push(cols.texts[i]);
        else byMr.set(mr, [cols.texts[i]]);
      });
      groups = sources.map((mr, i) => {
        const found = byMr.get(mr);
        if (found === undefined) {
          throw new EvalInputError(
            `no reference in ${refs.name} for the MR "${mr}"`,
            outputs.name,
            outLines?.[i],
          );
        }
        return found;
      });
    } else {
      // runs of identical MRs on consecutive rows are one instance
      groups = [];
      let current: string | undefined;
      cols.sources.forEach((mr, i) => {
        if (mr !== current || groups.length === 0) {
          groups.push([cols.texts[i]]);
          current = mr;
        } else groups[groups.length - 1].push(cols.texts[i]);
      });
    }
  } else {
    groups = parseReferenceBlocks(refs.text, refs.name);
  }
  if (groups.length !== outs.length) {
    throw new EvalInputError(
      `${outs.length} outputs but ${refs.name} has references for ${groups.length} instances ` +
        `(plain text references: one block per instance, blocks separated by one blank line)`,
      outputs.name,
    );
  }
  return { sources, outputs: outs, refs: groups };
}

/**
 * Reads both files (strict UTF-8) and aligns them; see {@link loadEvalData}.
 *
 * @param refsPath The references file (text or CSV/TSV).
 * @param outputsPath The outputs file (text or CSV/TSV).
 * @returns The aligned data.
 * @throws EvalInputError for unreadable, non-UTF-8 or malformed input.
 */
export async function readEvalData(refsPath: string, outputsPath: string): Promise<EvalData> {
  const read = async (path: string): Promise<NamedText> => {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (e) {
      const why = e instanceof Deno.errors.NotFound
        ? "no such file"
        : e instanceof Deno.errors.IsADirectory
        ? "is a directory"
        : (e as Error).message;
      throw new EvalInputError(`cannot read: ${why}`, path);
    }
    return { name: path, text: decodeUtf8(bytes, path) };
  };
  return loadEvalData(await read(refsPath), await read(outputsPath));
}
