/**
 * Compiles a row kernel (`../row_kernels.ts`: softmax, log-softmax, layer norm, cross-entropy
 * and their backwards) to one function of the kernel module over rows [r0, r1), so that threads
 * split rows.
 *
 * Per row: the picks (one scalar load each), then the reductions grouped into passes (consecutive
 * reductions not reading each other share one pass), then one pass writing the outputs, then the
 * per-row outputs. Each pass is one f32x4 body for the main loop and the tail
 * (`rowLoopSteps`), its element expressions compiled by `emitExprs` (`gen_expr.ts`). Row values
 * (nodes reading only per-row inputs, indices, scalars, step results and `COLS`) are computed once
 * per row in f64 scalar code before the loops (exp, log, tanh and pow through the f32 emitters
 * of `gen_math.ts`) and reach the element code as splatted f32x4 locals. Sums accumulate in f64
 * lanes (`F64Sum`), maxima in f32 with `pmax` (which skips NaN; a NaN element still reaches the
 * sums that follow). A select whose condition is a row value is decided once per row: the pass
 * is generated for each side (up to two such conditions; more become per-element masks). In a
 * pass that only writes outputs, a select on `COL = <row value>` (a one-hot column, as the
 * target of cross-entropy's gradient) takes its false side in the loops and the element at that
 * column is then computed again with the true side.
 *
 * Column sums go into per-thread f64 accumulators (`[colSums, cols]` f64 per thread), added in
 * thread order by `acc_finish`: the same bits on every call for a given thread count (across
 * thread counts, within an f32 rounding).
 *
 * The function's parameters: one pointer per buffer of {@link rowKernelBuffers}, `cols` (i32),
 * the scalars (f64, in order), `r0`, `r1` (i32), and the accumulator pointer when the kernel has
 * column sums.
 *
 * @module
 */

import {
  type Expr,
  f32x4,
  f64,
  i32,
  lane,
  load,
  type Local,
  type ModuleBuilder,
  op,
  select as wasmSelect,
  shuffle32,
  store,
  type ValType,
} from "./builder.ts";
import type { Gen } from "./gen.ts";
import { emitExprs } from "./gen_expr.ts";
import { expV, kf32, logV, type MathOptions, powV, tanhV } from "./gen_math.ts";
import {
  F64Sum,
  hreduce32,
  type RowLoopStep,
  rowLoopSteps,
  rowPointers,
  vl,
} from "./gen_row_loops.ts";
import { type Bool, children, type Node, type Num, useCounts, withChildren } from "../expr.ts";
import { reductionPasses, type RowKernel, type RowReduce } from "../row_kernels.ts";

/**
 * The buffers of a row kernel in the order of its function's pointer parameters: row inputs,
 * column inputs, per-row inputs, indices, outputs (and kept reductions that are not outputs),
 * per-row outputs. (Column sums are written by `acc_finish` from the accumulators.)
 */
export function rowKernelBuffers(k: RowKernel): string[] {
  return [
    ...k.rowInputs,
    ...k.colInputs,
    ...k.perRow,
    ...k.indices,
    ...rowOutputBuffers(k),
    ...Object.keys(k.rowOutputs),
  ];
}

/** The `[rows, cols]` buffers a kernel writes: its outputs, then kept reductions not among them. */
function rowOutputBuffers(k: RowKernel): string[] {
  const outs = Object.keys(k.outputs);
  for (const s of k.steps) {
    if (s.kind !== "pick" && s.keep !== undefined && !outs.includes(s.keep)) outs.push(s.keep);
  }
  return outs;
}

/** Every expression of a kernel (for `isHeavy`). */
export function rowKernelExprs(k: RowKernel): Num[] {
  return [
    ...k.steps.flatMap((s) => (s.kind === "pick" ? [] : [s.of])),
    ...Object.values(k.outputs),
    ...Object.values(k.rowOutputs),
    ...Object.values(k.colSums),
  ];
}

const F64_UNARY = { neg: "f64.neg", abs: "f64.abs", sqrt: "f64.sqrt" } as const;
const F64_BINARY = { add: "f64.add", sub: "f64.sub", mul: "f64.mul", div: "f64.div" } as const;
const F64_CMP = {
  gt: "f64.gt",
  ge: "f64.ge",
  lt: "f64.lt",
  le: "f64.le",
  eq: "f64.eq",
  ne: "f64.ne",
} as const;

/** Most row conditions a pass is generated for on each side (2ⁿ copies of its loops). */
const MAX_ROW_CONDITIONS = 2;

/** Adds the function `name` computing the row kernel `k` to the module. */
export function addRowKernel(mod: ModuleBuilder, g: Gen, name: string, k: RowKernel): void {
  const P = g.ptrParam, I = "i32" as const;
  const mo: MathOptions = { fma: g.opts.relaxed };
  const buffers = rowKernelBuffers(k);
  const writes = rowOutputBuffers(k);
  const colSums = Object.keys(k.colSums);
  const params: ValType[] = [
    ...buffers.map(() => P),
    I,
    ...k.scalars.map(() => "f64" as const),
    I,
    I,
    ...(colSums.length > 0 ? [P] : []),
  ];
  for (const s of k.steps) {
    if (s.kind === "pick" && (!k.rowInputs.includes(s.from) || !k.indices.includes(s.at))) {
      throw new Error(`${name}: pick '${s.name}' needs a row input and an index buffer`);
    }
  }
  const rowNames = new Set([
    ...k.perRow,
    ...k.indices,
    ...k.scalars,
    ...k.steps.map((s) => s.name),
    "cols",
  ]);
  const rowMemo = new Map<Node, boolean>();
  const isRow = (n: Node): boolean => {
    let r = rowMemo.get(n);
    if (r === undefined) {
      if (n.kind === "input") r = rowNames.has(n.name);
      else if (n.kind === "u32const" || n.kind === "u32input") r = false;
      else r = children(n).every(isRow);
      rowMemo.set(n, r);
    }
    return r;
  };

  mod.addFunction(name, params, [], (f, ...ps) => {
    const base = new Map<string, Local>();
    buffers.forEach((b, j) => base.set(b, g.ptrLocal(f, ps[j])));
    let pi = buffers.length;
    const cols = ps[pi++];
    const scalars = new Map(k.scalars.map((s) => [s, ps[pi++]]));
    const r0 = ps[pi++], r1 = ps[pi++];
    const acc = colSums.length > 0 ? g.ptrLocal(f, ps[pi]) : null;
    // Column sum j accumulates at acc + 8·(j·cols + c).
    const accAt = colSums.map((_, j) => {
      const l = f.local(g.ptr);
      f.set(l, g.padd(acc!, g.pmul(g.idx(cols, 3), g.pconst(j))));
      return l;
    });
    const r = f.local(I);
    const c = f.local(I);
    const colsF = f.local("f64");
    f.set(colsF, op("f64.convert_i32_u", cols));
    // Row pointers of the [rows, cols] buffers.
    const rowPtr = new Map<string, Local>();
    for (const b of [...k.rowInputs, ...writes]) rowPtr.set(b, f.local(g.ptr));

    f.forRange(r, r0, r1, 1, () => {
      rowPointers(f, g, r, cols, [...rowPtr].map(([b, l]) => [l, base.get(b)!]));
      // ---- row values: f64 (Num) or i32 (Bool) scalars, each computed once per row ----
      const rowVal = new Map<Node, Local>();
      const leaf = new Map<string, Expr>([["cols", colsF], ...scalars]);
      for (const s of k.perRow) {
        leaf.set(s, op("f64.promote_f32", load("f32.load", g.at(base.get(s)!, r))));
      }
      for (const s of k.indices) {
        leaf.set(s, op("f64.convert_i32_s", load("i32.load", g.at(base.get(s)!, r))));
      }
      const viaF32 = (a: Expr, fn: (v: Expr) => Expr): Expr =>
        op(
          "f64.promote_f32",
          lane("f32x4.extract_lane", fn(op("f32x4.splat", op("f32.demote_f64", a))), 0),
        );
      const scalar = (n: Node): Expr => {
        if (n.kind === "const") return f64(n.value);
        const hit = rowVal.get(n);
        if (hit) return hit;
        let e: Expr;
        switch (n.kind) {
          case "input": {
            const v = leaf.get(n.name);
            if (v === undefined) throw new Error(`${name}: '${n.name}' read before it is computed`);
            e = v;
            break;
          }
          case "unary":
            if (n.op === "exp") e = viaF32(scalar(n.a), (v) => expV(f, v, mo));
            else if (n.op === "log") e = viaF32(scalar(n.a), (v) => logV(f, v, mo));
            else if (n.op === "tanh") e = viaF32(scalar(n.a), (v) => tanhV(f, v, mo));
            else e = op(F64_UNARY[n.op], scalar(n.a));
            break;
          case "binary":
            if (n.op === "pow") {
              const b = vl(f, op("f32x4.splat", op("f32.demote_f64", scalar(n.b))));
              e = viaF32(scalar(n.a), (v) => powV(f, v, b, mo));
            } else e = op(F64_BINARY[n.op], scalar(n.a), scalar(n.b));
            break;
          case "select":
            e = wasmSelect(scalar(n.a), scalar(n.b), scalar(n.cond));
            break;
          case "cmp":
            e = op(F64_CMP[n.op], scalar(n.a), scalar(n.b));
            break;
          case "isnan": {
            const a = scalar(n.a);
            e = op("f64.ne", a, a);
            break;
          }
          case "isinf":
            e = op("f64.eq", op("f64.abs", scalar(n.a)), f64(Infinity));
            break;
          default:
            throw new Error(`${name}: integer nodes are not row values`);
        }
        const l = f.local(n.kind === "cmp" || n.kind === "isnan" || n.kind === "isinf" ? I : "f64");
        f.set(l, e);
        rowVal.set(n, l);
        return l;
      };
      // Their f32x4 splats, for the element code.
      const splats = new Map<Node, Local>();
      const splat = (n: Node): Local => {
        let l = splats.get(n);
        if (!l) {
          const s = scalar(n);
          const isBool = n.kind === "cmp" || n.kind === "isnan" || n.kind === "isinf";
          l = vl(
            f,
            isBool ? op("i32x4.splat", op("i32.sub", i32(0), s)) : op(
              "f32x4.splat",
              op("f32.demote_f64", s),
            ),
          );
          splats.set(n, l);
        }
        return l;
      };

      // ---- picks ----
      for (const s of k.steps) {
        if (s.kind !== "pick") continue;
        const at = f.local(I);
        const v = f.local("f64");
        f.set(at, load("i32.load", g.at(base.get(s.at)!, r)));
        f.set(v, f64(NaN));
        f.if(op("i32.lt_u", at, cols), () => {
          f.set(v, op("f64.promote_f32", load("f32.load", g.at(rowPtr.get(s.from)!, at))));
        });
        leaf.set(s.name, v);
      }

      // ---- passes ----
      const results = new Map<RowReduce, Local>();
      const passes = reductionPasses(k);
      passes.forEach((red, j) => {
        const sums = j === 0 ? colSums : [];
        emitPass(red, {}, sums);
        for (const s of red) leaf.set(s.name, results.get(s)!);
      });
      if (Object.keys(k.outputs).length > 0 || (passes.length === 0 && colSums.length > 0)) {
        emitPass([], k.outputs, passes.length === 0 ? colSums : []);
      }
      for (const [o, e] of Object.entries(k.rowOutputs)) {
        f.do(store("f32.store", g.at(base.get(o)!, r), op("f32.demote_f64", scalar(e))));
      }

      /**
       * One pass over the row: reduces `red`, writes `outputs` and adds the column sums named
       * in `sumNames`.
       */
      function emitPass(
        red: RowReduce[],
        outputs: Readonly<Record<string, Num>>,
        sumNames: string[],
      ): void {
        const outNames = Object.keys(outputs);
        const roots: Num[] = [
          ...red.map((s) => s.of),
          ...outNames.map((o) => outputs[o]),
          ...sumNames.map((s) => k.colSums[s]),
        ];
        // Row conditions: the pass is generated for each side.
        const conds: Bool[] = [];
        const oneHot: { cond: Bool; at: Num }[] = [];
        const pure = red.length === 0 && sumNames.length === 0;
        const reads = new Set<string>();
        for (const n of useCounts(...roots).keys()) {
          if (n.kind === "input") reads.add(n.name);
          if (n.kind !== "select" || isRow(n)) continue;
          if (isRow(n.cond)) {
            if (!conds.includes(n.cond)) conds.push(n.cond);
          } else if (n.cond.kind === "cmp" && n.cond.op === "eq") {
            const { a, b } = n.cond;
            const at = isCol(a) && isRow(b) ? b : isCol(b) && isRow(a) ? a : null;
            if (at && !oneHot.some((h) => h.cond === n.cond)) oneHot.push({ cond: n.cond, at });
          }
        }
        const fixedConds = conds.slice(0, MAX_ROW_CONDITIONS);
        // One-hot patching recomputes an element: only where the pass reads nothing it writes.
        const hot = pure && oneHot.length === 1 && !outNames.some((o) => reads.has(o))
          ? oneHot[0]
          : null;
        // Rewrites the roots for given sides of the conditions, with row values as inputs.
        const hoisted = new Map<Node, string>();
        const rewrite = (fixed: Map<Bool, boolean>): Num[] => {
          const memo = new Map<Node, Node>();
          const go = (n: Node): Node => {
            let m = memo.get(n);
            if (m) return m;
            if (n.kind === "const") m = n;
            else if (isRow(n)) {
              let key = hoisted.get(n);
              if (key === undefined) hoisted.set(n, key = `$row${hoisted.size}`);
              m = { kind: "input", name: key };
            } else if (n.kind === "select" && fixed.has(n.cond)) {
              m = go(fixed.get(n.cond) ? n.a : n.b);
            } else m = simplify(withChildren(n, children(n).map(go)));
            memo.set(n, m);
            return m;
          };
          return roots.map((n) => go(n) as Num);
        };
        // Every variant, before any code, so that the row values are computed at row level.
        const variants = new Map<string, Num[]>();
        const sides = (fixed: Map<Bool, boolean>, i: number): void => {
          if (i === fixedConds.length) {
            const key = fixedConds.map((cd) => (fixed.get(cd) ? 1 : 0)).join("");
            if (!hot) variants.set(key, rewrite(fixed));
            else {
              variants.set(`${key}+`, rewrite(new Map([...fixed, [hot.cond, true]])));
              variants.set(`${key}-`, rewrite(new Map([...fixed, [hot.cond, false]])));
            }
            return;
          }
          for (const side of [true, false]) {
            sides(new Map([...fixed, [fixedConds[i], side]]), i + 1);
          }
        };
        sides(new Map(), 0);
        const env: Record<string, Expr> = {};
        for (const [n, key] of hoisted) env[key] = splat(n);
        // The conditions' values, at row level too (not inside a branch).
        const condVals = fixedConds.map(scalar);
        const hotAt = hot ? scalar(hot.at) : null;
        // Accumulators.
        const sums = red.map((s) => (s.kind === "sum" ? F64Sum.local(f) : null));
        const maxes = red.map((s) => (s.kind === "max" ? f.local("v128") : null));
        red.forEach((_, i) => {
          sums[i]?.zero(f);
          if (maxes[i]) f.set(maxes[i]!, f32x4(-Infinity));
        });
        const colv = f.local("v128");
        const usesCol = [...variants.values()].some((v) => [...useCounts(...v).keys()].some(isCol));

        const body = (step: RowLoopStep, exprs: Num[]) => {
          const vars: Record<string, Expr> = { ...env };
          const used = new Set<string>();
          for (const n of useCounts(...exprs).keys()) if (n.kind === "input") used.add(n.name);
          // Loads in the order of the kernel's buffers.
          const order = [...k.rowInputs, ...k.colInputs, ...writes, "col"];
          for (const b of [...used].sort((p, q) => order.indexOf(p) - order.indexOf(q))) {
            if (Object.hasOwn(vars, b)) continue;
            if (b === "col") {
              vars.col = step.vector ? colv : vl(f, op("f32x4.splat", op("f32.convert_i32_u", c)));
            } else if (rowPtr.has(b)) vars[b] = vl(f, step.ld(rowPtr.get(b)!));
            else if (k.colInputs.includes(b)) vars[b] = vl(f, step.ld(base.get(b)!));
            else throw new Error(`${name}: '${b}' is not an element value`);
          }
          const vals = emitExprs(f, exprs, vars, mo);
          let at = 0;
          red.forEach((s, i) => {
            const v = vl(f, vals[at++]);
            if (s.keep !== undefined) step.st(rowPtr.get(s.keep)!, v);
            if (sums[i]) sums[i]!.add(f, step, v);
            else f.set(maxes[i]!, op("f32x4.pmax", maxes[i]!, v));
          });
          for (const o of outNames) step.st(rowPtr.get(o)!, vals[at++]);
          sumNames.forEach((s) => {
            const j = colSums.indexOf(s);
            const v = vl(f, vals[at++]);
            const p = g.padd(accAt[j], g.idx(c, 3));
            if (step.vector) {
              for (const hi of [false, true]) {
                f.do(store(
                  "v128.store",
                  p,
                  op(
                    "f64x2.add",
                    load("v128.load", p, hi ? 16 : 0, 0),
                    op("f64x2.promote_low_f32x4", hi ? shuffle32(v, v, [2, 3, 0, 1]) : v),
                  ),
                  hi ? 16 : 0,
                  0,
                ));
              }
            } else {
              f.do(store(
                "f64.store",
                p,
                op(
                  "f64.add",
                  load("f64.load", p),
                  op("f64.promote_f32", lane("f32x4.extract_lane", v, 0)),
                ),
              ));
            }
          });
          if (step.vector && used.has("col")) f.set(colv, op("f32x4.add", colv, kf32(f, 4)));
        };

        const loops = (key: string) => {
          if (usesCol) f.set(colv, f32x4(0, 1, 2, 3));
          const exprs = variants.get(hot ? `${key}-` : key)!;
          rowLoopSteps(f, g, c, cols, (step) => body(step, exprs));
          if (hot && hotAt) {
            // The element at the one-hot column, if it is one, with the true side.
            const t = hotAt;
            f.if(
              op(
                "i32.and",
                op("f64.eq", t, op("f64.trunc", t)),
                op("i32.and", op("f64.ge", t, f64(0)), op("f64.lt", t, colsF)),
              ),
              () => {
                f.set(c, op("i32.trunc_f64_s", t));
                body({
                  vector: false,
                  ld: (b) => load("v128.load32_splat", g.at(b, c)),
                  st: (b, v) =>
                    f.do(store("f32.store", g.at(b, c), lane("f32x4.extract_lane", v, 0))),
                }, variants.get(`${key}+`)!);
              },
            );
          }
        };
        const branch = (i: number, key: string) => {
          if (i === fixedConds.length) return loops(key);
          f.if(condVals[i], () => branch(i + 1, `${key}1`), () => branch(i + 1, `${key}0`));
        };
        branch(0, "");

        red.forEach((s, i) => {
          const v = f.local("f64");
          if (sums[i]) f.set(v, sums[i]!.total());
          else f.set(v, op("f64.promote_f32", hreduce32(maxes[i]!, "f32.max")));
          results.set(s, v);
        });
      }
    });
  });
}

/**
 * `n` without an operation that leaves its operand unchanged (x − (+0), x·1, x/1), as a fixed
 * side of a select leaves them (x + (+0) stays: it turns −0 into +0).
 */
function simplify(n: Node): Node {
  if (n.kind !== "binary") return n;
  const is = (e: Num, v: number) => e.kind === "const" && Object.is(e.value, v);
  if ((n.op === "sub" && is(n.b, 0)) || ((n.op === "mul" || n.op === "div") && is(n.b, 1))) {
    return n.a;
  }
  if (n.op === "mul" && is(n.a, 1)) return n.b;
  return n;
}

/** Whether a node is the column index {@link COL}. */
function isCol(n: Node): boolean {
  return n.kind === "input" && n.name === "col";
}

/**
 * Adds `acc_finish(acc, len, parts, stride, out)`: out[i] = f32(Σ_k acc[k·stride + i]) for
 * i < len, k < parts, over f64 accumulators (the column sums of the row kernels, in thread order).
 */
export function addAccFinish(mod: ModuleBuilder, g: Gen): void {
  const P = g.ptrParam, I = "i32";
  mod.addFunction("acc_finish", [P, I, I, I, P], [], (f, accP, len, parts, stride, outP) => {
    const acc = g.ptrLocal(f, accP);
    const out = g.ptrLocal(f, outP);
    const i = f.local(I);
    const kk = f.local(I);
    const s = f.local("f64");
    f.forRange(i, i32(0), len, 1, () => {
      f.set(s, f64(0));
      f.forRange(kk, i32(0), parts, 1, () => {
        f.set(
          s,
          op(
            "f64.add",
            s,
            load("f64.load", g.padd(acc, g.idx(op("i32.add", op("i32.mul", kk, stride), i), 3))),
          ),
        );
      });
      f.do(store("f32.store", g.at(out, i), op("f32.demote_f64", s)));
    });
  });
}
