/**
 * Factory functions for tensors filled with constants or seeded random values.
 *
 * @module
 */
import { type Backend, shapeSize } from "../kernels/backend.ts";
import { getBackend } from "../kernels/registry.ts";
import { rng, type Xoshiro128 } from "./random.ts";
import { Tensor } from "./tensor.ts";

/** Options shared by the factories. */
export interface FactoryOptions {
  /** Backend, default the current one. */
  backend?: Backend;
  /** Track gradients (leaf). */
  requiresGrad?: boolean;
}

/** A tensor of `shape` filled with `value`. */
export function full(shape: readonly number[], value: number, opts: FactoryOptions = {}): Tensor {
  const b = opts.backend ?? getBackend();
  return Tensor.fromStorage(
    b.full(shapeSize(shape), value, "f32"),
    shape,
    opts.requiresGrad ?? false,
  );
}

/** Zeros. */
export function zeros(shape: readonly number[], opts: FactoryOptions = {}): Tensor {
  return full(shape, 0, opts);
}

/** Ones. */
export function ones(shape: readonly number[], opts: FactoryOptions = {}): Tensor {
  return full(shape, 1, opts);
}

/** Normal(mean, std) values from the global (or a given) seeded generator. */
export function randn(
  shape: readonly number[],
  opts: FactoryOptions & { std?: number; mean?: number; generator?: Xoshiro128 } = {},
): Tensor {
  const g = opts.generator ?? rng();
  const n = shapeSize(shape);
  const d = new Float32Array(n);
  const std = opts.std ?? 1, mu = opts.mean ?? 0;
  for (let i = 0; i < n; i++) d[i] = mu + std * g.normal();
  const b = opts.backend ?? getBackend();
  return Tensor.fromStorage(b.fromHost(d, "f32"), shape, opts.requiresGrad ?? false);
}

/** Uniform values in [low, high) from the global (or a given) seeded generator. */
export function rand(
  shape: readonly number[],
  opts: FactoryOptions & { low?: number; high?: number; generator?: Xoshiro128 } = {},
): Tensor {
  const g = opts.generator ?? rng();
  const n = shapeSize(shape);
  const d = new Float32Array(n);
  const lo = opts.low ?? 0, hi = opts.high ?? 1;
  for (let i = 0; i < n; i++) d[i] = lo + (hi - lo) * g.uniform();
  const b = opts.backend ?? getBackend();
  return Tensor.fromStorage(b.fromHost(d, "f32"), shape, opts.requiresGrad ?? false);
}

/** i32 tensor from integers (token ids, targets). */
export function ids(data: number[] | number[][], opts: { backend?: Backend } = {}): Tensor {
  const rows = Array.isArray(data[0]) ? (data as number[][]) : [data as number[]];
  const flat = Int32Array.from(rows.flat());
  const shape = Array.isArray(data[0]) ? [rows.length, rows[0]?.length ?? 0] : [flat.length];
  for (const r of rows) {
    if (r.length !== shape[shape.length - 1]) {
      throw new Error(`ids: ragged rows (${r.length} vs ${shape.at(-1)})`);
    }
  }
  const b = opts.backend ?? getBackend();
  return Tensor.fromStorage(b.fromHost(flat, "i32"), shape);
}
