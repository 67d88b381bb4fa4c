/**
 * End to end on a real Hugging Face checkpoint (../shared/models/fake-gpt2, random weights):
 * prefix training lowers the loss and leaves GPT-2 bit-identical, the exported prefix has the
 * expected size, --resume reproduces an uninterrupted run, fine-tuning saves a loadable model,
 * and generate writes one line per MR. Without ../shared a random GPT-2 written by the test and
 * a few inline E2E lines are used instead.
 */
import assert from "node:assert/strict";
import { GPT2Tokenizer } from "../data/tokenizer.ts";
import { GPT2 } from "../models/gpt2.ts";
import { gpt2Config } from "../models/gpt2.ts";
import { loadSafetensors } from "../models/safetensors.ts";
import {
  TRAIN_DEFAULTS as DEFAULT_CONFIG,
  type TrainConfig,
  trainE2E as train,
} from "../train/e2e.ts";
import { parseCommandLine } from "../train/config.ts";
import { loadTrainConfig } from "../train/pipeline.ts";
import { TRAIN_SCHEMA } from "../train/e2e.ts";
import { main as generateMain } from "../tasks/generate.ts";

const SHARED = new URL("../../shared/", import.meta.url).pathname;
const hasShared = await Deno.stat(`${SHARED}models/fake-gpt2/model.safetensors`).then(
  () => true,
  () => false,
);
if (!hasShared) {
  console.log("train_test: ../shared absent: using a random GPT-2 and inline E2E lines");
}

const INLINE = [
  "name : The Vaults | Type : pub | price : more than £ 30 | near : Café Adriatic||The Vaults pub near Café Adriatic is expensive . ",
  "name : The Eagle | Type : coffee shop | area : riverside||The Eagle is a coffee shop by the riverside . ",
  "name : Zizzi | Type : restaurant | food : Italian||Zizzi is an Italian restaurant . ",
];

async function fixture(): Promise<{ model: string; data: string; tmp: string }> {
  const tmp = await Deno.makeTempDir({ prefix: "lf_train_test_" });
  await Deno.mkdir(`${tmp}/data`);
  if (hasShared) {
    const take = async (f: string, n: number) =>
      (await Deno.readTextFile(`${SHARED}e2e/${f}`)).split("\n").slice(0, n).join("\n") + "\n";
    await Deno.writeTextFile(`${tmp}/data/train.txt`, await take("train.txt", 50));
    await Deno.writeTextFile(`${tmp}/data/valid.txt`, await take("valid.txt", 10));
    await Deno.writeTextFile(`${tmp}/data/test.txt`, await take("test.txt", 12));
    return { model: `${SHARED}models/fake-gpt2`, data: `${tmp}/data`, tmp };
  }
  const lines = Array.from({ length: 50 }, (_, i) => INLINE[i % INLINE.length]).join("\n") + "\n";
  for (const f of ["train.txt", "valid.txt", "test.txt"]) {
    await Deno.writeTextFile(`${tmp}/data/${f}`, lines);
  }
  const m = GPT2.random(gpt2Config({ nLayer: 1, nHead: 1, nEmbd: 4, nPositions: 256 }), 3);
  await m.save(`${tmp}/model`);
  await (await GPT2Tokenizer.offlineDefault()).save(`${tmp}/model`);
  m.dispose();
  return { model: `${tmp}/model`, data: `${tmp}/data`, tmp };
}

const quiet = () => {};

const MINI_CONFIG = new URL("../configs/e2e_prefix_mini.yaml", import.meta.url).pathname;

/** The command line of `deno task train` as the task reads it (config file, then flags). */
async function parseTrainArgs(args: string[], file = MINI_CONFIG) {
  const cl = parseCommandLine(args, TRAIN_SCHEMA, {
    config: { type: "string", doc: "" },
    resume: { type: "boolean", doc: "" },
  });
  const resume = !!cl.extras.resume;
  const config = await loadTrainConfig((cl.extras.config as string) ?? file, cl.keys, { resume });
  return { config, resume };
}

function cfg(
  f: { model: string; data: string; tmp: string },
  over: Partial<TrainConfig>,
): TrainConfig {
  return {
    ...DEFAULT_CONFIG,
    model: f.model,
    data: f.data,
    backend: "cpu",
    batch_size: 10,
    epochs: 2,
    lr: 0.05,
    valid_limit: 10,
    out: `${f.tmp}/run`,
    ...over,
  };
}

Deno.test("prefix-tuning on fake-gpt2: loss falls, GPT-2 untouched, export size, generate", async () => {
  const f = await fixture();
  try {
    const before = await loadSafetensors(`${f.model}/model.safetensors`);
    // The frozen GPT-2's weights after training, bit for bit.
    const after = new Map<string, Float32Array | Int32Array>();
    const r = await train(cfg(f, { epochs: 3 }), {
      log: quiet,
      inspect: async (m) => {
        for (const [name, t] of m.namedParameters()) after.set(name, await t.data());
      },
    });
    assert.equal(r.losses.length, 15);
    const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
    assert.ok(mean(r.losses.slice(10)) < mean(r.losses.slice(0, 5)), `losses ${r.losses}`);
    // Epoch means over the same 50 examples: the last below the first. (fake-gpt2 has n_embd 2,
    // so the validation loss on other MRs barely moves; it is only checked to be recorded.)
    assert.equal(r.validLosses.length, 3);
    assert.ok(r.validLosses.every(Number.isFinite));
    let compared = 0;
    for (const [name, data] of after) {
      const key = before.tensors.has(name) ? name : name.replace(/^transformer\./, "");
      const orig = before.tensors.get(key);
      if (!orig) continue;
      assert.deepEqual(data, orig.data, `weight ${name} changed`);
      compared++;
    }
    assert.ok(compared >= 4 * 1 + 4, `only ${compared} weights compared`);
    const model = await GPT2.fromPretrained(f.model);
    // Exported prefix: 2·n_layer·L·n_embd f32 values plus the header.
    const c = model.config;
    const bytes = await Deno.readFile(`${f.tmp}/run/prefix/prefix.safetensors`);
    const header = new DataView(bytes.buffer).getUint32(0, true);
    assert.equal(bytes.length, 8 + header + 2 * c.nLayer * 5 * c.nEmbd * 4);
    assert.ok((await Deno.stat(`${f.tmp}/run/peft/adapter_model.safetensors`)).isFile);
    assert.ok((await Deno.readTextFile(`${f.tmp}/run/loss.svg`)).includes("<svg"));
    const log = (await Deno.readTextFile(`${f.tmp}/run/log.jsonl`)).trim().split("\n");
    assert.equal(log.filter((l) => l.includes('"valid_loss"')).length, 3);
    model.dispose();
    // Generation: one line per distinct MR.
    const code = await generateMain([
      "--checkpoint",
      `${f.tmp}/run`,
      "--split",
      "test",
      "--data",
      f.data,
      "--beams",
      "2",
      "--max-new-tokens",
      "4",
      "--limit",
      "3",
      "--backend",
      "cpu",
    ]);
    assert.equal(code, 0);
    const out = await Deno.readTextFile(`${f.tmp}/run/outputs/test.txt`);
    assert.equal(out.split("\n").length - 1, 3);
    const refs = await Deno.readTextFile(`${f.tmp}/run/outputs/test.refs.txt`);
    assert.equal(refs.trim().split("\n\n").length, 3);
  } finally {
    await Deno.remove(f.tmp, { recursive: true });
  }
});

Deno.test("--resume continues exactly: same losses as an uninterrupted run", async () => {
  const f = await fixture();
  try {
    const base = cfg(f, { save_every: 2, prefix_dropout: 0.2 });
    const full = await train({ ...base, out: `${f.tmp}/a` }, { log: quiet });
    const part = await train({ ...base, out: `${f.tmp}/b` }, { log: quiet, stopAfterSteps: 7 });
    assert.ok(part.interrupted);
    const rest = await train({ ...base, out: `${f.tmp}/b` }, { log: quiet, resume: true });
    assert.deepEqual(rest.losses, full.losses);
    assert.deepEqual(rest.validLosses, full.validLosses);
  } finally {
    await Deno.remove(f.tmp, { recursive: true });
  }
});

Deno.test("fine-tuning saves a full Hugging Face-format model that loads back", async () => {
  const f = await fixture();
  try {
    const r = await train(cfg(f, { tuner: "fine", epochs: 1, lr: 1e-3 }), { log: quiet });
    assert.equal(r.trainable, r.modelParams);
    const m = await GPT2.fromPretrained(`${f.tmp}/run/model`);
    assert.equal(m.numParameters(), r.modelParams);
    m.dispose();
  } finally {
    await Deno.remove(f.tmp, { recursive: true });
  }
});

Deno.test("config: unknown keys and wrong types are rejected with the key's name", async () => {
  await assert.rejects(() => parseTrainArgs(["--epochs", "two"]), /--epochs must be an integer/);
  await assert.rejects(
    () => parseTrainArgs(["--prefix-len", "1.5"]),
    /--prefix-len must be an integer/,
  );
  await assert.rejects(
    () => parseTrainArgs(["--tuner", "lora"]),
    /--tuner must be one of prefix, fine/,
  );
  await assert.rejects(() => parseTrainArgs(["--bogus", "1"]), /Unknown option '--bogus'/);
  const tmp = await Deno.makeTempFile({ suffix: ".yaml" });
  try {
    await Deno.writeTextFile(tmp, "epochs: 3\nlearning_rate: 0.1\n");
    await assert.rejects(() => parseTrainArgs(["--config", tmp]), /unknown key 'learning_rate'/);
    await Deno.writeTextFile(tmp, "epochs: 3\nlr: 0.1\n");
    const p = await parseTrainArgs(["--config", tmp, "--lr", "0.5", "--resume"]);
    assert.equal(p.config.epochs, 3);
    assert.equal(p.config.lr, 0.5);
    assert.equal(p.resume, true);
  } finally {
    await Deno.remove(tmp);
  }
  // The shipped configs hold the paper's values.
  const prefix = await parseTrainArgs(
    [],
    new URL("../configs/e2e_prefix.yaml", import.meta.url).pathname,
  );
  assert.equal(prefix.config.lr, 8e-5);
  assert.equal(prefix.config.prefix_len, 5);
  assert.equal(prefix.config.seed, 101);
  const mini = await parseTrainArgs([]);
  assert.equal(mini.config.model, "results/mini/pretrain/model");
  assert.ok(mini.config.max_minutes > 0);
  const fine = await parseTrainArgs(
    [],
    new URL("../configs/e2e_finetune.yaml", import.meta.url).pathname,
  );
  assert.equal(fine.config.lr, 5e-5);
  assert.equal(fine.config.tuner, "fine");
});

Deno.test("batchLoss (LM head on labelled positions only) equals GPT2.loss over all logits", async () => {
  const { batchLoss } = await import("../train/e2e_loss.ts");
  const { PrefixTuning } = await import("../models/prefix.ts");
  const lf = await import("../mod.ts");
  const m = GPT2.random(
    gpt2Config({ nLayer: 2, nHead: 2, nEmbd: 8, nPositions: 64, vocabSize: 97 }),
    4,
  );
  m.eval();
  const p = new PrefixTuning({
    prefixLen: 3,
    nLayer: 2,
    nHead: 2,
    nEmbd: 8,
    mid: 16,
    mlp: true,
    dropout: 0,
  }, { seed: 1 });
  const batch = {
    ids: [[10, 20, 30, 40, 50], [7, 8, 9, 96, 96]],
    labels: [[-100, -100, 30, 40, 50], [-100, 8, 9, -100, -100]],
    mask: [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]],
  };
  const a = await batchLoss(m, p, batch, lf.getBackend()).item();
  const mask = lf.tensor(batch.mask.map((r) => [1, 1, 1, ...r]));
  const b = await m.loss(batch.ids, lf.ids(batch.labels), { past: p.past(2), attentionMask: mask })
    .item();
  assert.ok(Math.abs(a - b) < 1e-6, `${a} vs ${b}`);
});

Deno.test("max_minutes ends training early as a finished run (outputs written)", async () => {
  const f = await fixture();
  try {
    const r = await train(cfg(f, { max_minutes: 1e-6 }), { log: quiet });
    assert.equal(r.interrupted, false);
    assert.equal(r.losses.length, 1);
    const summary = JSON.parse(await Deno.readTextFile(`${f.tmp}/run/summary.json`));
    assert.equal(summary.time_budget_hit, true);
    assert.equal(summary.valid_losses.length, 1);
    assert.ok((await Deno.stat(`${f.tmp}/run/prefix/prefix.safetensors`)).isFile);
  } finally {
    await Deno.remove(f.tmp, { recursive: true });
  }
});

Deno.test("train CLI: --flag/--no-flag booleans, --beams, per-tuner help, positionals rejected", async () => {
  const { main } = await import("../tasks/train.ts");
  const printed: string[] = [];
  const [log, error] = [console.log, console.error];
  console.log = (s: string) => printed.push(s);
  console.error = (s: string) => printed.push(s);
  try {
    assert.equal(await main(["--tuner", "fine", "--help"]), 0);
    const fine = printed.join("\n");
    assert.match(fine, /--lr NUMBER +peak learning rate .*\(default 0\.0005\)/);
    assert.match(fine, /--tuner prefix\|fine .*\(default fine\)/);
    assert.match(fine, /--prefix-mlp \/ --no-prefix-mlp +train through the MLP/);
    printed.length = 0;
    assert.equal(await main(["--help"]), 0);
    assert.match(printed.join("\n"), /--lr NUMBER .*\(default 0\.002\)/);
    printed.length = 0;
    assert.equal(await main(["runs/x"]), 2);
    assert.match(printed.join("\n"), /unexpected argument 'runs\/x'/);
  } finally {
    [console.log, console.error] = [log, error];
  }
  const p = await parseTrainArgs(["--no-prefix-mlp", "--f16-frozen", "--beams", "3"]);
  assert.equal(p.config.prefix_mlp, false);
  assert.equal(p.config.f16_frozen, true);
  assert.equal(p.config.beams, 3);
  await assert.rejects(
    () => parseTrainArgs(["--prefix-mlp", "--no-prefix-mlp"]),
    /both --prefix-mlp and --no-prefix-mlp/,
  );
});
