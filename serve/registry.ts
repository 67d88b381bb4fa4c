/**
 * The prefixes a server holds: each a computed prefix (our `prefix.safetensors` format or a
 * Hugging Face peft PREFIX_TUNING folder) turned once into per-layer keys and values on the
 * model's backend. Prefixes are added and removed while requests run: a request holds a
 * reference to its prefix, and the tensors of a removed prefix are freed when the last request
 * using it lets go.
 *
 * @module
 */
import {
  type Backend,
  type ComputedPrefix,
  type GPT2Config,
  keep,
  type KV,
  loadComputedPrefix,
  loadPeftPrefix,
  noGrad,
  prefixTensor,
  prefixToPast,
  tidy,
} from "./lib.ts";

/** The shape of a prefix. */
export interface PrefixShape {
  /** Prefix length L (virtual tokens). */
  prefixLen: number;
  /** Layers it feeds. */
  nLayer: number;
  /** Heads per layer. */
  nHead: number;
  /** Model width. */
  nEmbd: number;
}

/** A loaded prefix. */
export class PrefixEntry {
  /** Requests holding this prefix, plus one for the registry while it is listed. */
  #refs = 1;
  /** Per-layer keys and values, each [1, n_head, L, head_dim]. */
  readonly past: KV[];

  /** Builds the per-layer keys/values on `backend`. */
  constructor(
    readonly name: string,
    readonly source: string,
    readonly format: "lf" | "peft",
    readonly shape: PrefixShape,
    data: Float32Array,
    backend: Backend,
  ) {
    this.past = noGrad(() =>
      tidy(() => {
        const t = prefixTensor({ config: shape, data }, backend);
        return prefixToPast(t, 1, shape).map((l) => ({
          k: keep(l.k.contiguous()),
          v: keep(l.v.contiguous()),
        }));
      })
    );
  }

  /** Size of the prefix values in bytes (f32). */
  get bytes(): number {
    return 4 * this.shape.prefixLen * 2 * this.shape.nLayer * this.shape.nEmbd;
  }

  /** Takes a reference for a request. */
  acquire(): this {
    this.#refs++;
    return this;
  }

  /** Drops a reference; the tensors are freed with the last one. */
  release(): void {
    if (--this.#refs > 0) return;
    for (const l of this.past) {
      l.k.dispose();
      l.v.dispose();
    }
  }
}

/** An error whose message is meant for the client, with the HTTP status it maps to. */
export class ClientError extends Error {
  /** An error answered with `status`. */
  constructor(readonly status: number, message: string, readonly code = "invalid_request_error") {
    super(message);
  }
}

/** Folder names that can serve as prefix names (and the reserved `base`). */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

async function isFile(p: string): Promise<boolean> {
  return await Deno.stat(p).then((s) => s.isFile, () => false);
}

/**
 * Reads a prefix folder: `prefix.safetensors` + `prefix_config.json` (our format),
 * `adapter_config.json` + `adapter_model.safetensors` (peft PREFIX_TUNING), or a training run
 * folder holding `prefix/` or `peft/`. Null when the folder holds none of them.
 */
export async function readPrefixFolder(
  dir: string,
): Promise<{ prefix: ComputedPrefix; format: "lf" | "peft"; path: string } | null> {
  for (const sub of ["", "/prefix", "/peft"]) {
    const d = dir.replace(/\/+$/, "") + sub;
    if (await isFile(`${d}/prefix.safetensors`)) {
      return { prefix: await loadComputedPrefix(d), format: "lf", path: d };
    }
    if (await isFile(`${d}/adapter_config.json`)) {
      return { prefix: await loadPeftPrefix(d), format: "peft", path: d };
    }
  }
  return null;
}

/** The prefixes of one served model, by name. */
export class PrefixRegistry {
  readonly #entries = new Map<string, PrefixEntry>();

  /** An empty registry for prefixes of `config`'s shape, built on `backend`. */
  constructor(readonly config: GPT2Config, readonly backend: Backend) {}

  /** Names in insertion order. */
  names(): string[] {
    return [...this.#entries.keys()];
  }

  /** All entries. */
  entries(): PrefixEntry[] {
    return [...this.#entries.values()];
  }

  /** The entry called `name`, or undefined. */
  get(name: string): PrefixEntry | undefined {
    return this.#entries.get(name);
  }

  /** Checks a prefix name; throws a 400 naming the rule. */
  static checkName(name: unknown): string {
    if (typeof name !== "string" || !NAME.test(name) || name === "base") {
      throw new ClientError(
        400,
        `prefix name ${
          JSON.stringify(name)
        } is invalid: 1-64 characters of letters, digits, '.', '_', '-', starting with a letter or digit, and not "base"`,
      );
    }
    return name;
  }

  /**
   * Loads the prefix in folder `dir` as `name`. Refuses (400) a folder without a prefix, a
   * prefix of another model shape, or one too long for n_positions; 409 if the name is taken.
   */
  async add(name: string, dir: string): Promise<PrefixEntry> {
    PrefixRegistry.checkName(name);
    if (this.#entries.has(name)) {
      throw new ClientError(409, `prefix "${name}" already exists; DELETE it first`, "conflict");
    }
    let found;
    try {
      found = await readPrefixFolder(dir);
    } catch (e) {
      throw new ClientError(400, `prefix "${name}": ${(e as Error).message}`);
    }
    if (!found) {
      throw new ClientError(
        400,
        `prefix "${name}": ${dir} holds no prefix (prefix.safetensors + prefix_config.json, a peft adapter_config.json, or prefix/ or peft/ inside)`,
      );
    }
    const s = found.prefix.config, c = this.config;
    if (s.nLayer !== c.nLayer || s.nHead !== c.nHead || s.nEmbd !== c.nEmbd) {
      throw new ClientError(
        400,
        `prefix "${name}" (${found.path}) is for a model with n_layer ${s.nLayer}, n_head ${s.nHead}, n_embd ${s.nEmbd}; the served model has n_layer ${c.nLayer}, n_head ${c.nHead}, n_embd ${c.nEmbd}`,
      );
    }
    if (s.prefixLen >= c.nPositions) {
      throw new ClientError(
        400,
        `prefix "${name}" has length ${s.prefixLen}, leaving no position of the model's ${c.nPositions}`,
      );
    }
    // A concurrent add of the same name may have finished while this one was reading.
    if (this.#entries.has(name)) {
      throw new ClientError(409, `prefix "${name}" already exists; DELETE it first`, "conflict");
    }
    const entry = new PrefixEntry(
      name,
      found.path,
      found.format,
      { ...s },
      found.prefix.data,
      this.backend,
    );
    this.#entries.set(name, entry);
    return entry;
  }

  /** Removes `name` (404 if unknown); requests already holding it finish with it. */
  remove(name: string): void {
    const e = this.#entries.get(name);
    if (!e) throw new ClientError(404, `prefix "${name}" does not exist`, "not_found");
    this.#entries.delete(name);
    e.release();
  }

  /**
   * Loads every subfolder of `dir` that holds a prefix, named by its folder; returns the
   * subfolders skipped and why.
   */
  async addFolder(dir: string): Promise<{ loaded: string[]; skipped: string[] }> {
    const subs: string[] = [];
    for await (const e of Deno.readDir(dir)) if (e.isDirectory) subs.push(e.name);
    subs.sort();
    const loaded: string[] = [], skipped: string[] = [];
    for (const name of subs) {
      const path = `${dir.replace(/\/+$/, "")}/${name}`;
      if (!NAME.test(name) || name === "base") {
        skipped.push(`${path}: folder name is not a valid prefix name`);
        continue;
      }
      try {
        await this.add(name, path);
        loaded.push(name);
      } catch (e) {
        skipped.push(`${path}: ${(e as Error).message}`);
      }
    }
    return { loaded, skipped };
  }

  /** Releases every prefix. */
  dispose(): void {
    for (const name of this.names()) this.remove(name);
  }
}
