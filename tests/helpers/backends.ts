/**
 * The backends the conformance suite runs over, and the inputs it feeds them. Adding a backend
 * to every conformance check is one line in {@link BACKEND_VARIANTS}.
 *
 * @module
 */
import type { Backend } from "../../kernels/backend.ts";
import { CpuBackend } from "../../kernels/cpu/backend.ts";
import { createWasmBackend } from "../../kernels/wasm/backend.ts";
import { detectFeatures } from "../../kernels/wasm/builder.ts";
import { adapterInfo } from "../../kernels/webgpu/device.ts";
import { createWebGPUBackend } from "../../kernels/webgpu/backend.ts";

/** A backend to test: its label and how to make it (null: not available here, with why). */
export interface BackendVariant {
  label: string;
  make: () => Promise<Backend | string>;
  /**
   * Absolute tolerance this backend needs at least (WGSL's transcendental functions are less
   * exact than the WebAssembly polynomials).
   */
  minAtol?: number;
  /** Where it is allowed to differ from the reference, and why; those cases skip. */
  differs?: Divergences;
}

/** Behaviours of the reference a backend may lack, each with the reason it is allowed to. */
export interface Divergences {
  /** Subnormal inputs kept as they are (not flushed to zero). */
  subnormals?: string;
}

/** Every backend configuration the suite checks against the reference. */
export const BACKEND_VARIANTS: BackendVariant[] = [
  { label: "cpu", make: () => Promise.resolve(new CpuBackend()) },
  // The WebAssembly matmul kernels everywhere but in "wasm64×2", whose matmul goes to the system
  // BLAS where one is installed (the BLAS routing itself: wasm_blas_test.ts).
  { label: "wasm64×1", make: () => createWasmBackend({ threads: 1, blas: false }) },
  { label: "wasm64×2", make: () => createWasmBackend({ threads: 2 }) },
  {
    label: "wasm32×2",
    make: () => createWasmBackend({ threads: 2, memory64: false, blas: false }),
  },
  {
    label: "wasm64×2 no relaxed SIMD",
    make: () => createWasmBackend({ relaxedSimd: false, blas: false }),
  },
  {
    label: "wasm32×1 no relaxed SIMD",
    make: () => createWasmBackend({ threads: 1, memory64: false, relaxedSimd: false, blas: false }),
  },
  {
    // Every buffer at an address above 4 GiB (the address space below is left unused).
    label: "wasm64×2 above 4 GiB",
    make: async () => {
      if (!detectFeatures().memory64) return "this runtime has no WebAssembly memory64";
      try {
        return await createWasmBackend({ threads: 2, reserveBytes: 4 * 2 ** 30, blas: false });
      } catch (e) {
        return `cannot reserve 4 GiB of WebAssembly memory here (${(e as Error).message})`;
      }
    },
  },
  {
    label: "webgpu",
    make: async () =>
      (await adapterInfo())
        ? await createWebGPUBackend()
        : "no WebGPU adapter (mesa-vulkan-drivers)",
    minAtol: 2e-6,
    differs: {
      subnormals: "WGSL allows subnormals to be flushed to zero",
    },
  },
];

/** The reference a backend is compared with: float64 for the float32 CPU backend itself. */
export function referenceFor(label: string): Backend {
  return label === "cpu" ? f64Reference : f32Reference;
}
const f32Reference = new CpuBackend();
const f64Reference = new CpuBackend({ precision: "f64" });

/** A seeded generator of uniform numbers in [0, 1) (mulberry32). */
export function seeded(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
