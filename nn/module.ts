/**
 * `Module`: a tree of named parameters and sub-modules, like `torch.nn.Module`.
 *
 * Names are dotted paths built from the registration names (`h.0.attn.c_attn.weight`), so a
 * model that registers its children under Hugging Face's names gets Hugging Face's state-dict
 * keys for free. Parameters are plain leaf {@link Tensor}s with `requiresGrad`; loading a state
 * dict writes into them in place, so an optimiser holding them keeps working.
 *
 * @module
 */
import { keep, Tensor } from "../autograd/tensor.ts";
import { contiguousView, shapeSize } from "../kernels/backend.ts";

/** A state-dict value: a tensor, or host data with its shape (e.g. a safetensors entry). */
export type StateEntry = Tensor | {
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
};

/** Options of {@link Module.loadStateDict}. */
export interface LoadStateDictOptions {
  /** Missing or unexpected keys are an error (default true). Shape mismatches always are. */
  strict?: boolean;
  /** Where the dict came from (a file path), named in errors. */
  source?: string;
}

/** What {@link Module.loadStateDict} did not match (empty when strict succeeded). */
export interface LoadStateDictResult {
  /** Parameters of the module that the dict lacks (left unchanged). */
  missingKeys: string[];
  /** Keys of the dict that name no parameter (ignored). */
  unexpectedKeys: string[];
}

const fmt = (s: readonly number[]): string => `[${s.join(", ")}]`;

/** Base class of every layer and model: parameters, children, modes, state dicts. */
export class Module {
  /** Training mode (dropout active). New modules start in training mode, like PyTorch. */
  training = true;
  #params = new Map<string, Tensor>();
  #children = new Map<string, Module>();

  /**
   * Registers a parameter under `name` (a leaf tensor; made to require grad) and returns it.
   * The tensor is kept out of any enclosing `tidy` scope: it lives as long as the module.
   */
  protected registerParameter(name: string, t: Tensor): Tensor {
    if (name.includes(".") || this.#params.has(name) || this.#children.has(name)) {
      throw new Error(`Module: parameter name "${name}" is invalid or already used`);
    }
    if (t.dtype !== "f32") throw new Error(`Module: parameter "${name}" must be f32`);
    t.requiresGrad = true;
    this.#params.set(name, keep(t));
    return t;
  }

  /** Registers a child module under `name` and returns it. */
  protected registerModule<M extends Module>(name: string, m: M): M {
    if (name.includes(".") || this.#params.has(name) || this.#children.has(name)) {
      throw new Error(`Module: child name "${name}" is invalid or already used`);
    }
    this.#children.set(name, m);
    return m;
  }

  /** Direct children with their names. */
  namedChildren(): [string, Module][] {
    return [...this.#children.entries()];
  }

  /** This module and every descendant, with dotted names ("" for this one). */
  namedModules(prefix = ""): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, c] of this.#children) out.push(...c.namedModules(join(prefix, n)));
    return out;
  }

  /** Every parameter of the subtree with its dotted name, in registration order. */
  namedParameters(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, p] of this.#params) out.push([join(prefix, n), p]);
    for (const [n, c] of this.#children) out.push(...c.namedParameters(join(prefix, n)));
    return out;
  }

  /** Every parameter of the subtree (each tensor once, even if shared). */
  parameters(): Tensor[] {
    return [...new Set(this.namedParameters().map(([, p]) => p))];
  }

  /** Parameters that currently require grad (what an optimiser should update). */
  trainableParameters(): Tensor[] {
    return this.parameters().filter((p) => p.requiresGrad);
  }

  /** Number of parameter values (only trainable ones if asked). */
  numParameters(trainableOnly = false): number {
    const ps = trainableOnly ? this.trainableParameters() : this.parameters();
    return ps.reduce((s, p) => s + p.size, 0);
  }

  /** Parameters by dotted name. The tensors themselves, not copies. */
  stateDict(): Map<string, Tensor> {
    return new Map(this.namedParameters());
  }

  /**
   * Copies values into the parameters, in place. Every problem (missing keys and unexpected
   * keys when strict, shape mismatches always) is reported at once in one error, and nothing
   * is written then. Tensors must live on the parameters' backend; host data may be any
   * numeric array (a safetensors entry works as is).
   */
  loadStateDict(
    dict: Map<string, StateEntry> | Record<string, StateEntry>,
    opts: LoadStateDictOptions = {},
  ): LoadStateDictResult {
    const strict = opts.strict ?? true;
    const entries = dict instanceof Map ? dict : new Map(Object.entries(dict));
    const own = this.stateDict();
    const missingKeys = [...own.keys()].filter((k) => !entries.has(k));
    const unexpectedKeys = [...entries.keys()].filter((k) => !own.has(k));
    const problems: string[] = [];
    for (const [k, p] of own) {
      const e = entries.get(k);
      if (!e) continue;
      if (e.shape.join() !== p.shape.join()) {
        problems.push(`${k}: shape ${fmt(e.shape)} in the dict, ${fmt(p.shape)} in the model`);
      } else if (e instanceof Tensor && e.dtype !== "f32") {
        problems.push(`${k}: tensor has dtype ${e.dtype}, parameters are f32`);
      } else if (e instanceof Tensor && e.backend !== p.backend) {
        problems.push(
          `${k}: tensor lives on backend ${e.backend.name}, the model on ${p.backend.name}`,
        );
      }
    }
    if (strict) {
      if (missingKeys.length) problems.push(`missing keys: ${missingKeys.join(", ")}`);
      if (unexpectedKeys.length) problems.push(`unexpected keys: ${unexpectedKeys.join(", ")}`);
    }
    if (problems.length) {
      const from = opts.source ? ` from ${opts.source}` : "";
      throw new Error(
        `loadStateDict${from}: ${problems.length} problem(s):\n  ${problems.join("\n  ")}`,
      );
    }
    for (const [k, p] of own) {
      const e = entries.get(k);
      if (e) writeInto(p, e, k, opts.source);
    }
    return { missingKeys, unexpectedKeys };
  }

  /** Sets training mode on the whole subtree (`train(false)` = {@link eval}). */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  /** Evaluation mode: dropout off. */
  eval(): this {
    return this.train(false);
  }

  /** Sets `requiresGrad` on every parameter of the subtree. */
  requiresGrad(flag = true): this {
    for (const p of this.parameters()) p.requiresGrad = flag;
    return this;
  }

  /**
   * Re-stores every frozen parameter (requiresGrad false) as f16 where the backend can
   * (`fromHostF16`: WebGPU with `shader-f16`), halving their memory; kernels still compute in
   * f32. Returns how many parameters and bytes were converted (0 where unsupported). The
   * values are rounded to f16, so outputs change at the ~1e-3 relative level.
   */
  async storeFrozenAsF16(): Promise<{ parameters: number; bytesSaved: number }> {
    let parameters = 0, bytesSaved = 0;
    for (const p of this.parameters()) {
      const be = p.backend;
      if (p.requiresGrad || !be.f16Weights || !be.fromHostF16) continue;
      if (p.storage.length !== p.size) continue; // a view into a larger buffer: leave it
      p.replaceStorage(be.fromHostF16((await p.data()) as Float32Array));
      parameters++;
      bytesSaved += 2 * p.size;
    }
    return { parameters, bytesSaved };
  }

  /** Freezes the subtree: no gradients for its parameters. */
  freeze(): this {
    return this.requiresGrad(false);
  }

  /** Undoes {@link freeze}. */
  unfreeze(): this {
    return this.requiresGrad(true);
  }

  /** Drops the accumulated gradients of the subtree. */
  zeroGrad(): void {
    for (const p of this.parameters()) p.zeroGrad();
  }

  /** Frees every parameter of the subtree; the module is unusable afterwards. */
  dispose(): void {
    for (const p of this.parameters()) p.dispose();
  }
}

/** An indexable list of modules registered as children "0", "1", ... (HF's `h.0`, `h.1`). */
export class ModuleList<M extends Module> extends Module {
  /** The modules, in order. */
  readonly items: readonly M[];

  /** Registers each module under its index. */
  constructor(items: M[]) {
    super();
    items.forEach((m, i) => this.registerModule(String(i), m));
    this.items = items;
  }

  /** Number of modules. */
  get length(): number {
    return this.items.length;
  }

  /** Iterates the modules in order. */
  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
}

function join(prefix: string, name: string): string {
  return prefix ? `${prefix}.${name}` : name;
}

/** Writes a state entry into parameter `p` in place (no new tensor, so references stay valid). */
function writeInto(p: Tensor, e: StateEntry, key: string, source?: string): void {
  const be = p.backend;
  if (e instanceof Tensor) {
    be.copy(e.storage, e.view, p.storage, p.view);
    return;
  }
  // Read `data` only here: lazy sources (safetensors entries) decode one tensor at a time.
  const data = e.data;
  if (data.length !== shapeSize(p.shape)) {
    throw new Error(
      `loadStateDict${source ? ` from ${source}` : ""}: ${key}: ${data.length} values for shape ${
        fmt(p.shape)
      }`,
    );
  }
  const host = data instanceof Float32Array ? data : Float32Array.from(data);
  const tmp = be.fromHost(host, "f32");
  try {
    be.copy(tmp, contiguousView(p.shape), p.storage, p.view);
  } finally {
    be.dispose(tmp);
  }
}
