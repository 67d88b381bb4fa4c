// Reading the official E2E scoring script's file formats, and the errors for bad input.
import assert from "node:assert/strict";
import {
  decodeUtf8,
  EvalInputError,
  firstInvalidUtf8,
  loadEvalData,
  parseCsvColumns,
  parseOutputLines,
  parseReferenceBlocks,
  pyLines,
  pyStrip,
  readEvalData,
} from "../metrics/formats.ts";

/** Asserts an EvalInputError for `file` (and `line`) whose message matches `re`. */
function assertInputError(fn: () => unknown, file: string, line: number | undefined, re: RegExp) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof EvalInputError, `not an EvalInputError: ${e}`);
    assert.equal(e.file, file);
    assert.equal(e.line, line);
    assert.match(e.message, re);
    return true;
  });
}

Deno.test("pyLines/pyStrip follow Python's splitlines and strip", () => {
  assert.deepEqual(pyLines("a\r\nb\rc\nd"), ["a", "b", "c", "d"]);
  assert.deepEqual(pyLines("a\n\n"), ["a", ""]);
  assert.deepEqual(pyLines("a\u2028b\x0cc"), ["a", "b", "c"]);
  assert.deepEqual(pyLines(""), []);
  assert.equal(pyStrip(" \t\u00a0a b\u3000 "), "a b");
});

Deno.test("plain outputs: one per line, stripped, blank lines are empty outputs", () => {
  assert.deepEqual(parseOutputLines("  a b \n\nc\n", "o.txt"), ["a b", "", "c"]);
  assertInputError(() => parseOutputLines("\n \n", "o.txt"), "o.txt", undefined, /empty file/);
  assertInputError(() => parseOutputLines("", "o.txt"), "o.txt", undefined, /empty file/);
});

Deno.test("plain references: blank-line-separated blocks; no blank line = one per line", () => {
  assert.deepEqual(parseReferenceBlocks("a\nb\n\nc\n", "r.txt"), [["a", "b"], ["c"]]);
  // leading and trailing blank lines are tolerated
  assert.deepEqual(parseReferenceBlocks("\n\na\n \nb\n\n\n", "r.txt"), [["a"], ["b"]]);
  // the official single-reference rule
  assert.deepEqual(parseReferenceBlocks("a\nb\nc", "r.txt"), [["a"], ["b"], ["c"]]);
  assertInputError(
    () => parseReferenceBlocks("a\n\n\nb\n", "r.txt"),
    "r.txt",
    3,
    /two blank lines in a row/,
  );
  assertInputError(() => parseReferenceBlocks("\n\n", "r.txt"), "r.txt", undefined, /empty/);
});

Deno.test("CSV: headers found by the official patterns, quotes as Python's csv", () => {
  const text = 'mr,ref\n"name[A], food[B]","He said ""hi"", then left."\nm2,plain\n';
  const cols = parseCsvColumns(text, "r.csv", "references");
  assert.deepEqual(cols.sources, ["name[A], food[B]", "m2"]);
  assert.deepEqual(cols.texts, ['He said "hi", then left.', "plain"]);
  assert.deepEqual(cols.lines, [2, 3]);
  // TSV, other header spellings and column order; a quote inside an unquoted field is literal
  const tsv = "system output\tmeaning representation\nit's 5\" tall\tm1\n";
  const t = parseCsvColumns(tsv, "o.tsv", "outputs");
  assert.deepEqual(t.sources, ["m1"]);
  assert.deepEqual(t.texts, ["it's 5\" tall"]);
  // mojibake repairs of the official reader
  const m = parseCsvColumns("mr,ref\nx,Â£20 cafÃ© Łx\n", "r.csv", "references");
  assert.deepEqual(m.texts, ["£20 café £x"]);
  // no header row: two columns, MR then text
  assert.deepEqual(parseCsvColumns("x,y\n", "r.csv", "references").texts, ["y"]);
  // Python's csv.reader on the stripped lines (checked against CPython): text after a
  // closing quote continues the field, a quoted field spanning lines is joined without
  // a separator, a space before a quote makes the quote literal
  const odd = parseCsvColumns(
    'mr,ref\nx,"abc"def\ny,"multi\nline"\nz, "sp"\n',
    "r.csv",
    "references",
  );
  assert.deepEqual(odd.texts, ["abcdef", "multiline", ' "sp"']);
  assert.deepEqual(odd.lines, [2, 3, 5]);
});

Deno.test("CSV errors name the file and line", () => {
  assertInputError(
    () => parseCsvColumns('mr,ref\nm,"open quote\n', "r.csv", "references"),
    "r.csv",
    2,
    /unterminated quoted field/,
  );
  assertInputError(
    () => parseCsvColumns("mr,ref\nm,a\nm,b,c\n", "r.csv", "references"),
    "r.csv",
    3,
    /3 fields where the header has 2/,
  );
  assertInputError(
    () => parseCsvColumns("mr,ref,reference\nm,a,b\n", "r.csv", "references"),
    "r.csv",
    1,
    /strange column arrangement/,
  );
  assertInputError(
    () => parseCsvColumns("a,b,c\n1,2,3\n", "r.csv", "references"),
    "r.csv",
    1,
    /no header row found and 3 columns/,
  );
  assertInputError(
    () => parseCsvColumns("mr,ref\n", "r.csv", "references"),
    "r.csv",
    undefined,
    /no references after the header/,
  );
});

Deno.test("loadEvalData: text refs and outputs, count mismatch", () => {
  const d = loadEvalData({ name: "r.txt", text: "a\nb\n\nc\n" }, { name: "o.txt", text: "x\ny\n" });
  assert.deepEqual(d, { sources: ["", ""], outputs: ["x", "y"], refs: [["a", "b"], ["c"]] });
  assertInputError(
    () => loadEvalData({ name: "r.txt", text: "a\n\nb\n" }, { name: "o.txt", text: "x\n" }),
    "o.txt",
    undefined,
    /1 outputs but r\.txt has references for 2 instances/,
  );
});

Deno.test("loadEvalData: CSV references grouped by runs of MRs or by the outputs' MRs", () => {
  const refs = {
    name: "refs.csv",
    text: "mr,ref\nm1,a\nm1,b\nm2,c\nm1,d\n",
  };
  // plain outputs: consecutive identical MRs form one instance (m1 appears twice)
  const d1 = loadEvalData(refs, { name: "o.txt", text: "x\ny\nz\n" });
  assert.deepEqual(d1.refs, [["a", "b"], ["c"], ["d"]]);
  // outputs with MRs: every reference of that MR, in the outputs' order
  const d2 = loadEvalData(refs, { name: "o.csv", text: "mr,output\nm2,x\nm1,y\n" });
  assert.deepEqual(d2.sources, ["m2", "m1"]);
  assert.deepEqual(d2.refs, [["c"], ["a", "b", "d"]]);
  assertInputError(
    () => loadEvalData(refs, { name: "o.csv", text: "mr,output\nm1,x\nm9,y\n" }),
    "o.csv",
    3,
    /no reference in refs\.csv for the MR "m9"/,
  );
});

Deno.test("UTF-8: strict decoding names the line; BOM dropped", () => {
  assert.equal(decodeUtf8(new Uint8Array([0xef, 0xbb, 0xbf, 0x61]), "f"), "a");
  const bad = new Uint8Array([0x61, 0x0a, 0x62, 0x0a, 0x63, 0xff, 0x0a]);
  assertInputError(() => decodeUtf8(bad, "f.txt"), "f.txt", 3, /invalid UTF-8 \(byte offset 5\)/);
  assert.equal(firstInvalidUtf8(new TextEncoder().encode("£é€😀")), -1);
  assert.equal(firstInvalidUtf8(new Uint8Array([0x61, 0xc0, 0x80])), 1); // overlong
  assert.equal(firstInvalidUtf8(new Uint8Array([0xed, 0xa0, 0x80])), 0); // surrogate
  assert.equal(firstInvalidUtf8(new Uint8Array([0x61, 0xe2, 0x82])), 1); // truncated
  assert.equal(firstInvalidUtf8(new Uint8Array([0xf4, 0x90, 0x80, 0x80])), 0); // > U+10FFFF
});

Deno.test("readEvalData: missing file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const refs = `${dir}/refs.txt`;
    await Deno.writeTextFile(refs, "a\n");
    await assert.rejects(
      () => readEvalData(refs, `${dir}/nope.txt`),
      (e: unknown) =>
        e instanceof EvalInputError && /nope\.txt: cannot read: no such file/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
