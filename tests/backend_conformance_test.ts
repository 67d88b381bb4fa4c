/**
 * One conformance suite for every backend (see `tests/helpers/backends.ts`: the CPU backend,
 * WebAssembly on one and two threads, with 64- and 32-bit memory, with and without relaxed SIMD,
 * and WebGPU where an adapter exists): every primitive against the reference backend on odd
 * sizes, strided, transposed and broadcast views, NaN and ±Inf inputs, and empty tensors; and
 * the same argument errors, with the same messages, on every backend.
 *
 * The reference is the float32 CPU backend; the CPU backend itself is compared with the float64
 * one. Backend-specific behaviour (threads splitting work, memory limits, device limits, the
 * generated code) keeps its own test files.
 */
import assert from "node:assert/strict";
import {
  ATTENTION_FULLY_MASKED_LSE,
  ATTENTION_MASK_VALUE,
  type AttentionParams,
  type Backend,
  BINARY_OPS,
  contiguousStrides,
  contiguousView,
  hashUniform,
  type MatmulParams,
  type Storage,
  UNARY_OPS,
  type UnaryOp,
  type View,
} from "../kernels/backend.ts";
import {
  assertClose,
  assertCloseScaled,
  assertWithinSumBound,
  type ScaledTolerance,
} from "./helpers/close.ts";
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { Tensor } from "../autograd/tensor.ts";
import { BACKEND_VARIANTS, type Divergences, referenceFor, seeded } from "./helpers/backends.ts";

// WebGPU keeps promises (device.lost, error scopes) that outlive a test by design.
const opts = { sanitizeOps: false, sanitizeResources: false };

type Host = Float32Array | Int32Array;

/** A computation run on a backend and on its reference with the same host inputs. */
interface Case {
  name: string;
  inputs: Host[];
  run: (b: Backend, xs: Storage[]) => Storage[];
  rtol?: number;
  atol?: number;
  /** Compare with a tolerance scaled by each output's largest magnitude instead. */
  scaled?: ScaledTolerance;
  /** A behaviour some backends are allowed not to have (see `BackendVariant.differs`). */
  needs?: keyof Divergences;
}

const rand = seeded(20261204);
const uniform = (n: number, lo = -2, hi = 2) =>
  Float32Array.from({ length: n }, () => lo + (hi - lo) * rand());
const ints = (n: number, hi: number) =>
  Int32Array.from({ length: n }, () => Math.floor(rand() * hi));
/** `uniform` with NaN, +Inf, −Inf, +0 and −0 at a few places (the first ones always). */
function withSpecials(n: number, lo = -2, hi = 2): Float32Array {
  const a = uniform(n, lo, hi);
  const s = [NaN, Infinity, -Infinity, 0, -0];
  for (let i = 0; i < n; i += 7) a[i] = s[(i / 7) % s.length];
  return a;
}
const view = (shape: number[], strides: number[], offset = 0): View => ({ shape, strides, offset });
const cv = contiguousView;
const ODD = [1, 7, 33, 65, 257];

/** Inputs valid for each unary op (log, sqrt and powScalar are compared on x ≥ 0). */
function unaryRange(op: UnaryOp): [number, number] {
  return op === "log" || op === "sqrt" || op === "powScalar" ? [0, 4] : [-5, 5];
}

function elementwiseCases(): Case[] {
  const out: Case[] = [];
  const params: Partial<Record<UnaryOp, number[]>> = {
    powScalar: [1.7, 2, 3, 0.5, -1, -0.5, 0, -2],
    addScalar: [0.25],
    mulScalar: [-1.5],
  };
  for (const op of UNARY_OPS) {
    for (const param of params[op] ?? [0]) {
      const [lo, hi] = unaryRange(op);
      for (const n of ODD) {
        out.push({
          name: `unary ${op}(${param}) n=${n}`,
          inputs: [uniform(n, lo, hi)],
          run: (b, [x]) => [b.unary(op, x, cv([n]), param)],
          rtol: 4e-6,
          atol: op === "geluGrad" ? 2e-7 : 1e-6,
        });
      }
      // Transposed, broadcast and offset views of a [7, 33] shape.
      out.push({
        name: `unary ${op}(${param}) on strided views`,
        inputs: [uniform(8 * 36, lo, hi)],
        run: (b, [x]) => [
          b.unary(op, x, view([33, 7], [1, 33]), param),
          b.unary(op, x, view([7, 33], [0, 1]), param),
          b.unary(op, x, view([7, 33], [36, 1], 37), param),
        ],
        rtol: 4e-6,
        atol: op === "geluGrad" ? 2e-7 : 1e-6,
      });
      out.push({
        name: `unary ${op}(${param}) on a wide range`,
        inputs: [lo < 0 ? uniform(257, -10, 10) : uniform(257, 0.001, 100)],
        run: (b, [x]) => [b.unary(op, x, cv([257]), param)],
        rtol: 4e-6,
        atol: 1e-6,
      });
      out.push({
        name: `unary ${op}(${param}) with NaN and ±Inf`,
        inputs: [withSpecials(65, lo, hi)],
        run: (b, [x]) => [b.unary(op, x, cv([65]), param)],
        rtol: 4e-6,
        atol: 1e-6,
      });
    }
  }
  for (const op of BINARY_OPS) {
    const lo = op === "pow" ? 0.1 : -2;
    for (const [d0, d1, d2] of [[5, 7, 33], [1, 1, 65], [3, 257, 1]]) {
      const shape = [d0, d1, d2];
      out.push({
        name: `binary ${op} [${shape}] permuted and broadcast`,
        inputs: [uniform(d0 * d1 * d2, lo, 2), uniform(d0 * d2, -2, 2)],
        run: (b, [x, y]) => [
          b.binary(op, x, view(shape, [d1 * d2, 1, d1]), y, view(shape, [d2, 0, 1])),
        ],
        rtol: 4e-6,
        atol: 1e-6,
      });
    }
    const a = withSpecials(65), c = withSpecials(65).reverse();
    for (let i = 0; i < 65; i += 5) c[i] = a[i]; // equal pairs, NaN and Inf among them
    out.push({
      name: `binary ${op} with NaN and ±Inf`,
      inputs: [a, c],
      run: (b, [x, y]) => [b.binary(op, x, cv([65]), y, cv([65]))],
      rtol: 4e-6,
      atol: 1e-6,
    });
  }
  out.push(
    {
      name: "where (f32 and i32 conditions, broadcast branch, NaN passes through)",
      inputs: [
        Float32Array.from({ length: 33 * 7 }, () => (rand() > 0.5 ? 1 : 0)),
        Int32Array.from({ length: 33 * 7 }, () => (rand() > 0.5 ? 1 : 0)),
        withSpecials(33 * 7),
        uniform(7),
      ],
      run: (b, [cf, ci, x, y]) => [
        b.where(cf, cv([33, 7]), x, cv([33, 7]), y, view([33, 7], [0, 1])),
        b.where(ci, cv([33, 7]), x, cv([33, 7]), y, view([33, 7], [0, 1])),
      ],
      rtol: 0,
      atol: 0,
    },
    {
      // The condition is "c ≠ 0": NaN and ±Inf select the first branch, −0 the second.
      name: "where with NaN, ±Inf and −0 conditions",
      inputs: [
        Float32Array.from([NaN, Infinity, -Infinity, -0, 0, 1e-30, NaN]),
        Float32Array.from([1, 2, 3, 4, 5, 6, 7]),
        Float32Array.from([-1, -2, -3, -4, -5, -6, -7]),
      ],
      run: (b, [c, x, y]) => [b.where(c, cv([7]), x, cv([7]), y, cv([7]))],
      rtol: 0,
      atol: 0,
    },
    {
      name: "copy: transposed into a strided slice; i32 broadcast",
      inputs: [uniform(7 * 33), uniform(33 * 20), Int32Array.from({ length: 65 }, (_, i) => i * 7)],
      run: (b, [src, dst, ids]) => {
        b.copy(src, view([33, 7], [1, 33]), dst, view([33, 7], [20, 2], 3));
        const o = b.full(3 * 65, 0, "i32");
        b.copy(ids, view([3, 65], [0, 1]), o, cv([3, 65]));
        return [dst, o];
      },
      rtol: 0,
      atol: 0,
    },
    {
      name: "cast: f32 → i32 truncates toward zero, i32 → f32",
      inputs: [Float32Array.from([-2.7, -1.5, -0.5, 0, 0.5, 1.5, 2.7, 1e6 + 0.5, -123456.9])],
      run: (b, [x]) => {
        const i = b.cast(x, "i32");
        return [i, b.cast(i, "f32")];
      },
      rtol: 0,
      atol: 0,
    },
    {
      name: "full and fromHost",
      inputs: [],
      run: (
        b,
      ) => [
        b.full(257, -1.25, "f32"),
        b.full(33, -7, "i32"),
        b.fromHost(Float64Array.from([0.1, 2.5, -3]), "f32"),
      ],
      rtol: 0,
      atol: 0,
    },
  );
  return out;
}

/** Sum, max and min of x as `[outer, size, inner]` over its middle axis, and its argmax. */
function allReductions(b: Backend, x: Storage, outer: number, size: number, inner: number) {
  return [
    b.reduce("sum", x, outer, size, inner),
    b.reduce("max", x, outer, size, inner),
    b.reduce("min", x, outer, size, inner),
    b.argmax(x, outer, size, inner),
  ];
}

function rowCases(): Case[] {
  const out: Case[] = [];
  for (const [o, s, i] of [[1, 1, 1], [7, 33, 1], [3, 257, 5], [65, 7, 33], [2, 1000, 3]]) {
    out.push({
      name: `reduce sum/max/min and argmax [${o}, ${s}, ${i}]`,
      inputs: [uniform(o * s * i)],
      run: (b, [x]) => allReductions(b, x, o, s, i),
      rtol: 1e-5,
      atol: 2e-5,
    });
  }
  out.push({
    name: "reduce with NaN and ±Inf",
    inputs: [withSpecials(7 * 33)],
    run: (b, [x]) => [
      b.reduce("sum", x, 7, 33, 1),
      b.reduce("max", x, 1, 7, 33),
      b.reduce("min", x, 7, 33, 1),
    ],
    rtol: 1e-5,
    atol: 1e-5,
  });
  for (
    const [m, n, k, tA, tB, batch] of [
      [1, 1, 1, false, false, 1],
      [7, 33, 65, false, false, 1],
      [65, 7, 33, true, false, 2],
      [33, 65, 7, false, true, 3],
      [17, 19, 23, true, true, 2],
      [1, 257, 65, false, false, 2],
      [4, 130, 33, false, true, 1],
    ] as [number, number, number, boolean, boolean, number][]
  ) {
    out.push({
      name: `matmul m${m} n${n} k${k} transA ${tA} transB ${tB} batch ${batch} (B broadcast)`,
      inputs: [uniform(batch * m * k + 3), uniform(k * n + 5)],
      run: (b, [x, y]) => [b.matmul(x, y, {
        batch,
        m,
        n,
        k,
        transA: tA,
        transB: tB,
        aBatchStride: m * k,
        bBatchStride: 0,
        aOffset: 3,
        bOffset: 5,
      })],
      rtol: 1e-4,
      atol: 1e-4,
    });
  }
  for (const [r, c] of [[1, 1], [7, 33], [65, 257], [3, 5000]]) {
    out.push({
      name: `softmax, log-softmax and their backward [${r}, ${c}]`,
      inputs: [uniform(r * c, -6, 6), uniform(r * c)],
      run: (b, [x, g]) => {
        const y = b.softmax(x, r, c, false), ly = b.softmax(x, r, c, true);
        return [y, ly, b.softmaxBackward(y, g, r, c, false), b.softmaxBackward(ly, g, r, c, true)];
      },
      rtol: 1e-4,
      atol: 1e-6,
    });
    out.push({
      name: `layer norm and its backward [${r}, ${c}]`,
      inputs: [uniform(r * c), uniform(c), uniform(c), uniform(r * c)],
      run: (b, [x, w, bias, g]) => {
        const { y, mean, rstd } = b.layerNorm(x, w, bias, r, c, 1e-5);
        const { gx, gw, gb } = b.layerNormBackward(x, w, mean, rstd, g, r, c);
        return [y, mean, rstd, gx, gw, gb];
      },
      rtol: 1e-3,
      atol: 1e-4,
    });
    out.push({
      name: `cross-entropy and its backward, ignored rows [${r}, ${c}]`,
      inputs: [
        uniform(r * c, -4, 4),
        Int32Array.from({ length: r }, (_, i) => (i % 3 === 1 ? -100 : (i * 97) % c)),
        uniform(r),
      ],
      run: (b, [x, t, g]) => {
        const { loss, lse } = b.crossEntropy(x, t, r, c, -100);
        return [loss, lse, b.crossEntropyBackward(x, t, lse, g, r, c, -100)];
      },
      rtol: 1e-5,
      atol: 1e-6,
    });
  }
  out.push({
    name: "softmax and log-softmax of rows with NaN and ±Inf",
    inputs: [withSpecials(7 * 33, -3, 3)],
    run: (b, [x]) => [b.softmax(x, 7, 33, false), b.softmax(x, 7, 33, true)],
    rtol: 1e-5,
    atol: 1e-6,
  });
  out.push({
    name: "gather and scatter-add (repeated ids)",
    inputs: [uniform(61 * 33), ints(257, 61), uniform(257 * 33)],
    run: (b, [table, ids, g]) => [b.gather(table, ids, 257, 33), b.scatterAdd(g, ids, 257, 33, 61)],
    rtol: 1e-5,
    atol: 1e-5,
  });
  out.push({
    name: "dropout mask",
    inputs: [],
    run: (b) => [b.dropoutMask(1001, 0.3, 12345), b.dropoutMask(7, 0, 1)],
    rtol: 0,
    atol: 1e-6,
  });
  out.push({
    name: "AdamW step (in place)",
    inputs: [uniform(1001), uniform(1001), uniform(1001, 0, 0.1), uniform(1001, 0, 0.1)],
    run: (b, [p, g, m, v]) => {
      b.adamw(p, g, m, v, {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0.01,
        step: 3,
      });
      return [p, m, v];
    },
    rtol: 1e-5,
    atol: 1e-6,
  });
  for (
    const [B, H, T, S, D, masked, drop] of [
      [1, 2, 5, 5, 3, false, 0],
      [2, 3, 4, 7, 9, true, 0],
      [2, 1, 1, 6, 64, true, 0],
      [1, 2, 3, 5, 3, false, 0.3],
    ] as [number, number, number, number, number, boolean, number][]
  ) {
    const p = {
      batch: B,
      heads: H,
      queries: T,
      keys: S,
      dim: D,
      scale: 1 / Math.sqrt(D),
      dropP: drop,
      dropSeed: 77,
    };
    out.push({
      name: `attention and its backward B${B} H${H} T${T} S${S} d${D}${masked ? " masked" : ""}${
        drop ? " dropout" : ""
      }`,
      inputs: [
        uniform(B * H * T * D),
        uniform(B * H * S * D),
        uniform(B * H * S * D),
        // Batch 0 has a padded key; batch 1's first key is padding (left padding).
        Float32Array.from({ length: B * S }, (_, i) => (masked && (i === 1 || i === S) ? 0 : 1)),
        uniform(B * H * T * D),
      ],
      run: (b, [q, k, v, m, g]) => {
        const mask = masked ? m : null;
        const { out, lse } = b.attention(q, k, v, mask, p);
        const { gq, gk, gv } = b.attentionBackward(q, k, v, mask, out, lse, g, p);
        return [out, lse, gq, gk, gv];
      },
      rtol: 1e-4,
      atol: 1e-5,
    });
  }
  return out;
}

/**
 * Reductions with NaN and ±Inf at the ends of the reduced axis (its first element and its last,
 * which a vectorised loop reaches in its tail for sizes not a multiple of the vector width) and
 * in its middle, over the first, a middle and the last axis, and empty axes.
 */
function reduceSpecialCases(): Case[] {
  const out: Case[] = [];
  // Each line (an [outer, inner] position) gets one pattern, by its index modulo 8.
  const patterns: [number | "last" | "mid", number][][] = [
    [[0, NaN]],
    [["last", NaN]],
    [["mid", NaN]],
    [[0, Infinity]],
    [["last", Infinity]],
    [[0, -Infinity], ["last", -Infinity]],
    [[0, Infinity], ["last", -Infinity]],
    [[0, -0], ["mid", NaN], ["last", Infinity]],
  ];
  for (const size of [2, 7, 33, 257]) {
    for (const [outer, inner] of [[8, 1], [1, 8], [2, 4], [3, 3]]) {
      const x = uniform(outer * size * inner);
      for (let o = 0; o < outer; o++) {
        for (let j = 0; j < inner; j++) {
          for (const [at, v] of patterns[(o * inner + j) % patterns.length]) {
            const k = at === "last" ? size - 1 : at === "mid" ? size >> 1 : at;
            x[(o * size + k) * inner + j] = v;
          }
        }
      }
      out.push({
        name:
          `reduce sum/max/min and argmax with NaN/±Inf at axis ends [${outer}, ${size}, ${inner}]`,
        inputs: [x],
        run: (b, [x]) => allReductions(b, x, outer, size, inner),
        // Not `scaled`: its scale is the largest |value|, here infinite.
        rtol: 1e-5,
        atol: 4e-5,
      });
    }
  }
  out.push({
    name: "reduce sum/max/min and argmax over empty axes",
    inputs: [new Float32Array(0)],
    run: (b, [x]) =>
      [[1, 0, 1], [2, 0, 3], [5, 0, 1], [1, 0, 7]].flatMap(([o, s, i]) =>
        allReductions(b, x, o, s, i)
      ),
    rtol: 0,
    atol: 0,
  });
  return out;
}

/** Every primitive on empty tensors: empty results, no error. */
function emptyCases(): Case[] {
  const p0 = { batch: 0, heads: 2, queries: 3, keys: 3, dim: 4, scale: 0.5, dropP: 0, dropSeed: 0 };
  return [{
    name: "empty tensors",
    inputs: [new Float32Array(0), new Int32Array(0), uniform(6)],
    run: (b, [x, ids, six]) => [
      b.unary("exp", x, cv([0, 3])),
      b.binary("add", x, cv([3, 0]), x, cv([3, 0])),
      b.reduce("sum", x, 0, 5, 1),
      b.reduce("sum", x, 2, 0, 3), // empty axis: 0 (max/min: NaN)
      b.reduce("max", x, 2, 0, 1),
      b.argmax(x, 3, 0, 1),
      b.matmul(x, six, {
        batch: 1,
        m: 0,
        n: 3,
        k: 2,
        transA: false,
        transB: false,
        aBatchStride: 0,
        bBatchStride: 0,
      }),
      b.matmul(six, six, {
        batch: 1,
        m: 2,
        n: 3,
        k: 0,
        transA: false,
        transB: false,
        aBatchStride: 0,
        bBatchStride: 0,
      }),
      b.softmax(x, 0, 5, false),
      b.gather(six, ids, 0, 3),
      b.scatterAdd(x, ids, 0, 3, 2),
      b.cast(x, "i32"),
      b.dropoutMask(0, 0.5, 1),
      b.attention(x, x, x, null, p0).out,
    ],
    rtol: 0,
    atol: 0,
  }];
}

/** Views of every kind: transposes, stepped slices, permutes, broadcasts, negative strides. */
const STRIDED: { name: string; len: number; view: View }[] = [
  { name: "transpose 2-D", len: 33 * 7, view: view([33, 7], [1, 33]) },
  { name: "step-2 slice", len: 2 * 65 + 1, view: view([65], [2], 1) },
  { name: "3-D permute", len: 5 * 6 * 7, view: view([7, 5, 6], [1, 42, 7]) },
  { name: "broadcast middle", len: 4 * 9, view: view([4, 3, 9], [9, 0, 1]) },
  { name: "4-D slice", len: 2 * 3 * 4 * 10, view: view([2, 3, 4, 5], [120, 40, 10, 2], 1) },
  // Stored as [2, 7, 5, 3], seen as [3, 5, 7, 2]: no two axes merge.
  { name: "rank-4 permute", len: 210, view: view([3, 5, 7, 2], [1, 3, 15, 105]) },
  { name: "negative stride", len: 20, view: view([4, 5], [-5, 1], 15) },
  { name: "scalar broadcast", len: 3, view: view([6, 7], [0, 0], 2) },
  { name: "rank 0", len: 3, view: view([], [], 1) },
  { name: "empty", len: 3, view: view([4, 0], [1, 1]) },
  { name: "column broadcast", len: 65, view: view([65, 7], [1, 0]) },
  { name: "transposed row [1, 257]", len: 257, view: view([1, 257], [1, 1]) },
  { name: "transposed column [65, 1]", len: 65, view: view([65, 1], [1, 65]) },
];

/** Every unary op, mul, where and copy through each view of {@link STRIDED}. */
function stridedCases(): Case[] {
  return STRIDED.map(({ name, len, view: v }) => {
    const n = v.shape.reduce((p, d) => p * d, 1);
    const cv0 = cv(v.shape);
    // Destination of the copy: the last two axes swapped (transposed) where rank ≥ 2.
    const r = v.shape.length;
    const dst: View = r >= 2
      ? view(
        [...v.shape],
        cv0.strides.map((s, i) => i === r - 1 ? v.shape[r - 2] : i === r - 2 ? 1 : s),
      )
      : cv0;
    return {
      name: `every unary op, mul, where and copy through a ${name} view`,
      inputs: [uniform(len, -3, 3), uniform(len, 0.05, 4), uniform(len), uniform(n), uniform(n)],
      run: (b, [x, pos, y, c, d]) => {
        const outs = UNARY_OPS.map((op) => {
          const [lo] = unaryRange(op);
          return b.unary(op, lo < 0 ? x : pos, v, op === "powScalar" ? 1.7 : 0.5);
        });
        outs.push(b.binary("mul", x, v, y, v), b.where(c, cv0, x, v, y, v));
        b.copy(x, v, d, dst);
        outs.push(d);
        return outs;
      },
      rtol: 4e-6,
      atol: 1e-6,
    };
  });
}

/** Special inputs of the elementwise ops: signs, zeros, subnormals, overflow, NaN. */
function specialCases(): Case[] {
  const x = Float32Array.from([NaN, Infinity, -Infinity, 0, -0, 88, -88, 1, -1]);
  const tiny = Float32Array.from([1e-40, -1e-40, 1e-45, -3e-39, 1.1e-38]);
  const a = Float32Array.from([NaN, 1, 0, -0, Infinity, -2, -2, 0, 2, NaN, -Infinity, 3]);
  const c = Float32Array.from([1, NaN, -0, 0, 1, 3, 0.5, -1, NaN, 0, -Infinity, 3]);
  const bases = Float32Array.from([-3, -2, -1.5, -0.5, -0, 0, 0.5, 1, 2, 3]);
  return [
    {
      name: "every unary op on NaN, ±Inf, ±0, subnormals and ±88",
      inputs: [x],
      run: (b, [s]) => UNARY_OPS.map((op) => b.unary(op, s, cv([x.length]), 1.5)),
      rtol: 4e-6,
      atol: 0,
    },
    {
      name: "every unary op on subnormals",
      inputs: [tiny],
      run: (b, [s]) => UNARY_OPS.map((op) => b.unary(op, s, cv([tiny.length]), 1.5)),
      rtol: 4e-6,
      atol: 0,
      needs: "subnormals",
    },
    {
      name: "every binary op on NaN, ±Inf, ±0 and negative bases",
      inputs: [a, c],
      run: (b, [s, t]) =>
        BINARY_OPS.map((op) => b.binary(op, s, cv([a.length]), t, cv([a.length]))),
      rtol: 4e-6,
      atol: 0,
    },
    {
      name: "powScalar follows Math.pow on signs and special exponents",
      inputs: [bases],
      run: (b, [s]) =>
        [0, 1, 2, 3, -1, 0.5, -0.5, -2, 5, 2.5, 1.7].map((p) =>
          b.unary("powScalar", s, cv([bases.length]), p)
        ),
      rtol: 4e-6,
      atol: 1e-6,
    },
  ];
}

/** Binary ops with either operand broadcast along rows or columns, at an offset. */
function broadcastCases(): Case[] {
  return ODD.map((n) => {
    const shape = [7, n];
    const row = view(shape, [0, 1], 3), col = view(shape, [1, 0], Math.min(2, 7 * n - 7));
    const a = uniform(7 * n, 0.1, 2), c = uniform(7 * n, -2, 2);
    for (let i = 0; i < 7 * n; i += 3) c[i] = a[i]; // equal pairs for eq, ge, max
    return {
      name: `every binary op [7, ${n}] contiguous, row- and column-broadcast`,
      inputs: [a, c],
      run: (b, [x, y]) =>
        BINARY_OPS.flatMap((op) => [
          b.binary(op, x, cv(shape), y, cv(shape)),
          b.binary(op, x, cv(shape), y, row),
          b.binary(op, x, col, y, cv(shape)),
        ]),
      rtol: 4e-6,
      atol: 1e-6,
    };
  });
}

/** Sizes above the WebAssembly thread thresholds (outer rows split, one long row split). */
function largeCases(): Case[] {
  const shape = [600, 257], n = 600 * 257;
  return [{
    name: "large elementwise ops [600, 257] (split between threads)",
    inputs: [uniform(n), uniform(n)],
    run: (b, [x, y]) => [
      b.binary("add", x, cv(shape), y, cv(shape)),
      b.binary("add", x, cv(shape), y, view(shape, [0, 1])),
      b.unary("gelu", x, cv(shape)),
      b.unary("tanh", x, view([257, 600], [1, 257])),
      b.unary("exp", x, cv([n])),
    ],
    rtol: 4e-6,
    atol: 1e-6,
  }];
}

function conversionCases(): Case[] {
  return [
    {
      name: "cast: f32 → i32 at the edges, i32 → f32 past 2^24, f32 → f32",
      inputs: [
        Float32Array.from([0, -0.5, 0.5, 1.99, -1.99, 1e6 + 0.5, -3e7, 7]),
        Int32Array.from([0, -1, 2 ** 31 - 1, -(2 ** 31), 16777217, 5]),
        Int32Array.from({ length: 40 }, (_, i) => (i * 7) % 3 - 1),
      ],
      run: (b, [x, i, c]) => {
        // i32 through a transposed view.
        const d = b.full(40, 0, "i32");
        b.copy(c, view([8, 5], [1, 8]), d, cv([8, 5]));
        return [b.cast(x, "i32"), b.cast(i, "f32"), b.cast(x, "f32"), d];
      },
      rtol: 0,
      atol: 0,
    },
    {
      name: "cast: NaN → i32 is 0",
      inputs: [Float32Array.from([NaN, 1.5, NaN])],
      run: (b, [x]) => [b.cast(x, "i32")],
      rtol: 0,
      atol: 0,
    },
    {
      name: "full of every size; fromHost rounds f64, overflows to Inf, truncates to i32",
      inputs: [],
      run: (b) => [
        ...[0, 1, 5, 1000].flatMap((n) => [b.full(n, -1.25, "f32"), b.full(n, 7, "i32")]),
        b.fromHost(Float64Array.from([1 / 3, -2.5, 1e40, 3]), "f32"),
        b.fromHost(Float32Array.from([1.9, -1.9, 3]), "i32"),
        b.fromHost(new Float32Array(0), "f32"),
      ],
      rtol: 0,
      atol: 0,
    },
  ];
}

function moreRowCases(): Case[] {
  const out: Case[] = [];
  for (
    const [o, s, i] of [[1, 257, 1], [1, 7, 33], [5, 1, 9], [2, 4, 257], [640, 768, 1], [
      1,
      5000,
      1,
    ], [1, 65, 257]]
  ) {
    out.push({
      name: `reduce sum/max/min and argmax [${o}, ${s}, ${i}]`,
      inputs: [uniform(o * s * i)],
      run: (b, [x]) => allReductions(b, x, o, s, i),
      scaled: { rtol: 1e-5, atolScale: 2e-7 * Math.sqrt(s), atol: 1e-6 },
    });
    // Small integers: ties everywhere, the first index wins.
    out.push({
      name: `argmax ties [${o}, ${s}, ${i}]`,
      inputs: [Float32Array.from(uniform(o * s * i), (v) => Math.round(v * 1.5))],
      run: (b, [x]) => [b.argmax(x, o, s, i), b.reduce("max", x, o, s, i)],
      rtol: 0,
      atol: 0,
    });
  }
  for (const cols of [1, 7, 33, 65, 257, 1000]) {
    for (const rows of [1, 3, 70]) {
      out.push({
        name: `softmax, log-softmax and their backward [${rows}, ${cols}]`,
        inputs: [uniform(rows * cols, -8, 8), uniform(rows * cols)],
        run: (b, [x, g]) => {
          const y = b.softmax(x, rows, cols, false), ly = b.softmax(x, rows, cols, true);
          return [
            y,
            ly,
            b.softmaxBackward(y, g, rows, cols, false),
            b.softmaxBackward(ly, g, rows, cols, true),
          ];
        },
        rtol: 1e-4,
        atol: 1e-6,
      });
    }
  }
  const masked = uniform(3 * 33, -6, 6);
  masked.fill(-Infinity, 0, 33); // a fully masked row: NaN
  for (let j = 33; j < 66; j += 4) masked[j] = -Infinity; // a partly masked row
  out.push({
    name: "softmax and log-softmax of rows with −Inf (partly and fully masked)",
    inputs: [masked],
    run: (b, [x]) => [b.softmax(x, 3, 33, false), b.softmax(x, 3, 33, true)],
    rtol: 1e-5,
    atol: 1e-6,
  });
  for (
    const [r, c] of [[3, 257], [65, 7], [1030, 257], [1, 7], [33, 65], [257, 33], [5, 768], [
      130,
      1,
    ]]
  ) {
    out.push({
      name: `layer norm and its backward [${r}, ${c}]`,
      inputs: [uniform(r * c, -3, 5), uniform(c, 0.5, 1.5), uniform(c), uniform(r * c)],
      run: (b, [x, w, bias, g]) => {
        const { y, mean, rstd } = b.layerNorm(x, w, bias, r, c, 1e-5);
        const { gx, gw, gb } = b.layerNormBackward(x, w, mean, rstd, g, r, c);
        return [y, mean, rstd, gx, gw, gb];
      },
      scaled: { rtol: 1e-4, atolScale: 2e-6 * Math.sqrt(r), atol: 1e-6 },
    });
  }
  for (const [r, c] of [[5, 257], [64, 1000]]) {
    out.push({
      name: `cross-entropy and its backward, ignored rows [${r}, ${c}]`,
      inputs: [
        uniform(r * c, -6, 6),
        Int32Array.from({ length: r }, (_, i) => (i % 4 === 3 ? -100 : Math.floor(rand() * c))),
        uniform(r, 0.5, 2),
      ],
      run: (b, [x, t, g]) => {
        const { loss, lse } = b.crossEntropy(x, t, r, c, -100);
        return [loss, lse, b.crossEntropyBackward(x, t, lse, g, r, c, -100)];
      },
      rtol: 2e-5,
      atol: 2e-6,
    });
  }
  for (
    const [vocab, cols, n] of [
      [50, 1, 37],
      [50, 7, 37],
      [50, 33, 37],
      [50, 768, 37],
      [1, 1, 1],
      [
        257,
        33,
        65,
      ],
      [7, 65, 257],
      [33, 7, 1000],
    ]
  ) {
    out.push({
      name: `gather and scatter-add [${vocab}, ${cols}] × ${n} ids`,
      inputs: [
        uniform(vocab * cols),
        Int32Array.from({ length: n }, (_, i) => (i % 5 === 0 ? 0 : Math.floor(rand() * vocab))),
        uniform(n * cols),
      ],
      run: (b, [t, ids, g]) => [b.gather(t, ids, n, cols), b.scatterAdd(g, ids, n, cols, vocab)],
      scaled: { rtol: 1e-6, atolScale: 1e-6, atol: 1e-6 },
    });
  }
  for (const [n, steps] of [[1, 2], [7, 2], [1000, 3], [70001, 2]]) {
    out.push({
      name: `AdamW, ${steps} steps from zero moments, n ${n}`,
      inputs: [
        uniform(n),
        new Float32Array(n),
        new Float32Array(n),
        uniform(n),
        uniform(n),
        uniform(n),
      ],
      run: (b, [p, m, v, ...gs]) => {
        const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
        for (let step = 1; step <= steps; step++) b.adamw(p, gs[step - 1], m, v, { ...hp, step });
        return [p, m, v];
      },
      rtol: 1e-5,
      atol: 1e-6,
    });
  }
  // matmul: every transpose, A with padding between batches, offsets, B shared.
  for (
    const [batch, m, n, k] of [[1, 7, 33, 65], [2, 65, 7, 33], [3, 33, 65, 7], [1, 257, 33, 65], [
      1,
      64,
      64,
      64,
    ], [2, 1, 257, 33]]
  ) {
    for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]]) {
      const aBatchStride = m * k + 2;
      out.push({
        name: `matmul b${batch} ${m}×${n}×${k} transA ${transA} transB ${transB}, padded batches`,
        inputs: [uniform(3 + batch * aBatchStride), uniform(1 + k * n)],
        run: (b, [x, y]) => [b.matmul(x, y, {
          batch,
          m,
          n,
          k,
          transA,
          transB,
          aBatchStride,
          bBatchStride: 0,
          aOffset: 3,
          bOffset: 1,
        })],
        scaled: { rtol: 1e-5, atolScale: 1e-6 * Math.sqrt(k), atol: 1e-6 },
      });
    }
  }
  return out;
}

/**
 * The row ops beyond the odd sizes of {@link rowCases}: NaN and ±Inf in every op's inputs,
 * targets at the first and last column and ignored rows, GPT-2's vocabulary width, inputs that
 * are longer than rows × cols (only the first rows are read), and empty rows or columns. (Row
 * ops read contiguous buffers: the core makes strided views contiguous before calling them.)
 */
function rowEdgeCases(): Case[] {
  const out: Case[] = [];
  const [r, c] = [7, 33];
  out.push({
    name: "softmax and log-softmax backward with NaN and ±Inf in y and the gradient",
    inputs: [withSpecials(r * c, -3, 3), withSpecials(r * c)],
    run: (b, [x, g]) => {
      const y = b.softmax(x, r, c, false), ly = b.softmax(x, r, c, true);
      return [b.softmaxBackward(y, g, r, c, false), b.softmaxBackward(ly, g, r, c, true)];
    },
    rtol: 1e-4,
    atol: 1e-6,
  });
  out.push({
    name: "layer norm and its backward with NaN and ±Inf in x and the gradient",
    inputs: [withSpecials(r * c), uniform(c, 0.5, 1.5), uniform(c), withSpecials(r * c)],
    run: (b, [x, w, bias, g]) => {
      const { y, mean, rstd } = b.layerNorm(x, w, bias, r, c, 1e-5);
      const { gx, gw, gb } = b.layerNormBackward(x, w, mean, rstd, g, r, c);
      return [y, mean, rstd, gx, gw, gb];
    },
    rtol: 1e-4,
    atol: 1e-5,
  });
  // Rows 0..6 with NaN/±Inf at every 7th element; targets at both ends of the row, ignored rows.
  const targets = Int32Array.from({ length: r }, (_, i) => [0, c - 1, -100, 5, c - 1, 0, -100][i]);
  out.push({
    name: "cross-entropy and its backward with NaN and ±Inf logits, first and last targets",
    inputs: [withSpecials(r * c, -6, 6), targets, uniform(r, 0.5, 2)],
    run: (b, [x, t, g]) => {
      const { loss, lse } = b.crossEntropy(x, t, r, c, -100);
      return [loss, lse, b.crossEntropyBackward(x, t, lse, g, r, c, -100)];
    },
    rtol: 1e-5,
    atol: 1e-6,
  });
  const V = 50257;
  out.push({
    name: `cross-entropy and its backward [3, ${V}] (GPT-2's vocabulary)`,
    inputs: [uniform(3 * V, -8, 8), Int32Array.from([0, V - 1, -100]), uniform(3, 0.5, 2)],
    run: (b, [x, t, g]) => {
      const { loss, lse } = b.crossEntropy(x, t, 3, V, -100);
      return [loss, lse, b.crossEntropyBackward(x, t, lse, g, 3, V, -100)];
    },
    rtol: 1e-5,
    atol: 1e-6,
  });
  // Buffers one row longer (and odd-sized) than the call's rows × cols.
  out.push({
    name: "row ops read only rows × cols of longer buffers",
    inputs: [
      uniform(6 * 65 + 3),
      uniform(6 * 65 + 3),
      uniform(66),
      uniform(66),
      Int32Array.from([3, 64, -100, 0, 7, 9, 11]),
      uniform(7),
    ],
    run: (b, [x, g, w, bias, t, gl]) => {
      const [rows, cols] = [5, 65];
      const y = b.softmax(x, rows, cols, false);
      const { y: ln, mean, rstd } = b.layerNorm(x, w, bias, rows, cols, 1e-5);
      const { gx, gw, gb } = b.layerNormBackward(x, w, mean, rstd, g, rows, cols);
      const { loss, lse } = b.crossEntropy(x, t, rows, cols, -100);
      return [
        y,
        b.softmaxBackward(y, g, rows, cols, false),
        ln,
        mean,
        rstd,
        gx,
        gw,
        gb,
        loss,
        lse,
        b.crossEntropyBackward(x, t, lse, gl, rows, cols, -100),
      ];
    },
    rtol: 1e-4,
    atol: 1e-5,
  });
  out.push({
    name: "row ops on empty tensors (no rows, or no columns)",
    inputs: [new Float32Array(0), new Int32Array(0), uniform(5)],
    run: (b, [x, ids, five]) => {
      const { y, mean, rstd } = b.layerNorm(x, five, five, 0, 5, 1e-5);
      // No rows: the weight and bias gradients are zeros.
      const { gx, gw, gb } = b.layerNormBackward(x, five, x, x, x, 0, 5);
      const { loss, lse } = b.crossEntropy(x, ids, 0, 5, -100);
      return [
        b.softmax(x, 3, 0, false),
        b.softmax(x, 0, 5, true),
        b.softmaxBackward(x, x, 0, 5, false),
        b.softmaxBackward(x, x, 3, 0, true),
        y,
        mean,
        rstd,
        gx,
        gw,
        gb,
        loss,
        lse,
        b.crossEntropyBackward(x, ids, x, x, 0, 5, -100),
      ];
    },
    rtol: 0,
    atol: 0,
  });
  out.push({
    // Rows of no columns still have row values: a mean of nothing is NaN, and the log-sum-exp
    // of nothing is −∞ (every target must then be the ignored one).
    name: "row values of rows with no columns (layer norm's mean and rstd, cross-entropy's lse)",
    inputs: [new Float32Array(0), new Int32Array([-100, -100, -100])],
    run: (b, [x, ids]) => {
      const { y, mean, rstd } = b.layerNorm(x, x, x, 3, 0, 1e-5);
      const { loss, lse } = b.crossEntropy(x, ids, 3, 0, -100);
      return [y, mean, rstd, loss, lse, b.crossEntropyBackward(x, ids, lse, loss, 3, 0, -100)];
    },
    rtol: 0,
    atol: 0,
  });
  return out;
}

/** Seeded random odd shapes (the same every run): broadcast binary, sum, softmax, matmul. */
function randomShapeCases(): Case[] {
  const out: Case[] = [];
  const pick = () => ODD[Math.floor(rand() * ODD.length)];
  for (let trial = 0; trial < 12; trial++) {
    let shape = [pick(), pick(), pick()];
    while (shape[0] * shape[1] * shape[2] > 70000) shape = [pick(), pick(), 1];
    const [d0, d1, d2] = shape, n = d0 * d1 * d2;
    const axis = Math.floor(rand() * 3);
    const bShape = shape.map((d, i) => (i === axis ? 1 : d));
    const bStrides = contiguousStrides(bShape).map((s, i) => (i === axis ? 0 : s));
    const op = BINARY_OPS[Math.floor(rand() * BINARY_OPS.length)];
    const mp = {
      batch: d0 > 33 ? 1 : d0,
      m: d1,
      n: pick(),
      k: d2,
      transA: rand() > 0.5,
      transB: rand() > 0.5,
      aBatchStride: d1 * d2,
      bBatchStride: 0,
    };
    out.push({
      name: `random shapes ${trial}: ${op} [${shape}] broadcast on axis ${axis}, sum, softmax, ` +
        `matmul ${JSON.stringify(mp)}`,
      inputs: [uniform(n, 0.1, 2), uniform(n / shape[axis], 0.1, 2), uniform(mp.k * mp.n)],
      run: (b, [x, y, w]) => [
        b.binary(op, x, cv(shape), y, view(shape, bStrides)),
        b.reduce("sum", x, d0, d1, d2),
        b.softmax(x, d0 * d1, d2, trial % 2 === 0),
        b.matmul(x, w, mp),
      ],
      scaled: { rtol: 2e-5, atolScale: 2e-6 * Math.sqrt(Math.max(d1, mp.k)), atol: 1e-6 },
    });
  }
  return out;
}

/** Fused attention shapes: odd sizes, past keys, several key and query chunks, big heads. */
interface AttentionShape {
  name: string;
  B: number;
  H: number;
  T: number;
  S: number;
  D: number;
  /** Padding mask [B][S] (1 attend, 0 masked). */
  mask?: number[][];
  drop?: number;
  /** Rows with nothing visible the case must contain. */
  fullRows?: number;
}

/** A mask [B, S] with the first `pad[b]` keys of batch b masked (left padding). */
const leftPad = (S: number, pad: number[]) =>
  pad.map((n) => Array.from({ length: S }, (_, j) => (j < n ? 0 : 1)));

const ATTENTION: AttentionShape[] = [
  { name: "T = S = d = 1", B: 1, H: 1, T: 1, S: 1, D: 1 },
  { name: "self T = S = 7, d 33, 3 heads", B: 2, H: 3, T: 7, S: 7, D: 33 },
  { name: "past keys, T 33, S 65, d 7", B: 1, H: 2, T: 33, S: 65, D: 7 },
  { name: "past keys, T 7, S 33, d 65", B: 1, H: 2, T: 7, S: 33, D: 65 },
  { name: "65 × 65 (two key and query chunks), d 7", B: 1, H: 1, T: 65, S: 65, D: 7 },
  { name: "65 heads, one query, d 65", B: 2, H: 65, T: 1, S: 7, D: 65 },
  { name: "65 heads, T 2, S 4, d 3", B: 1, H: 65, T: 2, S: 4, D: 3 },
  {
    // S − T = 5: query 0 sees keys 0..5, all padding in batch 0, so its row attends uniformly.
    name: "padding: fully masked rows, d 65",
    B: 2,
    H: 2,
    T: 7,
    S: 12,
    D: 65,
    mask: leftPad(12, [6, 2]),
    fullRows: 2,
  },
  {
    name: "padding: fully masked rows, dropout 0.25",
    B: 2,
    H: 2,
    T: 5,
    S: 9,
    D: 16,
    mask: [[0, 0, 0, 0, 0, 0, 1, 1, 1], [1, 1, 0, 1, 1, 1, 1, 1, 1]],
    drop: 0.25,
    fullRows: 4,
  },
  {
    name: "padding + holes + dropout 0.3, d 33",
    B: 2,
    H: 3,
    T: 33,
    S: 33,
    D: 33,
    mask: [
      Array.from({ length: 33 }, (_, j) => (j < 3 || j % 5 === 0 ? 0 : 1)),
      Array.from({ length: 33 }, (_, j) => (j === 32 ? 0 : 1)),
    ],
    drop: 0.3,
    fullRows: 9,
  },
  { name: "dropout 0.5, past keys, d 4", B: 3, H: 1, T: 7, S: 33, D: 4, drop: 0.5 },
  { name: "dropout 0.5, 130 keys (3 chunks)", B: 1, H: 2, T: 3, S: 130, D: 16, drop: 0.5 },
  {
    name: "everything masked + dropout",
    B: 1,
    H: 2,
    T: 3,
    S: 7,
    D: 7,
    mask: [[0, 0, 0, 0, 0, 0, 0]],
    drop: 0.2,
    fullRows: 6,
  },
  {
    name: "everything masked, dropout 0.3, d 5",
    B: 1,
    H: 2,
    T: 2,
    S: 3,
    D: 5,
    mask: [[0, 0, 0]],
    drop: 0.3,
    fullRows: 4,
  },
  {
    name: "GPT-2 prefix shape, d 64",
    B: 2,
    H: 2,
    T: 64,
    S: 69,
    D: 64,
    mask: leftPad(69, [0, 9]),
    drop: 0.1,
    fullRows: 8,
  },
  { name: "S 2048 (past keys), d 64", B: 1, H: 1, T: 2, S: 2048, D: 64 },
  {
    name: "d 256, mask, dropout 0.1",
    B: 1,
    H: 1,
    T: 3,
    S: 5,
    D: 256,
    mask: [[1, 1, 1, 1, 0]],
    drop: 0.1,
  },
  { name: "d 1024, dropout 0.2", B: 1, H: 1, T: 3, S: 5, D: 1024, drop: 0.2 },
  { name: "d 2048, mask", B: 1, H: 1, T: 2, S: 3, D: 2048, mask: [[1, 0, 1]] },
];

function attentionParamsOf(c: AttentionShape): AttentionParams {
  return {
    batch: c.B,
    heads: c.H,
    queries: c.T,
    keys: c.S,
    dim: c.D,
    scale: 1 / Math.sqrt(c.D),
    dropP: c.drop ?? 0,
    dropSeed: 0x9e3779b9 ^ (c.D * 7919),
  };
}

function attentionCases(): Case[] {
  return ATTENTION.map((c) => {
    const p = attentionParamsOf(c);
    return {
      name: `attention and its backward: ${c.name}`,
      inputs: [
        uniform(c.B * c.H * c.T * c.D),
        uniform(c.B * c.H * c.S * c.D),
        uniform(c.B * c.H * c.S * c.D, -1, 1),
        uniform(c.B * c.H * c.T * c.D, -1, 1),
        Float32Array.from(c.mask?.flat() ?? []),
      ],
      run: (b, [q, k, v, g, m]) => {
        const mask = c.mask ? m : null;
        const { out, lse } = b.attention(q, k, v, mask, p);
        const { gq, gk, gv } = b.attentionBackward(q, k, v, mask, out, lse, g, p);
        return [out, lse, gq, gk, gv];
      },
      // Rows with nothing visible carry the lse marker exactly.
      scaled: { atolScale: 1e-5, atol: 1e-6, exactBelow: ATTENTION_FULLY_MASKED_LSE },
    };
  });
}

/** Views the core makes contiguous before it reduces (taken from {@link STRIDED}). */
const REDUCE_VIEWS = STRIDED.filter((v) =>
  ["transpose 2-D", "3-D permute", "broadcast middle", "4-D slice", "negative stride"].includes(
    v.name,
  )
);

/**
 * Sum, max and argmax through the core (`Tensor.sum`, `max`, `argmax`) of a strided view, over
 * each axis and over all axes: the core copies the view to a contiguous buffer, then reduces.
 */
async function coreReductions(b: Backend, host: Float32Array, v: View): Promise<Host[]> {
  const base = Tensor.fromStorage(b.fromHost(host, "f32"), [host.length]);
  const x = base.viewAs(v);
  const outs: Tensor[] = [];
  for (let a = 0; a < v.shape.length; a++) outs.push(x.sum(a), x.max(a), x.argmax(a));
  outs.push(x.sum(), x.max());
  const res: Host[] = [];
  for (const t of outs) res.push((await t.data()) as Host);
  for (const t of [base, x, ...outs]) t.dispose();
  return res;
}

const CASES = [
  ...elementwiseCases(),
  ...stridedCases(),
  ...specialCases(),
  ...broadcastCases(),
  ...largeCases(),
  ...conversionCases(),
  ...rowCases(),
  ...moreRowCases(),
  ...rowEdgeCases(),
  ...randomShapeCases(),
  ...attentionCases(),
  ...emptyCases(),
  ...reduceSpecialCases(),
];

async function runCase(b: Backend, c: Case): Promise<Host[]> {
  const xs = c.inputs.map((x) => b.fromHost(x, x instanceof Int32Array ? "i32" : "f32"));
  const outs = c.run(b, xs);
  const res: Host[] = [];
  for (const s of outs) res.push((await b.read(s)) as Host);
  for (const s of new Set([...xs, ...outs])) b.dispose(s);
  return res;
}

/** Calls each backend must reject, and the message naming the fault. */
function errorCases(b: Backend): [string, () => unknown, RegExp][] {
  const x = b.fromHost(new Float32Array(6), "f32");
  const ids = b.fromHost(Int32Array.from([0, 5]), "i32");
  const q8 = b.fromHost(new Float32Array(8), "f32");
  const n = b.name;
  const att = { batch: 1, heads: 1, queries: 2, keys: 3, dim: 4, scale: 1, dropP: 0, dropSeed: 0 };
  const mask2 = b.fromHost(new Float32Array(2), "f32");
  const k12 = b.fromHost(new Float32Array(12), "f32");
  const foreign = otherBackend.fromHost(new Float32Array(4), "f32");
  return [
    [
      "view past the end",
      () => b.unary("exp", x, cv([7])),
      new RegExp(
        `${n} exp: a view \\(shape \\[7\\], strides \\[1\\], offset 0\\) reaches elements 0\\.\\.6 of a buffer of 6`,
      ),
    ],
    [
      "i32 operand of a float op",
      () => b.binary("add", ids, cv([2]), x, cv([2])),
      new RegExp(`${n} add: a must be f32, got i32`),
    ],
    [
      "shapes that differ",
      () => b.binary("add", x, cv([2, 3]), x, cv([3, 2])),
      /add: operand b has shape \[3,2\], expected \[2,3\]/,
    ],
    [
      "matmul B too small",
      () =>
        b.matmul(x, x, {
          batch: 1,
          m: 2,
          n: 2,
          k: 3,
          transA: false,
          transB: false,
          aBatchStride: 0,
          bBatchStride: 0,
          bOffset: 1,
        }),
      new RegExp(`${n} matmul: b \\(batch 1, k 3, n 2\\) has 6 elements, needs 7`),
    ],
    [
      "softmax rows",
      () => b.softmax(x, 2, 4, false),
      new RegExp(`${n} softmax: x \\[2, 4\\] has 6 elements, needs 8`),
    ],
    [
      "non-integer size",
      () => b.reduce("sum", x, 1.5, 2, 1),
      /reduce\.sum: outer must be a non-negative integer, got 1\.5/,
    ],
    [
      "attention k too small",
      () => b.attention(q8, x, x, null, att),
      new RegExp(`${n} attention: k \\[1, 1, 3, 4\\] has 6 elements, needs 12`),
    ],
    [
      "attention S < T",
      () => b.attention(x, x, x, null, { ...att, keys: 1 }),
      /needs keys S ≥ queries T, got S 1, T 2/,
    ],
    [
      "cross-entropy f32 targets",
      () => b.crossEntropy(x, x, 2, 3, -100),
      /crossEntropy: targets \[2\] must be i32, got f32/,
    ],
    [
      "AdamW aliasing",
      () =>
        b.adamw(x, x, x, x, { lr: 1, beta1: 0.9, beta2: 0.9, eps: 1e-8, weightDecay: 0, step: 1 }),
      /adamw: param, grad, m and v must differ/,
    ],
    [
      "copy across dtypes",
      () => b.copy(ids, cv([2]), x, cv([2])),
      /copy: from i32 to f32 \(use cast\)/,
    ],
    [
      "attention mask too small",
      () => b.attention(q8, k12, k12, mask2, att),
      new RegExp(`${n} attention: mask \\[1, 3\\] has 2 elements, needs 3`),
    ],
    [
      "attention non-integer dim",
      () => b.attention(q8, q8, q8, null, { ...att, keys: 2, dim: 1.5 }),
      /attention: dim must be a non-negative integer, got 1\.5/,
    ],
    [
      "a buffer of another backend",
      () => b.unary("exp", foreign, cv([4])),
      /belongs to backend '\w+'/,
    ],
  ];
}

/** A backend no buffer of the suite's backends belongs to. */
const otherBackend = new CpuBackend();

/** Matmul shapes checked against a float64 triple loop within the f32 summation bound. */
function matmulBoundShapes(): MatmulParams[] {
  const out: MatmulParams[] = [];
  const flags = [[false, false], [true, false], [false, true], [true, true]];
  for (const m of ODD) {
    for (const n of ODD) {
      for (const k of [1, 7, 65, 257, 300, 777]) {
        if (m * n * k > 257 * 65 * 300) continue;
        for (const [transA, transB] of flags) {
          out.push({ batch: 1, m, n, k, transA, transB, aBatchStride: 0, bBatchStride: 0 });
        }
      }
    }
  }
  // Few rows (the small-m kernels), batched with an offset and a gap between A's.
  for (const m of [1, 2, 3, 4]) {
    for (const n of [1, 7, 8, 9, 33, 257]) {
      for (const k of [1, 3, 4, 5, 65]) {
        for (const transB of [false, true]) {
          out.push({
            batch: 2,
            m,
            n,
            k,
            transA: false,
            transB,
            aBatchStride: m * k + 1,
            bBatchStride: k * n,
            aOffset: 1,
          });
        }
      }
    }
  }
  const mm = (p: Partial<MatmulParams>) => ({
    batch: 1,
    m: 1,
    n: 1,
    k: 1,
    transA: false,
    transB: false,
    aBatchStride: 0,
    bBatchStride: 0,
    ...p,
  });
  out.push(
    // One row against a wide B (the columns split between threads).
    mm({ n: 30011, k: 700, transB: true }),
    // Separate A and B per batch, with offsets.
    mm({
      batch: 5,
      m: 7,
      n: 33,
      k: 65,
      aBatchStride: 7 * 65,
      bBatchStride: 65 * 33 + 3,
      aOffset: 2,
      bOffset: 1,
    }),
    // One B for every batch, A transposed.
    mm({ batch: 4, m: 33, n: 9, k: 17, transA: true, aBatchStride: 33 * 17 }),
    // One A for every batch, B transposed (attention-like).
    mm({ batch: 12, m: 20, n: 20, k: 64, transB: true, bBatchStride: 20 * 64 }),
    // More batches than twice the threads: split over batches.
    mm({
      batch: 24,
      m: 64,
      n: 64,
      k: 64,
      transB: true,
      aBatchStride: 64 * 64,
      bBatchStride: 64 * 64,
    }),
    mm({ batch: 3, n: 257, k: 7, aBatchStride: 7, bBatchStride: 7 * 257 }),
    // Large enough for the blocked kernels.
    mm({ m: 300, n: 1100, k: 600, transB: true }),
  );
  return out;
}

/** A matmul input and its float64 product and magnitudes, computed once for every backend. */
interface MatmulBound {
  p: MatmulParams;
  a: Float32Array;
  b: Float32Array;
  want: Float64Array;
  mag: Float64Array;
}

/** Float64 triple loop over the index formulas of {@link MatmulParams}, independent of any backend. */
function naiveMatmul(A: Float32Array, B: Float32Array, p: MatmulParams): MatmulBound {
  const { batch, m, n, k } = p;
  const want = new Float64Array(batch * m * n), mag = new Float64Array(batch * m * n);
  for (let t = 0; t < batch; t++) {
    const ao = (p.aOffset ?? 0) + t * p.aBatchStride, bo = (p.bOffset ?? 0) + t * p.bBatchStride;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0, g = 0;
        for (let l = 0; l < k; l++) {
          const x = p.transA ? A[ao + l * m + i] : A[ao + i * k + l];
          const y = p.transB ? B[bo + j * k + l] : B[bo + l * n + j];
          s += x * y;
          g += Math.abs(x * y);
        }
        want[(t * m + i) * n + j] = s;
        mag[(t * m + i) * n + j] = g;
      }
    }
  }
  return { p, a: A, b: B, want, mag };
}

let matmulBounds: MatmulBound[] | null = null;
function matmulBoundCases(): MatmulBound[] {
  matmulBounds ??= matmulBoundShapes().map((p) => {
    const aLen = (p.aOffset ?? 0) + (p.batch - 1) * p.aBatchStride + p.m * p.k;
    const bLen = (p.bOffset ?? 0) + (p.batch - 1) * p.bBatchStride + p.k * p.n;
    return naiveMatmul(uniform(aLen), uniform(bLen), p);
  });
  return matmulBounds;
}

/** Forward and backward of one attention shape: [out, lse, gq, gk, gv] and the dropout mask. */
async function attentionOnce(b: Backend, c: AttentionShape, host: Float32Array[]) {
  const p = attentionParamsOf(c);
  const [q, k, v, g] = host.map((h) => b.fromHost(h, "f32"));
  const m = c.mask ? b.fromHost(Float32Array.from(c.mask.flat()), "f32") : null;
  const { out, lse } = b.attention(q, k, v, m, p);
  const { gq, gk, gv } = b.attentionBackward(q, k, v, m, out, lse, g, p);
  const res: Float32Array[] = [];
  for (const s of [out, lse, gq, gk, gv]) res.push((await b.read(s)) as Float32Array);
  for (const s of [q, k, v, g, out, lse, gq, gk, gv, ...(m ? [m] : [])]) b.dispose(s);
  return res;
}

Deno.test("the attention cases contain the rows with nothing visible they claim", async () => {
  const marker = Math.fround(ATTENTION_MASK_VALUE);
  for (const c of ATTENTION) {
    const host = [c.T, c.S, c.S, c.T].map((r) => uniform(c.B * c.H * r * c.D));
    const [, lse] = await attentionOnce(referenceFor("wasm"), c, host);
    assert.equal(lse.filter((l) => l === marker).length, c.fullRows ?? 0, c.name);
  }
});

for (const variant of BACKEND_VARIANTS) {
  const made = await variant.make();
  const ignore = typeof made === "string";
  if (ignore) console.log(`conformance: ${variant.label} skipped: ${made}`);
  const b = ignore ? null : made;
  const ref = referenceFor(variant.label);
  const minAtol = variant.minAtol ?? 0;

  Deno.test(
    `${variant.label}: every primitive matches the reference (odd sizes, views, NaN/Inf, empty)`,
    { ...opts, ignore },
    async () => {
      // Every case runs; the failures are reported together.
      const failures: string[] = [];
      for (const c of CASES) {
        if (c.needs && variant.differs?.[c.needs]) continue;
        const want = await runCase(ref, c);
        const got = await runCase(b!, c);
        assert.equal(got.length, want.length);
        got.forEach((g, i) => {
          const what = `${variant.label} ${c.name}: output ${i}`;
          try {
            if (c.scaled) {
              assertCloseScaled(g, want[i], what, {
                ...c.scaled,
                atol: Math.max(c.scaled.atol ?? 0, minAtol),
              });
            } else {
              assertClose(g, want[i], what, c.rtol, Math.max(c.atol ?? 1e-6, minAtol));
            }
          } catch (e) {
            failures.push((e as Error).message.split("\n")[0]);
          }
        });
      }
      assert.equal(failures.length, 0, `${failures.length} mismatches:\n${failures.join("\n")}`);
    },
  );

  Deno.test(
    `${variant.label}: sum, max and argmax of strided views through the core`,
    { ...opts, ignore },
    async () => {
      for (const { name, len, view: v } of REDUCE_VIEWS) {
        for (const specials of [false, true]) {
          const host = specials ? withSpecials(len) : uniform(len);
          const want = await coreReductions(ref, host, v);
          const got = await coreReductions(b!, host, v);
          assert.equal(got.length, want.length);
          got.forEach((g, i) =>
            assertClose(
              g,
              want[i],
              `${variant.label} ${name} view${specials ? " with NaN/±Inf" : ""}: output ${i}`,
              1e-5,
              Math.max(1e-5, minAtol),
            )
          );
        }
      }
    },
  );

  Deno.test(
    `${variant.label}: matmul within the f32 summation bound of a float64 product`,
    { ...opts, ignore },
    async () => {
      // Queued in groups before reading, so an asynchronous backend works while results are read.
      const all = matmulBoundCases();
      for (let g = 0; g < all.length; g += 64) {
        const group = all.slice(g, g + 64).map((m) => {
          const x = b!.fromHost(m.a, "f32"), y = b!.fromHost(m.b, "f32");
          return { m, bufs: [x, y, b!.matmul(x, y, m.p)] };
        });
        for (const { m: { p, want, mag }, bufs } of group) {
          const got = await b!.read(bufs[2]);
          for (const s of bufs) b!.dispose(s);
          assertWithinSumBound(got, want, mag, p.k, `${variant.label} matmul ${JSON.stringify(p)}`);
        }
      }
    },
  );

  Deno.test(
    `${variant.label}: dropout masks equal hashUniform bit for bit`,
    { ...opts, ignore },
    async () => {
      for (const p of [0, 0.1, 0.5, 0.9, 1, 1 / 3]) {
        for (
          const [seed, n] of [[0, 50003], [1, 1], [12345, 4097], [-7, 50003], [2 ** 31 + 5, 257]]
        ) {
          const m = b!.dropoutMask(n, p, seed);
          const got = await b!.read(m);
          b!.dispose(m);
          const keep = Math.fround(1 / (1 - p));
          for (let i = 0; i < n; i++) {
            const want = hashUniform(seed, i) >= p ? keep : 0;
            if (got[i] !== want) assert.fail(`p ${p} seed ${seed} [${i}]: ${got[i]}, want ${want}`);
          }
        }
      }
    },
  );

  Deno.test(
    `${variant.label}: attention dropout drops exactly the dropoutMask pattern`,
    { ...opts, ignore },
    async () => {
      // With v = identity rows (S = d) each output row is its dropped probability row, so out is
      // 0 exactly where the key is causally hidden or the backend's own dropoutMask is 0.
      const B = 1, H = 2, T = 5, S = 8, D = 8;
      const p: AttentionParams = {
        batch: B,
        heads: H,
        queries: T,
        keys: S,
        dim: D,
        scale: 0.5,
        dropP: 0.4,
        dropSeed: 77,
      };
      const eye = new Float32Array(B * H * S * D);
      for (let h = 0; h < B * H; h++) for (let j = 0; j < S; j++) eye[h * S * D + j * D + j] = 1;
      const q = b!.fromHost(uniform(B * H * T * D), "f32");
      const k = b!.fromHost(uniform(B * H * S * D), "f32");
      const v = b!.fromHost(eye, "f32");
      const { out, lse } = b!.attention(q, k, v, null, p);
      const mask = b!.dropoutMask(B * H * T * S, p.dropP, p.dropSeed);
      const o = await b!.read(out), m = await b!.read(mask);
      for (let r = 0; r < B * H * T; r++) {
        const last = S - T + (r % T);
        for (let j = 0; j < S; j++) {
          const zero = j > last || m[r * S + j] === 0;
          assert.equal(o[r * D + j] === 0, zero, `out[${r}, ${j}] = ${o[r * D + j]}`);
        }
      }
      for (const s of [q, k, v, out, lse, mask]) b!.dispose(s);
    },
  );

  Deno.test(
    `${variant.label}: attention forward and backward are deterministic (bitwise)`,
    { ...opts, ignore },
    async () => {
      for (const c of ATTENTION.filter((c) => c.drop)) {
        const host = [c.T, c.S, c.S, c.T].map((r) => uniform(c.B * c.H * r * c.D));
        const one = await attentionOnce(b!, c, host), two = await attentionOnce(b!, c, host);
        one.forEach((a, i) => assert.deepEqual(two[i], a, `${c.name}: output ${i}`));
      }
    },
  );

  Deno.test(
    `${variant.label}: argument errors name the op and operand`,
    { ...opts, ignore },
    () => {
      for (const [what, call, msg] of errorCases(b!)) assert.throws(call, msg, what);
    },
  );

  Deno.test(
    `${variant.label}: liveCount is exact, dispose idempotent, use after dispose an error`,
    { ...opts, ignore },
    () => {
      const before = b!.liveCount();
      const s = b!.fromHost(new Float32Array(10), "f32");
      assert.equal(b!.liveCount(), before + 1);
      b!.dispose(s);
      b!.dispose(s);
      assert.equal(b!.liveCount(), before);
      // The reference backend empties a disposed buffer, so its view check names it.
      assert.throws(() => b!.unary("exp", s, cv([10])), /disposed|of a buffer of 0$/);
    },
  );

  Deno.test(`${variant.label}: no buffer outlives its case`, { ...opts, ignore }, async () => {
    const before = b!.liveCount();
    for (const c of CASES.slice(0, 40)) await runCase(b!, c);
    assert.equal(b!.liveCount(), before);
  });
}
