/**
 * Fused row kernels over contiguous `[rows, cols]` buffers: softmax / log-softmax and their
 * backward, layer norm and its backward, and the fused cross-entropy with its backward.
 *
 * Row kernels use one 256-invocation workgroup per row: each invocation folds a strided slice
 * of the row, then a shared-memory tree combines the partials (max, then Σexp for softmax;
 * Σx, then Σ(x−μ)² for layer norm, the two-pass variance the CPU reference uses). Per-column
 * sums over rows (layer norm's gw, gb) are done in two deterministic stages: partial sums over
 * chunks of rows, then a sum over the chunks.
 *
 * @module
 */
import { type BufferArg, entry1d, f32Bits, grid1, type KernelCall } from "./dispatch.ts";

const WG = 256;
/** Rows per partial sum in the layer-norm column reduction. */
export const LN_ROW_CHUNK = 64;

const NAN_BITS = 0x7fc00000;

// Shared-memory tree reductions. Must be called from uniform control flow.
const WG_REDUCE = `
var<workgroup> red: array<f32, ${WG}>;
fn wg_sum(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn wg_max(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
`;

const ROW_ENTRY = `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.y * nwg.x + wid.x;
  let rows = prm(0u);
  let cols = prm(1u);
  if (row >= rows) { return; }
  let base = row * cols;`;

// Row max; idle invocations contribute element 0 (max is idempotent).
const ROW_MAX = `
  var m = x_ld(base);
  for (var c = lid; c < cols; c += ${WG}u) { m = max(m, x_ld(base + c)); }
  m = wg_max(m, lid);`;

const SOFTMAX = (log: boolean) =>
  `${WG_REDUCE}
${ROW_ENTRY}
  ${ROW_MAX}
  // A fully masked row (all −inf): use 0 so the row gives NaN-free output, as the CPU does.
  if (m < -3.4028234e38) { m = 0.0; }
  var s = 0.0;
  for (var c = lid; c < cols; c += ${WG}u) { s += exp(x_ld(base + c) - m); }
  s = wg_sum(s, lid);
  let ls = log(s);
  for (var c = lid; c < cols; c += ${WG}u) {
    let v = x_ld(base + c);
    out_st(base + c, ${log ? "v - m - ls" : "exp(v - m) / s"});
  }
}`;

const SOFTMAX_BACKWARD = (log: boolean) =>
  `${WG_REDUCE}
${ROW_ENTRY}
  var s = 0.0;
  for (var c = lid; c < cols; c += ${WG}u) {
    s += ${log ? "g_ld(base + c)" : "x_ld(base + c) * g_ld(base + c)"};
  }
  s = wg_sum(s, lid);
  for (var c = lid; c < cols; c += ${WG}u) {
    let y = x_ld(base + c);
    let g = g_ld(base + c);
    out_st(base + c, ${log ? "g - exp(y) * s" : "y * (g - s)"});
  }
}`;

const LAYER_NORM = `${WG_REDUCE}
${ROW_ENTRY}
  let eps = prmf(2u);
  var s = 0.0;
  for (var c = lid; c < cols; c += ${WG}u) { s += x_ld(base + c); }
  let mu = wg_sum(s, lid) / f32(cols);
  var q = 0.0;
  for (var c = lid; c < cols; c += ${WG}u) { let d = x_ld(base + c) - mu; q += d * d; }
  let rs = 1.0 / sqrt(wg_sum(q, lid) / f32(cols) + eps);
  for (var c = lid; c < cols; c += ${WG}u) {
    out_st(base + c, (x_ld(base + c) - mu) * rs * w_ld(c) + b_ld(c));
  }
  if (lid == 0u) { mean_st(row, mu); rstd_st(row, rs); }
}`;

const LAYER_NORM_BACKWARD_X = `${WG_REDUCE}
${ROW_ENTRY}
  let mu = mean_ld(row);
  let rs = rstd_ld(row);
  var sg = 0.0;
  var sgx = 0.0;
  for (var c = lid; c < cols; c += ${WG}u) {
    let xh = (x_ld(base + c) - mu) * rs;
    let g = g_ld(base + c) * w_ld(c);
    sg += g;
    sgx += g * xh;
  }
  sg = wg_sum(sg, lid) / f32(cols);
  sgx = wg_sum(sgx, lid) / f32(cols);
  for (var c = lid; c < cols; c += ${WG}u) {
    let xh = (x_ld(base + c) - mu) * rs;
    out_st(base + c, rs * (g_ld(base + c) * w_ld(c) - sg - xh * sgx));
  }
}`;

// Partial column sums of gy·xhat and gy over chunks of rows: out [chunks, cols] each.
const LAYER_NORM_BACKWARD_W = `${entry1d(WG)}
  let rows = prm(0u);
  let cols = prm(1u);
  let chunks = prm(2u);
  if (gid >= chunks * cols) { return; }
  let ch = gid / cols;
  let c = gid % cols;
  let r1 = min(rows, (ch + 1u) * ${LN_ROW_CHUNK}u);
  var sw = 0.0;
  var sb = 0.0;
  for (var r = ch * ${LN_ROW_CHUNK}u; r < r1; r++) {
    let g = g_ld(r * cols + c);
    sw += g * (x_ld(r * cols + c) - mean_ld(r)) * rstd_ld(r);
    sb += g;
  }
  gw_st(gid, sw);
  gb_st(gid, sb);
}`;

const CROSS_ENTROPY = `${WG_REDUCE}
${ROW_ENTRY}
  ${ROW_MAX}
  var s = 0.0;
  for (var c = lid; c < cols; c += ${WG}u) { s += exp(x_ld(base + c) - m); }
  s = wg_sum(s, lid);
  let lse = m + log(s);
  if (lid == 0u) {
    lse_st(row, lse);
    let t = t_ld(row);
    var loss = 0.0;
    if (t != prmi(2u)) {
      // An out-of-range target cannot raise an error on the GPU: its loss is NaN.
      if (t < 0 || u32(t) >= cols) { loss = prmf(3u); } else { loss = lse - x_ld(base + u32(t)); }
    }
    loss_st(row, loss);
  }
}`;

const CROSS_ENTROPY_BACKWARD = `${entry1d(WG)}
  let rows = prm(0u);
  let cols = prm(1u);
  if (gid >= rows * cols) { return; }
  let r = gid / cols;
  let c = gid % cols;
  let t = t_ld(r);
  var v = 0.0;
  if (t != prmi(2u)) {
    let g = g_ld(r);
    v = exp(x_ld(gid) - lse_ld(r)) * g;
    if (i32(c) == t) { v = v - g; }
  }
  out_st(gid, v);
}`;

/** Softmax or log-softmax of each row of `x` into `out`. */
export function softmaxCall(
  x: BufferArg,
  out: BufferArg,
  rows: number,
  cols: number,
  log: boolean,
  maxDim = 65535,
): KernelCall {
  return {
    label: log ? "logSoftmax" : "softmax",
    body: SOFTMAX(log),
    buffers: [x, out],
    params: [rows, cols],
    grid: grid1(rows, maxDim),
  };
}

/** Gradient of (log-)softmax given its output `x` (named x) and `g`. */
export function softmaxBackwardCall(
  y: BufferArg,
  g: BufferArg,
  out: BufferArg,
  rows: number,
  cols: number,
  log: boolean,
  maxDim = 65535,
): KernelCall {
  return {
    label: log ? "logSoftmaxBackward" : "softmaxBackward",
    body: SOFTMAX_BACKWARD(log),
    buffers: [y, g, out],
    params: [rows, cols],
    grid: grid1(rows, maxDim),
  };
}

/** Layer norm; buffers named x, w, b, out, mean, rstd. */
export function layerNormCall(
  bufs: {
    x: BufferArg;
    w: BufferArg;
    b: BufferArg;
    out: BufferArg;
    mean: BufferArg;
    rstd: BufferArg;
  },
  rows: number,
  cols: number,
  eps: number,
  maxDim = 65535,
): KernelCall {
  return {
    label: "layerNorm",
    body: LAYER_NORM,
    buffers: [bufs.x, bufs.w, bufs.b, bufs.out, bufs.mean, bufs.rstd],
    params: [rows, cols, f32Bits(eps)],
    grid: grid1(rows, maxDim),
  };
}

/** Layer-norm input gradient; buffers named x, w, mean, rstd, g, out. */
export function layerNormBackwardXCall(
  bufs: {
    x: BufferArg;
    w: BufferArg;
    mean: BufferArg;
    rstd: BufferArg;
    g: BufferArg;
    out: BufferArg;
  },
  rows: number,
  cols: number,
  maxDim = 65535,
): KernelCall {
  return {
    label: "layerNormBackward.x",
    body: LAYER_NORM_BACKWARD_X,
    buffers: [bufs.x, bufs.w, bufs.mean, bufs.rstd, bufs.g, bufs.out],
    params: [rows, cols],
    grid: grid1(rows, maxDim),
  };
}

/**
 * Partial sums of the layer-norm weight and bias gradients over chunks of
 * {@link LN_ROW_CHUNK} rows; buffers named x, mean, rstd, g, gw, gb ([chunks, cols] each).
 */
export function layerNormBackwardWCall(
  bufs: {
    x: BufferArg;
    mean: BufferArg;
    rstd: BufferArg;
    g: BufferArg;
    gw: BufferArg;
    gb: BufferArg;
  },
  rows: number,
  cols: number,
  maxDim = 65535,
): KernelCall {
  const chunks = Math.ceil(rows / LN_ROW_CHUNK);
  return {
    label: "layerNormBackward.w",
    body: LAYER_NORM_BACKWARD_W,
    buffers: [bufs.x, bufs.mean, bufs.rstd, bufs.g, bufs.gw, bufs.gb],
    params: [rows, cols, chunks],
    grid: grid1(Math.ceil((chunks * cols) / WG), maxDim),
  };
}

/** Cross-entropy per row; buffers named x (logits), t (targets), loss, lse. */
export function crossEntropyCall(
  bufs: { x: BufferArg; t: BufferArg; loss: BufferArg; lse: BufferArg },
  rows: number,
  cols: number,
  ignoreIndex: number,
  maxDim = 65535,
): KernelCall {
  return {
    label: "crossEntropy",
    body: CROSS_ENTROPY,
    buffers: [bufs.x, bufs.t, bufs.loss, bufs.lse],
    params: [rows, cols, ignoreIndex >>> 0, NAN_BITS],
    grid: grid1(rows, maxDim),
  };
}

/** Cross-entropy gradient; buffers named x (logits), t, lse, g (per-row gLoss), out. */
export function crossEntropyBackwardCall(
  bufs: { x: BufferArg; t: BufferArg; lse: BufferArg; g: BufferArg; out: BufferArg },
  rows: number,
  cols: number,
  ignoreIndex: number,
  maxDim = 65535,
): KernelCall {
  return {
    label: "crossEntropyBackward",
    body: CROSS_ENTROPY_BACKWARD,
    buffers: [bufs.x, bufs.t, bufs.lse, bufs.g, bufs.out],
    params: [rows, cols, ignoreIndex >>> 0],
    grid: grid1(Math.ceil((rows * cols) / WG), maxDim),
  };
}
