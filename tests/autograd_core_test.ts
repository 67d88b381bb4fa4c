/** Tensor core behaviour: API, errors, lifetimes, autodiff semantics, RNG, a tiny MLP. */
import assert from "node:assert/strict";
import * as lf from "../mod.ts";
import { assertClose } from "./helpers/close.ts";

Deno.test("README example: tanh(x·x) summed, gradient by hand", async () => {
  const x = lf.tensor([[1, 2], [3, 4]], { requiresGrad: true });
  const y = x.matmul(x).tanh().sum();
  y.backward();
  // x·x = [[7,10],[15,22]]; dL/dP = 1 − tanh²(P); dL/dx = G·xᵀ + xᵀ·G.
  const P = [[7, 10], [15, 22]];
  const G = P.map((r) => r.map((v) => 1 - Math.tanh(v) ** 2));
  const X = [[1, 2], [3, 4]];
  const want: number[] = [];
  for (let i = 0; i < 2; i++) {
    for (let j = 0; j < 2; j++) {
      let s = 0;
      for (let k = 0; k < 2; k++) s += G[i][k] * X[j][k] + X[k][i] * G[k][j];
      want.push(s);
    }
  }
  assertClose(await x.grad!.data(), want, "", 1e-3, 1e-3);
  assertClose([await y.item()], [P.flat().reduce((s, v) => s + Math.tanh(v), 0)], "", 1e-5, 1e-5);
  assert.deepEqual(await lf.tensor([[1, 2], [3, 4]]).toArray(), [[1, 2], [3, 4]]);
});

Deno.test("forward values of the ops against hand-computed numbers", async () => {
  const a = lf.tensor([[1, -2, 3], [0.5, 4, -1]]);
  assertClose(await a.sum(0).data(), [1.5, 2, 2], "", 1e-5, 1e-5);
  assertClose(await a.max(1).data(), [3, 4], "", 1e-5, 1e-5);
  assertClose(await a.mean().data(), [5.5 / 6], "", 1e-5, 1e-5);
  assertClose(await a.relu().data(), [1, 0, 3, 0.5, 4, 0], "", 1e-5, 1e-5);
  const e = [Math.exp(1), Math.exp(-2), Math.exp(3)];
  const z = e[0] + e[1] + e[2];
  assertClose((await a.softmax(-1).data()).slice(0, 3), e.map((v) => v / z), "", 1e-5, 1e-5);
  assertClose(
    (await a.logSoftmax(-1).data()).slice(0, 3),
    e.map((v) => Math.log(v / z)),
    "",
    1e-5,
    1e-5,
  );
  assertClose(await a.transpose(0, 1).contiguous().data(), [1, 0.5, -2, 4, 3, -1], "", 1e-5, 1e-5);
  assertClose(
    await lf.concat([a, a], 0).slice(0, 1, 3).data(),
    [0.5, 4, -1, 1, -2, 3],
    "",
    1e-5,
    1e-5,
  );
  // gelu_new(1) = 0.5·(1 + tanh(√(2/π)·1.044715))
  assertClose(
    await lf.tensor([1]).gelu().data(),
    [
      0.5 * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * 1.044715)),
    ],
    "",
    1e-5,
    1e-5,
  );
  // LayerNorm of [1,2,3]: mean 2, var 2/3.
  const ln = await lf.tensor([[1, 2, 3]]).layerNorm(lf.ones([3]), lf.zeros([3]), 0).data();
  assertClose(ln, [-1, 0, 1].map((v) => v / Math.sqrt(2 / 3)), "", 1e-5, 1e-5);
  // Cross-entropy of [0, ln 3] against class 1: −log(3/4).
  const ce = lf.tensor([[0, Math.log(3)], [5, 5]]).crossEntropy(lf.ids([1, -100]));
  assertClose([await ce.item()], [-Math.log(3 / 4)], "", 1e-5, 1e-5);
  assert.deepEqual(Array.from(await a.argmax(1).data()), [2, 1]);
});

Deno.test("broadcasting rules and shape errors name op and shapes", () => {
  assert.deepEqual(lf.ones([2, 1, 3]).add(lf.ones([4, 1])).shape, [2, 4, 3]);
  assert.throws(
    () => lf.ones([2, 3]).add(lf.ones([4])),
    /add: shapes \[2, 3\] and \[4\] cannot be broadcast/,
  );
  assert.throws(
    () => lf.ones([2, 3]).matmul(lf.ones([4, 2])),
    /matmul: shapes \[2, 3\] and \[4, 2\] do not align/,
  );
  assert.throws(() => lf.ones([2, 3]).sum(2), /sum: axis 2 is out of range for 2-d tensor/);
  assert.throws(() => lf.ones([2, 3]).reshape(4, 2), /reshape: cannot reshape \[2, 3\]/);
  assert.throws(() => lf.ones([2, 3]).slice(1, 2, 5), /slice: range \[2, 5\) is out of bounds/);
  assert.throws(() => lf.ones([2, 3]).permute(0, 0), /permute: axes/);
  assert.throws(() => lf.tensor([[1, 2], [3]]), /ragged/);
});

Deno.test("backward errors: non-scalar without gradient, no grad, disposed input", () => {
  const x = lf.ones([2, 3], { requiresGrad: true });
  const y = x.mul(2);
  assert.throws(() => y.backward(), /backward: output has shape \[2,3\]; pass a gradient/);
  assert.throws(() => lf.ones([1]).backward(), /does not require grad/);
  const z = lf.ones([2, 3]);
  z.dispose();
  assert.throws(() => z.add(1), /add: input 0 \(shape \[2, 3\]\) was disposed/);
  y.backward(lf.ones([2, 3]));
});

Deno.test("gradients accumulate across backward calls; zeroGrad clears; detach and noGrad cut", async () => {
  const x = lf.tensor([1, 2, 3], { requiresGrad: true });
  x.mul(x).sum().backward();
  x.mul(x).sum().backward();
  assertClose(await x.grad!.data(), [4, 8, 12], "", 1e-5, 1e-5);
  x.zeroGrad();
  assert.equal(x.grad, null);
  const d = x.detach().mul(3).sum();
  assert.equal(d.requiresGrad, false);
  const n = lf.noGrad(() => x.mul(3));
  assert.equal(n.requiresGrad, false);
  // x used by two branches: gradients add.
  x.exp().sum().add(x.sum()).backward();
  assertClose(await x.grad!.data(), [1, 2, 3].map((v) => Math.exp(v) + 1), "", 1e-5, 1e-5);
});

Deno.test("backward releases the graph", () => {
  const x = lf.ones([3], { requiresGrad: true });
  const h = x.mul(2);
  const y = h.sum();
  y.backward();
  assert.equal(y.gradFn, null);
  assert.equal(h.gradFn, null);
});

Deno.test("tidy frees intermediates; views keep buffers alive; live count returns to baseline", async () => {
  // A private backend, so garbage from other tests (freed by the finalizer) does not count.
  const be = new lf.CpuBackend();
  const prev = lf.getBackend();
  await lf.setBackend(be);
  const w = lf.randn([8, 8], { requiresGrad: true });
  const before = be.liveCount();
  for (let step = 0; step < 20; step++) {
    lf.tidy(() => {
      const loss = lf.randn([4, 8]).matmul(w).tanh().softmax(-1).sum();
      loss.backward();
      w.zeroGrad();
    });
  }
  assert.equal(be.liveCount(), before);
  const kept = lf.tidy(() => lf.ones([4]).mul(2).reshape(2, 2));
  assert.deepEqual(await kept.toArray(), [[2, 2], [2, 2]]);
  const base = lf.ones([4]);
  const v = base.reshape(2, 2);
  base.dispose();
  assert.deepEqual(await v.toArray(), [[1, 1], [1, 1]]);
  v.dispose();
  kept.dispose();
  assert.equal(be.liveCount(), before);
  {
    using t = lf.ones([3]);
    assert.equal(be.liveCount(), before + 1);
    void t;
  }
  assert.equal(be.liveCount(), before);
  w.dispose();
  assert.equal(be.liveCount(), 0);
  await lf.setBackend(prev);
});

Deno.test("Xoshiro128 matches the reference C implementation; seeds are deterministic", () => {
  // First outputs of Vigna's xoshiro128starstar.c from state {1, 2, 3, 4} (compiled and run).
  const g = new lf.Xoshiro128(Uint32Array.from([1, 2, 3, 4]));
  const want = [11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849];
  assert.deepEqual(want.map(() => g.nextU32()), want);
  const a = new lf.Xoshiro128(101), b = new lf.Xoshiro128(101), c = new lf.Xoshiro128(102);
  const sa = [a.uniform(), a.uniform()], sb = [b.uniform(), b.uniform()];
  assert.deepEqual(sa, sb);
  assert.notDeepEqual(sa, [c.uniform(), c.uniform()]);
  // Normal samples: mean ≈ 0, variance ≈ 1 over 20k draws (5σ bounds).
  let s = 0, s2 = 0;
  const n = 20000;
  for (let i = 0; i < n; i++) {
    const v = a.normal();
    s += v;
    s2 += v * v;
  }
  assert.ok(Math.abs(s / n) < 5 / Math.sqrt(n));
  assert.ok(Math.abs(s2 / n - 1) < 5 * Math.sqrt(2 / n));
});

Deno.test("dropout: mask rate and scaling, identity in eval, same seed same mask", async () => {
  lf.manualSeed(3);
  const x = lf.ones([10000]);
  const d = await x.dropout(0.25).data();
  const zeros = d.filter((v) => v === 0).length;
  assert.ok(Math.abs(zeros / 10000 - 0.25) < 0.02, `drop rate ${zeros / 10000}`);
  assert.ok(d.every((v) => v === 0 || Math.abs(v - 4 / 3) < 1e-6));
  assert.equal(x.dropout(0.25, false), x);
  lf.manualSeed(3);
  assert.deepEqual(await x.dropout(0.25).data(), d);
});

Deno.test("tiny MLP (raw ops) fits a toy regression, deterministically", async () => {
  const run = async () => {
    lf.manualSeed(42);
    const g = new lf.Xoshiro128(9);
    const X: number[][] = [], Y: number[][] = [];
    for (let i = 0; i < 64; i++) {
      const a = g.uniform() * 2 - 1, b = g.uniform() * 2 - 1;
      X.push([a, b]);
      Y.push([Math.sin(2 * a) + b * b]);
    }
    const x = lf.tensor(X), y = lf.tensor(Y);
    const w1 = lf.randn([2, 32], { std: 0.5, requiresGrad: true }),
      b1 = lf.zeros([32], { requiresGrad: true });
    const w2 = lf.randn([32, 1], { std: 0.2, requiresGrad: true }),
      b2 = lf.zeros([1], { requiresGrad: true });
    const params = [w1, b1, w2, b2];
    const losses: number[] = [];
    for (let step = 0; step < 500; step++) {
      const loss = lf.tidy(() => {
        const pred = x.matmul(w1).add(b1).tanh().matmul(w2).add(b2);
        const l = pred.sub(y).pow(2).mean();
        l.backward();
        return l;
      });
      losses.push(await loss.item());
      loss.dispose();
      lf.noGrad(() => {
        for (const p of params) {
          const be = p.backend;
          // Plain SGD through the backend's elementwise op: p ← p − 0.2·g.
          const upd = lf.tidy(() => p.sub(p.grad!.mul(0.2)));
          be.copy(upd.storage, upd.view, p.storage, p.view);
          upd.dispose();
          p.zeroGrad();
        }
      });
    }
    return losses;
  };
  const a = await run();
  const b = await run();
  assert.deepEqual(a, b);
  assert.ok(a[0] > 0.3, `initial loss ${a[0]}`);
  assert.ok(a.at(-1)! < 0.02, `final loss ${a.at(-1)}`);
});

Deno.test("backward: a summed gradient passed through an identity-like op stays alive", async () => {
  // x feeds two branches (so its gradient is a sum), and x = w + 0 hands that very tensor
  // on to w: the sum must not be freed with x's gradient.
  const w = lf.tensor([1, 2, 3, 4], { requiresGrad: true });
  const x = w.add(0);
  const y = x.mul(2).add(x.mul(3)).sum();
  y.backward();
  assert.deepEqual(Array.from(await w.grad!.data()), [5, 5, 5, 5]);
});

Deno.test("backward twice raises as in PyTorch; a disposed intermediate is an error, not a null grad", () => {
  const x = lf.tensor([1, 2], { requiresGrad: true });
  const y = x.mul(x).sum();
  y.backward();
  assert.throws(() => y.backward(), /already freed by an earlier backward/);
  const a = x.mul(3);
  const b = a.sum();
  a.dispose();
  assert.throws(() => b.backward(), /intermediate tensor \[2\] \(output of mul\) was disposed/);
  // The same computation inside one tidy scope works.
  x.zeroGrad();
  lf.tidy(() => x.mul(3).sum().backward());
  assert.ok(x.grad);
});
