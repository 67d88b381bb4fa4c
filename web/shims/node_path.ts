/**
 * `node:path` for the browser bundles (see web/build.ts): the library's file-system code (the
 * hub cache) is bundled but never runs in a page; these POSIX joins keep it loadable.
 *
 * @module
 */

/** Joins path segments with `/`, collapsing repeated separators. */
export function join(...parts: string[]): string {
  return parts.filter((p) => p !== "").join("/").replace(/\/+/g, "/") || ".";
}

/** The folder part of a path. */
export function dirname(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  const i = trimmed.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : trimmed.slice(0, i);
}
