/**
 * Network access of the in-browser engine, through `fetch` only (a page, a worker, or Deno).
 *
 * Large files are read as streams; when a download breaks off, it resumes with an HTTP range
 * request from the byte where it stopped instead of starting over.
 *
 * @module
 */

/** A streamed download: its total size and its bytes as chunks. */
export interface ByteStream {
  /** Total bytes (the `Content-Length`). */
  size: number;
  /** The body, chunk by chunk; resumes with range requests after a network error. */
  chunks: AsyncIterable<Uint8Array>;
}

/** Fetches `url`, failing with the URL and HTTP status when the response is not OK. */
export async function fetchOk(url: string | URL, init?: RequestInit): Promise<Response> {
  let r: Response;
  try {
    r = await fetch(url, init);
  } catch (e) {
    throw new Error(`${url}: ${(e as Error).message}`);
  }
  if (!r.ok) {
    await r.body?.cancel();
    throw new Error(`${url}: HTTP ${r.status} ${r.statusText}`);
  }
  return r;
}

/** The text of `url`. */
export async function fetchText(url: string | URL): Promise<string> {
  return await (await fetchOk(url)).text();
}

/** The bytes of `url` (small files: configs, prefixes). */
export async function fetchBytes(url: string | URL): Promise<Uint8Array> {
  return new Uint8Array(await (await fetchOk(url)).arrayBuffer());
}

/**
 * Streams `url`. The size comes from `Content-Length`; a server that sends none is asked for
 * the first byte with a range request (its `Content-Range` gives the size). After a network
 * error mid-body, up to `retries` range requests continue from the last byte received.
 */
export async function fetchStream(url: string | URL, retries = 3): Promise<ByteStream> {
  let first = await fetchOk(url);
  let size = Number(first.headers.get("content-length") ?? NaN);
  if (!Number.isFinite(size)) {
    await first.body?.cancel();
    const probe = await fetchOk(url, { headers: { Range: "bytes=0-0" } });
    await probe.body?.cancel();
    const m = /\/(\d+)$/.exec(probe.headers.get("content-range") ?? "");
    if (!m) throw new Error(`${url}: the server reports no size (no Content-Length)`);
    size = Number(m[1]);
    first = await fetchOk(url);
  }
  async function* chunks(): AsyncGenerator<Uint8Array> {
    let got = 0, left = retries;
    let res = first;
    for (;;) {
      const reader = res.body!.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          got += value.byteLength;
          yield value;
        }
      } catch (e) {
        if (left-- <= 0 || got >= size) throw new Error(`${url}: download failed: ${e}`);
        res = await fetchOk(url, { headers: { Range: `bytes=${got}-` } });
        if (res.status !== 206) {
          await res.body?.cancel();
          throw new Error(`${url}: download broke off at byte ${got} and cannot resume: ${e}`);
        }
        continue;
      } finally {
        reader.releaseLock();
      }
      if (got !== size) throw new Error(`${url}: got ${got} bytes, expected ${size}`);
      return;
    }
  }
  return { size, chunks: chunks() };
}
