// `deno task eval` on small temporary files in both formats, and its error messages.
// Expected scores are hand-computed; METEOR is skipped (--no-meteor) so that these
// tests do not depend on METEOR's resources.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { main } from "../tasks/eval.ts";

/** Runs the CLI in-process, capturing what it prints. */
async function runMain(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const [log, error] = [console.log, console.error];
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    const code = await main(args);
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    [console.log, console.error] = [log, error];
  }
}

async function withFiles(
  files: Record<string, string | Uint8Array>,
  fn: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "metrics_cli_" });
  try {
    for (const [name, content] of Object.entries(files)) {
      if (typeof content === "string") await Deno.writeTextFile(`${dir}/${name}`, content);
      else await Deno.writeFile(`${dir}/${name}`, content);
    }
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// Two instances whose outputs equal their only reference, 4+ words each with disjoint
// vocabularies: BLEU 1, ROUGE-L 1, CIDEr 10 (each n-gram has idf log 2 and cosine 1).
// NIST: 8 reference words, every unigram once -> info log2(8) = 3 each, every longer
// n-gram follows a once-seen prefix -> info 0; 1-gram info 8 * 3 / 8 words = 3 -> NIST 3.
const REFS_TXT = "the cat sat down\n\na dog ran off\n";
const OUTS_TXT = "the cat sat down\na dog ran off\n";

Deno.test("eval CLI: text files, JSON output", async () => {
  await withFiles({ "refs.txt": REFS_TXT, "outs.txt": OUTS_TXT }, async (dir) => {
    const r = await runMain([`${dir}/refs.txt`, `${dir}/outs.txt`, "--json", "--no-meteor"]);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.equal(j.count, 2);
    assert.ok(Math.abs(j.BLEU - 1) < 1e-12);
    assert.ok(Math.abs(j.NIST - 3) < 1e-12);
    assert.equal(j.METEOR, null);
    assert.ok(Math.abs(j.ROUGE_L - 1) < 1e-12);
    assert.ok(Math.abs(j.CIDEr - 10) < 1e-12);
  });
});

Deno.test("eval CLI: CSV files, table output with 4 decimals", async () => {
  await withFiles({
    "refs.csv": 'mr,ref\nm2,a dog ran off\n"m1, x",the cat sat down\n',
    "outs.csv": 'mr,output\n"m1, x",the cat sat down\nm2,a dog ran off\n',
  }, async (dir) => {
    const r = await runMain([`${dir}/refs.csv`, `${dir}/outs.csv`, "--no-meteor"]);
    assert.equal(r.code, 0, r.err);
    const table = r.out.split("\n");
    assert.deepEqual(table.slice(0, 6), [
      "metric   score",
      "BLEU     1.0000",
      "NIST     3.0000",
      "METEOR   n/a",
      "ROUGE_L  1.0000",
      "CIDEr    10.0000",
    ]);
    assert.match(r.out, /# 2 outputs/);
  });
});

Deno.test("eval CLI: input errors give exit code 1 and a message naming file and line", async () => {
  const bad = new Uint8Array([...new TextEncoder().encode("ok line\nbad "), 0xc3, 0x28, 0x0a]);
  await withFiles({
    "refs.txt": REFS_TXT,
    "outs.txt": OUTS_TXT,
    "three.txt": "a\nb\nc\n",
    "empty.txt": "",
    "bad.txt": bad,
    "bad.csv": "mr,ref\nm,a,extra\n",
  }, async (dir) => {
    const cases: [string[], RegExp][] = [
      [
        [`${dir}/refs.txt`, `${dir}/three.txt`],
        /three\.txt: 3 outputs but .*refs\.txt has references for 2/,
      ],
      [[`${dir}/refs.txt`, `${dir}/empty.txt`], /empty\.txt: empty file/],
      [[`${dir}/refs.txt`, `${dir}/bad.txt`], /bad\.txt:2: invalid UTF-8/],
      [[`${dir}/bad.csv`, `${dir}/outs.txt`], /bad\.csv:2: 3 fields where the header has 2/],
      [[`${dir}/refs.txt`, `${dir}/missing.txt`], /missing\.txt: cannot read: no such file/],
      [[`${dir}/refs.txt`], /expected 2 arguments/],
      [[`${dir}/refs.txt`, `${dir}/outs.txt`, "--bogus"], /bogus/],
    ];
    for (const [args, re] of cases) {
      const r = await runMain([...args, "--no-meteor"]);
      assert.equal(r.code, 1, `${args.join(" ")}: exit code`);
      assert.match(r.err, re);
      assert.doesNotMatch(r.err, /\n\s+at /, "no stack trace");
    }
  });
});

Deno.test("eval CLI: the process exits 1 with one message line and no stack trace", async () => {
  const script = fileURLToPath(new URL("../tasks/eval.ts", import.meta.url));
  await withFiles({ "refs.txt": REFS_TXT, "outs.txt": "only one\n" }, async (dir) => {
    const p = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", script, `${dir}/refs.txt`, `${dir}/outs.txt`, "--no-meteor"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(p.stderr).trim();
    assert.equal(p.code, 1);
    assert.equal(err.split("\n").length, 1, err);
    assert.match(err, /^eval: .*outs\.txt: 1 outputs but/);
  });
});
