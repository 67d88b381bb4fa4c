/** nn modules: the Module tree, basic layers, the attention mask and causal self-attention. */
import assert from "node:assert/strict";
import * as lf from "../mod.ts";
import { Module, ModuleList } from "../nn/module.ts";
import { Conv1D, Dropout, Embedding, GELU, LayerNorm, Linear } from "../nn/layers.ts";
import { Block, buildBlockedMask, CausalSelfAttention, MASK_VALUE } from "../nn/attention.ts";
import { f64, gradcheck } from "./gradcheck.ts";
import { assertClose } from "./helpers/close.ts";

/** Exact values of an f64-backend tensor. */
const vals = (t: lf.Tensor): Float64Array => f64.readF64(t.contiguous().storage);

class Toy extends Module {
  readonly a: Linear;
  readonly blocks: ModuleList<LayerNorm>;
  readonly scale: lf.Tensor;
  constructor() {
    super();
    this.a = this.registerModule("a", new Linear(3, 2, { generator: new lf.Xoshiro128(1) }));
    this.blocks = this.registerModule(
      "blocks",
      new ModuleList([new LayerNorm(2), new LayerNorm(2)]),
    );
    this.scale = this.registerParameter("scale", lf.ones([1]));
  }
}

Deno.test("Module: dotted names, parameters, state dict, modes, freezing", () => {
  const m = new Toy();
  const names = m.namedParameters().map(([n]) => n);
  assert.deepEqual(names, [
    "scale",
    "a.weight",
    "a.bias",
    "blocks.0.weight",
    "blocks.0.bias",
    "blocks.1.weight",
    "blocks.1.bias",
  ]);
  assert.deepEqual([...m.stateDict().keys()], names);
  assert.equal(m.numParameters(), 1 + 6 + 2 + 4 + 4);
  assert.ok(m.parameters().every((p) => p.requiresGrad));
  assert.deepEqual(m.namedModules().map(([n]) => n), ["", "a", "blocks", "blocks.0", "blocks.1"]);
  m.eval();
  assert.ok(m.namedModules().every(([, x]) => !x.training));
  m.train();
  assert.ok(m.blocks.items[1].training);
  m.blocks.freeze();
  assert.equal(m.trainableParameters().length, 3);
  assert.equal(m.numParameters(true), 1 + 6 + 2);
  m.blocks.unfreeze();
  assert.equal(m.trainableParameters().length, 7);
  m.dispose();
  assert.ok(m.a.weight.disposed);
});

Deno.test("Module.storeFrozenAsF16: nothing changes on a backend without f16 storage", async () => {
  const cpu = new lf.CpuBackend();
  const m = new Linear(3, 2, { backend: cpu }).freeze();
  const before = await m.weight.data();
  assert.deepEqual(await m.storeFrozenAsF16(), { parameters: 0, bytesSaved: 0 });
  assert.deepEqual(await m.weight.data(), before);
  assert.equal(cpu.liveCount(), 2);
});

Deno.test("Module.loadStateDict: in place, all problems in one error, non-strict", async () => {
  const m = new Toy();
  const w = m.a.weight;
  const res = m.loadStateDict({
    "scale": { shape: [1], data: [3] },
    "a.weight": { shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
    "a.bias": lf.tensor([7, 8]),
    "blocks.0.weight": { shape: [2], data: [1, 1] },
    "blocks.0.bias": { shape: [2], data: [0, 0] },
    "blocks.1.weight": { shape: [2], data: [2, 2] },
    "blocks.1.bias": { shape: [2], data: [0, 1] },
  });
  assert.deepEqual(res, { missingKeys: [], unexpectedKeys: [] });
  assert.equal(m.a.weight, w, "parameters are written in place");
  assert.deepEqual(Array.from(await w.data()), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(Array.from(await m.a.bias!.data()), [7, 8]);
  // Every problem at once: a wrong shape, a missing key, an unexpected key; nothing written.
  assert.throws(
    () =>
      m.loadStateDict({
        "scale": { shape: [1], data: [9] },
        "a.weight": { shape: [3, 2], data: [0, 0, 0, 0, 0, 0] },
        "extra.weight": { shape: [1], data: [0] },
      }, { source: "ckpt.safetensors" }),
    (e: Error) =>
      /from ckpt\.safetensors/.test(e.message) &&
      /a\.weight: shape \[3, 2\] in the dict, \[2, 3\] in the model/.test(e.message) &&
      /missing keys: a\.bias, blocks\.0\.weight/.test(e.message) &&
      /unexpected keys: extra\.weight/.test(e.message),
  );
  assert.equal((await m.scale.data())[0], 3, "a failed load writes nothing");
  const partial = m.loadStateDict({
    "scale": { shape: [1], data: [5] },
    "zzz": { shape: [], data: [1] },
  }, {
    strict: false,
  });
  assert.equal(partial.missingKeys.length, 6);
  assert.deepEqual(partial.unexpectedKeys, ["zzz"]);
  assert.equal((await m.scale.data())[0], 5);
  assert.throws(
    () => m.loadStateDict({ "scale": { shape: [2], data: [1, 2] } }, { strict: false }),
    /scale: shape \[2\] in the dict, \[1\] in the model/,
  );
});

Deno.test("layers: Linear, Conv1D, Embedding, LayerNorm, GELU, Dropout by hand", async () => {
  const x = lf.tensor([[1, 2, 3], [-1, 0, 0.5]]);
  const lin = new Linear(3, 2);
  lin.loadStateDict({
    weight: { shape: [2, 3], data: [1, 0, -1, 2, 1, 0] },
    bias: { shape: [2], data: [0.5, -1] },
  });
  // y = x·Wᵀ + b: [1−3+0.5, 2+2−1] and [−1−0.5+0.5, −2+0−1].
  assertClose(await lin.forward(x).data(), [-1.5, 3, -1, -3], "", 1e-5, 1e-5);
  assert.deepEqual(lin.forward(lf.ones([4, 5, 3])).shape, [4, 5, 2]);
  assert.throws(
    () => lin.forward(lf.ones([2, 4])),
    /Linear: input \[2, 4\] must end in 3 features/,
  );
  const conv = new Conv1D(3, 2);
  conv.loadStateDict({
    weight: { shape: [3, 2], data: [1, 2, 0, 1, -1, 0] },
    bias: { shape: [2], data: [0.5, -1] },
  });
  // y = x·W + b with W [in, out]: same numbers as the Linear above (W here is its transpose).
  assertClose(await conv.forward(x).data(), [-1.5, 3, -1, -3], "", 1e-5, 1e-5);
  const emb = new Embedding(4, 2);
  emb.loadStateDict({ weight: { shape: [4, 2], data: [0, 1, 10, 11, 20, 21, 30, 31] } });
  assertClose(
    await emb.forward(lf.ids([[3, 0], [1, 1]])).data(),
    [30, 31, 0, 1, 10, 11, 10, 11],
    "",
    1e-5,
    1e-5,
  );
  const ln = new LayerNorm(3, { eps: 0 });
  ln.loadStateDict({
    weight: { shape: [3], data: [1, 2, 1] },
    bias: { shape: [3], data: [0, 0, 1] },
  });
  // Row [1, 2, 3]: mean 2, variance 2/3.
  const s = 1 / Math.sqrt(2 / 3);
  assertClose((await ln.forward(x).data()).slice(0, 3), [-s, 0, s + 1], "", 1e-5, 1e-5);
  const g = (v: number) =>
    0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
  assertClose(await new GELU().forward(x).data(), [1, 2, 3, -1, 0, 0.5].map(g), "", 1e-5, 1e-5);
  const drop = new Dropout(0.5);
  const big = lf.ones([10000]);
  const kept = Array.from(await drop.forward(big).data());
  assert.ok(kept.every((v) => v === 0 || v === 2), "kept values are scaled by 1/(1−p)");
  const frac = kept.filter((v) => v === 0).length / kept.length;
  assert.ok(Math.abs(frac - 0.5) < 0.03, `dropped fraction ${frac}`);
  drop.eval();
  assert.deepEqual(Array.from(await drop.forward(x).data()), Array.from(await x.data()));
});

Deno.test("buildBlockedMask: causal offset by the past, padding mask, null when nothing is masked", async () => {
  const be = lf.getBackend();
  // T = 2 new positions after 1 past one: query 0 sees keys 0..1, query 1 sees 0..2.
  const causal = buildBlockedMask({ batch: 3, length: 2, pastLength: 1, backend: be })!;
  assert.deepEqual(causal.shape, [1, 1, 2, 3]);
  assert.deepEqual(Array.from(await causal.data()), [0, 0, 1, 0, 0, 0]);
  assert.equal(buildBlockedMask({ batch: 2, length: 1, pastLength: 4, backend: be }), null);
  const am = [[0, 1, 1], [1, 1, 0]];
  const want = [1, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1];
  const host = buildBlockedMask({
    batch: 2,
    length: 2,
    pastLength: 1,
    attentionMask: am,
    backend: be,
  })!;
  assert.deepEqual(host.shape, [2, 1, 2, 3]);
  assert.deepEqual(Array.from(await host.data()), want);
  const dev = buildBlockedMask({
    batch: 2,
    length: 2,
    pastLength: 1,
    attentionMask: lf.ids(am),
    backend: be,
  })!;
  assert.deepEqual(Array.from(await dev.expand(2, 1, 2, 3).contiguous().data()), want);
  assert.throws(
    () =>
      buildBlockedMask({
        batch: 2,
        length: 2,
        pastLength: 1,
        attentionMask: [[1, 1], [1, 1]],
        backend: be,
      }),
    /attention mask: shape \[2, 2\] must be \[batch, past \+ current\] = \[2, 3\]/,
  );
});

/** Straightforward attention by loops: x [T][C], weights as arrays, past per head, key mask. */
function loopAttention(
  x: number[][],
  w: { cAttnW: Float64Array; cAttnB: Float64Array; cProjW: Float64Array; cProjB: Float64Array },
  H: number,
  pastK: number[][][],
  pastV: number[][][],
  keyMask: number[],
): number[][] {
  const T = x.length, C = x[0].length, D = C / H, P = pastK[0].length;
  const lin = (row: number[], W: Float64Array, b: Float64Array, out: number) =>
    Array.from(
      { length: out },
      (_, o) => b[o] + row.reduce((s, v, i) => s + v * W[i * out + o], 0),
    );
  const qkv = x.map((r) => lin(r, w.cAttnW, w.cAttnB, 3 * C));
  const merged = x.map(() => new Array(C).fill(0));
  for (let h = 0; h < H; h++) {
    const k = [...pastK[h], ...qkv.map((r) => r.slice(C + h * D, C + h * D + D))];
    const v = [...pastV[h], ...qkv.map((r) => r.slice(2 * C + h * D, 2 * C + h * D + D))];
    for (let i = 0; i < T; i++) {
      const q = qkv[i].slice(h * D, h * D + D);
      const js = [...Array(P + i + 1).keys()].filter((j) => keyMask[j] === 1);
      const sc = js.map((j) => q.reduce((s, a, e) => s + a * k[j][e], 0) / Math.sqrt(D));
      const mx = Math.max(...sc),
        ex = sc.map((s) => Math.exp(s - mx)),
        z = ex.reduce((a, b) => a + b);
      js.forEach((j, n) => {
        for (let e = 0; e < D; e++) merged[i][h * D + e] += (ex[n] / z) * v[j][e];
      });
    }
  }
  return merged.map((r) => lin(r, w.cProjW, w.cProjB, C));
}

Deno.test("CausalSelfAttention: matches a loop implementation with past keys/values and a padding mask", () => {
  const B = 2, T = 3, P = 2, C = 8, H = 2, D = 4;
  const g = new lf.Xoshiro128(5);
  const attn = new CausalSelfAttention(
    {
      nEmbd: C,
      nHead: H,
      layerNormEpsilon: 1e-5,
      attnPdrop: 0.1,
      residPdrop: 0.1,
      initializerRange: 0.5,
    },
    { backend: f64, generator: g },
  ).eval();
  const rnd = (shape: number[]) => lf.randn(shape, { backend: f64, generator: g });
  attn.loadStateDict({ "c_attn.bias": rnd([3 * C]), "c_proj.bias": rnd([C]) }, { strict: false });
  const x = rnd([B, T, C]);
  const past = { k: rnd([B, H, P, D]), v: rnd([B, H, P, D]) };
  // Row 0 masks its second past key; row 1 masks its first current position.
  const mask = [[1, 0, 1, 1, 1], [1, 1, 0, 1, 1]];
  const { out, present } = attn.forward(x, { past, attentionMask: mask });
  assert.deepEqual(out.shape, [B, T, C]);
  assert.deepEqual(present.k.shape, [B, H, P + T, D]);
  const xs = vals(x), pk = vals(past.k), pv = vals(past.v), o = vals(out);
  const w = {
    cAttnW: vals(attn.c_attn.weight),
    cAttnB: vals(attn.c_attn.bias),
    cProjW: vals(attn.c_proj.weight),
    cProjB: vals(attn.c_proj.bias),
  };
  for (let b = 0; b < B; b++) {
    const xb = [...Array(T).keys()].map((t) =>
      Array.from(xs.slice((b * T + t) * C, (b * T + t + 1) * C))
    );
    const perHead = (a: Float64Array) =>
      [...Array(H).keys()].map((h) =>
        [...Array(P).keys()].map((p) =>
          Array.from(a.slice(((b * H + h) * P + p) * D, ((b * H + h) * P + p + 1) * D))
        )
      );
    const want = loopAttention(xb, w, H, perHead(pk), perHead(pv), mask[b]);
    for (let t = 0; t < T; t++) {
      // Row 1's query at the masked position 0 has all keys but the past visible: still compared.
      assertClose(
        o.slice((b * T + t) * C, (b * T + t + 1) * C),
        want[t],
        `row ${b} position ${t}`,
        1e-12,
        1e-12,
      );
    }
  }
  // present = past ++ current keys, unchanged past part.
  assertClose(vals(present.k.slice(2, 0, P)), pk, "past part of present", 0, 0);
});

Deno.test("CausalSelfAttention: causal, and a fully masked row gives finite values", async () => {
  const C = 4;
  const attn = new CausalSelfAttention(
    {
      nEmbd: C,
      nHead: 1,
      layerNormEpsilon: 1e-5,
      attnPdrop: 0,
      residPdrop: 0,
      initializerRange: 0.5,
    },
    { generator: new lf.Xoshiro128(2) },
  );
  const x = lf.randn([1, 4, C], { generator: new lf.Xoshiro128(3) });
  const y = await attn.forward(x).out.data();
  // Changing the last position must not change earlier outputs.
  const x2 = lf.concat([x.slice(1, 0, 3), lf.full([1, 1, C], 7)], 1);
  const y2 = await attn.forward(x2).out.data();
  assertClose(y2.slice(0, 3 * C), y.slice(0, 3 * C), "", 0, 0);
  assert.ok(Array.from(y2.slice(3 * C)).some((v, i) => v !== y[3 * C + i]));
  const none = await attn.forward(x, { attentionMask: [[0, 0, 0, 0]] }).out.data();
  assert.ok(Array.from(none).every(Number.isFinite), "no NaN when every key is masked");
  assert.equal(MASK_VALUE, -3.4028234663852886e38);
});

Deno.test({
  name: "gradients of a block and of past keys/values match finite differences (f64)",
  fn: () => {
    const g = new lf.Xoshiro128(9);
    const cfg = {
      nEmbd: 4,
      nHead: 2,
      layerNormEpsilon: 1e-5,
      attnPdrop: 0,
      residPdrop: 0,
      initializerRange: 0.4,
    };
    const block = new Block(cfg, { backend: f64, generator: g });
    const rnd = (shape: number[]) => {
      const t = lf.randn(shape, { backend: f64, generator: g });
      t.requiresGrad = true;
      return t;
    };
    const x = rnd([2, 3, 4]), pk = rnd([2, 2, 2, 2]), pv = rnd([2, 2, 2, 2]);
    const mask = [[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]];
    gradcheck(
      "block",
      (x, pk, pv) => block.forward(x, { past: { k: pk, v: pv }, attentionMask: mask }).out,
      [x, pk, pv, block.attn.c_attn.weight, block.ln_1.weight, block.mlp.c_fc.weight],
    );
  },
});
