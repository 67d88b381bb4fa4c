/**
 * Fused causal attention in WGSL: the forward pass and the two backward kernels of
 * `Backend.attention` / `Backend.attentionBackward`, with the semantics of the CPU reference
 * (`kernels/cpu/backend.ts`).
 *
 * - Forward: one 64-invocation workgroup per tile of R = 4 query rows of one head (fewer for
 *   very large d), the rows' q in workgroup memory. Keys go 64 at a time (one per invocation),
 *   only up to the causal limit. A chunk of k is staged transposed in workgroup memory
 *   (coalesced global reads, conflict-free reads in the dot products), DC ≤ 64 columns at a
 *   time, so any d works. The R rows are the components of a vector, so each staged value
 *   serves R rows. The chunk's scores go through workgroup memory and every invocation takes
 *   their max itself (one barrier, no reduction tree); an online softmax rescales the running
 *   output and each invocation's partial Σexp (summed once at the end). Each invocation
 *   accumulates its own output columns (c = lid + 64a) from the chunk's (dropped-out)
 *   probabilities, reading v coalesced, each value once for the R rows. A row with nothing
 *   visible then attends uniformly to all S keys (Hugging Face's most-negative-f32 masking),
 *   with lse = that value.
 * - Backward, two kernels that each write every output element from one invocation in a fixed
 *   order (deterministic, no atomics), recomputing P = exp(scale·q·k − lse):
 *   1. over tiles of query rows: D_i = dO_i·O_i, then dQ_i = Σ_j dS_ij k_j, keys split as in
 *      the forward (k and v chunks staged); D is kept for the second kernel;
 *   2. over tiles of key rows: dV_j = Σ_i P̃_ij dO_i and dK_j = Σ_i dS_ij q_i, queries split
 *      the same way (q and dO chunks staged), with dS_ij = P_ij (keep_ij · dO_i·v_j − D_i) ·
 *      scale.
 * - Dropout recomputes the keep mask from {@link DROPOUT_KEEP} (the expression the dropout
 *   mask is compiled from), bit-identical to `dropoutMask` over [B, H, T, S].
 *
 * Kernels are generated per (rows per workgroup, columns per invocation, staged columns, mask
 * or not, dropout or not) and memoised; everything else (shape, scale, seed) is a runtime
 * parameter. Rows and staged columns are the largest that fit the device's workgroup memory.
 *
 * @module
 */
import type { AttentionParams } from "../backend.ts";
import { type BufferArg, f32Bits, grid1, type KernelCall } from "./dispatch.ts";
import { DROPOUT_KEEP, dropoutThreshold } from "../expr.ts";
import { compileWgslCondition } from "./expr.ts";

/** Dropout's keep test, compiled from {@link DROPOUT_KEEP} (shared with the dropout mask). */
const DROPOUT_KEEP_WGSL = compileWgslCondition("dropout_keep_", DROPOUT_KEEP, [
  "index",
  "seed",
  "threshold",
]);

/** Invocations per workgroup = keys (or queries) per chunk. */
const WG = 64;
/** Row pitch of the staged tile: one more than WG, so the transposing stores hit distinct banks. */
const PITCH = WG + 1;
/** Bits of ATTENTION_MASK_VALUE (−3.4028234663852886e38, the most negative f32), exact. */
const ATTENTION_MASK_BITS = 0xff7fffff;
/** Bits of a quiet NaN. */
const NAN_BITS = 0x7fc00000;

/** Output columns each invocation owns: c = lid + 64·a for a < this. */
function colsPerInvocation(dim: number): number {
  return Math.max(1, Math.ceil(dim / WG));
}

/** What a kernel body is generated for. */
interface Variant {
  /** Rows per workgroup (query rows; key rows in the key kernel). */
  rows: number;
  /** Columns per invocation. */
  na: number;
  /** Staged tile columns. */
  dc: number;
  /** Padding mask bound. */
  mask: boolean;
  /** Dropout on. */
  drop: boolean;
}

/**
 * Bytes of workgroup memory of the largest attention kernel: two vectors per row, the staged
 * tile, four 64-entry arrays of row vectors (two chunk arrays, their visibility, the reduction)
 * and a flag.
 */
export function attentionWorkgroupBytes(dim: number, rows: number, dc: number): number {
  return 4 * (2 * rows * colsPerInvocation(dim) * WG + dc * PITCH + 4 * rows * WG + 1);
}

/**
 * Rows per workgroup and staged columns for head size `dim` within `maxBytes` of workgroup
 * memory: 4 rows if a tile of at least 8 columns fits beside them, then fewer rows; within
 * that, the widest tile (at most 64 columns: d = 64 in one pass).
 */
function layout(dim: number, maxBytes: number, op: string): { rows: number; dc: number } {
  for (const rows of [4, 2, 1]) {
    for (let dc = 64; dc >= (rows === 1 ? 1 : 8); dc >>= 1) {
      if (attentionWorkgroupBytes(dim, rows, dc) <= maxBytes) return { rows, dc };
    }
  }
  throw new Error(
    `webgpu ${op}: head size ${dim} needs ${attentionWorkgroupBytes(dim, 1, 1)} bytes of ` +
      `workgroup memory, over the device's maxComputeWorkgroupStorageSize ${maxBytes}`,
  );
}

// Parameter words shared by the three kernels:
// 0 workgroups, 1 H, 2 T, 3 S, 4 d, 5 scale, 6 dropout threshold, 7 keep scale, 8 seed,
// 9 the most negative f32, 10 whether rows may have nothing visible (key kernel), 11 a NaN
// (a run-time value: WGSL forbids NaN in constant expressions).
function params(p: AttentionParams, workgroups: number, mayBeFull = false): number[] {
  if (!Number.isInteger(p.dropSeed)) {
    throw new Error(`webgpu attention: dropSeed ${p.dropSeed} is not an integer`);
  }
  const drop = p.dropP > 0;
  return [
    workgroups,
    p.heads,
    p.queries,
    p.keys,
    p.dim,
    f32Bits(p.scale),
    drop ? dropoutThreshold(p.dropP) : 0,
    f32Bits(drop ? (p.dropP >= 1 ? 0 : 1 / (1 - p.dropP)) : 1),
    p.dropSeed >>> 0,
    ATTENTION_MASK_BITS,
    mayBeFull ? 1 : 0,
    NAN_BITS,
  ];
}

// Conventions of the generated WGSL:
// - The R rows of a workgroup are the components of a vector (RV = vec4<f32> for R = 4,
//   vec2 for 2, f32 for 1): qs[c] holds column c of all R query rows, acc[a] the R rows'
//   accumulators of column slot a, so the inner loops do one workgroup-memory load per R FMAs
//   and everything per row stays in registers. Rows past the end of the tensor ("dummy"
//   rows, r ≥ nr) compute zeros and are not stored.
// - Every function-scope variable declared in a loop has an explicit initialiser: naga does
//   not re-zero an uninitialised `var` on each iteration.

/** WGSL shared by the kernels: types, the tile, the reduction, keep mask and visibility. */
function prelude({ rows, dc, mask, drop, na }: Variant): string {
  const vec = (t: string) => (rows === 1 ? t : `vec${rows}<${t}>`);
  const ridx = rows === 1 ? "0u" : `VU(${Array.from({ length: rows }, (_, r) => `${r}u`)})`;
  return `
alias RV = ${vec("f32")};
alias VU = ${vec("u32")};
alias VI = ${vec("i32")};
alias VB = ${vec("bool")};
const WG = ${WG}u;
const R = ${rows}u;
const NA = ${na}u;
const DC = ${dc}u;
const PITCH = ${PITCH}u;
// Row index of each component.
const RIDX = ${ridx};
var<workgroup> tile: array<f32, ${dc * PITCH}>;
var<workgroup> red: array<RV, ${WG}>;
// Tree sum of the R rows at once; called from uniform control flow. Every invocation gets it.
fn wg_sum(v: RV, lid: u32) -> RV {
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
${drop ? DROPOUT_KEEP_WGSL : ""}
// Dropout factor of probability [row, j], flattened as row·S + j (u32 wraps like Math.imul).
fn keep_(idx: u32) -> f32 {
  ${drop ? "return select(0.0, prmf(7u), dropout_keep_(idx, prm(8u), prm(6u)));" : "return 1.0;"}
}
// Padding mask of batch b at key j.
fn key_visible_(b: u32, j: u32) -> bool {
  ${mask ? "return msk_ld(b * prm(3u) + j) != 0.0;" : "return true;"}
}
// NaN or +Inf (by the bits: WGSL lets compilers assume floats are finite). A visible score
// like this makes its row's softmax NaN.
fn nan_or_inf_(x: RV) -> VB {
  let b = bitcast<VU>(x);
  return ((b & VU(0x7fffffffu)) > VU(0x7f800000u)) | (b == VU(0x7f800000u));
}
// Number of keys query i may see causally: keys 0 .. S − T + i (clamped to [0, S]).
fn causal_end_(i: u32) -> u32 {
  return u32(clamp(i32(prm(3u)) - i32(prm(2u)) + i32(i) + 1, 0, i32(prm(3u))));
}
`;
}

/** WGSL for component r of a row vector (the value itself when R = 1). */
function at(v: Variant, expr: string, r: string): string {
  return v.rows === 1 ? expr : `${expr}[${r}]`;
}

/** WGSL: `kp` = the R rows' dropout factors at flat indices (first + r)·S + j (1 without). */
function keeps(v: Variant, kp: string, first: string, j: string): string {
  if (!v.drop) return `let ${kp} = RV(1.0);`;
  return `var ${kp} = RV(1.0);
    for (var r = 0u; r < R; r++) { ${at(v, kp, "r")} = keep_((${first} + r) * S + ${j}); }`;
}

/**
 * WGSL staging rows 0..n−1 (from element `base`) × columns c0 .. c0+DC−1 of the row-major
 * [*, D] buffer `name` into `tile`, transposed (tile[c·PITCH + r]) and zero-padded, between
 * two barriers. Consecutive invocations read consecutive columns of a row.
 */
function stage(name: string, base: string): string {
  return `workgroupBarrier();
      for (var e = lid; e < WG * DC; e += WG) {
        let r = e / DC;
        let c = e % DC;
        var x = 0.0;
        if (r < n && c0 + c < D) { x = ${name}_ld(${base} + r * D + c0 + c); }
        tile[c * PITCH + r] = x;
      }
      workgroupBarrier();`;
}

/** WGSL: `out += Σ_c vec[c0 + c] · tile[c, lid]`: this invocation's staged row · the R rows. */
function dots(out: string, vec: string): string {
  return `for (var c = 0u; c < nc; c++) {
        ${out} = fma(${vec}[c0 + c], RV(tile[c * PITCH + lid]), ${out});
      }`;
}

/**
 * WGSL: `acc[a] += w · name[base + c]` over this invocation's columns for the R rows' weights
 * `w` (a row vector), each element of `name` loaded once, for the rows where `vis` (a VB) holds:
 * a masked pair adds nothing, not even 0·x (x may be NaN or Inf there). Skipped when no row
 * sees the pair.
 */
function accumulate(acc: string, w: string, name: string, base: string, vis: string): string {
  return `if (any(${vis})) {
        for (var a = 0u; a < NA; a++) {
          let c = lid + a * WG;
          if (c < D) {
            ${acc}[a] = select(${acc}[a], fma(${w}, RV(${name}_ld(${base} + c)), ${acc}[a]), ${vis});
          }
        }
      }`;
}

/** WGSL: the workgroup's rows r0 .. r0 + nr − 1 of head bh (query rows, or key rows). */
function rowsOfWorkgroup(n: string): string {
  return `let R_ = (${n} + R - 1u) / R;
  let bh = row / R_;
  let r0 = (row % R_) * R;
  let nr = min(R, ${n} - r0);
  let b = bh / H;
  let live = RIDX < VU(nr);`;
}

/** WGSL: loads this invocation's columns of the R rows first + r of `name` into `dst`. */
function loadRows(v: Variant, dst: string, name: string, first: string): string {
  return `for (var a = 0u; a < NA; a++) {
    let c = lid + a * WG;
    if (c < D) {
      for (var r = 0u; r < nr; r++) { ${
    at(v, `${dst}[c]`, "r")
  } = ${name}_ld((${first} + r) * D + c); }
    }
  }`;
}

const ENTRY = `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= prm(0u)) { return; }
  let H = prm(1u);
  let T = prm(2u);
  let S = prm(3u);
  let D = prm(4u);
  let scale = prmf(5u);
  let NEG = prmf(9u);
  let NANV = RV(prmf(11u));`;

/** WGSL: ends = the number of keys each of the R query rows r0 + r sees (0 for dummy rows). */
function queryEnds(v: Variant): string {
  return `var ends = VU(0u);
  for (var r = 0u; r < nr; r++) { ${at(v, "ends", "r")} = causal_end_(r0 + r); }
  let end = causal_end_(r0 + nr - 1u);`;
}

function forwardBody(v: Variant): string {
  return `${prelude(v)}
var<workgroup> qs: array<RV, ${v.na * WG}>;
var<workgroup> ss: array<RV, ${WG}>;
var<workgroup> ps: array<RV, ${WG}>;
var<workgroup> vss: array<VU, ${WG}>;
var<workgroup> none_: u32;
${ENTRY}
  // Query rows i = r0 + r (r < nr) of head bh; flat row index (b·H + h)·T + i = q0 + r.
  ${rowsOfWorkgroup("T")}
  let q0 = bh * T + r0;
  let kv = bh * S * D;
  // Published by the first staging barrier (nothing reads qs when no key is visible).
  ${loadRows(v, "qs", "q", "q0")}
  ${queryEnds(v)}
  // Online softmax per row: m the running max of the visible scores (NEG: none yet), lpart
  // this invocation's share of Σ exp(score − m), acc the running Σ exp(score − m)·keep·v over
  // this invocation's columns.
  // seen: this invocation's keys include a visible one; bad: one of its visible scores is NaN
  // or +Inf (the row's result is then NaN, whatever max() does with NaN on this device).
  var m = RV(NEG);
  var lpart = RV(0.0);
  var acc = array<RV, NA>();
  var seen = VB(false);
  var bad = VB(false);
  for (var j0 = 0u; j0 < end; j0 += WG) {
    let n = min(WG, end - j0);
    let j = j0 + lid;
    var s = RV(0.0);
    for (var c0 = 0u; c0 < D; c0 += DC) {
      let nc = min(DC, D - c0);
      ${stage("k", "kv + j0 * D")}
      ${dots("s", "qs")}
    }
    var kvis = false;
    if (lid < n) { kvis = key_visible_(b, j); }
    let vis = (VU(j) < ends) & VB(kvis);
    let sc = select(RV(NEG), s * scale, vis);
    seen = seen | vis;
    bad = bad | (vis & nan_or_inf_(sc));
    ss[lid] = sc;
    workgroupBarrier();
    var mc = RV(NEG);
    for (var jj = 0u; jj < n; jj++) { mc = max(mc, ss[jj]); }
    let mNew = max(m, mc);
    // exp(NEG − NEG) = 1 while nothing is visible (lpart and acc are still 0); else ≤ 1.
    let alpha = exp(m - mNew);
    m = mNew;
    let e = select(RV(0.0), exp(sc - mNew), vis);
    lpart = lpart * alpha + e;
    ${keeps(v, "kp", "q0", "j")}
    ps[lid] = e * kp;
    vss[lid] = select(VU(0u), VU(1u), vis);
    workgroupBarrier();
    for (var a = 0u; a < NA; a++) { acc[a] = acc[a] * alpha; }
    for (var jj = 0u; jj < n; jj++) {
      let w = ps[jj];
      ${accumulate("acc", "w", "v", "kv + (j0 + jj) * D", "vss[jj] != VU(0u)")}
    }
    // The next chunk writes ss, then ps after a barrier: no barrier needed here.
  }
  let l = wg_sum(lpart, lid);
  let nSeen = wg_sum(select(RV(0.0), RV(1.0), seen), lid);
  let nBad = wg_sum(select(RV(0.0), RV(1.0), bad), lid);
  // Rows with nothing visible: every score is the most negative f32, so they attend uniformly
  // to all S keys (their acc is still 0 here). Rows with a NaN or +Inf score, or only −Inf
  // ones (Σexp = 0), are NaN: NaN in, NaN out.
  let fullv = (nSeen == RV(0.0)) & live;
  let nanv = (nBad != RV(0.0)) | ((nSeen != RV(0.0)) & (l == RV(0.0)));
  if (lid == 0u) { none_ = select(0u, 1u, any(fullv)); }
  if (workgroupUniformLoad(&none_) != 0u) {
    let inv = select(RV(0.0), RV(1.0 / f32(S)), fullv);
    for (var j0 = 0u; j0 < S; j0 += WG) {
      let n = min(WG, S - j0);
      let j = j0 + lid;
      ${keeps(v, "kp", "q0", "j")}
      ps[lid] = select(RV(0.0), inv * kp, VB(lid < n));
      vss[lid] = select(VU(0u), VU(1u), fullv & VB(lid < n));
      workgroupBarrier();
      for (var jj = 0u; jj < n; jj++) {
        let w = ps[jj];
        ${accumulate("acc", "w", "v", "kv + (j0 + jj) * D", "vss[jj] != VU(0u)")}
      }
      workgroupBarrier();
    }
  }
  let lr = select(l, RV(1.0), fullv);
  let lse = select(select(m + log(lr), RV(NEG), fullv), NANV, nanv);
  for (var a = 0u; a < NA; a++) {
    let c = lid + a * WG;
    if (c < D) {
      let o = select(acc[a] / lr, NANV, nanv);
      for (var r = 0u; r < nr; r++) { out_st((q0 + r) * D + c, ${at(v, "o", "r")}); }
    }
  }
  if (lid < nr) { lse_st(q0 + lid, ${at(v, "lse", "lid")}); }
}`;
}

function backwardQueryBody(v: Variant): string {
  return `${prelude(v)}
var<workgroup> qs: array<RV, ${v.na * WG}>;
var<workgroup> gs: array<RV, ${v.na * WG}>;
var<workgroup> dss: array<RV, ${WG}>;
var<workgroup> vss: array<VU, ${WG}>;
${ENTRY}
  ${rowsOfWorkgroup("T")}
  let q0 = bh * T + r0;
  let kv = bh * S * D;
  ${loadRows(v, "qs", "q", "q0")}
  ${loadRows(v, "gs", "g", "q0")}
  var dpart = RV(0.0);
  var L = RV(0.0);
  for (var r = 0u; r < nr; r++) {
    for (var a = 0u; a < NA; a++) {
      let c = lid + a * WG;
      if (c < D) {
        let o = (q0 + r) * D + c;
        ${at(v, "dpart", "r")} = fma(g_ld(o), o_ld(o), ${at(v, "dpart", "r")});
      }
    }
    ${at(v, "L", "r")} = lse_ld(q0 + r);
  }
  // D_i = dO_i·O_i = Σ_j P̃_ij dP̃_ij (dropout included). wg_sum's barriers publish qs and gs.
  let Di = wg_sum(dpart, lid);
  ${queryEnds(v)}
  // A row with nothing visible (lse < −1e38) has constant scores, hence no gradient to q or k:
  // it sees no key in the loop below, so its dS stays 0.
  var acc = array<RV, NA>();
  for (var j0 = 0u; j0 < end; j0 += WG) {
    let n = min(WG, end - j0);
    let j = j0 + lid;
    var s = RV(0.0);
    var dp = RV(0.0);
    for (var c0 = 0u; c0 < D; c0 += DC) {
      let nc = min(DC, D - c0);
      ${stage("k", "kv + j0 * D")}
      ${dots("s", "qs")}
      ${stage("v", "kv + j0 * D")}
      ${dots("dp", "gs")}
    }
    var kvis = false;
    if (lid < n) { kvis = key_visible_(b, j); }
    let vis = (VU(j) < ends) & VB(kvis);
    ${keeps(v, "kp", "q0", "j")}
    // Invisible scores may overflow exp; select drops them.
    let P = exp(s * scale - L);
    dss[lid] = select(RV(0.0), P * (kp * dp - Di) * scale, vis);
    vss[lid] = select(VU(0u), VU(1u), vis);
    workgroupBarrier();
    for (var jj = 0u; jj < n; jj++) {
      let w = dss[jj];
      ${accumulate("acc", "w", "k", "kv + (j0 + jj) * D", "vss[jj] != VU(0u)")}
    }
    // The next chunk writes dss only after its staging barriers (or, with d = 0, there is
    // nothing to accumulate).
  }
  for (var a = 0u; a < NA; a++) {
    let c = lid + a * WG;
    if (c < D) {
      for (var r = 0u; r < nr; r++) { gq_st((q0 + r) * D + c, ${at(v, "acc[a]", "r")}); }
    }
  }
  if (lid < nr) { dd_st(q0 + lid, ${at(v, "Di", "lid")}); }
}`;
}

function backwardKeyBody(v: Variant): string {
  return `${prelude(v)}
var<workgroup> ks: array<RV, ${v.na * WG}>;
var<workgroup> vs: array<RV, ${v.na * WG}>;
var<workgroup> pks: array<RV, ${WG}>;
var<workgroup> dss: array<RV, ${WG}>;
// Bit 0: the query sees the key (for dV); bit 1: its dS counts (for dK).
var<workgroup> vss: array<VU, ${WG}>;
${ENTRY}
  // Key rows j = r0 + r (r < nr) of head bh; flat key row (b·H + h)·S + j = k0 + r.
  ${rowsOfWorkgroup("S")}
  let k0 = bh * S + r0;
  // Published by the first staging barrier.
  ${loadRows(v, "ks", "k", "k0")}
  ${loadRows(v, "vs", "v", "k0")}
  var keyVis = VB(false);
  for (var r = 0u; r < nr; r++) { ${at(v, "keyVis", "r")} = key_visible_(b, r0 + r); }
  let invS = 1.0 / f32(S);
  // Queries that see key j causally: i ≥ j − (S − T), so i ≥ r0 − (S − T) for the first key.
  // Rows with nothing visible (a prefix of the rows, possible only with a mask or S < T)
  // attend to every key, so then scan from 0.
  var i0s = u32(clamp(i32(r0) + i32(T) - i32(S), 0, i32(T)));
  if (prm(10u) != 0u) { i0s = 0u; }
  var gk = array<RV, NA>();
  var gv = array<RV, NA>();
  for (var i0 = i0s; i0 < T; i0 += WG) {
    let n = min(WG, T - i0);
    let i = i0 + lid;
    let qb = (bh * T + i0) * D;
    var s = RV(0.0);
    var dp = RV(0.0);
    for (var c0 = 0u; c0 < D; c0 += DC) {
      let nc = min(DC, D - c0);
      ${stage("q", "qb")}
      ${dots("s", "ks")}
      ${stage("g", "qb")}
      ${dots("dp", "vs")}
    }
    let qrow = bh * T + i;
    var L = 0.0;
    var Dq = 0.0;
    if (lid < n) {
      L = lse_ld(qrow);
      Dq = dd_ld(qrow);
    }
    // Query i sees key r0 + r iff r ≤ S − T + i − r0 (and the key is not padding).
    let here = live & VB(lid < n);
    let vis = keyVis & (VI(RIDX) <= VI(i32(S) - i32(T) + i32(i) - i32(r0))) & here;
    // Keys are the rows here, so the flat index of [query, key r0 + r] is qrow·S + r0 + r.
    ${
    v.drop
      ? `var kp = RV(1.0);
    for (var r = 0u; r < R; r++) { ${at(v, "kp", "r")} = keep_(qrow * S + r0 + r); }`
      : "let kp = RV(1.0);"
  }
    // Invisible scores may overflow exp; select drops them.
    let P = exp(s * scale - L);
    var pk = select(RV(0.0), P * kp, vis);
    var ds = select(RV(0.0), P * (kp * dp - Dq) * scale, vis);
    var flags = select(VU(0u), VU(3u), vis);
    if (L < -1e38) {
      // Nothing visible: uniform over every key, constant scores (no dS).
      pk = select(RV(0.0), invS * kp, here);
      ds = RV(0.0);
      flags = select(VU(0u), VU(1u), here);
    }
    pks[lid] = pk;
    dss[lid] = ds;
    vss[lid] = flags;
    workgroupBarrier();
    for (var ii = 0u; ii < n; ii++) {
      let qo = qb + ii * D;
      let w1 = pks[ii];
      let w2 = dss[ii];
      ${accumulate("gv", "w1", "g", "qo", "(vss[ii] & VU(1u)) != VU(0u)")}
      ${accumulate("gk", "w2", "q", "qo", "(vss[ii] & VU(2u)) != VU(0u)")}
    }
    // The next chunk writes pks and dss only after its staging barriers (or d = 0).
  }
  for (var a = 0u; a < NA; a++) {
    let c = lid + a * WG;
    if (c < D) {
      for (var r = 0u; r < nr; r++) {
        gk_st((k0 + r) * D + c, ${at(v, "gk[a]", "r")});
        gv_st((k0 + r) * D + c, ${at(v, "gv[a]", "r")});
      }
    }
  }
}`;
}

const bodies = new Map<string, string>();

/** The memoised body of one kernel, and its rows per workgroup. */
function kernel(
  kind: "fwd" | "bwdq" | "bwdkv",
  p: AttentionParams,
  mask: boolean,
  maxBytes: number,
): { body: string; rows: number } {
  const { rows, dc } = layout(p.dim, maxBytes, kind === "fwd" ? "attention" : "attentionBackward");
  const v: Variant = { rows, na: colsPerInvocation(p.dim), dc, mask, drop: p.dropP > 0 };
  const key = `${kind}|${v.rows}|${v.na}|${v.dc}|${v.mask}|${v.drop}`;
  let body = bodies.get(key);
  if (body === undefined) {
    const gen = kind === "fwd"
      ? forwardBody
      : kind === "bwdq"
      ? backwardQueryBody
      : backwardKeyBody;
    bodies.set(key, body = gen(v));
  }
  return { body, rows };
}

/**
 * The forward kernel. Buffers must be named q, k, v, msk (optional), out, lse; `out` is
 * [B, H, T, d] and `lse` [B, H, T]. `maxWorkgroupBytes` is the device's
 * maxComputeWorkgroupStorageSize (it picks the staged tile's width).
 */
export function attentionCall(
  bufs: {
    q: BufferArg;
    k: BufferArg;
    v: BufferArg;
    msk: BufferArg | null;
    out: BufferArg;
    lse: BufferArg;
  },
  p: AttentionParams,
  maxWorkgroupBytes: number,
  maxDim = 65535,
): KernelCall {
  const { q, k, v, msk, out, lse } = bufs;
  const { body, rows } = kernel("fwd", p, msk !== null, maxWorkgroupBytes);
  const wgs = p.batch * p.heads * Math.ceil(p.queries / rows);
  return {
    label: "attention",
    body,
    buffers: msk === null ? [q, k, v, out, lse] : [q, k, v, msk, out, lse],
    params: params(p, wgs),
    grid: grid1(wgs, maxDim),
  };
}

/**
 * The two backward kernels, to run in order: over query rows (gq, and D = dO·O into `dd`,
 * [B, H, T]), then over key rows (gk, gv, reading `dd`). Buffers must be named q, k, v, msk
 * (optional), o (the forward output), lse, g (its gradient), gq, gk, gv, dd; `dd` is a
 * scratch buffer the caller frees after both calls.
 */
export function attentionBackwardCalls(
  bufs: {
    q: BufferArg;
    k: BufferArg;
    v: BufferArg;
    msk: BufferArg | null;
    o: BufferArg;
    lse: BufferArg;
    g: BufferArg;
    gq: BufferArg;
    gk: BufferArg;
    gv: BufferArg;
    dd: BufferArg;
  },
  p: AttentionParams,
  maxWorkgroupBytes: number,
  maxDim = 65535,
): KernelCall[] {
  const { q, k, v, msk, o, lse, g, gq, gk, gv, dd } = bufs;
  const m = msk === null ? [] : [msk];
  const kq = kernel("bwdq", p, msk !== null, maxWorkgroupBytes);
  const kk = kernel("bwdkv", p, msk !== null, maxWorkgroupBytes);
  const qWgs = p.batch * p.heads * Math.ceil(p.queries / kq.rows);
  const kWgs = p.batch * p.heads * Math.ceil(p.keys / kk.rows);
  return [
    {
      label: "attentionBackward.q",
      body: kq.body,
      buffers: [q, k, v, ...m, o, lse, g, gq, dd],
      params: params(p, qWgs),
      grid: grid1(qWgs, maxDim),
    },
    {
      label: "attentionBackward.kv",
      body: kk.body,
      buffers: [q, k, v, ...m, lse, { ...dd, write: false }, g, gk, gv],
      // Without a mask (and S ≥ T) every query row sees key 0, so none attends uniformly and
      // key j needs only the queries that see it causally.
      params: params(p, kWgs, msk !== null || p.keys < p.queries),
      grid: grid1(kWgs, maxDim),
    },
  ];
}
