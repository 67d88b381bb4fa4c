/**
 * The system BLAS for the WebAssembly backend's matmul, called through Deno's FFI directly on the
 * backend's `WebAssembly.Memory`: the operands and the output stay where they are in the heap,
 * and the native `cblas_sgemm`/`cblas_sgemv` read and write them in place (no copies).
 *
 * Which library:
 * - `LF_BLAS=off` (or `0`, `false`, `none`): none, the WebAssembly kernels do the matmuls;
 * - `LF_BLAS=/path/to/libblas.so`: that library (it must export `cblas_sgemm`);
 * - otherwise OpenBLAS (`libopenblas.so.0`, ...) on Linux, Accelerate's CBLAS on macOS,
 *   `libopenblas.dll` on Windows;
 * - none where the runtime has no FFI (a browser, Node) or FFI is not permitted (`--allow-ffi`).
 *
 * Threads: OpenBLAS's own threads are set with `openblas_set_num_threads` to the backend's thread
 * count, so that one setting (`LF_WASM_THREADS` or the backend's `threads` option) caps both. The
 * backend's workers are idle during a BLAS call (the caller's thread makes it synchronously).
 *
 * Pointers: the memory's base address is taken from its buffer (`Deno.UnsafePointer.of`) and is
 * taken again whenever the buffer object changes (the memory grew); addresses passed to the
 * library are that base plus byte offsets, as 64-bit integers, so heaps over 4 GiB work.
 *
 * @module
 */

/** The thread count last set in each opened library (it is a process-wide setting there). */
const libThreads = new Map<string, number>();

/** Products below this many flops run on one library thread. */
const SMALL_FLOPS = 2e7;

/** Up to this many rows, a product with B stored [k, n] runs as one GEMV per row. */
const GEMV_ROWS_MAX_M = 6;

/**
 * A product of 2 to {@link GEMV_ROWS_MAX_M} rows with B stored [n, k] (the LM head during beam
 * search: 5 rows × 50,257 columns) runs in column blocks of this width, the last block taking the
 * remainder: GEMM packs each block of B while it is still in cache, where packing all of B at once
 * streams it from memory twice (about 20% faster at 768 × 50,257). Blocks this wide give the same
 * bits as one call (OpenBLAS blocks the columns itself at a divisor of this width).
 */
const HEAD_BLOCK_N = 2048;

/** CBLAS enum values (`cblas.h`). */
const ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112;

const SYMBOLS = {
  cblas_sgemm: {
    parameters: [
      "i32", // order
      "i32", // transA
      "i32", // transB
      "i32", // M
      "i32", // N
      "i32", // K
      "f32", // alpha
      "usize", // A
      "i32", // lda
      "usize", // B
      "i32", // ldb
      "f32", // beta
      "usize", // C
      "i32", // ldc
    ],
    result: "void",
  },
  cblas_sgemv: {
    parameters: [
      "i32", // order
      "i32", // trans
      "i32", // M
      "i32", // N
      "f32", // alpha
      "usize", // A
      "i32", // lda
      "usize", // x
      "i32", // incx
      "f32", // beta
      "usize", // y
      "i32", // incy
    ],
    result: "void",
  },
} as const;

const OPENBLAS_SYMBOLS = {
  openblas_set_num_threads: { parameters: ["i32"], result: "void" },
  openblas_get_num_threads: { parameters: [], result: "i32" },
  openblas_get_config: { parameters: [], result: "pointer" },
} as const;

/** Library names tried in order when `LF_BLAS` does not name one. */
export function blasCandidates(os: string): string[] {
  if (os === "darwin") {
    return [
      "/System/Library/Frameworks/Accelerate.framework/Versions/A/Frameworks/vecLib.framework/Versions/A/libBLAS.dylib",
      "/System/Library/Frameworks/Accelerate.framework/Accelerate",
      "libopenblas.dylib",
    ];
  }
  if (os === "windows") return ["libopenblas.dll", "openblas.dll"];
  return [
    "libopenblas.so.0",
    "libopenblas.so",
    "libopenblasp-r0.so",
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
  ];
}

/** What {@link openBlas} decided: a library, or why none. */
export type BlasChoice = { blas: Blas; reason: string } | { blas: null; reason: string };

/** Shape and layout of one row-major product C[m, n] = op(A)·op(B) (element offsets in bytes). */
export interface GemmCall {
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  /** Byte addresses in the WebAssembly memory. */
  a: number;
  b: number;
  c: number;
}

/** A loaded CBLAS library bound to one `WebAssembly.Memory`. */
export class Blas {
  #lib: Deno.DynamicLibrary<typeof SYMBOLS>;
  #openblas: Deno.DynamicLibrary<typeof OPENBLAS_SYMBOLS> | null;
  #memory: WebAssembly.Memory;
  #buffer: ArrayBufferLike | null = null;
  #base = 0;
  #threads = 1;
  /** The library's path or name, as opened. */
  readonly path: string;
  /** A short description: vendor, and the build's configuration where the library says it. */
  readonly description: string;

  private constructor(
    path: string,
    lib: Deno.DynamicLibrary<typeof SYMBOLS>,
    openblas: Deno.DynamicLibrary<typeof OPENBLAS_SYMBOLS> | null,
    memory: WebAssembly.Memory,
  ) {
    this.path = path;
    this.#lib = lib;
    this.#openblas = openblas;
    this.#memory = memory;
    let desc = openblas ? "OpenBLAS" : /Accelerate|vecLib/.test(path) ? "Accelerate" : "CBLAS";
    if (openblas) {
      try {
        const p = openblas.symbols.openblas_get_config();
        if (p) desc = new Deno.UnsafePointerView(p).getCString();
      } catch { /* optional */ }
    }
    this.description = desc;
  }

  /** Opens `path` (throws with the reason when it cannot be opened or lacks `cblas_sgemm`). */
  static open(path: string, memory: WebAssembly.Memory): Blas {
    const lib = Deno.dlopen(path, SYMBOLS);
    let openblas: Deno.DynamicLibrary<typeof OPENBLAS_SYMBOLS> | null = null;
    try {
      openblas = Deno.dlopen(path, OPENBLAS_SYMBOLS);
    } catch { /* not OpenBLAS: no thread control */ }
    return new Blas(path, lib, openblas, memory);
  }

  /**
   * Sets the thread count this backend's calls use, where the library allows it (OpenBLAS);
   * returns what the library reports. The setting is process-wide in the library, so each call
   * re-applies this backend's count when another backend changed it.
   */
  setThreads(n: number): number | null {
    this.#threads = n;
    if (!this.#openblas) return null;
    this.#applyThreads();
    return this.#openblas.symbols.openblas_get_num_threads();
  }

  #applyThreads(n = this.#threads): void {
    if (this.#openblas && libThreads.get(this.path) !== n) {
      this.#openblas.symbols.openblas_set_num_threads(n);
      libThreads.set(this.path, n);
    }
  }

  /** Base address of the memory, taken again after the memory grew (a new buffer object). */
  #baseAddress(): number {
    const buf = this.#memory.buffer;
    if (buf !== this.#buffer) {
      const p = Deno.UnsafePointer.of(buf as ArrayBuffer);
      this.#base = Number(Deno.UnsafePointer.value(p));
      this.#buffer = buf;
    }
    return this.#base;
  }

  /**
   * C[m, n] = op(A)·op(B), row-major, overwriting C (NaN or garbage in C is not read). A is
   * [m, k] (or [k, m] when `transA`), B is [k, n] (or [n, k] when `transB`), both dense.
   */
  gemm(g: GemmCall): void {
    const base = this.#baseAddress();
    const { m, n, k } = g;
    // Small products (decoding's one-row products) stay on the calling thread: waking the
    // library's workers costs more than they save, and a worker that keeps spinning after the
    // call competes with the backend's own threads for the next ops.
    const rows = m > 1 && m <= GEMV_ROWS_MAX_M && !g.transB;
    this.#applyThreads(2 * (rows ? 1 : m) * n * k < SMALL_FLOPS ? 1 : this.#threads);
    const lda = g.transA ? m : k, ldb = g.transB ? k : n;
    if (rows) {
      // A few rows times a B stored [k, n] (decoding's beams through a layer): one GEMV per
      // row reads B m times, but without packing it, which costs more at these sizes (measured
      // with OpenBLAS 0.3.21: m = 5, 768×3072, 0.67 ms against 0.93 ms for the GEMM).
      for (let i = 0; i < m; i++) {
        this.#lib.symbols.cblas_sgemv(
          ROW_MAJOR,
          TRANS,
          k,
          n,
          1,
          BigInt(base + g.b),
          n,
          BigInt(base + g.a + 4 * (g.transA ? i : i * k)),
          g.transA ? m : 1,
          0,
          BigInt(base + g.c + 4 * i * n),
          1,
        );
      }
      return;
    }
    if (m === 1) {
      // A row times B: y = Bᵀ·a for B [k, n], B·a for B [n, k] (op(A) is a contiguous row).
      this.#lib.symbols.cblas_sgemv(
        ROW_MAJOR,
        g.transB ? NO_TRANS : TRANS,
        g.transB ? n : k,
        g.transB ? k : n,
        1,
        BigInt(base + g.b),
        ldb,
        BigInt(base + g.a),
        1,
        0,
        BigInt(base + g.c),
        1,
      );
      return;
    }
    // Column blocks (see HEAD_BLOCK_N): block j of C[:, j0:j1] reads rows j0..j1 of B [n, k].
    const blocks = m <= GEMV_ROWS_MAX_M && g.transB ? Math.max(1, Math.floor(n / HEAD_BLOCK_N)) : 1;
    for (let i = 0; i < blocks; i++) {
      const j0 = i * HEAD_BLOCK_N, j1 = i === blocks - 1 ? n : j0 + HEAD_BLOCK_N;
      this.#lib.symbols.cblas_sgemm(
        ROW_MAJOR,
        g.transA ? TRANS : NO_TRANS,
        g.transB ? TRANS : NO_TRANS,
        m,
        blocks === 1 ? n : j1 - j0,
        k,
        1,
        BigInt(base + g.a),
        lda,
        BigInt(base + g.b + 4 * j0 * k),
        ldb,
        0,
        BigInt(base + g.c + 4 * j0),
        n,
      );
    }
  }

  /** Closes the library. */
  close(): void {
    this.#lib.close();
    this.#openblas?.close();
  }
}

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no env permission
  }
}

/**
 * Finds and opens a CBLAS library for `memory`. `want`: `false` for none, a path for that
 * library, `true` to require one, `undefined` for the default (`LF_BLAS`, then a search).
 * Returns the library with a one-line description, or `null` with the reason. A library that was
 * asked for by path (option or `LF_BLAS`) but cannot be opened is an error, not a fallback.
 */
export function openBlas(
  memory: WebAssembly.Memory,
  want: boolean | string | undefined,
): BlasChoice {
  if (want === false) return { blas: null, reason: "BLAS turned off by the backend options" };
  const fromEnv = want === undefined ? env("LF_BLAS")?.trim() : undefined;
  if (fromEnv && /^(off|0|false|none|no)$/i.test(fromEnv)) {
    return { blas: null, reason: `LF_BLAS=${fromEnv}` };
  }
  const path = typeof want === "string" ? want : fromEnv || undefined;
  const required = want === true || path !== undefined;
  const fail = (reason: string): BlasChoice => {
    if (required) throw new Error(`wasm backend: BLAS ${path ?? ""} ${reason}`.replace("  ", " "));
    return { blas: null, reason };
  };
  const D = (globalThis as { Deno?: typeof Deno }).Deno;
  if (!D || typeof D.dlopen !== "function") return fail("unavailable: the runtime has no FFI");
  try {
    if (D.permissions.querySync({ name: "ffi" }).state !== "granted") {
      return fail("unavailable: no FFI permission (--allow-ffi)");
    }
  } catch {
    return fail("unavailable: the FFI permission cannot be queried");
  }
  const tried: string[] = [];
  for (const p of path ? [path] : blasCandidates(D.build.os)) {
    try {
      const blas = Blas.open(p, memory);
      return { blas, reason: `${blas.description} (${p})` };
    } catch (e) {
      tried.push(`${p}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  if (path) return fail(`cannot be loaded: ${tried.join("; ")}`);
  return fail(`unavailable: no CBLAS library found (tried ${tried.length} names; set LF_BLAS)`);
}
