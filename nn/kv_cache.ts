/**
 * A preallocated KV cache for decoding one token per row at a time, without copying the past.
 *
 * With a plain past (`{k, v}` per layer), each decoding step concatenates the new keys and values
 * to the past, which copies the whole cache at every layer, and beam search gathers the rows of
 * the beams that go on, which copies it again. Here each layer's keys and values live in buffers
 * [rows, n_head, capacity, head_dim] that a step writes one position into, in place; attention
 * reads all `capacity` positions, the positions not yet written hidden by the attention mask
 * (masked keys add exact zeros, so results are those of the plain past). A beam reorder moves
 * only the rows whose beam changed, and only their written positions, in an order that needs no
 * extra copy for a chain of moves (beams shifting) and one per cycle (beams swapping). The
 * capacity grows in blocks of {@link CACHE_BLOCK} positions, so attention reads at most that many
 * positions more than the plain past would.
 *
 * Decoding only: the cache is written in place, so no gradient flows through it.
 *
 * @module
 */
import { embedding, reshape } from "../autograd/ops.ts";
import { ids as idsTensor } from "../autograd/creation.ts";
import { noGrad, type Tensor, tidy } from "../autograd/tensor.ts";
import { zeros } from "../autograd/creation.ts";
import type { View } from "../kernels/backend.ts";
import type { KV } from "./attention.ts";

/** Positions the capacity grows by. */
export const CACHE_BLOCK = 32;

/** One layer's part of a {@link KVCache}, as attention uses it. */
export interface CacheSlot {
  /** Keys [rows, n_head, capacity, head_dim]. */
  k: Tensor;
  /** Values, same shape. */
  v: Tensor;
  /** Positions written so far: the step writes its keys and values at this position. */
  at: number;
}

/** Keys and values of every layer in preallocated buffers (see the module's description). */
export class KVCache {
  #layers: KV[];
  #length: number;

  private constructor(layers: KV[], length: number) {
    this.#layers = layers;
    this.#length = length;
  }

  /** A cache holding `past` (per layer [rows, n_head, length, head_dim]), room for `extra` more. */
  static from(past: readonly KV[], extra = CACHE_BLOCK): KVCache {
    if (past.length === 0) throw new Error("KVCache: no layers");
    const length = past[0].k.shape[2];
    const layers = past.map((l) => ({
      k: withCapacity(l.k, length, length + extra),
      v: withCapacity(l.v, length, length + extra),
    }));
    return new KVCache(layers, length);
  }

  /** Positions written. */
  get length(): number {
    return this.#length;
  }

  /** Positions the buffers hold. */
  get capacity(): number {
    return this.#layers[0].k.shape[2];
  }

  /** Rows (sequences). */
  get rows(): number {
    return this.#layers[0].k.shape[0];
  }

  /** Number of layers. */
  get nLayer(): number {
    return this.#layers.length;
  }

  /** Layer `i`'s slot for the next step (after {@link reserve}). */
  slot(i: number): CacheSlot {
    const l = this.#layers[i];
    return { k: l.k, v: l.v, at: this.#length };
  }

  /** Makes room for `n` more positions (grows the capacity by whole blocks when needed). */
  reserve(n: number): void {
    if (this.#length + n <= this.capacity) return;
    const cap = this.#length + n + CACHE_BLOCK - 1 - ((this.#length + n - 1) % CACHE_BLOCK);
    const old = this.#layers;
    this.#layers = old.map((l) => ({
      k: withCapacity(l.k, this.#length, cap),
      v: withCapacity(l.v, this.#length, cap),
    }));
    for (const l of old) disposeKV(l);
  }

  /** Records that a step wrote `n` positions (every layer). */
  advance(n: number): void {
    if (this.#length + n > this.capacity) {
      throw new Error(`KVCache: ${this.#length} + ${n} positions exceed capacity ${this.capacity}`);
    }
    this.#length += n;
  }

  /**
   * Keeps rows `src` in that order (repeats allowed): row i becomes old row src[i]. With the same
   * number of rows, only the rows that change are written (their written positions), in the
   * order of {@link movePlan}; otherwise the rows are gathered anew.
   */
  reorder(src: readonly number[]): void {
    const n = this.rows;
    for (const r of src) {
      if (!Number.isInteger(r) || r < 0 || r >= n) {
        throw new Error(`KVCache.reorder: row ${r} is outside [0, ${n})`);
      }
    }
    if (src.length !== n) {
      const old = this.#layers;
      this.#layers = noGrad(() =>
        tidy(() => {
          const idx = idsTensor([...src], { backend: old[0].k.backend });
          const pick = (t: Tensor) => {
            const [, H, T, d] = t.shape;
            return reshape(embedding(reshape(t, [n, H * T * d]), idx), [src.length, H, T, d]);
          };
          return old.map((l) => ({ k: pick(l.k), v: pick(l.v) }));
        })
      );
      for (const l of old) disposeKV(l);
      return;
    }
    const moves = src.flatMap((from, to) => (from === to ? [] : [{ from, to }]));
    if (moves.length === 0 || this.#length === 0) return;
    const plan = movePlan(moves, n);
    const L = this.#length;
    for (const l of this.#layers) {
      for (const t of [l.k, l.v]) {
        const [, H, cap, d] = t.shape;
        const be = t.backend;
        // Row r's written positions: [H, L, d] with the buffer's strides; set-aside row i's.
        const rowView = (r: number): View => ({
          shape: [H, L, d],
          strides: [cap * d, d, 1],
          offset: t.offset + r * H * cap * d,
        });
        const tmpView = (i: number): View => ({
          shape: [H, L, d],
          strides: [L * d, d, 1],
          offset: i * H * L * d,
        });
        const tmp = plan.saved ? be.full(plan.saved * H * L * d, 0, "f32") : null;
        try {
          for (const step of plan.steps) {
            if (step.save !== undefined) {
              be.copy(t.storage, rowView(step.row), tmp!, tmpView(step.save));
            } else if (step.fromSaved !== undefined) {
              be.copy(tmp!, tmpView(step.fromSaved), t.storage, rowView(step.row));
            } else be.copy(t.storage, rowView(step.from!), t.storage, rowView(step.row));
          }
        } finally {
          if (tmp) be.dispose(tmp);
        }
      }
    }
  }

  /** Frees the buffers. */
  dispose(): void {
    for (const l of this.#layers) disposeKV(l);
    this.#layers = [];
  }
}

/**
 * Writes `x` [rows, n_head, T, head_dim] into a cache buffer at position `at`, in place (the new
 * keys or values of a decoding step).
 */
export function writeAt(buffer: Tensor, x: Tensor, at: number): void {
  const [B, H, cap, d] = buffer.shape;
  const T = x.shape[2];
  if (
    x.ndim !== 4 || x.shape[0] !== B || x.shape[1] !== H || x.shape[3] !== d || at + T > cap
  ) {
    throw new Error(
      `KVCache: [${x.shape.join(", ")}] at position ${at} does not fit [${
        buffer.shape.join(", ")
      }]`,
    );
  }
  x.backend.copy(x.storage, x.view, buffer.storage, {
    shape: x.shape,
    strides: buffer.strides,
    offset: buffer.offset + at * buffer.strides[2],
  });
}

/** One step of an in-place row reorder ({@link movePlan}). */
export interface MoveStep {
  /** The row written, or (with `save`) set aside. */
  row: number;
  /** Write `row` from this row. */
  from?: number;
  /** Set `row` aside into this slot. */
  save?: number;
  /** Write `row` from this set-aside slot. */
  fromSaved?: number;
}

/**
 * Orders the row moves `to ← from` so that a row is overwritten only once every move reading it
 * is done (a chain of moves, as beam search makes when beams shift, needs no extra copy); each
 * cycle left (a swap) sets one row aside first. Returns the steps and how many rows are set aside.
 */
export function movePlan(
  moves: readonly { from: number; to: number }[],
  rows: number,
): { steps: MoveStep[]; saved: number } {
  const readers = new Array<number>(rows).fill(0);
  for (const m of moves) readers[m.from]++;
  const savedAt = new Map<number, number>(); // row → its set-aside slot
  const steps: MoveStep[] = [];
  let left = moves.slice();
  while (left.length) {
    const next: typeof left = [];
    for (const m of left) {
      if (readers[m.to] > 0) {
        next.push(m);
        continue;
      }
      const slot = savedAt.get(m.from);
      steps.push(slot === undefined ? { row: m.to, from: m.from } : { row: m.to, fromSaved: slot });
      readers[m.from]--;
    }
    if (next.length === left.length) {
      // Only cycles remain: set one overwritten row aside; its readers read the copy.
      const r = next[0].to;
      savedAt.set(r, savedAt.size);
      steps.push({ row: r, save: savedAt.get(r) });
      readers[r] = 0;
    }
    left = next;
  }
  return { steps, saved: savedAt.size };
}

/** A new contiguous buffer [rows, n_head, cap, head_dim] holding x's first `length` positions. */
function withCapacity(x: Tensor, length: number, cap: number): Tensor {
  const [B, H, , d] = x.shape;
  const out = noGrad(() => zeros([B, H, cap, d], { backend: x.backend }));
  if (length > 0) {
    const src = x.shape[2] === length ? x : x.slice(2, 0, length);
    writeAt(out, src, 0);
    if (src !== x) src.dispose();
  }
  return out;
}

function disposeKV(l: KV): void {
  l.k.dispose();
  l.v.dispose();
}
