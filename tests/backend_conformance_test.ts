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
  type Backend,
  BINARY_OPS,
  contiguousView,
  type Storage,
  UNARY_OPS,
  type UnaryOp,
  type View,
} from "../kernels/backend.ts";
import { assertClose } from "./helpers/close.ts";
import { BACKEND_VARIANTS, referenceFor, seeded } from "./helpers/backends.ts";

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

function rowCases(): Case[] {
  const out: Case[] = [];
  for (const [o, s, i] of [[1, 1, 1], [7, 33, 1], [3, 257, 5], [65, 7, 33], [2, 1000, 3]]) {
    out.push({
      name: `reduce sum/max/min and argmax [${o}, ${s}, ${i}]`,
      inputs: [uniform(o * s * i)],
      run: (b, [x]) => [
        b.reduce("sum", x, o, s, i),
        b.reduce("max", x, o, s, i),
        b.reduce("min", x, o, s, i),
        b.argmax(x, o, s, i),
      ],
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

const CASES = [...elementwiseCases(), ...rowCases(), ...emptyCases()];

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
  ];
}

for (const variant of BACKEND_VARIANTS) {
  const made = await variant.make();
  const ignore = typeof made === "string";
  if (ignore) console.log(`conformance: ${variant.label} skipped: ${made}`);
  const b = ignore ? null : made;
  const ref = referenceFor(variant.label);

  Deno.test(
    `${variant.label}: every primitive matches the reference (odd sizes, views, NaN/Inf, empty)`,
    { ...opts, ignore },
    async () => {
      // Every case runs; the failures are reported together.
      const failures: string[] = [];
      for (const c of CASES) {
        const want = await runCase(ref, c);
        const got = await runCase(b!, c);
        assert.equal(got.length, want.length);
        got.forEach((g, i) => {
          try {
            const atol = Math.max(c.atol ?? 1e-6, variant.minAtol ?? 0);
            assertClose(g, want[i], `${variant.label} ${c.name}: output ${i}`, c.rtol, atol);
          } catch (e) {
            failures.push((e as Error).message.split("\n")[0]);
          }
        });
      }
      assert.equal(failures.length, 0, `${failures.length} mismatches:\n${failures.join("\n")}`);
    },
  );

  Deno.test(
    `${variant.label}: argument errors name the op and operand`,
    { ...opts, ignore },
    () => {
      for (const [what, call, msg] of errorCases(b!)) assert.throws(call, msg, what);
    },
  );

  Deno.test(`${variant.label}: no buffer outlives its case`, { ...opts, ignore }, async () => {
    const before = b!.liveCount();
    for (const c of CASES.slice(0, 40)) await runCase(b!, c);
    assert.equal(b!.liveCount(), before);
  });
}
