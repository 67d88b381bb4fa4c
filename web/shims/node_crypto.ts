/**
 * `node:crypto` for the browser bundles (see web/build.ts): only the hub's download
 * verification hashes with it, which never runs in a page; calling it there says so.
 *
 * @module
 */

/** An incremental hash, as `node:crypto`'s. */
export interface Hash {
  /** Adds bytes. */
  update(data: Uint8Array): Hash;
  /** The digest. */
  digest(encoding: "hex"): string;
}

/** Not available in a browser: downloads into the hub cache are Deno-only. */
export function createHash(algorithm: string): Hash {
  throw new Error(`createHash(${algorithm}): downloads into the cache need Deno, not a browser`);
}
