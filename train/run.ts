/**
 * A run folder: what one training run owns on disk, safe against two processes, kills at any
 * instant and silent reuse.
 *
 * - `.lock`: holds the pid of the process training in the folder; a second process is refused
 *   (a lock whose process is gone is taken over).
 * - `config.yaml`: the run's configuration. A folder that holds a run is reused only with
 *   `resume` (the configuration must match, except keys marked `free`, unless `force`) or
 *   `overwrite` (the run's files are removed first).
 * - `checkpoint/`: trainable weights (`trainable.safetensors`, from `stateDict`), the AdamW
 *   moments (`optimizer.safetensors`) and `state.json`; replaced atomically, and recovered
 *   after a kill between the two renames.
 * - `log.jsonl`: one JSON line per step and per validation; a torn last line (a kill during a
 *   write) is dropped on resume.
 *
 * @module
 */
// deno-lint-ignore no-import-prefix -- the import map does not apply to importers elsewhere
import { stringify as toYaml } from "npm:yaml@^2.6.0";
import { loadSafetensors, type TensorToWrite, writeSafetensors } from "../models/safetensors.ts";
import type { Tensor } from "../autograd/tensor.ts";
import type { AdamW } from "../nn/optim.ts";
import type { StateEntry } from "../nn/module.ts";
import { atomicReplaceDir, atomicWriteText, recoverDir } from "../io/atomic.ts";
import { changedKeys, ConfigError, readConfigFile, type Schema } from "./config.ts";

/** How to treat a folder that already holds a run. */
export interface RunOpenOptions {
  /** Continue the run in the folder from its checkpoint. */
  resume?: boolean;
  /** Remove the run in the folder and start over. */
  overwrite?: boolean;
  /** With `resume`: accept changed settings. */
  force?: boolean;
  /** Messages. */
  log?: (s: string) => void;
}

/** What the trainer checkpoints: anything with a state dict (every `nn.Module`). */
export interface Stateful {
  /** Parameters by name (the tensors themselves). */
  stateDict(): Map<string, Tensor>;
  /** Copies values into the parameters in place. */
  loadStateDict(
    dict: Map<string, StateEntry>,
    opts?: { strict?: boolean; source?: string },
  ): unknown;
}

/** Loop position and bookkeeping saved with a checkpoint. */
export interface LoopState {
  /** Optimizer steps taken. */
  step: number;
  /** Epoch the next step belongs to (0-based). */
  epoch: number;
  /** Batches of that epoch already taken. */
  batchInEpoch: number;
  /** Global RNG state (dropout). */
  rng: number[];
  /** Validation losses so far, one per validation. */
  validLosses: { step: number; loss: number }[];
  /** Training seconds so far, over every invocation (time budgets span resumes). */
  seconds: number;
  /** The run reached its end (steps, epochs or time budget). */
  finished: boolean;
}

/** Files a run writes into its folder (removed by `overwrite`). */
export const RUN_FILES: readonly string[] = [
  "config.yaml",
  "log.jsonl",
  "checkpoint",
  "summary.json",
  "loss.svg",
  "prefix",
  "peft",
  "model",
  "outputs",
  "scores.json",
  "result.md",
];

const LOCK = ".lock";

async function exists(p: string): Promise<boolean> {
  return await Deno.lstat(p).then(() => true, () => false);
}

/** Whether process `pid` is alive (Linux `/proc`; elsewhere assumed alive). */
async function alive(pid: number): Promise<boolean> {
  if (pid === Deno.pid) return true;
  if (Deno.build.os !== "linux") return true;
  return await exists(`/proc/${pid}`);
}

/** An open run folder (holds the lock until {@linkcode RunDir.close}). */
export class RunDir {
  /** The folder. */
  readonly dir: string;
  /** Whether a checkpoint was found to resume from. */
  readonly resumable: boolean;
  #closed = false;

  private constructor(dir: string, resumable: boolean) {
    this.dir = dir;
    this.resumable = resumable;
  }

  /** The checkpoint folder. */
  get checkpointDir(): string {
    return `${this.dir}/checkpoint`;
  }

  /** The log file. */
  get logPath(): string {
    return `${this.dir}/log.jsonl`;
  }

  /**
   * Opens (creating) `dir` for a run of `config`: takes the lock, recovers an interrupted
   * checkpoint swap, and applies the reuse rules above. Writes `config.yaml`.
   */
  static async open<T>(
    dir: string,
    schema: Schema<T>,
    config: T,
    opts: RunOpenOptions = {},
  ): Promise<RunDir> {
    const log = opts.log ?? (() => {});
    if (opts.resume && opts.overwrite) {
      throw new ConfigError("--resume and --overwrite exclude each other");
    }
    await Deno.mkdir(dir, { recursive: true });
    await takeLock(dir);
    try {
      for (const line of await recoverDir(`${dir}/checkpoint`)) log(`run folder: ${line}`);
      // Half-written files of a killed writer (we hold the lock: nobody else writes here).
      for await (const e of Deno.readDir(dir)) {
        if (e.isFile && /\.tmp-\d+-\d+$/.test(e.name)) {
          await Deno.remove(`${dir}/${e.name}`);
          log(`run folder: removed ${dir}/${e.name}`);
        }
      }
      const used = (await Promise.all(RUN_FILES.map((f) => exists(`${dir}/${f}`)))).some(Boolean);
      const hasCk = await exists(`${dir}/checkpoint/state.json`);
      if (used && !opts.resume && !opts.overwrite) {
        const finished = await exists(`${dir}/summary.json`);
        throw new ConfigError(
          `${dir} already holds a ${finished ? "finished" : "started"} run: pass --resume to ${
            finished ? "reuse" : "continue"
          } it or --overwrite to start over (or choose another --out)`,
        );
      }
      if (opts.overwrite && used) {
        for (const f of RUN_FILES) {
          await Deno.remove(`${dir}/${f}`, { recursive: true }).catch(() => {});
        }
        log(`run folder: ${dir}: previous run removed (--overwrite)`);
      }
      if (opts.resume && await exists(`${dir}/config.yaml`)) {
        const before = { ...config, ...(await readConfigFile(`${dir}/config.yaml`)) } as T;
        const changed = changedKeys(schema, before, config);
        if (changed.length && !opts.force) {
          throw new ConfigError(
            `--resume: ${dir}/config.yaml differs from this run's settings: ${
              changed.map((c) =>
                `'${c.key}' was ${JSON.stringify(c.before)}, now ${JSON.stringify(c.after)}`
              ).join("; ")
            } (pass --force to resume anyway)`,
          );
        }
        for (const c of changed) {
          log(
            `--resume --force: '${c.key}' ${JSON.stringify(c.before)} → ${JSON.stringify(c.after)}`,
          );
        }
      }
      await atomicWriteText(`${dir}/config.yaml`, toYaml(config));
      return new RunDir(dir, !!opts.resume && hasCk);
    } catch (e) {
      await releaseLock(dir);
      throw e;
    }
  }

  /** Releases the lock. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await releaseLock(this.dir);
  }

  /** Writes a checkpoint atomically. */
  async saveTrainingState(state: LoopState, trainable: Stateful, opt: AdamW): Promise<void> {
    const weights: Record<string, TensorToWrite> = {};
    for (const [name, t] of trainable.stateDict()) {
      weights[name] = { dtype: "F32", shape: [...t.shape], data: (await t.data()) as Float32Array };
    }
    const os = await opt.state();
    const moments: Record<string, TensorToWrite> = {};
    os.moments.forEach((mv, i) => {
      moments[`m.${i}`] = { dtype: "F32", shape: [mv.m.length], data: mv.m };
      moments[`v.${i}`] = { dtype: "F32", shape: [mv.v.length], data: mv.v };
    });
    await atomicReplaceDir(this.checkpointDir, async (tmp) => {
      await writeSafetensors(`${tmp}/trainable.safetensors`, weights);
      await writeSafetensors(`${tmp}/optimizer.safetensors`, moments, { step: String(os.step) });
      await Deno.writeTextFile(`${tmp}/state.json`, JSON.stringify(state, null, 1) + "\n");
    });
  }

  /** Loads the checkpoint into `trainable` and `opt`; returns the loop state. */
  async loadTrainingState(trainable: Stateful, opt: AdamW): Promise<LoopState> {
    const ck = this.checkpointDir;
    let state: LoopState;
    try {
      state = JSON.parse(await Deno.readTextFile(`${ck}/state.json`));
    } catch (e) {
      throw new Error(`--resume: no usable checkpoint in ${ck} (${(e as Error).message})`);
    }
    const st = await loadSafetensors(`${ck}/trainable.safetensors`);
    trainable.loadStateDict(st.tensors as Map<string, StateEntry>, {
      source: `${ck}/trainable.safetensors`,
    });
    const om = await loadSafetensors(`${ck}/optimizer.safetensors`);
    const moments = opt.params.map((_, i) => {
      const m = om.tensors.get(`m.${i}`), v = om.tensors.get(`v.${i}`);
      if (!m || !v) {
        throw new Error(`${ck}/optimizer.safetensors: missing moments of parameter ${i}`);
      }
      return { m: m.data as Float32Array, v: v.data as Float32Array };
    });
    opt.loadState({ step: Number(om.metadata.step), moments });
    return state;
  }

  /**
   * The log's records up to and including `step` (later ones, written after the checkpoint,
   * are dropped and the file rewritten). A torn last line is dropped; a bad line before it is
   * an error naming the line.
   */
  async truncateLog(step: number): Promise<Record<string, unknown>[]> {
    const recs = await readLog(this.logPath);
    const kept: Record<string, unknown>[] = [];
    for (const r of recs) {
      if (typeof r.step === "number" && r.step > step) break;
      if (typeof r.valid_step === "number" && r.valid_step > step) break;
      kept.push(r);
    }
    await atomicWriteText(this.logPath, kept.map((r) => JSON.stringify(r) + "\n").join(""));
    return kept;
  }
}

/**
 * Reads a `log.jsonl`: one record per line. A last line that does not parse (torn by a kill)
 * is dropped; any other bad line is an error naming file and line.
 */
export async function readLog(path: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(path).catch((e) => {
    if (e instanceof Deno.errors.NotFound) return "";
    throw e;
  });
  const lines = text.split("\n");
  const out: Record<string, unknown>[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    try {
      out.push(JSON.parse(lines[i]));
    } catch (e) {
      const last = lines.slice(i + 1).every((l) => !l.trim());
      if (last) break;
      throw new Error(`${path}:${i + 1}: not a JSON record (${(e as Error).message})`);
    }
  }
  return out;
}

async function takeLock(dir: string): Promise<void> {
  const path = `${dir}/${LOCK}`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await Deno.writeTextFile(path, `${Deno.pid}\n`, { createNew: true });
      return;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    const pid = Number((await Deno.readTextFile(path).catch(() => "")).trim());
    if (Number.isInteger(pid) && pid > 0 && await alive(pid)) {
      throw new ConfigError(
        `${dir} is in use by process ${pid} (lock file ${path}); wait for it to finish or stop it`,
      );
    }
    // The holder is gone (killed): take the lock over.
    await Deno.remove(path).catch(() => {});
  }
  throw new ConfigError(`${dir}: cannot take the lock file ${path}`);
}

async function releaseLock(dir: string): Promise<void> {
  const path = `${dir}/${LOCK}`;
  const pid = Number((await Deno.readTextFile(path).catch(() => "")).trim());
  if (pid === Deno.pid) await Deno.remove(path).catch(() => {});
}
