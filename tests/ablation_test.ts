/** `deno task ablation` end to end with tiny settings: every file written, reruns skip work. */
import assert from "node:assert/strict";
import { GPT2Tokenizer } from "../data/tokenizer.ts";
import { GPT2, gpt2Config } from "../models/gpt2.ts";
import { loadAblationConfig, runAblation } from "../train/ablation.ts";

const SHARED = new URL("../../shared/", import.meta.url).pathname;
const hasShared = await Deno.stat(`${SHARED}models/fake-gpt2/model.safetensors`).then(
  () => true,
  () => false,
);
if (!hasShared) {
  console.log("ablation_test: ../shared absent: using a random GPT-2 and inline E2E lines");
}

const LINES = [
  "name : The Vaults | Type : pub | near : Café Adriatic||The Vaults pub is near Café Adriatic . ",
  "name : The Eagle | Type : coffee shop | area : riverside||The Eagle is a coffee shop by the riverside . ",
  "name : Zizzi | Type : restaurant | food : Italian||Zizzi is an Italian restaurant . ",
];

Deno.test("ablation: prefix lengths and fine-tuning, results.csv/md/svg, resumable", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "lf_ablation_test_" });
  try {
    await Deno.mkdir(`${tmp}/data`);
    const text = hasShared
      ? (await Deno.readTextFile(`${SHARED}e2e/test.txt`)).split("\n").slice(0, 20).join("\n") +
        "\n"
      : Array.from({ length: 20 }, (_, i) => LINES[i % 3]).join("\n") + "\n";
    for (const f of ["train.txt", "valid.txt", "test.txt"]) {
      await Deno.writeTextFile(`${tmp}/data/${f}`, text);
    }
    let model = `${SHARED}models/fake-gpt2`;
    if (!hasShared) {
      const m = GPT2.random(gpt2Config({ nLayer: 1, nHead: 1, nEmbd: 4, nPositions: 256 }), 1);
      await m.save(`${tmp}/model`);
      await (await GPT2Tokenizer.offlineDefault()).save(`${tmp}/model`);
      m.dispose();
      model = `${tmp}/model`;
    }
    await Deno.writeTextFile(
      `${tmp}/ablation.yaml`,
      [
        "prefix_lens: [1, 2]",
        "finetune: true",
        "split: test",
        `out: ${tmp}/out`,
        "train:",
        "  gen_limit: 3",
        hasShared ? `  meteor_dir: ${SHARED}meteor` : "  meteor_dir: null",
        `  model: ${model}`,
        `  data: ${tmp}/data`,
        "  epochs: 1",
        "  batch_size: 10",
        "  beams: 2",
        "  max_new_tokens: 3",
        "  backend: cpu",
      ].join("\n") + "\n",
    );
    const cfg = await loadAblationConfig(`${tmp}/ablation.yaml`);
    // `only` runs a subset (as a second process would); the full run then skips it.
    const some = await runAblation({ ...cfg, only: ["prefix_L2"] }, () => {});
    assert.deepEqual(some.map((r) => r.run), ["prefix_L2"]);
    const lines: string[] = [];
    const rows = await runAblation(cfg, (s) => lines.push(s));
    assert.deepEqual(rows.map((r) => r.run), ["prefix_L1", "prefix_L2", "finetune"]);
    assert.ok(lines.includes("prefix_L2: trained (skipping)"), lines.join("\n"));
    assert.deepEqual(rows[1], some[0]);
    for (const r of rows) {
      assert.ok(r.steps > 0 && r.sec_per_step > 0 && r.gen_seconds > 0, JSON.stringify(r));
      assert.ok(Number.isFinite(r.sec_per_epoch), `${r.run}: s/epoch ${r.sec_per_epoch}`);
    }
    for (const r of rows) {
      for (const k of ["BLEU", "NIST", "ROUGE_L", "CIDEr"] as const) {
        assert.ok(Number.isFinite(r[k]), `${r.run} ${k}`);
      }
    }
    assert.ok(rows[0].trainable < rows[2].trainable);
    assert.equal(rows[2].trainable, rows[2].model_params);
    const csv = (await Deno.readTextFile(`${tmp}/out/results.csv`)).trim().split("\n");
    assert.equal(csv.length, 4);
    assert.ok(csv[0].startsWith("run,tuner,prefix_len"));
    const md = await Deno.readTextFile(`${tmp}/out/results.md`);
    assert.match(md, /\| Prefix \(L=1\) \|/);
    assert.match(md, /\| Fine-tune \|/);
    const svg = await Deno.readTextFile(`${tmp}/out/ablation.svg`);
    assert.match(svg, /^<svg/);
    assert.match(svg, /BLEU \(prefix\)/);
    // A second run finds everything done and only rewrites the tables.
    const again: string[] = [];
    const rows2 = await runAblation(cfg, (s) => again.push(s));
    assert.deepEqual(rows2, rows);
    // Three runs, three steps each (training, decoding, scoring), all skipped.
    assert.equal(again.filter((l) => l.includes("skipping")).length, 9);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("ablation config: bad keys and values are named", async () => {
  const tmp = await Deno.makeTempFile({ suffix: ".yaml" });
  try {
    await Deno.writeTextFile(tmp, "prefix_lengths: [1]\n");
    await assert.rejects(() => loadAblationConfig(tmp), /unknown key 'prefix_lengths'/);
    await Deno.writeTextFile(tmp, "prefix_lens: [1, 0]\n");
    await assert.rejects(
      () => loadAblationConfig(tmp),
      /'prefix_lens' must be ≥ 1/,
    );
    await Deno.writeTextFile(tmp, "train:\n  epochs: x\n");
    await assert.rejects(() => loadAblationConfig(tmp), /'epochs' must be an integer/);
    await Deno.writeTextFile(tmp, "prefix_lens: [1, 5]\n");
    await assert.rejects(
      () => loadAblationConfig(tmp, { only: "prefix_L5,prefix_L7" }),
      /'only': unknown run 'prefix_L7' \(runs: prefix_L1, prefix_L5, finetune\)/,
    );
    assert.deepEqual((await loadAblationConfig(tmp, { only: "finetune" })).only, ["finetune"]);
  } finally {
    await Deno.remove(tmp);
  }
});

Deno.test("ablation command line: its own keys, training keys, --no-finetune, --only", async () => {
  const { parseCommandLine } = await import("../train/config.ts");
  const { ABLATION_SCHEMA } = await import("../train/ablation.ts");
  const { TRAIN_SCHEMA } = await import("../train/e2e.ts");
  const schema = { ...TRAIN_SCHEMA, ...ABLATION_SCHEMA };
  const cl = parseCommandLine(
    ["--prefix-lens", "1,5", "--no-finetune", "--only", "prefix_L5", "--lr", "0.01", "--out", "o"],
    schema,
  );
  const cfg = await loadAblationConfig(null, cl.keys);
  assert.deepEqual(cfg.prefix_lens, [1, 5]);
  assert.equal(cfg.finetune, false);
  assert.deepEqual(cfg.only, ["prefix_L5"]);
  assert.equal(cfg.train.lr, 0.01);
  assert.equal(cfg.out, "o");
  const { main } = await import("../tasks/ablation.ts");
  const error = console.error;
  const printed: string[] = [];
  console.error = (s: string) => printed.push(s);
  try {
    assert.equal(await main(["--tuner", "fine"]), 2); // each run sets its own tuner
    assert.match(printed.join("\n"), /Unknown option '--tuner'/);
  } finally {
    console.error = error;
  }
});
