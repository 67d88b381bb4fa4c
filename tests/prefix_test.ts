/** Prefix module: layout of keys/values, parameter count, exports (own and peft), gradients. */
import assert from "node:assert/strict";
import * as lf from "../mod.ts";
import {
  loadComputedPrefix,
  loadPeftPrefix,
  loadPrefix,
  prefixTensor,
  prefixToPast,
  PrefixTuning,
  savePeftPrefix,
} from "../models/prefix.ts";
import { GPT2, gpt2Config } from "../models/gpt2.ts";
import { generateWithScores } from "../models/generate.ts";
import { Module } from "../nn/module.ts";
import { f64 } from "./gradcheck.ts";

const cfg = { prefixLen: 3, nLayer: 2, nHead: 2, nEmbd: 4, mid: 8, mlp: true, dropout: 0 };

Deno.test("prefixToPast follows the paper's view/permute/split layout", async () => {
  // computed[l, j] = 1000·l + j; j indexes (2·n_layer, n_head, head_dim) row-major.
  const L = 3, D = 2 * 2 * 4;
  const data = new Float32Array(L * D).map((_, i) => 1000 * Math.floor(i / D) + (i % D));
  const past = prefixToPast(lf.tensor(data, { shape: [L, D] }), 2, cfg);
  assert.equal(past.length, 2);
  for (let layer = 0; layer < 2; layer++) {
    for (const [which, t] of [[0, past[layer].k], [1, past[layer].v]] as const) {
      assert.deepEqual(t.shape, [2, 2, 3, 2]);
      const got = await t.data();
      // Element [b, h, l, d] = computed[l, ((2·layer + which)·H + h)·hd + d].
      for (let b = 0; b < 2; b++) {
        for (let h = 0; h < 2; h++) {
          for (let l = 0; l < 3; l++) {
            for (let d = 0; d < 2; d++) {
              const want = 1000 * l + ((2 * layer + which) * 2 + h) * 2 + d;
              assert.equal(got[((b * 2 + h) * 3 + l) * 2 + d], want);
            }
          }
        }
      }
    }
  }
});

Deno.test("PrefixTuning: parameter count, gradients reach every parameter, no-MLP variant", () => {
  const p = new PrefixTuning(cfg, { seed: 1 });
  // wte 3·4 + (8·4 + 8) + (16·8 + 16)
  assert.equal(p.numParameters(), 12 + 40 + 144);
  const past = p.past(2);
  const loss = past.map((x) => x.k.sum().add(x.v.mul(x.v).sum())).reduce((a, b) => a.add(b));
  loss.backward();
  for (const [name, t] of p.namedParameters()) {
    assert.ok(t.grad, `no gradient for ${name}`);
  }
  const q = new PrefixTuning({ ...cfg, mlp: false }, { seed: 1 });
  assert.equal(q.numParameters(), 3 * 16);
});

Deno.test("export: own format size, peft format round trip", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = new PrefixTuning(cfg, { seed: 2 });
    await p.export(`${dir}/own`);
    const st = await Deno.stat(`${dir}/own/prefix.safetensors`);
    const header = new DataView((await Deno.readFile(`${dir}/own/prefix.safetensors`)).buffer)
      .getUint32(0, true);
    assert.equal(st.size, 8 + header + 2 * cfg.nLayer * cfg.prefixLen * cfg.nEmbd * 4);
    const own = await loadComputedPrefix(`${dir}/own`);
    const want = await lf.noGrad(() => p.computed()).data();
    assert.deepEqual(own.data, want);
    await savePeftPrefix(`${dir}/peft`, own, "gpt2-medium");
    const conf = JSON.parse(await Deno.readTextFile(`${dir}/peft/adapter_config.json`));
    assert.equal(conf.peft_type, "PREFIX_TUNING");
    assert.equal(conf.task_type, "CAUSAL_LM");
    assert.equal(conf.num_virtual_tokens, 3);
    const back = await loadPeftPrefix(`${dir}/peft`);
    assert.deepEqual(back.config, own.config);
    assert.deepEqual(back.data, own.data);
    assert.deepEqual(prefixTensor(back).shape, [3, 16]);
    await Deno.writeTextFile(
      `${dir}/peft/adapter_config.json`,
      JSON.stringify({ peft_type: "LORA" }),
    );
    await assert.rejects(() => loadPeftPrefix(`${dir}/peft`), /peft_type is "LORA"/);
    await Deno.writeTextFile(
      `${dir}/peft/adapter_config.json`,
      JSON.stringify({ ...conf, num_virtual_tokens: "3" }),
    );
    await assert.rejects(
      () => loadPeftPrefix(`${dir}/peft`),
      /adapter_config\.json: "num_virtual_tokens" must be a positive integer, got "3"/,
    );
    await Deno.writeTextFile(`${dir}/peft/adapter_config.json`, "{ not json");
    await assert.rejects(() => loadPeftPrefix(`${dir}/peft`), /adapter_config\.json: cannot read/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PrefixTuning is an nn Module: paper's names, stateDict round trip, eval turns dropout off", async () => {
  const p = new PrefixTuning({ ...cfg, dropout: 0.5 }, { seed: 3 });
  assert.ok(p instanceof Module);
  assert.deepEqual([...p.stateDict().keys()], [
    "wte.weight",
    "control_trans.0.weight",
    "control_trans.0.bias",
    "control_trans.2.weight",
    "control_trans.2.bias",
  ]);
  const want = await lf.noGrad(() => p.computed()).data();
  const q = new PrefixTuning({ ...cfg, dropout: 0.5 }, { seed: 4 });
  assert.notDeepEqual(await lf.noGrad(() => q.computed()).data(), want);
  q.loadStateDict(p.stateDict());
  assert.deepEqual(await lf.noGrad(() => q.computed()).data(), want);
  // Training mode: the prefix dropout changes the keys; eval mode: exactly the computed prefix.
  const keys = async () => await lf.noGrad(() => q.past(1)[0].k).data();
  assert.equal(q.training, true);
  const base = await lf.noGrad(() => prefixToPast(q.computed(), 1, cfg)[0].k).data();
  assert.notDeepEqual(await keys(), base);
  q.eval();
  assert.deepEqual(await keys(), base);
  // The same seed gives the same values; no-MLP: one parameter named as in the paper's code.
  assert.deepEqual(
    await lf.noGrad(() => new PrefixTuning(cfg, { seed: 3 }).computed()).data(),
    want,
  );
  assert.deepEqual([...new PrefixTuning({ ...cfg, mlp: false }).stateDict().keys()], [
    "control_trans",
  ]);
});

Deno.test("PrefixTuning.forModel: the paper's defaults, the model's sizes and backend", () => {
  const model = GPT2.random(gpt2Config({ nLayer: 2, nEmbd: 8, nHead: 2, vocabSize: 11 }), 1);
  const p = PrefixTuning.forModel(model);
  assert.deepEqual(p.config, {
    prefixLen: 5,
    nLayer: 2,
    nHead: 2,
    nEmbd: 8,
    mid: 512,
    mlp: true,
    dropout: 0,
  });
  assert.equal(p.parameters()[0].backend, model.backend);
  assert.equal(
    PrefixTuning.forModel(model.config, { prefixLen: 10, mlp: false }).config.prefixLen,
    10,
  );
});

Deno.test("generate with a prefix: shared, per row (mixed-task batch), and from disk in both formats", async () => {
  const mcfg = gpt2Config({ nLayer: 2, nEmbd: 8, nHead: 2, vocabSize: 19, nPositions: 40 });
  const model = GPT2.random(mcfg, 5, { backend: f64 }).eval();
  const a = PrefixTuning.forModel(model, { prefixLen: 3, mid: 6, seed: 1 });
  const b = PrefixTuning.forModel(model, { prefixLen: 3, mid: 6, seed: 2 });
  const prompts = [[1, 2, 3], [4, 5], [6]];
  const opts = { maxNewTokens: 6, numBeams: 2 };
  const alone = async (p: PrefixTuning, prompt: number[]) =>
    (await generateWithScores(model, [prompt], { ...opts, prefix: p }))[0];
  const mixed = await generateWithScores(model, prompts, { ...opts, prefix: [a, b, a] });
  assert.deepEqual(mixed, [
    await alone(a, prompts[0]),
    await alone(b, prompts[1]),
    await alone(a, prompts[2]),
  ]);
  assert.notDeepEqual(
    (await alone(a, prompts[1])).tokens.concat([-1], (await alone(a, prompts[0])).tokens),
    (await alone(b, prompts[1])).tokens.concat([-1], (await alone(b, prompts[0])).tokens),
    "the two prefixes must steer differently for this test to mean anything",
  );
  // A shared prefix equals the same past given by hand.
  const past = lf.noGrad(() => a.past(prompts.length));
  assert.deepEqual(
    await generateWithScores(model, prompts, { ...opts, prefix: a }),
    await generateWithScores(model, prompts, { ...opts, prefixPast: past }),
  );
  // Saved in our format and in peft's, read back by loadPrefix: the same generations.
  const dir = await Deno.makeTempDir();
  try {
    await a.export(`${dir}/own`);
    await a.savePeft(`${dir}/peft`, "some/base");
    for (const sub of ["own", "peft"]) {
      // Files hold f32 values and this model computes in f64: same tokens, scores to ~1e-9.
      const back = await generateWithScores(model, prompts, {
        ...opts,
        prefix: await loadPrefix(`${dir}/${sub}`),
      });
      const live = await generateWithScores(model, prompts, { ...opts, prefix: a });
      assert.deepEqual(back.map((r) => r.tokens), live.map((r) => r.tokens), sub);
      back.forEach((r, i) => assert.ok(Math.abs(r.score - live[i].score) < 1e-6, sub));
    }
    await assert.rejects(() => loadPrefix(dir), /not a prefix folder/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  await assert.rejects(
    () => generateWithScores(model, prompts, { ...opts, prefix: [a, b] }),
    /2 prefixes for a batch of 3 rows/,
  );
  const short = PrefixTuning.forModel(model, { prefixLen: 2, mid: 6 });
  await assert.rejects(
    () => generateWithScores(model, prompts, { ...opts, prefix: [a, short, a] }),
    /row 1 has a prefix of length 2/,
  );
});
