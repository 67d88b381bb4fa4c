/**
 * The reference backend's reductions, compiled from `REDUCTIONS` and `ARGMAX_TAKES`
 * (`kernels/cpu/reduce_expr.ts`), generated and as closures, against plain float64 loops written
 * here independently of the expressions: odd shapes over every axis position, NaN and ±Inf at
 * the first and last positions of an axis, ±0, ties, empty axes.
 */
import assert from "node:assert/strict";
import { ARGMAX_TAKES, REDUCTIONS } from "../kernels/expr.ts";
import { compileArgmaxJs, compileReduceJs } from "../kernels/cpu/reduce_expr.ts";
import type { ReduceOp } from "../kernels/backend.ts";
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { seeded } from "./helpers/backends.ts";

/** Sum in float64 in index order; max/min NaN as soon as any element is; empty: 0 or NaN. */
function plainReduce(
  op: ReduceOp,
  d: Float32Array,
  outer: number,
  size: number,
  inner: number,
): Float32Array {
  const out = new Float32Array(outer * inner);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < inner; j++) {
      const base = o * size * inner + j;
      let acc = op === "sum" ? 0 : size === 0 ? NaN : d[base];
      for (let k = op === "sum" ? 0 : 1; k < size; k++) {
        const v = d[base + k * inner];
        if (op === "sum") acc += v;
        else if (op === "max") acc = v > acc || Number.isNaN(v) ? v : acc;
        else acc = v < acc || Number.isNaN(v) ? v : acc;
      }
      out[o * inner + j] = acc;
    }
  }
  return out;
}

/** The first index of the greatest element, comparing with `>` from the first (0 if empty). */
function plainArgmax(d: Float32Array, outer: number, size: number, inner: number): Int32Array {
  const out = new Int32Array(outer * inner);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < inner; j++) {
      const base = o * size * inner + j;
      let best = 0, bv = d[base];
      for (let k = 1; k < size; k++) {
        const v = d[base + k * inner];
        if (v > bv) {
          bv = v;
          best = k;
        }
      }
      out[o * inner + j] = best;
    }
  }
  return out;
}

const rand = seeded(7);
const SPECIALS = [NaN, Infinity, -Infinity, 0, -0];

/** Random values in [-2, 2], rounded to halves on request (ties), with specials sprinkled. */
function data(n: number, ties: boolean, specials: boolean): Float32Array {
  const a = Float32Array.from({ length: n }, () => {
    const v = 4 * rand() - 2;
    return ties ? Math.round(v * 2) / 2 : v;
  });
  if (specials) { for (let i = 0; i < n; i++) if (rand() < 0.05) a[i] = SPECIALS[i % 5]; }
  return a;
}

/** Bitwise equality, NaN equal to NaN and +0 different from −0. */
function assertSame(got: ArrayLike<number>, want: ArrayLike<number>, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    if (!Object.is(got[i], want[i])) assert.fail(`${what} [${i}]: ${got[i]}, want ${want[i]}`);
  }
}

const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [1, 7, 1],
  [3, 33, 1],
  [1, 257, 1],
  [1, 33, 7],
  [5, 7, 3],
  [2, 257, 5],
  [7, 1, 9],
  [65, 3, 2],
  [3, 0, 4], // empty axis
  [0, 5, 3],
  [4, 6, 0],
];

/** The reductions and argmax compiled from their expressions, generated or as closures. */
function compiled(closures: boolean) {
  const reduce = {
    sum: compileReduceJs(REDUCTIONS.sum, { closures }),
    max: compileReduceJs(REDUCTIONS.max, { closures }),
    min: compileReduceJs(REDUCTIONS.min, { closures }),
  };
  return { reduce, argmax: compileArgmaxJs(ARGMAX_TAKES, { closures }) };
}

const VARIANTS = [
  { label: "generated", closures: false },
  { label: "closures", closures: true },
];

for (const { label, closures } of VARIANTS) {
  Deno.test(`reduce_expr ${label}: sum, max, min and argmax equal plain float64 loops`, () => {
    const { reduce, argmax } = compiled(closures);
    for (const [outer, size, inner] of SHAPES) {
      for (const ties of [false, true]) {
        for (const specials of [false, true]) {
          const x = data(outer * size * inner, ties, specials);
          const what = `[${outer}, ${size}, ${inner}] ties ${ties} specials ${specials}`;
          for (const op of ["sum", "max", "min"] as const) {
            const out = new Float32Array(outer * inner).fill(12345);
            reduce[op](x, out, outer, size, inner);
            assertSame(out, plainReduce(op, x, outer, size, inner), `${op} ${what}`);
          }
          const at = new Int32Array(outer * inner).fill(-1);
          argmax(x, at, outer, size, inner);
          assertSame(at, plainArgmax(x, outer, size, inner), `argmax ${what}`);
        }
      }
    }
  });

  Deno.test(`reduce_expr ${label}: NaN and ±Inf at the ends of an axis, ±0, all ties`, () => {
    const { reduce, argmax } = compiled(closures);
    for (const size of [1, 2, 7, 33, 257]) {
      for (const inner of [1, 3]) {
        for (const at of [0, size - 1, size >> 1]) {
          for (const s of [NaN, Infinity, -Infinity, -0, 0]) {
            for (const fill of ["random", "zeros", "negzeros", "ones"] as const) {
              const x = fill === "random"
                ? data(size * inner, false, false)
                : new Float32Array(size * inner).fill(
                  fill === "zeros" ? 0 : fill === "negzeros" ? -0 : 1,
                );
              for (let j = 0; j < inner; j++) x[at * inner + j] = s;
              const what = `size ${size} inner ${inner}: ${s} at ${at} among ${fill}`;
              for (const op of ["sum", "max", "min"] as const) {
                const out = new Float32Array(inner);
                reduce[op](x, out, 1, size, inner);
                assertSame(out, plainReduce(op, x, 1, size, inner), `${op} ${what}`);
              }
              const idx = new Int32Array(inner);
              argmax(x, idx, 1, size, inner);
              assertSame(idx, plainArgmax(x, 1, size, inner), `argmax ${what}`);
            }
          }
        }
      }
    }
  });
}

Deno.test("reduce_expr: concrete values (NaN propagates, −0 kept, first tie, empty)", () => {
  const sum = compileReduceJs(REDUCTIONS.sum), max = compileReduceJs(REDUCTIONS.max);
  const min = compileReduceJs(REDUCTIONS.min), argmax = compileArgmaxJs();
  const run = (f: typeof sum, x: number[], size = x.length) => {
    const out = new Float32Array(1);
    f(Float32Array.from(x), out, 1, size, 1);
    return out[0];
  };
  const arg = (x: number[], size = x.length) => {
    const out = new Int32Array(1).fill(-1);
    argmax(Float32Array.from(x), out, 1, size, 1);
    return out[0];
  };
  assert.equal(run(sum, [1, 2, 3.5]), 6.5);
  assert.ok(Object.is(run(max, [-0, 0]), -0));
  assert.ok(Object.is(run(min, [0, -0]), 0));
  assert.ok(Number.isNaN(run(max, [1, NaN, 3])));
  assert.ok(Number.isNaN(run(min, [1, 2, NaN])));
  assert.ok(Number.isNaN(run(max, [NaN, 5])));
  assert.equal(run(max, [-Infinity, -Infinity]), -Infinity);
  assert.ok(Number.isNaN(run(sum, [Infinity, -Infinity])));
  assert.equal(run(sum, [], 0), 0);
  assert.ok(Number.isNaN(run(max, [], 0)));
  assert.ok(Number.isNaN(run(min, [], 0)));
  assert.equal(arg([], 0), 0);
  assert.equal(arg([1, 3, 3, 2]), 1);
  assert.equal(arg([NaN, 3, 4]), 0);
  assert.equal(arg([1, NaN, 4]), 2);
  assert.equal(arg([-Infinity, -Infinity]), 0);
  // Sums in float64: 2²⁴ + 1 + 1 is exact there, not in f32 steps.
  assert.equal(run(sum, [16777216, 1, 1]), 16777218);
});

Deno.test("reduce_expr: the reference backend reduces with the compiled expressions", async () => {
  for (const precision of ["f32", "f64"] as const) {
    const b = new CpuBackend({ precision });
    const host = data(5 * 33 * 3, true, true);
    const x = b.fromHost(host, "f32");
    const stored = (await b.read(x)) as Float32Array | Float64Array;
    for (const op of ["sum", "max", "min"] as const) {
      const got = await b.read(b.reduce(op, x, 5, 33, 3));
      const want = new Float64Array(15);
      compileReduceJs(REDUCTIONS[op])(stored, want, 5, 33, 3);
      assertSame(got, precision === "f32" ? Float32Array.from(want) : want, `${precision} ${op}`);
    }
    assertSame(await b.read(b.argmax(x, 5, 33, 3)), plainArgmax(host, 5, 33, 3), "argmax");
  }
});
