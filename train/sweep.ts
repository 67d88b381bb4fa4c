/**
 * Sweeps: several training runs that differ in one setting (the prefix-length ablation, a set
 * of seeds), launched one after another on this machine (`local`) or as one Slurm job array
 * (`slurm`), monitored, retried and collected.
 *
 * A run is a folder. A finished run is never repeated; a failed or preempted Slurm task is
 * resubmitted alone and resumes from its run folder's checkpoint, up to a retry limit; the
 * collect step writes the sweep's tables once every run is finished and otherwise names the
 * missing ones.
 *
 * @module
 */
// deno-lint-ignore no-import-prefix -- the import map does not apply to importers elsewhere
import { parse as parseYaml } from "npm:yaml@^2.6.0";
import { atomicWriteText } from "../io/atomic.ts";
import { type AblationConfig, ablationRunDone, ablationRuns } from "./ablation.ts";
import {
  arrayScript,
  endedTask,
  mergeSlurmOptions,
  parseSlurmOptions,
  queuedTasks,
  requireSlurm,
  shellQuote,
  type SlurmOptions,
  submitArray,
  taskKey,
  type TaskState,
  writeArrayScript,
} from "./slurm.ts";

/** Where a sweep's runs execute. */
export type Launcher = "local" | "slurm";

/** The sweep flags of a command line (taken out by {@link takeSweepFlags}). */
export interface SweepFlags {
  /** `--launcher local|slurm` (default local). */
  launcher: Launcher;
  /** `--dry-run`: print the Slurm script, submit nothing. */
  dryRun: boolean;
  /** `--no-wait`: return once submitted. */
  noWait: boolean;
  /** `--collect`: write the sweep's tables if every run is finished. */
  collect: boolean;
  /** `--retries N`: resubmissions of a failed task (default: the config's, else 2). */
  retries: number | null;
  /** `--poll SECONDS` between queue checks (default 15). */
  pollSeconds: number;
  /** `--seeds 101,102,103`: a seed sweep (train). */
  seeds: number[] | null;
  /** Slurm options given as flags (`--partition`, `--gres`, ...). */
  slurm: Partial<SlurmOptions>;
  /** Whether any sweep flag was given. */
  given: boolean;
}

/** A bad sweep flag or a sweep that cannot run as asked. */
export class SweepError extends Error {}

const VALUE_FLAGS = [
  "launcher",
  "retries",
  "poll",
  "seeds",
  "partition",
  "gres",
  "time",
  "mem",
  "cpus-per-task",
  "account",
  "qos",
] as const;
const BOOL_FLAGS = ["dry-run", "no-wait", "collect"] as const;

/** Usage lines of the sweep flags. */
export const SWEEP_USAGE =
  `sweep: [--launcher local|slurm] [--dry-run] [--no-wait] [--collect] [--retries N] [--poll SECONDS]
       slurm: [--partition P] [--gres gpu:1] [--time HH:MM:SS] [--mem 32G] [--cpus-per-task N]
              [--account A] [--qos Q]`;

/**
 * Takes the sweep flags out of a command line; the rest is the task's own. Accepts `--flag
 * value` and `--flag=value`.
 */
export function takeSweepFlags(args: string[]): { flags: SweepFlags; rest: string[] } {
  const values: Record<string, string> = {};
  const bools = new Set<string>();
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      rest.push(...args.slice(i));
      break;
    }
    const m = a.match(/^--([\w-]+)(?:=(.*))?$/s);
    const name = m?.[1] ?? "";
    if ((VALUE_FLAGS as readonly string[]).includes(name)) {
      const v = m![2] ?? args[++i];
      if (v === undefined) throw new SweepError(`--${name} needs a value`);
      values[name] = v;
    } else if ((BOOL_FLAGS as readonly string[]).includes(name) && m![2] === undefined) {
      bools.add(name);
    } else rest.push(a);
  }
  const launcher = values.launcher ?? "local";
  if (launcher !== "local" && launcher !== "slurm") {
    throw new SweepError(`--launcher must be local or slurm, got '${launcher}'`);
  }
  const int = (name: string, min: number): number | null => {
    if (values[name] === undefined) return null;
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < min) {
      throw new SweepError(`--${name} must be an integer ≥ ${min}, got '${values[name]}'`);
    }
    return n;
  };
  const poll = values.poll === undefined ? 15 : Number(values.poll);
  if (!(poll > 0)) throw new SweepError(`--poll must be a number of seconds > 0`);
  let seeds: number[] | null = null;
  if (values.seeds !== undefined) {
    seeds = values.seeds.split(",").map((s) => Number(s.trim()));
    if (!seeds.length || !seeds.every((s) => Number.isInteger(s) && s >= 0)) {
      throw new SweepError(`--seeds must list integers (101,102,103), got '${values.seeds}'`);
    }
    if (new Set(seeds).size !== seeds.length) {
      throw new SweepError(`--seeds lists a seed twice: '${values.seeds}'`);
    }
  }
  const slurmDoc: Record<string, unknown> = {};
  for (const k of ["partition", "gres", "time", "mem", "cpus-per-task", "account", "qos"]) {
    if (values[k] !== undefined) slurmDoc[k.replaceAll("-", "_")] = values[k];
  }
  let slurm: Partial<SlurmOptions>;
  try {
    slurm = parseSlurmOptions(slurmDoc, "command line");
  } catch (e) {
    throw new SweepError(
      (e as Error).message.replace(/slurm\.(\w+)/, (_, k: string) => `--${k.replaceAll("_", "-")}`),
    );
  }
  const flags: SweepFlags = {
    launcher,
    dryRun: bools.has("dry-run"),
    noWait: bools.has("no-wait"),
    collect: bools.has("collect"),
    retries: int("retries", 0),
    pollSeconds: poll,
    seeds,
    slurm: { ...slurm, extra: undefined },
    given: Object.keys(values).length > 0 || bools.size > 0,
  };
  if ((flags.dryRun || flags.noWait) && flags.launcher !== "slurm") {
    throw new SweepError("--dry-run and --no-wait apply to --launcher slurm");
  }
  return { flags, rest };
}

/**
 * Removes flags from a command line: `valueFlags` with their value (`--out x`, `--out=x`),
 * `boolFlags` alone.
 */
export function dropFlags(
  args: string[],
  valueFlags: string[],
  boolFlags: string[] = [],
): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const m = args[i].match(/^--([\w-]+)(=.*)?$/s);
    if (m && valueFlags.includes(m[1])) {
      if (m[2] === undefined) i++;
    } else if (!(m && boolFlags.includes(m[1]) && m[2] === undefined)) out.push(args[i]);
  }
  return out;
}

/** One run of a sweep. */
export interface SweepRun {
  /** Name (`prefix_L5`, `seed_101`). */
  name: string;
  /** Its run folder. */
  dir: string;
  /** Arguments that select it, after the sweep's shared ones (`--only prefix_L5`). */
  args: string[];
}

/** A sweep: its runs and how to run, check and collect them. */
export interface Sweep {
  /** The `deno task` each run executes (`ablation`, `train`). */
  task: string;
  /** Arguments shared by every run (the user's flags, sweep flags removed). */
  args: string[];
  /** Sweep folder (the Slurm script and task logs go to `slurm/` inside it). */
  out: string;
  /** The runs. */
  runs: SweepRun[];
  /** Slurm options (config, then flags). */
  slurm: SlurmOptions;
  /** Whether a run has finished (its results are on disk). */
  isDone(run: SweepRun): Promise<boolean>;
  /** Arguments that make a rerun of an interrupted run resume. */
  resumeArgs(run: SweepRun): Promise<string[]>;
  /** Writes the sweep's tables (every run is finished). */
  collect(): Promise<void>;
  /** The table `collect` writes that is printed afterwards. */
  resultsFile: string;
}

async function exists(p: string): Promise<boolean> {
  return await Deno.stat(p).then(() => true, () => false);
}

function abs(p: string): string {
  return p.startsWith("/") ? p : `${Deno.cwd()}/${p}`;
}

/** Reads the `slurm:` section of a YAML config file (absent: no options). */
export async function readSlurmSection(file: string | null): Promise<SlurmOptions> {
  if (!file) return { extra: [] };
  const doc = parseYaml(await Deno.readTextFile(file)) as Record<string, unknown> | null;
  return parseSlurmOptions(doc?.slurm, file);
}

/**
 * The prefix-length ablation as a sweep: one run per prefix length (`prefix_L<n>`) and
 * `finetune`, each `deno task ablation ARGS --only RUN`; the runs and the test of a finished one
 * are the ablation's own ({@link ablationRuns}, {@link ablationRunDone}). The ablation resumes
 * an interrupted run by itself.
 */
export async function ablationSweep(
  cfg: AblationConfig,
  opts: {
    /** The user's arguments (sweep flags already taken out). */
    args: string[];
    /** The config file (its `slurm:` section is read). */
    configFile: string | null;
    /** Writes results.md, results.csv and the figure from the finished runs. */
    collect: () => Promise<void>;
  },
): Promise<Sweep> {
  let runs = ablationRuns(cfg);
  if (cfg.only.length) runs = runs.filter((r) => cfg.only.includes(r.name));
  return {
    task: "ablation",
    args: dropFlags(opts.args, ["only"]),
    out: cfg.out,
    runs: runs.map((r) => ({ name: r.name, dir: r.cfg.out, args: ["--only", r.name] })),
    slurm: await readSlurmSection(opts.configFile),
    isDone: (r) => ablationRunDone(r.dir),
    resumeArgs: () => Promise.resolve([]),
    collect: opts.collect,
    resultsFile: `${cfg.out}/results.md`,
  };
}

/**
 * A seed sweep of one training config: run `seed_<s>` trains into `<out>/seed_<s>` with
 * `--seed s`; an interrupted run is resumed with `--resume` where it has a checkpoint. Collect
 * writes `seeds.csv` and `seeds.md` (steps, final training loss and last validation loss per
 * seed; mean and standard deviation).
 */
export function seedSweep(
  out: string,
  seeds: number[],
  args: string[],
  slurm: SlurmOptions = { extra: [] },
): Sweep {
  const runs = seeds.map((s) => {
    const dir = `${out}/seed_${s}`;
    return { name: `seed_${s}`, dir, args: ["--seed", String(s), "--out", dir] };
  });
  return {
    task: "train",
    args: dropFlags(args, ["seed", "out"], ["resume"]),
    out,
    runs,
    slurm,
    isDone: (r) => exists(`${r.dir}/summary.json`),
    // A started run (its config.yaml is written first) is continued: a run folder in use
    // refuses a fresh start.
    resumeArgs: async (r) =>
      (await exists(`${r.dir}/checkpoint/state.json`)) || (await exists(`${r.dir}/config.yaml`))
        ? ["--resume"]
        : [],
    collect: async () => void await writeSeedResults(out, runs),
    resultsFile: `${out}/seeds.md`,
  };
}

/** One row of `seeds.csv`. */
export interface SeedRow {
  /** Run name. */
  run: string;
  /** Seed. */
  seed: number;
  /** Optimizer steps. */
  steps: number;
  /** Loss of the last training step. */
  final_train_loss: number;
  /** Validation loss after the last epoch (NaN if none). */
  final_valid_loss: number;
}

function meanSd(xs: number[]): string {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  if (xs.length < 2) return m.toFixed(4);
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
  return `${m.toFixed(4)} ± ${sd.toFixed(4)}`;
}

/** Writes `seeds.csv` and `seeds.md` from the runs' `summary.json`; returns the rows. */
export async function writeSeedResults(out: string, runs: SweepRun[]): Promise<SeedRow[]> {
  const rows: SeedRow[] = [];
  for (const r of runs) {
    const s = JSON.parse(await Deno.readTextFile(`${r.dir}/summary.json`));
    rows.push({
      run: r.name,
      seed: Number(r.name.replace(/^seed_/, "")),
      steps: s.steps,
      final_train_loss: s.final_train_loss,
      // summary.json lists the validation losses as {step, loss}.
      final_valid_loss: s.valid_losses?.at(-1)?.loss ?? NaN,
    });
  }
  const cols = Object.keys(rows[0]) as (keyof SeedRow)[];
  await atomicWriteText(
    `${out}/seeds.csv`,
    [cols.join(","), ...rows.map((r) => cols.map((c) => r[c]).join(","))].join("\n") + "\n",
  );
  const md = [
    `# Seed sweep (${rows.length} runs)`,
    "",
    "| Seed | Steps | Final train loss | Final validation loss |",
    "| ---: | ---: | ---: | ---: |",
    ...rows.map((r) =>
      `| ${r.seed} | ${r.steps} | ${r.final_train_loss.toFixed(4)} | ${
        r.final_valid_loss.toFixed(4)
      } |`
    ),
    `| mean ± sd | | ${meanSd(rows.map((r) => r.final_train_loss))} | ${
      meanSd(rows.map((r) => r.final_valid_loss))
    } |`,
    "",
  ].join("\n");
  await atomicWriteText(`${out}/seeds.md`, md);
  return rows;
}

/** Step and loss of the last training step in a run's `log.jsonl` (its last 8 KiB). */
export async function lastStep(dir: string): Promise<{ step: number; loss: number } | null> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(`${dir}/log.jsonl`);
  } catch {
    return null;
  }
  try {
    const size = (await f.stat()).size;
    const n = Math.min(size, 8192);
    await f.seek(size - n, Deno.SeekMode.Start);
    const buf = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const r = await f.read(buf.subarray(got));
      if (r === null) break;
      got += r;
    }
    const lines = new TextDecoder().decode(buf.subarray(0, got)).split("\n").reverse();
    for (const line of lines) {
      try {
        const r = JSON.parse(line);
        if (typeof r.step === "number" && typeof r.loss === "number") {
          return { step: r.step, loss: r.loss };
        }
      } catch { /* a partial first line or one being written */ }
    }
    return null;
  } finally {
    f.close();
  }
}

/** Where a launch writes: events (job ids, resubmissions) and the live table. */
export interface SweepIO {
  /** Events and results (default: stdout). */
  say(s: string): void;
  /** The live table and progress (default: stderr). */
  status(s: string): void;
}

const enc = new TextEncoder();
const DEFAULT_IO: SweepIO = {
  say: (s) => console.log(s),
  status: (s) => void Deno.stderr.writeSync(enc.encode(s + "\n")),
};

/** Names the sweep's unfinished runs. */
export async function missingRuns(sweep: Sweep): Promise<SweepRun[]> {
  const out: SweepRun[] = [];
  for (const r of sweep.runs) if (!(await sweep.isDone(r))) out.push(r);
  return out;
}

/**
 * Writes the sweep's tables when every run is finished (exit code 0); otherwise says which runs
 * are missing (1).
 */
export async function collectSweep(sweep: Sweep, io: SweepIO = DEFAULT_IO): Promise<number> {
  const missing = await missingRuns(sweep);
  if (missing.length) {
    io.say(
      `${missing.length} of ${sweep.runs.length} runs are not finished: ${
        missing.map((r) => r.name).join(", ")
      } (no results written; logs of Slurm tasks are in ${sweep.out}/slurm/)`,
    );
    return 1;
  }
  await sweep.collect();
  io.say(await Deno.readTextFile(sweep.resultsFile));
  return 0;
}

/**
 * Runs a sweep as the flags ask: `--collect`, one run after another here (`local`), or as a
 * Slurm array job (`slurm`: `--dry-run` prints the script; `--no-wait` returns once submitted;
 * otherwise the tasks are watched, failed ones resubmitted, and the results collected).
 * Returns the exit code.
 */
export async function launchSweep(
  sweep: Sweep,
  flags: SweepFlags,
  io: SweepIO = DEFAULT_IO,
): Promise<number> {
  if (flags.collect) return await collectSweep(sweep, io);
  if (sweep.runs.length === 0) throw new SweepError("the sweep has no runs");
  if (flags.launcher === "local") return await runLocal(sweep, io);
  return await runSlurm(sweep, flags, io);
}

function denoTask(sweep: Sweep): string[] {
  return [Deno.execPath(), "task", sweep.task, ...sweep.args];
}

async function runLocal(sweep: Sweep, io: SweepIO): Promise<number> {
  for (const run of sweep.runs) {
    if (await sweep.isDone(run)) {
      io.status(`${run.name}: finished (skipping)`);
      continue;
    }
    const args = [...denoTask(sweep).slice(1), ...run.args, ...(await sweep.resumeArgs(run))];
    io.status(`=== ${run.name}: deno ${args.map(shellQuote).join(" ")}`);
    const r = await new Deno.Command(Deno.execPath(), {
      args,
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn().status;
    if (r.code !== 0) {
      io.say(`${run.name} failed (exit ${r.code}); rerun the same command to resume it`);
      return 1;
    }
  }
  return await collectSweep(sweep, io);
}

/** The sweep's Slurm job records (`slurm/jobs.json`): which task runs which run. */
interface JobRecord {
  job: string;
  /** Array index in `script`. */
  index: number;
  attempts: number;
  /** The script submitted (a resubmission uses the same file, whatever was launched since). */
  script: string;
}

interface Row {
  run: SweepRun;
  index: number;
  rec: JobRecord | null;
  state: string;
  elapsed: string;
  /** Finished, or failed past the retry limit. */
  over: boolean;
}

async function readJobs(path: string): Promise<Record<string, JobRecord>> {
  try {
    return JSON.parse(await Deno.readTextFile(path)).runs ?? {};
  } catch {
    return {};
  }
}

async function runSlurm(sweep: Sweep, flags: SweepFlags, io: SweepIO): Promise<number> {
  const options = mergeSlurmOptions(sweep.slurm, flags.slurm);
  const retries = flags.retries ?? options.retries ?? 2;
  const slurmDir = abs(`${sweep.out}/slurm`);
  const text = arrayScript({
    tasks: sweep.runs.map((r) => ({ name: r.name, args: r.args })),
    command: denoTask(sweep),
    cwd: Deno.cwd(),
    logDir: slurmDir,
    options,
    jobName: `lf-${sweep.task}`,
  });
  // Named by content: a launch with other runs or flags never changes the file that the tasks
  // of an earlier launch are resubmitted from.
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", enc.encode(text)));
  const scriptPath = `${slurmDir}/${sweep.task}-${
    [...hash.slice(0, 4)].map((b) => b.toString(16).padStart(2, "0")).join("")
  }.sbatch`;
  const rows: Row[] = sweep.runs.map((run, index) => ({
    run,
    index,
    rec: null,
    state: "",
    elapsed: "",
    over: false,
  }));
  for (const row of rows) {
    if (await sweep.isDone(row.run)) Object.assign(row, { state: "COMPLETED", over: true });
  }
  const todo = rows.filter((r) => !r.over);
  if (flags.dryRun) {
    io.say(text);
    io.say(
      todo.length
        ? `# would submit: sbatch --array=${todo.map((r) => r.index).join(",")} ${scriptPath}`
        : "# every run is finished: nothing to submit",
    );
    return 0;
  }
  const done = rows.filter((r) => r.over).map((r) => r.run.name);
  if (done.length) io.say(`finished already (skipped): ${done.join(", ")}`);
  if (todo.length === 0) {
    io.say("every run is finished: nothing to submit");
    return await collectSweep(sweep, io);
  }
  await requireSlurm();
  await Deno.mkdir(slurmDir, { recursive: true });
  await writeArrayScript(scriptPath, text);
  const jobsFile = `${slurmDir}/jobs.json`;
  const records = await readJobs(jobsFile);
  const saveJobs = () =>
    atomicWriteText(
      jobsFile,
      JSON.stringify({ runs: records }, null, 2) + "\n",
    );

  // Runs still queued from an earlier launch of this sweep are watched, not submitted again.
  const queued = await queuedTasks();
  const fresh: Row[] = [];
  for (const row of todo) {
    const rec = records[row.run.name];
    if (rec?.script && queued.has(taskKey(rec.job, rec.index))) {
      row.rec = rec;
      io.say(`${row.run.name}: already queued as ${taskKey(rec.job, rec.index)} (watching it)`);
    } else fresh.push(row);
  }
  // Runs with the same resume arguments share one submission.
  const groups = new Map<string, Row[]>();
  for (const row of fresh) {
    const key = JSON.stringify(await sweep.resumeArgs(row.run));
    groups.set(key, [...(groups.get(key) ?? []), row]);
  }
  for (const [key, group] of groups) {
    const job = await submitArray(scriptPath, group.map((r) => r.index), JSON.parse(key));
    for (const row of group) {
      row.rec = records[row.run.name] = {
        job,
        index: row.index,
        attempts: 1,
        script: scriptPath,
      };
    }
    io.say(
      `submitted array job ${job}: ${
        group.map((r) => `${taskKey(job, r.index)}=${r.run.name}`).join(" ")
      } (script ${scriptPath}; logs in ${slurmDir}/)`,
    );
  }
  await saveJobs();
  if (flags.noWait) {
    io.say("not waiting: the same command, run again, watches these tasks and resubmits failures");
    return 0;
  }

  let lastTable = "";
  let squeueErrors = 0;
  while (rows.some((r) => !r.over)) {
    let q: Map<string, TaskState>;
    try {
      q = await queuedTasks();
      squeueErrors = 0;
    } catch (e) {
      if (++squeueErrors > 5) throw e;
      io.status(`${(e as Error).message} (retrying)`);
      await new Promise((r) => setTimeout(r, flags.pollSeconds * 1000));
      continue;
    }
    for (const row of rows) {
      if (row.over || !row.rec) continue;
      const t = q.get(taskKey(row.rec.job, row.rec.index));
      if (t) {
        row.state = t.reason ? `${t.state} (${t.reason})` : t.state;
        row.elapsed = t.elapsed;
        continue;
      }
      if (await sweep.isDone(row.run)) {
        const ended = await endedTask(row.rec.job, row.rec.index);
        Object.assign(row, { state: "COMPLETED", elapsed: ended?.elapsed ?? row.elapsed });
        row.over = true;
        continue;
      }
      // Left the queue unfinished: failed, cancelled, preempted, timed out or lost its node.
      const ended = await endedTask(row.rec.job, row.rec.index);
      const how = ended?.state ?? "ENDED";
      const log = `${slurmDir}/${options.job_name ?? `lf-${sweep.task}`}_${
        taskKey(row.rec.job, row.rec.index)
      }.out`;
      if (row.rec.attempts > retries) {
        Object.assign(row, { state: how, over: true });
        io.say(`${row.run.name}: ${how} after ${row.rec.attempts} attempts; see ${log}`);
        continue;
      }
      const extra = await sweep.resumeArgs(row.run);
      const { index, script } = row.rec;
      const job = await submitArray(script, [index], extra);
      io.say(
        `${row.run.name}: ${taskKey(row.rec.job, row.rec.index)} ${how}; resubmitted as ${
          taskKey(job, index)
        }${extra.length ? ` with ${extra.join(" ")}` : ""}, attempt ${row.rec.attempts + 1} of ${
          retries + 1
        } (log of the last attempt: ${log})`,
      );
      row.rec = records[row.run.name] = { job, index, attempts: row.rec.attempts + 1, script };
      Object.assign(row, { state: "RESUBMITTED", elapsed: "" });
      await saveJobs();
    }
    const table = await renderTable(rows);
    if (Deno.stderr.isTerminal()) {
      const up = lastTable ? `\x1b[${lastTable.split("\n").length}A\x1b[J` : "";
      Deno.stderr.writeSync(enc.encode(up + table + "\n"));
    } else if (stateOf(table) !== stateOf(lastTable)) io.status(table);
    lastTable = table;
    if (rows.some((r) => !r.over)) {
      await new Promise((r) => setTimeout(r, flags.pollSeconds * 1000));
    }
  }
  const failed = rows.filter((r) => r.state !== "COMPLETED");
  if (failed.length) {
    io.say(
      `${failed.length} run(s) did not finish: ${
        failed.map((r) => r.run.name).join(", ")
      }; rerun the same command to resubmit them (finished runs are skipped)`,
    );
    return 1;
  }
  return await collectSweep(sweep, io);
}

/** The table without the columns that change every poll (to print it only on a change). */
function stateOf(table: string): string {
  return table.split("\n").map((l) => l.split("|").slice(0, 4).join("|")).join("\n");
}

async function renderTable(rows: Row[]): Promise<string> {
  const cells = [["run", "task", "state", "tries", "elapsed", "step", "loss"]];
  for (const r of rows) {
    const last = await lastStep(r.run.dir);
    cells.push([
      r.run.name,
      r.rec ? taskKey(r.rec.job, r.rec.index) : "-",
      r.state || "SUBMITTED",
      r.rec ? String(r.rec.attempts) : "-",
      r.elapsed || "-",
      last ? String(last.step) : "-",
      last ? last.loss.toFixed(4) : "-",
    ]);
  }
  const w = cells[0].map((_, c) => Math.max(...cells.map((row) => row[c].length)));
  return cells.map((row) => row.map((s, c) => s.padEnd(w[c])).join(" | ").trimEnd()).join("\n");
}
