/**
 * The committed miniature results still reproduce: `deno task generate` from a committed prefix
 * (results/mini/ablation/prefix_L*) on the shipped test MRs gives the committed output lines.
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;

for (const [run, n] of [["prefix_L5", 6], ["prefix_L1", 3]] as const) {
  Deno.test(`deno task generate from the committed ${run} prefix gives the committed lines`, async () => {
    const dir = `results/mini/ablation/${run}`;
    const tmp = await Deno.makeTempDir({ prefix: "lf_mini_outputs_" });
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "task",
          "generate",
          "--checkpoint",
          dir,
          "--data",
          "data/e2e",
          "--limit",
          String(n),
          "--batch-size",
          "16",
          "--backend",
          "wasm", // the committed outputs were decoded on the WebAssembly backend
          "--out",
          `${tmp}/test.txt`,
        ],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      const got = (await Deno.readTextFile(`${tmp}/test.txt`)).split("\n").slice(0, n);
      const committed = (await Deno.readTextFile(`${ROOT}${dir}/outputs/test.txt`)).split("\n")
        .slice(0, n);
      assert.deepEqual(got, committed);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  });
}
