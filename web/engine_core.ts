/**
 * The in-browser engine: a GPT-2, its tokenizer and a prefix loaded from URLs; beam-search
 * decoding of E2E meaning representations with tokens reported as they come; prefix-tuning for
 * a number of steps; the trained prefix as files (our format or peft). Everything goes through
 * `fetch` and the library, so the same code runs in a browser worker and under Deno (which the
 * benchmark uses to compare the two on one machine).
 *
 * Decoding uses the settings of `deno task generate` (beam 5, at most 100 new tokens, minimum
 * length 5, newline tokens banned, EOS as padding) and the same text clean-up; training does what
 * `deno task train` does for a prefix run step by step, with the trainer's loss
 * (`train/e2e_loss.ts`) and optimizer step (`train/step.ts`: schedule, clipping, AdamW) and the
 * same seeding and batching, so the same settings give the same tokens and losses.
 *
 * @module
 */
// The parts of the library the engine uses, not mod.ts: mod.ts also brings the Deno-only
// layers (training run folders, the hub cache, serving) and chooses a backend on import.
import * as lf from "../autograd/mod.ts";
import { AdamW } from "../nn/optim.ts";
import { generate } from "../models/generate.ts";
import type { Backend } from "../kernels/backend.ts";
import type { GPT2 } from "../models/gpt2.ts";
import { loadGPT2FromStream } from "../models/gpt2_stream.ts";
import { type ComputedPrefix, prefixTensor, prefixToPast, PrefixTuning } from "../models/prefix.ts";
import {
  computedPrefixFiles,
  parseComputedPrefix,
  parsePeftPrefix,
  peftPrefixFiles,
  type PrefixFiles,
} from "../models/prefix_format.ts";
import { makeBatches } from "../data/batching.ts";
import { type E2EPair, encodeExample, encodePrompt } from "../data/e2e.ts";
import { GPT2Tokenizer, parseMergesTxt, parseVocabJson } from "../data/tokenizer.ts";
import { registerBackend } from "../kernels/registry.ts";
import { useBackend } from "../kernels/select.ts";
import { fetchBytes, fetchStream, fetchText } from "./fetch_stream.ts";
import { E2E_DECODING, e2eOutputText } from "../models/checkpoint.ts";
import { batchLoss } from "../train/e2e_loss.ts";
import { optimizerStep } from "../train/step.ts";
import { TRAIN_DEFAULTS, type TrainSettings } from "./settings.ts";

export { TRAIN_DEFAULTS, type TrainSettings };

/** Decoding settings; the defaults are `deno task generate`'s. */
export interface DecodeSettings {
  /** Beam width (5). */
  beams: number;
  /** New tokens at most (100). */
  maxNewTokens: number;
  /** Hugging Face's min_length: prompt + generated tokens before EOS is allowed (5). */
  minLength: number;
}

/** `deno task generate`'s decoding settings (the library's {@link E2E_DECODING}). */
export const DECODE_DEFAULTS: DecodeSettings = {
  beams: E2E_DECODING.numBeams,
  maxNewTokens: E2E_DECODING.maxNewTokens,
  minLength: E2E_DECODING.minLength,
};

/** One decoded MR. */
export interface Decoded {
  /** The MR. */
  mr: string;
  /** Generated token ids (prompt and EOS excluded). */
  tokens: number[];
  /** The text, cleaned as `deno task generate` writes it. */
  text: string;
  /** Wall time in ms. */
  ms: number;
}

/** One training step's record. */
export interface TrainStep {
  /** Step (1-based). */
  step: number;
  /** Training loss. */
  loss: number;
  /** Learning rate used. */
  lr: number;
  /** Gradient norm before clipping (null without clipping). */
  gradNorm: number | null;
  /** Wall time of the step in ms. */
  ms: number;
}

/** What the engine runs on. */
export interface EngineInfo {
  /** Backend name: webgpu, wasm or cpu. */
  backend: string;
  /** The line saying why that backend was chosen. */
  reason: string;
  /** Threads of the wasm backend (1 when the page is not cross-origin isolated). */
  threads: number;
  /** Whether the context is cross-origin isolated (shared memory allowed). */
  crossOriginIsolated: boolean;
  /** WebGPU adapter description, when WebGPU is used. */
  adapter?: string;
}

/** Options of {@link Engine.create}. */
export interface EngineOptions {
  /** `auto` (WebGPU on a hardware adapter, else WebAssembly), `webgpu`, `wasm` or `cpu`. */
  backend?: string;
  /** Script of the wasm backend's worker threads (a bundled page's build of it). */
  kernelWorkerUrl?: URL;
  /** Threads of the wasm backend (default: the number of cores, at most 8). */
  threads?: number;
}

/** A model, tokenizer and prefix on one backend. */
export class Engine {
  /** The model, once loaded. */
  model: GPT2 | null = null;
  /** The tokenizer, once loaded. */
  tokenizer: GPT2Tokenizer | null = null;
  /** The prefix decoding conditions on (null: none). */
  prefix: ComputedPrefix | null = null;
  /** The last prefix trained here (kept when another one is loaded). */
  trained: ComputedPrefix | null = null;
  /** Where the model came from (recorded in exported prefixes). */
  modelUrl = "";
  /** Hidden size of the MLP of the last prefix trained here (peft's encoder_hidden_size). */
  trainedMidDim: number = TRAIN_DEFAULTS.midDim;

  private constructor(readonly backend: Backend, readonly info: EngineInfo) {}

  /** Chooses and creates the backend. */
  static async create(opts: EngineOptions = {}): Promise<Engine> {
    if (opts.kernelWorkerUrl || opts.threads) {
      registerBackend("wasm", async () => {
        const m = await import("../kernels/wasm/backend.ts");
        return await m.createWasmBackend({
          workerUrl: opts.kernelWorkerUrl,
          threads: opts.threads,
        });
      });
    }
    let reason = "";
    const backend = await useBackend(opts.backend ?? "auto", (s) => reason = s);
    const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated;
    const info: EngineInfo = {
      backend: backend.name,
      reason,
      threads: (backend as { threads?: number }).threads ?? 1,
      crossOriginIsolated: isolated ?? true,
    };
    if (backend.name === "webgpu") {
      const d = await import("../kernels/webgpu/device.ts");
      const a = await d.requestAdapter();
      const ai = a?.info;
      const name = ai
        ? [ai.vendor, ai.architecture, ai.description].filter((s) => s).join(" ")
        : "";
      // Chromium's compatibility-mode adapter (OpenGL ES over ANGLE) names nothing.
      info.adapter = name || "unnamed adapter";
    }
    return new Engine(backend, info);
  }

  /**
   * Loads a Hugging Face GPT-2 folder served at `baseUrl` (`config.json`, `vocab.json`,
   * `merges.txt`, `model.safetensors`); the weights are streamed into the backend tensor by
   * tensor. `onProgress` gets bytes loaded and the total.
   */
  async loadModel(
    baseUrl: string,
    onProgress: (loaded: number, total: number) => void = () => {},
  ): Promise<void> {
    const base = baseUrl.replace(/\/+$/, "");
    const [configText, vocab, merges] = await Promise.all([
      fetchText(`${base}/config.json`),
      fetchText(`${base}/vocab.json`),
      fetchText(`${base}/merges.txt`),
    ]);
    this.tokenizer = new GPT2Tokenizer(
      parseVocabJson(vocab, `${base}/vocab.json`),
      parseMergesTxt(merges, `${base}/merges.txt`),
      { source: `${base}/vocab.json` },
    );
    const st = await fetchStream(`${base}/model.safetensors`);
    this.model?.dispose();
    this.model = null;
    const model = await loadGPT2FromStream(configText, st.chunks, st.size, {
      backend: this.backend,
      source: `${base}/model.safetensors`,
      onProgress,
    });
    model.freeze();
    model.eval();
    this.model = model;
    this.modelUrl = base;
  }

  /** Loads a prefix folder: `format` "prefix" (ours) or "peft"; null clears it. */
  async loadPrefix(url: string | null, format: "prefix" | "peft" = "prefix"): Promise<void> {
    if (url === null) {
      this.prefix = null;
      return;
    }
    const base = url.replace(/\/+$/, "");
    const p = format === "peft"
      ? parsePeftPrefix(
        await fetchText(`${base}/adapter_config.json`),
        await fetchBytes(`${base}/adapter_model.safetensors`),
        base,
      )
      : parseComputedPrefix(
        await fetchText(`${base}/prefix_config.json`),
        await fetchBytes(`${base}/prefix.safetensors`),
        base,
      );
    this.usePrefix(p, base);
  }

  /** Uses an in-memory prefix (checked against the model's sizes). */
  usePrefix(p: ComputedPrefix, source = "prefix"): void {
    const c = this.#model().config;
    if (c.nLayer !== p.config.nLayer || c.nEmbd !== p.config.nEmbd || c.nHead !== p.config.nHead) {
      throw new Error(
        `${source}: prefix is for n_layer ${p.config.nLayer}, n_embd ${p.config.nEmbd}, ` +
          `n_head ${p.config.nHead}; the model has ${c.nLayer}, ${c.nEmbd}, ${c.nHead}`,
      );
    }
    this.prefix = p;
  }

  #model(): GPT2 {
    if (!this.model || !this.tokenizer) throw new Error("no model loaded");
    return this.model;
  }

  /**
   * Decodes one MR with beam search; `onTokens` receives the best live beam's tokens and text
   * after every step.
   */
  async decode(
    mr: string,
    settings: DecodeSettings = DECODE_DEFAULTS,
    onTokens: (tokens: readonly number[], text: string) => void = () => {},
  ): Promise<Decoded> {
    const model = this.#model(), tok = this.tokenizer!;
    const t0 = performance.now();
    const clean = (ids: readonly number[]) => e2eOutputText(tok, ids);
    const pt = this.prefix ? prefixTensor(this.prefix, this.backend) : null;
    const past = pt ? prefixToPast(pt, 1, this.prefix!.config) : undefined;
    try {
      const [tokens] = await generate(model, [encodePrompt(tok, mr)], {
        numBeams: settings.beams,
        maxNewTokens: settings.maxNewTokens,
        minLength: settings.minLength,
        eosTokenId: tok.eosTokenId,
        padTokenId: tok.eosTokenId,
        badWordsIds: E2E_DECODING.badWordsIds,
        prefixPast: past,
        onStep: (best) => onTokens(best[0], clean(best[0])),
      });
      return { mr, tokens, text: clean(tokens), ms: performance.now() - t0 };
    } finally {
      past?.forEach((p) => {
        p.k.dispose();
        p.v.dispose();
      });
      pt?.dispose();
    }
  }

  /**
   * Prefix-tunes a new prefix on `pairs` (the first `settings.pairs` are used) for
   * `settings.steps` steps; `onStep` is called after each. The trained prefix becomes the one
   * decoding uses. Returns the step records.
   */
  async train(
    pairs: readonly E2EPair[],
    settings: TrainSettings = TRAIN_DEFAULTS,
    onStep: (s: TrainStep) => void = () => {},
    shouldStop: () => boolean = () => false,
  ): Promise<TrainStep[]> {
    const model = this.#model(), tok = this.tokenizer!, backend = this.backend;
    const s = settings;
    const used = pairs.slice(0, s.pairs);
    if (used.length === 0) throw new Error("no training pairs");
    const examples = used.map((p) => encodeExample(tok, p.mr, p.ref));
    lf.manualSeed(s.seed);
    const c = model.config;
    const prefix = new PrefixTuning({
      prefixLen: s.prefixLen,
      nLayer: c.nLayer,
      nHead: c.nHead,
      nEmbd: c.nEmbd,
      mid: s.midDim,
      mlp: true,
      dropout: s.dropout,
    }, { seed: s.seed, backend });
    const opt = new AdamW(prefix.parameters(), { lr: s.lr, weightDecay: s.weightDecay });
    const total = s.steps;
    const log: TrainStep[] = [];
    try {
      let step = 0;
      outer: for (let epoch = 0;; epoch++) {
        const batches = makeBatches(examples, tok.eosTokenId, {
          batchSize: s.batchSize,
          seed: s.seed,
          epoch,
          bucketSize: s.bucketSize,
        });
        for (const batch of batches) {
          if (step >= total || shouldStop()) break outer;
          const t0 = performance.now();
          const { loss, lr, gradNorm } = await optimizerStep(
            opt,
            () => batchLoss(model, prefix, batch, backend),
            step,
            total,
            s,
          );
          step++;
          const rec = { step, loss, lr, gradNorm, ms: performance.now() - t0 };
          log.push(rec);
          onStep(rec);
          if (!Number.isFinite(loss)) throw new Error(`training diverged: loss ${loss}`);
          await yieldToEventLoop(); // lets a stop request (a worker message) arrive
        }
      }
      const data = await lf.noGrad(() => lf.tidy(() => prefix.computed().detach())).data();
      this.prefix = this.trained = {
        config: {
          prefixLen: s.prefixLen,
          nLayer: c.nLayer,
          nHead: c.nHead,
          nEmbd: c.nEmbd,
        },
        data: data as Float32Array,
      };
      this.trainedMidDim = s.midDim;
      return log;
    } finally {
      opt.dispose();
      prefix.dispose();
    }
  }

  /** The current prefix as the files of a folder in our format or peft's. */
  prefixFiles(format: "prefix" | "peft"): PrefixFiles {
    if (!this.prefix) throw new Error("no prefix to export");
    return format === "peft"
      ? peftPrefixFiles(this.prefix, this.modelUrl, this.trainedMidDim)
      : computedPrefixFiles(this.prefix, {
        base_model: this.modelUrl,
        tuner: "prefix",
        mid_dim: String(this.trainedMidDim),
      });
  }

  /** Frees the model. */
  dispose(): void {
    this.model?.dispose();
    this.model = null;
  }
}

/** Resolves after pending events (messages) had a chance to run; no timer clamping. */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => {
    const c = new MessageChannel();
    c.port1.onmessage = () => {
      c.port1.close();
      resolve();
    };
    c.port2.postMessage(null);
  });
}
