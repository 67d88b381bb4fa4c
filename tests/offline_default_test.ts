/**
 * `deno task train` on a clean copy of the repository (tracked files only, no `../shared`, an
 * empty home and cache, no network): the default configuration trains on the shipped miniature
 * and E2E files, decodes and scores. The test gives the same command a tiny budget through
 * flags (a few steps, a few MRs); the full default takes about 10 minutes.
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;

async function run(cmd: string, args: string[], cwd: string, env?: Record<string, string>) {
  const out = await new Deno.Command(cmd, { args, cwd, env, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, text };
}

async function denoDir(): Promise<string> {
  const r = await run(Deno.execPath(), ["info", "--json"], ROOT);
  return JSON.parse(r.text.slice(r.text.indexOf("{"))).denoDir;
}

const hasGit = await run("git", ["--version"], ROOT).then((r) => r.code === 0, () => false);

Deno.test({
  name: "deno task train: the offline default trains, decodes and scores on a clean copy",
  ignore: !hasGit,
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "lf_offline_default_" });
    try {
      // A clean copy: the tracked files only, in a folder with no ../shared next to it.
      const clone = `${tmp}/repo/lf`;
      const files = (await run("git", ["ls-files", "-z"], ROOT)).text.split("\0").filter(Boolean);
      for (const f of files) {
        const src = `${ROOT}${f}`;
        if (!(await Deno.stat(src).then((s) => s.isFile, () => false))) continue; // deleted here
        await Deno.mkdir(`${clone}/${f}`.replace(/\/[^/]*$/, ""), { recursive: true });
        await Deno.copyFile(src, `${clone}/${f}`);
      }
      assert.equal(await Deno.stat(`${tmp}/repo/shared`).then(() => true, () => false), false);
      const env = {
        PATH: Deno.env.get("PATH") ?? "",
        HOME: `${tmp}/home`, // empty caches: no E2E download, no METEOR files, no models
        DENO_DIR: await denoDir(), // the packages already fetched (no network needed)
        HF_HUB_OFFLINE: "1",
        HF_ENDPOINT: "http://127.0.0.1:9", // nothing listens there
        LF_GITHUB_RAW: "http://127.0.0.1:9",
        NO_COLOR: "1",
        LF_BACKEND: "wasm",
      };
      const r = await run(
        Deno.execPath(),
        ["task", "train", "--max-steps", "2", "--valid-limit", "8", "--gen-limit", "3"],
        clone,
        env,
      );
      assert.equal(r.code, 0, r.text);
      const out = `${clone}/runs/e2e_prefix_mini`;
      assert.match(r.text, /data: 42061 training and 8 validation pairs from .*\/data\/e2e/);
      assert.match(r.text, /\| Prefix \(L=5\), results\/mini\/pretrain\/model \(this run\) \|/);
      assert.match(r.text, new RegExp(`outputs: runs/e2e_prefix_mini/outputs/test.txt`));
      const outputs = (await Deno.readTextFile(`${out}/outputs/test.txt`)).split("\n");
      assert.equal(outputs.length, 4);
      assert.ok(outputs.slice(0, 3).every((l) => l.trim().length > 0), outputs.join("|"));
      const scores = JSON.parse(await Deno.readTextFile(`${out}/scores.json`));
      for (const k of ["BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"]) {
        assert.ok(Number.isFinite(scores[k]), `${k}: ${scores[k]}`);
      }
      assert.equal(scores.mrs, 3);
      for (const f of ["prefix/prefix.safetensors", "peft/adapter_config.json", "summary.json"]) {
        assert.ok(await Deno.stat(`${out}/${f}`).then((s) => s.isFile), f);
      }
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test("the paper's config offline: names what is missing and the offline default, writes nothing", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "lf_offline_paper_" });
  try {
    for (const offline of ["0", "1"]) {
      const r = await run(
        Deno.execPath(),
        [
          "run",
          "-A",
          "tasks/train.ts",
          "--config",
          "configs/e2e_prefix.yaml",
          "--out",
          `${tmp}/run`,
        ],
        ROOT,
        {
          PATH: Deno.env.get("PATH") ?? "",
          HOME: `${tmp}/home`,
          DENO_DIR: await denoDir(),
          HF_HUB_OFFLINE: offline,
          HF_ENDPOINT: "http://127.0.0.1:9",
          NO_COLOR: "1",
        },
      );
      assert.notEqual(r.code, 0, r.text);
      assert.match(r.text, /cannot get the model 'gpt2-medium'/);
      assert.match(
        r.text,
        /Offline, the default runs on the shipped miniature .*: deno task train/,
      );
      assert.equal(await Deno.stat(`${tmp}/run`).then(() => true, () => false), false);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
