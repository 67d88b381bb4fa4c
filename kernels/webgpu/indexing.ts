/**
 * Embedding gather and its deterministic backward (scatter-add) without float atomics.
 *
 * scatterAdd links equal ids into chains: one pass (one invocation per position i) finds
 * whether i is the first occurrence of its id and the next position with the same id. Then one
 * invocation per (first occurrence, column) walks its chain in increasing position order, so
 * every sum is accumulated in exactly the order of the CPU reference loop (bit-identical in f32)
 * and the work is O(n·cols) plus an O(n²) id comparison that does not depend on cols.
 *
 * @module
 */
import { type BufferArg, entry1d, grid1, type KernelCall } from "./dispatch.ts";

const WG = 256;

const GATHER = `${entry1d(WG)}
  let n = prm(0u);
  let cols = prm(1u);
  let vocab = prm(2u);
  if (gid >= n * cols) { return; }
  let i = gid / cols;
  let id = ids_ld(i);
  var v = 0.0;
  // Out-of-range ids give zeros (a GPU kernel cannot raise).
  if (id >= 0 && u32(id) < vocab) { v = table_ld(u32(id) * cols + (gid % cols)); }
  out_st(gid, v);
}`;

// links[i] = next position with the same id (or -1); links[n + i] = 1 if i is the first.
const SCATTER_LINKS = `${entry1d(WG)}
  let n = prm(0u);
  if (gid >= n) { return; }
  let id = ids_ld(gid);
  var first = 1;
  for (var j = 0u; j < gid; j++) {
    if (ids_ld(j) == id) { first = 0; break; }
  }
  var next = -1;
  for (var j = gid + 1u; j < n; j++) {
    if (ids_ld(j) == id) { next = i32(j); break; }
  }
  links_st(gid, next);
  links_st(n + gid, first);
}`;

const SCATTER_SUM = `${entry1d(WG)}
  let n = prm(0u);
  let cols = prm(1u);
  let vocab = prm(2u);
  if (gid >= n * cols) { return; }
  let i = gid / cols;
  let c = gid % cols;
  if (links_ld(n + i) == 0) { return; }
  let id = ids_ld(i);
  if (id < 0 || u32(id) >= vocab) { return; }
  var acc = 0.0;
  var j = i32(i);
  loop {
    acc += g_ld(u32(j) * cols + c);
    j = links_ld(u32(j));
    if (j < 0) { break; }
  }
  out_st(u32(id) * cols + c, acc);
}`;

/** Gather rows of `table` (vocab rows of `cols`) by `ids` into `out` [n, cols]. */
export function gatherCall(
  table: BufferArg,
  ids: BufferArg,
  out: BufferArg,
  n: number,
  cols: number,
  vocab: number,
  maxDim = 65535,
): KernelCall {
  return {
    label: "gather",
    body: GATHER,
    buffers: [table, ids, out],
    params: [n, cols, vocab],
    grid: grid1(Math.ceil((n * cols) / WG), maxDim),
  };
}

/** First pass of scatterAdd: `links` (i32 [2n]) from `ids`. */
export function scatterLinksCall(
  ids: BufferArg,
  links: BufferArg,
  n: number,
  maxDim = 65535,
): KernelCall {
  return {
    label: "scatterAdd.links",
    body: SCATTER_LINKS,
    buffers: [ids, links],
    params: [n],
    grid: grid1(Math.ceil(n / WG), maxDim),
  };
}

/** Second pass of scatterAdd: sums each chain into `out` (which must be zeroed before). */
export function scatterSumCall(
  g: BufferArg,
  ids: BufferArg,
  links: BufferArg,
  out: BufferArg,
  n: number,
  cols: number,
  vocab: number,
  maxDim = 65535,
): KernelCall {
  return {
    label: "scatterAdd.sum",
    body: SCATTER_SUM,
    buffers: [g, ids, links, out],
    params: [n, cols, vocab],
    grid: grid1(Math.ceil((n * cols) / WG), maxDim),
  };
}
