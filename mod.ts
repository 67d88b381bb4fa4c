/**
 * lf: a small deep-learning library for Deno — tensors with reverse-mode autodiff on CPU,
 * WebAssembly SIMD and WebGPU backends, nn modules, GPT-2, and prefix-tuning.
 *
 * ```ts
 * import * as lf from "./mod.ts";
 * const x = lf.tensor([[1, 2], [3, 4]], { requiresGrad: true });
 * const y = x.matmul(x).tanh().sum();
 * y.backward();
 * console.log(await x.grad!.toArray());
 * ```
 *
 * @module
 */
export * from "./autograd/mod.ts";
export type { Backend, DType, Storage, View } from "./kernels/backend.ts";
export {
  backendNames,
  getBackend,
  loadBackend,
  registerBackend,
  setBackend,
} from "./kernels/registry.ts";
export { CpuBackend } from "./kernels/cpu/backend.ts";
