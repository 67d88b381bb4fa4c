/**
 * Compiles a row kernel (`../row_kernels.ts`) to a JavaScript function for the reference
 * backend: one call runs the whole kernel over a `[rows, cols]` matrix in float64 and stores the
 * results in the output arrays (Float32Array, or Float64Array for the float64 reference).
 *
 * For each row: the per-row inputs are read once; each group of reductions that do not read
 * each other is one pass over the row, summing in float64 in column order (a `max` propagates
 * NaN, as `Math.max`); a pick reads one element; a final pass writes the `[rows, cols]` outputs
 * and adds the column sums (float64 accumulators over rows in order, stored at the end); the
 * per-row outputs come last. A node that reads only row values (per-row inputs, indices,
 * scalars, earlier steps, `cols`) is evaluated once per row, before the pass that first needs
 * it, not once per element. A kept reduction stores each element's value in its output array
 * and later passes read it back from there, in that array's precision.
 *
 * Like `expr.ts`, the function is generated as source (the same renderer: a `const` per shared
 * node), and built of closures where the host forbids generating code.
 *
 * @module
 */
import { children, input, inputNames, isLeaf, type Node, type Num, withChildren } from "../expr.ts";
import { reductionPasses, type RowKernel, type RowReduce } from "../row_kernels.ts";
import { type ArgsFn, compileArgs, generateFunction, jsSource } from "./expr.ts";

/** The arrays of a row kernel call by name: inputs (i32 for indices) and outputs. */
export type RowBuffers = Readonly<Record<string, Float32Array | Float64Array | Int32Array>>;

/** A compiled row kernel. */
export interface RowKernelJs {
  /** The `[rows, cols]` outputs: the kernel's outputs and kept reductions. */
  readonly elementOutputs: readonly string[];
  /** The `[rows]` outputs. */
  readonly rowOutputs: readonly string[];
  /** The `[cols]` outputs (column sums). */
  readonly colOutputs: readonly string[];
  /**
   * Runs the kernel on `rows` rows of `cols` columns: reads the inputs in `buffers` and
   * `scalars` by name and writes every element of each output array in `buffers`.
   */
  run(
    buffers: RowBuffers,
    scalars: Readonly<Record<string, number>>,
    rows: number,
    cols: number,
  ): void;
}

/** Options of {@link compileRowJs}. */
export interface CompileRowJsOptions {
  /** Build closures even where generating code is allowed (tests of the fallback). */
  closures?: boolean;
}

/** What an operand name refers to. */
type Kind =
  | "rowInput"
  | "colInput"
  | "keep"
  | "col"
  | "cols"
  | "perRow"
  | "index"
  | "scalar"
  | "step"
  | "hoist";

/** Kinds whose value changes along the row. */
const ELEMENT: ReadonlySet<Kind> = new Set(["rowInput", "colInput", "keep", "col"]);

/** An expression computed once per row: into a variable, or a `[rows]` output. */
interface RowValue {
  to: string;
  output: boolean;
  e: Num;
}

/** What the compiled function does for each row, in order. */
type Item =
  | { kind: "row"; values: RowValue[] }
  | { kind: "pick"; name: string; from: string; at: string }
  | {
    kind: "pass";
    reduce: { kind: RowReduce["kind"]; name: string; e: Num; keep?: string }[];
    outputs: [string, Num][];
    colSums: [string, Num][];
    /** The element operands the pass reads. */
    loads: string[];
  };

/** A row kernel ordered into row values and passes, element expressions split from row ones. */
interface Plan {
  kinds: Map<string, Kind>;
  items: Item[];
  elementOutputs: string[];
}

/** The evaluator of a row kernel: generated source, or closures (see the module doc). */
export function compileRowJs(k: RowKernel, o: CompileRowJsOptions = {}): RowKernelJs {
  const plan = planRows(k);
  const run = (o.closures ? null : generateRows(k, plan)) ?? closureRows(k, plan);
  return {
    elementOutputs: plan.elementOutputs,
    rowOutputs: Object.keys(k.rowOutputs),
    colOutputs: Object.keys(k.colSums),
    run,
  };
}

type Run = RowKernelJs["run"];

const IDENT = /^[A-Za-z_]\w*$/;

function planRows(k: RowKernel): Plan {
  const where = "row kernel";
  const kinds = new Map<string, Kind>([["col", "col"], ["cols", "cols"]]);
  const declare = (names: readonly string[], kind: Kind) => {
    for (const n of names) {
      if (!IDENT.test(n)) throw new Error(`${where}: '${n}' is not a valid name`);
      const had = kinds.get(n);
      if (had !== undefined && !(had === "keep" && kind === "keep")) {
        throw new Error(`${where}: '${n}' is declared twice (${had} and ${kind})`);
      }
      kinds.set(n, kind);
    }
  };
  declare(k.rowInputs, "rowInput");
  declare(k.colInputs, "colInput");
  declare(k.perRow, "perRow");
  declare(k.indices, "index");
  declare(k.scalars, "scalar");
  for (const s of k.steps) {
    declare([s.name], "step");
    if (s.kind !== "pick" && s.keep !== undefined) declare([s.keep], "keep");
  }
  const written = [k.outputs, k.rowOutputs, k.colSums].flatMap((r) => Object.keys(r));
  for (const n of written) {
    if (!IDENT.test(n)) throw new Error(`${where}: '${n}' is not a valid name`);
  }

  // Steps and kept values become readable once computed.
  const ready = new Set<string>(
    [...kinds].filter(([, kind]) => kind !== "step" && kind !== "keep").map(([n]) => n),
  );
  const check = (e: Node, what: string) => {
    for (const n of inputNames(e)) {
      if (!kinds.has(n)) throw new Error(`${where}: ${what} reads '${n}', not given`);
      if (!ready.has(n)) throw new Error(`${where}: ${what} reads '${n}' before it is computed`);
    }
  };

  const elem = new Map<Node, boolean>();
  const isElement = (n: Node): boolean => {
    let v = elem.get(n);
    if (v === undefined) {
      v = n.kind === "input" || n.kind === "u32input"
        ? ELEMENT.has(kinds.get(n.name)!)
        : children(n).some(isElement);
      elem.set(n, v);
    }
    return v;
  };

  // Row nodes inside element expressions become variables ("hoisted"), computed once per row.
  const hoisted = new Map<Node, string>();
  const asOperand = (n: Node, name: string): Node =>
    n.kind === "u32binary" || n.kind === "shr" || n.kind === "u32const" || n.kind === "u32input"
      ? { kind: "u32input", name }
      : input(name);
  const rowParts = new Map<Node, Node>(); // keeps a node used twice one node (computed once)
  const rowPart = (n: Node): Node => {
    const h = hoisted.get(n);
    if (h !== undefined) return asOperand(n, h);
    let r = rowParts.get(n);
    if (r === undefined) {
      r = isLeaf(n) ? n : withChildren(n, children(n).map(rowPart));
      rowParts.set(n, r);
    }
    return r;
  };
  const rewritten = new Map<Node, Node>();
  const elementPart = (n: Node, pending: RowValue[]): Node => {
    let r = rewritten.get(n);
    if (r !== undefined) return r;
    if (isLeaf(n)) r = n;
    else if (
      isElement(n) || n.kind === "cmp" || n.kind === "isnan" || n.kind === "isinf" ||
      n.kind === "geu"
    ) {
      // A condition stays where it is used (a variable holds numbers); its operands may move.
      r = withChildren(n, children(n).map((ch) => elementPart(ch, pending)));
    } else {
      const name = `$h${hoisted.size}`; // "$": no kernel name has one
      pending.push({ to: name, output: false, e: rowPart(n) as Num });
      hoisted.set(n, name);
      kinds.set(name, "hoist");
      ready.add(name);
      r = asOperand(n, name);
    }
    rewritten.set(n, r);
    return r;
  };
  const loadsOf = (es: Node[]) => [...inputNames(...es)].filter((n) => ELEMENT.has(kinds.get(n)!));

  const items: Item[] = [];
  const steps = k.steps;
  // Picks read only a row input and an index: first, as in every compiler.
  for (const s of steps) {
    if (s.kind !== "pick") continue;
    if (kinds.get(s.from) !== "rowInput") {
      throw new Error(`${where}: pick '${s.name}' reads '${s.from}', not a row input`);
    }
    if (kinds.get(s.at) !== "index") {
      throw new Error(`${where}: pick '${s.name}' is at '${s.at}', not an index input`);
    }
    items.push({ kind: "pick", name: s.name, from: s.from, at: s.at });
    ready.add(s.name);
  }
  for (const group of reductionPasses(k)) {
    for (const r of group) check(r.of, `reduction '${r.name}'`);
    const pending: RowValue[] = [];
    const reduce = group.map((r) => ({
      kind: r.kind,
      name: r.name,
      e: elementPart(r.of, pending) as Num,
      keep: r.keep,
    }));
    if (pending.length > 0) items.push({ kind: "row", values: pending });
    items.push({
      kind: "pass",
      reduce,
      outputs: [],
      colSums: [],
      loads: loadsOf(reduce.map((r) => r.e)),
    });
    for (const r of group) {
      ready.add(r.name);
      if (r.keep) ready.add(r.keep);
    }
  }

  const outs = Object.entries(k.outputs), sums = Object.entries(k.colSums);
  if (outs.length + sums.length > 0) {
    for (const [n, e] of outs) check(e, `output '${n}'`);
    for (const [n, e] of sums) {
      check(e, `column sum '${n}'`);
      for (const r of inputNames(e)) {
        if (kinds.get(r) === "step" || kinds.get(r) === "keep") {
          throw new Error(`${where}: column sum '${n}' reads the step '${r}'`);
        }
      }
    }
    const pending: RowValue[] = [];
    const outputs = outs.map(([n, e]): [string, Num] => [n, elementPart(e, pending) as Num]);
    const colSums = sums.map(([n, e]): [string, Num] => [n, elementPart(e, pending) as Num]);
    if (pending.length > 0) items.push({ kind: "row", values: pending });
    items.push({
      kind: "pass",
      reduce: [],
      outputs,
      colSums,
      loads: loadsOf([...outputs, ...colSums].map(([, e]) => e)),
    });
  }
  const rowOuts = Object.entries(k.rowOutputs);
  for (const [n, e] of rowOuts) {
    check(e, `row output '${n}'`);
    if (isElement(e)) throw new Error(`${where}: row output '${n}' reads element values`);
  }
  if (rowOuts.length > 0) {
    items.push({
      kind: "row",
      values: rowOuts.map(([n, e]) => ({ to: n, output: true, e: rowPart(e) as Num })),
    });
  }
  const elementOutputs = [
    ...new Set([
      ...steps.flatMap((s) => (s.kind !== "pick" && s.keep !== undefined ? [s.keep] : [])),
      ...outs.map(([n]) => n),
    ]),
  ];
  return { kinds, items, elementOutputs };
}

/** The kernel as generated source; null where the host forbids generating code. */
function generateRows(k: RowKernel, plan: Plan): Run | null {
  const { kinds } = plan;
  const operand = (n: string): string => {
    switch (kinds.get(n)) {
      case "rowInput":
      case "colInput":
      case "keep":
        return `e_${n}`;
      case "col":
        return "c";
      case "cols":
        return "cols";
      case "perRow":
      case "index":
        return `r_${n}`;
      case "scalar":
        return `s_${n}`;
      case "step":
        return `v_${n}`;
      case "hoist":
        return n;
      default:
        throw new Error(`row kernel: '${n}' is not given`);
    }
  };
  const buffers = new Set([
    ...k.rowInputs,
    ...k.colInputs,
    ...k.perRow,
    ...k.indices,
    ...plan.elementOutputs,
    ...Object.keys(k.rowOutputs),
    ...Object.keys(k.colSums),
  ]);
  const src: string[] = [];
  for (const b of buffers) src.push(`const b_${b} = B[${JSON.stringify(b)}];`);
  for (const s of k.scalars) src.push(`const s_${s} = S[${JSON.stringify(s)}];`);
  for (const n of Object.keys(k.colSums)) src.push(`const cs_${n} = new Float64Array(cols);`);
  src.push("for (let r = 0; r < rows; r++) {", "const o = r * cols;");
  for (const n of [...k.perRow, ...k.indices]) src.push(`const r_${n} = b_${n}[r];`);
  for (const it of plan.items) {
    if (it.kind === "row") {
      const { lines, exprs } = jsSource(it.values.map((v) => v.e), operand);
      const vars = it.values.filter((v) => !v.output).map((v) => v.to);
      if (vars.length > 0) src.push(`let ${vars.join(", ")};`);
      src.push("{", ...lines);
      it.values.forEach((v, j) => src.push(`${v.output ? `b_${v.to}[r]` : v.to} = ${exprs[j]};`));
      src.push("}");
    } else if (it.kind === "pick") {
      const at = `r_${it.at}`;
      src.push(`const v_${it.name} = ${at} >= 0 && ${at} < cols ? b_${it.from}[o + ${at}] : NaN;`);
    } else {
      for (const r of it.reduce) src.push(`let a_${r.name} = ${r.kind === "sum" ? 0 : -Infinity};`);
      src.push("for (let c = 0; c < cols; c++) {");
      for (const n of it.loads) {
        if (n === "col") continue;
        src.push(`const e_${n} = b_${n}[${kinds.get(n) === "colInput" ? "c" : "o + c"}];`);
      }
      const roots = [...it.reduce.map((r) => r.e), ...it.outputs.map(([, e]) => e)];
      roots.push(...it.colSums.map(([, e]) => e));
      const { lines, exprs } = jsSource(roots, operand);
      src.push(...lines);
      it.reduce.forEach((r, j) => {
        const [a, x] = [`a_${r.name}`, `x_${r.name}`];
        src.push(`const ${x} = ${exprs[j]};`);
        src.push(r.kind === "sum" ? `${a} += ${x};` : `${a} = Math.max(${a}, ${x});`);
        if (r.keep !== undefined) src.push(`b_${r.keep}[o + c] = ${x};`);
      });
      let j = it.reduce.length;
      for (const [n] of it.outputs) src.push(`b_${n}[o + c] = ${exprs[j++]};`);
      for (const [n] of it.colSums) src.push(`cs_${n}[c] += ${exprs[j++]};`);
      src.push("}");
      for (const r of it.reduce) src.push(`const v_${r.name} = a_${r.name};`);
    }
  }
  src.push("}");
  for (const n of Object.keys(k.colSums)) {
    src.push(`for (let c = 0; c < cols; c++) b_${n}[c] = cs_${n}[c];`);
  }
  return generateFunction(["B", "S", "rows", "cols"], src.join("\n")) as Run | null;
}

/** The kernel as closures over one float64 array of operands (hosts without code generation). */
function closureRows(k: RowKernel, plan: Plan): Run {
  const names = [...plan.kinds.keys()];
  const slot = (n: string) => names.indexOf(n);
  const fn = (e: Num): ArgsFn => compileArgs(e, names, { closures: true });
  const COL = slot("col"), COLS = slot("cols");
  const perRow = [...k.perRow, ...k.indices].map((n) => ({ n, at: slot(n) }));
  const scalars = k.scalars.map((n) => ({ n, at: slot(n) }));
  const sums = Object.keys(k.colSums);
  type Step = (
    env: Float64Array,
    B: RowBuffers,
    r: number,
    cols: number,
    cs: Float64Array[],
  ) => void;
  const steps: Step[] = plan.items.map((it): Step => {
    if (it.kind === "row") {
      const fs = it.values.map((v) => ({ f: fn(v.e), to: v.to, at: slot(v.to), output: v.output }));
      return (env, B, r) => {
        for (const v of fs) {
          if (v.output) B[v.to][r] = v.f(env);
          else env[v.at] = v.f(env);
        }
      };
    }
    if (it.kind === "pick") {
      const to = slot(it.name), at = slot(it.at), from = it.from;
      return (env, B, r, cols) => {
        const t = env[at];
        env[to] = t >= 0 && t < cols ? B[from][r * cols + t] : NaN;
      };
    }
    const loads = it.loads.filter((n) => n !== "col").map((n) => ({
      n,
      at: slot(n),
      col: plan.kinds.get(n) === "colInput",
    }));
    const red = it.reduce.map((r) => ({ ...r, f: fn(r.e), at: slot(r.name) }));
    const outs = it.outputs.map(([n, e]) => ({ n, f: fn(e) }));
    const cols = it.colSums.map(([n, e]) => ({ j: sums.indexOf(n), f: fn(e) }));
    const acc = new Float64Array(red.length), vals = new Float64Array(outs.length);
    return (env, B, r, nc, cs) => {
      const o = r * nc;
      red.forEach((x, j) => (acc[j] = x.kind === "sum" ? 0 : -Infinity));
      for (let c = 0; c < nc; c++) {
        env[COL] = c;
        for (const l of loads) env[l.at] = B[l.n][l.col ? c : o + c];
        red.forEach((x, j) => {
          const v = x.f(env);
          acc[j] = x.kind === "sum" ? acc[j] + v : Math.max(acc[j], v);
          if (x.keep !== undefined) B[x.keep][o + c] = v;
        });
        outs.forEach((x, j) => (vals[j] = x.f(env)));
        for (const x of cols) cs[x.j][c] += x.f(env);
        outs.forEach((x, j) => (B[x.n][o + c] = vals[j]));
      }
      red.forEach((x, j) => (env[x.at] = acc[j]));
    };
  });
  return (B, S, rows, cols) => {
    const env = new Float64Array(names.length);
    env[COLS] = cols;
    for (const s of scalars) env[s.at] = S[s.n];
    const cs = sums.map(() => new Float64Array(cols));
    for (let r = 0; r < rows; r++) {
      for (const p of perRow) env[p.at] = B[p.n][r];
      for (const s of steps) s(env, B, r, cols, cs);
    }
    sums.forEach((n, j) => B[n].set(cs[j]));
  };
}
