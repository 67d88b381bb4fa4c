/**
 * Atomic file and folder writes: a reader (or a later run after a crash) sees the old content or
 * the new one, never half of one.
 *
 * Files are written under a temporary name next to the target (`name.tmp-PID-N`), synced and
 * renamed over it. Folders are filled under `dir.tmp-PID-N`; the old folder is renamed to
 * `dir.old-PID-N`, the new one into place, then the old one removed. A kill between those two
 * renames leaves only `dir.old-*`: {@linkcode recoverDir} puts it back. This module imports
 * nothing of the library, so every layer may use it.
 *
 * @module
 */

let counter = 0;

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

function baseOf(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

function tmpName(path: string, tag: "tmp" | "old"): string {
  return `${path}.${tag}-${Deno.pid}-${counter++}`;
}

/**
 * Writes `path` atomically with `fill`, which streams into the open temporary file (so a large
 * file is never built in memory); it is then synced and renamed over `path`. If `fill` throws,
 * `path` is untouched and the temporary file removed.
 */
export async function atomicWriteWith(
  path: string,
  fill: (file: Deno.FsFile) => Promise<void>,
): Promise<void> {
  const tmp = tmpName(path, "tmp");
  const file = await Deno.open(tmp, { write: true, createNew: true });
  try {
    await fill(file);
    await file.syncData();
  } catch (e) {
    file.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  file.close();
  try {
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** Writes all of `bytes` to an open file. */
export async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) done += await file.write(bytes.subarray(done));
}

/** Writes `bytes` to `path` atomically (temporary file, fsync, rename). */
export async function atomicWriteBytes(path: string, bytes: Uint8Array): Promise<void> {
  await atomicWriteWith(path, (file) => writeAll(file, bytes));
}

/** Writes `text` (UTF-8) to `path` atomically. */
export async function atomicWriteText(path: string, text: string): Promise<void> {
  await atomicWriteBytes(path, new TextEncoder().encode(text));
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

/**
 * Replaces the folder `dir` with a new one that `fill` writes into a fresh temporary folder. If
 * `fill` throws, `dir` is untouched and the temporary folder removed.
 */
export async function atomicReplaceDir(
  dir: string,
  fill: (tmpDir: string) => Promise<void>,
): Promise<void> {
  const tmp = tmpName(dir, "tmp");
  await Deno.mkdir(tmp, { recursive: true });
  try {
    await fill(tmp);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
  const old = tmpName(dir, "old");
  const had = await exists(dir);
  if (had) await Deno.rename(dir, old);
  await Deno.rename(tmp, dir);
  if (had) await Deno.remove(old, { recursive: true });
}

/**
 * Makes `dir` whole again after a kill during {@linkcode atomicReplaceDir}: when `dir` is
 * missing and a `dir.old-*` exists, the newest of those becomes `dir`; every other `dir.tmp-*`
 * and `dir.old-*` is removed. Returns what was done, for a log line (empty: nothing).
 */
export async function recoverDir(dir: string): Promise<string[]> {
  const parent = dirOf(dir), base = baseOf(dir);
  const tmps: string[] = [], olds: { path: string; mtime: number }[] = [];
  try {
    for await (const e of Deno.readDir(parent)) {
      if (e.name.startsWith(`${base}.tmp-`)) tmps.push(`${parent}/${e.name}`);
      else if (e.name.startsWith(`${base}.old-`)) {
        const p = `${parent}/${e.name}`;
        const st = await Deno.lstat(p);
        olds.push({ path: p, mtime: st.mtime?.getTime() ?? 0 });
      }
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const done: string[] = [];
  if (!(await exists(dir)) && olds.length) {
    olds.sort((a, b) => b.mtime - a.mtime);
    const newest = olds.shift()!;
    await Deno.rename(newest.path, dir);
    done.push(`restored ${dir} from ${newest.path}`);
  }
  for (const p of [...tmps, ...olds.map((o) => o.path)]) {
    await Deno.remove(p, { recursive: true });
    done.push(`removed ${p}`);
  }
  return done;
}
