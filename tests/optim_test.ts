/** AdamW against a scalar re-derivation of PyTorch's update; schedule and clipping by hand. */
import assert from "node:assert/strict";
import * as lf from "../mod.ts";
import { AdamW, clipGradNorm, linearWarmupDecay } from "../nn/optim.ts";

Deno.test("AdamW matches the PyTorch AdamW equations step by step", async () => {
  const p0 = [0.5, -1.25, 2];
  const p = lf.tensor(p0, { requiresGrad: true });
  const opt = new AdamW([p], { lr: 0.1 }); // PyTorch's default weight decay, 0.01
  // Reference: loss = Σ c_i p_i², gradient 2 c_i p_i, moments in float64.
  const c = [1, 3, 0.5];
  const ref = [...p0], m = [0, 0, 0], v = [0, 0, 0];
  for (let t = 1; t <= 5; t++) {
    lf.tidy(() => p.mul(p).mul(lf.tensor(c)).sum().backward());
    opt.step();
    opt.zeroGrad();
    for (let i = 0; i < 3; i++) {
      const g = 2 * c[i] * ref[i];
      ref[i] *= 1 - 0.1 * 0.01;
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.999 * v[i] + 0.001 * g * g;
      const mh = m[i] / (1 - 0.9 ** t), vh = v[i] / (1 - 0.999 ** t);
      ref[i] -= 0.1 * mh / (Math.sqrt(vh) + 1e-8);
    }
  }
  const got = await p.data();
  ref.forEach((r, i) => assert.ok(Math.abs(got[i] - r) < 1e-5, `param ${i}: ${got[i]} vs ${r}`));
  // Saving and restoring the state continues identically.
  const st = await opt.state();
  assert.equal(st.step, 5);
  const q = lf.tensor(Array.from(got), { requiresGrad: true });
  const opt2 = new AdamW([q], { lr: 0.1, weightDecay: 0.01 });
  opt2.loadState(st);
  for (const [x, o] of [[p, opt], [q, opt2]] as const) {
    lf.tidy(() => x.mul(x).sum().backward());
    o.step();
  }
  assert.deepEqual(await q.data(), await p.data());
});

Deno.test("linear schedule with warmup follows Hugging Face's formula", () => {
  // warmup 2, total 10: 0, 0.5, then (10−s)/8.
  const got = [0, 1, 2, 3, 9, 10, 11].map((s) => linearWarmupDecay(s, 2, 10));
  assert.deepEqual(got, [0, 0.5, 1, 7 / 8, 1 / 8, 0, 0]);
  // No warmup (the paper's setting): 1 at step 0, decaying to 0.
  assert.equal(linearWarmupDecay(0, 0, 4), 1);
  assert.equal(linearWarmupDecay(3, 0, 4), 0.25);
});

Deno.test("clipGradNorm scales to the max norm and reports the original norm", async () => {
  const a = lf.tensor([3, 0], { requiresGrad: true }), b = lf.tensor([4], { requiresGrad: true });
  lf.tidy(() => a.mul(lf.tensor([1, 1])).sum().add(b.sum()).backward()); // grads [1,1] and [1]
  a.grad!.dispose();
  a.grad = lf.keep(lf.tensor([3, 0]));
  b.grad!.dispose();
  b.grad = lf.keep(lf.tensor([4]));
  const n = await clipGradNorm([a, b], 1);
  assert.ok(Math.abs(n - 5) < 1e-6);
  const ga = await a.grad!.data(), gb = await b.grad!.data();
  assert.ok(Math.abs(ga[0] - 0.6) < 1e-5 && Math.abs(gb[0] - 0.8) < 1e-5);
  // Below the threshold: unchanged.
  assert.ok(Math.abs((await clipGradNorm([a, b], 10)) - 1) < 1e-5);
  assert.ok(Math.abs((await a.grad!.data())[0] - 0.6) < 1e-5);
});

Deno.test("AdamW on a partly frozen model trains only what requires grad, like PyTorch", async () => {
  const model = new lf.nn.Linear(3, 2);
  model.bias!.requiresGrad = false;
  const bias = Array.from(await model.bias!.data());
  const opt = new AdamW(model.parameters());
  assert.deepEqual(opt.params, [model.weight]);
  lf.tidy(() => model.forward(lf.ones([4, 3])).sum().backward());
  opt.step();
  assert.deepEqual(Array.from(await model.bias!.data()), bias);
  assert.throws(() => new AdamW(model.freeze().parameters()), /none of the 2 parameters/);
});
