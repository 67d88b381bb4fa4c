/**
 * Assembles the wasm backend's kernel module: every generated kernel in one module importing the
 * backend's memory as `env.memory`, with the elementwise row kernels in the function table.
 *
 * @module
 */

import { ModuleBuilder } from "./builder.ts";
import { Gen } from "./gen.ts";
import { addAttentionKernels } from "./gen_attention.ts";
import { addElementwise } from "./gen_elementwise.ts";
import { addGemv } from "./gen_gemv.ts";
import { addMatmul, DEFAULT_MATMUL_CONFIG, type MatmulConfig } from "./gen_matmul.ts";
import { addMiscKernels } from "./gen_misc.ts";
import { addReduceKernels, reduceKernelNames } from "./gen_rows.ts";
import { addAccFinish, addRowKernel } from "./gen_row_expr.ts";
import { ROW_KERNELS } from "../row_kernels.ts";

/** The kernel module's function computing the row kernel `name` of `ROW_KERNELS`. */
export function rowKernelFunction(name: string): string {
  return `row_${name}`;
}

/** What to generate. */
export interface KernelModuleOptions {
  /** 64-bit memory. */
  mem64: boolean;
  /** Use `f32x4.relaxed_madd`. */
  relaxed: boolean;
  /** The memory is shared (threads). */
  shared: boolean;
  /** Maximum memory size in 64 KiB pages. */
  maxPages: number;
  /** Matmul blocking. */
  matmul?: MatmulConfig;
}

/** A generated kernel module. */
export interface KernelModule {
  /** The binary. */
  bytes: Uint8Array;
  /** Table slots of the elementwise row kernels by key (`unary:exp`, `binary:add`, ...). */
  slots: Map<string, number>;
  /** Names of every exported kernel. */
  exports: string[];
  /** The matmul blocking used. */
  matmul: MatmulConfig;
}

/** Generates the kernel module. */
export function buildKernelModule(o: KernelModuleOptions): KernelModule {
  const g = new Gen({ mem64: o.mem64, relaxed: o.relaxed });
  const mod = new ModuleBuilder();
  mod.importMemory({
    module: "env",
    name: "memory",
    initial: 1,
    maximum: o.maxPages,
    shared: o.shared,
    memory64: o.mem64,
  });
  const cfg = o.matmul ?? DEFAULT_MATMUL_CONFIG;
  const ew = addElementwise(mod, g);
  mod.setTable(ew.table);
  addMatmul(mod, g, cfg, "matmul");
  addReduceKernels(mod, g);
  for (const [name, k] of Object.entries(ROW_KERNELS)) {
    addRowKernel(mod, g, rowKernelFunction(name), k);
  }
  addAccFinish(mod, g);
  addMiscKernels(mod, g);
  addAttentionKernels(mod, g);
  const gemv = addGemv(mod, g);
  const exports = [
    ...gemv,
    "matmul",
    "ew",
    ...reduceKernelNames(),
    ...Object.keys(ROW_KERNELS).map(rowKernelFunction),
    "acc_finish",
    "fill",
    "cast",
    "gather",
    "scatter_add",
    "zero",
    "dropout",
    "adamw",
    "attn_fwd",
    "attn_bwd",
  ];
  return { bytes: mod.toBytes(), slots: ew.slots, exports, matmul: cfg };
}
