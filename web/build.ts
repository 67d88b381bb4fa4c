/**
 * The browser build: `deno bundle` (Deno's built-in esbuild) turns the TypeScript into ES modules
 * for browsers, one file per entry point:
 *
 * - `lf.js`: the library (`mod.ts`), for pages of your own;
 * - `app.js`: the demo page's script;
 * - `engine.js`: the page's engine worker (the library and the engine);
 * - `kernel_worker.js`: the WebAssembly backend's thread worker.
 *
 * @module
 */

/** One built file. */
export interface BuiltFile {
  /** File name in the output folder. */
  name: string;
  /** Size in bytes. */
  bytes: number;
  /** Size gzipped (level of `CompressionStream("gzip")`), as served compressed. */
  gzipBytes: number;
}

const ROOT = new URL("../", import.meta.url);

/** Entry points: output name → source (relative to the repository root). */
export const ENTRIES: Readonly<Record<string, string>> = {
  "lf.js": "mod.ts",
  "app.js": "web/app.ts",
  "engine.js": "web/engine.ts",
  "kernel_worker.js": "kernels/wasm/worker.ts",
};

async function gzipSize(bytes: Uint8Array<ArrayBuffer>): Promise<number> {
  const s = new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip"));
  return (await new Response(s).arrayBuffer()).byteLength;
}

/**
 * Bundles every entry into `outDir` (minified ES modules). The npm package behind
 * `GPT2Tokenizer.offlineDefault` (a 1 MB vocabulary for Deno without files) stays out of the
 * bundles: pages load their tokenizer from URLs.
 */
export async function buildWeb(
  outDir: string,
  log: (s: string) => void = () => {},
): Promise<BuiltFile[]> {
  await Deno.mkdir(outDir, { recursive: true });
  const out: BuiltFile[] = [];
  for (const [name, src] of Object.entries(ENTRIES)) {
    const tmp = `${outDir}/${name}.tmp`;
    const cmd = new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--quiet",
        "--platform",
        "browser",
        "--format",
        "esm",
        "--minify",
        // node:path, node:crypto and node:util (the hub cache's file-system code and command-line
        // parsing, bundled but never run in a page) resolve to browser shims (web/shims/): a page
        // cannot import node: modules.
        "--config",
        new URL("web/bundle.json", ROOT).pathname,
        "--no-lock",
        "--external",
        "npm:gpt-3-encoder@*",
        "-o",
        tmp,
        new URL(src, ROOT).pathname,
      ],
      cwd: new URL(".", ROOT).pathname,
      stdout: "piped",
      stderr: "piped",
    });
    const r = await cmd.output();
    if (!r.success) {
      await Deno.remove(tmp).catch(() => {});
      throw new Error(`deno bundle ${src} failed:\n${new TextDecoder().decode(r.stderr)}`);
    }
    await Deno.rename(tmp, `${outDir}/${name}`);
    const bytes = await Deno.readFile(`${outDir}/${name}`);
    const f = { name, bytes: bytes.byteLength, gzipBytes: await gzipSize(bytes) };
    log(`built ${name}: ${kib(f.bytes)} (${kib(f.gzipBytes)} gzipped)`);
    out.push(f);
  }
  return out;
}

/** "123.4 KiB". */
export function kib(n: number): string {
  return `${(n / 1024).toFixed(1)} KiB`;
}
