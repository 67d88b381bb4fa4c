/**
 * The E2E training loss, shared by `deno task train` ({@linkcode trainE2E} in `train/e2e.ts`)
 * and the in-browser engine: the mean next-token cross-entropy over labelled positions, with or
 * without a prefix, and its token-weighted mean over a set of examples. Nothing here touches
 * files or the environment, so it runs unchanged in a browser.
 *
 * @module
 */
import * as lf from "../autograd/mod.ts";
import type { Backend } from "../kernels/backend.ts";
import type { GPT2 } from "../models/gpt2.ts";
import type { PrefixTuning } from "../models/prefix.ts";
import { type Batch, IGNORE_INDEX, makeBatches } from "../data/batching.ts";

/**
 * Mean next-token cross-entropy of a batch over its labelled positions only (Hugging Face
 * semantics: position t predicts label t+1; {@linkcode IGNORE_INDEX} labels are skipped), with
 * the prefix (if any) as past keys and values. Only those positions go through the LM head (the
 * [n_embd × vocab] product dominates a step); the result equals the loss over all logits.
 */
export function batchLoss(
  model: GPT2,
  prefix: PrefixTuning | null,
  batch: Batch,
  backend: Backend = model.parameters()[0].backend,
): lf.Tensor {
  const B = batch.ids.length;
  const L = prefix ? prefix.config.prefixLen : 0;
  const ids = lf.ids(batch.ids, { backend });
  // The prefix positions are always attended to.
  const mask = lf.tensor(batch.mask.map((r) => [...new Array(L).fill(1), ...r]), { backend });
  const { hidden } = model.hidden(ids, {
    past: prefix ? prefix.past(B) : undefined,
    attentionMask: mask,
  });
  const [, T, C] = hidden.shape;
  const rows: number[] = [], targets: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let t = 0; t + 1 < T; t++) {
      const y = batch.labels[b][t + 1];
      if (y === IGNORE_INDEX) continue;
      rows.push(b * T + t);
      targets.push(y);
    }
  }
  if (rows.length === 0) throw new Error("batch has no labelled positions");
  const picked = lf.embedding(hidden.reshape(B * T, C), lf.ids(rows, { backend }));
  return model.lmHead(picked).crossEntropy(lf.ids(targets, { backend }));
}

/** Labelled positions of a batch (what {@linkcode batchLoss} averages over). */
export function labelledPositions(b: Batch): number {
  return b.labels.reduce((s, r) => s + r.slice(1).filter((v) => v !== IGNORE_INDEX).length, 0);
}

/** Token-weighted mean of {@linkcode batchLoss} over examples, without gradients. */
export async function evalLoss(
  model: GPT2,
  prefix: PrefixTuning | null,
  examples: { ids: number[]; labels: number[] }[],
  padId: number,
  batchSize: number,
): Promise<number> {
  if (examples.length === 0) return NaN;
  let total = 0, count = 0;
  for (const b of makeBatches(examples, padId, { batchSize, shuffle: false })) {
    const l = lf.noGrad(() => lf.tidy(() => batchLoss(model, prefix, b)));
    const n = labelledPositions(b);
    total += (await l.item()) * n;
    count += n;
    l.dispose();
  }
  return total / count;
}
