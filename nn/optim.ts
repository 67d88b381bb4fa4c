/**
 * Optimisation: AdamW (fused backend kernel), Hugging Face's linear schedule with warmup, and
 * global gradient-norm clipping.
 *
 * @module
 */
import { keep, noGrad, Tensor, tidy } from "../autograd/tensor.ts";
import { mul, sum } from "../autograd/ops.ts";

/** AdamW hyperparameters; defaults are PyTorch's `torch.optim.AdamW` ones. */
export interface AdamWOptions {
  /** Learning rate (the schedule multiplies it), default 1e-3. */
  lr?: number;
  /** Moment decays, default [0.9, 0.999]. */
  betas?: [number, number];
  /** Denominator epsilon, default 1e-8. */
  eps?: number;
  /** Decoupled weight decay, default 0.01 (PyTorch's; the Prefix-Tuning paper sets 0). */
  weightDecay?: number;
}

/** Serialisable optimiser state: step count and the two moments per parameter. */
export interface AdamWState {
  /** Steps taken. */
  step: number;
  /** First and second moments, in parameter order. */
  moments: { m: Float32Array; v: Float32Array }[];
}

/**
 * AdamW with decoupled weight decay and bias correction (PyTorch semantics:
 * p ← p − lr·wd·p; m, v updated; p ← p − lr/(1−β₁ᵗ) · m / (√(v/(1−β₂ᵗ)) + ε)).
 * Parameters that do not require grad (a frozen part of a model) are left out, so
 * `new AdamW(model.parameters())` trains only what is trainable; parameters without a gradient
 * at a step are skipped. Moments live on the parameters' backend.
 */
export class AdamW {
  /** Parameters being optimised (those of the constructor's list that require grad). */
  readonly params: Tensor[];
  /** Current base learning rate (set by a schedule). */
  lr: number;
  /** Steps taken so far. */
  stepCount = 0;
  readonly #betas: [number, number];
  readonly #eps: number;
  readonly #wd: number;
  #m: Tensor[] = [];
  #v: Tensor[] = [];

  /** Creates the optimiser; moments are allocated lazily on the first step. */
  constructor(params: Tensor[], opts: AdamWOptions = {}) {
    this.params = [...new Set(params)].filter((p) => p.requiresGrad);
    if (this.params.length === 0) {
      throw new Error(`AdamW: none of the ${params.length} parameters requires grad`);
    }
    this.lr = opts.lr ?? 1e-3;
    this.#betas = opts.betas ?? [0.9, 0.999];
    this.#eps = opts.eps ?? 1e-8;
    this.#wd = opts.weightDecay ?? 0.01;
  }

  #ensureMoments(): void {
    if (this.#m.length) return;
    for (const p of this.params) {
      this.#m.push(stateTensor(p, new Float32Array(p.size)));
      this.#v.push(stateTensor(p, new Float32Array(p.size)));
    }
  }

  /** Applies one update with the current gradients. */
  step(): void {
    this.#ensureMoments();
    this.stepCount++;
    for (let i = 0; i < this.params.length; i++) {
      const p = this.params[i];
      if (!p.grad) continue;
      if (!p.isContiguous || p.offset !== 0 || p.storage.length !== p.size) {
        throw new Error(`AdamW: parameter ${i} [${p.shape}] must own a contiguous buffer`);
      }
      p.backend.adamw(p.storage, p.grad.storage, this.#m[i].storage, this.#v[i].storage, {
        lr: this.lr,
        beta1: this.#betas[0],
        beta2: this.#betas[1],
        eps: this.#eps,
        weightDecay: this.#wd,
        step: this.stepCount,
      });
    }
  }

  /** Drops every parameter's gradient. */
  zeroGrad(): void {
    for (const p of this.params) p.zeroGrad();
  }

  /** Copies the state to the host (for checkpoints). */
  async state(): Promise<AdamWState> {
    this.#ensureMoments();
    const moments = [];
    for (let i = 0; i < this.params.length; i++) {
      moments.push({
        m: (await this.#m[i].data()) as Float32Array,
        v: (await this.#v[i].data()) as Float32Array,
      });
    }
    return { step: this.stepCount, moments };
  }

  /** Restores a state from {@link state}. */
  loadState(s: AdamWState): void {
    if (s.moments.length !== this.params.length) {
      throw new Error(
        `AdamW: state has ${s.moments.length} parameters, optimiser has ${this.params.length}`,
      );
    }
    this.dispose();
    this.stepCount = s.step;
    s.moments.forEach(({ m, v }, i) => {
      const p = this.params[i];
      if (m.length !== p.size || v.length !== p.size) {
        throw new Error(
          `AdamW: state of parameter ${i} has ${m.length} values, parameter [${p.shape}] has ${p.size}`,
        );
      }
      this.#m.push(stateTensor(p, m));
      this.#v.push(stateTensor(p, v));
    });
  }

  /** Frees the moments. */
  dispose(): void {
    for (const t of [...this.#m, ...this.#v]) t.dispose();
    this.#m = [];
    this.#v = [];
  }
}

/** A moment buffer on p's backend; optimiser state outlives any tidy scope of a step. */
function stateTensor(p: Tensor, d: Float32Array): Tensor {
  return keep(Tensor.fromStorage(p.backend.fromHost(d, "f32"), p.shape));
}

/**
 * Hugging Face `get_linear_schedule_with_warmup`: the multiplier rises linearly from 0 to 1 over
 * `warmup` steps, then falls linearly to 0 at `total` steps. `step` counts from 0 (the
 * multiplier used for the update after `step` scheduler steps).
 */
export function linearWarmupDecay(step: number, warmup: number, total: number): number {
  if (step < warmup) return step / Math.max(1, warmup);
  return Math.max(0, (total - step) / Math.max(1, total - warmup));
}

/**
 * Scales gradients so their global L2 norm is at most `maxNorm` (torch.nn.utils.clip_grad_norm_:
 * factor maxNorm / (norm + 1e-6), applied only when below 1). Returns the norm before clipping.
 * The gradients are replaced, never modified in place (they may share buffers).
 */
export async function clipGradNorm(params: Tensor[], maxNorm: number): Promise<number> {
  const withGrad = params.filter((p) => p.grad);
  if (withGrad.length === 0) return 0;
  const sq = noGrad(() =>
    tidy(() => {
      let acc: Tensor | null = null;
      for (const p of withGrad) {
        const s = sum(mul(p.grad!, p.grad!));
        acc = acc ? acc.add(s) : s;
      }
      return acc!;
    })
  );
  const norm = Math.sqrt(await sq.item());
  sq.dispose();
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) {
    noGrad(() => {
      for (const p of withGrad) {
        const scaled = mul(p.grad!, coef);
        p.grad!.dispose();
        p.grad = keep(scaled);
      }
    });
  }
  return norm;
}
