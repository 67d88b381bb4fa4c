/**
 * Hugging Face hub models: `"gpt2-medium"`, `"openai-community/gpt2"`, any `"org/name"`, or a
 * local folder, resolved to a local folder the way `huggingface_hub` does.
 *
 * - Cache: Hugging Face's own layout and location, so a model a Python user already downloaded
 *   is used as is: `models--org--name/refs/<revision>` holds the commit, and
 *   `models--org--name/snapshots/<commit>/` the files (links into `blobs/`). The folder is
 *   `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
 *   `~/.cache/huggingface/hub`.
 * - Endpoint: `$HF_ENDPOINT` (default `https://huggingface.co`).
 * - `HF_HUB_OFFLINE=1`: the cache only; a model not in it is an error that says so.
 * - Downloads are streamed, resumable (`.part` files), verified against the hub's size and
 *   SHA-256 (`x-linked-size`, `x-linked-etag`) or git blob id (`ETag`), and renamed into place
 *   only when complete ({@link downloadFile}).
 *
 * This module imports nothing of the library but `io/`, so models and tokenizers can use it.
 *
 * @module
 */
import { join } from "node:path";
import { atomicWriteBytes, atomicWriteText } from "../io/atomic.ts";
import {
  DownloadError,
  downloadFile,
  type DownloadOptions,
  type ProgressMode,
  unreachableError,
} from "./download.ts";

/** Short names of the released GPT-2 checkpoints and their repositories on the hub. */
export const MODEL_ALIASES: Readonly<Record<string, string>> = {
  "gpt2": "openai-community/gpt2",
  "gpt2-medium": "openai-community/gpt2-medium",
  "gpt2-large": "openai-community/gpt2-large",
  "gpt2-xl": "openai-community/gpt2-xl",
};

/** Files a model needs: configuration and weights. */
export const MODEL_FILES: readonly string[] = ["config.json", "model.safetensors"];

/** Tokenizer files: `vocab.json` + `merges.txt`, or `tokenizer.json` (at least one set). */
export const TOKENIZER_FILES: readonly string[] = ["vocab.json", "merges.txt", "tokenizer.json"];

/** Where hub files come from and go to; every field defaults from the environment. */
export interface HubOptions {
  /** Hub cache folder (default from `HF_HUB_CACHE`, `HF_HOME`, `XDG_CACHE_HOME`, `HOME`). */
  hubCache?: string;
  /** Hub base URL (default `$HF_ENDPOINT`, else `https://huggingface.co`). */
  hfEndpoint?: string;
  /** Use the cache only (default: `$HF_HUB_OFFLINE` is 1/true/yes/on). */
  offline?: boolean;
  /** Branch, tag or commit (default `main`). */
  revision?: string;
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
export function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

/** The user's cache base: `$XDG_CACHE_HOME`, else `~/.cache`. */
export function userCacheDir(): string {
  const xdg = env("XDG_CACHE_HOME");
  if (xdg) return xdg;
  const home = env("HOME") ?? env("USERPROFILE");
  if (!home) throw new Error("cannot find the cache folder: set XDG_CACHE_HOME or HOME");
  return join(home, ".cache");
}

/** Hugging Face's hub cache folder, resolved as `huggingface_hub` does. */
export function hubCacheDir(options: HubOptions = {}): string {
  if (options.hubCache) return options.hubCache;
  const direct = env("HF_HUB_CACHE") ?? env("HUGGINGFACE_HUB_CACHE");
  if (direct) return direct;
  const home = env("HF_HOME");
  if (home) return join(home, "hub");
  return join(userCacheDir(), "huggingface", "hub");
}

/** The hub endpoint without a trailing slash. */
export function hubEndpoint(options: HubOptions = {}): string {
  return (options.hfEndpoint ?? env("HF_ENDPOINT") ?? "https://huggingface.co").replace(
    /\/+$/,
    "",
  );
}

/** Whether only the cache may be used. */
export function hubOffline(options: HubOptions = {}): boolean {
  if (options.offline !== undefined) return options.offline;
  return /^(1|true|yes|on)$/i.test(env("HF_HUB_OFFLINE") ?? "");
}

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)?$/;

/** Whether `s` has the shape of a hub id (`name` or `org/name`), not of a path. */
export function isHubId(s: string): boolean {
  return REPO_ID.test(s) && !s.includes("..") && !s.endsWith(".json");
}

/** Cache folder of a repository: `<cache>/models--org--name`. */
export function repoCacheDir(repoId: string, options: HubOptions = {}): string {
  return join(hubCacheDir(options), `models--${repoId.replaceAll("/", "--")}`);
}

async function isFile(path: string): Promise<boolean> {
  return await Deno.stat(path).then((s) => s.isFile, () => false);
}

async function isDir(path: string): Promise<boolean> {
  return await Deno.stat(path).then((s) => s.isDirectory, () => false);
}

/** Whether a folder holds a model: config, weights and a tokenizer. */
async function complete(dir: string): Promise<boolean> {
  for (const f of MODEL_FILES) if (!await isFile(join(dir, f))) return false;
  return (await isFile(join(dir, "vocab.json")) && await isFile(join(dir, "merges.txt"))) ||
    await isFile(join(dir, "tokenizer.json"));
}

/** The snapshot folder a cached revision points to, or undefined. */
async function cachedSnapshot(repoDir: string, revision: string): Promise<string | undefined> {
  let commit = revision;
  const ref = await Deno.readTextFile(join(repoDir, "refs", revision)).then(
    (t) => t.trim(),
    () => undefined,
  );
  if (ref) commit = ref;
  const dir = join(repoDir, "snapshots", commit);
  return await isDir(dir) ? dir : undefined;
}

/**
 * Finds a model in the hub cache without touching the network: the snapshot of `revision`
 * under the id as given and, for a short GPT-2 name, under its `openai-community/` id.
 */
export async function findCachedModel(
  repoId: string,
  options: HubOptions = {},
): Promise<string | undefined> {
  const revision = options.revision ?? "main";
  const ids = [repoId];
  const canonical = MODEL_ALIASES[repoId];
  if (canonical) ids.push(canonical);
  for (const id of ids) {
    const snap = await cachedSnapshot(repoCacheDir(id, options), revision);
    if (snap && await complete(snap)) return snap;
  }
  return undefined;
}

/** What the hub says about one file. */
export interface HubFileInfo {
  /** Size in bytes. */
  size?: number;
  /** SHA-256 (LFS files). */
  sha256?: string;
  /** Git blob id (small files kept in git). */
  gitSha1?: string;
  /** The commit the hub resolved the revision to (`X-Repo-Commit`). */
  commit?: string;
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
  const commit = headers.get("x-repo-commit");
  if (commit && /^[0-9a-f]{40}$/i.test(commit)) info.commit = commit.toLowerCase();
  return info;
}

/**
 * HEAD request against a hub `resolve` URL. Follows same-host redirects (renamed
 * repositories) but not the redirect to the CDN: the metadata lives on the hub's own response.
 *
 * @throws {DownloadError} on HTTP errors or when the hub cannot be reached
 */
export async function hubFileInfo(
  url: string,
  options: HubOptions & { manualDir?: string } = {},
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
    // Content-Length of a HEAD answer is only a hint (proxies rewrite it); the git blob id
    // already pins the size, so it is used only when no hash came.
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

function downloadOptions(options: HubOptions, manualDir: string): DownloadOptions {
  return {
    fetchImpl: options.fetchImpl,
    progress: options.progress,
    log: options.log,
    retryDelayMs: options.retryDelayMs,
    manualDir,
  };
}

/**
 * Downloads a model's files that its cached snapshot lacks into the hub cache (blobs named by
 * their hash, linked from `snapshots/<commit>/`, `refs/<revision>` updated), as
 * `huggingface_hub` lays them out. Tokenizer files the repository does not have are skipped,
 * but one complete tokenizer is required.
 *
 * @returns the snapshot folder
 * @throws {DownloadError} naming the file at fault
 */
export async function downloadModel(
  repoIdOrAlias: string,
  options: HubOptions = {},
): Promise<string> {
  const repoId = MODEL_ALIASES[repoIdOrAlias] ?? repoIdOrAlias;
  if (!isHubId(repoId)) throw new Error(`"${repoIdOrAlias}" is not a hub model id (org/name)`);
  const revision = options.revision ?? "main";
  const repoDir = repoCacheDir(repoId, options);
  const endpoint = hubEndpoint(options);
  let snapshot = await cachedSnapshot(repoDir, revision);
  const missingTokenizer: string[] = [];
  for (const file of [...MODEL_FILES, ...TOKENIZER_FILES]) {
    if (snapshot && await isFile(join(snapshot, file))) continue;
    const rev = snapshot ? snapshot.split("/").pop()! : revision;
    const url = `${endpoint}/${repoId}/resolve/${encodeURIComponent(rev)}/${file}`;
    let info: HubFileInfo;
    try {
      info = await hubFileInfo(url, { ...options, manualDir: repoDir });
    } catch (e) {
      if (e instanceof DownloadError && e.status === 404 && TOKENIZER_FILES.includes(file)) {
        missingTokenizer.push(file);
        continue;
      }
      throw e;
    }
    const commit = info.commit ?? (snapshot ? rev : revision);
    if (!snapshot) {
      snapshot = join(repoDir, "snapshots", commit);
      await Deno.mkdir(snapshot, { recursive: true });
      if (info.commit) {
        await Deno.mkdir(join(repoDir, "refs"), { recursive: true });
        await atomicWriteText(join(repoDir, "refs", revision), info.commit);
      }
    }
    const blobName = info.sha256 ?? info.gitSha1;
    const dest = join(snapshot, file);
    if (!blobName) {
      await downloadFile(url, dest, { ...downloadOptions(options, snapshot), label: file });
      continue;
    }
    const blob = join(repoDir, "blobs", blobName);
    await downloadFile(url, blob, {
      ...downloadOptions(options, snapshot),
      label: file,
      expectedSize: info.size,
      sha256: info.sha256,
      gitSha1: info.gitSha1,
    });
    await linkOrCopy(blob, dest);
  }
  if (!snapshot || !await complete(snapshot)) {
    throw new Error(
      `${repoId}: the hub has no usable tokenizer (missing ${missingTokenizer.join(", ")})`,
    );
  }
  return snapshot;
}

/** A relative symlink from the snapshot into `blobs/` (a copy where links are not allowed). */
async function linkOrCopy(blob: string, dest: string): Promise<void> {
  await Deno.remove(dest).catch(() => {});
  try {
    await Deno.symlink(join("..", "..", "blobs", blob.split("/").pop()!), dest);
  } catch {
    await atomicWriteBytes(dest, await Deno.readFile(blob));
  }
}

/**
 * A model folder for `idOrDir`: an existing folder as is; a hub id (`gpt2-medium`, `org/name`)
 * from the hub cache when there, else downloaded into it (unless offline).
 *
 * @throws {Error} for a path that does not exist, or an offline miss; {@link DownloadError}
 * when fetching fails
 */
export async function resolveModel(idOrDir: string, options: HubOptions = {}): Promise<string> {
  if (await isDir(idOrDir)) return idOrDir;
  if (await isFile(idOrDir)) {
    throw new Error(`${idOrDir} is a file; a model is a folder (config.json, model.safetensors)`);
  }
  if (!isHubId(idOrDir)) {
    throw new Error(`model "${idOrDir}" is neither an existing folder nor a hub id (org/name)`);
  }
  const cached = await findCachedModel(idOrDir, options);
  if (cached) return cached;
  if (hubOffline(options)) {
    throw new Error(
      `model "${idOrDir}" is not in the hub cache ${hubCacheDir(options)} and HF_HUB_OFFLINE ` +
        `forbids downloading it`,
    );
  }
  try {
    return await downloadModel(idOrDir, options);
  } catch (e) {
    // A mistyped local path looks like a hub id: say both things it is not.
    if (
      e instanceof DownloadError && (e.status === 404 || e.status === 401) &&
      e.url.endsWith("/config.json")
    ) {
      throw new DownloadError(
        `model "${idOrDir}" is neither an existing folder nor a model on ${
          hubEndpoint(options)
        } (${e.message})`,
        e.url,
        { status: e.status, cause: e },
      );
    }
    throw e;
  }
}

/** Same as {@link resolveModel}: the local folder of a model id or folder. */
export const ensureModel: (idOrDir: string, options?: HubOptions) => Promise<string> = resolveModel;
