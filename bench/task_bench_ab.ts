/**
 * A/B of `deno task bench` between two checkouts of this repository: runs it alternately in
 * each (old, new, new, old, ...) so a busy machine slows both sides alike, and prints every
 * row's best (the least time, the most tokens/s) and median per side with the new/old ratios.
 *
 *   LF_WASM_THREADS=2 deno run -A bench/task_bench_ab.ts --old ../baseline --new . \
 *     [--rounds 3] [--args "--backend wasm --skip matmul,peer"]
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";

const { values } = parseArgs({
  options: {
    old: { type: "string" },
    new: { type: "string", default: "." },
    rounds: { type: "string", default: "3" },
    args: { type: "string", default: "--backend wasm --skip matmul,peer" },
  },
});
if (!values.old) throw new Error("--old <checkout> is required");

interface Row {
  backend: string;
  name: string;
  value: number;
  unit: string;
}

async function run(dir: string): Promise<Row[]> {
  const args = ["run", "-A", "--unstable-no-legacy-abort", "tasks/bench.ts"];
  args.push(...values.args.split(" ").filter(Boolean), "--json");
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: resolve(dir),
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`deno task bench failed in ${dir}`);
  const text = new TextDecoder().decode(out.stdout);
  return (JSON.parse(text.slice(text.indexOf("{"))) as { rows: Row[] }).rows;
}

const results = new Map<string, { unit: string; old: number[]; new: number[] }>();
for (let r = 0; r < Number(values.rounds); r++) {
  const order = r % 2 === 0 ? (["old", "new"] as const) : (["new", "old"] as const);
  for (const side of order) {
    const rows = await run(side === "old" ? values.old : values.new);
    for (const row of rows) {
      const key = `${row.backend} | ${row.name}`;
      const e = results.get(key) ?? { unit: row.unit, old: [], new: [] };
      e[side].push(row.value);
      results.set(key, e);
    }
    console.error(`round ${r + 1}: ${side} done`);
  }
}
/** The best of a row's values: the most for rates (`…/s`), else the least. */
const best = (a: number[], unit: string) => (unit.endsWith("/s") ? Math.max(...a) : Math.min(...a));
const median = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const f = (v: number) => v.toPrecision(4);
console.log("row | unit | old best | new best | new/old | old median | new median | new/old");
for (const [key, e] of results) {
  if (!e.old.length || !e.new.length) continue;
  console.log(
    [key, e.unit, f(best(e.old, e.unit)), f(best(e.new, e.unit))]
      .concat([(best(e.new, e.unit) / best(e.old, e.unit)).toFixed(3)])
      .concat([f(median(e.old)), f(median(e.new)), (median(e.new) / median(e.old)).toFixed(3)])
      .join(" | "),
  );
}
