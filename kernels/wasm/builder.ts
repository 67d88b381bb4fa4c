/**
 * A small WebAssembly module builder: binary encoding of types, a memory import (optionally
 * shared and/or 64-bit), functions with locals, a function table, exports, structured control
 * flow and the i32/i64/f32/f64/v128 instruction set including relaxed SIMD.
 *
 * Kernels are written as expression trees ({@link Expr}): an `Expr` is a local (read with
 * `local.get`) or a closure that emits instructions into a {@link FunctionBuilder}. Leaves and
 * operators ({@link op}, {@link i32}, {@link load}, ...) build closures; statements
 * ({@link FunctionBuilder.set}, {@link FunctionBuilder.forRange}, ...) emit them. Operand types are
 * not checked here: `WebAssembly.validate`/`compile` reject a mistyped module.
 *
 * @module
 */

import { ATOMIC_MEM, MEM, PREFIX_FC, SIMD, SIMD_LANE, SIMD_MEM, SIMPLE } from "./opcodes.ts";

/** Value types. */
export type ValType = "i32" | "i64" | "f32" | "f64" | "v128";

const VALTYPE_CODE: Record<ValType, number> = {
  i32: 0x7f,
  i64: 0x7e,
  f32: 0x7d,
  f64: 0x7c,
  v128: 0x7b,
};

// ---------------------------------------------------------------------------------------------
// LEB128 and other primitive encodings

/** Appends the unsigned LEB128 encoding of `v` (a non-negative integer or bigint) to `out`. */
export function writeUleb(out: number[], v: number | bigint): void {
  let x = BigInt(v);
  if (x < 0n) throw new RangeError(`writeUleb: negative value ${v}`);
  do {
    let byte = Number(x & 0x7fn);
    x >>= 7n;
    if (x !== 0n) byte |= 0x80;
    out.push(byte);
  } while (x !== 0n);
}

/** Appends the signed LEB128 encoding of `v` to `out`. */
export function writeSleb(out: number[], v: number | bigint): void {
  let x = BigInt(v);
  for (;;) {
    const byte = Number(x & 0x7fn);
    x >>= 7n; // arithmetic shift on bigint
    const signBit = (byte & 0x40) !== 0;
    if ((x === 0n && !signBit) || (x === -1n && signBit)) {
      out.push(byte);
      return;
    }
    out.push(byte | 0x80);
  }
}

/** Decodes an unsigned LEB128 number at `pos`; returns the value and the next position. */
export function readUleb(bytes: ArrayLike<number>, pos: number): { value: bigint; next: number } {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    if (pos >= bytes.length) throw new RangeError("readUleb: truncated LEB128");
    const b = bytes[pos++];
    result |= BigInt(b & 0x7f) << shift;
    shift += 7n;
    if ((b & 0x80) === 0) return { value: result, next: pos };
  }
}

/** Decodes a signed LEB128 number at `pos`; returns the value and the next position. */
export function readSleb(bytes: ArrayLike<number>, pos: number): { value: bigint; next: number } {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    if (pos >= bytes.length) throw new RangeError("readSleb: truncated LEB128");
    const b = bytes[pos++];
    result |= BigInt(b & 0x7f) << shift;
    shift += 7n;
    if ((b & 0x80) === 0) {
      if (b & 0x40) result -= 1n << shift;
      return { value: result, next: pos };
    }
  }
}

function writeName(out: number[], s: string): void {
  const b = new TextEncoder().encode(s);
  writeUleb(out, b.length);
  for (const x of b) out.push(x);
}

function writeVec(out: number[], items: number[][]): void {
  writeUleb(out, items.length);
  for (const it of items) for (const x of it) out.push(x);
}

function section(out: number[], id: number, body: number[]): void {
  out.push(id);
  writeUleb(out, body.length);
  for (const x of body) out.push(x);
}

// ---------------------------------------------------------------------------------------------
// Instruction names (tables in opcodes.ts)

/** Names of instructions without immediates. */
export type OpName = keyof typeof SIMPLE | keyof typeof PREFIX_FC | keyof typeof SIMD;
/** Names of load/store instructions (with a memory argument). */
export type MemOpName = keyof typeof MEM | keyof typeof SIMD_MEM | keyof typeof ATOMIC_MEM;
/** Names of lane instructions. */
export type LaneOpName = keyof typeof SIMD_LANE;

function opcodeBytes(name: OpName): number[] {
  const out: number[] = [];
  if (name in SIMPLE) out.push(SIMPLE[name as keyof typeof SIMPLE]);
  else if (name in PREFIX_FC) {
    out.push(0xfc);
    writeUleb(out, PREFIX_FC[name as keyof typeof PREFIX_FC]);
  } else if (name in SIMD) {
    out.push(0xfd);
    writeUleb(out, SIMD[name as keyof typeof SIMD]);
  } else throw new Error(`wasm builder: unknown instruction "${name}"`);
  return out;
}

/** True when an instruction name is known to the builder (for tests and generated names). */
export function isOpName(name: string): name is OpName {
  return name in SIMPLE || name in PREFIX_FC || name in SIMD;
}

// ---------------------------------------------------------------------------------------------
// Expressions

/** A function-local variable (parameters are locals too). Used as an Expr it reads the local. */
export class Local {
  /** Creates a handle for local `index` of type `type`. */
  constructor(readonly index: number, readonly type: ValType) {}
}

/** Something that emits instructions: a local (read) or an emitting closure. */
export type Expr = Local | ((f: FunctionBuilder) => void);

/** `name(args...)`: emits the arguments, then the instruction. */
export function op(name: OpName, ...args: Expr[]): Expr {
  const code = opcodeBytes(name);
  return (f) => {
    for (const a of args) f.emit(a);
    f.bytes(code);
  };
}

/** An `i32.const`. Values in [2^31, 2^32) are taken as their two's-complement bit pattern. */
export function i32(v: number): Expr {
  const x = v | 0;
  return (f) => {
    f.byte(0x41);
    f.sleb(x);
  };
}

/** An `i64.const`. */
export function i64(v: number | bigint): Expr {
  const x = BigInt.asIntN(64, BigInt(v));
  return (f) => {
    f.byte(0x42);
    f.sleb(x);
  };
}

/** An `f32.const` (the value is rounded to f32). */
export function f32(v: number): Expr {
  const b = new Uint8Array(new Float32Array([v]).buffer);
  return (f) => {
    f.byte(0x43);
    f.bytes(b);
  };
}

/** An `f64.const`. */
export function f64(v: number): Expr {
  const b = new Uint8Array(new Float64Array([v]).buffer);
  return (f) => {
    f.byte(0x44);
    f.bytes(b);
  };
}

/** A `v128.const` from 16 raw bytes. */
export function v128(bytes: Uint8Array): Expr {
  if (bytes.length !== 16) throw new Error(`v128: need 16 bytes, got ${bytes.length}`);
  return (f) => {
    f.byte(0xfd);
    f.uleb(0x0c);
    f.bytes(bytes);
  };
}

/** A v128 constant holding four f32 lanes (one value splats to all four). */
export function f32x4(...v: number[]): Expr {
  const a = v.length === 1 ? [v[0], v[0], v[0], v[0]] : v;
  if (a.length !== 4) throw new Error(`f32x4: need 1 or 4 values, got ${v.length}`);
  return v128(new Uint8Array(new Float32Array(a).buffer));
}

/** A v128 constant holding four i32 lanes (one value splats to all four). */
export function i32x4(...v: number[]): Expr {
  const a = v.length === 1 ? [v[0], v[0], v[0], v[0]] : v;
  if (a.length !== 4) throw new Error(`i32x4: need 1 or 4 values, got ${v.length}`);
  return v128(new Uint8Array(new Int32Array(a).buffer));
}

/** A v128 constant holding two f64 lanes (one value splats to both). */
export function f64x2(...v: number[]): Expr {
  const a = v.length === 1 ? [v[0], v[0]] : v;
  if (a.length !== 2) throw new Error(`f64x2: need 1 or 2 values, got ${v.length}`);
  return v128(new Uint8Array(new Float64Array(a).buffer));
}

function memarg(f: FunctionBuilder, align: number, offset: number | bigint): void {
  f.uleb(align);
  f.uleb(offset);
}

function memBytes(name: MemOpName): { code: number[]; align: number } {
  if (name in MEM) {
    const [c, a] = MEM[name as keyof typeof MEM];
    return { code: [c], align: a };
  }
  const out: number[] = [];
  if (name in SIMD_MEM) {
    const [c, a] = SIMD_MEM[name as keyof typeof SIMD_MEM];
    out.push(0xfd);
    writeUleb(out, c);
    return { code: out, align: a };
  }
  const [c, a] = ATOMIC_MEM[name as keyof typeof ATOMIC_MEM];
  out.push(0xfe);
  writeUleb(out, c);
  return { code: out, align: a };
}

/**
 * A load (or any memory instruction taking operands before it) at `addr + offset` bytes.
 * `offset` must be non-negative; `align` (log2 bytes) defaults to the natural alignment.
 */
export function load(name: MemOpName, addr: Expr, offset = 0, align?: number): Expr {
  const { code, align: nat } = memBytes(name);
  if (offset < 0) throw new Error(`${name}: negative offset ${offset}`);
  return (f) => {
    f.emit(addr);
    f.bytes(code);
    memarg(f, align ?? nat, offset);
  };
}

/** A store of `value` at `addr + offset` bytes (a statement: it leaves nothing on the stack). */
export function store(
  name: MemOpName,
  addr: Expr,
  value: Expr,
  offset = 0,
  align?: number,
): Expr {
  const { code, align: nat } = memBytes(name);
  if (offset < 0) throw new Error(`${name}: negative offset ${offset}`);
  return (f) => {
    f.emit(addr);
    f.emit(value);
    f.bytes(code);
    memarg(f, align ?? nat, offset);
  };
}

/** An atomic or multi-operand memory instruction: operands, then the instruction and memarg. */
export function memOp(name: MemOpName, operands: Expr[], offset = 0): Expr {
  const { code, align } = memBytes(name);
  return (f) => {
    for (const a of operands) f.emit(a);
    f.bytes(code);
    memarg(f, align, offset);
  };
}

/** A lane instruction: `extract_lane v lane` or `replace_lane v lane x`. */
export function lane(name: LaneOpName, v: Expr, laneIndex: number, x?: Expr): Expr {
  return (f) => {
    f.emit(v);
    if (x) f.emit(x);
    f.byte(0xfd);
    f.uleb(SIMD_LANE[name]);
    f.byte(laneIndex);
  };
}

/** `i8x16.shuffle a b` with 16 byte-lane indices (0–31). */
export function shuffle(a: Expr, b: Expr, lanes: readonly number[]): Expr {
  if (lanes.length !== 16) throw new Error(`shuffle: need 16 lane indices, got ${lanes.length}`);
  return (f) => {
    f.emit(a);
    f.emit(b);
    f.byte(0xfd);
    f.uleb(0x0d);
    for (const l of lanes) f.byte(l);
  };
}

/** Shuffle of 32-bit lanes: `lanes` are four indices 0–7 into the concatenation a‖b. */
export function shuffle32(a: Expr, b: Expr, lanes: readonly number[]): Expr {
  const bytes: number[] = [];
  for (const l of lanes) for (let j = 0; j < 4; j++) bytes.push(l * 4 + j);
  return shuffle(a, b, bytes);
}

/** `select(a, b, cond)`: a if cond ≠ 0 else b. */
export function select(a: Expr, b: Expr, cond: Expr): Expr {
  return op("select", a, b, cond);
}

/** `memory.copy dst src n` (bulk memory; byte counts and addresses of the memory's type). */
export function memoryCopy(dst: Expr, src: Expr, n: Expr): Expr {
  return (f) => {
    f.emit(dst);
    f.emit(src);
    f.emit(n);
    f.byte(0xfc);
    f.uleb(10);
    f.byte(0);
    f.byte(0);
  };
}

/** `memory.fill dst byte n` (the byte value is an i32). */
export function memoryFill(dst: Expr, value: Expr, n: Expr): Expr {
  return (f) => {
    f.emit(dst);
    f.emit(value);
    f.emit(n);
    f.byte(0xfc);
    f.uleb(11);
    f.byte(0);
  };
}

/** Direct call of a function of this module. */
export function call(fn: FunctionRef, ...args: Expr[]): Expr {
  return (f) => {
    for (const a of args) f.emit(a);
    f.byte(0x10);
    f.uleb(fn.index);
  };
}

/** Indirect call through table 0: `args`, then `callee` (the table index, i32). */
export function callIndirect(typeIndex: number, callee: Expr, ...args: Expr[]): Expr {
  return (f) => {
    for (const a of args) f.emit(a);
    f.emit(callee);
    f.byte(0x11);
    f.uleb(typeIndex);
    f.byte(0x00);
  };
}

/** A sequence of statements as one Expr. */
export function seq(...parts: Expr[]): Expr {
  return (f) => {
    for (const p of parts) f.emit(p);
  };
}

// ---------------------------------------------------------------------------------------------
// Functions

/** A branch target made by {@link FunctionBuilder.block} or {@link FunctionBuilder.loop}. */
export class Label {
  /** Nesting depth at which the label's construct sits. */
  constructor(readonly depth: number) {}
}

/** A reference to a function of a module (its index in the function index space). */
export interface FunctionRef {
  /** Function index. */
  readonly index: number;
  /** Export name, if exported. */
  readonly name?: string;
}

/** Emits the body of one function. */
export class FunctionBuilder {
  /** The function's parameters, as locals 0..n-1. */
  readonly params: Local[];
  private code: number[] = [];
  private prologue: number[] = [];
  private readonly hoistedLocals = new Map<string, Local>();
  private readonly localTypes: ValType[] = [];
  private depth = 0;

  /** A builder for a function with the given parameter types. */
  constructor(paramTypes: readonly ValType[]) {
    this.params = paramTypes.map((t, i) => new Local(i, t));
  }

  /** Declares a new local of `type` (zero-initialised on entry). */
  local(type: ValType): Local {
    const l = new Local(this.params.length + this.localTypes.length, type);
    this.localTypes.push(type);
    return l;
  }

  /**
   * A local holding the value of `e`, computed once at function entry and cached under `key`.
   * Loop bodies use it for vector constants, which V8 would otherwise rebuild at every use.
   * `e` must not depend on other locals.
   */
  hoisted(key: string, type: ValType, e: Expr): Local {
    let l = this.hoistedLocals.get(key);
    if (!l) {
      l = this.local(type);
      this.hoistedLocals.set(key, l);
      const body = this.code;
      const depth = this.depth;
      this.code = this.prologue;
      this.depth = 0;
      this.set(l, e);
      this.code = body;
      this.depth = depth;
    }
    return l;
  }

  /** Appends one raw byte. */
  byte(b: number): void {
    this.code.push(b & 0xff);
  }

  /** Appends raw bytes. */
  bytes(b: ArrayLike<number>): void {
    for (let i = 0; i < b.length; i++) this.code.push(b[i]);
  }

  /** Appends an unsigned LEB128 number. */
  uleb(v: number | bigint): void {
    writeUleb(this.code, v);
  }

  /** Appends a signed LEB128 number. */
  sleb(v: number | bigint): void {
    writeSleb(this.code, v);
  }

  /** Emits an expression or statement. */
  emit(e: Expr): void {
    if (e instanceof Local) {
      this.byte(0x20);
      this.uleb(e.index);
    } else e(this);
  }

  /** `local.set l e`. */
  set(l: Local, e: Expr): void {
    this.emit(e);
    this.byte(0x21);
    this.uleb(l.index);
  }

  /** `local.tee l e` as an expression. */
  tee(l: Local, e: Expr): Expr {
    return (f) => {
      f.emit(e);
      f.byte(0x22);
      f.uleb(l.index);
    };
  }

  /** Emits a statement (alias of emit, for readability). */
  do(...parts: Expr[]): void {
    for (const p of parts) this.emit(p);
  }

  private blockType(result?: ValType): void {
    if (result) this.byte(VALTYPE_CODE[result]);
    else this.byte(0x40);
  }

  /** `block ... end`; `br(label)` inside jumps past the end. */
  block(body: (brk: Label) => void, result?: ValType): void {
    this.byte(0x02);
    this.blockType(result);
    this.depth++;
    body(new Label(this.depth));
    this.depth--;
    this.byte(0x0b);
  }

  /** `loop ... end`; `br(label)` inside jumps back to the start. */
  loop(body: (cont: Label) => void, result?: ValType): void {
    this.byte(0x03);
    this.blockType(result);
    this.depth++;
    body(new Label(this.depth));
    this.depth--;
    this.byte(0x0b);
  }

  /** `if cond then ... [else ...] end`. */
  if(cond: Expr, then: () => void, otherwise?: () => void, result?: ValType): void {
    this.emit(cond);
    this.byte(0x04);
    this.blockType(result);
    this.depth++;
    then();
    if (otherwise) {
      this.byte(0x05);
      otherwise();
    }
    this.depth--;
    this.byte(0x0b);
  }

  /** Unconditional branch to a label. */
  br(l: Label): void {
    this.byte(0x0c);
    this.uleb(this.relDepth(l));
  }

  /** Branch to a label when `cond` ≠ 0. */
  brIf(l: Label, cond: Expr): void {
    this.emit(cond);
    this.byte(0x0d);
    this.uleb(this.relDepth(l));
  }

  private relDepth(l: Label): number {
    const d = this.depth - l.depth;
    if (d < 0) throw new Error("wasm builder: branch to a label outside its construct");
    return d;
  }

  /** `return` (with the value of `e`, if given). */
  ret(e?: Expr): void {
    if (e) this.emit(e);
    this.byte(0x0f);
  }

  /**
   * `for (i = from; i < to; i += step) body` with i32 or i64 `i` (signed compare).
   * `body` gets the loop's break label.
   */
  forRange(i: Local, from: Expr, to: Expr, step: number, body: (brk: Label) => void): void {
    const t = i.type === "i64" ? "i64" : "i32";
    const k = t === "i64" ? i64(step) : i32(step);
    this.set(i, from);
    this.block((brk) => {
      this.loop((cont) => {
        this.brIf(brk, op(`${t}.ge_s`, i, to));
        body(brk);
        this.set(i, op(`${t}.add`, i, k));
        this.br(cont);
      });
    });
  }

  /**
   * `i = from; do { body; i += step } while (i < to)`: one branch per iteration; the caller
   * guarantees at least one trip.
   */
  doWhile(i: Local, from: Expr, to: Expr, step: number, body: () => void): void {
    const t = i.type === "i64" ? "i64" : "i32";
    const k = t === "i64" ? i64(step) : i32(step);
    this.set(i, from);
    this.loop((cont) => {
      body();
      this.set(i, op(`${t}.add`, i, k));
      this.brIf(cont, op(`${t}.lt_s`, i, to));
    });
  }

  /** The encoded body: local declarations, code and the final `end`. */
  encode(): number[] {
    if (this.depth !== 0) throw new Error("wasm builder: unbalanced blocks");
    const out: number[] = [];
    // Run-length encode consecutive locals of the same type.
    const groups: [number, ValType][] = [];
    for (const t of this.localTypes) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    writeUleb(out, groups.length);
    for (const [n, t] of groups) {
      writeUleb(out, n);
      out.push(VALTYPE_CODE[t]);
    }
    for (const b of this.prologue) out.push(b);
    for (const b of this.code) out.push(b);
    out.push(0x0b);
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Modules

/** Options of an imported linear memory. */
export interface MemoryImport {
  /** Import module name. */
  module: string;
  /** Import field name. */
  name: string;
  /** Initial size in 64 KiB pages. */
  initial: number;
  /** Maximum size in pages (required for shared memories). */
  maximum?: number;
  /** Shared memory (threads proposal). */
  shared?: boolean;
  /** 64-bit addresses (memory64 proposal). */
  memory64?: boolean;
}

interface FuncEntry {
  typeIndex: number;
  name?: string;
  body: number[] | null;
}

/** Builds a module: types, an optional memory import, functions, a table and exports. */
export class ModuleBuilder {
  private readonly types: string[] = [];
  private readonly typeBytes: number[][] = [];
  private memory: MemoryImport | null = null;
  private readonly funcs: FuncEntry[] = [];
  private table: FunctionRef[] = [];

  /** Index of the function type `(params) -> (results)`, added if new. */
  typeIndex(params: readonly ValType[], results: readonly ValType[]): number {
    const key = `${params.join(",")}->${results.join(",")}`;
    let idx = this.types.indexOf(key);
    if (idx < 0) {
      const b: number[] = [0x60];
      writeUleb(b, params.length);
      for (const p of params) b.push(VALTYPE_CODE[p]);
      writeUleb(b, results.length);
      for (const r of results) b.push(VALTYPE_CODE[r]);
      idx = this.types.length;
      this.types.push(key);
      this.typeBytes.push(b);
    }
    return idx;
  }

  /** Imports the module's linear memory. */
  importMemory(m: MemoryImport): void {
    if (m.shared && m.maximum === undefined) {
      throw new Error("wasm builder: a shared memory needs a maximum");
    }
    this.memory = { ...m };
  }

  /** Declares a function whose body is given later with {@link defineFunction}. */
  declareFunction(
    params: readonly ValType[],
    results: readonly ValType[],
    exportName?: string,
  ): FunctionRef {
    const index = this.funcs.length;
    this.funcs.push({ typeIndex: this.typeIndex(params, results), name: exportName, body: null });
    return { index, name: exportName };
  }

  /** Builds the body of a declared function. */
  defineFunction(
    ref: FunctionRef,
    params: readonly ValType[],
    build: (f: FunctionBuilder, ...params: Local[]) => void,
  ): void {
    const fb = new FunctionBuilder(params);
    build(fb, ...fb.params);
    this.funcs[ref.index].body = fb.encode();
  }

  /** Declares and builds a function; exported under `exportName` when given. */
  addFunction(
    exportName: string | undefined,
    params: readonly ValType[],
    results: readonly ValType[],
    build: (f: FunctionBuilder, ...params: Local[]) => void,
  ): FunctionRef {
    const ref = this.declareFunction(params, results, exportName);
    this.defineFunction(ref, params, build);
    return ref;
  }

  /** Sets table 0 (funcref) to `funcs`, for `call_indirect`; returns each one's table index. */
  setTable(funcs: FunctionRef[]): void {
    this.table = funcs.slice();
  }

  /** The binary module. */
  toBytes(): Uint8Array {
    const out: number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    section(out, 1, vecBody(this.typeBytes));
    if (this.memory) {
      const m = this.memory;
      const imp: number[] = [];
      writeName(imp, m.module);
      writeName(imp, m.name);
      imp.push(0x02);
      let flags = m.maximum !== undefined ? 1 : 0;
      if (m.shared) flags |= 2;
      if (m.memory64) flags |= 4;
      imp.push(flags);
      writeUleb(imp, m.initial);
      if (m.maximum !== undefined) writeUleb(imp, m.maximum);
      section(out, 2, vecBody([imp]));
    }
    for (const [i, f] of this.funcs.entries()) {
      if (!f.body) {
        throw new Error(`wasm builder: function ${f.name ?? i} declared but not defined`);
      }
    }
    section(out, 3, vecBody(this.funcs.map((f) => uleb(f.typeIndex))));
    if (this.table.length) {
      const t: number[] = [0x70, 0x00];
      writeUleb(t, this.table.length);
      section(out, 4, vecBody([t]));
    }
    const exports: number[][] = [];
    for (const [i, f] of this.funcs.entries()) {
      if (f.name === undefined) continue;
      const e: number[] = [];
      writeName(e, f.name);
      e.push(0x00);
      writeUleb(e, i);
      exports.push(e);
    }
    section(out, 7, vecBody(exports));
    if (this.table.length) {
      // One active segment at offset 0 of table 0 (flags 0 takes an i32 offset expression).
      const e: number[] = [0x00, 0x41, 0x00, 0x0b];
      writeUleb(e, this.table.length);
      for (const r of this.table) writeUleb(e, r.index);
      section(out, 9, vecBody([e]));
    }
    section(
      out,
      10,
      vecBody(this.funcs.map((f) => {
        const b: number[] = [];
        writeUleb(b, f.body!.length);
        for (const x of f.body!) b.push(x);
        return b;
      })),
    );
    return new Uint8Array(out);
  }
}

function uleb(v: number): number[] {
  const o: number[] = [];
  writeUleb(o, v);
  return o;
}

function vecBody(items: number[][]): number[] {
  const o: number[] = [];
  writeVec(o, items);
  return o;
}

// ---------------------------------------------------------------------------------------------
// Feature probes

/** WebAssembly features this runtime validates. */
export interface WasmFeatures {
  /** 128-bit SIMD. */
  simd: boolean;
  /** Relaxed SIMD (`f32x4.relaxed_madd`). */
  relaxedSimd: boolean;
  /** 64-bit memories. */
  memory64: boolean;
  /** Shared memories and atomics. */
  threads: boolean;
}

function probe(build: (m: ModuleBuilder) => void): boolean {
  try {
    const m = new ModuleBuilder();
    build(m);
    return WebAssembly.validate(m.toBytes() as BufferSource);
  } catch {
    return false;
  }
}

/** Probes the runtime by validating tiny modules that use each feature. */
export function detectFeatures(): WasmFeatures {
  const simd = probe((m) =>
    m.addFunction("f", [], ["v128"], (f) => f.emit(op("f32x4.add", f32x4(1), f32x4(2))))
  );
  const relaxedSimd = probe((m) =>
    m.addFunction(
      "f",
      [],
      ["v128"],
      (f) => f.emit(op("f32x4.relaxed_madd", f32x4(1), f32x4(2), f32x4(3))),
    )
  );
  const memory64 = probe((m) => {
    m.importMemory({ module: "e", name: "m", initial: 1, maximum: 2, memory64: true });
    m.addFunction("f", [], ["i32"], (f) => f.emit(load("i32.load", i64(0))));
  });
  // A browser page that is not cross-origin isolated (COOP/COEP headers) cannot share memory
  // with workers, even where the engine compiles shared memories.
  const threads = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated !== false &&
    probe((m) => {
      m.importMemory({ module: "e", name: "m", initial: 1, maximum: 2, shared: true });
      m.addFunction("f", [], ["i32"], (f) => f.emit(memOp("i32.atomic.load", [i32(0)])));
    });
  return { simd, relaxedSimd, memory64, threads };
}
