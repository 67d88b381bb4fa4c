/** A finite-difference gradient check for every differentiable op (float64 reference backend). */
import * as lf from "../mod.ts";
import { f64, gradcheck, leaf } from "./gradcheck.ts";

const g = new lf.Xoshiro128(1234);
const L = (shape: number[], lo = -1, hi = 1) => leaf(shape, g, lo, hi);
const idsOf = (data: number[], shape: number[]) =>
  lf.Tensor.fromStorage(f64.fromHost(Int32Array.from(data), "i32"), shape);

Deno.test("gradcheck: elementwise binary ops with broadcasting", () => {
  for (
    const [sa, sb] of [[[3, 5], [3, 5]], [[2, 3, 7], [7]], [[4, 1], [1, 5]], [[2, 1, 3], [5, 1]]]
  ) {
    gradcheck("add", (a, b) => a.add(b), [L(sa), L(sb)]);
    gradcheck("sub", (a, b) => a.sub(b), [L(sa), L(sb)]);
    gradcheck("mul", (a, b) => a.mul(b), [L(sa), L(sb)]);
    gradcheck("div", (a, b) => a.div(b), [L(sa), L(sb, 0.5, 2)]);
  }
  gradcheck("scalar ops", (a) => lf.sub(3, a).mul(2).add(1).div(4), [L([3, 4])]);
  gradcheck("scalar / tensor", (a) => lf.div(2, a), [L([7], 0.5, 2)]);
  gradcheck("tensor op itself", (a) => a.mul(a).add(a), [L([5])]);
});

Deno.test("gradcheck: elementwise unary ops", () => {
  gradcheck("neg", (a) => a.neg(), [L([3, 5])]);
  gradcheck("exp", (a) => a.exp(), [L([3, 5])]);
  gradcheck("log", (a) => a.log(), [L([3, 5], 0.2, 3)]);
  gradcheck("sqrt", (a) => a.sqrt(), [L([3, 5], 0.2, 3)]);
  gradcheck("tanh", (a) => a.tanh(), [L([2, 3, 5], -2, 2)]);
  for (const p of [3, 0.5, -1.5, 2]) gradcheck(`pow ${p}`, (a) => a.pow(p), [L([7], 0.3, 2)]);
  // relu away from the kink at 0, where the derivative is undefined.
  const r = leaf([33], g, 0.1, 1);
  gradcheck("relu", (a) => a.mul(-1).add(0.55).relu(), [r], { h: 1e-7 });
  gradcheck("gelu", (a) => a.gelu(), [L([4, 9], -4, 4)]);
  gradcheck("softplus", (a) => a.softplus(), [L([4, 9], -6, 6)]);
  // Past the threshold (x > 20) softplus is x, its derivative 1.
  gradcheck("softplus above 20", (a) => lf.softplus(a), [L([5], 20.5, 30)]);
});

Deno.test("gradcheck: reductions over axes", () => {
  const x = () => L([3, 4, 5]);
  gradcheck("sum all", (a) => a.sum(), [x()]);
  gradcheck("sum axis 1", (a) => a.sum(1), [x()]);
  gradcheck("sum axes keepdim", (a) => a.sum([0, 2], true), [x()]);
  gradcheck("sum negative axis", (a) => a.sum(-1), [x()]);
  gradcheck("mean", (a) => a.mean(1, true), [x()]);
  gradcheck("mean all", (a) => a.mean(), [x()]);
  gradcheck("max axis", (a) => a.max(2), [x()]);
  gradcheck("max axes keepdim", (a) => a.max([0, 1], true), [x()]);
});

Deno.test("gradcheck: matmul 2-d, batched, broadcast, transposed", () => {
  gradcheck("matmul 2d", (a, b) => a.matmul(b), [L([3, 5]), L([5, 7])]);
  gradcheck("matmul batched", (a, b) => a.matmul(b), [L([2, 3, 4]), L([2, 4, 5])]);
  gradcheck("matmul broadcast b", (a, b) => a.matmul(b), [L([2, 3, 4]), L([4, 6])]);
  gradcheck("matmul broadcast a", (a, b) => a.matmul(b), [L([3, 4]), L([2, 4, 5])]);
  gradcheck("matmul broadcast both", (a, b) => a.matmul(b), [L([2, 1, 3, 4]), L([1, 3, 4, 2])]);
  gradcheck("matmul transposed views", (a, b) => a.transpose(0, 1).matmul(b.transpose(0, 1)), [
    L([5, 3]),
    L([7, 5]),
  ]);
  gradcheck("matmul permuted batch", (a, b) => a.permute(1, 0, 2).matmul(b), [
    L([3, 2, 4]),
    L([2, 4, 3]),
  ]);
});

Deno.test("gradcheck: views and joins", () => {
  gradcheck("reshape", (a) => a.reshape(5, -1).mul(a.reshape(5, 3)), [L([3, 5])]);
  gradcheck("reshape of transposed", (a) => a.transpose(0, 1).reshape(15), [L([3, 5])]);
  gradcheck("permute", (a) => a.permute(2, 0, 1).exp(), [L([2, 3, 4])]);
  gradcheck("transpose", (a) => a.transpose(-1, 0).tanh(), [L([2, 3, 4])]);
  gradcheck("slice", (a) => a.slice(1, 1, 4).mul(a.slice(1, -3)), [L([2, 5, 3])]);
  gradcheck("concat", (a, b) => lf.concat([a, b, a], 1), [L([2, 3]), L([2, 4])]);
  gradcheck("split", (a) => {
    const [p, q, r] = a.split([1, 3, 1], 1);
    return p.mul(r).add(q.sum(1, true));
  }, [L([3, 5])]);
  const w = L([4, 3, 5]);
  gradcheck("expand", (a) => a.expand(4, 3, 5).mul(w), [L([3, 1])]);
  gradcheck("contiguous", (a) => a.transpose(0, 1).contiguous().exp(), [L([3, 4])]);
});

Deno.test("gradcheck: embedding (scatter-add backward with repeated ids)", () => {
  const ids = idsOf([2, 0, 2, 4, 1, 2], [2, 3]);
  gradcheck("embedding", (t) => lf.embedding(t, ids).tanh(), [L([5, 7])]);
});

Deno.test("gradcheck: where and maskedFill", () => {
  const cond = lf.Tensor.fromStorage(f64.fromHost(Float64Array.from([1, 0, 0, 1, 1, 0]), "f32"), [
    2,
    3,
  ]);
  gradcheck("where", (a, b) => lf.where(cond, a, b), [L([2, 3]), L([3])]);
  const causal = lf.Tensor.fromStorage(
    f64.fromHost(Float64Array.from([0, 1, 1, 0, 0, 1, 0, 0, 0]), "f32"),
    [3, 3],
  );
  gradcheck("maskedFill causal + softmax", (a) => a.maskedFill(causal, -1e9).softmax(-1), [
    L([2, 3, 3]),
  ]);
});

Deno.test("gradcheck: softmax and log-softmax on last and middle axes", () => {
  gradcheck("softmax last", (a) => a.softmax(-1), [L([3, 7], -3, 3)]);
  gradcheck("softmax middle", (a) => a.softmax(1), [L([2, 5, 3], -3, 3)]);
  gradcheck("logSoftmax last", (a) => a.logSoftmax(-1), [L([3, 7], -3, 3)]);
  gradcheck("logSoftmax first", (a) => a.logSoftmax(0), [L([4, 3], -3, 3)]);
});

Deno.test("gradcheck: layer norm (x, weight, bias)", () => {
  gradcheck("layerNorm", (x, w, b) => x.layerNorm(w, b, 1e-5), [
    L([2, 3, 7], -2, 2),
    L([7]),
    L([7]),
  ]);
  gradcheck("layerNorm transposed input", (x, w, b) => x.transpose(0, 1).layerNorm(w, b), [
    L([5, 3]),
    L([5]),
    L([5]),
  ]);
});

Deno.test("gradcheck: cross-entropy with ignore index, all reductions", () => {
  const t = idsOf([3, -100, 0, 4, 4, -100], [2, 3]);
  for (const reduction of ["mean", "sum", "none"] as const) {
    gradcheck(`crossEntropy ${reduction}`, (x) => x.crossEntropy(t, { reduction }), [
      L([2, 3, 5], -3, 3),
    ]);
  }
  const t2 = idsOf([1, 7, 7], [3]);
  gradcheck("crossEntropy ignoreIndex 7", (x) => x.crossEntropy(t2, { ignoreIndex: 7 }), [
    L([3, 9]),
  ]);
});

Deno.test("gradcheck: dropout with a fixed seed", () => {
  gradcheck("dropout", (x) => {
    lf.manualSeed(5);
    return x.dropout(0.3);
  }, [L([4, 9])]);
});
