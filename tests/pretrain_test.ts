/** Miniature pretraining: loss falls, the result is a loadable Hugging Face-format folder. */
import assert from "node:assert/strict";
import { GPT2 } from "../models/gpt2.ts";
import { GPT2Tokenizer } from "../data/tokenizer.ts";
import {
  epochDocuments,
  loadPretrainConfig,
  packRows,
  pretrain,
  PRETRAIN_DEFAULTS,
} from "../train/pretrain.ts";
import { Xoshiro128 } from "../autograd/random.ts";

Deno.test("packRows concatenates documents into full rows and drops the tail", () => {
  assert.deepEqual(packRows([[1, 2, 3], [4], [5, 6, 7, 8]], 3), [[1, 2, 3], [4, 5, 6]]);
});

Deno.test("epochDocuments keeps each group adjacent, shuffles groups and their members", () => {
  const groups = [[[1], [2], [3]], [[10], [11]], [[20]], [[30], [31], [32], [33]]];
  const orders = new Set<string>();
  for (let seed = 1; seed <= 20; seed++) {
    const docs = epochDocuments(groups, new Xoshiro128(seed)).map((d) => d[0]);
    assert.deepEqual([...docs].sort((a, b) => a - b), groups.flat().map((d) => d[0]));
    // Members of one group are contiguous.
    const tens = docs.map((v) => Math.floor(v / 10));
    for (let i = 1; i < tens.length; i++) {
      if (tens[i] !== tens[i - 1]) assert.ok(!tens.slice(0, i - 1).includes(tens[i]), `${docs}`);
    }
    orders.add(docs.join(","));
  }
  assert.ok(orders.size > 10, `only ${orders.size} distinct orders`);
  // Deterministic for a seed.
  assert.deepEqual(
    epochDocuments(groups, new Xoshiro128(7)),
    epochDocuments(groups, new Xoshiro128(7)),
  );
});

Deno.test("pretrain: a tiny GPT-2 on a few references learns and saves an HF folder", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "lf_pretrain_test_" });
  try {
    const refs = [
      "The Eagle is a coffee shop by the river .",
      "Zizzi is a cheap Italian restaurant .",
      "The Vaults is a pub .",
    ];
    await Deno.writeTextFile(
      `${tmp}/train.txt`,
      refs.map((r, i) => `name : N${i}||${r} `).join("\n") + "\n",
    );
    const cfg = {
      ...PRETRAIN_DEFAULTS,
      n_layer: 1,
      n_head: 2,
      n_embd: 16,
      n_positions: 32,
      seq_len: 16,
      batch_size: 2,
    };
    Object.assign(cfg, {
      lr: 1e-2,
      warmup_steps: 0,
      epochs: 30,
      max_minutes: 0,
      dropout: 0,
      backend: "cpu",
      data: tmp,
      out: `${tmp}/out`,
      save_every: 0,
    });
    const { modelDir: dir } = await pretrain(cfg, { log: () => {} });
    const losses = (await Deno.readTextFile(`${tmp}/out/log.jsonl`)).trim().split("\n").map((l) =>
      JSON.parse(l)
    ).filter((r) => r.step !== undefined).map((r) => r.loss);
    assert.ok(losses.at(-1) < losses[0] - 1, `losses ${losses[0]} → ${losses.at(-1)}`);
    const m = await GPT2.fromPretrained(dir);
    assert.equal(m.config.nEmbd, 16);
    const tok = await GPT2Tokenizer.fromDir(dir);
    assert.deepEqual(
      tok.encode(" The Eagle"),
      (await GPT2Tokenizer.offlineDefault()).encode(" The Eagle"),
    );
    m.dispose();
    // Finished: a second call skips.
    const lines: string[] = [];
    await pretrain(cfg, { log: (s) => lines.push(s), resume: true });
    // Without --resume or --overwrite a finished folder is refused.
    await assert.rejects(() => pretrain(cfg, { log: () => {} }), /already holds a finished run/);
    assert.ok(lines.some((l) => l.includes("skipping")));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("pretrain config errors name the key", async () => {
  await assert.rejects(
    () => loadPretrainConfig(null, { n_embd: "100", n_head: "3" }),
    /'n_embd' \(100\) must be divisible by 'n_head' \(3\)/,
  );
  await assert.rejects(() => loadPretrainConfig(null, { layers: 2 }), /unknown key 'layers'/);
  await assert.rejects(
    () => loadPretrainConfig(null, { documents: "random" }),
    /--documents must be one of shuffled, grouped/,
  );
  const shipped = await loadPretrainConfig(
    new URL("../configs/mini_pretrain.yaml", import.meta.url).pathname,
  );
  assert.equal(shipped.n_layer, 6);
});
