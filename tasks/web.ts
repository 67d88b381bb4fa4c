/**
 * `deno task web`: builds the browser bundles and serves the in-browser demo page (GPT-2
 * decoding and prefix-tuning client-side, on WebGPU or WebAssembly).
 *
 * ```sh
 * deno task web                       # http://127.0.0.1:8000/
 * deno task web --port 8080 --data DIR --model DIR --prefixes DIR
 * deno task web --no-isolation        # without COOP/COEP: the page runs on one thread
 * deno task web-bundle                # only build web/dist/ and print the bundle sizes
 * ```
 *
 * `--model` (default `results/mini/pretrain/model`) is served under /model/, the prefixes of
 * `--prefixes` (default `results/mini/ablation`) under /prefixes/, and `--data` (default: the
 * E2E folder of `deno task download`, when present) under /data/ for training in the page.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { buildWeb } from "../web/build.ts";
import { serveWeb } from "../web/server.ts";
import { cacheRoot } from "../hub/mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;

const USAGE = `usage: deno task web [--port 8000] [--host 127.0.0.1] [--model DIR] [--prefixes DIR]
       [--data DIR] [--no-isolation] [--no-build] [--bundle-only]`;

async function isDir(p: string): Promise<boolean> {
  return await Deno.stat(p).then((s) => s.isDirectory, () => false);
}

/** CLI entry point; serves until interrupted. Returns the exit code on a usage error. */
export async function main(args: string[]): Promise<number> {
  let v;
  try {
    v = parseArgs({
      args,
      options: {
        port: { type: "string", default: "8000" },
        host: { type: "string", default: "127.0.0.1" },
        model: { type: "string", default: `${ROOT}results/mini/pretrain/model` },
        prefixes: { type: "string", default: `${ROOT}results/mini/ablation` },
        data: { type: "string" },
        "no-isolation": { type: "boolean" },
        "no-build": { type: "boolean" },
        "bundle-only": { type: "boolean" },
        help: { type: "boolean" },
      },
    }).values;
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (v.help) {
    console.log(USAGE);
    return 0;
  }
  const port = Number(v.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`error: --port must be an integer in [0, 65535], got '${v.port}'\n${USAGE}`);
    return 2;
  }
  let dataDir = v.data ?? null;
  if (!dataDir) {
    const cached = `${cacheRoot()}/e2e`;
    if (await isDir(cached)) dataDir = cached;
  }
  if (dataDir && !(await isDir(dataDir))) {
    console.error(`error: --data ${dataDir} is not a folder`);
    return 2;
  }
  const distDir = `${ROOT}web/dist`;
  if (v["bundle-only"]) {
    await buildWeb(distDir, (s) => console.log(s));
    return 0;
  }
  if (!v["no-build"]) await buildWeb(distDir, (s) => console.error(s));
  const { url } = await serveWeb({
    hostname: v.host,
    port,
    distDir,
    modelDir: v.model!,
    prefixesDir: v.prefixes!,
    dataDir,
    isolation: !v["no-isolation"],
  });
  console.error(
    `serving ${url} (model ${v.model}; ${
      dataDir ? `training data ${dataDir}` : "no training data: pass --data DIR"
    }; ${v["no-isolation"] ? "not cross-origin isolated: one thread" : "cross-origin isolated"})`,
  );
  return await new Promise<number>(() => {}); // until interrupted
}

if (import.meta.main) Deno.exit(await main(Deno.args));
