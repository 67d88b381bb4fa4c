/**
 * Fused causal attention (`lf.attention`, `Backend.attention`): finite-difference gradient
 * checks, and equality with the unfused sequence matmul → mask → softmax → dropout → matmul
 * on the float64 reference backend (forward and all three gradients), covering past keys,
 * padding, rows with nothing visible and dropout.
 */
import assert from "node:assert/strict";
import * as lf from "../mod.ts";
import { buildBlockedMask, MASK_VALUE } from "../nn/attention.ts";
import { f64, gradcheck, leaf, values } from "./gradcheck.ts";

const g = new lf.Xoshiro128(99);
const L = (shape: number[], lo = -1, hi = 1) => leaf(shape, g, lo, hi);

/** A padding mask [B, S] on the f64 backend. */
function maskOf(rows: number[][]): lf.Tensor {
  return lf.Tensor.fromStorage(f64.fromHost(Float64Array.from(rows.flat()), "f32"), [
    rows.length,
    rows[0].length,
  ]);
}

/** The unfused reference: what nn/attention.ts computed before the fused op. */
function unfused(
  q: lf.Tensor,
  k: lf.Tensor,
  v: lf.Tensor,
  mask: number[][] | undefined,
  p: number,
): lf.Tensor {
  const [B, , T, D] = q.shape, S = k.shape[2];
  let w = q.mul(1 / Math.sqrt(D)).matmul(k.transpose(-1, -2));
  const blocked = buildBlockedMask({
    batch: B,
    length: T,
    pastLength: S - T,
    attentionMask: mask,
    backend: f64,
  });
  if (blocked) w = w.maskedFill(blocked, MASK_VALUE);
  return lf.dropout(w.softmax(-1), p).matmul(v);
}

interface Case {
  name: string;
  B: number;
  H: number;
  T: number;
  S: number;
  D: number;
  mask?: number[][];
  p?: number;
}

const CASES: Case[] = [
  { name: "self, T = S = 5", B: 1, H: 2, T: 5, S: 5, D: 3 },
  { name: "past 3 (prefix / cache)", B: 2, H: 1, T: 4, S: 7, D: 5 },
  { name: "one new token", B: 2, H: 3, T: 1, S: 6, D: 4 },
  {
    name: "left padding: a row with nothing visible",
    B: 2,
    H: 2,
    T: 4,
    S: 6,
    D: 3,
    mask: [[1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 1, 1]],
  },
  { name: "all masked", B: 1, H: 1, T: 2, S: 3, D: 2, mask: [[0, 0, 0]] },
  { name: "dropout 0.3", B: 2, H: 2, T: 3, S: 5, D: 3, p: 0.3 },
  {
    name: "dropout + padding",
    B: 2,
    H: 1,
    T: 3,
    S: 4,
    D: 2,
    p: 0.5,
    mask: [[0, 1, 1, 1], [1, 0, 1, 1]],
  },
];

Deno.test("gradcheck: fused attention (q, k, v)", () => {
  for (const c of CASES) {
    const mask = c.mask ? maskOf(c.mask) : null;
    gradcheck(
      `attention ${c.name}`,
      (q, k, v) => {
        lf.manualSeed(5); // the same dropout mask at every evaluation
        return lf.attention(q, k, v, { mask, dropout: c.p ?? 0 });
      },
      [L([c.B, c.H, c.T, c.D], -2, 2), L([c.B, c.H, c.S, c.D], -2, 2), L([c.B, c.H, c.S, c.D])],
    );
  }
});

Deno.test("fused attention equals the unfused ops (forward and gradients, f64)", () => {
  for (const c of CASES) {
    const q = L([c.B, c.H, c.T, c.D], -2, 2), k = L([c.B, c.H, c.S, c.D], -2, 2);
    const v = L([c.B, c.H, c.S, c.D]);
    const gOut = L([c.B, c.H, c.T, c.D]);
    const run = (fused: boolean) => {
      for (const t of [q, k, v]) t.zeroGrad();
      lf.manualSeed(11);
      const out = fused
        ? lf.attention(q, k, v, { mask: c.mask ? maskOf(c.mask) : null, dropout: c.p ?? 0 })
        : unfused(q, k, v, c.mask, c.p ?? 0);
      out.backward(gOut);
      return [out, q.grad!, k.grad!, v.grad!].map((t) => Array.from(values(t)));
    };
    const a = run(true), b = run(false);
    ["out", "dq", "dk", "dv"].forEach((name, i) => {
      for (let j = 0; j < a[i].length; j++) {
        assert.ok(
          Math.abs(a[i][j] - b[i][j]) <= 1e-12 + 1e-10 * Math.abs(b[i][j]),
          `${c.name}: ${name}[${j}] fused ${a[i][j]} vs unfused ${b[i][j]}`,
        );
      }
    });
  }
});

Deno.test("fused attention: shape errors name the tensors", () => {
  const q = L([1, 2, 3, 4]), k = L([1, 2, 2, 4]);
  assert.throws(() => lf.attention(q, k, k), /S ≥ T/);
  const k5 = L([1, 2, 5, 4]);
  assert.throws(() => lf.attention(q, k5, L([1, 2, 5, 3])), /must be \[B, H, T, d\]/);
  assert.throws(
    () => lf.attention(q, k5, k5, { mask: maskOf([[1, 1, 1]]) }),
    /mask \[1, 3\] must be \[B, S\] = \[1, 5\]/,
  );
  assert.throws(() => lf.attention(q, k5, k5, { dropout: 1 }), /dropout must be in \[0, 1\)/);
});
