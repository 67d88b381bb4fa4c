/** Prefix module: layout of keys/values, parameter count, exports (own and peft), gradients. */
import assert from "node:assert/strict";
import * as lf from "../mod.ts";
import {
  loadComputedPrefix,
  loadPeftPrefix,
  prefixTensor,
  prefixToPast,
  PrefixTuning,
  savePeftPrefix,
} from "../models/prefix.ts";

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
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
