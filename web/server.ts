/**
 * The static server of the in-browser demo (`deno task web`). It serves the page, its bundles,
 * a GPT-2 folder, the prefixes of a results folder and, optionally, an E2E data folder — files
 * only: all computation happens in the browser.
 *
 * Every response carries `Cross-Origin-Opener-Policy: same-origin` and
 * `Cross-Origin-Embedder-Policy: require-corp` (plus `Cross-Origin-Resource-Policy:
 * same-origin`), which make the page cross-origin isolated: only then may the WebAssembly
 * backend share its memory with worker threads. Without them (`isolation: false`) the page still
 * works, on one thread. Byte ranges (`Range: bytes=a-b`) are served, so a broken download of the
 * weights resumes where it stopped.
 *
 * Routes:
 * - `/` the page; `/style.css`; `/dist/*.js` the bundles;
 * - `/model/{config.json,vocab.json,merges.txt,model.safetensors}` the GPT-2 folder;
 * - `/prefixes/index.json` the prefixes found (`<name>/prefix/` our format, `<name>/peft/`);
 *   `/prefixes/<name>/<prefix|peft>/<file>`;
 * - `/data/index.json` which E2E splits exist; `/data/<train|valid|test>.txt`.
 *
 * @module
 */

/** Options of {@link serveWeb}. */
export interface WebServerOptions {
  /** Interface to listen on (default 127.0.0.1). */
  hostname?: string;
  /** Port (default 8000; 0 picks a free one). */
  port?: number;
  /** Folder of the built bundles. */
  distDir: string;
  /** GPT-2 folder served under /model/. */
  modelDir: string;
  /** Folder whose `<name>/prefix` and `<name>/peft` subfolders are offered. */
  prefixesDir: string;
  /** E2E folder (train.txt, valid.txt, test.txt), or null for none. */
  dataDir?: string | null;
  /** Send the cross-origin isolation headers (default true). */
  isolation?: boolean;
  /** Called once listening, with the page's URL. */
  onListen?: (url: string) => void;
  /** Stops the server when aborted. */
  signal?: AbortSignal;
}

/** Where the page's own files are (this folder). */
const PAGE_DIR = new URL(".", import.meta.url).pathname;

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".safetensors": "application/octet-stream",
  ".svg": "image/svg+xml",
};

const MODEL_FILES = new Set([
  "config.json",
  "vocab.json",
  "merges.txt",
  "tokenizer.json",
  "model.safetensors",
]);
const PREFIX_FILES = new Set([
  "prefix_config.json",
  "prefix.safetensors",
  "adapter_config.json",
  "adapter_model.safetensors",
]);
const SPLITS = ["train", "valid", "test"];
const NAME = /^[A-Za-z0-9_.-]+$/;

/** One prefix offered by `/prefixes/index.json`. */
export interface PrefixListing {
  /** Folder name (e.g. prefix_L5). */
  name: string;
  /** Prefix length. */
  prefixLen: number;
  /** Formats present: "prefix" (ours) and/or "peft". */
  formats: ("prefix" | "peft")[];
}

/** The prefixes under `dir` (folders with a `prefix/prefix_config.json`), sorted by length. */
export async function listPrefixes(dir: string): Promise<PrefixListing[]> {
  const out: PrefixListing[] = [];
  let entries: Deno.DirEntry[] = [];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!e.isDirectory || !NAME.test(e.name)) continue;
    try {
      const conf = JSON.parse(
        await Deno.readTextFile(`${dir}/${e.name}/prefix/prefix_config.json`),
      );
      const formats: ("prefix" | "peft")[] = ["prefix"];
      if (await exists(`${dir}/${e.name}/peft/adapter_config.json`)) formats.push("peft");
      out.push({ name: e.name, prefixLen: Number(conf.prefix_len), formats });
    } catch { /* not a prefix folder */ }
  }
  return out.sort((a, b) => a.prefixLen - b.prefixLen || a.name.localeCompare(b.name));
}

async function exists(p: string): Promise<boolean> {
  return await Deno.stat(p).then((s) => s.isFile, () => false);
}

/**
 * The headers that make a page cross-origin isolated (what lets WebAssembly share memory with
 * worker threads), for every response of a page's origin.
 */
export const ISOLATION_HEADERS: Readonly<Record<string, string>> = {
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-embedder-policy": "require-corp",
  "cross-origin-resource-policy": "same-origin",
};

function headers(isolation: boolean, type: string): Headers {
  const h = new Headers({ "content-type": type, "cache-control": "no-cache" });
  if (isolation) { for (const [k, v] of Object.entries(ISOLATION_HEADERS)) h.set(k, v); }
  return h;
}

/** A file response honouring a single `Range: bytes=a-b` (or `a-`, or `-n`). */
async function fileResponse(req: Request, path: string, isolation: boolean): Promise<Response> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch {
    return new Response("not found\n", { status: 404, headers: headers(isolation, TYPES[".txt"]) });
  }
  const size = (await file.stat()).size;
  const ext = path.slice(path.lastIndexOf("."));
  const h = headers(isolation, TYPES[ext] ?? "application/octet-stream");
  h.set("accept-ranges", "bytes");
  const range = req.headers.get("range");
  const m = range ? /^bytes=(\d*)-(\d*)$/.exec(range.trim()) : null;
  if (range && m && (m[1] || m[2])) {
    let start: number, end: number;
    if (m[1] === "") {
      start = Math.max(0, size - Number(m[2]));
      end = size - 1;
    } else {
      start = Number(m[1]);
      end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
    }
    if (start >= size || start > end) {
      file.close();
      h.set("content-range", `bytes */${size}`);
      return new Response(null, { status: 416, headers: h });
    }
    await file.seek(start, Deno.SeekMode.Start);
    h.set("content-range", `bytes ${start}-${end}/${size}`);
    h.set("content-length", String(end - start + 1));
    const body = file.readable.pipeThrough(limitBytes(end - start + 1));
    return new Response(req.method === "HEAD" ? null : body, { status: 206, headers: h });
  }
  h.set("content-length", String(size));
  if (req.method === "HEAD") {
    file.close();
    return new Response(null, { headers: h });
  }
  return new Response(file.readable, { headers: h });
}

function limitBytes(n: number): TransformStream<Uint8Array, Uint8Array> {
  let left = n;
  return new TransformStream({
    transform(chunk, c) {
      if (left <= 0) return;
      const part = chunk.byteLength > left ? chunk.subarray(0, left) : chunk;
      left -= part.byteLength;
      c.enqueue(part);
      if (left <= 0) c.terminate();
    },
  });
}

function json(value: unknown, isolation: boolean): Response {
  return new Response(JSON.stringify(value), { headers: headers(isolation, TYPES[".json"]) });
}

/** Answers one request (exported for tests). */
export async function handleWebRequest(req: Request, o: WebServerOptions): Promise<Response> {
  const iso = o.isolation ?? true;
  const notFound = () =>
    new Response("not found\n", { status: 404, headers: headers(iso, TYPES[".txt"]) });
  if (req.method !== "GET" && req.method !== "HEAD") {
    return new Response("method not allowed\n", {
      status: 405,
      headers: headers(iso, "text/plain"),
    });
  }
  const parts = decodeURIComponent(new URL(req.url).pathname).split("/").filter((p) => p);
  if (parts.some((p) => !NAME.test(p) || p === "." || p === "..")) return notFound();
  const [top, a, b, c] = parts;
  if (parts.length === 0) return await fileResponse(req, `${PAGE_DIR}index.html`, iso);
  if (parts.length === 1 && top === "style.css") {
    return await fileResponse(req, `${PAGE_DIR}style.css`, iso);
  }
  if (top === "dist" && parts.length === 2 && a.endsWith(".js")) {
    return await fileResponse(req, `${o.distDir}/${a}`, iso);
  }
  if (top === "model" && parts.length === 2 && MODEL_FILES.has(a)) {
    return await fileResponse(req, `${o.modelDir}/${a}`, iso);
  }
  if (top === "prefixes") {
    if (parts.length === 2 && a === "index.json") {
      return json(await listPrefixes(o.prefixesDir), iso);
    }
    if (parts.length === 4 && (b === "prefix" || b === "peft") && PREFIX_FILES.has(c)) {
      return await fileResponse(req, `${o.prefixesDir}/${a}/${b}/${c}`, iso);
    }
  }
  if (top === "data" && o.dataDir) {
    if (parts.length === 2 && a === "index.json") {
      const have: Record<string, boolean> = {};
      for (const s of SPLITS) have[s] = await exists(`${o.dataDir}/${s}.txt`);
      return json(have, iso);
    }
    if (parts.length === 2 && SPLITS.some((s) => a === `${s}.txt`)) {
      return await fileResponse(req, `${o.dataDir}/${a}`, iso);
    }
  }
  if (top === "data" && parts.length === 2 && a === "index.json") return json({}, iso);
  return notFound();
}

/** Starts the server; resolves once it listens, with the server and the page's URL. */
export async function serveWeb(
  o: WebServerOptions,
): Promise<{ server: Deno.HttpServer; url: string }> {
  let resolve!: (url: string) => void;
  const listening = new Promise<string>((r) => resolve = r);
  const server = Deno.serve({
    hostname: o.hostname ?? "127.0.0.1",
    port: o.port ?? 8000,
    signal: o.signal,
    onListen: ({ hostname, port }) => {
      const host = hostname.includes(":") ? `[${hostname}]` : hostname;
      resolve(`http://${host}:${port}/`);
    },
  }, (req) => handleWebRequest(req, o));
  const url = await listening;
  o.onListen?.(url);
  return { server, url };
}
