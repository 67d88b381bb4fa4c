/**
 * Shared by the serving tests: a tiny random GPT-2 with GPT-2's tokenizer saved to a folder,
 * random prefixes in both formats (and one for another model shape), a server on a free
 * loopback port, and the reference: each request decoded alone by `generate`.
 */
import { GPT2, gpt2Config } from "../models/gpt2.ts";
import { generate } from "../models/generate.ts";
import {
  type ComputedPrefix,
  prefixTensor,
  prefixToPast,
  saveComputedPrefix,
  savePeftPrefix,
} from "../models/prefix.ts";
import { GPT2Tokenizer } from "../data/tokenizer.ts";
import { Xoshiro128 } from "../autograd/random.ts";
import { useBackend } from "../kernels/select.ts";
import { PrefixRegistry } from "../serve/registry.ts";
import { type RunningServer, type ServeOptions, startServer } from "../serve/server.ts";
import type { DecodeSettings } from "../serve/engine.ts";

/** The shipped miniature and its trained prefixes. */
export const MINI_MODEL = new URL("../results/mini/pretrain/model", import.meta.url).pathname;
/** Training run folders of the shipped miniature, each with `prefix/` and `peft/`. */
export const MINI_ABLATION = new URL("../results/mini/ablation", import.meta.url).pathname;

/** Shape of the tiny test model. */
export const TINY = { nLayer: 2, nHead: 2, nEmbd: 16, nPositions: 128 };

function randomPrefix(L: number, nLayer: number, seed: number): ComputedPrefix {
  const g = new Xoshiro128(seed);
  const data = new Float32Array(L * 2 * nLayer * TINY.nEmbd).map(() => g.normal());
  return { config: { prefixLen: L, nLayer, nHead: TINY.nHead, nEmbd: TINY.nEmbd }, data };
}

/** Folders written by {@link writeTinyFixture}. */
export interface TinyFixture {
  /** The model folder (config, safetensors, vocab.json, merges.txt). */
  modelDir: string;
  /** Prefix folders: alpha (ours, L 3), beta (peft, L 5), gamma (a run folder, L 2). */
  prefixesDir: string;
  /** A prefix for a 3-layer model (refused). */
  otherShapeDir: string;
  /** A spare prefix (ours, L 4) to add over HTTP. */
  spareDir: string;
  /** The prefixes by name, as written. */
  prefixes: Record<string, ComputedPrefix>;
}

/** Writes the tiny model and its prefixes under `root`. */
export async function writeTinyFixture(root: string): Promise<TinyFixture> {
  const modelDir = `${root}/model`;
  const cfg = gpt2Config({ ...TINY, vocabSize: 50257 });
  const model = GPT2.random(cfg, 7);
  await model.save(modelDir);
  model.dispose();
  await (await GPT2Tokenizer.offlineDefault()).save(modelDir);
  const prefixes = {
    alpha: randomPrefix(3, 2, 1),
    beta: randomPrefix(5, 2, 2),
    gamma: randomPrefix(2, 2, 3),
  };
  const prefixesDir = `${root}/prefixes`;
  await saveComputedPrefix(`${prefixesDir}/alpha`, prefixes.alpha.data, prefixes.alpha.config);
  await savePeftPrefix(`${prefixesDir}/beta`, prefixes.beta, modelDir);
  await saveComputedPrefix(
    `${prefixesDir}/gamma/prefix`,
    prefixes.gamma.data,
    prefixes.gamma.config,
  );
  await Deno.mkdir(`${prefixesDir}/not-a-prefix`, { recursive: true });
  const other = randomPrefix(2, 3, 4);
  await saveComputedPrefix(`${root}/other`, other.data, other.config);
  const spare = randomPrefix(4, 2, 5);
  await saveComputedPrefix(`${root}/spare`, spare.data, spare.config);
  return {
    modelDir,
    prefixesDir,
    otherShapeDir: `${root}/other`,
    spareDir: `${root}/spare`,
    prefixes: { ...prefixes, spare },
  };
}

/** A loaded model, tokenizer and server. */
export interface Served {
  model: GPT2;
  tokenizer: GPT2Tokenizer;
  server: RunningServer;
}

/** Loads `modelDir` on `backend` with the prefixes of `prefixesDir` and serves on a free port. */
export async function serveFolder(
  modelDir: string,
  prefixesDir: string,
  opts: Partial<ServeOptions> & { backend?: string } = {},
): Promise<Served> {
  const backend = await useBackend(opts.backend ?? "wasm");
  const model = (await GPT2.fromPretrained(modelDir, { backend })).eval();
  const tokenizer = await GPT2Tokenizer.fromDir(modelDir);
  const registry = new PrefixRegistry(model.config, backend);
  await registry.addFolder(prefixesDir);
  const server = await startServer({
    model,
    tokenizer,
    registry,
    modelName: "test",
    port: 0,
    log: () => {},
    ...opts,
  });
  return { model, tokenizer, server };
}

/** Tokens `generate` gives for one prompt alone with this prefix and these settings. */
export async function decodeAlone(
  model: GPT2,
  eos: number,
  prefix: ComputedPrefix | null,
  prompt: number[],
  s: Pick<DecodeSettings, "maxNewTokens" | "numBeams" | "minLength" | "badWordsIds">,
): Promise<number[]> {
  const pt = prefix ? prefixTensor(prefix, model.backend) : null;
  const past = pt ? prefixToPast(pt, 1, prefix!.config) : undefined;
  try {
    const [ids] = await generate(model, [prompt], {
      maxNewTokens: s.maxNewTokens,
      numBeams: s.numBeams,
      minLength: s.minLength,
      badWordsIds: s.badWordsIds,
      eosTokenId: eos,
      padTokenId: eos,
      prefixPast: past,
    });
    return ids;
  } finally {
    for (const l of past ?? []) {
      l.k.dispose();
      l.v.dispose();
    }
    pt?.dispose();
  }
}

/** POSTs JSON; returns status, headers and the parsed body (or text). */
export async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
  method = "POST",
): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const res = await fetch(url, {
    method,
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = { text };
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

/** Parses server-sent events (`data: ...` blocks) from a whole response text. */
export function parseSSE(text: string): (Record<string, unknown> | "[DONE]")[] {
  return text.split("\n\n").map((b) => b.trim()).filter((b) => b.startsWith("data: ")).map((b) => {
    const d = b.slice(6);
    return d === "[DONE]" ? "[DONE]" : JSON.parse(d);
  });
}

/** One value of a Prometheus text page. */
export function metricValue(text: string, name: string): number {
  const m = new RegExp(`^${name.replace(/[{}"=]/g, "\\$&")} ([0-9.eE+-]+)$`, "m").exec(text);
  return m ? Number(m[1]) : NaN;
}
