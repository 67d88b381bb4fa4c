/**
 * Finite-difference gradient checking on the float64 CPU reference backend.
 *
 * The loss is Σ f(inputs) ⊙ R with a fixed random R, so every output element matters.
 * Central differences with h = 1e-6 in float64 are accurate to ~1e-9, far below the
 * tolerance, so a wrong backward cannot pass.
 *
 * @module
 */
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { Tensor, tidy } from "../autograd/tensor.ts";
import { Xoshiro128 } from "../autograd/random.ts";
import { mul, sum } from "../autograd/ops.ts";

/** The float64 reference backend used by gradient checks. */
export const f64 = new CpuBackend({ precision: "f64" });

/** Random f64 leaf tensor in [lo, hi). */
export function leaf(shape: number[], g: Xoshiro128, lo = -1, hi = 1): Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  const d = new Float64Array(n);
  for (let i = 0; i < n; i++) d[i] = lo + (hi - lo) * g.uniform();
  return Tensor.fromStorage(f64.fromHost(d, "f32"), shape, true);
}

/** Values of a tensor of the f64 backend (contiguous storages only). */
export function values(t: Tensor): Float64Array {
  return f64.readF64(t.contiguous().storage);
}

/**
 * Compares analytic gradients of `f` with central differences for every input element.
 * Throws with the op name, input index, element and both values on mismatch.
 */
export function gradcheck(
  name: string,
  f: (...xs: Tensor[]) => Tensor,
  inputs: Tensor[],
  opts: { h?: number; atol?: number; rtol?: number; seed?: number } = {},
): void {
  const h = opts.h ?? 1e-6, atol = opts.atol ?? 1e-6, rtol = opts.rtol ?? 1e-5;
  const g = new Xoshiro128(opts.seed ?? 7);
  const out0 = tidy(() => f(...inputs).detach());
  const R = leaf([...out0.shape], g);
  R.requiresGrad = false;
  const loss = (): number => tidy(() => f64.readF64(sum(mul(f(...inputs), R)).storage)[0]);
  for (const x of inputs) x.zeroGrad();
  tidy(() => sum(mul(f(...inputs), R)).backward());
  inputs.forEach((x, xi) => {
    if (!x.requiresGrad) return;
    const data = f64.view(x.storage) as Float64Array;
    const analytic = x.grad ? values(x.grad) : new Float64Array(x.size);
    for (let i = 0; i < data.length; i++) {
      const orig = data[i];
      data[i] = orig + h;
      const up = loss();
      data[i] = orig - h;
      const down = loss();
      data[i] = orig;
      const numeric = (up - down) / (2 * h);
      const a = analytic[i];
      if (!(Math.abs(a - numeric) <= atol + rtol * Math.abs(numeric))) {
        throw new Error(
          `gradcheck ${name}: input ${xi} [${x.shape}] element ${i}: analytic ${a}, numeric ${numeric}`,
        );
      }
    }
  });
}
