/**
 * Backend choice for the tasks (`--backend auto|cpu|wasm|webgpu`).
 *
 * The WebAssembly and WebGPU backends are registered here with lazy imports, so that loading the
 * core never compiles kernels or touches a GPU. `auto` picks WebGPU only on a hardware
 * (non-fallback) adapter — WGSL on a software rasteriser is slower than the CPU — then the
 * WebAssembly backend, then the reference backend.
 *
 * For the WebAssembly backend the line also says which matmul it runs: the system BLAS found
 * (`LF_BLAS` picks one or turns it off) or the WebAssembly kernels, and why.
 *
 * @module
 */
import type { Backend } from "./backend.ts";
import { loadBackend, registerBackend, setBackend } from "./registry.ts";

registerBackend("wasm", async () => {
  const m = await import("./wasm/backend.ts");
  return await m.createWasmBackend();
});
registerBackend("webgpu", async () => {
  const m = await import("./webgpu/backend.ts");
  // f16 storage for frozen weights where the adapter has shader-f16 (opt-in per model through
  // Module.storeFrozenAsF16); otherwise a plain f32 backend.
  try {
    return await m.createWebGPUBackend({ f16Weights: true });
  } catch (e) {
    if (!/shader-f16/.test((e as Error).message)) throw e;
    return await m.createWebGPUBackend();
  }
});

const NVIDIA_HINT = "an NVIDIA GPU is present but WebGPU sees no hardware adapter: Deno needs " +
  "the Vulkan loader (libvulkan1) and NVIDIA's Vulkan driver (the nvidia ICD in " +
  "/usr/share/vulkan/icd.d, e.g. from libnvidia-gl-<version>); `vulkaninfo --summary` should list the GPU";

/** Whether the NVIDIA kernel driver is loaded (so a missing adapter is a setup problem). */
function nvidiaWithoutAdapter(): boolean {
  for (const p of ["/proc/driver/nvidia/version", "/dev/nvidia0"]) {
    try {
      Deno.statSync(p);
      return true;
    } catch { /* absent or not readable */ }
  }
  return false;
}

/** The matmul path of a backend that has a choice of one (the WebAssembly backend). */
function matmulNote(b: Backend): string {
  const path = (b as { matmulPath?: unknown }).matmulPath;
  return typeof path === "string" ? `; matmul: ${path}` : "";
}

/** Whether a hardware WebGPU adapter is present. */
async function hardwareGpu(): Promise<boolean> {
  try {
    const d = await import("./webgpu/device.ts");
    return await d.hardwareAdapterAvailable();
  } catch {
    return false;
  }
}

/**
 * Resolves a backend name (`auto` included), creates it and makes it the default for new
 * tensors. `log` receives one line saying what was chosen and why.
 */
export async function useBackend(
  name: string,
  log: (s: string) => void = () => {},
): Promise<Backend> {
  if (name !== "auto") {
    const b = await setBackend(name);
    log(`backend: ${b.name}${matmulNote(b)}`);
    return b;
  }
  if (await hardwareGpu()) {
    try {
      const b = await setBackend("webgpu");
      log("backend: webgpu (hardware adapter found)");
      return b;
    } catch (e) {
      log(`backend: webgpu unavailable (${(e as Error).message}); trying wasm`);
    }
  }
  const note = nvidiaWithoutAdapter() ? `; ${NVIDIA_HINT}` : "";
  try {
    const b = await setBackend("wasm");
    log(`backend: wasm (no hardware GPU adapter${note}${matmulNote(b)})`);
    return b;
  } catch (e) {
    log(
      `backend: wasm unavailable (${(e as Error).message}); using the cpu reference backend${note}`,
    );
    return await setBackend("cpu");
  }
}

export { loadBackend };
export { backendNames } from "./registry.ts";
