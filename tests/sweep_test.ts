/** Sweep flags, the Slurm script and its options, and the launcher's answers without Slurm. */
import assert from "node:assert/strict";
import { arrayScript, parseSlurmOptions, shellQuote, SlurmError } from "../train/slurm.ts";
import { dropFlags, lastStep, seedSweep, SweepError, takeSweepFlags } from "../train/sweep.ts";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("sweep flags: taken out of the command line, checked, the rest left alone", () => {
  const { flags, rest } = takeSweepFlags([
    "--config",
    "a.yaml",
    "--launcher=slurm",
    "--gres",
    "gpu:1",
    "--time",
    "2-00:00:00",
    "--cpus-per-task",
    "8",
    "--no-wait",
    "--only",
    "prefix_L5",
    "--retries",
    "0",
  ]);
  assert.deepEqual(rest, ["--config", "a.yaml", "--only", "prefix_L5"]);
  assert.equal(flags.launcher, "slurm");
  assert.equal(flags.noWait, true);
  assert.equal(flags.dryRun, false);
  assert.equal(flags.retries, 0);
  assert.deepEqual(
    { gres: flags.slurm.gres, time: flags.slurm.time, cpus: flags.slurm.cpus_per_task },
    { gres: "gpu:1", time: "2-00:00:00", cpus: 8 },
  );
  assert.equal(takeSweepFlags(["--epochs", "1"]).flags.given, false);
  assert.deepEqual(takeSweepFlags(["--seeds", "101, 102"]).flags.seeds, [101, 102]);
  const bad: [string[], RegExp][] = [
    [["--launcher", "pbs"], /--launcher must be local or slurm, got 'pbs'/],
    [["--dry-run"], /--dry-run and --no-wait apply to --launcher slurm/],
    [["--launcher", "slurm", "--time", "soon"], /--time must be MM, HH:MM:SS/],
    [["--launcher", "slurm", "--mem", "lots"], /--mem must be a size such as 32G/],
    [["--cpus-per-task", "0"], /command line: --cpus-per-task must be an integer ≥ 1/],
    [["--seeds", "1,1"], /--seeds lists a seed twice/],
    [["--retries", "-1"], /--retries must be an integer ≥ 0/],
    [["--partition"], /--partition needs a value/],
  ];
  for (const [args, re] of bad) assert.throws(() => takeSweepFlags(args), re);
  assert.throws(() => takeSweepFlags(["--launcher", "x"]), SweepError);
});

Deno.test("dropFlags removes a flag with its value in both spellings", () => {
  assert.deepEqual(
    dropFlags(["--seed", "1", "--out=x", "--resume", "--epochs", "2"], ["seed", "out"], ["resume"]),
    ["--epochs", "2"],
  );
});

Deno.test("slurm section: keys and values are checked and named", () => {
  const o = parseSlurmOptions(
    {
      partition: "gpu",
      gres: "gpu:a100:1",
      mem: "64G",
      account: "nlp",
      qos: "normal",
      cpus_per_task: 4,
      extra: ["--constraint=a100", "#SBATCH --exclusive"],
    },
    "cfg.yaml",
  );
  assert.deepEqual(o.extra, ["--constraint=a100", "--exclusive"]);
  assert.throws(
    () => parseSlurmOptions({ partitions: "gpu" }, "cfg.yaml"),
    /cfg.yaml: unknown key 'slurm.partitions'/,
  );
  assert.throws(
    () => parseSlurmOptions({ extra: ["constraint=a100"] }, "cfg.yaml"),
    /cfg.yaml: slurm.extra\[0\] must be an sbatch option/,
  );
  assert.throws(() => parseSlurmOptions({ qos: "a b" }, "c"), /slurm.qos must be one word/);
  assert.throws(() => parseSlurmOptions([1], "c"), SlurmError);
});

Deno.test("array script: one task per run, resources, quoting, extra arguments last", () => {
  const text = arrayScript({
    tasks: [{ name: "seed_1", args: ["--seed", "1", "--out", "runs/my runs/seed_1"] }, {
      name: "seed_2",
      args: ["--seed", "2", "--out", "runs/my runs/seed_2"],
    }],
    command: ["/opt/deno", "task", "train", "--config", "it's.yaml"],
    cwd: "/home/me/lf",
    logDir: "/home/me/lf/runs/slurm",
    options: parseSlurmOptions(
      { partition: "gpu", gres: "gpu:1", time: "12:00:00", qos: "long", extra: ["--exclusive"] },
      "t",
    ),
    jobName: "lf-train",
  });
  const lines = text.split("\n");
  assert.equal(lines[0], "#!/bin/bash");
  for (
    const l of [
      "#SBATCH --job-name=lf-train",
      "#SBATCH --array=0-1",
      "#SBATCH --output=/home/me/lf/runs/slurm/%x_%A_%a.out",
      "#SBATCH --partition=gpu",
      "#SBATCH --gres=gpu:1",
      "#SBATCH --time=12:00:00",
      "#SBATCH --qos=long",
      "#SBATCH --exclusive",
      "  1) RUN=(--seed 2 --out 'runs/my runs/seed_2') ;; # seed_2",
      "cd /home/me/lf",
      `exec /opt/deno task train --config 'it'\\''s.yaml' "\${RUN[@]}" "$@"`,
    ]
  ) assert.ok(lines.includes(l), `missing: ${l}\n${text}`);
  // Every directive comes before the first command (sbatch stops reading them there).
  const firstCommand = lines.findIndex((l) => l && !l.startsWith("#"));
  assert.ok(lines.findLastIndex((l) => l.startsWith("#SBATCH")) < firstCommand);
  assert.equal(shellQuote("a b"), "'a b'");
  assert.throws(() => arrayScript({ ...{ tasks: [] } } as never), /at least one task/);
});

Deno.test("seed sweep: one run per seed; --resume only where a checkpoint exists", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const sweep = seedSweep(dir, [1, 2], ["--config", "c.yaml", "--seed", "9", "--resume"]);
    assert.deepEqual(sweep.args, ["--config", "c.yaml"]);
    assert.deepEqual(sweep.runs.map((r) => r.args), [
      ["--seed", "1", "--out", `${dir}/seed_1`],
      ["--seed", "2", "--out", `${dir}/seed_2`],
    ]);
    await Deno.mkdir(`${dir}/seed_2/checkpoint`, { recursive: true });
    await Deno.writeTextFile(`${dir}/seed_2/checkpoint/state.json`, "{}");
    assert.deepEqual(await sweep.resumeArgs(sweep.runs[0]), []);
    assert.deepEqual(await sweep.resumeArgs(sweep.runs[1]), ["--resume"]);
    assert.equal(await sweep.isDone(sweep.runs[1]), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lastStep reads the last complete training line of log.jsonl", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(await lastStep(dir), null);
    const filler = Array.from(
      { length: 300 },
      (_, i) => JSON.stringify({ step: i + 1, loss: 10 - i / 100, ms: 5 }),
    );
    await Deno.writeTextFile(
      `${dir}/log.jsonl`,
      [...filler, JSON.stringify({ epoch: 0, valid_loss: 3 }), '{"step":301,"lo'].join("\n"),
    );
    assert.deepEqual(await lastStep(dir), { step: 300, loss: 10 - 299 / 100 });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs the ablation task with PATH emptied, so no Slurm command can be found. */
async function ablationWithoutSlurm(args: string[]): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "tasks/ablation.ts", ...args],
    cwd: ROOT,
    env: { PATH: "/nonexistent" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

Deno.test("ablation --launcher slurm: a clear message without Slurm; --dry-run and --collect need none", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "lf_sweep_test_" });
  try {
    const cfg = `${tmp}/ablation.yaml`;
    await Deno.writeTextFile(
      cfg,
      [
        "prefix_lens: [1, 5]",
        "finetune: true",
        `out: ${tmp}/out`,
        "slurm:",
        "  partition: gpu",
        "  gres: gpu:1",
        "  extra: [--constraint=a100]",
        "train:",
        "  model: gpt2-medium",
      ].join("\n") + "\n",
    );
    const none = await ablationWithoutSlurm(["--config", cfg, "--launcher", "slurm"]);
    assert.equal(none.code, 1, none.out);
    assert.match(none.out, /Slurm's 'sbatch' is not on PATH/);
    assert.match(none.out, /--launcher local/);
    assert.equal(await Deno.stat(`${tmp}/out`).then(() => true, () => false), false);

    // A finished run is left out of the submission.
    await Deno.mkdir(`${tmp}/out/prefix_L5`, { recursive: true });
    for (const f of ["scores.json", "summary.json"]) {
      await Deno.writeTextFile(`${tmp}/out/prefix_L5/${f}`, "{}");
    }
    const dry = await ablationWithoutSlurm([
      "--config",
      cfg,
      "--launcher",
      "slurm",
      "--dry-run",
      "--gres",
      "gpu:2",
      "--epochs",
      "3",
    ]);
    assert.equal(dry.code, 0, dry.out);
    for (
      const l of [
        "#SBATCH --array=0-2",
        "#SBATCH --partition=gpu",
        "#SBATCH --gres=gpu:2",
        "#SBATCH --constraint=a100",
        "  2) RUN=(--only finetune) ;; # finetune",
      ]
    ) assert.ok(dry.out.includes(l), `missing: ${l}\n${dry.out}`);
    assert.match(dry.out, new RegExp(`task ablation --config ${cfg} --epochs 3 "\\$\\{RUN`));
    assert.match(dry.out, /# would submit: sbatch --array=0,2 /);
    assert.equal(await Deno.stat(`${tmp}/out/slurm`).then(() => true, () => false), false);

    const collect = await ablationWithoutSlurm(["--config", cfg, "--collect"]);
    assert.equal(collect.code, 1, collect.out);
    assert.match(collect.out, /2 of 3 runs are not finished: prefix_L1, finetune/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
