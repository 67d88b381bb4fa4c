/**
 * The elementwise expression language (`kernels/expr.ts`) and its three compilers: the table's
 * expressions mean the functions their ops are documented to be, and the WebAssembly and WGSL
 * compilers agree with the TypeScript evaluator on every primitive, on NaN, ±Inf, ±0, subnormal
 * and near-overflow inputs.
 */
import assert from "node:assert/strict";
import {
  abs,
  ADAMW,
  adamwScalars,
  add,
  BINARY_EXPRS,
  BINARY_OPS,
  c,
  div,
  eq,
  exp,
  ge,
  gt,
  isHeavy,
  isinf,
  isnan,
  le,
  log,
  lt,
  mul,
  ne,
  neg,
  type Num,
  P,
  pow,
  select,
  sqrt,
  sub,
  tanh,
  UNARY_EXPRS,
  UNARY_OPS,
  X,
  Y,
} from "../kernels/expr.ts";
import { compileArgs, compileJs, compileMapJs } from "../kernels/cpu/expr.ts";
import { compileWgsl, EXPR_WGSL_PRELUDE } from "../kernels/webgpu/expr.ts";
import { adapterInfo, openDevice } from "../kernels/webgpu/device.ts";
import {
  detectFeatures,
  f32,
  i32,
  load,
  ModuleBuilder,
  op,
  store,
} from "../kernels/wasm/builder.ts";
import { emitExpr } from "../kernels/wasm/gen_expr.ts";
import { assertClose } from "./helpers/close.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

// ---- the table means what the ops are documented to be (float64) ----

const K = Math.sqrt(2 / Math.PI);
const REFERENCE: Record<string, (x: number, p: number) => number> = {
  neg: (x) => -x,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  tanh: Math.tanh,
  relu: (x) => (x > 0 ? x : 0),
  gelu: (x) => 0.5 * x * (1 + Math.tanh(K * (x + 0.044715 * x ** 3))),
  geluGrad: (x) => {
    const t = Math.tanh(K * (x + 0.044715 * x ** 3));
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * K * (1 + 3 * 0.044715 * x * x);
  },
  abs: Math.abs,
  sign: Math.sign,
  step: (x) => (x > 0 ? 1 : 0),
  recip: (x) => 1 / x,
  powScalar: Math.pow,
  addScalar: (x, p) => x + p,
  mulScalar: (x, p) => x * p,
  // PyTorch's softplus (β = 1, threshold 20).
  softplus: (x) => (x > 20 ? x : Math.log1p(Math.exp(x))),
};

Deno.test("expr: every unary op's expression is its documented function", () => {
  assert.deepEqual(Object.keys(UNARY_EXPRS).sort(), [...UNARY_OPS].sort());
  const xs = [-40, -7, -3.5, -1, -0.3, 0, 0.2, 1, 2.5, 6, 19.5, 21, NaN, Infinity, -Infinity];
  for (const name of UNARY_OPS) {
    const ref = REFERENCE[name];
    assert.ok(ref, `unary op '${name}' has no reference function in this test`);
    const f = compileJs(UNARY_EXPRS[name]);
    for (const x of xs) {
      const p = name === "powScalar" ? 1.5 : 0.75;
      if (name === "powScalar" && x < 0) continue; // Math.pow(x<0, 1.5) is NaN either way
      const got = f(x, 0, p);
      const want = ref(x, p);
      if (Number.isNaN(want)) assert.ok(Number.isNaN(got), `${name}(${x}) = ${got}, want NaN`);
      else {
        // gelu is computed as x·σ(2u), the reference as 0.5x(1 + tanh u): equal to rounding
        // (relative, or absolute where the reference cancels).
        assert.ok(
          Object.is(got, want) || Math.abs(got - want) <= 1e-14 * Math.max(1, Math.abs(want)) ||
            Math.abs(got - want) <= 1e-12 * Math.abs(want),
          `${name}(${x}) = ${got}, want ${want}`,
        );
      }
    }
  }
});

Deno.test("expr: every binary op's expression is its documented function", () => {
  assert.deepEqual(Object.keys(BINARY_EXPRS).sort(), [...BINARY_OPS].sort());
  const ref: Record<string, (a: number, b: number) => number> = {
    add: (a, b) => a + b,
    sub: (a, b) => a - b,
    mul: (a, b) => a * b,
    div: (a, b) => a / b,
    max: (a, b) => (a >= b ? a : b),
    min: (a, b) => (a <= b ? a : b),
    pow: Math.pow,
    gt: (a, b) => (a > b ? 1 : 0),
    ge: (a, b) => (a >= b ? 1 : 0),
    lt: (a, b) => (a < b ? 1 : 0),
    eq: (a, b) => (a === b ? 1 : 0),
  };
  const vs = [-2, -0, 0, 0.5, 3, NaN, Infinity, -Infinity];
  for (const name of BINARY_OPS) {
    const f = compileJs(BINARY_EXPRS[name]);
    for (const a of vs) {
      for (const b of vs) {
        const got = f(a, b, 0), want = ref[name](a, b);
        assert.ok(Object.is(got, want), `${name}(${a}, ${b}) = ${got}, want ${want}`);
      }
    }
  }
});

Deno.test("expr: the AdamW expression is PyTorch's AdamW step", () => {
  const hp = { lr: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-6, weightDecay: 0.1, step: 3 };
  const fns = Object.entries(ADAMW.outputs).map(([k, e]) =>
    [k, compileArgs(e, [...ADAMW.inputs, ...ADAMW.scalars])] as const
  );
  for (const [w, g, m, v] of [[0.5, -0.2, 0.01, 0.003], [-2, 3, -0.4, 0.2], [0, 0, 0, 0]]) {
    // torch.optim.AdamW: decay, moments, bias-corrected step.
    const bc1 = 1 - hp.beta1 ** hp.step, bc2 = 1 - hp.beta2 ** hp.step;
    const m1 = hp.beta1 * m + (1 - hp.beta1) * g, v1 = hp.beta2 * v + (1 - hp.beta2) * g * g;
    const w1 = w * (1 - hp.lr * hp.weightDecay) -
      (hp.lr / bc1) * m1 / (Math.sqrt(v1 / bc2) + hp.eps);
    const want: Record<string, number> = { w: w1, m: m1, v: v1 };
    const args = [w, g, m, v, ...adamwScalars(hp)];
    for (const [k, f] of fns) {
      assert.ok(Math.abs(f(args) - want[k]) <= 1e-15 * Math.max(1, Math.abs(want[k])), `${k}`);
    }
  }
});

Deno.test("expr: generated and closure evaluators give the same bits (f64 and f32)", () => {
  const same = (a: number, b: number) => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
  for (const [name, e] of samples()) {
    for (const f32 of [false, true]) {
      const gen = compileJs(e, { f32 }), clo = compileJs(e, { f32, closures: true });
      XS.forEach((x, i) => {
        const a = gen(x, YS[i], PARAM), b = clo(x, YS[i], PARAM);
        assert.ok(same(a, b), `${name} (f32 ${f32}) at ${x}, ${YS[i]}: ${a} vs ${b}`);
      });
    }
  }
  const gen = compileMapJs(ADAMW), clo = compileMapJs(ADAMW, { closures: true });
  const args = [
    0.5,
    -0.2,
    0.01,
    0.003,
    ...adamwScalars({ lr: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-6, weightDecay: 0.1, step: 3 }),
  ];
  const o1 = new Float64Array(3), o2 = new Float64Array(3);
  gen(args, o1);
  clo(args, o2);
  assert.deepEqual([...o1], [...o2]);
});

Deno.test("expr: heavy is derived from the transcendental functions an op calls", () => {
  const heavy = UNARY_OPS.filter((k) => isHeavy(UNARY_EXPRS[k])).sort();
  assert.deepEqual(heavy, ["exp", "gelu", "geluGrad", "log", "powScalar", "softplus", "tanh"]);
  assert.deepEqual(BINARY_OPS.filter((k) => isHeavy(BINARY_EXPRS[k])), ["pow"]);
});

// ---- the compilers agree with the evaluator ----

/** Expressions covering every primitive, the WASM compiler's rewrites and shared nodes. */
function samples(): [string, Num, boolean][] {
  const shared = mul(X, Y);
  const list: [string, Num, boolean][] = [
    ["neg", neg(X), true],
    ["abs", abs(X), true],
    ["sqrt", sqrt(X), true],
    ["exp", exp(X), false],
    ["log", log(X), false],
    ["tanh", tanh(X), false],
    ["add", add(X, Y), true],
    ["sub", sub(X, Y), true],
    ["mul", mul(X, Y), true],
    ["div", div(X, Y), true],
    ["pow", pow(X, Y), false],
    ["param", add(mul(X, P), P), true],
    ["shared node", add(shared, mul(shared, 2)), true],
    ["pmax rewrite", select(gt(X, Y), X, Y), true],
    ["pmin rewrite", select(lt(X, Y), X, Y), true],
    ["ge select", select(ge(X, Y), X, Y), true],
    ["le select", select(le(X, Y), Y, X), true],
    ["eq mask", select(eq(X, Y), 1, 0), true],
    ["ne mask", select(ne(X, Y), 1, 0), true],
    ["mask of x", select(gt(X, 0), X, 0), true],
    ["select −0 (no mask rewrite)", select(gt(X, 0), X, -0), true],
    ["isnan", select(isnan(X), 1, 0), true],
    ["isinf", select(isinf(X), 7, X), true],
    [
      "constants ±∞, NaN, −0",
      select(gt(X, 0), c(Infinity), select(lt(X, 0), c(-Infinity), add(c(NaN), X))),
      true,
    ],
    ["−0 constant", select(ge(X, 0), c(-0), X), true],
  ];
  for (const k of UNARY_OPS) list.push([`unary ${k}`, UNARY_EXPRS[k], false]);
  for (const k of BINARY_OPS) {
    list.push([`binary ${k}`, BINARY_EXPRS[k], !isHeavy(BINARY_EXPRS[k])]);
  }
  return list;
}

const SPECIAL = [
  0,
  -0,
  1,
  -1,
  0.5,
  -2.5,
  3,
  20.5,
  -20.5,
  88,
  -88,
  100,
  -100,
  1e-40,
  -3e-42,
  1.1754943508222875e-38,
  3e38,
  -3e38,
  Infinity,
  -Infinity,
  NaN,
  2,
  7.25,
  -0.75,
];
const XS = Float32Array.from(SPECIAL);
const YS = Float32Array.from(SPECIAL.map((_, i) => SPECIAL[(i * 7 + 3) % SPECIAL.length]));
for (let i = 0; i < XS.length; i += 4) YS[i] = XS[i]; // equal pairs, NaN with NaN among them
const PARAM = 1.5;

/** The evaluator's value in f32 arithmetic (every node rounded to f32). */
function expected(e: Num): Float32Array {
  const f = compileJs(e, { f32: true });
  return Float32Array.from(XS, (x, i) => f(x, YS[i], PARAM));
}

/**
 * Bit-exact (with NaN = NaN, −0 ≠ +0) where `exact`, else close as in the conformance suite;
 * only at the sample indices `at`.
 */
function check(
  got: Float32Array,
  want: Float32Array,
  what: string,
  exact: boolean,
  atol: number,
  at: number[] = [...want.keys()],
) {
  for (const i of at) {
    const where = `${what} at x=${XS[i]}, y=${YS[i]}`;
    if (!exact) assertClose([got[i]], [want[i]], where, 4e-6, atol);
    else {
      const ok = Number.isNaN(want[i]) ? Number.isNaN(got[i]) : Object.is(got[i], want[i]);
      assert.ok(ok, `${where}: got ${got[i]}, want ${want[i]}`);
    }
  }
}

Deno.test("expr: the WebAssembly compiler agrees with the evaluator", async () => {
  const list = samples();
  const n = Math.ceil(XS.length / 4) * 4;
  for (const fma of detectFeatures().relaxedSimd ? [false, true] : [false]) {
    const mod = new ModuleBuilder();
    mod.importMemory({ module: "env", name: "memory", initial: 1, maximum: 1 });
    list.forEach(([, e], k) => {
      mod.addFunction(`f${k}`, ["i32", "i32", "i32", "i32"], [], (f, xp, yp, outp, count) => {
        const i = f.local("i32"), x = f.local("v128"), y = f.local("v128");
        const p = f.local("v128");
        f.set(p, op("f32x4.splat", f32(PARAM)));
        f.forRange(i, i32(0), op("i32.shl", count, i32(2)), 16, () => {
          f.set(x, load("v128.load", op("i32.add", xp, i)));
          f.set(y, load("v128.load", op("i32.add", yp, i)));
          f.do(
            store(
              "v128.store",
              op("i32.add", outp, i),
              emitExpr(f, e, { x, y, param: p }, { fma }),
            ),
          );
        });
      });
    });
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 1 });
    const { instance } = await WebAssembly.instantiate(mod.toBytes() as BufferSource, {
      env: { memory },
    });
    const F = new Float32Array(memory.buffer);
    F.set(XS, 0);
    F.set(YS, 1024);
    list.forEach(([name, e, exact], k) => {
      (instance.exports[`f${k}`] as (...a: number[]) => void)(0, 4096, 8192, n);
      const got = F.slice(2048, 2048 + XS.length);
      check(got, expected(e), `wasm ${name}${fma ? " (fma)" : ""}`, exact, 1e-6);
    });
  }
});

Deno.test({
  name: "expr: the WGSL compiler agrees with the evaluator",
  ...opts,
  async fn(t) {
    if (!(await adapterInfo())) {
      t.step({ name: "skipped: no WebGPU adapter (mesa-vulkan-drivers)", ignore: true, fn() {} });
      return;
    }
    const ctx = await openDevice();
    const dev = ctx.device;
    const buf = (data: Float32Array | null, n: number, usage: number) => {
      const b = dev.createBuffer({ size: n * 4, usage, mappedAtCreation: data !== null });
      if (data) {
        new Float32Array(b.getMappedRange()).set(data);
        b.unmap();
      }
      return b;
    };
    const S = GPUBufferUsage.STORAGE, n = XS.length;
    const xb = buf(XS, n, S), yb = buf(YS, n, S);
    try {
      for (const [name, e, exact] of samples()) {
        const code = `${EXPR_WGSL_PRELUDE}
${compileWgsl("f_", e)}
@group(0) @binding(0) var<storage, read> xs: array<f32>;
@group(0) @binding(1) var<storage, read> ys: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  if (id.x >= ${n}u) { return; }
  out[id.x] = f_(xs[id.x], ys[id.x], ${PARAM});
}`;
        const ob = buf(null, n, S | GPUBufferUsage.COPY_SRC);
        const rb = buf(null, n, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
        const pipeline = dev.createComputePipeline({
          layout: "auto",
          compute: { module: dev.createShaderModule({ code }), entryPoint: "main" },
        });
        const group = dev.createBindGroup({
          layout: pipeline.getBindGroupLayout(0),
          entries: [xb, yb, ob].map((b, i) => ({ binding: i, resource: { buffer: b } })),
        });
        const enc = dev.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(1);
        pass.end();
        enc.copyBufferToBuffer(ob, 0, rb, 0, n * 4);
        dev.queue.submit([enc.finish()]);
        await rb.mapAsync(GPUMapMode.READ);
        const got = new Float32Array(rb.getMappedRange().slice(0));
        rb.unmap();
        ob.destroy();
        rb.destroy();
        ctx.check();
        // GPUs may flush subnormals to zero (WGSL allows it): compare those as zero.
        const want = expected(e).map((v) => (Math.abs(v) < 1.1754943508222875e-38 ? 0 : v));
        const g = got.map((v) => (Math.abs(v) < 1.1754943508222875e-38 ? 0 : v));
        const subnormalIn = (i: number) =>
          [XS[i], YS[i]].some((v) => v !== 0 && Math.abs(v) < 1.1754943508222875e-38);
        const keep = [...want.keys()].filter((i) => !subnormalIn(i));
        check(g, want, `wgsl ${name}`, exact, 2e-6, keep);
      }
    } finally {
      xb.destroy();
      yb.destroy();
      dev.destroy();
    }
  },
});
