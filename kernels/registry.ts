/**
 * Which backend new tensors go to, and how backends are created by name.
 *
 * The CPU reference backend is always available. Factories of the faster backends are
 * registered by `kernels/select.ts` when it is imported (lazy imports of `kernels/wasm` and
 * `kernels/webgpu`), so that the core never imports them directly.
 *
 * @module
 */
import type { Backend } from "./backend.ts";
import { CpuBackend } from "./cpu/backend.ts";

/** Creates a backend (registered under a name, created on first use). */
export type Factory = () => Promise<Backend>;

const factories = new Map<string, Factory>();
const instances = new Map<string, Backend>();
const cpu = new CpuBackend();
instances.set("cpu", cpu);
let current: Backend = cpu;

/** Registers a factory for a backend name (`kernels/select.ts` registers wasm and webgpu). */
export function registerBackend(name: string, factory: Factory): void {
  factories.set(name, factory);
}

/** Names of the backends that can be created. */
export function backendNames(): string[] {
  return ["cpu", ...factories.keys()];
}

/** The backend that new tensors are created on. */
export function getBackend(): Backend {
  return current;
}

/** Creates (once) and returns the backend of that name. */
export async function loadBackend(name: string): Promise<Backend> {
  const have = instances.get(name);
  if (have) return have;
  const f = factories.get(name);
  if (!f) {
    throw new Error(
      `unknown backend '${name}' (available: ${backendNames().join(", ")})`,
    );
  }
  const b = await f();
  instances.set(name, b);
  return b;
}

/** Makes `b` (a backend or a registered name) the default for new tensors. */
export async function setBackend(b: string | Backend): Promise<Backend> {
  current = typeof b === "string" ? await loadBackend(b) : b;
  return current;
}
