/**
 * Fused AdamW step, in place on the parameter and both moment buffers.
 *
 * Same order of operations as the CPU reference (PyTorch AdamW): decoupled decay first, then
 * the moment updates, then the bias-corrected step. Step-dependent scalars (bias corrections,
 * lr/bc1) are computed on the host in f64 and passed as f32.
 *
 * @module
 */
import type { AdamWParams } from "../backend.ts";
import { type BufferArg, entry1d, f32Bits, grid1, type KernelCall } from "./dispatch.ts";

const WG = 256;

const ADAMW = `${entry1d(WG)}
  if (gid >= prm(0u)) { return; }
  let lrWd = prmf(1u);
  let b1 = prmf(2u);
  let omb1 = prmf(3u);
  let b2 = prmf(4u);
  let omb2 = prmf(5u);
  let bc2 = prmf(6u);
  let eps = prmf(7u);
  let stepSize = prmf(8u);
  let g = grad_ld(gid);
  var p = param_ld(gid);
  p = p - lrWd * p;
  let m = b1 * m_ld(gid) + omb1 * g;
  let v = b2 * v_ld(gid) + omb2 * g * g;
  m_st(gid, m);
  v_st(gid, v);
  p = p - stepSize * (m / (sqrt(v / bc2) + eps));
  param_st(gid, p);
}`;

/** One AdamW step over `length` elements; buffers named param, grad, m, v. */
export function adamwCall(
  bufs: { param: BufferArg; grad: BufferArg; m: BufferArg; v: BufferArg },
  length: number,
  p: AdamWParams,
  maxDim = 65535,
): KernelCall {
  const bc1 = 1 - Math.pow(p.beta1, p.step);
  const bc2 = 1 - Math.pow(p.beta2, p.step);
  return {
    label: "adamw",
    body: ADAMW,
    buffers: [bufs.param, bufs.grad, bufs.m, bufs.v],
    params: [
      length,
      f32Bits(p.lr * p.weightDecay),
      f32Bits(p.beta1),
      f32Bits(1 - p.beta1),
      f32Bits(p.beta2),
      f32Bits(1 - p.beta2),
      f32Bits(bc2),
      f32Bits(p.eps),
      f32Bits(p.lr / bc1),
    ],
    grid: grid1(Math.ceil(length / WG), maxDim),
  };
}
