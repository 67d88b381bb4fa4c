/**
 * The harness of the kernel A/B scripts (`elementwise_ab.ts`, `row_kernels_ab.ts`,
 * `reduce_ab.ts`): the wasm backends of two checkouts of this repository (e.g. a baseline and a
 * change) timed in one process with the rounds alternating, so a busy machine slows both sides
 * alike. Prints which kernels' generated code differs, then min and median ms per call for each
 * op, thread count and side, and the new/old ratios of both.
 *
 * Flags of every script: `--old <checkout>` (required), `--new <checkout>` (default `.`),
 * `--rounds 5`, `--threads 1,2`, `--ms 150` (time per measurement), `--only a,b` (ops whose name
 * contains one of these).
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { printKernelDiff } from "./wasm_kernel_code.ts";

/** What the harness needs of a backend (a checkout's own `Backend` type may differ). */
export interface AbBackend<S> {
  dispose(s: S): void;
}

/** A timed op: runs once on a backend and its prepared buffers, returns what it allocated. */
export type AbOp<B, Bufs, S> = [name: string, run: (b: B, bufs: Bufs) => S | S[] | null];

/**
 * Parses the flags, loads both checkouts' wasm backends, prepares each backend's buffers with
 * `setup`, times every op (as many calls as fit in `--ms` and at least 3, after 3 warm-up
 * calls) and prints the table.
 */
export async function runKernelAb<B extends AbBackend<S>, Bufs, S>(
  ops: AbOp<B, Bufs, S>[],
  setup: (b: B) => Bufs,
): Promise<void> {
  const { values } = parseArgs({
    options: {
      old: { type: "string" },
      new: { type: "string", default: "." },
      rounds: { type: "string", default: "5" },
      threads: { type: "string", default: "1,2" },
      ms: { type: "string", default: "150" },
      only: { type: "string", default: "" },
    },
  });
  if (!values.old) throw new Error("--old <checkout> is required");
  const rounds = Number(values.rounds), budget = Number(values.ms);
  const threads = values.threads.split(",").map(Number);
  const only = values.only.split(",").filter(Boolean);
  const chosen = only.length ? ops.filter(([n]) => only.some((o) => n.includes(o))) : ops;

  await printKernelDiff(values.old, values.new);

  type Create = (o: { threads: number }) => Promise<B>;
  const load = async (root: string): Promise<Create> => {
    const url = pathToFileURL(resolve(root, "kernels/wasm/backend.ts")).href;
    return ((await import(url)) as { createWasmBackend: Create }).createWasmBackend;
  };
  const setups: { side: string; t: number; be: B; bufs: Bufs }[] = [];
  for (const [side, root] of [["old", values.old], ["new", values.new]]) {
    const create = await load(root);
    for (const t of threads) {
      const be = await create({ threads: t });
      setups.push({ side, t, be, bufs: setup(be) });
    }
  }

  const time = (be: B, bufs: Bufs, op: AbOp<B, Bufs, S>[1]): number => {
    const run = () => {
      const out = op(be, bufs);
      for (const o of Array.isArray(out) ? out : out === null ? [] : [out]) be.dispose(o);
    };
    for (let i = 0; i < 3; i++) run();
    let n = 0;
    const t0 = performance.now();
    let t1 = t0;
    while (t1 - t0 < budget || n < 3) {
      run();
      n++;
      t1 = performance.now();
    }
    return (t1 - t0) / n;
  };

  const results = new Map<string, number[]>();
  for (let r = 0; r < rounds; r++) {
    // Alternate the order each round too.
    const order = r % 2 === 0 ? setups : [...setups].reverse();
    for (const [name, op] of chosen) {
      for (const st of order) {
        const key = `${name}|${st.t}|${st.side}`;
        results.set(key, [...(results.get(key) ?? []), time(st.be, st.bufs, op)]);
      }
    }
  }

  const min = (a: number[]) => Math.min(...a);
  const median = (a: number[]) => {
    const s = [...a].sort((x, y) => x - y);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  console.log(`rounds ${rounds}, ${budget} ms per measurement; times in ms per call`);
  console.log(
    "op | threads | old min | new min | new/old min | old median | new median | new/old median",
  );
  for (const [name] of chosen) {
    for (const t of threads) {
      const o = results.get(`${name}|${t}|old`)!, n = results.get(`${name}|${t}|new`)!;
      const row = [min(o), min(n), min(n) / min(o), median(o), median(n), median(n) / median(o)];
      console.log([name, t, ...row.map((v) => v.toFixed(3))].join(" | "));
    }
  }
}
