/**
 * Reduction kernels over the middle axis of a contiguous `[outer, size, inner]` buffer.
 *
 * Two strategies, picked by shape:
 * - tree: one workgroup per output; each invocation folds a strided slice of the axis, then a
 *   shared-memory tree combines the 256 partials. Used for long axes with few outputs (row sums,
 *   global sums), where one thread per output would leave the GPU idle.
 * - column: one invocation per output looping over the axis; with inner > 1 neighbouring
 *   invocations read neighbouring addresses (coalesced). Used when there are many outputs.
 *
 * The arithmetic is not written here: the fold and the join of partials are the op's `combine`
 * in `REDUCTIONS` (`../expr.ts`), started from its `identity`; argmax replaces its best by
 * `ARGMAX_TAKES`. All are rendered to WGSL by `wgslFunction` (`./expr.ts`).
 *
 * @module
 */
import type { ReduceOp } from "../backend.ts";
import { ARGMAX_TAKES, c, REDUCTIONS } from "../expr.ts";
import { type BufferArg, entry1d, grid1, type KernelCall } from "./dispatch.ts";
import { EXPR_WGSL_PRELUDE, wgslFunction } from "./expr.ts";

const TREE_WG = 256;
const COL_WG = 256;

const f32 = (input: string, param: string) => ({ input, param, type: "f32" });

/**
 * The arithmetic of an op, from `REDUCTIONS` / `ARGMAX_TAKES`: `comb_(acc, x)` folds `x` into
 * `acc` (and joins two partials), `ident_()` starts a fold; `takes_(x, best)` is argmax's rule.
 * A NaN accumulator stays NaN in max/min because `x > acc` is false then (comparisons compile
 * ordered); a NaN element is caught by its bits (`isnan_`), not by a comparison.
 */
function opFns(op: ReduceOp | "argmax"): string {
  if (op === "argmax") {
    const args = [f32("x", "x"), f32("best", "best")];
    return `${EXPR_WGSL_PRELUDE}\n${wgslFunction("takes_", ARGMAX_TAKES, args, "bool")}`;
  }
  const r = REDUCTIONS[op];
  const ident = wgslFunction("ident_", c(r.identity), [], "f32");
  const comb = wgslFunction("comb_", r.combine, [f32("acc", "acc"), f32("x", "x")], "f32");
  return `${EXPR_WGSL_PRELUDE}\n${ident}\n${comb}`;
}

/** Whether the tree strategy suits a shape. */
export function useTree(outer: number, size: number, inner: number): boolean {
  return size >= 32 && (inner === 1 || outer * inner <= 4096);
}

function treeBody(op: ReduceOp | "argmax"): string {
  const arg = op === "argmax";
  // Argmax: every invocation scans from element 0 (`best` = element 0, index 0), as the rule
  // says, then its strided slice in index order; the partials are joined in index order (the
  // later one replaces the earlier when it is taken). Starting all of them at element 0 keeps a
  // leading NaN (never replaced) and no other NaN (never taken) in every partial.
  const fold = arg ? "if (takes_(v, acc)) { acc = v; ai = k; }" : "acc = comb_(acc, v);";
  const join = arg
    ? `let later = si[lid + s] > si[lid];
      let ev = select(sv[lid + s], sv[lid], later);
      let ei = select(si[lid + s], si[lid], later);
      let lv = select(sv[lid], sv[lid + s], later);
      let li = select(si[lid], si[lid + s], later);
      let take = takes_(lv, ev);
      sv[lid] = select(ev, lv, take);
      si[lid] = select(ei, li, take);`
    : "sv[lid] = comb_(sv[lid], sv[lid + s]);";
  return `${opFns(op)}
var<workgroup> sv: array<f32, ${TREE_WG}>;
${arg ? `var<workgroup> si: array<u32, ${TREE_WG}>;` : ""}
@compute @workgroup_size(${TREE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let o = wid.y * nwg.x + wid.x;
  let size = prm(1u);
  let inner = prm(2u);
  if (o >= prm(0u) * inner) { return; }
  let base = (o / inner) * size * inner + (o % inner);
  // Invocations past the end of the axis keep the identity, which the join leaves unchanged.
  var acc: f32 = ${arg ? "x_ld(base)" : "ident_()"};
  ${arg ? "var ai: u32 = 0u;" : ""}
  for (var k = lid; k < size; k += ${TREE_WG}u) {
    let v = x_ld(base + k * inner);
    ${fold}
  }
  sv[lid] = acc;
  ${arg ? "si[lid] = ai;" : ""}
  workgroupBarrier();
  for (var s = ${TREE_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) {
      ${join}
    }
    workgroupBarrier();
  }
  if (lid == 0u) { out_st(o, ${arg ? "i32(si[0])" : "sv[0]"}); }
}`;
}

function columnBody(op: ReduceOp | "argmax"): string {
  const arg = op === "argmax";
  return `${opFns(op)}
${entry1d(COL_WG)}
  let size = prm(1u);
  let inner = prm(2u);
  if (gid >= prm(0u) * inner) { return; }
  let base = (gid / inner) * size * inner + (gid % inner);
  ${
    arg
      ? `var acc = x_ld(base);
  var ai = 0u;
  for (var k = 1u; k < size; k++) {
    let v = x_ld(base + k * inner);
    if (takes_(v, acc)) { acc = v; ai = k; }
  }
  out_st(gid, i32(ai));`
      : `var acc = ident_();
  for (var k = 0u; k < size; k++) { acc = comb_(acc, x_ld(base + k * inner)); }
  out_st(gid, acc);`
  }
}`;
}

const bodies = new Map<string, string>();
function cached(key: string, make: () => string): string {
  let b = bodies.get(key);
  if (b === undefined) bodies.set(key, b = make());
  return b;
}

/** A reduction (or argmax) of `x` seen as [outer, size, inner] into `out` [outer, inner]. */
export function reduceCall(
  op: ReduceOp | "argmax",
  x: BufferArg,
  out: BufferArg,
  outer: number,
  size: number,
  inner: number,
  maxDim = 65535,
): KernelCall {
  const outputs = outer * inner;
  const tree = useTree(outer, size, inner);
  return {
    label: op === "argmax" ? "argmax" : `reduce.${op}`,
    body: tree ? cached(`t${op}`, () => treeBody(op)) : cached(`c${op}`, () => columnBody(op)),
    buffers: [x, out],
    params: [outer, size, inner],
    grid: grid1(tree ? outputs : Math.ceil(outputs / COL_WG), maxDim),
  };
}
