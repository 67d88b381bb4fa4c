import assert from "node:assert/strict";
import { Xoshiro128 } from "../autograd/random.ts";
import {
  encodeExample,
  encodePrompt,
  exampleText,
  groupByMR,
  officialMRToLinear,
  parseE2ECsv,
  parseE2EText,
  promptText,
  readE2E,
  type TextEncoderLike,
} from "../data/e2e.ts";
import {
  batchIndices,
  epochSeed,
  type Example,
  makeBatches,
  padBatch,
  shuffleInPlace,
  uniformInt,
} from "../data/batching.ts";
import { GPT2Tokenizer } from "../data/tokenizer.ts";

// ../shared beside the repository root holds the E2E files.
const E2E = new URL("../../shared/e2e/", import.meta.url).pathname;
const haveE2E = (() => {
  try {
    return Deno.statSync(`${E2E}train.txt`).isFile;
  } catch {
    return false;
  }
})();
if (!haveE2E) console.warn(`skipping tests on the real E2E files: ${E2E} is absent`);

// ---------------------------------------------------------------- text format

Deno.test("parseE2EText: pairs verbatim, blank lines skipped, line numbers kept", () => {
  const text = "name : A | Type : pub||A is a pub . \n\n   \r\nname : B||B . \r\n";
  assert.deepEqual(parseE2EText(text, "x.txt"), [
    { mr: "name : A | Type : pub", ref: "A is a pub . ", line: 1 },
    { mr: "name : B", ref: "B . ", line: 4 },
  ]);
  assert.deepEqual(parseE2EText("", "x.txt"), []);
  assert.deepEqual(parseE2EText("name : C||", "x.txt"), [{ mr: "name : C", ref: "", line: 1 }]);
});

Deno.test("parseE2EText: malformed lines name file and line", () => {
  assert.throws(
    () => parseE2EText("name : A||ok\nno separator here\n", "d/t.txt"),
    /^Error: d\/t\.txt:2: expected one "\|\|" between MR and reference, found 0$/,
  );
  assert.throws(() => parseE2EText("\n\na||b||c", "t.txt"), /t\.txt:3: .* found 2/);
  assert.throws(() => parseE2EText("a||b\n  ||ref", "t.txt"), /^Error: t\.txt:2: empty MR$/);
});

// ---------------------------------------------------------------- official MR and CSV

Deno.test("officialMRToLinear: the paper's names, order and value tokenisation", () => {
  // train.txt line 1's MR, written in the official format by hand.
  assert.equal(
    officialMRToLinear(
      "name[The Vaults], eatType[pub], priceRange[more than £30], customer rating[5 out of 5], near[Café Adriatic]",
    ),
    "name : The Vaults | Type : pub | price : more than £ 30 | customer rating : 5 out of 5 | near : Café Adriatic",
  );
  assert.equal(
    officialMRToLinear("name[Alimentum], area[city centre], familyFriendly[no]"),
    "name : Alimentum | area : city centre | family friendly : no",
  );
  assert.equal(
    officialMRToLinear("name[X], food[Fast food], priceRange[£20-25], priceRange[less than £20]"),
    "name : X | food : Fast food | price : £ 20 - 25 | price : less than £ 20",
  );
  assert.throws(
    () => officialMRToLinear("name[X], colour[red]", "f.csv:7"),
    /^Error: f\.csv:7: unknown MR attribute "colour"$/,
  );
  assert.throws(
    () => officialMRToLinear("name[X], area city", "f.csv:8"),
    /f\.csv:8: malformed MR at character 9/,
  );
  assert.throws(() => officialMRToLinear("name[X],", "f.csv:9"), /f\.csv:9: MR ends with a comma/);
  assert.throws(() => officialMRToLinear("name[ ]", "f.csv:2"), /f\.csv:2: empty value/);
  assert.throws(() => officialMRToLinear("constructor[x]", "f.csv:2"), /unknown MR attribute/);
});

Deno.test("parseE2ECsv: quoting, CRLF, embedded newlines and line numbers", () => {
  const csv = "mr,ref\r\n" +
    '"name[A], eatType[pub]","A, a pub, says ""hi""."\r\n' +
    "name[B],B is plain\r\n" +
    '"name[C]","two\nlines"\r\n' +
    '"name[D]",""\r\n';
  assert.deepEqual(parseE2ECsv(csv, "x.csv"), [
    { mr: "name : A | Type : pub", ref: 'A, a pub, says "hi".', line: 2 },
    { mr: "name : B", ref: "B is plain", line: 3 },
    { mr: "name : C", ref: "two\nlines", line: 4 },
    { mr: "name : D", ref: "", line: 6 },
  ]);
  // Quoted header, LF endings, no final newline.
  assert.deepEqual(parseE2ECsv('"mr","ref"\n"name[E]","e"', "y.csv"), [
    { mr: "name : E", ref: "e", line: 2 },
  ]);
  // The MR-only test file.
  assert.deepEqual(parseE2ECsv('MR\n"name[F], area[riverside]"\n', "t.csv"), [
    { mr: "name : F | area : riverside", ref: "", line: 2 },
  ]);
});

Deno.test("parseE2ECsv: errors name file and line", () => {
  const cases: [string, RegExp][] = [
    [
      "mr,text\nname[A],a\n",
      /^Error: c\.csv:1: header must be "mr,ref" \(or "MR"\), got "mr,text"$/,
    ],
    ["", /c\.csv:1: empty file/],
    ['mr,ref\nname[A],a\n"name[B],"b\n', /^Error: c\.csv:3: unexpected "b" after a closing quote$/],
    [
      'mr,ref\nname[A],a\n"name[B]","b\nname[C],c\n',
      /^Error: c\.csv:3: quoted field never closed$/,
    ],
    ['mr,ref\n"name[A]",a "quote"\n', /^Error: c\.csv:2: quote inside an unquoted field$/],
    ["mr,ref\nname[A],a\nname[B],b,c\n", /^Error: c\.csv:3: expected 2 field\(s\), got 3$/],
    ["mr,ref\nname[A]\n", /^Error: c\.csv:2: expected 2 field\(s\), got 1$/],
    ['mr,ref\n"",a\n', /^Error: c\.csv:2: empty MR$/],
    ['mr,ref\n"x\ny",a\n"name[Q], foo[1]",b\n', /^Error: c\.csv:2: malformed MR/],
    ['mr,ref\n"a\n\nb","c"\n"name[Q], foo[1]",b\n', /^Error: c\.csv:2: malformed MR/],
    [
      'mr,ref\n"name[A]","multi\nline"\n"name[Q], foo[1]",b\n',
      /^Error: c\.csv:4: unknown MR attribute "foo"$/,
    ],
  ];
  for (const [text, re] of cases) assert.throws(() => parseE2ECsv(text, "c.csv"), re, text);
});

Deno.test("readE2E: extension picks the format; unknown extension is an error", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a.txt`, "name : A||a . \n");
    await Deno.writeTextFile(`${dir}/a.csv`, 'mr,ref\n"name[A]","a."\n');
    await Deno.writeTextFile(`${dir}/a.tsv`, "x");
    assert.deepEqual(await readE2E(`${dir}/a.txt`), [{ mr: "name : A", ref: "a . ", line: 1 }]);
    assert.deepEqual(await readE2E(`${dir}/a.csv`), [{ mr: "name : A", ref: "a.", line: 2 }]);
    await assert.rejects(
      () => readE2E(`${dir}/a.tsv`),
      new RegExp(`${dir}/a.tsv: unknown E2E file type`),
    );
    await assert.rejects(() => readE2E(`${dir}/missing.txt`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("groupByMR: consecutive runs, order kept, empty refs not listed", () => {
  const p = (mr: string, ref: string, line: number) => ({ mr, ref, line });
  assert.deepEqual(
    groupByMR([p("a", "1", 1), p("a", "2", 2), p("b", "3", 3), p("a", "4", 4), p("c", "", 5)]),
    [
      { mr: "a", refs: ["1", "2"] },
      { mr: "b", refs: ["3"] },
      { mr: "a", refs: ["4"] },
      { mr: "c", refs: [] },
    ],
  );
  assert.deepEqual(groupByMR([]), []);
});

Deno.test({
  name: "real files: counts from shared/README, CSV MRs equal the paper's, refs align",
  ignore: !haveE2E,
  fn: async () => {
    const [train, valid, test, dev, testCsv, testMRs] = await Promise.all([
      readE2E(`${E2E}train.txt`),
      readE2E(`${E2E}valid.txt`),
      readE2E(`${E2E}test.txt`),
      readE2E(`${E2E}devset.csv`),
      readE2E(`${E2E}testset_w_refs.csv`),
      readE2E(`${E2E}testset.csv`),
    ]);
    assert.equal(train.length, 42061);
    assert.equal(valid.length, 4672);
    assert.equal(test.length, 4693);
    assert.equal(groupByMR(valid).length, 547);
    assert.equal(groupByMR(test).length, 630);
    for (const [csv, txt] of [[dev, valid], [testCsv, test]]) {
      assert.equal(csv.length, txt.length);
      for (let i = 0; i < csv.length; i++) {
        assert.equal(csv[i].mr, txt[i].mr, `row ${i}`);
        // The paper's references are the official ones re-tokenised: same non-space characters.
        assert.equal(csv[i].ref.replace(/\s+/g, ""), txt[i].ref.replace(/\s+/g, ""), `row ${i}`);
      }
    }
    const groups = groupByMR(testMRs);
    assert.deepEqual(groups.map((g) => g.mr), groupByMR(test).map((g) => g.mr));
    assert.ok(groups.every((g) => g.refs.length === 0));
    assert.equal(
      train[0].ref,
      "The Vaults pub near Café Adriatic has a 5 star rating . Prices start at £ 30 . ",
    );
  },
});

// ---------------------------------------------------------------- training examples

Deno.test("exampleText / promptText: the paper's spacing", () => {
  assert.equal(exampleText("name : A", "A . "), " name : A <|endoftext|> A .  <|endoftext|>");
  assert.equal(promptText("name : A"), " name : A <|endoftext|>");
});

Deno.test("encodeExample: label masking on a hand-worked example (mock tokenizer)", () => {
  // Splits on single spaces; a word's id is its position in WORDS; "" is id 1 (a lone space).
  const WORDS = ["<|endoftext|>", "", "name", ":", "A", "pub", "."];
  const mock: TextEncoderLike = {
    eosTokenId: 0,
    encode: (text) =>
      text.split(" ").map((w) => {
        const id = WORDS.indexOf(w);
        if (id < 0) throw new Error(`mock: ${w}`);
        return id;
      }),
  };
  // " name : A <|endoftext|> A pub . <|endoftext|>" → "", name, :, A, eos, A, pub, ., eos
  const { ids, labels } = encodeExample(mock, "name : A", "A pub .");
  assert.deepEqual(ids, [1, 2, 3, 4, 0, 4, 5, 6, 0]);
  assert.deepEqual(labels, [-100, -100, -100, -100, -100, 4, 5, 6, 0]);
  assert.deepEqual(encodePrompt(mock, "name : A"), [1, 2, 3, 4, 0]);
  assert.throws(() => encodeExample(mock, "a <|endoftext|> b", "r"), /MR contains <\|endoftext\|>/);
});

Deno.test("encodeExample: GPT-2 ids of a worked example", async () => {
  const tok = await GPT2Tokenizer.offlineDefault();
  // " name : The Vaults <|endoftext|> The Vaults pub .  <|endoftext|>": GPT-2 ids of
  // " name"=1438 " :"=1058 " The"=383 " Vaults"=21314 " "=220, eos 50256, " pub"=2240
  // " ."=764, then the two spaces before the final eos are two 220s (as gpt-tokenizer says).
  const { ids, labels } = encodeExample(tok, "name : The Vaults", "The Vaults pub . ");
  assert.deepEqual(ids, [
    1438,
    1058,
    383,
    21314,
    220,
    50256,
    383,
    21314,
    2240,
    764,
    220,
    220,
    50256,
  ]);
  assert.deepEqual(labels, [
    -100,
    -100,
    -100,
    -100,
    -100,
    -100,
    383,
    21314,
    2240,
    764,
    220,
    220,
    50256,
  ]);
  assert.deepEqual(encodePrompt(tok, "name : The Vaults"), [1438, 1058, 383, 21314, 220, 50256]);
});

Deno.test({
  name: "encodePrompt is the masked prefix of encodeExample on real MRs",
  ignore: !haveE2E,
  fn: async () => {
    const tok = await GPT2Tokenizer.offlineDefault();
    const pairs = (await readE2E(`${E2E}valid.txt`)).slice(0, 500);
    for (const { mr, ref } of pairs) {
      const { ids, labels } = encodeExample(tok, mr, ref);
      const prompt = encodePrompt(tok, mr);
      assert.deepEqual(ids.slice(0, prompt.length), prompt);
      assert.ok(labels.slice(0, prompt.length).every((l) => l === -100));
      assert.deepEqual(labels.slice(prompt.length), ids.slice(prompt.length));
      assert.equal(ids[ids.length - 1], 50256);
      assert.equal(ids.filter((i) => i === 50256).length, 2);
    }
  },
});

// ---------------------------------------------------------------- batching

Deno.test("uniformInt and shuffle: range, permutation, rough uniformity", () => {
  const r = new Xoshiro128(1);
  for (let i = 0; i < 1000; i++) {
    const x = uniformInt(r, 7);
    assert.ok(Number.isInteger(x) && x >= 0 && x < 7);
  }
  assert.throws(() => uniformInt(r, 0), RangeError);
  // All 6 orders of 3 items, each near 1/6 of 60,000 shuffles (binomial sd ≈ 91; allow ±500).
  const counts = new Map<string, number>();
  for (let i = 0; i < 60000; i++) {
    const k = shuffleInPlace([0, 1, 2], r).join("");
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  assert.equal(counts.size, 6);
  for (const c of counts.values()) assert.ok(Math.abs(c - 10000) < 500, String(c));
  const big = Array.from({ length: 1000 }, (_, i) => i);
  const shuffled = new Xoshiro128(5).shuffle([...big]);
  assert.notDeepEqual(shuffled, big);
  assert.deepEqual([...shuffled].sort((a, b) => a - b), big);
});

Deno.test("padBatch: right padding with eos, labels -100 and mask 0 on pads", () => {
  const batch = padBatch([
    { ids: [5, 6, 7], labels: [-100, 6, 7] },
    { ids: [8], labels: [8] },
  ], 50256);
  assert.deepEqual(batch, {
    ids: [[5, 6, 7], [8, 50256, 50256]],
    labels: [[-100, 6, 7], [8, -100, -100]],
    mask: [[1, 1, 1], [1, 0, 0]],
  });
  assert.throws(
    () => padBatch([{ ids: [1], labels: [1] }, { ids: [1, 2], labels: [1] }], 0),
    /^Error: example 1: ids has length 2 but labels has length 1$/,
  );
  assert.throws(() => padBatch([{ ids: [], labels: [] }], 0), /example 0: empty/);
});

function toyExamples(n: number, seed: number): Example[] {
  const r = new Xoshiro128(seed);
  return Array.from({ length: n }, (_, i) => {
    const len = 1 + uniformInt(r, 30);
    const ids = Array.from({ length: len }, (_, j) => i * 100 + j);
    return { ids, labels: ids.map((x, j) => (j < 2 ? -100 : x)) };
  });
}

Deno.test("batchIndices: a permutation, deterministic per seed and epoch", () => {
  const lengths = toyExamples(103, 9).map((e) => e.ids.length);
  const a = batchIndices(lengths, { batchSize: 10, seed: 3 });
  assert.deepEqual(a, batchIndices(lengths, { batchSize: 10, seed: 3 }));
  assert.notDeepEqual(a, batchIndices(lengths, { batchSize: 10, seed: 4 }));
  assert.notDeepEqual(a, batchIndices(lengths, { batchSize: 10, seed: 3, epoch: 1 }));
  assert.notEqual(epochSeed(3, 0), epochSeed(3, 1));
  assert.deepEqual(a.map((b) => b.length), [...Array(10).fill(10), 3]);
  assert.deepEqual(a.flat().sort((x, y) => x - y), lengths.map((_, i) => i));
  // No shuffle: file order.
  assert.deepEqual(batchIndices([1, 1, 1, 1, 1], { batchSize: 2, shuffle: false }), [
    [0, 1],
    [2, 3],
    [4],
  ]);
  assert.deepEqual(
    batchIndices([1, 1, 1, 1, 1], { batchSize: 2, shuffle: false, dropLast: true }),
    [[0, 1], [2, 3]],
  );
  assert.throws(
    () => batchIndices(lengths, { batchSize: 0 }),
    /batchSize must be a positive integer/,
  );
  assert.throws(
    () => batchIndices(lengths, { batchSize: 4, bucketSize: 10 }),
    /multiple of batchSize 4/,
  );
});

Deno.test("batchIndices: length bucketing sorts within chunks and cuts padding", () => {
  const examples = toyExamples(400, 2);
  const lengths = examples.map((e) => e.ids.length);
  const opts = { batchSize: 8, seed: 1 };
  const plain = batchIndices(lengths, opts);
  const bucketed = batchIndices(lengths, { ...opts, bucketSize: 80 });
  assert.deepEqual(bucketed.flat().sort((x, y) => x - y), lengths.map((_, i) => i));
  assert.deepEqual(bucketed, batchIndices(lengths, { ...opts, bucketSize: 80 }));
  // Within a batch, longest first.
  for (const b of bucketed) {
    for (let i = 1; i < b.length; i++) assert.ok(lengths[b[i - 1]] >= lengths[b[i]]);
  }
  const padding = (bs: number[][]) =>
    bs.reduce((s, b) => s + b.length * Math.max(...b.map((i) => lengths[i])), 0) -
    lengths.reduce((s, l) => s + l, 0);
  assert.ok(padding(bucketed) * 3 < padding(plain), `${padding(bucketed)} vs ${padding(plain)}`);
  // Batches are shuffled after sorting: their max lengths are not monotone within each chunk.
  const maxes = bucketed.map((b) => lengths[b[0]]);
  assert.ok(
    maxes.some((m, i) => i > 0 && m > maxes[i - 1]) &&
      maxes.some((m, i) => i > 0 && m < maxes[i - 1]),
  );
});

Deno.test("makeBatches: padded batches of the chosen examples", () => {
  const examples = toyExamples(25, 4);
  const batches = makeBatches(examples, 50256, { batchSize: 4, seed: 7, bucketSize: 8 });
  const groups = batchIndices(examples.map((e) => e.ids.length), {
    batchSize: 4,
    seed: 7,
    bucketSize: 8,
  });
  assert.equal(batches.length, groups.length);
  batches.forEach((b, k) => {
    const width = Math.max(...groups[k].map((i) => examples[i].ids.length));
    groups[k].forEach((i, row) => {
      const e = examples[i];
      const pad = width - e.ids.length;
      assert.deepEqual(b.ids[row], [...e.ids, ...Array(pad).fill(50256)]);
      assert.deepEqual(b.labels[row], [...e.labels, ...Array(pad).fill(-100)]);
      assert.deepEqual(b.mask[row], [...Array(e.ids.length).fill(1), ...Array(pad).fill(0)]);
    });
  });
  assert.throws(
    () => makeBatches([{ ids: [1, 2], labels: [1] }], 0, { batchSize: 1 }),
    /example 0: ids has length 2 but labels has length 1/,
  );
});
