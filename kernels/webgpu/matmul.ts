/**
 * Batched matrix product `C[b] = op(A[b]) · op(B[b])` in WGSL.
 *
 * Each 16×16 workgroup computes a 64×64 tile of C; each invocation keeps a 4×4 block of
 * accumulators in registers. K advances in steps of 16: the workgroup stages a 64×16 slice of
 * op(A) and a 16×64 slice of op(B) in shared memory (zero-padded at the edges, so any m, n, k
 * works), then every invocation does 16 rank-1 updates of its block. Invocation (tx, ty) owns
 * rows ty + 16i and columns tx + 16j, so neighbouring invocations read neighbouring shared-memory
 * words. The transposed layouts only change how tiles are loaded (each variant loads along the
 * stored rows, so global reads stay coalesced), so the backward pass needs no transposes.
 *
 * @module
 */
import type { MatmulParams } from "../backend.ts";
import type { BufferArg, KernelCall } from "./dispatch.ts";

const BM = 64;
const BN = 64;
const BK = 16;

const bodies = new Map<string, string>();

function body(transA: boolean, transB: boolean): string {
  const key = `${transA}${transB}`;
  const hit = bodies.get(key);
  if (hit !== undefined) return hit;
  // Element e (0..1023) of a staged tile; the layout follows the stored matrix so that
  // consecutive invocations read consecutive global addresses.
  const loadA = transA
    ? `let kk = e / ${BM}u; let rr = e % ${BM}u;
      let gr = row0 + rr; let gk = k0 + kk;
      var v = 0.0;
      if (gr < M && gk < K) { v = a_ld(aBase + gk * M + gr); }`
    : `let rr = e / ${BK}u; let kk = e % ${BK}u;
      let gr = row0 + rr; let gk = k0 + kk;
      var v = 0.0;
      if (gr < M && gk < K) { v = a_ld(aBase + gr * K + gk); }`;
  const loadB = transB
    ? `let cc = e / ${BK}u; let kk2 = e % ${BK}u;
      let gc = col0 + cc; let gk2 = k0 + kk2;
      var w = 0.0;
      if (gc < N && gk2 < K) { w = b_ld(bBase + gc * K + gk2); }`
    : `let kk2 = e / ${BN}u; let cc = e % ${BN}u;
      let gc = col0 + cc; let gk2 = k0 + kk2;
      var w = 0.0;
      if (gc < N && gk2 < K) { w = b_ld(bBase + gk2 * N + gc); }`;
  const src = `
var<workgroup> As: array<f32, ${BK * BM}>;
var<workgroup> Bs: array<f32, ${BK * BN}>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let M = prm(0u);
  let N = prm(1u);
  let K = prm(2u);
  let b = wid.z + prm(7u);
  let aBase = prm(5u) + b * prm(3u);
  let bBase = prm(6u) + b * prm(4u);
  let row0 = wid.y * ${BM}u;
  let col0 = wid.x * ${BN}u;
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < K; k0 += ${BK}u) {
    for (var r = 0u; r < 4u; r++) {
      let e = tid + r * 256u;
      ${loadA}
      As[kk * ${BM}u + rr] = v;
      ${loadB}
      Bs[kk2 * ${BN}u + cc] = w;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk++) {
      var av: array<f32, 4>;
      var bv: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        av[i] = As[kk * ${BM}u + l.y + 16u * i];
        bv[i] = Bs[kk * ${BN}u + l.x + 16u * i];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
          acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]);
        }
      }
    }
    workgroupBarrier();
  }
  let cBase = b * M * N;
  for (var i = 0u; i < 4u; i++) {
    let gr = row0 + l.y + 16u * i;
    if (gr >= M) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let gc = col0 + l.x + 16u * j;
      if (gc < N) { out_st(cBase + gr * N + gc, acc[i * 4u + j]); }
    }
  }
}`;
  bodies.set(key, src);
  return src;
}

/**
 * The dispatches of one matmul (one per chunk of at most `maxDim` batch entries). `a`, `b`
 * and `out` are bound as names `a`, `b`, `out`.
 */
export function matmulCalls(
  a: BufferArg,
  b: BufferArg,
  out: BufferArg,
  p: MatmulParams,
  maxDim = 65535,
): KernelCall[] {
  const gx = Math.ceil(p.n / BN), gy = Math.ceil(p.m / BM);
  if (gx > maxDim || gy > maxDim) {
    throw new Error(`webgpu matmul: m=${p.m}, n=${p.n} need a grid over ${maxDim} workgroups`);
  }
  const calls: KernelCall[] = [];
  const src = body(p.transA, p.transB);
  for (let b0 = 0; b0 < p.batch; b0 += maxDim) {
    calls.push({
      label: `matmul${p.transA ? ".tA" : ""}${p.transB ? ".tB" : ""}`,
      body: src,
      buffers: [a, b, out],
      params: [p.m, p.n, p.k, p.aBatchStride, p.bBatchStride, p.aOffset ?? 0, p.bOffset ?? 0, b0],
      grid: [gx, gy, Math.min(maxDim, p.batch - b0)],
    });
  }
  return calls;
}
