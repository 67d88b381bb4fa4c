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
 * @module
 */
import type { ReduceOp } from "../backend.ts";
import { type BufferArg, entry1d, grid1, type KernelCall } from "./dispatch.ts";

const TREE_WG = 256;
const COL_WG = 256;

// Combining expressions; `acc` and `v`. A NaN element makes max and min NaN, as in the
// reference (tested by its bits: WGSL lets compilers assume floats are not NaN).
const IS_NAN_V = "(bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u";
const COMBINE: Record<ReduceOp, string> = {
  sum: "acc + v",
  max: `select(acc, v, v > acc || ${IS_NAN_V})`,
  min: `select(acc, v, v < acc || ${IS_NAN_V})`,
};

/** Whether the tree strategy suits a shape. */
export function useTree(outer: number, size: number, inner: number): boolean {
  return size >= 32 && (inner === 1 || outer * inner <= 4096);
}

function treeBody(op: ReduceOp | "argmax"): string {
  const arg = op === "argmax";
  const comb = arg ? "" : COMBINE[op];
  // Idle invocations start from element 0 of the axis: harmless for max/min/argmax
  // (idempotent) and 0 is the identity of sum.
  const init = op === "sum" ? "0.0" : "x_ld(base)";
  return `
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
  var acc: f32 = ${init};
  ${arg ? "var ai: u32 = 0u;" : ""}
  for (var k = lid; k < size; k += ${TREE_WG}u) {
    let v = x_ld(base + k * inner);
    ${arg ? "if (v > acc) { acc = v; ai = k; }" : `acc = ${comb};`}
  }
  sv[lid] = acc;
  ${arg ? "si[lid] = ai;" : ""}
  workgroupBarrier();
  for (var s = ${TREE_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) {
      ${
    arg
      ? `let v = sv[lid + s];
      let k = si[lid + s];
      if (v > sv[lid] || (v == sv[lid] && k < si[lid])) { sv[lid] = v; si[lid] = k; }`
      : `let v = sv[lid + s];
      let acc = sv[lid];
      sv[lid] = ${comb};`
  }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { out_st(o, ${arg ? "i32(si[0])" : "sv[0]"}); }
}`;
}

function columnBody(op: ReduceOp | "argmax"): string {
  const arg = op === "argmax";
  return `${entry1d(COL_WG)}
  let size = prm(1u);
  let inner = prm(2u);
  if (gid >= prm(0u) * inner) { return; }
  let base = (gid / inner) * size * inner + (gid % inner);
  ${
    op === "sum"
      ? `var acc = 0.0;
  for (var k = 0u; k < size; k++) { acc += x_ld(base + k * inner); }
  out_st(gid, acc);`
      : `var acc = x_ld(base);
  var ai = 0u;
  for (var k = 1u; k < size; k++) {
    let v = x_ld(base + k * inner);
    ${arg ? "if (v > acc) { acc = v; ai = k; }" : `acc = ${COMBINE[op]};`}
  }
  out_st(gid, ${arg ? "i32(ai)" : "acc"});`
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
