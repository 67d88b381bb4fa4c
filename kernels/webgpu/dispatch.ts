/**
 * Kernel dispatch for the WebGPU backend: shader assembly, pipeline cache, parameter upload and
 * command batching.
 *
 * - A kernel is a WGSL body that reads and writes its buffers only through generated accessors
 *   (`x_ld(i)`, `x_st(i, v)`) and its scalar parameters through `prm(i)` / `prmf(i)` / `prmi(i)`.
 *   The accessors hide two things: f16 storage (converted to f32 on load), and tensors larger
 *   than one storage binding, which are bound as several consecutive windows of the same buffer
 *   (each window offset is a multiple of minStorageBufferOffsetAlignment) and selected by index.
 * - Pipelines are cached by kernel body and binding signature (which determine the source).
 * - Parameters of all dispatches of a batch go into one CPU arena that is uploaded once with
 *   `queue.writeBuffer` just before the batch is submitted; each dispatch binds its slice. The
 *   queue runs that write after the previous submit, so one params buffer serves every batch
 *   with no per-dispatch allocation.
 * - Dispatches are recorded into one open compute pass of one command encoder and submitted
 *   together on read, when the arena is full, or every `maxBatch` dispatches (each Deno WebGPU
 *   call has a high fixed cost, a submit most of all).
 *
 * @module
 */
import type { GpuContext } from "./device.ts";
import type { PooledBuffer } from "./memory.ts";

/** How elements are stored in a buffer. */
export type ElemFormat = "f32" | "i32" | "u32" | "f16";

/** A buffer a kernel binds. */
export interface BufferArg {
  /** WGSL identifier prefix: the kernel uses `${name}_ld(i)` / `${name}_st(i, v)`. */
  name: string;
  /** The buffer. */
  buf: PooledBuffer;
  /** Number of elements the kernel may address. */
  length: number;
  /** Element storage format. */
  format: ElemFormat;
  /** Whether the kernel writes it (read_write binding). */
  write: boolean;
}

/** One dispatch. */
export interface KernelCall {
  /** Kernel name for error messages. */
  label: string;
  /** WGSL helper functions and the `main` entry point. */
  body: string;
  /** Buffers, bound in this order. */
  buffers: BufferArg[];
  /** Scalar parameters as u32 words (use {@link f32Bits} for floats). */
  params: ArrayLike<number>;
  /** Workgroup grid. */
  grid: readonly [number, number, number];
}

/** Options of the dispatcher. */
export interface DispatcherOptions {
  /** Effective storage-binding limit in bytes (≤ the device's); tests lower it. */
  maxBindingBytes: number;
  /** Dispatches recorded before an automatic submit. */
  maxBatch: number;
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);
/** The bit pattern of `x` as an f32, for passing floats through u32 parameters. */
export function f32Bits(x: number): number {
  f32buf[0] = x;
  return u32buf[0];
}

const BYTES: Record<ElemFormat, number> = { f32: 4, i32: 4, u32: 4, f16: 2 };
const LOAD_TYPE: Record<ElemFormat, string> = { f32: "f32", i32: "i32", u32: "u32", f16: "f32" };

const ARENA_BYTES = 256 * 1024;

interface CachedPipeline {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

/** Records kernel dispatches and copies into batched command buffers. */
export class Dispatcher {
  /** Id of the batch being recorded; see {@link PooledBuffer.lastBatch}. */
  batchId = 0;
  /** Dispatches since creation (stats). */
  dispatches = 0;
  /** Submits since creation (stats). */
  submits = 0;
  #ctx: GpuContext;
  #opts: DispatcherOptions;
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #pending = 0;
  #arena = new Uint32Array(ARENA_BYTES / 4);
  #arenaPos = 0;
  #paramsBuf: GPUBuffer;
  #slotAlign: number;
  #cache = new Map<string, Map<string, CachedPipeline>>();
  #pipelines = 0;
  #windowElems: Record<ElemFormat, number>;

  /** A dispatcher on `ctx`'s device. */
  constructor(ctx: GpuContext, opts: DispatcherOptions) {
    this.#ctx = ctx;
    this.#opts = opts;
    this.#slotAlign = Math.max(16, ctx.limits.minUniformBufferOffsetAlignment);
    this.#paramsBuf = ctx.device.createBuffer({
      size: ARENA_BYTES,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      label: "kernel params",
    });
    const align = ctx.limits.minStorageBufferOffsetAlignment;
    const limit = Math.min(opts.maxBindingBytes, ctx.limits.maxStorageBufferBindingSize);
    const windowBytes = Math.floor(limit / align) * align;
    if (windowBytes < 16) throw new Error(`webgpu: maxBindingBytes ${limit} is too small`);
    this.#windowElems = {
      f32: windowBytes / 4,
      i32: windowBytes / 4,
      u32: windowBytes / 4,
      f16: windowBytes / 2,
    };
  }

  /** Elements of `format` in one binding window. */
  windowElems(format: ElemFormat): number {
    return this.#windowElems[format];
  }

  /** Number of pipelines compiled so far. */
  get pipelines(): number {
    return this.#pipelines;
  }

  /** Records one dispatch (no-op for an empty grid). */
  run(call: KernelCall): void {
    const [gx, gy, gz] = call.grid;
    if (gx === 0 || gy === 0 || gz === 0) return;
    const maxDim = this.#ctx.limits.maxComputeWorkgroupsPerDimension;
    if (gx > maxDim || gy > maxDim || gz > maxDim) {
      throw new Error(`webgpu ${call.label}: grid [${gx}, ${gy}, ${gz}] exceeds ${maxDim}`);
    }
    const windows = call.buffers.map((b) =>
      Math.max(1, Math.ceil(b.length / this.#windowElems[b.format]))
    );
    const nBindings = windows.reduce((a, b) => a + b, 0);
    if (nBindings > this.#ctx.limits.maxStorageBuffersPerShaderStage) {
      const sizes = call.buffers.map((b, i) =>
        `${b.name}: ${b.length} ${b.format} in ${windows[i]}`
      );
      throw new Error(
        `webgpu ${call.label}: needs ${nBindings} storage bindings (${sizes.join(", ")}), ` +
          `over maxStorageBuffersPerShaderStage ${this.#ctx.limits.maxStorageBuffersPerShaderStage}`,
      );
    }
    const paramWords = Math.max(4, Math.ceil(call.params.length / 4) * 4);
    const cached = this.#pipeline(call, windows, paramWords);

    // Parameters: a slice of this batch's arena.
    const slotBytes = Math.ceil((paramWords * 4) / this.#slotAlign) * this.#slotAlign;
    if (this.#arenaPos + slotBytes > ARENA_BYTES || this.#pending >= this.#opts.maxBatch) {
      this.flush();
    }
    const offset = this.#arenaPos;
    this.#arena.fill(0, offset / 4, offset / 4 + paramWords);
    for (let i = 0; i < call.params.length; i++) this.#arena[offset / 4 + i] = call.params[i];
    this.#arenaPos += slotBytes;

    const entries: GPUBindGroupEntry[] = [
      { binding: 0, resource: { buffer: this.#paramsBuf, offset, size: paramWords * 4 } },
    ];
    let binding = 1;
    for (let k = 0; k < call.buffers.length; k++) {
      const b = call.buffers[k];
      const eb = BYTES[b.format];
      const windowBytes = this.#windowElems[b.format] * eb;
      const total = Math.max(4, Math.ceil((b.length * eb) / 4) * 4);
      if (total > b.buf.size) {
        throw new Error(
          `webgpu ${call.label}: buffer '${b.name}' of ${b.buf.size} bytes is smaller than ` +
            `${b.length} ${b.format} elements`,
        );
      }
      for (let w = 0; w < windows[k]; w++) {
        const start = w * windowBytes;
        entries.push({
          binding: binding++,
          resource: {
            buffer: b.buf.buffer,
            offset: start,
            size: Math.min(windowBytes, total - start),
          },
        });
      }
      b.buf.lastBatch = this.batchId;
    }
    const bindGroup = this.#ctx.device.createBindGroup({ layout: cached.layout, entries });
    if (this.#pass === null) {
      if (this.#encoder === null) this.#encoder = this.#ctx.device.createCommandEncoder();
      this.#pass = this.#encoder.beginComputePass();
    }
    this.#pass.setPipeline(cached.pipeline);
    this.#pass.setBindGroup(0, bindGroup);
    this.#pass.dispatchWorkgroups(gx, gy, gz);
    this.#pending++;
    this.dispatches++;
  }

  /** Records a buffer-to-buffer copy (ordered with the dispatches). */
  copyBufferToBuffer(
    src: GPUBuffer,
    srcOffset: number,
    dst: GPUBuffer,
    dstOffset: number,
    bytes: number,
  ): void {
    if (this.#pass !== null) {
      this.#pass.end();
      this.#pass = null;
    }
    if (this.#encoder === null) this.#encoder = this.#ctx.device.createCommandEncoder();
    this.#encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    this.#pending++;
  }

  /** True when commands are recorded but not submitted. */
  get hasPending(): boolean {
    return this.#encoder !== null;
  }

  /** Submits everything recorded so far. */
  flush(): void {
    if (this.#encoder === null) return;
    if (this.#pass !== null) {
      this.#pass.end();
      this.#pass = null;
    }
    const device = this.#ctx.device;
    if (this.#arenaPos > 0) {
      device.queue.writeBuffer(this.#paramsBuf, 0, this.#arena, 0, this.#arenaPos / 4);
    }
    device.queue.submit([this.#encoder.finish()]);
    this.#encoder = null;
    this.#pending = 0;
    this.#arenaPos = 0;
    this.batchId++;
    this.submits++;
  }

  #assemble(call: KernelCall, windows: number[], paramWords: number): string {
    const parts: string[] = [];
    if (call.buffers.some((b) => b.format === "f16")) parts.push("enable f16;");
    parts.push(
      `@group(0) @binding(0) var<uniform> P_: array<vec4<u32>, ${paramWords / 4}>;`,
      "fn prm(i: u32) -> u32 { return P_[i >> 2u][i & 3u]; }",
      "fn prmf(i: u32) -> f32 { return bitcast<f32>(prm(i)); }",
      "fn prmi(i: u32) -> i32 { return bitcast<i32>(prm(i)); }",
    );
    let binding = 1;
    for (let k = 0; k < call.buffers.length; k++) {
      const b = call.buffers[k];
      const n = windows[k];
      const W = this.#windowElems[b.format];
      const access = b.write ? "read_write" : "read";
      for (let w = 0; w < n; w++) {
        parts.push(
          `@group(0) @binding(${binding++}) var<storage, ${access}> ${b.name}_${w}: array<${b.format}>;`,
        );
      }
      const lt = LOAD_TYPE[b.format];
      const conv = (e: string) => (b.format === "f16" ? `f32(${e})` : e);
      const load: string[] = [];
      const store: string[] = [];
      for (let w = 0; w < n; w++) {
        const idx = w === 0 ? "i" : `i - ${w * W}u`;
        const guard = w < n - 1 ? `if (i < ${(w + 1) * W}u) ` : "";
        load.push(`  ${guard}{ return ${conv(`${b.name}_${w}[${idx}]`)}; }`);
        const v = b.format === "f16" ? "f16(v)" : "v";
        store.push(`  ${guard}{ ${b.name}_${w}[${idx}] = ${v}; return; }`);
      }
      parts.push(`fn ${b.name}_ld(i: u32) -> ${lt} {\n${load.join("\n")}\n}`);
      if (b.write) parts.push(`fn ${b.name}_st(i: u32, v: ${lt}) {\n${store.join("\n")}\n}`);
    }
    parts.push(call.body);
    return parts.join("\n");
  }

  #pipeline(call: KernelCall, windows: number[], paramWords: number): CachedPipeline {
    // Two-level key: the body string (usually the same memoised instance, whose hash V8
    // caches) and a short signature of the bindings; the full source is built only on a miss.
    let bySig = this.#cache.get(call.body);
    if (bySig === undefined) this.#cache.set(call.body, bySig = new Map());
    let sig = `${paramWords}`;
    for (let k = 0; k < call.buffers.length; k++) {
      const b = call.buffers[k];
      sig += `|${b.name}:${b.format}:${b.write ? "w" : "r"}:${windows[k]}`;
    }
    const hit = bySig.get(sig);
    if (hit !== undefined) return hit;
    const code = this.#assemble(call, windows, paramWords);
    const device = this.#ctx.device;
    const entries: GPUBindGroupLayoutEntry[] = [
      { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "uniform" } },
    ];
    let binding = 1;
    for (let k = 0; k < call.buffers.length; k++) {
      const type = call.buffers[k].write ? "storage" : "read-only-storage";
      for (let w = 0; w < windows[k]; w++) {
        entries.push({ binding: binding++, visibility: GPUShaderStage.COMPUTE, buffer: { type } });
      }
    }
    device.pushErrorScope("validation");
    const layout = device.createBindGroupLayout({ entries, label: call.label });
    const module = device.createShaderModule({ code, label: call.label });
    const pipeline = device.createComputePipeline({
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: "main" },
      label: call.label,
    });
    device.popErrorScope().then((err) => {
      if (err !== null) {
        this.#ctx.fail(
          new Error(`webgpu: kernel '${call.label}' failed to compile: ${err.message}`),
        );
      }
    });
    const entry = { pipeline, layout };
    bySig.set(sig, entry);
    this.#pipelines++;
    return entry;
  }
}

/** A 2-D grid covering `workgroups` workgroups (WGSL: `wid.y * nwg.x + wid.x`). */
export function grid1(workgroups: number, maxDim = 65535): [number, number, number] {
  if (workgroups <= maxDim) return [workgroups, 1, 1];
  const y = Math.ceil(workgroups / maxDim);
  return [Math.ceil(workgroups / y), y, 1];
}

/** WGSL entry-point signature for 1-D kernels over 2-D grids; defines `gid` and `wg`. */
export function entry1d(wgSize: number): string {
  return `@compute @workgroup_size(${wgSize})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let wg = wid.y * nwg.x + wid.x;
  let gid = wg * ${wgSize}u + lid;`;
}
