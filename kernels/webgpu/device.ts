/**
 * WebGPU adapter and device acquisition for the WebGPU backend.
 *
 * The device is requested with the adapter's real limits (the WebGPU defaults are far lower than
 * what hardware offers: 128 MiB bindings, 8 storage buffers per stage) and the optional features
 * the kernels can use. Errors that WebGPU reports asynchronously (device loss, out-of-memory,
 * shader validation) are recorded here and re-thrown by the backend at its next synchronisation
 * point, with what was being done when they happened.
 *
 * @module
 */

/** Description of the adapter Deno's WebGPU returns. */
export interface AdapterDescription {
  /** Human-readable adapter name (driver description, or vendor/architecture). */
  name: string;
  /** Vendor string or id. */
  vendor: string;
  /** Architecture string (often empty). */
  architecture: string;
  /** True for software adapters (lavapipe/llvmpipe, SwiftShader, WARP). */
  isFallbackAdapter: boolean;
  /** Optional features the adapter supports. */
  features: string[];
  /** The limits the kernels care about. */
  limits: DeviceLimits;
}

/** Limits the kernels depend on, as requested from (and granted by) the adapter. */
export interface DeviceLimits {
  /** Largest storage-buffer binding, bytes. */
  maxStorageBufferBindingSize: number;
  /** Largest buffer, bytes. */
  maxBufferSize: number;
  /** Alignment of storage binding offsets, bytes. */
  minStorageBufferOffsetAlignment: number;
  /** Alignment of uniform binding offsets, bytes. */
  minUniformBufferOffsetAlignment: number;
  /** Largest uniform binding, bytes. */
  maxUniformBufferBindingSize: number;
  /** Storage buffers one shader stage may bind. */
  maxStorageBuffersPerShaderStage: number;
  /** Workgroup (shared) memory, bytes. */
  maxComputeWorkgroupStorageSize: number;
  /** Invocations per workgroup. */
  maxComputeInvocationsPerWorkgroup: number;
  /** Workgroups per grid dimension. */
  maxComputeWorkgroupsPerDimension: number;
  /** Workgroup size along x (compatibility mode's default, 128, is below what kernels use). */
  maxComputeWorkgroupSizeX: number;
  /** Workgroup size along y. */
  maxComputeWorkgroupSizeY: number;
}

const LIMIT_NAMES: readonly (keyof DeviceLimits)[] = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "minStorageBufferOffsetAlignment",
  "minUniformBufferOffsetAlignment",
  "maxUniformBufferBindingSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupsPerDimension",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
];

/** Optional features requested where the adapter has them. */
const WANTED_FEATURES = ["shader-f16", "subgroups", "timestamp-query"] as const;

// Names of software rasterisers, in case a driver does not set isFallbackAdapter.
const SOFTWARE_NAMES = /llvmpipe|lavapipe|swiftshader|microsoft basic render|warp/i;

let adapterPromise: Promise<GPUAdapter | null> | undefined;

/**
 * Mesa's Vulkan drivers print "XDG_RUNTIME_DIR is invalid or not set" on every device open where
 * that variable is missing (servers, containers, CI). Under Deno on Linux, give the process a
 * private temporary folder for it before the first adapter request, as a login session would.
 */
function ensureRuntimeDir(): void {
  const d = (globalThis as { Deno?: typeof Deno }).Deno;
  if (d === undefined || d.build.os !== "linux") return;
  try {
    if (!d.env.get("XDG_RUNTIME_DIR")) {
      d.env.set("XDG_RUNTIME_DIR", d.makeTempDirSync({ prefix: "lf-runtime-" }));
    }
  } catch { /* no env or write permission: Mesa only prints a warning */ }
}

/**
 * A fresh high-performance adapter, or null. A core adapter is preferred; where there is none, or
 * only a software one, a compatibility-mode adapter (`featureLevel: "compatibility"`) that is not
 * a fallback adapter is taken instead. That is what Chromium on Linux without a GPU offers when
 * started with `--use-angle=vulkan --use-webgpu-adapter=opengles`: WebGPU over OpenGL ES over
 * Mesa's Vulkan driver, faster than its SwiftShader adapter. The kernels need only compute
 * shaders and storage buffers, which compatibility mode keeps; its lower default limits are
 * raised to the adapter's own by {@linkcode openDevice}.
 */
async function freshAdapter(gpu: GPU): Promise<GPUAdapter | null> {
  const ask = (o: GPURequestAdapterOptions) => gpu.requestAdapter(o).catch(() => null);
  const core = await ask({ powerPreference: "high-performance" });
  if (core !== null && !describe(core).isFallbackAdapter) return core;
  const compat = await ask({
    powerPreference: "high-performance",
    featureLevel: "compatibility",
  } as GPURequestAdapterOptions);
  if (compat !== null && !describe(compat).isFallbackAdapter) return compat;
  return core ?? compat;
}

/** The adapter the backend uses (see `freshAdapter`), or null when there is none (cached). */
export function requestAdapter(): Promise<GPUAdapter | null> {
  if (adapterPromise === undefined) {
    const gpu = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
    if (gpu !== undefined) ensureRuntimeDir();
    adapterPromise = gpu === undefined ? Promise.resolve(null) : freshAdapter(gpu);
  }
  return adapterPromise;
}

function describe(adapter: GPUAdapter): AdapterDescription {
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const legacy = (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter;
  const name = info.description || [info.vendor, info.architecture, info.device]
    .filter((s) => s).join(" ");
  const limits = {} as DeviceLimits;
  for (const k of LIMIT_NAMES) limits[k] = adapter.limits[k];
  return {
    name,
    vendor: info.vendor,
    architecture: info.architecture,
    isFallbackAdapter: Boolean(info.isFallbackAdapter ?? legacy) || SOFTWARE_NAMES.test(name),
    features: [...adapter.features].map(String).sort(),
    limits,
  };
}

/** Name, fallback flag, features and limits of the adapter, or null when there is none. */
export async function adapterInfo(): Promise<AdapterDescription | null> {
  const adapter = await requestAdapter();
  return adapter === null ? null : describe(adapter);
}

/**
 * True only for a hardware (non-fallback) adapter: `--backend auto` picks WebGPU only then,
 * since the software adapter is slower than the CPU backends. An adapter that names neither
 * vendor nor device (Chromium's compatibility-mode adapter over ANGLE, which may run on Mesa's
 * software Vulkan) is not taken for hardware.
 */
export async function hardwareAdapterAvailable(): Promise<boolean> {
  const info = await adapterInfo();
  return info !== null && !info.isFallbackAdapter && info.name !== "";
}

/** An opened device with its granted limits and the asynchronous error record. */
export interface GpuContext {
  /** The adapter's description. */
  readonly adapter: AdapterDescription;
  /** The device. */
  readonly device: GPUDevice;
  /** Granted limits. */
  readonly limits: DeviceLimits;
  /** Whether `shader-f16` was enabled. */
  readonly f16: boolean;
  /** Whether `subgroups` was enabled. */
  readonly subgroups: boolean;
  /** Records an asynchronous error to be thrown at the next synchronisation point. */
  fail(err: Error): void;
  /** Throws the first recorded error (device loss, OOM, validation), if any. */
  check(): void;
  /** True once the device is lost or destroyed. */
  readonly lost: boolean;
}

class Context implements GpuContext {
  #errors: Error[] = [];
  #lost = false;
  constructor(
    readonly adapter: AdapterDescription,
    readonly device: GPUDevice,
    readonly limits: DeviceLimits,
    readonly f16: boolean,
    readonly subgroups: boolean,
  ) {
    device.lost.then((info) => {
      this.#lost = true;
      // A deliberate destroy() is not an error; anything else is.
      if (info.reason !== "destroyed") {
        this.fail(new Error(`WebGPU device lost (${info.reason}): ${info.message}`));
      }
    });
    device.addEventListener("uncapturederror", (e) => {
      const ev = e as GPUUncapturedErrorEvent;
      this.fail(new Error(`WebGPU error: ${ev.error.message}`));
    });
  }
  get lost(): boolean {
    return this.#lost;
  }
  fail(err: Error): void {
    this.#errors.push(err);
  }
  check(): void {
    if (this.#errors.length > 0) {
      const first = this.#errors[0];
      const more = this.#errors.length - 1;
      this.#errors = [];
      if (more > 0) first.message += ` (and ${more} more WebGPU errors)`;
      throw first;
    }
    if (this.#lost) throw new Error("WebGPU device was destroyed or lost; create a new backend");
  }
}

/** Options of {@link openDevice}. */
export interface OpenDeviceOptions {
  /** Do not enable `shader-f16` even where the adapter has it. */
  disableF16?: boolean;
}

/**
 * Opens a device with the adapter's real limits and the wanted optional features. Throws a clear
 * error when WebGPU or an adapter is missing.
 */
export async function openDevice(opts: OpenDeviceOptions = {}): Promise<GpuContext> {
  if ((globalThis.navigator as { gpu?: GPU } | undefined)?.gpu === undefined) {
    throw new Error(
      "WebGPU is not available in this runtime (navigator.gpu is undefined); " +
        'Deno needs WebGPU enabled (deno.json "unstable": ["webgpu"] on older versions)',
    );
  }
  ensureRuntimeDir();
  // A fresh adapter: per the spec an adapter is consumed by its first requestDevice.
  const adapter = await freshAdapter(navigator.gpu);
  if (adapter === null) {
    throw new Error(
      "no WebGPU adapter: no Vulkan/Metal/DX12 driver was found (on Debian, " +
        "`apt-get install mesa-vulkan-drivers` gives the lavapipe software adapter)",
    );
  }
  const desc = describe(adapter);
  const requiredLimits: Record<string, number> = {};
  for (const k of LIMIT_NAMES) requiredLimits[k] = adapter.limits[k];
  const requiredFeatures = WANTED_FEATURES.filter((f) =>
    adapter.features.has(f) && !(f === "shader-f16" && opts.disableF16)
  ) as GPUFeatureName[];
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  } catch (e) {
    throw new Error(
      `WebGPU requestDevice failed on adapter '${desc.name}' with features ` +
        `[${requiredFeatures.join(", ")}]: ${(e as Error).message}`,
    );
  }
  const limits = {} as DeviceLimits;
  for (const k of LIMIT_NAMES) limits[k] = device.limits[k];
  return new Context(
    desc,
    device,
    limits,
    device.features.has("shader-f16"),
    device.features.has("subgroups"),
  );
}
