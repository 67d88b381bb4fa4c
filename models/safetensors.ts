/**
 * Reader and writer for the safetensors format used by Hugging Face checkpoints.
 *
 * Layout: an 8-byte little-endian u64 `N`, then `N` bytes of UTF-8 JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {key: value}}`,
 * then the data buffer; offsets are relative to the start of that buffer.
 *
 * Reading is lazy: {@link readSafetensors} and {@link loadSafetensors} validate the
 * whole header up front, but decode a tensor only when its `data` is first read
 * (and {@link loadSafetensors} reads only that tensor's bytes from disk), so a
 * 1.4 GB checkpoint is never held twice. Floating dtypes (F64, F32, F16, BF16)
 * decode to `Float32Array`, integer dtypes to `Int32Array` (64-bit and unsigned
 * 32-bit values must fit in int32).
 *
 * ```ts
 * import { loadSafetensors } from "./safetensors.ts";
 * const st = await loadSafetensors("model.safetensors");
 * for (const [name, t] of st.tensors) console.log(name, t.dtype, t.shape);
 * ```
 *
 * @module
 */
import { atomicWriteWith, writeAll } from "../io/atomic.ts";

/** Every malformed file or invalid argument raises this error (and no other). */
export class SafetensorsError extends Error {
  /** Builds the error; `message` already names the file and tensor at fault. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SafetensorsError";
  }
}

/** The dtypes this module reads and writes. */
export type SafetensorsDtype =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL";

/** Bytes per element of each supported dtype. */
export const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

/** Dtypes the format defines but this module cannot decode; named in errors. */
const KNOWN_UNSUPPORTED = new Set(["F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2"]);

/** Same limit as the reference implementation: bigger headers are rejected as hostile. */
const MAX_HEADER_BYTES = 100_000_000;

/** One tensor of a safetensors file. */
export interface SafeTensor {
  /** Dtype as stored in the file. */
  readonly dtype: SafetensorsDtype;
  /** Shape, outermost dimension first. */
  readonly shape: number[];
  /** Size of the stored bytes. */
  readonly byteLength: number;
  /**
   * Decoded values, computed on first access and then cached. Reading it may
   * throw {@link SafetensorsError} (an I64 value outside int32, a file that
   * changed on disk). For F32/I32 tensors read from bytes it can be a view on
   * those bytes (no copy). Delete the entry from the map to release it.
   */
  readonly data: Float32Array | Int32Array;
}

/** A parsed safetensors file. */
export interface SafeTensors {
  /** Tensors by name, in data-offset order. */
  tensors: Map<string, SafeTensor>;
  /** The `__metadata__` string map (empty when absent). */
  metadata: Record<string, string>;
}

/** Tensor passed to {@link encodeSafetensors} / {@link writeSafetensors}. */
export interface TensorToWrite {
  /** Stored dtype; values are converted (F16/BF16 round to nearest even). */
  dtype: SafetensorsDtype;
  /** Shape; its product must equal `data.length`. */
  shape: readonly number[];
  /** Values in row-major order. Integers must fit the dtype. */
  data: ArrayLike<number>;
}

/** One tensor of a header: name, dtype, shape and byte range in the data section. */
export interface HeaderEntry {
  /** Tensor name. */
  name: string;
  /** Stored dtype. */
  dtype: SafetensorsDtype;
  /** Shape. */
  shape: number[];
  /** First byte in the data section. */
  begin: number;
  /** One past the last byte in the data section. */
  end: number;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------
// Half-precision conversions.

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** Decodes IEEE binary16 bits (0..65535) to a number (NaN payloads are not kept). */
export function f16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

/** Encodes a number as IEEE binary16 bits, rounding to nearest, ties to even. */
export function numberToF16Bits(value: number): number {
  // Round to f32 first: this is the precision the values come from in practice,
  // and it makes the bit manipulation below exact.
  scratchF32[0] = value;
  const b = scratchU32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: rounds to zero
    const m = mant | 0x800000;
    const shift = 14 - e;
    let r = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (r & 1))) r++;
    return sign | r; // a carry into bit 10 correctly yields the smallest normal
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1))) r++; // a carry can reach inf, as it should
  return sign | r;
}

/** Decodes bfloat16 bits (the top half of an f32) to a number. */
export function bf16BitsToNumber(bits: number): number {
  scratchU32[0] = (bits & 0xffff) << 16;
  return scratchF32[0];
}

/** Encodes a number as bfloat16 bits, rounding to nearest, ties to even (NaN stays NaN). */
export function numberToBf16Bits(value: number): number {
  scratchF32[0] = value;
  const b = scratchU32[0];
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

let f16Table: Float32Array | undefined;
function getF16Table(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = f16BitsToNumber(i);
  }
  return f16Table;
}

// ---------------------------------------------------------------------------
// Header parsing and validation.

function fail(source: string, what: string): never {
  throw new SafetensorsError(`${source}: ${what}`);
}

function isDtype(s: string): s is SafetensorsDtype {
  return Object.hasOwn(DTYPE_BYTES, s);
}

function describe(v: unknown): string {
  try {
    const s = JSON.stringify(v);
    return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + "..." : s;
  } catch {
    return String(v);
  }
}

/** Reads the u64 header length; returns the header size, validated against `fileSize`. */
export function parseHeaderLength(prefix: Uint8Array, fileSize: number, source: string): number {
  if (fileSize < 8) {
    fail(source, `file is ${fileSize} bytes, too short for the 8-byte header length`);
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  const n = hi * 2 ** 32 + lo;
  if (n > fileSize - 8) {
    fail(
      source,
      `header length ${n} goes beyond the file (${fileSize} bytes, ${
        fileSize - 8
      } after the length)`,
    );
  }
  if (n > MAX_HEADER_BYTES) {
    fail(source, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  if (n < 2) fail(source, `header length ${n} is too small for a JSON object`);
  return n;
}

/** Parses and fully validates the JSON header against a data section of `dataSize` bytes. */
export function parseHeader(
  headerBytes: Uint8Array,
  dataSize: number,
  source: string,
): { entries: HeaderEntry[]; metadata: Record<string, string> } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch {
    fail(source, "header is not valid UTF-8");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(source, `header is not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    fail(
      source,
      `header must be a JSON object, got ${Array.isArray(json) ? "an array" : describe(json)}`,
    );
  }
  const header = json as Record<string, unknown>;
  const metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const name of Object.keys(header)) {
    const value = header[name];
    if (name === "__metadata__") {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        fail(source, `"__metadata__" must be an object of strings, got ${describe(value)}`);
      }
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== "string") {
          fail(source, `"__metadata__" key "${k}" must be a string, got ${describe(v)}`);
        }
        metadata[k] = v;
      }
      continue;
    }
    entries.push(parseEntry(name, value, source));
  }
  // The buffer must be covered exactly, in order, with no overlap and no gap
  // (the reference implementation enforces the same).
  const sorted = entries.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  let prev: HeaderEntry | undefined;
  for (const e of sorted) {
    if (e.begin < expected) {
      fail(
        source,
        `tensor "${e.name}": data_offsets [${e.begin}, ${e.end}] overlap tensor "${prev?.name}" ending at ${expected}`,
      );
    }
    if (e.begin > expected) {
      fail(
        source,
        `tensor "${e.name}": data_offsets [${e.begin}, ${e.end}] leave a gap after byte ${expected}` +
          (prev ? ` (end of tensor "${prev.name}")` : ""),
      );
    }
    if (e.end > dataSize) {
      fail(
        source,
        `tensor "${e.name}": data_offsets [${e.begin}, ${e.end}] go beyond the ${dataSize}-byte data section`,
      );
    }
    expected = e.end;
    prev = e;
  }
  if (expected !== dataSize) {
    fail(
      source,
      `data section is ${dataSize} bytes but the tensors cover ${expected} (file truncated or padded?)`,
    );
  }
  return { entries: sorted, metadata };
}

function parseEntry(name: string, value: unknown, source: string): HeaderEntry {
  const where = `tensor "${name}"`;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail(source, `${where}: entry must be an object, got ${describe(value)}`);
  }
  const v = value as Record<string, unknown>;
  const dtype = v.dtype;
  if (typeof dtype !== "string") {
    fail(source, `${where}: "dtype" must be a string, got ${describe(dtype)}`);
  }
  if (!isDtype(dtype)) {
    fail(
      source,
      KNOWN_UNSUPPORTED.has(dtype)
        ? `${where}: dtype ${dtype} is not supported`
        : `${where}: unknown dtype ${describe(dtype)}`,
    );
  }
  const shape = v.shape;
  if (!Array.isArray(shape)) {
    fail(source, `${where}: "shape" must be an array, got ${describe(shape)}`);
  }
  let numel = 1;
  for (const d of shape) {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
      fail(
        source,
        `${where}: shape ${describe(shape)} has a dimension that is not a non-negative integer`,
      );
    }
    numel *= d;
    if (!Number.isSafeInteger(numel)) {
      fail(source, `${where}: shape ${describe(shape)} has too many elements`);
    }
  }
  const offsets = v.data_offsets;
  if (
    !Array.isArray(offsets) || offsets.length !== 2 ||
    !offsets.every((o) => typeof o === "number" && Number.isSafeInteger(o) && o >= 0)
  ) {
    fail(
      source,
      `${where}: "data_offsets" must be two non-negative integers, got ${describe(offsets)}`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) fail(source, `${where}: data_offsets [${begin}, ${end}] end before they begin`);
  const bytes = numel * DTYPE_BYTES[dtype];
  if (end - begin !== bytes) {
    fail(
      source,
      `${where}: shape ${
        describe(shape)
      } of ${dtype} needs ${bytes} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
    );
  }
  return { name, dtype, shape: shape.slice() as number[], begin, end };
}

// ---------------------------------------------------------------------------
// Decoding.

/**
 * Decodes the raw bytes of one tensor. Views `raw` without copying when the
 * dtype is F32/I32 and the bytes are aligned, so callers pass bytes they own.
 */
export function decode(
  raw: Uint8Array,
  dtype: SafetensorsDtype,
  name: string,
  source: string,
): Float32Array | Int32Array {
  const size = DTYPE_BYTES[dtype];
  const n = raw.byteLength / size;
  const aligned = LITTLE_ENDIAN && raw.byteOffset % size === 0;
  if (!aligned && size > 1) {
    raw = raw.slice(); // fresh buffer at offset 0: aligned for every element size
    if (LITTLE_ENDIAN) return decode(raw, dtype, name, source);
  }
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  switch (dtype) {
    case "F32":
      if (LITTLE_ENDIAN) return new Float32Array(raw.buffer, raw.byteOffset, n);
      return Float32Array.from({ length: n }, (_, i) => dv.getFloat32(i * 4, true));
    case "F64": {
      const out = new Float32Array(n);
      if (LITTLE_ENDIAN) out.set(new Float64Array(raw.buffer, raw.byteOffset, n));
      else for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true);
      return out;
    }
    case "F16": {
      const table = getF16Table();
      const out = new Float32Array(n);
      if (LITTLE_ENDIAN) {
        const u16 = new Uint16Array(raw.buffer, raw.byteOffset, n);
        for (let i = 0; i < n; i++) out[i] = table[u16[i]];
      } else for (let i = 0; i < n; i++) out[i] = table[dv.getUint16(i * 2, true)];
      return out;
    }
    case "BF16": {
      const out = new Float32Array(n);
      const outBits = new Uint32Array(out.buffer);
      if (LITTLE_ENDIAN) {
        const u16 = new Uint16Array(raw.buffer, raw.byteOffset, n);
        for (let i = 0; i < n; i++) outBits[i] = u16[i] << 16;
      } else for (let i = 0; i < n; i++) out[i] = bf16BitsToNumber(dv.getUint16(i * 2, true));
      return out;
    }
    case "I32":
      if (LITTLE_ENDIAN) return new Int32Array(raw.buffer, raw.byteOffset, n);
      return Int32Array.from({ length: n }, (_, i) => dv.getInt32(i * 4, true));
    case "I64":
    case "U64": {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const lo = dv.getInt32(i * 8, true);
        const hi = dv.getInt32(i * 8 + 4, true);
        // In int32 range iff the high word is the sign extension of the low word
        // (for U64 additionally non-negative).
        if (hi !== lo >> 31 || (dtype === "U64" && lo < 0)) {
          const big = dtype === "U64" ? dv.getBigUint64(i * 8, true) : dv.getBigInt64(i * 8, true);
          fail(
            source,
            `tensor "${name}": ${dtype} value ${big} at index ${i} does not fit in int32`,
          );
        }
        out[i] = lo;
      }
      return out;
    }
    case "U32": {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = dv.getUint32(i * 4, true);
        if (v > 0x7fffffff) {
          fail(source, `tensor "${name}": U32 value ${v} at index ${i} does not fit in int32`);
        }
        out[i] = v;
      }
      return out;
    }
    case "I16":
      return Int32Array.from({ length: n }, (_, i) => dv.getInt16(i * 2, true));
    case "U16":
      return Int32Array.from({ length: n }, (_, i) => dv.getUint16(i * 2, true));
    case "I8":
      return Int32Array.from(new Int8Array(raw.buffer, raw.byteOffset, n));
    case "U8":
      return Int32Array.from(raw);
    case "BOOL":
      return Int32Array.from(raw, (b) => (b ? 1 : 0));
  }
}

class LazyTensor implements SafeTensor {
  readonly dtype: SafetensorsDtype;
  readonly shape: number[];
  readonly byteLength: number;
  #load: () => Float32Array | Int32Array;
  #data: Float32Array | Int32Array | undefined;

  constructor(entry: HeaderEntry, load: () => Float32Array | Int32Array) {
    this.dtype = entry.dtype;
    this.shape = entry.shape;
    this.byteLength = entry.end - entry.begin;
    this.#load = load;
  }

  get data(): Float32Array | Int32Array {
    this.#data ??= this.#load();
    return this.#data;
  }
}

/**
 * Parses a safetensors file held in memory. The header is validated at once;
 * each tensor is decoded when its `data` is first read (F32/I32 as views on
 * `bytes` when aligned, so do not reuse `bytes` afterwards).
 *
 * @param bytes the whole file
 * @param source name used in error messages (a path or URL)
 * @throws {SafetensorsError} when the file is malformed
 */
export function readSafetensors(bytes: Uint8Array, source = "<safetensors bytes>"): SafeTensors {
  if (!(bytes instanceof Uint8Array)) {
    throw new SafetensorsError(`${source}: expected a Uint8Array`);
  }
  const n = parseHeaderLength(bytes, bytes.byteLength, source);
  const dataStart = 8 + n;
  const { entries, metadata } = parseHeader(
    bytes.subarray(8, dataStart),
    bytes.byteLength - dataStart,
    source,
  );
  const tensors = new Map<string, SafeTensor>();
  for (const e of entries) {
    const raw = bytes.subarray(dataStart + e.begin, dataStart + e.end);
    tensors.set(e.name, new LazyTensor(e, () => decode(raw, e.dtype, e.name, source)));
  }
  return { tensors, metadata };
}

async function readExactly(file: Deno.FsFile, buf: Uint8Array): Promise<number> {
  let got = 0;
  while (got < buf.byteLength) {
    const n = await file.read(buf.subarray(got));
    if (n === null) break;
    got += n;
  }
  return got;
}

/**
 * Opens a safetensors file: reads and validates only its header now; each
 * tensor's bytes are read from disk when its `data` is first accessed, so no
 * second copy of a large checkpoint is ever held.
 *
 * @param path file to read
 * @throws {SafetensorsError} when the file is malformed; Deno errors for I/O failures
 */
export async function loadSafetensors(path: string | URL): Promise<SafeTensors> {
  const source = path instanceof URL ? path.pathname : path;
  const file = await Deno.open(path, { read: true });
  let entries: HeaderEntry[];
  let metadata: Record<string, string>;
  let dataStart: number;
  try {
    const fileSize = (await file.stat()).size;
    const prefix = new Uint8Array(8);
    const got = await readExactly(file, prefix);
    const n = parseHeaderLength(prefix, got < 8 ? got : fileSize, source);
    const headerBytes = new Uint8Array(n);
    if (await readExactly(file, headerBytes) !== n) {
      fail(source, `file ended inside the ${n}-byte header`);
    }
    dataStart = 8 + n;
    ({ entries, metadata } = parseHeader(headerBytes, fileSize - dataStart, source));
  } finally {
    file.close();
  }
  const tensors = new Map<string, SafeTensor>();
  for (const e of entries) {
    tensors.set(
      e.name,
      new LazyTensor(
        e,
        () => decode(readRange(path, source, dataStart + e.begin, e), e.dtype, e.name, source),
      ),
    );
  }
  return { tensors, metadata };
}

/** Reads one tensor's bytes synchronously (a getter cannot await). */
function readRange(path: string | URL, source: string, start: number, e: HeaderEntry): Uint8Array {
  const buf = new Uint8Array(e.end - e.begin);
  if (buf.byteLength === 0) return buf;
  const file = Deno.openSync(path, { read: true });
  try {
    file.seekSync(start, Deno.SeekMode.Start);
    let got = 0;
    while (got < buf.byteLength) {
      const n = file.readSync(buf.subarray(got));
      if (n === null) break;
      got += n;
    }
    if (got !== buf.byteLength) {
      fail(
        source,
        `tensor "${e.name}": file ended after ${got} of its ${buf.byteLength} bytes (changed on disk?)`,
      );
    }
  } finally {
    file.close();
  }
  return buf;
}

// ---------------------------------------------------------------------------
// Encoding.

const INT_RANGE: Partial<Record<SafetensorsDtype, [number, number]>> = {
  I64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  I32: [-(2 ** 31), 2 ** 31 - 1],
  I16: [-32768, 32767],
  I8: [-128, 127],
  U64: [0, Number.MAX_SAFE_INTEGER],
  U32: [0, 2 ** 32 - 1],
  U16: [0, 65535],
  U8: [0, 255],
  BOOL: [0, 1],
};

function checkShape(name: string, t: TensorToWrite): void {
  if (typeof t !== "object" || t === null) {
    throw new SafetensorsError(`tensor "${name}": expected {dtype, shape, data}`);
  }
  if (!isDtype(t.dtype as string)) {
    throw new SafetensorsError(`tensor "${name}": unknown dtype ${describe(t.dtype)}`);
  }
  if (!Array.isArray(t.shape)) {
    throw new SafetensorsError(`tensor "${name}": shape must be an array`);
  }
  let numel = 1;
  for (const d of t.shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new SafetensorsError(
        `tensor "${name}": shape ${describe(t.shape)} is not a list of non-negative integers`,
      );
    }
    numel *= d;
  }
  if (!t.data || typeof t.data.length !== "number" || t.data.length !== numel) {
    throw new SafetensorsError(
      `tensor "${name}": shape ${
        describe(t.shape)
      } has ${numel} elements but data has ${t.data?.length}`,
    );
  }
}

/** Converts one tensor's values to its stored little-endian bytes. */
function encodeTensor(name: string, t: TensorToWrite): Uint8Array {
  const n = t.data.length;
  const data = t.data;
  switch (t.dtype) {
    case "F32": {
      const f = data instanceof Float32Array ? data : Float32Array.from(data);
      if (LITTLE_ENDIAN) return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
      const out = new Uint8Array(n * 4);
      const dv = new DataView(out.buffer);
      for (let i = 0; i < n; i++) dv.setFloat32(i * 4, f[i], true);
      return out;
    }
    case "F64": {
      const out = new Uint8Array(n * 8);
      const dv = new DataView(out.buffer);
      for (let i = 0; i < n; i++) dv.setFloat64(i * 8, data[i], true);
      return out;
    }
    case "F16":
    case "BF16": {
      const conv = t.dtype === "F16" ? numberToF16Bits : numberToBf16Bits;
      const out = new Uint8Array(n * 2);
      const dv = new DataView(out.buffer);
      for (let i = 0; i < n; i++) dv.setUint16(i * 2, conv(data[i]), true);
      return out;
    }
    default: {
      const [min, max] = INT_RANGE[t.dtype]!;
      const size = DTYPE_BYTES[t.dtype];
      const out = new Uint8Array(n * size);
      const dv = new DataView(out.buffer);
      for (let i = 0; i < n; i++) {
        const v = data[i];
        if (!Number.isInteger(v) || v < min || v > max) {
          throw new SafetensorsError(
            `tensor "${name}": value ${v} at index ${i} is not a valid ${t.dtype}`,
          );
        }
        switch (size) {
          case 1:
            out[i] = v;
            break;
          case 2:
            dv.setUint16(i * 2, v & 0xffff, true);
            break;
          case 4:
            dv.setUint32(i * 4, v >>> 0, true);
            break;
          default: {
            const hi = Math.floor(v / 2 ** 32);
            dv.setUint32(i * 8, v - hi * 2 ** 32, true);
            dv.setInt32(i * 8 + 4, hi, true);
          }
        }
      }
      return out;
    }
  }
}

interface Plan {
  header: Uint8Array;
  names: string[];
  total: number;
}

/** Validates the inputs and builds the padded header; tensors go in sorted-name order. */
function plan(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Plan {
  if (typeof tensors !== "object" || tensors === null) {
    throw new SafetensorsError("tensors must be an object");
  }
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") {
        throw new SafetensorsError(`metadata key "${k}" must be a string, got ${describe(v)}`);
      }
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const name of names) {
    if (name === "__metadata__") {
      throw new SafetensorsError(`"__metadata__" cannot be a tensor name`);
    }
    const t = tensors[name];
    checkShape(name, t);
    const bytes = t.data.length * DTYPE_BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const utf8 = new TextEncoder().encode(json);
  // Pad with spaces so the data section starts 8-byte aligned (as the reference writer does).
  const padded = Math.ceil(utf8.byteLength / 8) * 8;
  json += " ".repeat(padded - utf8.byteLength);
  const out = new Uint8Array(8 + padded);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, padded, true);
  dv.setUint32(4, 0, true);
  out.set(new TextEncoder().encode(json), 8);
  return { header: out, names, total: 8 + padded + offset };
}

/**
 * Serialises tensors to safetensors bytes (header padded with spaces to an
 * 8-byte boundary, tensors stored in sorted-name order).
 *
 * @throws {SafetensorsError} on a bad dtype, shape, value or metadata entry
 */
export function encodeSafetensors(
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Uint8Array<ArrayBuffer> {
  const p = plan(tensors, metadata);
  const out = new Uint8Array(p.total);
  out.set(p.header, 0);
  let at = p.header.byteLength;
  for (const name of p.names) {
    const bytes = encodeTensor(name, tensors[name]);
    out.set(bytes, at);
    at += bytes.byteLength;
  }
  return out;
}

/**
 * Writes tensors to `path` atomically: the file is written next to it under a
 * temporary name, synced, then renamed over `path`. Tensors are encoded one at
 * a time, so the whole file is never built in memory.
 *
 * @throws {SafetensorsError} on bad input (nothing is written then)
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Promise<void> {
  const p = plan(tensors, metadata);
  await atomicWriteWith(path, async (file) => {
    await writeAll(file, p.header);
    for (const name of p.names) await writeAll(file, encodeTensor(name, tensors[name]));
  });
}
