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
import { buildWeb } from "../web/build.ts";
import { serveWeb } from "../web/server.ts";
import { cacheRoot } from "../hub/mod.ts";
import { ConfigError, runCommand, type Schema } from "../train/config.ts";

const ROOT = new URL("../", import.meta.url).pathname;

interface WebFlags {
  port: number;
  host: string;
  model: string;
  prefixes: string;
  data: string | null;
  isolation: boolean;
  build: boolean;
  bundle_only: boolean;
}

const SCHEMA: Schema<WebFlags> = {
  port: { kind: "integer", min: 0, max: 65535, value: "N", doc: "port (0: any free port)" },
  host: { kind: "string", value: "ADDR", doc: "address to bind" },
  model: { kind: "string", value: "DIR", doc: "GPT-2 folder served under /model/" },
  prefixes: { kind: "string", value: "DIR", doc: "folder of prefixes served under /prefixes/" },
  data: {
    kind: "string?",
    value: "DIR",
    doc: "E2E folder served under /data/ for training in the page " +
      "(default: the one of deno task download, when present)",
  },
  isolation: {
    kind: "boolean",
    doc: "send COOP/COEP headers (without them the page runs on one thread)",
  },
  build: { kind: "boolean", doc: "build web/dist/ before serving" },
  bundle_only: { kind: "boolean", doc: "only build web/dist/ and print the bundle sizes" },
};

const DEFAULTS: WebFlags = {
  port: 8000,
  host: "127.0.0.1",
  model: `${ROOT}results/mini/pretrain/model`,
  prefixes: `${ROOT}results/mini/ablation`,
  data: null,
  isolation: true,
  build: true,
  bundle_only: false,
};

const USAGE = "deno task web [options]";

async function isDir(p: string): Promise<boolean> {
  return await Deno.stat(p).then((s) => s.isDirectory, () => false);
}

/** CLI entry point; serves until interrupted. Returns the exit code on a usage error. */
export async function main(args: string[]): Promise<number> {
  return await runCommand(args, SCHEMA, DEFAULTS, USAGE, async (v) => {
    let dataDir = v.data ?? null;
    if (!dataDir) {
      const cached = `${cacheRoot()}/e2e`;
      if (await isDir(cached)) dataDir = cached;
    }
    if (dataDir && !(await isDir(dataDir))) {
      throw new ConfigError(`command line: --data ${dataDir} is not a folder`);
    }
    const distDir = `${ROOT}web/dist`;
    if (v.bundle_only) {
      await buildWeb(distDir, (s) => console.log(s));
      return 0;
    }
    if (v.build) await buildWeb(distDir, (s) => console.error(s));
    const { url } = await serveWeb({
      hostname: v.host,
      port: v.port,
      distDir,
      modelDir: v.model,
      prefixesDir: v.prefixes,
      dataDir,
      isolation: v.isolation,
    });
    console.error(
      `serving ${url} (model ${v.model}; ${
        dataDir ? `training data ${dataDir}` : "no training data: pass --data DIR"
      }; ${!v.isolation ? "not cross-origin isolated: one thread" : "cross-origin isolated"})`,
    );
    return await new Promise<number>(() => {}); // until interrupted
  });
}

if (import.meta.main) Deno.exit(await main(Deno.args));
