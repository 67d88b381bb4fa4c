/**
 * Compiles any {@link RowKernel} of `../row_kernels.ts` (softmax, log-softmax, layer norm,
 * cross-entropy, forward and backward) to WGSL kernels over a contiguous `[rows, cols]` matrix.
 *
 * - A kernel with reductions runs one 256-invocation workgroup per row (a 2-D grid beyond the
 *   dispatch limit). Each invocation folds a strided slice of the row (columns lid, lid + 256,
 *   …), then a shared-memory tree combines the 256 partials (`wg_sum`, `wg_max`): the order of
 *   every sum is fixed, so results are deterministic. Consecutive reductions that do not read
 *   each other share one pass over the row (one loop, then one tree per reduction).
 * - Row values (nodes that read only per-row inputs, indices, scalars, step results and
 *   `cols`) are computed once per invocation per row, outside the loops; element expressions
 *   once per element. Both go through the WGSL renderer of `expr.ts`.
 * - A kernel without reductions or row outputs (cross-entropy's backward) is one invocation
 *   per element instead, so that few long rows still fill the device.
 * - Column sums are a second kernel: partial sums over chunks of {@link COL_SUM_ROW_CHUNK}
 *   rows, one invocation per (chunk, column), then a sum over the chunks (`reduce.ts`); both
 *   stages add in a fixed order.
 *
 * Buffers are bound as `B_<name>`, and WGSL values are named `e_<name>` (element values),
 * `r_<name>` (row values: inputs and step results), `rv_<k>` (computed row values), so no
 * description name can clash with a WGSL word. Compiled kernels are cached per description.
 *
 * @module
 */
import { children, inputNames, type Node, type Num, useCounts } from "../expr.ts";
import { reductionPasses, type RowKernel } from "../row_kernels.ts";
import { EXPR_WGSL_PRELUDE, wgslRoots } from "./expr.ts";
import { type BufferArg, entry1d, f32Bits, grid1, type KernelCall } from "./dispatch.ts";
import { reduceCall } from "./reduce.ts";

const WG = 256;
/** Rows per partial sum in the first stage of the column sums. */
export const COL_SUM_ROW_CHUNK = 64;
/** Parameter words before the scalars: rows, cols, chunks of the column sums. */
const FIXED_PARAMS = 3;

// Shared-memory tree reductions. Must be called from uniform control flow.
const WG_REDUCE = `
var<workgroup> red: array<f32, ${WG}>;
fn wg_sum(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn wg_max(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
`;

/** One generated kernel: its body and the buffers it binds, by description name. */
interface Generated {
  body: string;
  reads: string[];
  writes: string[];
}

/** The kernels of one row kernel. */
interface Compiled {
  /** The per-row kernel (or per-element, `flat`); null when there is nothing but column sums. */
  main: (Generated & { flat: boolean }) | null;
  /** The first stage of the column sums. */
  colSums: Generated | null;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Names and what they are, for one kernel. */
class Scope {
  /** Element leaves: row inputs, column inputs, kept outputs, `col`. */
  readonly elem = new Set<string>(["col"]);
  /** Row leaves available now: per-row inputs, indices, scalars, `cols`, finished steps. */
  readonly row = new Set<string>(["cols"]);
  /** Hoisted row values. */
  readonly bound = new Map<Node, string>();
  readonly #isRow = new Map<Node, boolean>();
  readonly #k: RowKernel;
  readonly #label: string;

  constructor(k: RowKernel, label: string, withKeeps: boolean) {
    this.#k = k;
    this.#label = label;
    for (const n of [...k.rowInputs, ...k.colInputs]) this.elem.add(n);
    if (withKeeps) {
      for (const s of k.steps) if (s.kind !== "pick" && s.keep) this.elem.add(s.keep);
    }
    for (const n of [...k.perRow, ...k.indices, ...k.scalars]) this.row.add(n);
  }

  /** Whether a node reads no element value. */
  isRow(n: Node): boolean {
    let r = this.#isRow.get(n);
    if (r === undefined) {
      r = n.kind === "input" ? !this.elem.has(n.name) : children(n).every((c) => this.isRow(c));
      this.#isRow.set(n, r);
    }
    return r;
  }

  /** The WGSL value of an input leaf. */
  leaf(name: string): string {
    if (this.elem.has(name)) return `e_${name}`;
    if (this.row.has(name)) return `r_${name}`;
    throw new Error(
      `webgpu ${this.#label}: an expression reads '${name}', which is not an input, a scalar ` +
        `or an earlier step of the row kernel here`,
    );
  }

  /**
   * Hoists the row values of element expressions: statements (before the loop) computing
   * every maximal row subexpression not computed yet, each bound to a name `rv_<k>`.
   */
  hoist(roots: Num[]): string[] {
    const fresh: Num[] = [];
    const seen = new Set<Node>();
    const visit = (n: Node) => {
      if (seen.has(n) || this.bound.has(n)) return;
      seen.add(n);
      if (
        this.isRow(n) && (n.kind === "unary" || n.kind === "binary" || n.kind === "select")
      ) {
        fresh.push(n);
        return;
      }
      for (const c of children(n)) visit(c);
    };
    for (const r of roots) visit(r);
    if (fresh.length === 0) return [];
    const { lines, exprs } = wgslRoots(fresh, { input: (n) => this.leaf(n), bound: this.bound });
    const names = fresh.map((_, j) => `rv_${this.bound.size + j}`);
    fresh.forEach((n, j) => this.bound.set(n, names[j]));
    if (lines.length === 0) return names.map((nm, j) => `  let ${nm} = ${exprs[j]};`);
    // The shared temporaries stay in a block of their own (their names repeat across blocks).
    return [
      ...names.map((nm) => `  var ${nm}: f32;`),
      "  {",
      ...lines.map((l) => `  ${l}`),
      ...names.map((nm, j) => `    ${nm} = ${exprs[j]};`),
      "  }",
    ];
  }

  /**
   * Element expressions at column `c` of row `row` (`base` = row·cols): loads of the element
   * leaves they read (recorded in `reads`), shared `let`s, and each root's WGSL.
   */
  element(roots: Num[], reads: Set<string>): { lines: string[]; exprs: string[] } {
    const loads: string[] = [];
    for (const n of useCounts(...roots).keys()) {
      if (n.kind !== "input" || !this.elem.has(n.name)) continue;
      const name = n.name;
      if (name === "col") loads.push("    let e_col = f32(c);");
      else if (this.#k.colInputs.includes(name)) loads.push(`    let e_${name} = B_${name}_ld(c);`);
      else loads.push(`    let e_${name} = B_${name}_ld(base + c);`);
      if (name !== "col") reads.add(name);
    }
    const { lines, exprs } = wgslRoots(roots, { input: (n) => this.leaf(n), bound: this.bound });
    return { lines: [...loads, ...lines.map((l) => `  ${l}`)], exprs };
  }
}

/**
 * Statements declaring the row leaves the kernel reads: `fixed` (scalars, `cols`) and, for the
 * row `row`, `perRow` (per-row inputs; indices as `i_<name>`, an i32, and `r_<name>`, a number).
 */
function rowLeaves(
  k: RowKernel,
  used: Set<string>,
  reads: Set<string>,
): { fixed: string[]; perRow: string[] } {
  const fixed: string[] = [], perRow: string[] = [];
  if (used.has("cols")) fixed.push("  let r_cols = f32(cols);");
  k.scalars.forEach((s, j) => {
    if (used.has(s)) fixed.push(`  let r_${s} = prmf(${FIXED_PARAMS + j}u);`);
  });
  for (const p of k.perRow) {
    if (!used.has(p)) continue;
    perRow.push(`  let r_${p} = B_${p}_ld(row);`);
    reads.add(p);
  }
  for (const ix of k.indices) {
    if (!used.has(ix)) continue;
    perRow.push(`  let i_${ix} = B_${ix}_ld(row);`, `  let r_${ix} = f32(i_${ix});`);
    reads.add(ix);
  }
  return { fixed, perRow };
}

/** The per-row kernel (or the per-element one when there is nothing to reduce). */
function generateMain(k: RowKernel, label: string): (Generated & { flat: boolean }) | null {
  const outs = Object.keys(k.outputs), rowOuts = Object.keys(k.rowOutputs);
  const groups = reductionPasses(k);
  const picks = k.steps.flatMap((s) => (s.kind === "pick" ? [s] : []));
  const keeps = groups.flat().some((r) => r.keep !== undefined);
  if (outs.length === 0 && rowOuts.length === 0 && !keeps) return null;
  const flat = groups.length === 0 && rowOuts.length === 0;
  const scope = new Scope(k, label, true);
  const reads = new Set<string>(), writes = new Set<string>();
  const allRoots: Node[] = [
    ...groups.flat().map((r) => r.of),
    ...outs.map((o) => k.outputs[o]),
    ...rowOuts.map((o) => k.rowOutputs[o]),
  ];
  const used = inputNames(...allRoots);
  for (const p of picks) used.add(p.at);
  for (const name of [...used, ...outs, ...rowOuts]) checkName(label, name);

  const body: string[] = [];
  if (flat) {
    body.push(
      entry1d(WG),
      "  let rows = prm(0u);",
      "  let cols = prm(1u);",
      "  if (gid >= rows * cols) { return; }",
      "  let row = gid / cols;",
      "  let c = gid % cols;",
    );
  } else {
    body.push(
      WG_REDUCE,
      `@compute @workgroup_size(${WG})`,
      "fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,",
      "        @builtin(local_invocation_index) lid: u32) {",
      "  let row = wid.y * nwg.x + wid.x;",
      "  let rows = prm(0u);",
      "  let cols = prm(1u);",
      "  if (row >= rows) { return; }",
    );
  }
  const leaves = rowLeaves(k, used, reads);
  body.push("  let base = row * cols;", ...leaves.fixed, ...leaves.perRow);

  // Picks read only a row input and an index: computed first, by every invocation.
  for (const p of picks) {
    if (!k.rowInputs.includes(p.from) || !k.indices.includes(p.at)) {
      throw new Error(
        `webgpu ${label}: pick '${p.name}' must read a row input at an index input, got ` +
          `'${p.from}' at '${p.at}'`,
      );
    }
    checkName(label, p.name);
    body.push(
      `  var r_${p.name} = nan_();`,
      `  if (i_${p.at} >= 0 && u32(i_${p.at}) < cols) { r_${p.name} = B_${p.from}_ld(base + u32(i_${p.at})); }`,
    );
    reads.add(p.from);
    scope.row.add(p.name);
  }

  groups.forEach((group, g) => {
    const roots = group.map((r) => r.of);
    body.push(...scope.hoist(roots));
    group.forEach((r, j) => {
      const init = r.kind === "sum" ? "0.0" : "-inf_()";
      body.push(`  var a_${g}_${j} = ${init};`);
    });
    const { lines, exprs } = scope.element(roots, reads);
    body.push(`  for (var c = lid; c < cols; c += ${WG}u) {`, ...lines);
    group.forEach((r, j) => {
      const a = `a_${g}_${j}`;
      body.push(`    let v_${j} = ${exprs[j]};`);
      body.push(r.kind === "sum" ? `    ${a} = ${a} + v_${j};` : `    ${a} = max(${a}, v_${j});`);
      if (r.keep) {
        // Read back by later passes at the same element, by this same invocation (the column
        // loops all stride alike): its own write is visible to it, no barrier needed.
        body.push(`    B_${r.keep}_st(base + c, v_${j});`);
        writes.add(r.keep);
      }
    });
    body.push("  }");
    for (const [j, r] of group.entries()) {
      checkName(label, r.name);
      body.push(`  let r_${r.name} = wg_${r.kind}(a_${g}_${j}, lid);`);
      scope.row.add(r.name);
    }
  });

  if (rowOuts.length > 0) {
    const roots = rowOuts.map((o) => k.rowOutputs[o]);
    body.push(...scope.hoist(roots));
    const { lines, exprs } = scope.element(roots, reads);
    body.push("  if (lid == 0u) {", ...lines);
    rowOuts.forEach((o, j) => body.push(`    B_${o}_st(row, ${exprs[j]});`));
    body.push("  }");
    for (const o of rowOuts) writes.add(o);
  }

  if (outs.length > 0) {
    const roots = outs.map((o) => k.outputs[o]);
    body.push(...scope.hoist(roots));
    const { lines, exprs } = scope.element(roots, reads);
    if (!flat) body.push(`  for (var c = lid; c < cols; c += ${WG}u) {`);
    body.push(...lines);
    outs.forEach((o, j) => body.push(`    B_${o}_st(base + c, ${exprs[j]});`));
    if (!flat) body.push("  }");
    for (const o of outs) writes.add(o);
  }
  body.push("}");
  return {
    body: `${EXPR_WGSL_PRELUDE}\n${body.join("\n")}`,
    reads: [...reads].filter((r) => !writes.has(r)),
    writes: [...writes],
    flat,
  };
}

/** The first stage of the column sums: one invocation per (chunk of rows, column). */
function generateColSums(k: RowKernel, label: string): Generated | null {
  const names = Object.keys(k.colSums);
  if (names.length === 0) return null;
  // Column sums may not read the steps (nor kept outputs): the scope holds none of them.
  const scope = new Scope(k, label, false);
  const roots = names.map((n) => k.colSums[n]);
  const used = inputNames(...roots);
  for (const name of [...used, ...names]) checkName(label, name);
  const reads = new Set<string>();
  const { fixed, perRow } = rowLeaves(k, used, reads);
  const { lines, exprs } = scope.element(roots, reads);
  const body = [
    EXPR_WGSL_PRELUDE,
    entry1d(WG),
    "  let rows = prm(0u);",
    "  let cols = prm(1u);",
    "  let chunks = prm(2u);",
    "  if (gid >= chunks * cols) { return; }",
    "  let c = gid % cols;",
    `  let r0 = (gid / cols) * ${COL_SUM_ROW_CHUNK}u;`,
    `  let r1 = min(rows, r0 + ${COL_SUM_ROW_CHUNK}u);`,
    ...fixed,
    ...names.map((_, j) => `  var a_${j} = 0.0;`),
    "  for (var row = r0; row < r1; row++) {",
    "    let base = row * cols;",
    ...perRow.map((l) => `  ${l}`),
    ...lines,
    ...names.map((_, j) => `    a_${j} = a_${j} + ${exprs[j]};`),
    "  }",
    ...names.map((n, j) => `  B_${n}_st(gid, a_${j});`),
    "}",
  ];
  return { body: body.join("\n"), reads: [...reads], writes: names };
}

/** Description names become parts of WGSL identifiers. */
function checkName(label: string, name: string): void {
  if (!IDENT.test(name)) throw new Error(`webgpu ${label}: '${name}' is not a WGSL identifier`);
}

const compiled = new WeakMap<RowKernel, Map<string, Compiled>>();

/** The kernels of a row kernel, compiled once per description (and label, for messages). */
function compile(k: RowKernel, label: string): Compiled {
  let byLabel = compiled.get(k);
  if (byLabel === undefined) compiled.set(k, byLabel = new Map());
  let hit = byLabel.get(label);
  if (hit === undefined) {
    hit = { main: generateMain(k, label), colSums: generateColSums(k, label) };
    byLabel.set(label, hit);
  }
  return hit;
}

/** What one call of a row kernel works on. */
export interface RowCallArgs {
  /** Rows of the `[rows, cols]` matrix. */
  rows: number;
  /** Its row length. */
  cols: number;
  /** Every buffer the kernel reads or writes, by its name in the description. */
  buffers: Readonly<Record<string, BufferArg>>;
  /** The kernel's scalars by name. */
  scalars?: Readonly<Record<string, number>>;
  /**
   * A scratch f32 buffer for partial column sums (`name` is its WGSL binding); the caller
   * releases it once the calls are recorded.
   */
  temp: (length: number, name: string) => BufferArg;
}

/** The dispatches computing row kernel `k` (labelled `label` in errors), in order. */
export function rowKernelCalls(
  k: RowKernel,
  label: string,
  args: RowCallArgs,
  maxDim = 65535,
): KernelCall[] {
  const { rows, cols } = args;
  const { main, colSums } = compile(k, label);
  const bind = (name: string, write: boolean): BufferArg => {
    const b = args.buffers[name];
    if (b === undefined) throw new Error(`webgpu ${label}: no buffer '${name}' given`);
    return { ...b, name: `B_${name}`, write };
  };
  const bindAll = (g: Generated) => [
    ...g.reads.map((n) => bind(n, false)),
    ...g.writes.map((n) => bind(n, true)),
  ];
  const scalars = k.scalars.map((s) => {
    const v = args.scalars?.[s];
    if (v === undefined) throw new Error(`webgpu ${label}: no value for scalar '${s}'`);
    return f32Bits(v);
  });
  const chunks = Math.ceil(rows / COL_SUM_ROW_CHUNK);
  const params = [rows, cols, chunks, ...scalars];
  const calls: KernelCall[] = [];
  if (main !== null) {
    calls.push({
      label,
      body: main.body,
      buffers: bindAll(main),
      params,
      grid: grid1(main.flat ? Math.ceil((rows * cols) / WG) : rows, maxDim),
    });
  }
  if (colSums !== null) {
    const grid = grid1(Math.ceil((chunks * cols) / WG), maxDim);
    if (chunks <= 1) {
      calls.push({
        label: `${label}.colSums`,
        body: colSums.body,
        buffers: bindAll(colSums),
        params,
        grid,
      });
    } else {
      const partials = colSums.writes.map((n) => args.temp(chunks * cols, `B_${n}`));
      calls.push({
        label: `${label}.colSums`,
        body: colSums.body,
        buffers: [...colSums.reads.map((n) => bind(n, false)), ...partials],
        params,
        grid,
      });
      colSums.writes.forEach((n, j) => {
        const part = { ...partials[j], name: "x", write: false };
        calls.push(
          reduceCall("sum", part, { ...bind(n, true), name: "out" }, 1, chunks, cols, maxDim),
        );
      });
    }
  }
  return calls;
}
