/**
 * Parity of every primitive of the wasm backend against the CPU reference backend (and, for
 * matmul and dropout, against independent implementations written here), on odd sizes, strided
 * views, transposed/batched/broadcast matmuls, both memory modes and 1 or 2 threads.
 */
import assert from "node:assert/strict";
import {
  type Backend,
  type BinaryOp,
  contiguousView,
  hashUniform,
  type Storage,
  type UnaryOp,
  type View,
} from "../kernels/backend.ts";
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { createWasmBackend, type WasmBackend } from "../kernels/wasm/backend.ts";
import { assertClose } from "./helpers/close.ts";

const cpu = new CpuBackend();
// 64-bit memory with two threads (the default configuration here); 32-bit memory, one thread and
// no relaxed SIMD (the fallbacks: plain mul+add in matmul and polynomials).
const w64 = await createWasmBackend({ threads: 2, blas: false });
const w32 = await createWasmBackend({
  threads: 1,
  memory64: false,
  relaxedSimd: false,
  blas: false,
});
const BACKENDS: [string, WasmBackend][] = [["wasm64×2", w64], ["wasm32×1", w32]];

let seed = 987654321;
function rand(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
function randn(n: number, lo = -2, hi = 2): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * rand());
}

async function readAll(b: Backend, ...ss: Storage[]): Promise<(Float32Array | Int32Array)[]> {
  const out = [];
  for (const s of ss) out.push(await b.read(s));
  return out;
}

/** Runs `f` on the CPU and on wasm backend `w` with the same host inputs; compares outputs. */
async function parity(
  w: Backend,
  inputs: { data: Float32Array | Int32Array; dtype: "f32" | "i32" }[],
  f: (b: Backend, xs: Storage[]) => Storage | Storage[],
  what: string,
  rtol = 1e-5,
  atol = 1e-6,
): Promise<void> {
  const xc = inputs.map((x) => cpu.fromHost(x.data, x.dtype));
  const xw = inputs.map((x) => w.fromHost(x.data, x.dtype));
  const rc = [f(cpu, xc)].flat();
  const rw = [f(w, xw)].flat();
  const want = await readAll(cpu, ...rc);
  const got = await readAll(w, ...rw);
  for (let i = 0; i < want.length; i++) {
    assertClose(
      got[i],
      want[i],
      `${what} (${w.name}${(w as WasmBackend).memory64 ? "64" : "32"}) output ${i}`,
      rtol,
      atol,
    );
  }
  for (const s of [...xw, ...rw]) w.dispose(s);
  for (const s of [...xc, ...rc]) cpu.dispose(s);
}

const f32 = (data: Float32Array) => ({ data, dtype: "f32" as const });
const i32 = (data: Int32Array) => ({ data, dtype: "i32" as const });
const SIZES = [1, 7, 33, 65, 257];

const UNARY: [UnaryOp, number, [number, number], number?][] = [
  ["neg", 0, [-2, 2]],
  ["exp", 0, [-10, 10]],
  ["log", 0, [0.001, 100]],
  ["sqrt", 0, [0, 100]],
  ["tanh", 0, [-5, 5]],
  ["relu", 0, [-2, 2]],
  ["gelu", 0, [-5, 5]],
  ["geluGrad", 0, [-5, 5]],
  ["abs", 0, [-2, 2]],
  ["sign", 0, [-2, 2]],
  ["step", 0, [-2, 2]],
  ["recip", 0, [0.1, 3]],
  ["powScalar", 1.7, [0.01, 3]],
  ["powScalar", 2, [-3, 3]],
  ["powScalar", 3, [-3, 3]],
  ["powScalar", 0.5, [0, 3]],
  ["powScalar", -1, [0.1, 3]],
  ["powScalar", -0.5, [0.1, 3]],
  ["powScalar", 0, [-3, 3]],
  ["powScalar", -2, [-3, 3]],
  ["addScalar", 0.25, [-2, 2]],
  ["mulScalar", -1.5, [-2, 2]],
];

Deno.test("wasm parity: unary ops on contiguous rows of odd sizes", async () => {
  for (const [, w] of BACKENDS) {
    for (const [op, param, [lo, hi]] of UNARY) {
      for (const n of SIZES) {
        const x = randn(n, lo, hi);
        // geluGrad crosses zero: absolute tolerance relative to its O(1) terms.
        const atol = op === "geluGrad" ? 2e-7 : 1e-6;
        await parity(
          w,
          [f32(x)],
          (b, [s]) => b.unary(op, s, contiguousView([n]), param),
          `${op}(${param}) n=${n}`,
          4e-6,
          atol,
        );
      }
    }
  }
});

Deno.test("wasm parity: unary special values (NaN, ±Inf, ±0)", async () => {
  const x = Float32Array.from([NaN, Infinity, -Infinity, 0, -0, 1e-40, -1e-40, 88, -88]);
  for (
    const op of [
      "neg",
      "exp",
      "log",
      "sqrt",
      "tanh",
      "relu",
      "abs",
      "sign",
      "step",
      "recip",
    ] as const
  ) {
    await parity(
      w64,
      [f32(x)],
      (b, [s]) => b.unary(op, s, contiguousView([x.length])),
      `${op} specials`,
      1e-6,
      0,
    );
  }
});

const BINARY: [BinaryOp, [number, number], [number, number]][] = [
  ["add", [-2, 2], [-2, 2]],
  ["sub", [-2, 2], [-2, 2]],
  ["mul", [-2, 2], [-2, 2]],
  ["div", [-2, 2], [0.5, 2]],
  ["max", [-2, 2], [-2, 2]],
  ["min", [-2, 2], [-2, 2]],
  ["pow", [0.1, 3], [-2, 2]],
  ["gt", [-2, 2], [-2, 2]],
  ["ge", [-2, 2], [-2, 2]],
  ["lt", [-2, 2], [-2, 2]],
  ["eq", [-1, 1], [-1, 1]],
];

Deno.test("wasm parity: binary ops, contiguous and broadcast", async () => {
  for (const [, w] of BACKENDS) {
    for (const [op, ra, rb] of BINARY) {
      for (const n of SIZES) {
        const a = randn(7 * n, ...ra);
        let b = randn(7 * n, ...rb);
        if (op === "eq") b = a.map((v, i) => (i % 3 ? v : -v)); // some equal elements
        const shape = [7, n];
        const full = contiguousView(shape);
        await parity(
          w,
          [f32(a), f32(b)],
          (B, [x, y]) => B.binary(op, x, full, y, full),
          `${op} [7,${n}]`,
          4e-6,
        );
        // b broadcast along rows (stride 0) and along columns, with an offset.
        const row: View = { shape, strides: [0, 1], offset: 3 };
        const col: View = { shape, strides: [1, 0], offset: Math.min(2, 7 * n - 7) };
        await parity(
          w,
          [f32(a), f32(b)],
          (B, [x, y]) => B.binary(op, x, full, y, row),
          `${op} row-bcast [7,${n}]`,
          4e-6,
        );
        await parity(
          w,
          [f32(a), f32(b)],
          (B, [x, y]) => B.binary(op, y, col, x, full),
          `${op} col-bcast [7,${n}]`,
          4e-6,
        );
      }
    }
  }
});

Deno.test("wasm parity: binary special values match the reference's max/min/pow", async () => {
  const a = Float32Array.from([NaN, 1, 0, -0, Infinity, -2, -2, 0, 2, NaN]);
  const b = Float32Array.from([1, NaN, -0, 0, 1, 3, 0.5, -1, NaN, 0]);
  const v = contiguousView([a.length]);
  for (const op of ["max", "min", "pow", "div", "gt", "eq"] as const) {
    await parity(
      w64,
      [f32(a), f32(b)],
      (B, [x, y]) => B.binary(op, x, v, y, v),
      `${op} specials`,
      1e-6,
      0,
    );
  }
});

/** Random strided views of a buffer: transposes, slices with steps, broadcasts, offsets. */
function stridedCases(): { name: string; len: number; view: View }[] {
  return [
    { name: "transpose 2-D", len: 33 * 7, view: { shape: [33, 7], strides: [1, 33], offset: 0 } },
    { name: "step-2 slice", len: 2 * 65 + 1, view: { shape: [65], strides: [2], offset: 1 } },
    {
      name: "3-D permute",
      len: 5 * 6 * 7,
      view: { shape: [7, 5, 6], strides: [1, 42, 7], offset: 0 },
    },
    {
      name: "broadcast middle",
      len: 4 * 9,
      view: { shape: [4, 3, 9], strides: [9, 0, 1], offset: 0 },
    },
    {
      name: "4-D slice",
      len: 2 * 3 * 4 * 10,
      view: { shape: [2, 3, 4, 5], strides: [120, 40, 10, 2], offset: 1 },
    },
    { name: "negative stride", len: 20, view: { shape: [4, 5], strides: [-5, 1], offset: 15 } },
    { name: "scalar broadcast", len: 3, view: { shape: [6, 7], strides: [0, 0], offset: 2 } },
    { name: "rank 0", len: 3, view: { shape: [], strides: [], offset: 1 } },
    { name: "empty", len: 3, view: { shape: [4, 0], strides: [1, 1], offset: 0 } },
  ];
}

Deno.test("wasm parity: elementwise ops and copy through strided views", async () => {
  for (const [, w] of BACKENDS) {
    for (const { name, len, view } of stridedCases()) {
      const x = randn(len);
      const y = randn(len);
      const n = view.shape.reduce((p, d) => p * d, 1);
      await parity(w, [f32(x)], (b, [s]) => b.unary("exp", s, view), `exp ${name}`, 4e-6);
      await parity(w, [f32(x)], (b, [s]) => b.unary("gelu", s, view), `gelu ${name}`, 4e-6);
      await parity(
        w,
        [f32(x), f32(y)],
        (b, [s, t]) => b.binary("mul", s, view, t, view),
        `mul ${name}`,
      );
      const cv = contiguousView(view.shape);
      await parity(
        w,
        [f32(x), f32(y), f32(randn(n))],
        (b, [s, t, c]) => b.where(c, cv, s, view, t, view),
        `where ${name}`,
      );
      // copy into a transposed destination (last two axes swapped when rank ≥ 2).
      await parity(
        w,
        [f32(x), f32(new Float32Array(Math.max(n, 1)))],
        (b, [s, d]) => {
          const r = view.shape.length;
          let dv: View = cv;
          if (r >= 2) {
            const st = [...cv.strides];
            const sh = [...view.shape];
            // destination element (i..., a, b) at a + b·shape[r−2] in the last two axes
            st[r - 1] = sh[r - 2];
            st[r - 2] = 1;
            dv = { shape: sh, strides: st, offset: 0 };
          }
          b.copy(s, view, d, dv);
          return d;
        },
        `copy ${name}`,
        0,
        0,
      );
    }
  }
});

Deno.test("wasm parity: where with an i32 condition and copy of i32 data", async () => {
  const cond = Int32Array.from({ length: 40 }, (_, i) => (i * 7) % 3 - 1);
  const a = randn(40), b = randn(40);
  const v = contiguousView([5, 8]);
  await parity(
    w64,
    [i32(cond), f32(a), f32(b)],
    (B, [c, x, y]) => B.where(c, v, x, v, y, v),
    "where i32",
  );
  const t: View = { shape: [8, 5], strides: [1, 8], offset: 0 };
  await parity(
    w64,
    [i32(cond), i32(new Int32Array(40))],
    (B, [c, d]) => {
      B.copy(c, t, d, contiguousView([8, 5]));
      return d;
    },
    "copy i32 transposed",
    0,
    0,
  );
});

Deno.test("wasm parity: large elementwise ops (threaded paths)", async () => {
  // Above the thread thresholds: split into outer rows, and one long row split in two.
  const shape = [600, 257];
  const n = 600 * 257;
  const x = randn(n), y = randn(n);
  const v = contiguousView(shape);
  const t: View = { shape: [257, 600], strides: [1, 257], offset: 0 };
  const bc: View = { shape, strides: [0, 1], offset: 0 };
  for (const [, w] of BACKENDS) {
    await parity(w, [f32(x), f32(y)], (b, [s, u]) => b.binary("add", s, v, u, v), "big add");
    await parity(w, [f32(x), f32(y)], (b, [s, u]) => b.binary("add", s, v, u, bc), "big add bcast");
    await parity(w, [f32(x)], (b, [s]) => b.unary("gelu", s, v), "big gelu", 4e-6);
    await parity(w, [f32(x)], (b, [s]) => b.unary("tanh", s, t), "big tanh transposed", 4e-6);
    await parity(
      w,
      [f32(x)],
      (b, [s]) => b.unary("exp", s, contiguousView([n])),
      "big exp flat",
      4e-6,
    );
  }
});

Deno.test("wasm parity: copy into a window of a larger buffer (slice assignment)", async () => {
  const src = randn(12);
  const dst = randn(100);
  for (const [, w] of BACKENDS) {
    await parity(
      w,
      [f32(src), f32(dst)],
      (b, [s, d]) => {
        // rows 2..4, columns 3..6 of a 10×10 matrix, from a transposed 4×3 source
        b.copy(s, { shape: [3, 4], strides: [1, 3], offset: 0 }, d, {
          shape: [3, 4],
          strides: [10, 1],
          offset: 23,
        });
        return d;
      },
      "copy into window",
      0,
      0,
    );
  }
});

Deno.test("wasm parity: cast, full, fromHost conversions", async () => {
  const x = Float32Array.from([0, -0.5, 0.5, 1.99, -1.99, 1e6 + 0.5, -3e7, 7, NaN]);
  await parity(w64, [f32(x)], (b, [s]) => b.cast(s, "i32"), "cast f32→i32", 0, 0);
  const ii = Int32Array.from([0, -1, 2 ** 31 - 1, -(2 ** 31), 16777217, 5]);
  await parity(w64, [i32(ii)], (b, [s]) => b.cast(s, "f32"), "cast i32→f32", 0, 0);
  await parity(w64, [f32(x)], (b, [s]) => b.cast(s, "f32"), "cast f32→f32", 0, 0);
  for (const n of [0, 1, 5, 1000]) {
    await parity(w64, [], (b) => [b.full(n, -1.25, "f32"), b.full(n, 7, "i32")], `full ${n}`, 0, 0);
  }
  const d = Float64Array.from([1 / 3, -2.5, 1e40, 3]);
  const gotF = await w64.read(w64.fromHost(d, "f32"));
  assert.deepEqual(Array.from(gotF), Array.from(Float32Array.from(d)));
  const gotI = await w64.read(w64.fromHost(Float32Array.from([1.9, -1.9, 3]), "i32"));
  assert.deepEqual(Array.from(gotI), [1, -1, 3]);
});

Deno.test("wasm parity: reductions and argmax over [outer, size, inner]", async () => {
  const shapes = [[1, 1, 1], [7, 33, 1], [1, 257, 1], [3, 65, 7], [1, 7, 33], [5, 1, 9], [
    2,
    4,
    257,
  ], [640, 768, 1]];
  for (const [, w] of BACKENDS) {
    for (const [o, s, i] of shapes) {
      const x = randn(o * s * i);
      for (const op of ["sum", "max", "min"] as const) {
        await parity(
          w,
          [f32(x)],
          (b, [t]) => b.reduce(op, t, o, s, i),
          `reduce ${op} [${o},${s},${i}]`,
          1e-6,
          1e-6,
        );
      }
      await parity(w, [f32(x)], (b, [t]) => b.argmax(t, o, s, i), `argmax [${o},${s},${i}]`, 0, 0);
    }
  }
  // Ties: the first index wins; NaN propagates through max.
  const ties = Float32Array.from([1, 3, 3, 2, 5, 5, 5, 0]);
  await parity(w64, [f32(ties)], (b, [t]) => b.argmax(t, 2, 4, 1), "argmax ties", 0, 0);
  const nan = Float32Array.from([1, NaN, 3, 2]);
  await parity(w64, [f32(nan)], (b, [t]) => b.reduce("max", t, 1, 4, 1), "max NaN", 0, 0);
});

Deno.test("wasm parity: softmax / log-softmax and their backward", async () => {
  for (const [, w] of BACKENDS) {
    for (const cols of [...SIZES, 1000]) {
      for (const rows of [1, 3, 70]) {
        const x = randn(rows * cols, -8, 8);
        const gy = randn(rows * cols);
        for (const log of [false, true]) {
          await parity(
            w,
            [f32(x)],
            (b, [s]) => b.softmax(s, rows, cols, log),
            `softmax log=${log} [${rows},${cols}]`,
            4e-6,
            1e-7,
          );
          await parity(
            w,
            [f32(x), f32(gy)],
            (b, [s, g]) => {
              const y = b.softmax(s, rows, cols, log);
              const gx = b.softmaxBackward(y, g, rows, cols, log);
              b.dispose(y);
              return gx;
            },
            `softmaxBackward log=${log} [${rows},${cols}]`,
            1e-4,
            1e-6,
          );
        }
      }
    }
  }
  // A row with −∞ entries (masked attention).
  const m = Float32Array.from([0.5, -Infinity, 2, -Infinity]);
  await parity(w64, [f32(m)], (b, [s]) => b.softmax(s, 1, 4, false), "softmax masked", 1e-6, 0);
});

Deno.test("wasm parity: layer norm forward and backward", async () => {
  for (const [, w] of BACKENDS) {
    for (const [rows, cols] of [[1, 1], [7, 33], [3, 257], [65, 7], [1030, 257]]) {
      const x = randn(rows * cols, -3, 5);
      const wt = randn(cols);
      const bias = randn(cols);
      const gy = randn(rows * cols);
      await parity(
        w,
        [f32(x), f32(wt), f32(bias)],
        (b, [s, ww, bb]) => {
          const r = b.layerNorm(s, ww, bb, rows, cols, 1e-5);
          return [r.y, r.mean, r.rstd];
        },
        `layerNorm [${rows},${cols}]`,
        2e-5,
        2e-5,
      );
      // Backward from the reference's mean/rstd: gx against the reference; gw and gb against a
      // float64 sum written here (the reference accumulates them in f32 over the rows, which is
      // less accurate than the kernel's f64 accumulation).
      const ln = cpu.layerNorm(
        cpu.fromHost(x, "f32"),
        cpu.fromHost(wt, "f32"),
        cpu.fromHost(bias, "f32"),
        rows,
        cols,
        1e-5,
      );
      const mean = (await cpu.read(ln.mean)) as Float32Array;
      const rstd = (await cpu.read(ln.rstd)) as Float32Array;
      await parity(
        w,
        [f32(x), f32(wt), f32(mean), f32(rstd), f32(gy)],
        (b, [s, ww, m, r, g]) => {
          const d = b.layerNormBackward(s, ww, m, r, g, rows, cols);
          b.dispose(d.gw);
          b.dispose(d.gb);
          return d.gx;
        },
        `layerNormBackward gx [${rows},${cols}]`,
        1e-4,
        2e-5,
      );
      const ws = [x, wt, mean, rstd, gy].map((d) => w.fromHost(d, "f32"));
      const d = w.layerNormBackward(ws[0], ws[1], ws[2], ws[3], ws[4], rows, cols);
      const gw = await w.read(d.gw), gb = await w.read(d.gb);
      for (let j = 0; j < cols; j++) {
        let sw = 0, aw = 0, sb = 0, ab = 0;
        for (let r = 0; r < rows; r++) {
          const t = gy[r * cols + j] * (x[r * cols + j] - mean[r]) * rstd[r];
          sw += t;
          aw += Math.abs(t);
          sb += gy[r * cols + j];
          ab += Math.abs(gy[r * cols + j]);
        }
        // Each f32 product x̂·gy carries ≤ 3 roundings: 3·2^-24 of Σ|terms| bounds the total.
        assert.ok(
          Math.abs(gw[j] - sw) <= 3 * 2 ** -24 * aw + 1e-7,
          `gw[${j}] = ${gw[j]}, want ${sw}`,
        );
        assert.ok(
          Math.abs(gb[j] - sb) <= 2 ** -24 * (ab + Math.abs(sb)),
          `gb[${j}] = ${gb[j]}, want ${sb}`,
        );
      }
      for (const t of [...ws, d.gx, d.gw, d.gb]) w.dispose(t);
    }
  }
});

Deno.test("wasm parity: cross-entropy and its backward, with ignored rows", async () => {
  for (const [, w] of BACKENDS) {
    for (const [rows, cols] of [[1, 1], [7, 33], [5, 257], [64, 1000]]) {
      const x = randn(rows * cols, -6, 6);
      const t = Int32Array.from(
        { length: rows },
        (_, r) => (r % 4 === 3 ? -100 : Math.floor(rand() * cols)),
      );
      const gl = randn(rows);
      await parity(
        w,
        [f32(x), i32(t)],
        (b, [s, tt]) => {
          const r = b.crossEntropy(s, tt, rows, cols, -100);
          return [r.loss, r.lse];
        },
        `crossEntropy [${rows},${cols}]`,
        1e-5,
        2e-6,
      );
      await parity(
        w,
        [f32(x), i32(t), f32(gl)],
        (b, [s, tt, g]) => {
          const r = b.crossEntropy(s, tt, rows, cols, -100);
          const d = b.crossEntropyBackward(s, tt, r.lse, g, rows, cols, -100);
          b.dispose(r.loss);
          b.dispose(r.lse);
          return d;
        },
        `crossEntropyBackward [${rows},${cols}]`,
        1e-5,
        1e-7,
      );
    }
  }
});

Deno.test("wasm parity: gather and scatterAdd (repeated ids, deterministic order)", async () => {
  for (const [, w] of BACKENDS) {
    for (const cols of [1, 7, 33, 768]) {
      const vocab = 50;
      const table = randn(vocab * cols);
      const ids = Int32Array.from(
        { length: 37 },
        (_, i) => (i % 5 === 0 ? 3 : Math.floor(rand() * vocab)),
      );
      await parity(
        w,
        [f32(table), i32(ids)],
        (b, [t, i]) => b.gather(t, i, ids.length, cols),
        `gather cols=${cols}`,
        0,
        0,
      );
      const g = randn(ids.length * cols);
      await parity(
        w,
        [f32(g), i32(ids)],
        (b, [s, i]) => b.scatterAdd(s, i, ids.length, cols, vocab),
        `scatterAdd cols=${cols}`,
        1e-6,
        1e-6,
      );
    }
  }
});

Deno.test("wasm: dropout mask equals hashUniform bit for bit", async () => {
  for (const [, w] of BACKENDS) {
    for (const p of [0, 0.1, 0.5, 0.9, 1, 1 / 3]) {
      for (const seed of [0, 1, 12345, -7, 2 ** 31 + 5]) {
        const n = 50003;
        const got = await w.read(w.dropoutMask(n, p, seed));
        const keep = Math.fround(1 / (1 - p));
        for (let i = 0; i < n; i++) {
          const want = hashUniform(seed, i) >= p ? keep : 0;
          if (got[i] !== want) {
            assert.fail(`p=${p} seed=${seed} i=${i}: got ${got[i]}, want ${want}`);
          }
        }
      }
    }
  }
});

Deno.test("wasm parity: AdamW steps in place", async () => {
  for (const [, w] of BACKENDS) {
    for (const n of [1, 7, 1000, 70001]) {
      const p0 = randn(n), g1 = randn(n), g2 = randn(n);
      const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
      await parity(
        w,
        [f32(p0), f32(g1), f32(g2), f32(new Float32Array(n)), f32(new Float32Array(n))],
        (b, [p, a, c, m, v]) => {
          b.adamw(p, a, m, v, { ...hp, step: 1 });
          b.adamw(p, c, m, v, { ...hp, step: 2 });
          return [p, m, v];
        },
        `adamw n=${n}`,
        1e-5,
        1e-6,
      );
    }
  }
});

// ---------------------------------------------------------------------------------------------
// matmul

/** Independent reference: float64 triple loop over explicit index formulas. */
function naiveMatmul(
  A: Float32Array,
  B: Float32Array,
  p: {
    batch: number;
    m: number;
    n: number;
    k: number;
    transA: boolean;
    transB: boolean;
    aBatchStride: number;
    bBatchStride: number;
    aOffset?: number;
    bOffset?: number;
  },
): { c: Float64Array; mag: Float64Array } {
  const { batch, m, n, k } = p;
  const c = new Float64Array(batch * m * n);
  const mag = new Float64Array(batch * m * n);
  for (let t = 0; t < batch; t++) {
    const ao = (p.aOffset ?? 0) + t * p.aBatchStride;
    const bo = (p.bOffset ?? 0) + t * p.bBatchStride;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0, g = 0;
        for (let l = 0; l < k; l++) {
          const a = p.transA ? A[ao + l * m + i] : A[ao + i * k + l];
          const b = p.transB ? B[bo + j * k + l] : B[bo + l * n + j];
          s += a * b;
          g += Math.abs(a * b);
        }
        c[(t * m + i) * n + j] = s;
        mag[(t * m + i) * n + j] = g;
      }
    }
  }
  return { c, mag };
}

async function checkMatmul(
  w: WasmBackend,
  p: Parameters<typeof naiveMatmul>[2],
  aLen: number,
  bLen: number,
): Promise<Float32Array> {
  const A = randn(aLen), B = randn(bLen);
  const as = w.fromHost(A, "f32"), bs = w.fromHost(B, "f32");
  const cs = w.matmul(as, bs, p);
  const got = (await w.read(cs)) as Float32Array;
  const { c, mag } = naiveMatmul(A, B, p);
  assert.equal(got.length, c.length);
  for (let i = 0; i < c.length; i++) {
    // Worst-case bound of f32 summation of k products: k·2^-24·Σ|a·b| (+ tiny floor).
    const tol = Math.max(1, p.k) * 2 ** -24 * mag[i] + 1e-30;
    if (!(Math.abs(got[i] - c[i]) <= tol)) {
      assert.fail(`matmul ${JSON.stringify(p)} [${i}]: got ${got[i]}, want ${c[i]} (tol ${tol})`);
    }
  }
  for (const s of [as, bs, cs]) w.dispose(s);
  return got;
}

Deno.test("wasm matmul: odd shapes and transposes against a float64 triple loop", async () => {
  for (const [, w] of BACKENDS) {
    for (const m of SIZES) {
      for (const n of SIZES) {
        for (const k of [1, 7, 65, 257, 300, 777]) {
          if (m * n * k > 257 * 65 * 300) continue; // keep the test fast
          for (
            const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]]
          ) {
            const p = { batch: 1, m, n, k, transA, transB, aBatchStride: 0, bBatchStride: 0 };
            await checkMatmul(w, p, m * k, k * n);
          }
        }
      }
    }
  }
});

Deno.test("wasm matmul: few rows (the unpacked small-m kernels), batched", async () => {
  for (const [, w] of BACKENDS) {
    for (const m of [1, 2, 3, 4]) {
      for (const n of [1, 7, 8, 9, 33, 257]) {
        for (const k of [1, 3, 4, 5, 65]) {
          for (const transB of [false, true]) {
            const p = {
              batch: 2,
              m,
              n,
              k,
              transA: false,
              transB,
              aBatchStride: m * k + 1,
              bBatchStride: k * n,
              aOffset: 1,
            };
            await checkMatmul(w, p, 1 + 2 * (m * k + 1), 2 * k * n);
          }
        }
      }
    }
    // Large enough for the threaded split of the columns.
    await checkMatmul(
      w,
      {
        batch: 1,
        m: 1,
        n: 30011,
        k: 700,
        transA: false,
        transB: true,
        aBatchStride: 0,
        bBatchStride: 0,
      },
      700,
      700 * 30011,
    );
  }
});

Deno.test("wasm matmul: batched, batch strides, offsets and broadcast operands", async () => {
  for (const [, w] of BACKENDS) {
    const cases = [
      // separate A and B per batch, with offsets
      {
        batch: 5,
        m: 7,
        n: 33,
        k: 65,
        transA: false,
        transB: false,
        aBatchStride: 7 * 65,
        bBatchStride: 65 * 33 + 3,
        aOffset: 2,
        bOffset: 1,
      },
      // one B for every batch (stride 0), A transposed
      {
        batch: 4,
        m: 33,
        n: 9,
        k: 17,
        transA: true,
        transB: false,
        aBatchStride: 33 * 17,
        bBatchStride: 0,
      },
      // one A for every batch, B transposed (attention-like)
      {
        batch: 12,
        m: 20,
        n: 20,
        k: 64,
        transA: false,
        transB: true,
        aBatchStride: 0,
        bBatchStride: 20 * 64,
      },
      // batch larger than twice the threads: split over batches
      {
        batch: 24,
        m: 64,
        n: 64,
        k: 64,
        transA: false,
        transB: true,
        aBatchStride: 64 * 64,
        bBatchStride: 64 * 64,
      },
      {
        batch: 3,
        m: 1,
        n: 257,
        k: 7,
        transA: false,
        transB: false,
        aBatchStride: 7,
        bBatchStride: 7 * 257,
      },
    ];
    for (const p of cases) {
      const aLen = (p.aOffset ?? 0) + (p.batch - 1) * p.aBatchStride + p.m * p.k;
      const bLen = (p.bOffset ?? 0) + (p.batch - 1) * p.bBatchStride + p.k * p.n;
      await checkMatmul(w, p, aLen, bLen);
    }
  }
});

Deno.test("wasm matmul: large blocked sizes, two threads bit-identical to one", async () => {
  const w1 = await createWasmBackend({ threads: 1, blas: false });
  const p = {
    batch: 1,
    m: 300,
    n: 1100,
    k: 600,
    transA: false,
    transB: true,
    aBatchStride: 0,
    bBatchStride: 0,
  };
  const A = randn(p.m * p.k), B = randn(p.k * p.n);
  const run = async (w: WasmBackend) => {
    const a = w.fromHost(A, "f32"), b = w.fromHost(B, "f32");
    const c = w.matmul(a, b, p);
    const r = await w.read(c);
    for (const s of [a, b, c]) w.dispose(s);
    return r;
  };
  const one = await run(w1);
  const two = await run(w64);
  assert.deepEqual(two, one);
  // Either way of splitting between threads (rows or columns) computes every element alike.
  for (const matmulSplitM of [true, false]) {
    const w = await createWasmBackend({ threads: 2, matmulSplitM, blas: false });
    assert.deepEqual(await run(w), one, `split rows: ${matmulSplitM}`);
    w.close();
  }
  // And it is correct (spot check of the whole result against the reference bound).
  await checkMatmul(w64, p, p.m * p.k, p.k * p.n);
  // Degenerate shapes: k = 0 gives zeros, empty outputs work.
  const z = await w64.read(
    w64.matmul(w64.fromHost(new Float32Array(0), "f32"), w64.fromHost(new Float32Array(0), "f32"), {
      ...p,
      m: 3,
      n: 4,
      k: 0,
    }),
  );
  assert.deepEqual(Array.from(z), new Array(12).fill(0));
  w1.close();
});

Deno.test("wasm threads: a job posted right after start-up is not lost", async () => {
  // Regression: a worker that read its sequence number after announcing readiness could miss
  // the first job and leave the caller waiting forever (now a "did not pick up" error).
  for (let i = 0; i < 6; i++) {
    const w = await createWasmBackend({ threads: 2, blas: false });
    assert.equal(w.threads, 2);
    const p = {
      batch: 1,
      m: 64,
      n: 256,
      k: 128,
      transA: false,
      transB: false,
      aBatchStride: 0,
      bBatchStride: 0,
    };
    await checkMatmul(w, p, p.m * p.k, p.k * p.n);
    w.close();
    assert.equal(w.threads, 1);
  }
});

// ---------------------------------------------------------------------------------------------
// memory, errors

Deno.test("wasm: liveCount, dispose, and errors that name the culprit", () => {
  const w = w64;
  const before = w.liveCount();
  const s = w.fromHost(new Float32Array(10), "f32");
  assert.equal(w.liveCount(), before + 1);
  w.dispose(s);
  w.dispose(s); // idempotent
  assert.equal(w.liveCount(), before);
  assert.throws(() => w.unary("exp", s, contiguousView([10])), /disposed/);
  const c = cpu.fromHost(new Float32Array(4), "f32");
  assert.throws(() => w.unary("exp", c, contiguousView([4])), /belongs to backend 'cpu'/);
  const x = w.fromHost(new Float32Array(6), "f32");
  assert.throws(() => w.unary("exp", x, contiguousView([7])), /shape \[7\].*buffer of 6/);
  assert.throws(
    () =>
      w.matmul(x, x, {
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
    /wasm matmul: b \(batch 1, k 3, n 2\) has 6 elements, needs 7/,
  );
  const ids = w.fromHost(Int32Array.from([0, 5]), "i32");
  assert.throws(() => w.gather(x, ids, 2, 3), /index 5 at position 1 is outside \[0, 2\)/);
  assert.throws(() => w.crossEntropy(x, ids, 2, 3, -100), /target 5 at row 1 is outside \[0, 3\)/);
  assert.throws(() => w.scatterAdd(x, ids, 2, 3, 4), /index 5 at position 1/);
  assert.throws(
    () => w.binary("add", ids, contiguousView([2]), x, contiguousView([2])),
    /must be f32, got i32/,
  );
  w.dispose(x);
  w.dispose(ids);
  cpu.dispose(c);
});

Deno.test("wasm: out of memory is a clear error, and freed memory is reused", async () => {
  const w = await createWasmBackend({ threads: 1, maxMemoryBytes: 16 * 2 ** 20 });
  assert.throws(
    () => w.full(8 * 2 ** 20, 0, "f32"),
    /wasm backend: out of memory allocating 33554432 bytes for full .*limit 0\.02 GiB/,
  );
  // Fill most of the memory with small blocks, free them, then one large block must fit
  // (the allocator coalesces free blocks when the limit is reached).
  const small = [];
  for (let i = 0; i < 40; i++) small.push(w.full(60_000, 1, "f32"));
  for (const s of small) w.dispose(s);
  const big = w.full(2_000_000, 2, "f32");
  const r = await w.read(big);
  assert.equal(r[1_999_999], 2);
  w.dispose(big);
  // The same size class comes back from the free list.
  const a = w.full(1000, 0, "f32") as unknown as { ptr: number };
  w.dispose(a as never);
  const b = w.full(1001, 0, "f32") as unknown as { ptr: number };
  assert.equal(b.ptr, a.ptr);
  w.close();
});
