/**
 * The data sets the project uses, fetched from pinned GitHub commits and checked against their
 * git blob ids:
 * - `e2e`: the official E2E release CSVs (trainset.csv, devset.csv, testset.csv,
 *   testset_w_refs.csv from github.com/tuetschek/e2e-dataset) and the Prefix-Tuning paper's text
 *   files (train.txt, valid.txt, test.txt from `data/e2e_data/src1_*.txt` of
 *   github.com/XiangLi1999/PrefixTuning);
 * - `meteor`: METEOR 1.5's English resources from github.com/cmu-mtlab/meteor (english.synsets,
 *   english.relations, english.exceptions, english.words, paraphrase-en.gz, COPYING.WORDNET).
 *
 * They go to `<cache root>/<name>/`: `$LF_CACHE`, else `$XDG_CACHE_HOME/lf`, else `~/.cache/lf`.
 * `LF_GITHUB_RAW` replaces `https://raw.githubusercontent.com`. Offline, put the files in that
 * folder by hand.
 *
 * @module
 */
import { join } from "node:path";
import { DownloadError, downloadFile, type ProgressMode } from "./download.ts";
import { env, userCacheDir } from "./hub.ts";

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

/** Where data downloads come from and go to; every field defaults from the environment. */
export interface DataOptions {
  /** Cache root (default `$LF_CACHE`, else `$XDG_CACHE_HOME/lf`, else `~/.cache/lf`). */
  cacheRoot?: string;
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

/** The data cache root: the option, then `$LF_CACHE`, then `$XDG_CACHE_HOME/lf` or `~/.cache/lf`. */
export function cacheRoot(options: DataOptions = {}): string {
  if (options.cacheRoot) return options.cacheRoot;
  return env("LF_CACHE") ?? join(userCacheDir(), "lf");
}

function githubRaw(options: DataOptions): string {
  return (options.githubRaw ?? env("LF_GITHUB_RAW") ?? "https://raw.githubusercontent.com").replace(
    /\/+$/,
    "",
  );
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
  options: DataOptions & { out?: string } = {},
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
        fetchImpl: options.fetchImpl,
        progress: options.progress,
        log: options.log,
        retryDelayMs: options.retryDelayMs,
        manualDir: out,
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
