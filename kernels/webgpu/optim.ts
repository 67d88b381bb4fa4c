/**
 * Fused AdamW step, in place on the parameter and both moment buffers.
 *
 * The arithmetic is the expression `ADAMW` of `../expr.ts` (PyTorch AdamW), shared with every
 * backend; its step-dependent scalars (bias corrections, lr/bc1) are computed on the host in
 * f64 and passed as f32.
 *
 * @module
 */
import type { AdamWParams } from "../backend.ts";
import { ADAMW, adamwScalars } from "../expr.ts";
import { compileWgslMap, EXPR_WGSL_PRELUDE } from "./expr.ts";
import { type BufferArg, entry1d, f32Bits, grid1, type KernelCall } from "./dispatch.ts";

const WG = 256;

/** The step compiled from its expression: buffers param, grad, m, v; the scalars in order. */
const ADAMW_WGSL = `${EXPR_WGSL_PRELUDE}
${entry1d(WG)}
  if (gid >= prm(0u)) { return; }
${ADAMW.scalars.map((s, k) => `  let ${s} = prmf(${k + 1}u);`).join("\n")}
  let w = param_ld(gid);
  let g = grad_ld(gid);
  let m = m_ld(gid);
  let v = v_ld(gid);
${compileWgslMap(ADAMW).join("\n")}
  param_st(gid, out_w);
  m_st(gid, out_m);
  v_st(gid, out_v);
}`;

/** One AdamW step over `length` elements; buffers named param, grad, m, v. */
export function adamwCall(
  bufs: { param: BufferArg; grad: BufferArg; m: BufferArg; v: BufferArg },
  length: number,
  p: AdamWParams,
  maxDim = 65535,
): KernelCall {
  return {
    label: "adamw",
    body: ADAMW_WGSL,
    buffers: [bufs.param, bufs.grad, bufs.m, bufs.v],
    params: [length, ...adamwScalars(p).map(f32Bits)],
    grid: grid1(Math.ceil(length / WG), maxDim),
  };
}
