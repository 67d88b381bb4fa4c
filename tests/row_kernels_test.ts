/**
 * The reference compiler of the row kernels (`kernels/cpu/row_expr.ts`), generated code and
 * closures, against plain float64 loops written here from the formulas: odd sizes, empty rows
 * and columns, NaN and ±Inf, fully masked softmax rows, ignored and edge targets. In float64
 * storage the results agree to 1e-12 (relative to the output's largest magnitude); in float32
 * storage within one unit in the last place of the rounded float64 value (a product or a sum
 * may round on the other side). Also: dropout's hash from `DROPOUT_BITS` equals the lowbias32
 * formula, and the CPU backend's argument checks on targets.
 */
import assert from "node:assert/strict";
import { hashUniform } from "../kernels/backend.ts";
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { compileMapJs, compileU32Args, mapArgNames } from "../kernels/cpu/expr.ts";
import { compileRowJs } from "../kernels/cpu/row_expr.ts";
import {
  DROPOUT_BITS,
  DROPOUT_KEEP,
  DROPOUT_MASK,
  dropoutThreshold,
  input,
  mul,
  select,
} from "../kernels/expr.ts";
import { COL, ROW_KERNELS, type RowKernel } from "../kernels/row_kernels.ts";
import { seeded } from "./helpers/backends.ts";

type Arr = Float32Array | Float64Array;
type Store = Float32ArrayConstructor | Float64ArrayConstructor;
type Bufs = Record<string, Arr | Int32Array>;

// ---- the oracle: each row op as plain float64 loops (`Keep` stores a kept value) ----

function softmax(x: Arr, rows: number, cols: number, log: boolean, Keep: Store): Arr {
  const y = new Keep(rows * cols);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let mx = -Infinity;
    for (let c = 0; c < cols; c++) mx = Math.max(mx, x[o + c]);
    if (mx === -Infinity) mx = 0; // a fully masked row: −∞ − −∞ would be NaN
    let s = 0;
    for (let c = 0; c < cols; c++) {
      const e = Math.exp(x[o + c] - mx);
      s += e;
      y[o + c] = e; // softmax keeps e^{x − max} in y and reads it back
    }
    for (let c = 0; c < cols; c++) y[o + c] = log ? x[o + c] - mx - Math.log(s) : y[o + c] / s;
  }
  return y;
}

function softmaxBackward(y: Arr, g: Arr, rows: number, cols: number, log: boolean): Float64Array {
  const gx = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let s = 0;
    for (let c = 0; c < cols; c++) s += log ? g[o + c] : y[o + c] * g[o + c];
    for (let c = 0; c < cols; c++) {
      gx[o + c] = log ? g[o + c] - Math.exp(y[o + c]) * s : y[o + c] * (g[o + c] - s);
    }
  }
  return gx;
}

function layerNorm(x: Arr, w: Arr, b: Arr, rows: number, cols: number, eps: number) {
  const y = new Float64Array(rows * cols), mean = new Float64Array(rows);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let mu = 0, v = 0;
    for (let c = 0; c < cols; c++) mu += x[o + c];
    mu /= cols;
    for (let c = 0; c < cols; c++) v += (x[o + c] - mu) ** 2;
    const rs = 1 / Math.sqrt(v / cols + eps);
    for (let c = 0; c < cols; c++) y[o + c] = (x[o + c] - mu) * rs * w[c] + b[c];
    mean[r] = mu;
    rstd[r] = rs;
  }
  return { y, mean, rstd };
}

function layerNormBackward(
  x: Arr,
  w: Arr,
  mean: Arr,
  rstd: Arr,
  gy: Arr,
  rows: number,
  cols: number,
) {
  const gx = new Float64Array(rows * cols), gw = new Float64Array(cols);
  const gb = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let sg = 0, sgx = 0;
    for (let c = 0; c < cols; c++) {
      const g = gy[o + c] * w[c];
      sg += g;
      sgx += g * (x[o + c] - mean[r]) * rstd[r];
    }
    for (let c = 0; c < cols; c++) {
      const xh = (x[o + c] - mean[r]) * rstd[r];
      gx[o + c] = rstd[r] * (gy[o + c] * w[c] - sg / cols - xh * (sgx / cols));
      gw[c] += gy[o + c] * xh;
      gb[c] += gy[o + c];
    }
  }
  return { gx, gw, gb };
}

function crossEntropy(l: Arr, t: Int32Array, rows: number, cols: number, ignore: number) {
  const loss = new Float64Array(rows), lse = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let mx = -Infinity, s = 0;
    for (let c = 0; c < cols; c++) mx = Math.max(mx, l[o + c]);
    for (let c = 0; c < cols; c++) s += Math.exp(l[o + c] - mx);
    lse[r] = mx + Math.log(s);
    const picked = t[r] >= 0 && t[r] < cols ? l[o + t[r]] : NaN;
    loss[r] = t[r] === ignore ? 0 : lse[r] - picked;
  }
  return { loss, lse };
}

function crossEntropyBackward(
  l: Arr,
  t: Int32Array,
  lse: Arr,
  gLoss: Arr,
  rows: number,
  cols: number,
  ignore: number,
): Float64Array {
  const gx = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    if (t[r] === ignore) continue;
    for (let c = 0; c < cols; c++) {
      gx[r * cols + c] = (Math.exp(l[r * cols + c] - lse[r]) - (c === t[r] ? 1 : 0)) * gLoss[r];
    }
  }
  return gx;
}

// ---- cases ----

const rand = seeded(777);
/** Values in [lo, hi) (f32-representable), NaN/±Inf at `specials` positions. */
function values(n: number, lo = -3, hi = 3, specials: number[] = []): Float32Array {
  const a = Float32Array.from({ length: n }, () => lo + (hi - lo) * rand());
  const s = [NaN, Infinity, -Infinity];
  specials.forEach((i, k) => i < n && (a[i] = s[k % 3]));
  return a;
}

/** A case: the kernel, its inputs and scalars, and the oracle's outputs given storage `Keep`. */
interface Case {
  name: string;
  kernel: RowKernel;
  rows: number;
  cols: number;
  inputs: Bufs;
  scalars: Record<string, number>;
  want: (Keep: Store) => Record<string, Arr>;
}

const SIZES: [number, number][] = [[1, 1], [3, 7], [5, 33], [2, 257], [4, 1000], [0, 5], [4, 0], [
  0,
  0,
]];

function cases(): Case[] {
  const out: Case[] = [];
  for (const [rows, cols] of SIZES) {
    const n = rows * cols;
    // Row 1 has NaN and ±Inf, row 2 is −∞ only (a fully masked softmax row).
    const x = values(n, -8, 8, cols > 2 ? [cols, cols + 1, cols + 2] : []);
    if (rows > 2) x.fill(-Infinity, 2 * cols, 3 * cols);
    const g = values(n);
    const size = `[${rows}, ${cols}]`;
    for (const log of [false, true]) {
      const name = log ? "logSoftmax" : "softmax";
      out.push({
        name: `${name} ${size}`,
        kernel: ROW_KERNELS[name],
        rows,
        cols,
        inputs: { x },
        scalars: {},
        want: (Keep) => ({ y: softmax(x, rows, cols, log, Keep) }),
      });
      const y = softmax(x, rows, cols, log, Float32Array) as Float32Array;
      out.push({
        name: `${name}Backward ${size}`,
        kernel: ROW_KERNELS[`${name}Backward`],
        rows,
        cols,
        inputs: { y, gy: g },
        scalars: {},
        want: () => ({ gx: softmaxBackward(y, g, rows, cols, log) }),
      });
    }
    const lx = values(n, -3, 5, cols > 2 ? [cols + 1] : []);
    const w = values(cols, 0.5, 1.5), b = values(cols);
    out.push({
      name: `layerNorm ${size}`,
      kernel: ROW_KERNELS.layerNorm,
      rows,
      cols,
      inputs: { x: lx, w, b },
      scalars: { eps: 1e-5 },
      want: () => layerNorm(lx, w, b, rows, cols, 1e-5),
    });
    const { mean, rstd } = layerNorm(lx, w, b, rows, cols, 1e-5);
    const [m32, r32] = [Float32Array.from(mean), Float32Array.from(rstd)];
    out.push({
      name: `layerNormBackward ${size}`,
      kernel: ROW_KERNELS.layerNormBackward,
      rows,
      cols,
      inputs: { x: lx, w, mean: m32, rstd: r32, gy: g },
      scalars: {},
      want: () => layerNormBackward(lx, w, m32, r32, g, rows, cols),
    });
    // Targets: the first and last column, ignored rows, and (for the kernel itself, which the
    // backend shields from them) a column past the end and a negative one: picks give NaN.
    for (const ignore of [-100, 1]) {
      const target = Int32Array.from(
        { length: rows },
        (_, r) => [0, cols - 1, -100, 1, cols, -3][r % 6],
      );
      const gl = values(rows, 0.5, 2);
      const { lse } = crossEntropy(x, target, rows, cols, ignore);
      const lse32 = Float32Array.from(lse);
      out.push({
        name: `crossEntropy ${size} ignoreIndex ${ignore}`,
        kernel: ROW_KERNELS.crossEntropy,
        rows,
        cols,
        inputs: { logits: x, target },
        scalars: { ignoreIndex: ignore },
        want: () => crossEntropy(x, target, rows, cols, ignore),
      });
      out.push({
        name: `crossEntropyBackward ${size} ignoreIndex ${ignore}`,
        kernel: ROW_KERNELS.crossEntropyBackward,
        rows,
        cols,
        inputs: { logits: x, target, lse: lse32, gLoss: gl },
        scalars: { ignoreIndex: ignore },
        want: () => ({ gx: crossEntropyBackward(x, target, lse32, gl, rows, cols, ignore) }),
      });
    }
  }
  return out;
}

/** Runs a compiled kernel with outputs stored in `Keep` arrays; returns every output by name. */
function run(c: Case, Keep: Store, closures: boolean): Record<string, Arr> {
  const k = compileRowJs(c.kernel, { closures });
  const bufs: Bufs = { ...c.inputs };
  const outs: Record<string, Arr> = {};
  const sized: [readonly string[], number][] = [
    [k.elementOutputs, c.rows * c.cols],
    [k.rowOutputs, c.rows],
    [k.colOutputs, c.cols],
  ];
  for (const [names, n] of sized) {
    // Filled with NaN: every element must be written.
    for (const name of names) bufs[name] = outs[name] = new Keep(n).fill(NaN);
  }
  k.run(bufs, c.scalars, c.rows, c.cols);
  return outs;
}

/** Distance in f32 units in the last place (NaN equals NaN; a sign change counts through 0). */
function ulps(a: number, b: number): number {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b) ? 0 : Infinity;
  if (a === b) return 0;
  if (!Number.isFinite(a) || !Number.isFinite(b)) return Infinity;
  const i = new Int32Array(new Float32Array([a, b]).buffer);
  const ord = (v: number) => (v < 0 ? -(v & 0x7fffffff) : v);
  return Math.abs(ord(i[0]) - ord(i[1]));
}

for (const closures of [false, true]) {
  const how = closures ? "closures" : "generated code";
  Deno.test(`row kernels (${how}) in float64 storage agree with float64 loops to 1e-12`, () => {
    for (const c of cases()) {
      const got = run(c, Float64Array, closures), want = c.want(Float64Array);
      assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort(), c.name);
      for (const [name, w] of Object.entries(want)) {
        let scale = 0;
        for (const v of w) if (Number.isFinite(v)) scale = Math.max(scale, Math.abs(v));
        got[name].forEach((v, i) => {
          const ok = Object.is(v, w[i]) || (Number.isNaN(v) && Number.isNaN(w[i])) ||
            Math.abs(v - w[i]) <= 1e-12 * Math.max(Math.abs(w[i]), scale);
          if (!ok) assert.fail(`${c.name}: ${name}[${i}] = ${v}, want ${w[i]}`);
        });
      }
    }
  });

  Deno.test(`row kernels (${how}) in float32 storage: within 1 ulp of the rounded loops`, () => {
    for (const c of cases()) {
      const got = run(c, Float32Array, closures), want = c.want(Float32Array);
      for (const [name, w] of Object.entries(want)) {
        got[name].forEach((v, i) => {
          const want = Math.fround(w[i]);
          if (ulps(v, want) > 1) assert.fail(`${c.name}: ${name}[${i}] = ${v}, want ${want}`);
        });
      }
    }
  });
}

Deno.test("a fully masked softmax row (−∞ only) is NaN, as in PyTorch; one finite entry is 1", () => {
  const x = Float32Array.from([-Infinity, -Infinity, -Infinity, -Infinity, 2, -Infinity]);
  for (const closures of [false, true]) {
    for (const kernel of [ROW_KERNELS.softmax, ROW_KERNELS.logSoftmax]) {
      const c = {
        name: "",
        kernel,
        rows: 2,
        cols: 3,
        scalars: {},
        inputs: { x },
        want: () => ({}),
      };
      const y = [...run(c, Float64Array, closures).y];
      const last = kernel === ROW_KERNELS.softmax ? [0, 1, 0] : [-Infinity, 0, -Infinity];
      assert.deepEqual(y, [NaN, NaN, NaN, ...last]);
    }
  }
});

Deno.test("row kernel descriptions the compiler refuses name the fault", () => {
  const base: RowKernel = {
    rowInputs: ["x"],
    colInputs: [],
    perRow: [],
    indices: [],
    scalars: [],
    steps: [],
    outputs: {},
    rowOutputs: {},
    colSums: {},
  };
  const bad: [Partial<RowKernel>, RegExp][] = [
    [{ outputs: { y: input("z") } }, /output 'y' reads 'z', not given/],
    [{ rowOutputs: { s: input("x") } }, /row output 's' reads element values/],
    [
      { steps: [{ kind: "sum", name: "a", of: input("b") }, { kind: "sum", name: "b", of: COL }] },
      /reduction 'a' reads 'b' before it is computed/,
    ],
    [
      {
        steps: [{ kind: "sum", name: "s", of: input("x") }],
        colSums: { g: mul(input("x"), input("s")) },
      },
      /column sum 'g' reads the step 's'/,
    ],
    [{ scalars: ["x"] }, /'x' is declared twice/],
  ];
  for (const [change, msg] of bad) {
    for (const closures of [false, true]) {
      assert.throws(() => compileRowJs({ ...base, ...change }, { closures }), msg);
    }
  }
});

// ---- dropout's hash ----

/** The hash as it was written before `DROPOUT_BITS`: lowbias32 twice over seed and index. */
function oldHashUniform(seed: number, index: number): number {
  const lowbias32 = (v: number) => {
    let x = v >>> 0;
    x ^= x >>> 16;
    x = Math.imul(x, 0x7feb352d) >>> 0;
    x ^= x >>> 15;
    x = Math.imul(x, 0x846ca68b) >>> 0;
    x ^= x >>> 16;
    return x >>> 0;
  };
  let x = (Math.imul(index, 0x9e3779b9) ^ seed) >>> 0;
  x = lowbias32(x);
  x = lowbias32((x + seed) >>> 0);
  return (x >>> 8) / 16777216;
}

const SEEDS = [
  0,
  1,
  -1,
  -7,
  42,
  12345,
  0x7fffffff,
  -(2 ** 31),
  2 ** 31 + 5,
  0xffffffff,
  0x9e3779b9,
];

Deno.test("hashUniform (DROPOUT_BITS) equals the lowbias32 formula for many seeds and indices", () => {
  const bits = [false, true].map((closures) =>
    compileU32Args(DROPOUT_BITS, ["seed", "index"], { closures })
  );
  const r = seeded(5);
  for (const seed of [...SEEDS, ...Array.from({ length: 20 }, () => ((r() * 2 ** 32) | 0))]) {
    for (let k = 0; k < 3000; k++) {
      const i = k < 2000 ? k : Math.floor(r() * 2 ** 31);
      const want = oldHashUniform(seed, i);
      if (hashUniform(seed, i) !== want) assert.fail(`seed ${seed} index ${i}`);
      for (const f of bits) {
        if ((f([seed, i]) >>> 8) / 16777216 !== want) assert.fail(`bits: seed ${seed} index ${i}`);
      }
    }
  }
});

Deno.test("the dropout mask compiled from DROPOUT_MASK keeps exactly where hash ≥ p", () => {
  const names = mapArgNames(DROPOUT_MASK);
  const keepFn = [false, true].map((closures) =>
    compileMapJs({ ...DROPOUT_MASK, outputs: { k: select(DROPOUT_KEEP, 1, 0) } }, { closures })
  );
  const masks = [false, true].map((closures) => compileMapJs(DROPOUT_MASK, { closures }));
  const out = new Float64Array(1);
  for (const p of [0, 1e-9, 0.1, 1 / 3, 0.5, 0.9, 1]) {
    for (const seed of SEEDS) {
      const vals: Record<string, number> = {
        keep: 1 / (1 - p),
        seed,
        threshold: dropoutThreshold(p),
      };
      const args = names.map((n) => vals[n] ?? 0);
      for (let i = 0; i < 2000; i++) {
        args[names.indexOf("index")] = i;
        const keep = oldHashUniform(seed, i) >= p;
        for (const f of masks) {
          f(args, out);
          assert.equal(out[0], keep ? 1 / (1 - p) : 0, `p ${p} seed ${seed} index ${i}`);
        }
        for (const f of keepFn) {
          f(args, out);
          assert.equal(out[0], keep ? 1 : 0);
        }
      }
    }
  }
});

Deno.test("the CPU backend refuses targets outside the row, naming the row, before computing", () => {
  const b = new CpuBackend();
  const x = b.fromHost(new Float32Array(6), "f32"), g = b.fromHost(new Float32Array(2), "f32");
  const t = b.fromHost(Int32Array.from([1, 3]), "i32");
  const msg = /target 3 at row 1 is outside \[0, 3\)/;
  assert.throws(() => b.crossEntropy(x, t, 2, 3, -100), new RegExp(`crossEntropy: ${msg.source}`));
  assert.throws(
    () => b.crossEntropyBackward(x, t, g, g, 2, 3, -100),
    new RegExp(`crossEntropyBackward: ${msg.source}`),
  );
  const live = b.liveCount();
  const ok = b.fromHost(Int32Array.from([1, -100]), "i32");
  const { loss, lse } = b.crossEntropy(x, ok, 2, 3, -100);
  assert.deepEqual([...b.view(loss)], [Math.fround(Math.log(3)), 0]);
  for (const s of [ok, loss, lse]) b.dispose(s);
  assert.equal(b.liveCount(), live);
});
