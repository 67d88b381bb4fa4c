/**
 * Resumable, verified HTTP downloads.
 *
 * {@link downloadFile} streams to `dest + ".part"`, resumes a partial file with
 * an HTTP `Range` request (and starts over when the server ignores it), checks
 * the size, SHA-256 and/or git blob SHA-1, then renames the part file onto
 * `dest`, so `dest` only ever holds a complete, verified file. Progress goes to
 * stderr: a live bar on a terminal, an occasional line otherwise.
 *
 * SHA-256 is computed incrementally while the bytes arrive (`node:crypto`,
 * native: about 1.2 GB/s here, so about a second for GPT-2 Medium's 1.4 GB);
 * WebCrypto's digest cannot stream.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { dirname } from "node:path";

/** A failed download; `message` names the URL (and the destination when useful). */
export class DownloadError extends Error {
  /** The URL that failed. */
  readonly url: string;
  /** HTTP status when the server answered with an error. */
  readonly status?: number;
  /** Whether trying again (resuming) may succeed. */
  readonly retryable: boolean;

  /** Builds the error. */
  constructor(
    message: string,
    url: string,
    options: { status?: number; retryable?: boolean; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "DownloadError";
    this.url = url;
    this.status = options.status;
    this.retryable = options.retryable ?? false;
  }
}

/** Progress of one transfer, passed to `onProgress` and {@link formatProgress}. */
export interface DownloadProgress {
  /** What is being downloaded (the file name by default). */
  label: string;
  /** Bytes of the file on disk so far, including a resumed prefix. */
  received: number;
  /** Full size when known. */
  total?: number;
  /** Transfer rate of this session (resumed bytes excluded). */
  bytesPerSecond: number;
  /** True on the last report. */
  done: boolean;
}

/** How progress is shown: `auto` picks `bar` on a terminal, `lines` otherwise. */
export type ProgressMode = "auto" | "bar" | "lines" | "none";

/** Options of {@link downloadFile}. */
export interface DownloadOptions {
  /** Expected size in bytes; a different size is an error. */
  expectedSize?: number;
  /** Expected SHA-256, hex. */
  sha256?: string;
  /** Expected git blob id (SHA-1 of `"blob <size>\0" + content`), hex: how GitHub and the HF hub name small files. */
  gitSha1?: string;
  /** Called on every chunk and once at the end. */
  onProgress?: (p: DownloadProgress) => void;
  /** Replaces `fetch` (tests, proxies). */
  fetchImpl?: typeof fetch;
  /** Progress display (default `auto`). */
  progress?: ProgressMode;
  /** Where progress and notices go (default: stderr). */
  log?: (text: string) => void;
  /** Name shown in progress (default: the file name of `dest`). */
  label?: string;
  /** How many times to resume after a dropped connection or a 5xx/429 (default 3). */
  retries?: number;
  /** Base delay before a retry, multiplied by the attempt number (default 1000 ms). */
  retryDelayMs?: number;
  /** Where the offline message says files can be put by hand (default: the folder of `dest`). */
  manualDir?: string;
  /** Aborts the transfer (the part file is kept for a later resume). */
  signal?: AbortSignal;
}

/** What {@link downloadFile} did. */
export interface DownloadResult {
  /** The destination path. */
  path: string;
  /** Its size in bytes. */
  size: number;
  /** Its SHA-256 when it was computed (always after a transfer). */
  sha256?: string;
  /** Bytes reused from an earlier partial download. */
  resumedFrom: number;
  /** True when `dest` already existed and matched, so nothing was fetched. */
  skipped: boolean;
}

const CHUNK = 1 << 20;

function stderrLog(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(text));
}

async function statSize(path: string): Promise<number | undefined> {
  try {
    const s = await Deno.stat(path);
    return s.isFile ? s.size : undefined;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

async function removeIfPresent(path: string): Promise<void> {
  await Deno.remove(path).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
}

/** Feeds `path` (the first `limit` bytes when given) to `hash` in 1 MiB chunks. */
async function hashFileInto(path: string, hash: Hash, limit = Infinity): Promise<number> {
  const file = await Deno.open(path, { read: true });
  const buf = new Uint8Array(CHUNK);
  let total = 0;
  try {
    while (total < limit) {
      const n = await file.read(buf.subarray(0, Math.min(CHUNK, limit - total)));
      if (n === null) break;
      hash.update(buf.subarray(0, n));
      total += n;
    }
  } finally {
    file.close();
  }
  return total;
}

/** SHA-256 of a file, hex, read in 1 MiB chunks. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  await hashFileInto(path, h);
  return h.digest("hex");
}

/** Git blob id of a file (SHA-1 of `"blob <size>\0"` + content), hex. */
export async function gitBlobSha1File(path: string): Promise<string> {
  const size = (await Deno.stat(path)).size;
  const h = createHash("sha1");
  h.update(new TextEncoder().encode(`blob ${size}\0`));
  await hashFileInto(path, h);
  return h.digest("hex");
}

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}

function eta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * One progress line (no newline): label, bar, percent, MB (10^6 bytes), MB/s and ETA.
 *
 * @example `model.safetensors [######--------------]  30.0%  3.0/10.0 MB  1.0 MB/s  ETA 7s`
 */
export function formatProgress(p: DownloadProgress, barWidth = 20): string {
  const rate = `${mb(p.bytesPerSecond)} MB/s`;
  if (p.total === undefined || p.total <= 0) return `${p.label} ${mb(p.received)} MB  ${rate}`;
  const frac = Math.min(1, p.received / p.total);
  const filled = Math.floor(frac * barWidth);
  const bar = "#".repeat(filled) + "-".repeat(barWidth - filled);
  const left = p.done ? "done" : `ETA ${eta((p.total - p.received) / p.bytesPerSecond)}`;
  return `${p.label} [${bar}] ${(frac * 100).toFixed(1).padStart(5)}%  ${mb(p.received)}/${
    mb(p.total)
  } MB  ${rate}  ${left}`;
}

/** Throttled progress output: a redrawn bar on a terminal, a line every 5 s otherwise. */
class Reporter {
  #mode: "bar" | "lines" | "none";
  #log: (text: string) => void;
  #onProgress?: (p: DownloadProgress) => void;
  #label: string;
  #start = performance.now();
  #last = 0;
  #base = 0;
  total?: number;

  constructor(opts: DownloadOptions, label: string) {
    const mode = opts.progress ?? "auto";
    this.#mode = mode === "auto" ? (Deno.stderr.isTerminal() ? "bar" : "lines") : mode;
    this.#log = opts.log ?? stderrLog;
    this.#onProgress = opts.onProgress;
    this.#label = label;
  }

  /** Starts timing a transfer that continues from `base` bytes. */
  begin(base: number, total: number | undefined): void {
    this.#base = base;
    this.total = total;
    this.#start = performance.now();
    this.#last = this.#start;
  }

  update(received: number, done = false): void {
    const now = performance.now();
    const secs = Math.max((now - this.#start) / 1000, 1e-3);
    const p: DownloadProgress = {
      label: this.#label,
      received,
      total: this.total,
      bytesPerSecond: (received - this.#base) / secs,
      done,
    };
    this.#onProgress?.(p);
    if (this.#mode === "bar" && (done || now - this.#last >= 100)) {
      this.#last = now;
      this.#log(`\r${formatProgress(p)}\x1b[K${done ? "\n" : ""}`);
    } else if (this.#mode === "lines" && (done || now - this.#last >= 5000)) {
      this.#last = now;
      this.#log(formatProgress(p) + "\n");
    }
  }

  note(text: string): void {
    if (this.#mode !== "none") this.#log(`${this.#mode === "bar" ? "\r\x1b[K" : ""}${text}\n`);
  }
}

/** Turns a network-level fetch failure into the "are you offline?" message. */
export function unreachableError(url: string, cause: unknown, manualDir: string): DownloadError {
  let host = url;
  try {
    host = new URL(url).host;
  } catch { /* keep the raw URL */ }
  // Deno wraps the useful detail (DNS failure, connection refused) in `cause`.
  let inner: unknown = cause;
  while (inner instanceof Error && inner.cause instanceof Error) inner = inner.cause;
  const why = (inner instanceof Error ? inner.message : String(inner))
    .replace(/^error sending request for url \([^)]*\): /, "");
  return new DownloadError(
    `cannot reach ${host}: ${why} — are you offline? files can be placed by hand in ${manualDir}`,
    url,
    { cause },
  );
}

/** Parses `Content-Range: bytes a-b/total` (total may be `*`). */
function parseContentRange(value: string | null): { start: number; total?: number } | undefined {
  const m = value?.match(/^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i);
  if (!m) return undefined;
  return { start: Number(m[1]), total: m[3] === "*" ? undefined : Number(m[3]) };
}

function contentLength(res: Response): number | undefined {
  // With a content encoding the header counts encoded bytes, not the file's.
  if (res.headers.get("content-encoding")) return undefined;
  const v = res.headers.get("content-length");
  return v !== null && /^\d+$/.test(v) ? Number(v) : undefined;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) done += await file.write(bytes.subarray(done));
}

/**
 * Downloads `url` to `dest`, resuming `dest + ".part"` if present, verifying
 * size and hashes, and renaming atomically at the end. When `dest` already
 * exists and matches the given size/hashes it is kept and nothing is fetched.
 *
 * @throws {DownloadError} on HTTP errors, verification failures (the part file is
 * removed, `dest` untouched) and network failures (the part file is kept)
 */
export async function downloadFile(
  url: string | URL,
  dest: string,
  options: DownloadOptions = {},
): Promise<DownloadResult> {
  const href = String(url);
  const label = options.label ?? dest.split(/[\\/]/).pop() ?? dest;
  const reporter = new Reporter(options, label);
  const existing = await statSize(dest);
  if (existing !== undefined) {
    const problem = await verify(dest, existing, options);
    if (!problem) return { path: dest, size: existing, resumedFrom: 0, skipped: true };
    reporter.note(`${dest} exists but ${problem}: downloading it again`);
  }
  await Deno.mkdir(dirname(dest), { recursive: true });
  const retries = options.retries ?? 3;
  for (let attempt = 0;; attempt++) {
    try {
      return await attemptDownload(href, dest, options, reporter);
    } catch (e) {
      if (
        !(e instanceof DownloadError) || !e.retryable || attempt >= retries ||
        options.signal?.aborted
      ) throw e;
      reporter.note(`${e.message}; retrying (${attempt + 1}/${retries})`);
      await new Promise((r) => setTimeout(r, (options.retryDelayMs ?? 1000) * (attempt + 1)));
    }
  }
}

/** Returns what is wrong with a complete file, or undefined when it matches. */
async function verify(
  path: string,
  size: number,
  options: DownloadOptions,
  sha256?: string,
): Promise<string | undefined> {
  if (options.expectedSize !== undefined && size !== options.expectedSize) {
    return `has ${size} bytes, expected ${options.expectedSize}`;
  }
  if (options.sha256) {
    const got = sha256 ?? await sha256File(path);
    if (got !== options.sha256.toLowerCase()) {
      return `has sha256 ${got}, expected ${options.sha256.toLowerCase()}`;
    }
  }
  if (options.gitSha1) {
    const got = await gitBlobSha1File(path);
    if (got !== options.gitSha1.toLowerCase()) {
      return `has git blob id ${got}, expected ${options.gitSha1.toLowerCase()}`;
    }
  }
  return undefined;
}

async function attemptDownload(
  url: string,
  dest: string,
  options: DownloadOptions,
  reporter: Reporter,
): Promise<DownloadResult> {
  const part = `${dest}.part`;
  const fetchImpl = options.fetchImpl ?? fetch;
  const manualDir = options.manualDir ?? dirname(dest);
  let offset = (await statSize(part)) ?? 0;
  if (options.expectedSize !== undefined && offset > options.expectedSize) {
    await removeIfPresent(part);
    offset = 0;
  }
  if (offset > 0 && offset === options.expectedSize) {
    return await finish(url, dest, part, offset, options, reporter);
  }

  let res: Response;
  for (;;) {
    try {
      res = await fetchImpl(url, {
        headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
        signal: options.signal,
      });
    } catch (e) {
      if (options.signal?.aborted) throw e;
      throw unreachableError(url, e, manualDir);
    }
    if (res.status === 416 && offset > 0) {
      // Our part file is at or past the end as the server sees it: start over.
      await res.body?.cancel();
      reporter.note(`server refused to resume ${url} at byte ${offset}: starting over`);
      await removeIfPresent(part);
      offset = 0;
      continue;
    }
    if (res.status === 206) {
      const range = parseContentRange(res.headers.get("content-range"));
      if (range?.start === offset) {
        reporter.begin(offset, range.total ?? options.expectedSize);
        break;
      }
      await res.body?.cancel();
      reporter.note(`server sent an unexpected range for ${url}: starting over`);
      await removeIfPresent(part);
      offset = 0;
      continue;
    }
    if (res.ok && res.status !== 206) {
      if (offset > 0) reporter.note(`server ignored the range request for ${url}: starting over`);
      offset = 0;
      reporter.begin(0, contentLength(res) ?? options.expectedSize);
      break;
    }
    await res.body?.cancel();
    const retryable = res.status >= 500 || res.status === 429;
    const what = res.status === 404 ? "not found" : "failed";
    throw new DownloadError(
      `${url} ${what}: HTTP ${res.status} ${res.statusText}`.trimEnd(),
      url,
      { status: res.status, retryable },
    );
  }

  const total = reporter.total;
  if (options.expectedSize !== undefined && total !== undefined && total !== options.expectedSize) {
    await res.body?.cancel();
    await removeIfPresent(part);
    throw new DownloadError(
      `${url}: server reports ${total} bytes but ${options.expectedSize} were expected`,
      url,
    );
  }

  const hash = createHash("sha256");
  if (offset > 0) await hashFileInto(part, hash, offset);
  const file = await Deno.open(
    part,
    offset > 0 ? { write: true, append: true } : {
      write: true,
      create: true,
      truncate: true,
    },
  );
  let received = offset;
  reporter.update(received);
  try {
    if (!res.body) throw new DownloadError(`${url}: empty response body`, url, { retryable: true });
    const reader = res.body.getReader();
    try {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (e) {
          if (options.signal?.aborted) throw e;
          throw new DownloadError(
            `connection to ${new URL(url).host} lost after ${received} bytes of ${url} (${
              e instanceof Error ? e.message.split("\n")[0] : e
            })`,
            url,
            { retryable: true, cause: e },
          );
        }
        if (chunk.done) break;
        await writeAll(file, chunk.value);
        hash.update(chunk.value);
        received += chunk.value.byteLength;
        if (total !== undefined && received > total) {
          throw new DownloadError(
            `${url}: server sent more than the announced ${total} bytes`,
            url,
            {
              retryable: true,
            },
          );
        }
        reporter.update(received);
      }
    } finally {
      await reader.cancel().catch(() => {});
      reader.releaseLock();
    }
  } finally {
    file.close();
  }
  if (total !== undefined && received < total) {
    throw new DownloadError(`${url}: transfer ended after ${received} of ${total} bytes`, url, {
      retryable: true,
    });
  }
  return await finish(url, dest, part, offset, options, reporter, hash.digest("hex"), received);
}

/** Verifies the complete part file, then renames it onto `dest`. */
async function finish(
  url: string,
  dest: string,
  part: string,
  resumedFrom: number,
  options: DownloadOptions,
  reporter: Reporter,
  sha256?: string,
  size?: number,
): Promise<DownloadResult> {
  size ??= (await statSize(part)) ?? 0;
  if (sha256 === undefined) {
    sha256 = await sha256File(part);
    reporter.begin(size, size);
  }
  const problem = await verify(part, size, options, sha256);
  if (problem) {
    await removeIfPresent(part);
    throw new DownloadError(`${url}: download ${problem}; removed it, ${dest} not written`, url);
  }
  await Deno.rename(part, dest);
  reporter.update(size, true);
  return { path: dest, size, sha256, resumedFrom, skipped: false };
}
