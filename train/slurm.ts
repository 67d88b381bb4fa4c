/**
 * Slurm, driven through its client commands: the job-array script of a sweep (`sbatch`), its
 * submission, and the state of its tasks (`squeue`, then `scontrol` or `sacct` once a task has
 * left the queue). Every command honours an inherited `SLURM_CONF`.
 *
 * @module
 */
import { atomicWriteText } from "../models/prefix.ts";

/** A Slurm problem a user can act on: Slurm missing, a bad option, a refused submission. */
export class SlurmError extends Error {}

/** Resources and scheduling options of a sweep's array job (`slurm:` in a sweep config). */
export interface SlurmOptions {
  /** `--partition`. */
  partition?: string;
  /** `--gres`, e.g. `gpu:1`. */
  gres?: string;
  /** `--time` (`MM`, `HH:MM:SS`, `D-HH:MM:SS`). */
  time?: string;
  /** `--mem`, e.g. `32G`. */
  mem?: string;
  /** `--cpus-per-task`. */
  cpus_per_task?: number;
  /** `--account`. */
  account?: string;
  /** `--qos`. */
  qos?: string;
  /** `--job-name` (default `lf-<task>`). */
  job_name?: string;
  /** Further directives, one per entry (`--constraint=a100` or `#SBATCH --constraint=a100`). */
  extra: string[];
  /** Resubmissions of a failed or preempted task before it counts as failed (default 2). */
  retries?: number;
}

const STRING_KEYS = ["partition", "gres", "time", "mem", "account", "qos", "job_name"] as const;

/** Keys of a `slurm:` section. */
export const SLURM_KEYS: readonly string[] = [
  ...STRING_KEYS,
  "cpus_per_task",
  "extra",
  "retries",
];

const PATTERNS: Record<string, [RegExp, string]> = {
  time: [/^(\d+-)?\d+(:\d{1,2}){0,2}$|^(UNLIMITED|INFINITE)$/i, "MM, HH:MM:SS or D-HH:MM:SS"],
  mem: [/^\d+[KMGT]?B?$/i, "a size such as 32G"],
  gres: [/^[\w.:,\-/]+$/, "a resource such as gpu:1"],
};

/**
 * Checks a `slurm:` mapping (from YAML or flags): known keys, strings without spaces or line
 * breaks where Slurm takes one word, positive integers. `where` names the source in errors.
 */
export function parseSlurmOptions(doc: unknown, where: string): SlurmOptions {
  if (doc === undefined || doc === null) return { extra: [] };
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new SlurmError(`${where}: 'slurm' must be a mapping (keys: ${SLURM_KEYS.join(", ")})`);
  }
  const out: SlurmOptions = { extra: [] };
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    const bad = (what: string) =>
      new SlurmError(`${where}: slurm.${k} must be ${what}, got ${JSON.stringify(v)}`);
    if ((STRING_KEYS as readonly string[]).includes(k)) {
      const s = typeof v === "number" ? String(v) : v;
      if (typeof s !== "string" || !/^\S+$/.test(s)) throw bad("one word");
      const pat = PATTERNS[k];
      if (pat && !pat[0].test(s)) throw bad(pat[1]);
      (out as unknown as Record<string, string>)[k] = s;
    } else if (k === "cpus_per_task" || k === "retries") {
      const n = typeof v === "string" && v.trim() !== "" ? Number(v) : v;
      const min = k === "retries" ? 0 : 1;
      if (typeof n !== "number" || !Number.isInteger(n) || n < min) {
        throw bad(`an integer ≥ ${min}`);
      }
      out[k] = n;
    } else if (k === "extra") {
      const list = typeof v === "string" ? [v] : v;
      if (!Array.isArray(list)) throw bad("a list of #SBATCH directives");
      out.extra = list.map((line, i) => {
        const d = typeof line === "string" ? line.trim().replace(/^#SBATCH\s+/, "") : "";
        if (!/^-/.test(d) || /[\r\n]/.test(d)) {
          throw new SlurmError(
            `${where}: slurm.extra[${i}] must be an sbatch option such as --constraint=a100, ` +
              `got ${JSON.stringify(line)}`,
          );
        }
        return d;
      });
    } else {
      throw new SlurmError(`${where}: unknown key 'slurm.${k}' (known: ${SLURM_KEYS.join(", ")})`);
    }
  }
  return out;
}

/** `over`'s set values over `base`'s; extra directives of both, base first. */
export function mergeSlurmOptions(base: SlurmOptions, over: Partial<SlurmOptions>): SlurmOptions {
  const out: SlurmOptions = { ...base, extra: [...base.extra, ...(over.extra ?? [])] };
  for (const [k, v] of Object.entries(over)) {
    if (k !== "extra" && v !== undefined) (out as unknown as Record<string, unknown>)[k] = v;
  }
  return out;
}

/** Quotes a word for bash when it needs it. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/** One task of an array job: a run's name and the arguments that select it. */
export interface ArrayTask {
  /** Run name (shown in comments and tables). */
  name: string;
  /** Arguments after the shared command (e.g. `--only prefix_L5`). */
  args: string[];
}

/** What an array-job script runs. */
export interface ArrayScript {
  /** Tasks, by array index. */
  tasks: ArrayTask[];
  /** The shared command (`deno task ablation --config ...`). */
  command: string[];
  /** Working directory of every task. */
  cwd: string;
  /** Folder of the tasks' stdout/stderr files (`%x_%A_%a.out`). */
  logDir: string;
  /** Resources and directives. */
  options: SlurmOptions;
  /** Job name when `options.job_name` is unset. */
  jobName: string;
}

/**
 * The sbatch script: `#SBATCH --array=0-(N-1)` and the resources, then one `case` branch per
 * array index. Arguments given to the script itself (a resubmission's `--resume`) follow the
 * run's own, so one file serves the first submission and every retry.
 */
export function arrayScript(s: ArrayScript): string {
  const o = s.options;
  const n = s.tasks.length;
  if (n === 0) throw new SlurmError("an array job needs at least one task");
  const directives: string[] = [
    `--job-name=${o.job_name ?? s.jobName}`,
    `--array=0-${n - 1}`,
    `--output=${s.logDir}/%x_%A_%a.out`,
  ];
  if (o.partition) directives.push(`--partition=${o.partition}`);
  if (o.gres) directives.push(`--gres=${o.gres}`);
  if (o.time) directives.push(`--time=${o.time}`);
  if (o.mem) directives.push(`--mem=${o.mem}`);
  if (o.cpus_per_task) directives.push(`--cpus-per-task=${o.cpus_per_task}`);
  if (o.account) directives.push(`--account=${o.account}`);
  if (o.qos) directives.push(`--qos=${o.qos}`);
  directives.push(...o.extra);
  const q = (a: string[]) => a.map(shellQuote).join(" ");
  return [
    "#!/bin/bash",
    ...directives.map((d) => `#SBATCH ${d}`),
    `# One array task per run: ${s.tasks.map((t) => t.name).join(" ")}`,
    "set -euo pipefail",
    `case "$SLURM_ARRAY_TASK_ID" in`,
    ...s.tasks.map((t, i) => `  ${i}) RUN=(${q(t.args)}) ;; # ${t.name}`),
    `  *) echo "no run for array index $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;`,
    "esac",
    `cd ${shellQuote(s.cwd)}`,
    `exec ${q(s.command)} "\${RUN[@]}" "$@"`,
    "",
  ].join("\n");
}

/** Writes the script (atomically, executable) and returns its path. */
export async function writeArrayScript(path: string, text: string): Promise<string> {
  await atomicWriteText(path, text);
  await Deno.chmod(path, 0o755).catch(() => {});
  return path;
}

interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

const dec = new TextDecoder();

async function slurmCommand(cmd: string, args: string[]): Promise<Output> {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", stdin: "null" })
      .output();
    return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr).trim() };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new SlurmError(
        `--launcher slurm: Slurm's '${cmd}' is not on PATH. Run this on a Slurm login node ` +
          "(Debian/Ubuntu: apt-get install slurm-client), use --launcher local, or --dry-run " +
          "to print the job script without submitting it.",
      );
    }
    throw e;
  }
}

/** Throws a clear {@link SlurmError} unless `sbatch` exists and the controller answers. */
export async function requireSlurm(): Promise<void> {
  await slurmCommand("sbatch", ["--version"]);
  const r = await slurmCommand("squeue", ["-h", "--me", "-o", "%i"]);
  if (r.code !== 0) {
    throw new SlurmError(
      `--launcher slurm: the Slurm controller does not answer (squeue: ${
        r.stderr || `exit ${r.code}`
      }); check SLURM_CONF and that slurmctld runs`,
    );
  }
}

/**
 * Submits `script` for the given array indices with `args` after the script (e.g. `--resume`);
 * returns the job id.
 */
export async function submitArray(
  script: string,
  indices: number[],
  args: string[] = [],
): Promise<string> {
  const r = await slurmCommand("sbatch", [
    "--parsable",
    `--array=${indices.join(",")}`,
    script,
    ...args,
  ]);
  const id = r.stdout.trim().split(";")[0];
  if (r.code !== 0 || !/^\d+$/.test(id)) {
    throw new SlurmError(`sbatch refused ${script}: ${r.stderr || r.stdout || `exit ${r.code}`}`);
  }
  return id;
}

/** One array task as Slurm sees it. */
export interface TaskState {
  /** Array job id. */
  job: string;
  /** Array index. */
  index: number;
  /** Slurm state (`PENDING`, `RUNNING`, `FAILED`, `CANCELLED`, `PREEMPTED`, ...). */
  state: string;
  /** Run time as Slurm prints it. */
  elapsed: string;
  /** Why a pending task waits (`Resources`, `Priority`, ...); empty otherwise. */
  reason?: string;
}

/** Key of an array task: `JOB_INDEX`, as scancel and squeue write it. */
export function taskKey(job: string, index: number): string {
  return `${job}_${index}`;
}

/** The user's queued and running array tasks (`squeue -r`), by {@link taskKey}. */
export async function queuedTasks(): Promise<Map<string, TaskState>> {
  const r = await slurmCommand("squeue", ["-h", "-r", "--me", "-o", "%F|%K|%T|%M|%r"]);
  if (r.code !== 0) throw new SlurmError(`squeue failed: ${r.stderr || `exit ${r.code}`}`);
  const out = new Map<string, TaskState>();
  for (const line of r.stdout.split("\n")) {
    const [job, idx, state, elapsed, reason] = line.trim().split("|");
    if (!job || !/^\d+$/.test(idx ?? "")) continue;
    out.set(taskKey(job, Number(idx)), {
      job,
      index: Number(idx),
      state,
      elapsed,
      reason: state === "PENDING" && reason && reason !== "None" ? reason : "",
    });
  }
  return out;
}

let accounting: boolean | null = null;

/** Whether the cluster keeps job accounting (`sacct` answers only then). */
async function hasAccounting(): Promise<boolean> {
  if (accounting === null) {
    const r = await slurmCommand("scontrol", ["show", "config"]);
    const m = r.stdout.match(/^AccountingStorageType\s*=\s*(\S+)/m);
    accounting = r.code === 0 && !!m && m[1] !== "accounting_storage/none";
  }
  return accounting;
}

/**
 * How a task that left the queue ended: the controller's record (kept `MinJobAge` seconds),
 * else accounting where the cluster has it; null when neither knows.
 */
export async function endedTask(job: string, index: number): Promise<TaskState | null> {
  const r = await slurmCommand("scontrol", ["show", "job", "-o", job]);
  if (r.code === 0) {
    for (const line of r.stdout.split("\n")) {
      if (line.match(/\bArrayTaskId=(\S+)/)?.[1] !== String(index)) continue;
      const state = line.match(/\bJobState=(\S+)/)?.[1] ?? "UNKNOWN";
      const elapsed = line.match(/\bRunTime=(\S+)/)?.[1] ?? "";
      return { job, index, state, elapsed };
    }
  }
  if (await hasAccounting()) {
    const a = await slurmCommand("sacct", [
      "-n",
      "-P",
      "-X",
      "-j",
      taskKey(job, index),
      "-o",
      "State,Elapsed",
    ]);
    const [state, elapsed] = a.stdout.trim().split("\n")[0]?.split("|") ?? [];
    if (a.code === 0 && state) return { job, index, state: state.split(" ")[0], elapsed };
  }
  return null;
}
