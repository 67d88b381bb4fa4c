/** `deno task repro-mini` end to end with tiny settings: pretrain → runs → baseline → report. */
import assert from "node:assert/strict";
import { checks, copyRates, mrValues, reproMini } from "../train/repro_mini.ts";
import type { AblationRow } from "../train/ablation.ts";

const LINES = [
  "name : The Vaults | Type : pub | near : Café Adriatic||The Vaults pub is near Café Adriatic . ",
  "name : The Eagle | Type : coffee shop | area : riverside||The Eagle is a coffee shop by the riverside . ",
  "name : Zizzi | Type : restaurant | food : Italian||Zizzi is an Italian restaurant . ",
];

Deno.test("mrValues: the trivial baseline keeps the values in order", () => {
  assert.equal(
    mrValues("name : The Vaults | Type : pub | price : more than £ 30"),
    "The Vaults pub more than £ 30",
  );
});

Deno.test("copyRates: verbatim name / near values over the MRs that have them", () => {
  const mrs = [
    "name : The Vaults | near : Café Brazil",
    "name : Zizzi | area : riverside",
    "name : The Eagle | near : Burger King",
  ];
  const outs = [
    "The Vaults is near Café Brazil .",
    "Zizzi is by the river .",
    "A pub near Burger King .",
  ];
  assert.deepEqual(copyRates(mrs, outs), { name: 2 / 3, near: 1 });
  assert.deepEqual(copyRates(mrs, []), { name: 0, near: 0 });
});

Deno.test("checks: each line is computed from the scores and step times", () => {
  const row = (BLEU: number, sec: number) => ({ BLEU, sec_per_step: sec }) as AblationRow;
  const lines = checks(row(0.61, 0.5), row(0.54, 0.3), { BLEU: 0.2 });
  assert.deepEqual(lines.map((l) => l.slice(2, 3)), ["✓", "✗", "✓", "✓", "✓"]);
  assert.match(lines[1], /prefix-tuning ≥ 55 BLEU: 54\.0/);
  assert.match(lines[2], /0\.300 s vs 0\.500 s \(0\.60×\)/);
  const worse = checks(row(0.1, 0.2), row(0.1, 0.3), { BLEU: 0.2 });
  assert.deepEqual(worse.map((l) => l.slice(2, 3)), ["✗", "✗", "✗", "✗", "✗"]);
});

Deno.test("repro-mini: every step runs and the results folder is complete", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "lf_repro_test_" });
  try {
    await Deno.mkdir(`${tmp}/data`);
    const text = Array.from({ length: 12 }, (_, i) => LINES[i % 3]).join("\n") + "\n";
    for (const f of ["train.txt", "valid.txt", "test.txt"]) {
      await Deno.writeTextFile(`${tmp}/data/${f}`, text);
    }
    await Deno.writeTextFile(
      `${tmp}/pre.yaml`,
      `n_layer: 1\nn_head: 1\nn_embd: 8\nn_positions: 64\nseq_len: 16\nbatch_size: 2\nepochs: 1\nwarmup_steps: 0\n` +
        `max_minutes: 0\nbackend: cpu\ndata: ${tmp}/data\nout: ${tmp}/pre\nsave_every: 0\n`,
    );
    await Deno.writeTextFile(
      `${tmp}/abl.yaml`,
      `prefix_lens: [1, 5]\nfinetune: true\nsplit: test\nout: ${tmp}/abl\n` +
        `run_overrides:\n  prefix_L5: { max_minutes: 30 }\n` +
        `train:\n  data: ${tmp}/data\n  gen_limit: 2\n  epochs: 1\n  batch_size: 6\n  beams: 2\n  max_new_tokens: 3\n  backend: cpu\n  mid_dim: 8\n`,
    );
    const report = await reproMini({
      results: `${tmp}/results`,
      pretrainConfig: `${tmp}/pre.yaml`,
      ablationConfig: `${tmp}/abl.yaml`,
      log: () => {},
    });
    assert.match(report, /miniature of the paper's setting/);
    assert.match(report, /\| Fine-tune \(ours, miniature\) \|/);
    assert.match(report, /\| Prefix L=5 \(ours, miniature\) \|/);
    assert.match(report, /\| MR values \(trivial baseline\) \|/);
    for (
      const f of [
        "REPORT.md",
        "results.csv",
        "ablation.svg",
        "configs/pretrain.yaml",
        "pretrain/loss.svg",
        "runs/prefix_L5/outputs/test.txt",
        "runs/prefix_L5/scores.json",
        "runs/finetune/log.jsonl",
        "baseline_mr_values.txt",
      ]
    ) {
      assert.ok((await Deno.stat(`${tmp}/results/${f}`)).isFile, f);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
