/**
 * Reading a safetensors file from a byte stream (a `fetch` body, a `File`), for hosts without a
 * file system: each tensor is handed out as soon as its bytes have arrived, in file order, in a
 * buffer of its own. Nothing else is kept, so loading never holds the file and the decoded
 * tensors at once: a caller that uploads each tensor to a backend and drops it holds at most one
 * tensor on the host.
 *
 * @module
 */
import {
  decode,
  type HeaderEntry,
  parseHeader,
  parseHeaderLength,
  type SafetensorsDtype,
  SafetensorsError,
} from "./safetensors.ts";

/** One tensor read from a stream; `data` owns its buffer. */
export interface StreamedTensor {
  /** Name in the file. */
  name: string;
  /** Stored dtype (values are decoded: floats to f32, integers to i32). */
  dtype: SafetensorsDtype;
  /** Shape. */
  shape: number[];
  /** Decoded values. */
  data: Float32Array | Int32Array;
}

/** The header of a streamed file, known before any tensor arrives. */
export interface StreamedHeader {
  /** Tensors in file (byte) order. */
  entries: readonly HeaderEntry[];
  /** `__metadata__` strings. */
  metadata: Record<string, string>;
}

/** Pulls exact byte counts out of a chunk stream. */
class ChunkReader {
  #it: AsyncIterator<Uint8Array>;
  #chunk: Uint8Array = new Uint8Array(0);
  #at = 0;
  /** Bytes consumed so far. */
  offset = 0;

  constructor(chunks: AsyncIterable<Uint8Array>, readonly source: string) {
    this.#it = chunks[Symbol.asyncIterator]();
  }

  /** Fills `out` completely; fails, naming the offset, if the stream ends first. */
  async readInto(out: Uint8Array, what: string): Promise<void> {
    let got = 0;
    while (got < out.byteLength) {
      if (this.#at === this.#chunk.byteLength) {
        const r = await this.#it.next();
        if (r.done) {
          throw new SafetensorsError(
            `${this.source}: stream ended at byte ${this.offset} inside ${what}`,
          );
        }
        this.#chunk = r.value;
        this.#at = 0;
        continue;
      }
      const n = Math.min(out.byteLength - got, this.#chunk.byteLength - this.#at);
      out.set(this.#chunk.subarray(this.#at, this.#at + n), got);
      this.#at += n;
      got += n;
      this.offset += n;
    }
  }

  /** Stops the underlying stream early (a failed load). */
  async cancel(): Promise<void> {
    await this.#it.return?.();
  }
}

/**
 * Reads a safetensors stream of `size` bytes (the whole file: a `Content-Length`, a `File`'s
 * size). Calls `onHeader` once the header is validated, then `onTensor` for each tensor in
 * file order; the next tensor is read only after `onTensor`'s promise settles. Errors name
 * `source` and the tensor or byte at fault.
 */
export async function readSafetensorsStream(
  chunks: AsyncIterable<Uint8Array>,
  size: number,
  onTensor: (t: StreamedTensor) => void | Promise<void>,
  opts: { source?: string; onHeader?: (h: StreamedHeader) => void } = {},
): Promise<StreamedHeader> {
  const source = opts.source ?? "<safetensors stream>";
  const r = new ChunkReader(chunks, source);
  try {
    const lenBytes = new Uint8Array(8);
    await r.readInto(lenBytes, "the header length");
    const n = parseHeaderLength(lenBytes, size, source);
    const headerBytes = new Uint8Array(n);
    await r.readInto(headerBytes, "the header");
    const dataStart = 8 + n;
    const { entries, metadata } = parseHeader(headerBytes, size - dataStart, source);
    const ordered = [...entries].sort((a, b) => a.begin - b.begin);
    const header = { entries: ordered, metadata };
    opts.onHeader?.(header);
    for (const e of ordered) {
      const gap = dataStart + e.begin - r.offset;
      if (gap > 0) await r.readInto(new Uint8Array(gap), `the padding before "${e.name}"`);
      const raw = new Uint8Array(e.end - e.begin);
      await r.readInto(raw, `tensor "${e.name}"`);
      // A fresh buffer is aligned, so F32/I32 decode to views of it: one copy per tensor.
      const data = decode(raw, e.dtype, e.name, source);
      await onTensor({ name: e.name, dtype: e.dtype, shape: e.shape, data });
    }
    return header;
  } catch (e) {
    await r.cancel().catch(() => {});
    throw e;
  }
}
