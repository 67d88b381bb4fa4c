/**
 * Sweeps on a real Slurm (Debian slurm-wlm + munge, started here as a one-node cluster): the
 * ablation as a job array gives the same table as the local run; a task killed mid-run is
 * resubmitted and ends with the same losses as an uninterrupted run; a seed sweep of train.
 */
import assert from "node:assert/strict";
import { lastStep } from "../train/sweep.ts";
import { type SlurmCluster, slurmMissing, startCluster } from "./slurm_cluster.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const SHARED = new URL("../../shared/", import.meta.url).pathname;
const MODEL = `${SHARED}models/fake-gpt2`;
const haveModel = await Deno.stat(`${MODEL}/model.safetensors`).then(() => true, () => false);
const haveE2E = await Deno.stat(`${SHARED}e2e/train.txt`).then(() => true, () => false);

/** Why the tests cannot run here, or null; a trial start proves the daemons come up. */
async function skipReason(): Promise<string | null> {
  if (!haveModel || !haveE2E) return "../shared/models/fake-gpt2 or ../shared/e2e is absent";
  const missing = slurmMissing();
  if (missing) return missing;
  try {
    await (await startCluster()).stop();
  } catch (e) {
    return (e as Error).message;
  }
  return null;
}
const skip = await skipReason();
if (skip) console.log(`slurm_test: skipped: ${skip}`);

const dec = new TextDecoder();

/** Runs `deno task NAME ...args` from the project root; returns exit code and output. */
async function denoTask(
  cluster: SlurmCluster | null,
  args: string[],
): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", ...args],
    cwd: ROOT,
    env: cluster?.env ?? {},
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

/** A small E2E slice and an ablation config over fake-gpt2 in `tmp`. */
async function writeAblation(
  tmp: string,
  o: { lens: number[]; trainLines: number; batch: number; slurm?: string[] },
): Promise<string> {
  await Deno.mkdir(`${tmp}/data`, { recursive: true });
  for (const [f, n] of [["train", o.trainLines], ["valid", 6], ["test", 12]] as const) {
    const lines = (await Deno.readTextFile(`${SHARED}e2e/${f}.txt`)).split("\n").slice(0, n);
    await Deno.writeTextFile(`${tmp}/data/${f}.txt`, lines.join("\n") + "\n");
  }
  const cfg = `${tmp}/ablation.yaml`;
  await Deno.writeTextFile(
    cfg,
    [
      `prefix_lens: [${o.lens.join(", ")}]`,
      "finetune: false",
      "split: test",
      `out: ${tmp}/out`,
      ...(o.slurm ?? []),
      "train:",
      `  model: ${MODEL}`,
      `  data: ${tmp}/data`,
      "  epochs: 1",
      `  batch_size: ${o.batch}`,
      "  mid_dim: 8",
      "  lr: 1.0e-2",
      "  save_every: 5",
      "  beams: 2",
      "  max_new_tokens: 4",
      "  gen_limit: 2",
      `  meteor_dir: ${SHARED}meteor`,
      "  backend: cpu",
    ].join("\n") + "\n",
  );
  return cfg;
}

/** results.csv rows without the wall-time columns. */
async function scoreRows(dir: string): Promise<string[][]> {
  const [head, ...rows] = (await Deno.readTextFile(`${dir}/results.csv`)).trim().split("\n")
    .map((l) => l.split(","));
  const timing = ["sec_per_step", "sec_per_epoch", "gen_seconds"].map((c) => head.indexOf(c));
  assert.ok(timing.every((i) => i >= 0), head.join(","));
  return [head, ...rows].map((r) => r.filter((_, i) => !timing.includes(i)));
}

/** The one job script the launcher wrote for `task` into `dir` (named by its content). */
async function scriptIn(dir: string, task: string): Promise<string> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (new RegExp(`^${task}-[0-9a-f]{8}\\.sbatch$`).test(e.name)) names.push(e.name);
  }
  assert.equal(names.length, 1, `scripts in ${dir}: ${names}`);
  return await Deno.readTextFile(`${dir}/${names[0]}`);
}

async function losses(runDir: string): Promise<number[]> {
  return (await Deno.readTextFile(`${runDir}/log.jsonl`)).split("\n").filter((l) => l.trim())
    .map((l) => JSON.parse(l)).filter((r) => r.step !== undefined).map((r) => r.loss);
}

Deno.test({
  name: "slurm: a 3-run ablation as a job array equals the local run; finished runs are skipped",
  ignore: skip !== null,
  sanitizeResources: false,
  fn: async () => {
    const cluster = await startCluster();
    const tmp = await Deno.makeTempDir({ prefix: "lf_slurm_ablation_" });
    try {
      const cfg = await writeAblation(tmp, {
        lens: [1, 2, 3],
        trainLines: 30,
        batch: 3,
        slurm: ["slurm:", "  cpus_per_task: 1", '  time: "10:00"', "  extra: [--comment=lf-test]"],
      });
      const t0 = performance.now();
      const launch = ["ablation", "--config", cfg, "--launcher", "slurm", "--poll", "0.5"];
      const submitted = await denoTask(cluster, [...launch, "--no-wait"]);
      assert.equal(submitted.code, 0, submitted.out);
      const job = submitted.out.match(/submitted array job (\d+): (\S+) (\S+) (\S+)/);
      assert.ok(job, submitted.out);
      assert.deepEqual(job.slice(2), [0, 1, 2].map((i) => `${job[1]}_${i}=prefix_L${i + 1}`));
      // The same command again watches the queued tasks (or skips the finished ones) instead of
      // submitting them twice, and collects.
      const r = await denoTask(cluster, launch);
      console.log(`slurm ablation: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      assert.equal(r.code, 0, r.out);
      assert.doesNotMatch(r.out, /submitted array job/);
      const skipped = r.out.match(/finished already \(skipped\): (.*)/)?.[1].split(", ") ?? [];
      for (const i of [0, 1, 2]) {
        const watched = r.out.includes(`prefix_L${i + 1}: already queued as ${job[1]}_${i} `);
        assert.ok(watched || skipped.includes(`prefix_L${i + 1}`), r.out);
      }
      const script = await scriptIn(`${tmp}/out/slurm`, "ablation");
      for (
        const line of [
          "#SBATCH --array=0-2",
          "#SBATCH --cpus-per-task=1",
          "#SBATCH --time=10:00",
          "#SBATCH --comment=lf-test",
        ]
      ) assert.ok(script.includes(line), `${line} missing in\n${script}`);
      for (const L of [1, 2, 3]) {
        const d = `${tmp}/out/prefix_L${L}`;
        assert.ok(await Deno.stat(`${d}/scores.json`), `prefix_L${L} has no scores`);
        // Each run went through its own array task.
        const log = await Deno.readTextFile(`${tmp}/out/slurm/lf-ablation_${job[1]}_${L - 1}.out`);
        assert.match(log, new RegExp(`=== prefix_L${L} ===`));
      }
      const md = await Deno.readTextFile(`${tmp}/out/results.md`);
      for (const L of [1, 2, 3]) assert.match(md, new RegExp(`\\| Prefix \\(L=${L}\\) \\|`));
      assert.ok(await Deno.stat(`${tmp}/out/ablation.svg`));

      const local = await denoTask(null, [
        "ablation",
        "--config",
        cfg,
        "--launcher",
        "local",
        "--out",
        `${tmp}/local`,
      ]);
      assert.equal(local.code, 0, local.out);
      const [slurmRows, localRows] = [
        await scoreRows(`${tmp}/out`),
        await scoreRows(`${tmp}/local`),
      ];
      assert.equal(slurmRows.length, 4);
      assert.deepEqual(slurmRows, localRows);
      // Scores of fake-gpt2's random weights are near zero for every run; the losses and the
      // decoded outputs, which differ between runs, carry the comparison.
      const perRun: number[][] = [];
      for (const L of [1, 2, 3]) {
        const [a, b] = [`${tmp}/out/prefix_L${L}`, `${tmp}/local/prefix_L${L}`];
        perRun.push(await losses(a));
        assert.deepEqual(perRun.at(-1), await losses(b));
        assert.equal(
          await Deno.readTextFile(`${a}/outputs/test.txt`),
          await Deno.readTextFile(`${b}/outputs/test.txt`),
        );
      }

      assert.notDeepEqual(perRun[0], perRun[1]);
      assert.notDeepEqual(perRun[1], perRun[2]);

      // Everything finished: nothing is submitted again, the tables are rewritten.
      const again = await denoTask(cluster, ["ablation", "--config", cfg, "--launcher", "slurm"]);
      assert.equal(again.code, 0, again.out);
      assert.match(again.out, /finished already \(skipped\): prefix_L1, prefix_L2, prefix_L3/);
      assert.doesNotMatch(again.out, /submitted array job/);
    } finally {
      await cluster.stop();
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test({
  name: "slurm: a task cancelled mid-run is resubmitted, resumes, and ends as an uninterrupted run",
  ignore: skip !== null,
  sanitizeResources: false,
  fn: async () => {
    const cluster = await startCluster();
    const tmp = await Deno.makeTempDir({ prefix: "lf_slurm_kill_" });
    let child: Deno.ChildProcess | null = null;
    try {
      // 60 steps of one example: long enough to cancel after a checkpoint, a few seconds in all.
      const cfg = await writeAblation(tmp, { lens: [1, 2], trainLines: 60, batch: 1 });
      child = new Deno.Command(Deno.execPath(), {
        args: ["task", "-q", "ablation", "--config", cfg, "--launcher", "slurm", "--poll", "0.5"],
        cwd: ROOT,
        env: cluster.env,
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      let out = "";
      const reading = Promise.all([child.stdout, child.stderr].map(async (s) => {
        for await (const chunk of s) out += dec.decode(chunk);
      }));
      let job = "";
      const killed = `${tmp}/out/prefix_L2`;
      let stepAtKill = 0;
      const deadline = Date.now() + 120_000;
      while (!stepAtKill && Date.now() < deadline) {
        job ||= out.match(/submitted array job (\d+)/)?.[1] ?? "";
        const last = job ? await lastStep(killed) : null;
        if (last && last.step >= 8) {
          const c = await cluster.client("scancel", [`${job}_1`]);
          assert.equal(c.code, 0, c.out);
          stepAtKill = last.step;
        } else await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(stepAtKill > 0, `never saw prefix_L2 training:\n${out}`);
      assert.ok(stepAtKill < 60, `prefix_L2 had finished (step ${stepAtKill}) before the kill`);
      const status = await child.status;
      await reading;
      assert.equal(status.code, 0, out);
      const resub = out.match(
        new RegExp(`prefix_L2: ${job}_1 CANCELLED; resubmitted as (\\d+)_1, attempt 2 of 3`),
      );
      assert.ok(resub, out);
      const firstLog = await Deno.readTextFile(`${tmp}/out/slurm/lf-ablation_${job}_1.out`);
      assert.doesNotMatch(firstLog, /done: \d+ steps/);
      const retryLog = await Deno.readTextFile(`${tmp}/out/slurm/lf-ablation_${resub[1]}_1.out`);
      const resumedAt = Number(retryLog.match(/resumed from \S+ at step (\d+)/)?.[1]);
      // From a checkpoint taken before the cancel reached it (every 5 steps), not from the start.
      assert.ok(resumedAt >= 5 && resumedAt < 60, `resumed at ${resumedAt}\n${retryLog}`);
      assert.match(retryLog, /done: 60 steps/);
      const md = await Deno.readTextFile(`${tmp}/out/results.md`);
      assert.match(md, /\| Prefix \(L=1\) \|/);
      assert.match(md, /\| Prefix \(L=2\) \|/);

      // The same run, uninterrupted, here.
      const ref = await denoTask(null, [
        "ablation",
        "--config",
        cfg,
        "--only",
        "prefix_L2",
        "--out",
        `${tmp}/ref`,
      ]);
      assert.equal(ref.code, 0, ref.out);
      const [a, b] = [await losses(killed), await losses(`${tmp}/ref/prefix_L2`)];
      assert.equal(a.length, 60);
      assert.deepEqual(a, b);
      const summary = (d: string) => Deno.readTextFile(`${d}/summary.json`).then(JSON.parse);
      assert.equal(
        (await summary(killed)).final_train_loss,
        (await summary(`${tmp}/ref/prefix_L2`)).final_train_loss,
      );
      assert.deepEqual(
        JSON.parse(await Deno.readTextFile(`${killed}/scores.json`)),
        JSON.parse(await Deno.readTextFile(`${tmp}/ref/prefix_L2/scores.json`)),
      );
    } finally {
      if (child) {
        try {
          child.kill("SIGKILL");
        } catch { /* exited */ }
        await child.status;
      }
      await cluster.stop();
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test({
  name: "slurm: deno task train --seeds as a job array equals the local seed sweep",
  ignore: skip !== null,
  sanitizeResources: false,
  fn: async () => {
    const cluster = await startCluster();
    const tmp = await Deno.makeTempDir({ prefix: "lf_slurm_seeds_" });
    try {
      await writeAblation(tmp, { lens: [1], trainLines: 12, batch: 3 });
      const cfg = `${tmp}/train.yaml`;
      await Deno.writeTextFile(
        cfg,
        [
          `model: ${MODEL}`,
          `data: ${tmp}/data`,
          "epochs: 1",
          "batch_size: 3",
          "mid_dim: 8",
          "lr: 1.0e-2",
          "backend: cpu",
          "eval: false",
          `out: ${tmp}/seeds`,
        ].join("\n") + "\n",
      );
      const seeds = ["--config", cfg, "--seeds", "101,102"];
      const r = await denoTask(cluster, [
        "train",
        ...seeds,
        "--launcher",
        "slurm",
        "--poll",
        "0.5",
      ]);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /submitted array job (\d+): \1_0=seed_101 \1_1=seed_102/);
      const script = await scriptIn(`${tmp}/seeds/slurm`, "train");
      assert.match(script, /0\) RUN=\(--seed 101 --out \S+\/seeds\/seed_101\)/);
      const local = await denoTask(null, ["train", ...seeds, "--out", `${tmp}/local`]);
      assert.equal(local.code, 0, local.out);
      const csv = (d: string) => Deno.readTextFile(`${d}/seeds.csv`);
      const rows = (await csv(`${tmp}/seeds`)).trim().split("\n");
      assert.equal(rows.length, 3);
      assert.match(rows[1], /^seed_101,101,4,/);
      assert.notEqual(rows[1].split(",")[3], rows[2].split(",")[3]);
      assert.equal(await csv(`${tmp}/seeds`), await csv(`${tmp}/local`));
      assert.match(await Deno.readTextFile(`${tmp}/seeds/seeds.md`), /\| mean ± sd \|/);

      // A run that fails every time is resubmitted up to --retries, then reported; no table.
      const bad = await denoTask(cluster, [
        "train",
        "--config",
        cfg,
        "--seeds",
        "7",
        "--data",
        `${tmp}/no-such-data`,
        "--out",
        `${tmp}/bad`,
        "--launcher",
        "slurm",
        "--retries",
        "1",
        "--poll",
        "0.5",
      ]);
      assert.equal(bad.code, 1, bad.out);
      assert.match(bad.out, /seed_7: (\d+)_0 FAILED; resubmitted as (\d+)_0, attempt 2 of 2/);
      assert.match(bad.out, /seed_7: FAILED after 2 attempts; see \S+lf-train_\d+_0\.out/);
      assert.match(bad.out, /1 run\(s\) did not finish: seed_7/);
      assert.equal(await Deno.stat(`${tmp}/bad/seeds.md`).then(() => true, () => false), false);
    } finally {
      await cluster.stop();
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
