/**
 * `node:util` for the browser bundles (see web/build.ts): only command-line parsing uses it,
 * which has no place in a page; calling it there says so.
 *
 * @module
 */

/** Not available in a browser: command lines are parsed by the Deno tasks. */
export function parseArgs(_config: unknown): never {
  throw new Error("parseArgs: command lines are parsed in Deno, not in a browser");
}
