/**
 * `deno task download`: fetches GPT-2 checkpoints and the E2E / METEOR data.
 *
 * ```sh
 * deno task download --model gpt2|gpt2-medium|gpt2-large|gpt2-xl [--cache DIR]
 * deno task download --data e2e [--out DIR]
 * deno task download --data meteor [--out DIR]
 * ```
 *
 * Where files go:
 * - models: `<cache>/models/<name>/` with config.json, model.safetensors,
 *   vocab.json, merges.txt and tokenizer.json from the Hugging Face hub
 *   (`openai-community/<name>`), verified against the hub's size and
 *   SHA-256 (`x-linked-size`, `x-linked-etag`) or git blob id (`ETag`);
 * - `--data e2e`: `<cache>/e2e/` (or `--out`) with the official E2E release
 *   CSVs (trainset.csv, devset.csv, testset.csv, testset_w_refs.csv from
 *   github.com/tuetschek/e2e-dataset) and the Prefix-Tuning paper's text files
 *   (train.txt, valid.txt, test.txt, saved from `data/e2e_data/src1_*.txt` of
 *   github.com/XiangLi1999/PrefixTuning);
 * - `--data meteor`: `<cache>/meteor/` (or `--out`) with METEOR 1.5's English
 *   resources from github.com/cmu-mtlab/meteor (english.synsets,
 *   english.relations, english.exceptions, english.words, paraphrase-en.gz,
 *   COPYING.WORDNET).
 * GitHub files are pinned to a commit and checked against their git blob ids.
 *
 * Environment:
 * - `LF_CACHE`: cache root (default `~/.cache/lf`); `--cache DIR` overrides it;
 * - `LF_HF_ENDPOINT`: hub base URL (default `https://huggingface.co`, like HF's `HF_ENDPOINT`);
 * - `LF_GITHUB_RAW`: GitHub raw base URL (default `https://raw.githubusercontent.com`).
 *
 * Offline: put the files in those folders by hand; {@link ensureModel} then
 * uses them without touching the network.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  DownloadError,
  downloadFile,
  type DownloadOptions,
  type ProgressMode,
  unreachableError,
} from "../data/download.ts";

/** Known model names and their Hugging Face hub repositories. */
export const MODELS: Readonly<Record<string, string>> = {
  "gpt2": "openai-community/gpt2",
  "gpt2-medium": "openai-community/gpt2-medium",
  "gpt2-large": "openai-community/gpt2-large",
  "gpt2-xl": "openai-community/gpt2-xl",
};

/** Files fetched for each model. */
export const MODEL_FILES: readonly string[] = [
  "config.json",
  "model.safetensors",
  "vocab.json",
  "merges.txt",
  "tokenizer.json",
];

/** A file of a pinned GitHub commit. */
export interface GithubFile {
  /** `owner/name`. */
  repo: string;
  /** Commit the URL is pinned to. */
  commit: string;
  /** Path inside the repository. */
  path: string;
  /** Local file name. */
  saveAs: string;
  /** Git blob id at that commit (checked after download). */
  gitSha1: string;
  /** Size in bytes where known. */
  size?: number;
}

const E2E_COMMIT = "ab0d967dd5729ce455ef14ba9ffafc456a335264";
const PREFIX_TUNING_COMMIT = "6519d30e69b15a180f23e2cd41b766d3f62b8e82";
const METEOR_COMMIT = "57a9ec5d5f65b8ceca6db5788ef876f3726614b3";

/** The data sets `--data` knows, with blob ids read from the repositories at those commits. */
export const DATASETS: Readonly<Record<"e2e" | "meteor", readonly GithubFile[]>> = {
  e2e: [
    ["trainset.csv", "fa3a5e1124d2aa0d768881e38f8ee73e63d5880d", undefined],
    ["devset.csv", "c45950a0771c769d787a33fdf56439cb890005d7", 1161305],
    ["testset.csv", "1877a5e3c0c5d46f4d17faf6aca825b45e788bde", 88415],
    ["testset_w_refs.csv", "86733864c96dc18cbaa5f18042356296ef679302", 1310822],
  ].map(([path, gitSha1, size]) => ({
    repo: "tuetschek/e2e-dataset",
    commit: E2E_COMMIT,
    path: path as string,
    saveAs: path as string,
    gitSha1: gitSha1 as string,
    size: size as number | undefined,
  })).concat(
    [
      ["train", "2f92a2790c00a48574dcc89465a326f33d7e7cc6", 9624463],
      ["valid", "94f87112e11198710d65a1d5dc7d0b8d9155a07d", 1198093],
      ["test", "084da9f4409d98058bcb020614afa83824440484", 1351149],
    ].map(([split, gitSha1, size]) => ({
      repo: "XiangLi1999/PrefixTuning",
      commit: PREFIX_TUNING_COMMIT,
      path: `data/e2e_data/src1_${split}.txt`,
      saveAs: `${split}.txt`,
      gitSha1: gitSha1 as string,
      size: size as number,
    })),
  ),
  meteor: [
    ["resources/synonym/english.synsets", "f95c1d770806658472198c8cb52e8cd9477de88a", 3702066],
    ["resources/synonym/english.relations", "7a3ec008eb935bc8672b105cf87ef38370a5df2e", 2622861],
    ["resources/synonym/english.exceptions", "9550cba2923c29e5a6437c30aa1e626dee0f83bf", 88789],
    ["resources/function/english.words", "97aafc8f57dff883a301688a29915f7b6f6eecbd", 373],
    ["resources/synonym/COPYING.WORDNET", "99501e0b1ae0d8281af734502f4010ad9543f6dc", 1844],
    ["data/paraphrase-en.gz", "88033c84fb2f8ecbc77fe57b7eee2913d1acd919", undefined],
  ].map(([path, gitSha1, size]) => ({
    repo: "cmu-mtlab/meteor",
    commit: METEOR_COMMIT,
    path: path as string,
    saveAs: (path as string).split("/").pop()!,
    gitSha1: gitSha1 as string,
    size: size as number | undefined,
  })),
};

/** Where downloads come from and go to; every field defaults from the environment. */
export interface SourceOptions {
  /** Cache root (default `$LF_CACHE`, else `~/.cache/lf`). */
  cacheRoot?: string;
  /** Hub base URL (default `$LF_HF_ENDPOINT`, else `https://huggingface.co`). */
  hfEndpoint?: string;
  /** GitHub raw base URL (default `$LF_GITHUB_RAW`, else `https://raw.githubusercontent.com`). */
  githubRaw?: string;
  /** Replaces `fetch`. */
  fetchImpl?: typeof fetch;
  /** Progress display (default `auto`). */
  progress?: ProgressMode;
  /** Where progress and notices go (default: stderr). */
  log?: (text: string) => void;
  /** Passed to {@link downloadFile}. */
  retryDelayMs?: number;
}

/** Reads a variable, treating a missing permission like an unset variable. */
function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

/** Resolves the cache root: the option, then `$LF_CACHE`, then `~/.cache/lf`. */
export function cacheRoot(options: SourceOptions = {}): string {
  if (options.cacheRoot) return options.cacheRoot;
  const fromEnv = env("LF_CACHE");
  if (fromEnv) return fromEnv;
  const home = env("HOME") ?? env("USERPROFILE");
  if (!home) {
    throw new Error("cannot find the cache folder: set LF_CACHE (or HOME) or pass --cache DIR");
  }
  return join(home, ".cache", "lf");
}

function hfEndpoint(options: SourceOptions): string {
  return (options.hfEndpoint ?? env("LF_HF_ENDPOINT") ?? "https://huggingface.co").replace(
    /\/+$/,
    "",
  );
}

function githubRaw(options: SourceOptions): string {
  return (options.githubRaw ?? env("LF_GITHUB_RAW") ?? "https://raw.githubusercontent.com").replace(
    /\/+$/,
    "",
  );
}

/** Folder a known model is cached in: `<cache root>/models/<name>`. */
export function modelCacheDir(name: string, options: SourceOptions = {}): string {
  return join(cacheRoot(options), "models", name);
}

/** What the hub says about one file. */
export interface HubFileInfo {
  /** Size in bytes. */
  size?: number;
  /** SHA-256 (LFS files). */
  sha256?: string;
  /** Git blob id (small files kept in git). */
  gitSha1?: string;
}

/** Strips the weak marker and quotes from an ETag, as huggingface_hub does. */
function normalizeEtag(etag: string | null): string | undefined {
  if (!etag) return undefined;
  return etag.replace(/^W\//, "").replace(/^"|"$/g, "").toLowerCase();
}

function infoFrom(headers: Headers): HubFileInfo {
  const etag = normalizeEtag(headers.get("x-linked-etag") ?? headers.get("etag"));
  const sizeText = headers.get("x-linked-size");
  const size = sizeText && /^\d+$/.test(sizeText) ? Number(sizeText) : undefined;
  const info: HubFileInfo = {};
  if (size !== undefined) info.size = size;
  if (etag && /^[0-9a-f]{64}$/.test(etag)) info.sha256 = etag;
  else if (etag && /^[0-9a-f]{40}$/.test(etag)) info.gitSha1 = etag;
  return info;
}

/**
 * HEAD request against a hub `resolve` URL. Follows same-host redirects
 * (renamed repositories) but not the redirect to the CDN: the metadata lives on
 * the hub's own response.
 *
 * @throws {DownloadError} on HTTP errors or when the hub cannot be reached
 */
export async function hubFileInfo(
  url: string,
  options: SourceOptions & { manualDir?: string } = {},
): Promise<HubFileInfo> {
  const fetchImpl = options.fetchImpl ?? fetch;
  let target = url;
  for (let hop = 0; hop < 5; hop++) {
    let res: Response;
    try {
      res = await fetchImpl(target, { method: "HEAD", redirect: "manual" });
    } catch (e) {
      throw unreachableError(target, e, options.manualDir ?? "the cache folder");
    }
    await res.body?.cancel();
    if (res.status >= 300 && res.status < 400) {
      if (res.headers.get("x-linked-etag")) return infoFrom(res.headers);
      const location = res.headers.get("location");
      if (!location) break;
      const next = new URL(location, target);
      if (next.origin !== new URL(target).origin) return infoFrom(res.headers);
      target = next.href;
      continue;
    }
    if (!res.ok) {
      throw new DownloadError(
        `${url} ${
          res.status === 404 ? "not found" : "failed"
        }: HTTP ${res.status} ${res.statusText}`.trimEnd(),
        url,
        { status: res.status },
      );
    }
    // Content-Length of a HEAD answer is only a hint (proxies rewrite it); the
    // git blob id already pins the size, so it is used only when no hash came.
    const info = infoFrom(res.headers);
    const length = res.headers.get("content-encoding") ? null : res.headers.get("content-length");
    if (
      !info.sha256 && !info.gitSha1 && info.size === undefined && length && /^\d+$/.test(length)
    ) {
      info.size = Number(length);
    }
    return info;
  }
  return {};
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

function downloadOptions(options: SourceOptions, manualDir: string): DownloadOptions {
  return {
    fetchImpl: options.fetchImpl,
    progress: options.progress,
    log: options.log,
    retryDelayMs: options.retryDelayMs,
    manualDir,
  };
}

/**
 * Downloads the files of a known model that are not yet in its cache folder.
 * Each file is checked against the hub's size and hash before it appears.
 *
 * @returns the model's folder
 * @throws {DownloadError} naming the file at fault
 */
export async function downloadModel(name: string, options: SourceOptions = {}): Promise<string> {
  const repo = MODELS[name];
  if (!repo) {
    throw new Error(`unknown model "${name}": expected one of ${Object.keys(MODELS).join(", ")}`);
  }
  const dir = modelCacheDir(name, options);
  await Deno.mkdir(dir, { recursive: true });
  for (const file of MODEL_FILES) {
    const dest = join(dir, file);
    if (await exists(dest)) continue;
    const url = `${hfEndpoint(options)}/${repo}/resolve/main/${file}`;
    const info = await hubFileInfo(url, { ...options, manualDir: dir });
    await downloadFile(url, dest, {
      ...downloadOptions(options, dir),
      expectedSize: info.size,
      sha256: info.sha256,
      gitSha1: info.gitSha1,
    });
  }
  return dir;
}

/**
 * Resolves a model argument to a local folder: an existing path is returned as
 * is; a known name (gpt2, gpt2-medium, gpt2-large, gpt2-xl) is downloaded into
 * the cache on first use and served from there (without network) afterwards.
 *
 * @throws {Error} for a name that is neither a path nor a known model; {@link DownloadError} when fetching fails
 */
export async function ensureModel(nameOrDir: string, options: SourceOptions = {}): Promise<string> {
  if (await exists(nameOrDir)) return nameOrDir;
  if (!Object.hasOwn(MODELS, nameOrDir)) {
    throw new Error(
      `model "${nameOrDir}" is neither an existing path nor a known model (${
        Object.keys(MODELS).join(", ")
      })`,
    );
  }
  const dir = modelCacheDir(nameOrDir, options);
  const present = await Promise.all(MODEL_FILES.map((f) => exists(join(dir, f))));
  if (present.every(Boolean)) return dir;
  return await downloadModel(nameOrDir, options);
}

/**
 * Downloads a data set's files (skipping those already present and valid) into
 * `out` (default `<cache root>/<which>`). All files are attempted; failures are
 * reported together.
 *
 * @returns the folder
 * @throws {DownloadError} listing every file that failed
 */
export async function downloadData(
  which: "e2e" | "meteor",
  options: SourceOptions & { out?: string } = {},
): Promise<string> {
  const files = DATASETS[which];
  if (!files) {
    throw new Error(
      `unknown data set "${which}": expected one of ${Object.keys(DATASETS).join(", ")}`,
    );
  }
  const out = options.out ?? join(cacheRoot(options), which);
  await Deno.mkdir(out, { recursive: true });
  const failures: string[] = [];
  let first: DownloadError | undefined;
  for (const f of files) {
    const url = `${githubRaw(options)}/${f.repo}/${f.commit}/${f.path}`;
    try {
      await downloadFile(url, join(out, f.saveAs), {
        ...downloadOptions(options, out),
        expectedSize: f.size,
        gitSha1: f.gitSha1,
      });
    } catch (e) {
      if (!(e instanceof DownloadError)) throw e;
      first ??= e;
      failures.push(`${f.saveAs}: ${e.message}`);
    }
  }
  if (first) {
    throw new DownloadError(
      `${failures.length} of ${files.length} ${which} files failed:\n  ${failures.join("\n  ")}`,
      first.url,
      { status: first.status, cause: first },
    );
  }
  return out;
}

const USAGE = `usage:
  deno task download --model gpt2|gpt2-medium|gpt2-large|gpt2-xl [--cache DIR]
  deno task download --data e2e|meteor [--out DIR] [--cache DIR]
cache root: --cache, else $LF_CACHE, else ~/.cache/lf
endpoints: $LF_HF_ENDPOINT (https://huggingface.co), $LF_GITHUB_RAW (https://raw.githubusercontent.com)`;

/**
 * CLI entry point.
 *
 * @returns the exit code: 0 on success, 1 when a download failed, 2 on bad arguments
 */
export async function main(args: string[], options: SourceOptions = {}): Promise<number> {
  let values: { model?: string; data?: string; cache?: string; out?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args,
      options: {
        model: { type: "string" },
        data: { type: "string" },
        cache: { type: "string" },
        out: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    console.error(`${e instanceof Error ? e.message : e}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (!values.model && !values.data) {
    console.error(`nothing to do: pass --model or --data\n${USAGE}`);
    return 2;
  }
  if (values.model && !Object.hasOwn(MODELS, values.model)) {
    console.error(
      `unknown model "${values.model}": expected one of ${Object.keys(MODELS).join(", ")}`,
    );
    return 2;
  }
  if (values.data && values.data !== "e2e" && values.data !== "meteor") {
    console.error(`unknown data set "${values.data}": expected e2e or meteor`);
    return 2;
  }
  const opts: SourceOptions = { ...options, cacheRoot: values.cache ?? options.cacheRoot };
  try {
    if (values.model) console.log(await downloadModel(values.model, opts));
    if (values.data) {
      console.log(
        await downloadData(values.data as "e2e" | "meteor", { ...opts, out: values.out }),
      );
    }
  } catch (e) {
    if (e instanceof DownloadError) {
      console.error(`download failed: ${e.message}`);
      return 1;
    }
    throw e;
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
