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

Deno.test("every committed run's config.yaml reads with today's training schema", async () => {
  const { loadTrainConfig } = await import("../train/pipeline.ts");
  const { checkTrainConfig } = await import("../train/e2e.ts");
  const found: string[] = [];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (e.name === "config.yaml" && !dir.endsWith("/model")) found.push(p);
    }
  };
  await walk(`${ROOT}results`);
  assert.ok(found.length >= 5, `expected the committed runs' configs, found ${found.length}`);
  for (const p of found) {
    // A renamed or removed key would make `--resume` of the committed run fail here.
    checkTrainConfig(await loadTrainConfig(p, {}), p);
  }
});
