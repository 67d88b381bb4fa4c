/**
 * GPT-2 from a `config.json` text and a safetensors byte stream, without a file system (a
 * browser page fetching a checkpoint). The checkpoint rules are those of
 * {@link GPT2.fromPretrained} (one rule, {@link checkpointKey}): keys with or without
 * `transformer.`, the `attn.bias` / `attn.masked_bias` buffers ignored, a `lm_head.weight`
 * accepted only when equal to `wte`.
 * Each tensor is written into the model as soon as its bytes arrive and then dropped.
 *
 * @module
 */
import type { Backend } from "../kernels/backend.ts";
import { getBackend } from "../kernels/registry.ts";
import { checkpointKey, GPT2, parseGPT2Config } from "./gpt2.ts";
import { readSafetensorsStream } from "./safetensors_stream.ts";

/** Options of {@link loadGPT2FromStream}. */
export interface StreamLoadOptions {
  /** Backend of the weights (default: the current one). */
  backend?: Backend;
  /** Name of the checkpoint in errors (a URL). */
  source?: string;
  /** Progress: bytes of tensors loaded so far, of `total`. */
  onProgress?: (loaded: number, total: number) => void;
}

/**
 * Builds a GPT-2 from its `config.json` text and the bytes of `model.safetensors` (`size`
 * bytes, as chunks). Errors name `source` and the key at fault.
 */
export async function loadGPT2FromStream(
  configText: string,
  chunks: AsyncIterable<Uint8Array>,
  size: number,
  opts: StreamLoadOptions = {},
): Promise<GPT2> {
  const source = opts.source ?? "model.safetensors";
  let json: unknown;
  try {
    json = JSON.parse(configText);
  } catch (e) {
    throw new Error(`config.json for ${source}: invalid JSON: ${(e as Error).message}`);
  }
  const config = parseGPT2Config(json, `config.json for ${source}`);
  const model = new GPT2(config, { backend: opts.backend ?? getBackend(), empty: true });
  model.extraConfig = json as Record<string, unknown>;
  const own = model.stateDict();
  const seen = new Set<string>();
  let lmHead: Float32Array | null = null;
  let loaded = 0, total = 0;
  try {
    await readSafetensorsStream(chunks, size, (t) => {
      loaded += t.data.byteLength;
      opts.onProgress?.(loaded, total);
      const key = checkpointKey(t.name, t.dtype, source);
      if (key === "buffer") return;
      if (key === "lm_head") {
        lmHead = t.data as Float32Array; // checked against wte once that is loaded
        return;
      }
      if (seen.has(key)) {
        throw new Error(`${source}: "${t.name}" appears with and without the transformer. prefix`);
      }
      if (!own.has(key)) throw new Error(`${source}: unexpected tensor "${t.name}"`);
      seen.add(key);
      model.loadStateDict(new Map([[key, { shape: t.shape, data: t.data }]]), {
        strict: false,
        source,
      });
    }, {
      source,
      onHeader: (h) => {
        total = h.entries.reduce((s, e) => s + e.end - e.begin, 0);
      },
    });
    const missing = [...own.keys()].filter((k) => !seen.has(k));
    if (missing.length) throw new Error(`${source}: missing tensors: ${missing.join(", ")}`);
    if (lmHead) {
      const wte = await own.get("transformer.wte.weight")!.data();
      const head: Float32Array = lmHead;
      if (head.length !== wte.length || head.some((v, i) => v !== wte[i])) {
        throw new Error(
          `${source}: lm_head.weight differs from wte; only a tied head is supported`,
        );
      }
    }
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}
