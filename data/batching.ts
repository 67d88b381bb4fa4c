/**
 * Seeded shuffling and padded batches of token-id examples, as plain arrays.
 *
 * A batch is right-padded with the pad id (GPT-2's `<|endoftext|>`, 50256, by default): pads get
 * label -100 (ignored by the loss) and mask 0. Prefix-Tuning's own code pads with an extra
 * `[PAD]` token (id 50257, embeddings resized) instead; under causal attention right padding
 * never influences real positions, and the pads carry no loss, so the choice of pad id does
 * not change the loss or the gradients.
 *
 * @module
 */

import { Xoshiro128 } from "../autograd/random.ts";

/** Label value the loss ignores (PyTorch's `ignore_index`). */
export const IGNORE_INDEX: -100 = -100;

/** Any generator of uniform 32-bit unsigned integers (e.g. autograd's Xoshiro128). */
export interface Rng32 {
  /** Next uniform integer in [0, 2^32). */
  nextU32(): number;
}

/** Uniform integer in [0, n) from a 32-bit generator, by rejection (no modulo bias). */
export function uniformInt(rng: Rng32, n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > 4294967296) {
    throw new RangeError(`uniformInt: n must be an integer in [1, 2^32], got ${n}`);
  }
  // Largest multiple of n that fits in 2^32; draws at or above it are rejected.
  const limit = 4294967296 - (4294967296 % n);
  for (;;) {
    const x = rng.nextU32();
    if (x < limit) return x % n;
  }
}

/** Fisher–Yates shuffle of `items` in place; returns it. */
export function shuffleInPlace<T>(items: T[], rng: Rng32): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = uniformInt(rng, i + 1);
    const t = items[i];
    items[i] = items[j];
    items[j] = t;
  }
  return items;
}

/**
 * A 32-bit seed for (seed, epoch), so each epoch gets its own order from one run seed.
 * splitmix32-style finalisation of both words keeps nearby inputs far apart.
 */
export function epochSeed(seed: number, epoch: number): number {
  let z = (Math.imul(seed >>> 0, 0x9e3779b9) + (epoch >>> 0) + 0x7f4a7c15) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/** One training example: input ids and their labels (same length, -100 where no loss). */
export interface Example {
  /** Token ids. */
  ids: readonly number[];
  /** Target ids, or -100 where the position carries no loss. */
  labels: readonly number[];
}

/** A right-padded batch; all rows have the batch's longest length. */
export interface Batch {
  /** Token ids, pad id after each example. */
  ids: number[][];
  /** Labels, -100 on pads. */
  labels: number[][];
  /** Attention mask: 1 on real tokens, 0 on pads. */
  mask: number[][];
}

/** Right-pads examples into one batch. Throws naming the example whose lengths disagree. */
export function padBatch(examples: readonly Example[], padId: number): Batch {
  let width = 0;
  examples.forEach((e, i) => {
    checkExample(e, i);
    if (e.ids.length > width) width = e.ids.length;
  });
  const batch: Batch = { ids: [], labels: [], mask: [] };
  for (const e of examples) {
    const n = e.ids.length;
    const ids = new Array<number>(width);
    const labels = new Array<number>(width);
    const mask = new Array<number>(width);
    for (let j = 0; j < width; j++) {
      const real = j < n;
      ids[j] = real ? e.ids[j] : padId;
      labels[j] = real ? e.labels[j] : IGNORE_INDEX;
      mask[j] = real ? 1 : 0;
    }
    batch.ids.push(ids);
    batch.labels.push(labels);
    batch.mask.push(mask);
  }
  return batch;
}

function checkExample(e: Example, index: number): void {
  if (e.ids.length !== e.labels.length) {
    throw new Error(
      `example ${index}: ids has length ${e.ids.length} but labels has length ${e.labels.length}`,
    );
  }
  if (e.ids.length === 0) throw new Error(`example ${index}: empty (no ids)`);
}

/** How {@linkcode batchIndices} and {@linkcode makeBatches} group examples. */
export interface BatchOptions {
  /** Examples per batch (the last batch may be smaller unless `dropLast`). */
  batchSize: number;
  /** Shuffle the examples (and, with bucketing, the batches). Default true. */
  shuffle?: boolean;
  /** Run seed. Default 0. */
  seed?: number;
  /** Epoch number, mixed into the seed so each epoch has its own order. Default 0. */
  epoch?: number;
  /**
   * Length bucketing: after shuffling, sort each chunk of this many examples by length
   * (longest first) before cutting it into batches, so a batch holds similar lengths and
   * carries little padding; then shuffle the order of the batches. Must be a multiple of
   * `batchSize`. 0 or absent: no bucketing.
   */
  bucketSize?: number;
  /** Drop a final batch smaller than `batchSize`. Default false. */
  dropLast?: boolean;
  /** Generator to use instead of Xoshiro128(epochSeed(seed, epoch)). */
  rng?: Rng32;
}

/**
 * The example indices of each batch, from the examples' lengths. Deterministic for a given
 * seed and epoch; every index appears once (except those dropped with `dropLast`).
 */
export function batchIndices(lengths: readonly number[], options: BatchOptions): number[][] {
  const { batchSize, shuffle = true, seed = 0, epoch = 0, bucketSize = 0, dropLast = false } =
    options;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  }
  if (!Number.isInteger(bucketSize) || bucketSize < 0 || bucketSize % batchSize !== 0) {
    throw new RangeError(
      `bucketSize must be 0 or a positive multiple of batchSize ${batchSize}, got ${bucketSize}`,
    );
  }
  const rng = options.rng ?? new Xoshiro128(epochSeed(seed, epoch));
  const order = lengths.map((_, i) => i);
  if (shuffle) shuffleInPlace(order, rng);
  if (bucketSize > 0) {
    for (let start = 0; start < order.length; start += bucketSize) {
      const chunk = order.slice(start, start + bucketSize);
      // Array.prototype.sort is stable, so ties keep their shuffled order.
      chunk.sort((a, b) => lengths[b] - lengths[a]);
      for (let k = 0; k < chunk.length; k++) order[start + k] = chunk[k];
    }
  }
  const batches: number[][] = [];
  for (let start = 0; start < order.length; start += batchSize) {
    const b = order.slice(start, start + batchSize);
    if (dropLast && b.length < batchSize) continue;
    batches.push(b);
  }
  if (bucketSize > 0 && shuffle) shuffleInPlace(batches, rng);
  return batches;
}

/**
 * Groups, shuffles and pads examples into batches. `padId` is the id written on pads
 * (use the tokenizer's `eosTokenId`, 50256 for GPT-2).
 */
export function makeBatches(
  examples: readonly Example[],
  padId: number,
  options: BatchOptions,
): Batch[] {
  examples.forEach(checkExample);
  const groups = batchIndices(examples.map((e) => e.ids.length), options);
  return groups.map((g) => padBatch(g.map((i) => examples[i]), padId));
}
