/**
 * Accuracy of the wasm kernels' polynomial exp/log/tanh, and of GELU and its derivative as
 * compiled from their expressions, against float64 `Math`, on dense random samples and on
 * special values.
 */
import assert from "node:assert/strict";
import {
  detectFeatures,
  type Expr,
  type FunctionBuilder,
  i32,
  load,
  ModuleBuilder,
  op,
  store,
} from "../kernels/wasm/builder.ts";
import { UNARY_EXPRS } from "../kernels/expr.ts";
import { emitExpr } from "../kernels/wasm/gen_expr.ts";
import { expV, logV, type MathOptions, powV, tanhV } from "../kernels/wasm/gen_math.ts";

type Emit = (f: FunctionBuilder, x: Expr, o: MathOptions) => Expr;
const compiled = (op: keyof typeof UNARY_EXPRS): Emit => (f, x, o) => {
  const xl = f.local("v128");
  f.set(xl, x);
  return emitExpr(f, UNARY_EXPRS[op], { x: xl }, o);
};
const UNARY: Record<string, Emit> = {
  exp: expV,
  log: logV,
  tanh: tanhV,
  gelu: compiled("gelu"),
  geluGrad: compiled("geluGrad"),
};

const mod = new ModuleBuilder();
mod.importMemory({ module: "env", name: "memory", initial: 64, maximum: 64 });
// Every function twice: plain mul+add polynomials and, where relaxed SIMD exists, fused ones
// (what the backend uses); both must meet the same bounds.
const FMA = detectFeatures().relaxedSimd ? [false, true] : [false];
for (const fma of FMA) {
  for (const [name, emit] of Object.entries(UNARY)) {
    // y[i] = fn(x[i]) for byte offsets x, y and n elements (n a multiple of 4).
    mod.addFunction(name + (fma ? "_fma" : ""), ["i32", "i32", "i32"], [], (f, x, y, n) => {
      const i = f.local("i32");
      f.forRange(i, i32(0), op("i32.shl", n, i32(2)), 16, () => {
        const r = emit(f, load("v128.load", op("i32.add", x, i)), { fma });
        f.do(store("v128.store", op("i32.add", y, i), r));
      });
    });
  }
}
mod.addFunction("pow", ["i32", "i32", "i32", "i32"], [], (f, a, b, y, n) => {
  const i = f.local("i32");
  f.forRange(i, i32(0), op("i32.shl", n, i32(2)), 16, () => {
    const r = powV(
      f,
      load("v128.load", op("i32.add", a, i)),
      load("v128.load", op("i32.add", b, i)),
    );
    f.do(store("v128.store", op("i32.add", y, i), r));
  });
});
const memory = new WebAssembly.Memory({ initial: 64, maximum: 64 });
const { instance } = await WebAssembly.instantiate(mod.toBytes() as BufferSource, {
  env: { memory },
});
const ex = instance.exports as Record<string, (...a: number[]) => void>;
const F = new Float32Array(memory.buffer);
const N = 1 << 16; // samples per run
const X = 0, Y = 4 * N, B = 8 * N;

/** Runs fn (plain or fused variant) on xs, padded to a multiple of 4; returns the outputs. */
function run(name: string, xs: ArrayLike<number>, fma = false): Float32Array {
  const n = Math.ceil(xs.length / 4) * 4;
  F.fill(0, 0, n);
  F.set(xs, 0);
  ex[name + (fma ? "_fma" : "")](X, Y, n);
  return F.slice(N, N + xs.length);
}

let seed = 12345;
function rand(): number {
  // mulberry32
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

/** Largest |got − ref| / (|ref| + floor) over the samples (ref in float64 from the f32 input). */
function worst(name: string, xs: Float32Array, ref: (x: number) => number, floor = 0): number {
  let w = 0;
  for (const fma of FMA) {
    const got = run(name, xs, fma);
    for (let i = 0; i < xs.length; i++) {
      const r = ref(xs[i]);
      const e = Math.abs(got[i] - r) / (Math.abs(r) + floor);
      if (!(e <= w)) w = e; // NaN counts as a failure
    }
  }
  return w;
}

const sample = (lo: number, hi: number) =>
  Float32Array.from({ length: N }, () => lo + (hi - lo) * rand());
const K = Math.sqrt(2 / Math.PI);
// GELU references written as x·σ(2u), which has no cancellation for negative x.
const sig = (y: number) => 1 / (1 + Math.exp(-y));
const geluRef = (x: number) => x * sig(2 * K * (x + 0.044715 * x ** 3));
const geluGradRef = (x: number) => {
  const s = sig(2 * K * (x + 0.044715 * x ** 3));
  return s + 2 * x * s * (1 - s) * K * (1 + 3 * 0.044715 * x * x);
};

Deno.test("wasm math: exp within 2e-7 relative on [-87, 88]", () => {
  assert.ok(worst("exp", sample(-87, 88), Math.exp) < 2e-7);
  assert.ok(worst("exp", sample(-1, 1), Math.exp) < 2e-7);
});

Deno.test("wasm math: log within 3e-7 relative from 1e-35 to 1e35 and near 1", () => {
  const wide = Float32Array.from({ length: N }, () => Math.exp(-80 + 160 * rand()));
  assert.ok(worst("log", wide, Math.log) < 3e-7);
  // Near 1 the result is small: measure relative to |log x| with a floor of 1 ulp of 1.
  assert.ok(worst("log", sample(0.5, 2), Math.log, 1e-7) < 1e-6);
  // Subnormal inputs go through the rescaling path.
  assert.ok(worst("log", Float32Array.from([1e-40, 3e-42, 1e-45]), Math.log) < 3e-7);
});

Deno.test("wasm math: tanh within 3e-7 relative on [-12, 12] and near 0", () => {
  assert.ok(worst("tanh", sample(-12, 12), Math.tanh) < 3e-7);
  assert.ok(worst("tanh", sample(-0.7, 0.7), Math.tanh) < 3e-7);
});

Deno.test("wasm math: GELU and its derivative within 2e-6 relative", () => {
  // For x ≪ 0 GELU is x·e^{2u} with |2u| up to ~20: the f32 rounding of the argument alone
  // gives ~|2u|·6e-8 relative error there, hence 2e-6 over [−6, 6] and 1e-6 over [−3, 3]; the
  // floor 1e-5 keeps the vanishing tail values (|gelu| < 1e-5) to an absolute error < 2e-11.
  const checks: [string, number, number, (x: number) => number, number, number][] = [
    ["gelu", -6, 6, geluRef, 1e-5, 2e-6],
    ["gelu", -3, 3, geluRef, 1e-5, 1e-6],
    // The derivative is a difference of two ~0.2 terms near its zero at x ≈ −0.75: there the
    // error is absolute (f32 cancellation), so the floor is 0.05 (absolute error < 1e-7).
    ["geluGrad", -6, 6, geluGradRef, 0.05, 2e-6],
    ["geluGrad", -3, 3, geluGradRef, 0.05, 2e-6],
  ];
  for (const [name, lo, hi, ref, floor, tol] of checks) {
    const w = worst(name, sample(lo, hi), ref, floor);
    assert.ok(w < tol, `${name} on [${lo}, ${hi}]: worst ${w} ≥ ${tol}`);
  }
});

Deno.test("wasm math: special values follow Math", () => {
  const sp = [0, -0, 1, -1, Infinity, -Infinity, NaN, 100, -100, 1e-30];
  const same = (a: number, b: number) => (Number.isNaN(b) ? Number.isNaN(a) : a === Math.fround(b));
  for (const [name, ref] of [["exp", Math.exp], ["log", Math.log], ["tanh", Math.tanh]] as const) {
    for (const fma of FMA) {
      const got = run(name, sp, fma);
      sp.forEach((x, i) =>
        assert.ok(same(got[i], ref(x)), `${name}(${x}) = ${got[i]}, want ${ref(x)} (fma ${fma})`)
      );
    }
  }
  for (const fma of FMA) {
    assert.equal(run("gelu", [1e4, -1e4], fma)[0], 1e4);
    assert.equal(run("geluGrad", [1e30], fma)[0], 1);
  }
});

Deno.test("wasm math: pow follows Math.pow on signs, zeros and integer exponents", () => {
  const a = [2, -2, -2, 0, 0, -0, -0, 1, NaN, -8, 4, 10, 3, 0.5];
  const b = [3, 3, 2, -1, 0, -1, 0.5, NaN, 0, 1 / 3, 0.5, -3, 7.5, 20];
  const n = Math.ceil(a.length / 4) * 4;
  F.fill(0, 0, 3 * N);
  F.set(a, 0);
  F.set(b, B / 4);
  ex.pow(X, B, Y, n);
  a.forEach((x, i) => {
    const want = Math.pow(x, b[i]);
    const got = F[N + i];
    if (Number.isNaN(want)) assert.ok(Number.isNaN(got), `pow(${x}, ${b[i]}) = ${got}`);
    else if (!Number.isFinite(want) || want === 0) assert.equal(got, want, `pow(${x}, ${b[i]})`);
    else assert.ok(Math.abs(got - want) <= 2e-6 * Math.abs(want), `pow(${x}, ${b[i]}) = ${got}`);
  });
});
