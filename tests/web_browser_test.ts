// The demo page in headless Chromium, against the same work done in Deno:
// - beam search (beam 5, at most 100 new tokens, min length 5, newlines banned: the settings of
//   `deno task generate`) on the shipped miniature with the shipped L=5 prefix, for the first 10
//   test MRs: the page's texts equal the lines `deno task generate --batch-size 1` writes, and
//   its token ids equal those of the library's `generate` in Deno with the task's settings;
// - 20 prefix-tuning steps on the first 200 training pairs: the page's losses equal those of
//   `deno task train` (same config, seed, backend) within 1e-5;
// - the trained prefix downloaded from the page (both formats) loads with the library's loaders.
// Both run on the WebAssembly backend (the page's `auto` choice without a hardware GPU).
// Where Chromium exposes WebGPU (without a GPU: on Mesa's lavapipe through ANGLE, see WEBGPU_FLAGS),
// the page's WebGPU backend is checked the same way against Deno's, reduced to what a software
// adapter does in a test's time (see the WebGPU test).
import assert from "node:assert/strict";
import { Chromium, findChromium, WEBGPU_FLAGS } from "../web/cdp.ts";
import { buildWeb } from "../web/build.ts";
import { serveWeb } from "../web/server.ts";
import { TRAIN_DEFAULTS } from "../web/engine_core.ts";
import { E2E_DECODING, loadCheckpoint } from "../models/checkpoint.ts";
import { encodePrompt, groupByMR, readE2E } from "../data/e2e.ts";
import {
  loadComputedPrefix,
  loadPeftPrefix,
  prefixTensor,
  prefixToPast,
} from "../models/prefix.ts";
import * as lf from "../mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DATA = `${ROOT}../shared/e2e`;
const PREFIX = `${ROOT}results/mini/ablation/prefix_L5`;
const MINI = `${ROOT}results/mini/pretrain/model`;
// A real Hugging Face GPT-2 checkpoint with one layer of width 2 (random weights): a training
// step costs little more than the LM head over the vocabulary.
const FAKE_GPT2 = `${ROOT}../shared/models/fake-gpt2`;
const MRS = 10;
// The default WebGPU comparison's size (software adapters only here: see that test).
const WEBGPU_TOKENS = 3;
const WEBGPU_STEPS = 5;
const WEBGPU_BATCH = 2;

const chromium = findChromium();
const haveData = await Deno.stat(`${DATA}/test.txt`).then(() => true, () => false);
const skip = !chromium
  ? "Chromium not installed (.ci/run installs Debian's chromium)"
  : !haveData
  ? `no E2E data at ${DATA}`
  : null;
if (skip) console.warn(`web_browser_test: skipped: ${skip}`);

/** Builds the bundles into a temporary folder and serves the page (with `modelDir` as model). */
function page(
  isolation = true,
  modelDir = MINI,
): Promise<{ url: string; stop: () => Promise<void> }> {
  return (async () => {
    const dist = await Deno.makeTempDir({ prefix: "lf-web-dist-" });
    const files = await buildWeb(dist);
    for (const f of files) console.log(`bundle ${f.name}: ${f.bytes} B (${f.gzipBytes} B gzipped)`);
    const ac = new AbortController();
    const { server, url } = await serveWeb({
      port: 0,
      distDir: dist,
      modelDir,
      prefixesDir: `${ROOT}results/mini/ablation`,
      dataDir: DATA,
      isolation,
      signal: ac.signal,
    });
    return {
      url,
      stop: async () => {
        ac.abort();
        await server.finished;
        await Deno.remove(dist, { recursive: true });
      },
    };
  })();
}

async function run(args: string[]): Promise<string> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(r.stderr);
  assert.ok(r.success, `deno ${args.join(" ")} failed:\n${err.slice(-3000)}`);
  return err;
}

interface PageDecoded {
  tokens: number[];
  text: string;
  steps: number;
}

/** Token ids of the library's `generate` in Deno, with `deno task generate`'s settings. */
async function libraryTokens(
  backendName: string,
  mrs: string[],
  settings: { beams: number; maxNewTokens: number; minLength: number },
): Promise<number[][]> {
  const backend = await lf.loadBackend(backendName);
  const ck = await loadCheckpoint(PREFIX, { backend });
  const out: number[][] = [];
  const pt = prefixTensor(ck.prefix!, backend);
  for (const mr of mrs) {
    const past = prefixToPast(pt, 1, ck.prefix!.config);
    const [ids] = await lf.generate(ck.model, [encodePrompt(ck.tokenizer, mr)], {
      numBeams: settings.beams,
      maxNewTokens: settings.maxNewTokens,
      minLength: settings.minLength,
      eosTokenId: ck.tokenizer.eosTokenId,
      padTokenId: ck.tokenizer.eosTokenId,
      badWordsIds: E2E_DECODING.badWordsIds,
      prefixPast: past,
    });
    past.forEach((p) => (p.k.dispose(), p.v.dispose()));
    out.push(ids);
  }
  pt.dispose();
  ck.model.dispose();
  return out;
}

/** What one comparison covers. */
interface Scope {
  /** Backend of the page and of the Deno runs. */
  backend: "wasm" | "webgpu";
  /** Test MRs decoded. */
  mrs: number;
  /** Decoding's maximum of new tokens (the task's default: 100). */
  maxNewTokens: number;
  /** Training steps compared (0: none). */
  steps: number;
  /** Model trained (default: the miniature). */
  trainModel?: string;
  /** Batch size of training (default: the page's). */
  batchSize?: number;
}

/** Runs the page and Deno on the same work and compares; see the file's header. */
async function compare(scope: Scope, browser: Chromium, url: string): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "lf-web-test-" });
  try {
    const groups = groupByMR(await readE2E(`${DATA}/test.txt`)).slice(0, scope.mrs);
    const mrs = groups.map((g) => g.mr);
    const settings = {
      beams: E2E_DECODING.numBeams,
      maxNewTokens: scope.maxNewTokens,
      minLength: E2E_DECODING.minLength,
    };

    // ---- Deno: the generate task (texts) and the library with the task's settings (tokens)
    await run([
      "tasks/generate.ts",
      `--checkpoint=${PREFIX}`,
      `--data=${DATA}`,
      `--limit=${scope.mrs}`,
      "--batch-size=1",
      `--max-new-tokens=${scope.maxNewTokens}`,
      `--backend=${scope.backend}`,
      `--out=${tmp}/gen.txt`,
    ]);
    const taskTexts = (await Deno.readTextFile(`${tmp}/gen.txt`)).split("\n").slice(0, scope.mrs);
    const denoTokens = await libraryTokens(scope.backend, mrs, settings);

    // ---- the page: decoding
    await browser.goto(url, "globalThis.lfPage.ready");
    assert.equal(await browser.eval("crossOriginIsolated"), true);
    const info = await browser.eval<{ backend: string; threads: number }>(
      `lfPage.init(${JSON.stringify(scope.backend === "wasm" ? "auto" : scope.backend)})`,
    );
    console.log(`page backend: ${JSON.stringify(info)}`);
    assert.equal(info.backend, scope.backend);
    await browser.eval(`lfPage.loadModel("model")`);
    await browser.eval(`lfPage.loadPrefix("prefixes/prefix_L5/prefix", "prefix")`);
    const pageOut: PageDecoded[] = [];
    const t0 = performance.now();
    for (const mr of mrs) {
      pageOut.push(
        await browser.eval<PageDecoded>(
          `lfPage.decode(${JSON.stringify(mr)}, ${JSON.stringify(settings)})`,
        ),
      );
    }
    for (let i = 0; i < scope.mrs; i++) {
      assert.deepEqual(pageOut[i].tokens, denoTokens[i], `MR ${i}: tokens differ`);
      assert.equal(pageOut[i].text, taskTexts[i], `MR ${i}: text differs from the task's`);
      assert.ok(pageOut[i].steps > 0, `MR ${i}: no tokens were streamed`);
    }
    const total = pageOut.reduce((n, o) => n + o.tokens.length, 0);
    const seconds = (performance.now() - t0) / 1000;
    console.log(
      `${scope.backend}: page == deno task generate on ${scope.mrs} MRs (${total} tokens; ` +
        `beam ${settings.beams}, max ${settings.maxNewTokens} new tokens); the page decoded ` +
        `them in ${seconds.toFixed(1)} s (${(seconds / total).toFixed(2)} s per token)`,
    );
    if (scope.steps === 0) return;
    if (scope.trainModel && scope.trainModel !== MINI) {
      const other = await page(true, scope.trainModel);
      try {
        await compareTraining(scope, browser, other.url, tmp);
      } finally {
        await other.stop();
      }
    } else await compareTraining(scope, browser, url, tmp);
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/**
 * `scope.steps` prefix-tuning steps in the page at `url` (its model: `scope.trainModel`) against
 * `deno task train` with the same settings; then the page's downloads, read back.
 */
async function compareTraining(
  scope: Scope,
  browser: Chromium,
  url: string,
  tmp: string,
): Promise<void> {
  const model = scope.trainModel ?? MINI;
  // ---- Deno: deno task train on the first pairs, the page's settings
  const s = {
    ...TRAIN_DEFAULTS,
    steps: scope.steps,
    batchSize: scope.batchSize ?? TRAIN_DEFAULTS.batchSize,
  };
  await run([
    "tasks/train.ts",
    "--tuner=prefix",
    "--prefix-mlp",
    "--no-eval",
    `--model=${model}`,
    `--data=${DATA}`,
    `--out=${tmp}/train`,
    `--backend=${scope.backend}`,
    `--max-steps=${s.steps}`,
    `--train-limit=${s.pairs}`,
    "--valid-limit=10",
    "--epochs=1",
    "--max-minutes=0",
    "--save-every=0",
    `--prefix-len=${s.prefixLen}`,
    `--mid-dim=${s.midDim}`,
    `--batch-size=${s.batchSize}`,
    `--lr=${s.lr}`,
    `--warmup-steps=${s.warmupSteps}`,
    `--max-grad-norm=${s.maxGradNorm}`,
    `--weight-decay=${s.weightDecay}`,
    `--prefix-dropout=${s.dropout}`,
    `--seed=${s.seed}`,
    `--bucket-size=${s.bucketSize}`,
  ]);
  const denoLosses = (await Deno.readTextFile(`${tmp}/train/log.jsonl`)).split("\n")
    .filter((l) => l.trim()).map((l) => JSON.parse(l)).filter((r) => r.step !== undefined)
    .map((r) => r.loss as number);
  assert.equal(denoLosses.length, s.steps);

  // ---- the page: training
  if (model !== MINI) {
    await browser.goto(url, "globalThis.lfPage.ready");
    await browser.eval(`lfPage.init(${JSON.stringify(scope.backend)})`);
    await browser.eval(`lfPage.loadModel("model")`);
  }
  const t0 = performance.now();
  const pageSteps = await browser.eval<{ loss: number }[]>(`(async () => {
      const text = await (await fetch("data/train.txt")).text();
      return await lfPage.train(text, "data/train.txt", ${JSON.stringify(s)});
    })()`);
  const pageLosses = pageSteps.map((r) => r.loss);
  const worst = Math.max(...pageLosses.map((l, i) => Math.abs(l - denoLosses[i])));
  console.log(
    `${s.steps} training steps in the page (${
      model === MINI ? "miniature" : model.split("/").slice(-1)[0]
    }, batch ` +
      `${s.batchSize}): ${((performance.now() - t0) / 1000).toFixed(1)} s; losses ` +
      pageLosses.map((l) => l.toFixed(6)).join(" "),
  );
  console.log(`max |page − deno task train| = ${worst.toExponential(2)}`);
  assert.equal(pageLosses.length, s.steps);
  assert.ok(worst <= 1e-5, `losses differ by ${worst}`);

  // ---- downloads: both formats load with the library's loaders, same values
  for (const format of ["prefix", "peft"]) {
    const b64 = await browser.eval<string>(`lfPage.exportZip("${format}").then((z) => {
        let s = ""; for (const b of z) s += String.fromCharCode(b); return btoa(s); })`);
    const zip = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    await Deno.writeFile(`${tmp}/${format}.zip`, zip);
    const r = await new Deno.Command("/usr/bin/python3", {
      args: ["-m", "zipfile", "-e", `${tmp}/${format}.zip`, `${tmp}/dl`],
    }).output().catch(() => null);
    if (!r?.success) {
      console.warn("zip read-back skipped: /usr/bin/python3 unavailable");
      return;
    }
  }
  const ours = await loadComputedPrefix(`${tmp}/dl/prefix`);
  const peft = await loadPeftPrefix(`${tmp}/dl/peft`);
  assert.equal(ours.config.prefixLen, s.prefixLen);
  assert.deepEqual(peft.data, ours.data);
}

Deno.test({
  name:
    "browser (wasm): 10 MRs decode as deno task generate does; 20 training steps as deno task train",
  ignore: skip !== null,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { url, stop } = await page();
    const browser = await Chromium.launch();
    try {
      await compare({ backend: "wasm", mrs: MRS, maxNewTokens: 100, steps: 20 }, browser, url);
    } finally {
      await browser.close();
      await stop();
    }
  },
});

/**
 * WebGPU. Without a GPU, Chromium offers WebGPU on SwiftShader, or — with the flags of
 * `WEBGPU_FLAGS` — a compatibility-mode adapter: WebGPU's OpenGL ES backend over ANGLE over
 * Mesa's Vulkan driver (lavapipe), faster; the library takes the latter where the core adapter is
 * only SwiftShader. Both are software (a beam-5 decoding step of the miniature takes about a
 * second, a training step 10-25 s), so by default this test decodes one MR (the first new tokens)
 * with the miniature and runs a few small training steps with fake-gpt2 (one layer of width 2,
 * the real vocabulary), against Deno's WebGPU backend on lavapipe. `LF_WEB_WEBGPU_FULL=1` runs
 * the full comparison of the WebAssembly test (10 MRs, 100 tokens, 20 steps on the miniature).
 */
Deno.test({
  name: "browser (webgpu): the page's WebGPU decoding and training against Deno's WebGPU backend",
  ignore: skip !== null,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const { url, stop } = await page();
    const browser = await Chromium.launch({ webgpu: true });
    try {
      await browser.goto(url, "globalThis.lfPage.ready");
      const adapter = await browser.eval<string | null>(`(async () => {
        const a = await navigator.gpu?.requestAdapter({ featureLevel: "compatibility" });
        if (!a) return null;
        const i = a.info, core = a.features.has("core-features-and-limits");
        return [i.vendor, i.architecture, i.description, i.isFallbackAdapter ? "(fallback)" : "",
          core ? "core" : "compatibility mode"].filter((s) => s).join(" "); })()`);
      if (!adapter) {
        console.warn(`skipped: Chromium exposes no WebGPU adapter with ${WEBGPU_FLAGS.join(" ")}`);
        return;
      }
      console.log(`Chromium WebGPU adapter: ${adapter}`);
      let denoGpu = false;
      try {
        await lf.loadBackend("webgpu");
        denoGpu = true;
      } catch (e) {
        console.warn(`skipped: Deno has no WebGPU backend here (${(e as Error).message})`);
      }
      if (!denoGpu) return;
      const full = Deno.env.get("LF_WEB_WEBGPU_FULL") === "1";
      const scope: Scope = full ? { backend: "webgpu", mrs: MRS, maxNewTokens: 100, steps: 20 } : {
        backend: "webgpu",
        mrs: 1,
        maxNewTokens: WEBGPU_TOKENS,
        steps: WEBGPU_STEPS,
        trainModel: FAKE_GPT2,
        batchSize: WEBGPU_BATCH,
      };
      if (!full) {
        console.warn(
          `webgpu: reduced comparison on a software adapter (1 MR, ${WEBGPU_TOKENS} new tokens; ` +
            `${WEBGPU_STEPS} training steps of batch ${WEBGPU_BATCH} on fake-gpt2); ` +
            "LF_WEB_WEBGPU_FULL=1 runs 10 MRs, 100 tokens and 20 training steps on the miniature",
        );
      }
      await t.step(
        `${scope.mrs} MR(s), ${scope.maxNewTokens} tokens, ${scope.steps} steps`,
        () => compare(scope, browser, url),
      );
    } finally {
      await browser.close();
      await stop();
    }
  },
});

Deno.test({
  name: "browser (not isolated): the page falls back to one WebAssembly thread, same tokens",
  ignore: skip !== null,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { url, stop } = await page(false);
    const browser = await Chromium.launch();
    try {
      await browser.goto(url, "globalThis.lfPage.ready");
      assert.equal(await browser.eval("crossOriginIsolated"), false);
      const info = await browser.eval<{ backend: string; threads: number }>(`lfPage.init("auto")`);
      console.log(`page backend without isolation: ${JSON.stringify(info)}`);
      assert.equal(info.backend, "wasm");
      assert.equal(info.threads, 1);
      await browser.eval(`lfPage.loadModel("model")`);
      await browser.eval(`lfPage.loadPrefix("prefixes/prefix_L5/peft", "peft")`);
      const mr = groupByMR(await readE2E(`${DATA}/test.txt`))[0].mr;
      const settings = {
        beams: E2E_DECODING.numBeams,
        maxNewTokens: E2E_DECODING.maxNewTokens,
        minLength: E2E_DECODING.minLength,
      };
      const got = await browser.eval<PageDecoded>(
        `lfPage.decode(${JSON.stringify(mr)}, ${JSON.stringify(settings)})`,
      );
      assert.deepEqual(got.tokens, (await libraryTokens("wasm", [mr], settings))[0]);
    } finally {
      await browser.close();
      await stop();
    }
  },
});
