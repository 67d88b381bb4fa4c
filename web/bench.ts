/**
 * In-browser decoding speed against Deno on the same machine and backend: the demo page in
 * headless Chromium and the same engine code under Deno both load the miniature and a prefix
 * from the demo server and decode the same MRs with beam search (the settings of `deno task
 * generate`); reported as generated tokens per second (tokens of the returned outputs divided
 * by wall time; beam search computes `beams` rows per step), with the bundle sizes. The two
 * sides alternate for several rounds and each reports its median round, so that load from other
 * processes affects both alike.
 *
 * @module
 */
import { Chromium } from "./cdp.ts";
import { buildWeb, type BuiltFile, kib } from "./build.ts";
import { serveWeb } from "./server.ts";
import { DECODE_DEFAULTS, type Decoded, Engine } from "./engine_core.ts";
import { EXAMPLE_MRS } from "./examples.ts";

/** Options of {@link benchWeb}. */
export interface WebBenchOptions {
  /** Backend on both sides: wasm or webgpu. */
  backend: "wasm" | "webgpu";
  /** Prefix folder name under the prefixes folder (default prefix_L5). */
  prefix?: string;
  /** MRs decoded (default: the page's examples). */
  mrs?: readonly string[];
  /** GPT-2 folder. */
  modelDir: string;
  /** Prefixes folder. */
  prefixesDir: string;
  /** Rounds (each side decodes every MR once per round; default 3). */
  rounds?: number;
  /** Progress lines. */
  log?: (s: string) => void;
}

/** One side's measurement. */
export interface DecodeSpeed {
  /** Tokens generated over all MRs. */
  tokens: number;
  /** Seconds of decoding of the median round (after one warm-up MR). */
  seconds: number;
  /** tokens / seconds of the median round. */
  tokensPerSecond: number;
  /** tokens/s of every round. */
  rounds: number[];
  /** The outputs' token ids (to check both sides decoded the same). */
  outputs: number[][];
  /** Backend details. */
  backend: string;
}

/** The benchmark's result. */
export interface WebBenchResult {
  /** Chromium's side. */
  browser: DecodeSpeed;
  /** Deno's side. */
  deno: DecodeSpeed;
  /** Whether both produced the same tokens. */
  sameOutputs: boolean;
  /** The bundles. */
  bundles: BuiltFile[];
}

function speed(rounds: Decoded[][], backend: string): DecodeSpeed {
  const per = rounds.map((runs) => {
    const tokens = runs.reduce((n, r) => n + r.tokens.length, 0);
    const seconds = runs.reduce((n, r) => n + r.ms, 0) / 1000;
    return { tokens, seconds, tps: tokens / seconds, outputs: runs.map((r) => r.tokens) };
  });
  const sorted = [...per].sort((a, b) => a.tps - b.tps);
  const mid = sorted[Math.floor(sorted.length / 2)];
  return {
    tokens: mid.tokens,
    seconds: mid.seconds,
    tokensPerSecond: mid.tps,
    rounds: per.map((p) => p.tps),
    outputs: mid.outputs,
    backend,
  };
}

/** Runs the benchmark (builds the bundles, serves them, drives Chromium). */
export async function benchWeb(o: WebBenchOptions): Promise<WebBenchResult> {
  const log = o.log ?? (() => {});
  const mrs = o.mrs ?? EXAMPLE_MRS;
  const prefix = o.prefix ?? "prefix_L5";
  const dist = await Deno.makeTempDir({ prefix: "lf-web-bench-" });
  const ac = new AbortController();
  let browser: Chromium | null = null;
  try {
    const bundles = await buildWeb(dist, log);
    const { url } = await serveWeb({
      port: 0,
      distDir: dist,
      modelDir: o.modelDir,
      prefixesDir: o.prefixesDir,
      signal: ac.signal,
    });

    log(`Deno and Chromium: ${o.backend}`);
    const engine = await Engine.create({ backend: o.backend });
    await engine.loadModel(`${url}model`);
    await engine.loadPrefix(`${url}prefixes/${prefix}/prefix`, "prefix");
    await engine.decode(mrs[0], DECODE_DEFAULTS); // warm-up
    browser = await Chromium.launch({ webgpu: o.backend === "webgpu" });
    await browser.goto(url, "globalThis.lfPage.ready");
    const info = await browser.eval<{ backend: string; threads: number; adapter?: string }>(
      `lfPage.init(${JSON.stringify(o.backend)})`,
    );
    await browser.eval(`lfPage.loadModel("model")`);
    await browser.eval(`lfPage.loadPrefix("prefixes/${prefix}/prefix", "prefix")`);
    const dec = (mr: string) =>
      browser!.eval<Decoded>(
        `lfPage.decode(${JSON.stringify(mr)}, ${JSON.stringify(DECODE_DEFAULTS)})`,
      );
    await dec(mrs[0]); // warm-up
    const denoRounds: Decoded[][] = [], pageRounds: Decoded[][] = [];
    for (let r = 0; r < (o.rounds ?? 3); r++) {
      const d: Decoded[] = [], p: Decoded[] = [];
      for (const mr of mrs) d.push(await engine.decode(mr, DECODE_DEFAULTS));
      for (const mr of mrs) p.push(await dec(mr));
      denoRounds.push(d);
      pageRounds.push(p);
      log(
        `round ${r + 1}: Deno ${speed([d], "").tokensPerSecond.toFixed(1)} tokens/s, ` +
          `Chromium ${speed([p], "").tokensPerSecond.toFixed(1)} tokens/s`,
      );
    }
    const deno = speed(denoRounds, `${engine.info.backend} (${engine.info.threads} threads)`);
    engine.dispose();
    const page = speed(
      pageRounds,
      `${info.backend} (${info.threads} threads${info.adapter ? `, ${info.adapter}` : ""})`,
    );
    const sameOutputs = JSON.stringify(page.outputs) === JSON.stringify(deno.outputs);
    return { browser: page, deno, sameOutputs, bundles };
  } finally {
    await browser?.close();
    ac.abort();
    await Deno.remove(dist, { recursive: true }).catch(() => {});
  }
}

/** The result as a Markdown report. */
export function benchReport(r: WebBenchResult, mrs: number): string {
  const row = (name: string, s: DecodeSpeed) =>
    `| ${name} | ${s.backend} | ${s.tokens} | ${s.seconds.toFixed(2)} | ${
      s.tokensPerSecond.toFixed(1)
    } | ${s.rounds.map((x) => x.toFixed(1)).join(", ")} |`;
  return [
    `Decoding ${mrs} MRs (beam ${DECODE_DEFAULTS.beams}, at most ${DECODE_DEFAULTS.maxNewTokens} new tokens, after one warm-up MR); median of ${r.deno.rounds.length} alternating rounds:`,
    "",
    "| runtime | backend | tokens | seconds | tokens/s | every round |",
    "|---|---|---:|---:|---:|---|",
    row("Chromium (page)", r.browser),
    row("Deno", r.deno),
    "",
    `browser / Deno speed: ${(r.browser.tokensPerSecond / r.deno.tokensPerSecond).toFixed(2)}×; ` +
    `same tokens: ${r.sameOutputs ? "yes" : "NO"}`,
    "",
    "| bundle | bytes | gzipped |",
    "|---|---:|---:|",
    ...r.bundles.map((b) =>
      `| ${b.name} | ${b.bytes} (${kib(b.bytes)}) | ${b.gzipBytes} (${kib(b.gzipBytes)}) |`
    ),
  ].join("\n");
}
