import assert from "node:assert/strict";
import {
  bf16BitsToNumber,
  encodeSafetensors,
  f16BitsToNumber,
  loadSafetensors,
  numberToBf16Bits,
  numberToF16Bits,
  readSafetensors,
  SafetensorsError,
  type TensorToWrite,
  writeSafetensors,
} from "../models/safetensors.ts";

const FAKE_GPT2 = new URL("../../shared/models/fake-gpt2/model.safetensors", import.meta.url);
const haveFakeGpt2 = (() => {
  try {
    Deno.statSync(FAKE_GPT2);
    return true;
  } catch {
    console.log(`skipping fake-gpt2 tests: ${FAKE_GPT2.pathname} is absent`);
    return false;
  }
})();

/** Builds a file by hand (independently of the encoder) from a header object and data bytes. */
function rawFile(
  header: unknown,
  data: Uint8Array | number[] = [],
  headerText?: string,
): Uint8Array {
  const json = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function u16le(values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  values.forEach((v, i) => {
    out[2 * i] = v & 0xff;
    out[2 * i + 1] = v >> 8;
  });
  return out;
}

function throwsSt(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SafetensorsError, `expected SafetensorsError, got ${e}`);
    for (const f of fragments) {
      assert.ok(e.message.includes(f), `"${e.message}" should mention "${f}"`);
    }
    return true;
  });
}

Deno.test("F16 decoding matches hand-computed values", () => {
  const cases: [number, number][] = [
    [0x3c00, 1],
    [0xc000, -2],
    [0x3800, 0.5],
    [0x3555, 0.333251953125], // 1 + 341/1024 times 2^-2
    [0x7bff, 65504], // largest finite
    [0x0400, 2 ** -14], // smallest normal
    [0x0001, 2 ** -24], // smallest subnormal
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ];
  const st = readSafetensors(
    rawFile({
      h: { dtype: "F16", shape: [cases.length + 3], data_offsets: [0, 2 * (cases.length + 3)] },
    }, [
      ...u16le([...cases.map((c) => c[0]), 0x7e00, 0x0000, 0x8000]),
    ]),
  );
  const data = st.tensors.get("h")!.data;
  assert.ok(data instanceof Float32Array);
  cases.forEach(([bits, want], i) => assert.equal(data[i], want, `0x${bits.toString(16)}`));
  assert.ok(Number.isNaN(data[cases.length]));
  assert.ok(Object.is(data[cases.length + 1], 0));
  assert.ok(Object.is(data[cases.length + 2], -0));
});

Deno.test("BF16 decoding matches hand-computed values", () => {
  const cases: [number, number][] = [
    [0x3f80, 1],
    [0xc000, -2],
    [0x4049, 3.140625], // 1.5703125 * 2
    [0x7f7f, (2 - 2 ** -7) * 2 ** 127], // largest finite
    [0x0080, 2 ** -126], // smallest normal
    [0x0001, 2 ** -133], // smallest subnormal: 2^-149 * 2^16
    [0x7f80, Infinity],
    [0xff80, -Infinity],
  ];
  const st = readSafetensors(
    rawFile({
      b: { dtype: "BF16", shape: [cases.length + 1], data_offsets: [0, 2 * (cases.length + 1)] },
    }, [
      ...u16le([...cases.map((c) => c[0]), 0x7fc0]),
    ]),
  );
  const data = st.tensors.get("b")!.data;
  cases.forEach(([bits, want], i) => assert.equal(data[i], want, `0x${bits.toString(16)}`));
  assert.ok(Number.isNaN(data[cases.length]));
});

Deno.test("F16 encoding rounds to nearest even (hand-computed)", () => {
  const cases: [number, number][] = [
    [1, 0x3c00],
    [1 + 2 ** -11, 0x3c00], // halfway between 1 and 1+2^-10: tie to even
    [1 + 3 * 2 ** -11, 0x3c02], // halfway between 0x3c01 and 0x3c02: tie to even
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above halfway
    [65504, 0x7bff],
    [65519, 0x7bff], // below the halfway point 65520
    [65520, 0x7c00], // tie between 65504 and 65536 (odd mantissa): rounds up, overflows to inf
    [1e6, 0x7c00],
    [-1e6, 0xfc00],
    [2 ** -24, 0x0001],
    [2 ** -25, 0x0000], // tie between 0 and 2^-24: even is 0
    [1.5 * 2 ** -25, 0x0001],
    [3 * 2 ** -25, 0x0002], // tie between 1 and 2 units: even is 2
    [1023.5 * 2 ** -24, 0x0400], // tie between largest subnormal and smallest normal: rounds to even
    [1e-9, 0x0000],
    [-1e-9, 0x8000],
    [-0, 0x8000],
    [Infinity, 0x7c00],
  ];
  for (const [x, bits] of cases) assert.equal(numberToF16Bits(x), bits, `encode ${x}`);
  assert.equal(numberToF16Bits(NaN) & 0x7c00, 0x7c00);
  assert.notEqual(numberToF16Bits(NaN) & 0x3ff, 0);
});

Deno.test(
  "F16 codec agrees with the runtime's Float16Array on every bit pattern and on random values",
  {
    ignore: typeof (globalThis as Record<string, unknown>).Float16Array !== "function",
  },
  () => {
    // deno-lint-ignore no-explicit-any
    const F16 = (globalThis as any).Float16Array;
    const ref = new F16(1);
    const refBits = new Uint16Array(ref.buffer);
    for (let bits = 0; bits < 65536; bits++) {
      refBits[0] = bits;
      const want = ref[0];
      const got = f16BitsToNumber(bits);
      if (Number.isNaN(want)) assert.ok(Number.isNaN(got));
      else assert.ok(Object.is(got, want), `decode 0x${bits.toString(16)}: ${got} vs ${want}`);
      // decode then encode is the identity on non-NaN patterns
      if (!Number.isNaN(want)) assert.equal(numberToF16Bits(got), bits);
    }
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    for (let i = 0; i < 200_000; i++) {
      // random f32 bit patterns concentrated on the f16 range (exponents 100..150)
      u32[0] = ((rnd() < 0.5 ? 0 : 0x80000000) | (Math.floor(100 + rnd() * 50) << 23) |
        Math.floor(rnd() * 0x800000)) >>>
        0;
      ref[0] = f32[0];
      assert.equal(numberToF16Bits(f32[0]), refBits[0], `encode ${f32[0]}`);
    }
  },
);

Deno.test("BF16 encoding matches an independent nearest-value search", () => {
  let seed = 99;
  const rnd = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < 50_000; i++) {
    u32[0] = Math.floor(rnd() * 2 ** 32) >>> 0;
    if (i % 7 === 0) u32[0] = (u32[0] & 0xffff0000) | 0x8000; // exact ties
    const x = f32[0];
    if (!Number.isFinite(x)) continue;
    const down = u32[0] >>> 16;
    const a = bf16BitsToNumber(down);
    // rounding treats the step past the largest finite value as 2^128 (IEEE 754 overflow rule)
    const b = ((down + 1) & 0x7fff) === 0x7f80
      ? Math.sign(x) * 2 ** 128
      : bf16BitsToNumber(down + 1);
    const da = Math.abs(x - a);
    const db = Math.abs(b - x);
    const want = Number.isNaN(b)
      ? down
      : da < db
      ? down
      : db < da
      ? down + 1
      : (down & 1 ? down + 1 : down);
    assert.equal(numberToBf16Bits(x), want & 0xffff, `encode ${x}`);
  }
  assert.equal(numberToBf16Bits(1), 0x3f80);
  assert.equal(numberToBf16Bits(-Infinity), 0xff80);
  assert.ok(Number.isNaN(bf16BitsToNumber(numberToBf16Bits(NaN))));
});

Deno.test("integer dtypes: I64 in range decodes, out of range names the tensor", () => {
  const i64 = new Uint8Array(24);
  const dv = new DataView(i64.buffer);
  dv.setBigInt64(0, -5n, true);
  dv.setBigInt64(8, 2147483647n, true);
  dv.setBigInt64(16, -2147483648n, true);
  const st = readSafetensors(
    rawFile({ ids: { dtype: "I64", shape: [3], data_offsets: [0, 24] } }, i64),
    "ids.st",
  );
  assert.deepEqual(Array.from(st.tensors.get("ids")!.data), [-5, 2147483647, -2147483648]);
  assert.ok(st.tensors.get("ids")!.data instanceof Int32Array);

  dv.setBigInt64(8, 2147483648n, true);
  const bad = readSafetensors(
    rawFile({ ids: { dtype: "I64", shape: [3], data_offsets: [0, 24] } }, i64),
    "ids.st",
  );
  throwsSt(() => bad.tensors.get("ids")!.data, "ids.st", `"ids"`, "2147483648", "index 1");

  const small = rawFile({
    a: { dtype: "I8", shape: [2], data_offsets: [0, 2] },
    b: { dtype: "U8", shape: [2], data_offsets: [2, 4] },
    c: { dtype: "I16", shape: [1], data_offsets: [4, 6] },
    d: { dtype: "BOOL", shape: [2], data_offsets: [6, 8] },
  }, [0xff, 0x7f, 0xff, 0x01, 0x00, 0x80, 0x00, 0x01]);
  const s = readSafetensors(small);
  assert.deepEqual(Array.from(s.tensors.get("a")!.data), [-1, 127]);
  assert.deepEqual(Array.from(s.tensors.get("b")!.data), [255, 1]);
  assert.deepEqual(Array.from(s.tensors.get("c")!.data), [-32768]);
  assert.deepEqual(Array.from(s.tensors.get("d")!.data), [0, 1]);
});

Deno.test("F64 reads as f32", () => {
  const bytes = new Uint8Array(16);
  new DataView(bytes.buffer).setFloat64(0, 0.1, true);
  new DataView(bytes.buffer).setFloat64(8, -3, true);
  const st = readSafetensors(
    rawFile({ x: { dtype: "F64", shape: [2, 1], data_offsets: [0, 16] } }, bytes),
  );
  const t = st.tensors.get("x")!;
  assert.deepEqual(t.shape, [2, 1]);
  assert.deepEqual(Array.from(t.data), [Math.fround(0.1), -3]);
});

Deno.test("encode writes the documented layout: padded header, sorted names, metadata", () => {
  const bytes = encodeSafetensors({
    zeta: { dtype: "I32", shape: [2], data: [7, -1] },
    alpha: { dtype: "F16", shape: [1, 2], data: [1, -2] },
  }, { format: "pt" });
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal((8 + n) % 8, 0);
  const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
  assert.match(text.slice(text.trimEnd().length), /^ *$/);
  assert.deepEqual(JSON.parse(text), {
    __metadata__: { format: "pt" },
    alpha: { dtype: "F16", shape: [1, 2], data_offsets: [0, 4] },
    zeta: { dtype: "I32", shape: [2], data_offsets: [4, 12] },
  });
  // alpha = [0x3c00, 0xc000], zeta = [7, -1] little-endian
  assert.deepEqual(Array.from(bytes.subarray(8 + n)), [
    0x00,
    0x3c,
    0x00,
    0xc0,
    7,
    0,
    0,
    0,
    0xff,
    0xff,
    0xff,
    0xff,
  ]);
});

Deno.test("encode rejects bad input with the tensor's name", () => {
  throwsSt(
    () => encodeSafetensors({ w: { dtype: "F32", shape: [2, 2], data: [1, 2, 3] } }),
    `"w"`,
    "4 elements",
    "3",
  );
  throwsSt(() => encodeSafetensors({ w: { dtype: "F32", shape: [-1], data: [] } }), `"w"`, "shape");
  throwsSt(
    () =>
      encodeSafetensors({ w: { dtype: "Q4", shape: [1], data: [1] } as unknown as TensorToWrite }),
    "Q4",
  );
  throwsSt(
    () => encodeSafetensors({ ids: { dtype: "I32", shape: [1], data: [2 ** 31] } }),
    `"ids"`,
    "2147483648",
  );
  throwsSt(
    () => encodeSafetensors({ ids: { dtype: "I64", shape: [1], data: [0.5] } }),
    `"ids"`,
    "0.5",
  );
  throwsSt(
    () => encodeSafetensors({ __metadata__: { dtype: "F32", shape: [0], data: [] } }),
    "__metadata__",
  );
  throwsSt(() => encodeSafetensors({}, { n: 3 as unknown as string }), "metadata", `"n"`);
});

Deno.test("round trip through a file for every dtype (atomic write leaves no temp file)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tensors: Record<string, TensorToWrite> = {
      f32: { dtype: "F32", shape: [2, 3], data: new Float32Array([1.5, -2, 3.25, 0, -0, 1e-30]) },
      f16: { dtype: "F16", shape: [3], data: [0.5, -65504, 2 ** -24] },
      bf16: { dtype: "BF16", shape: [2], data: [1, -3.140625] },
      f64: { dtype: "F64", shape: [1], data: [0.25] },
      i32: { dtype: "I32", shape: [2], data: new Int32Array([-2147483648, 2147483647]) },
      i64: { dtype: "I64", shape: [3], data: [-1, 0, 2147483647] },
      u8: { dtype: "U8", shape: [2], data: [0, 255] },
      empty: { dtype: "F32", shape: [0, 4], data: [] },
      scalar: { dtype: "F32", shape: [], data: [42] },
    };
    const path = `${dir}/m.safetensors`;
    await writeSafetensors(path, tensors, { note: "hi" });
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["m.safetensors"]);
    const fromFile = await loadSafetensors(path);
    const fromBytes = readSafetensors(await Deno.readFile(path), path);
    assert.deepEqual(fromFile.metadata, { note: "hi" });
    assert.deepEqual([...fromFile.tensors.keys()], Object.keys(tensors).sort());
    for (const st of [fromFile, fromBytes]) {
      for (const [name, t] of Object.entries(tensors)) {
        const got = st.tensors.get(name)!;
        assert.equal(got.dtype, t.dtype);
        assert.deepEqual(got.shape, [...t.shape]);
        const want = Array.from(t.data);
        assert.deepEqual(
          Array.from(got.data),
          t.dtype.startsWith("F") || t.dtype === "BF16" ? want.map(Math.fround) : want,
          name,
        );
      }
    }
    // a failed write (bad tensor) leaves the old file intact and no temp file
    await assert.rejects(
      writeSafetensors(path, { bad: { dtype: "F32", shape: [2], data: [1] } }),
      SafetensorsError,
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["m.safetensors"]);
    assert.equal((await loadSafetensors(path)).tensors.size, 9);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("malformed files give SafetensorsError naming file and tensor", () => {
  const ok = { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
  const data8 = new Uint8Array(8);
  const src = "bad.safetensors";
  throwsSt(() => readSafetensors(new Uint8Array(5), src), src, "too short");
  const huge = rawFile(ok, data8);
  new DataView(huge.buffer).setUint32(0, 1e6, true);
  throwsSt(() => readSafetensors(huge, src), src, "header length 1000000", "beyond");
  const hugeHigh = rawFile(ok, data8);
  new DataView(hugeHigh.buffer).setUint32(4, 1, true);
  throwsSt(() => readSafetensors(hugeHigh, src), src, "beyond");
  throwsSt(() => readSafetensors(rawFile(null, [], "{not json"), src), src, "not valid JSON");
  throwsSt(() => readSafetensors(rawFile([1, 2]), src), src, "must be a JSON object");
  throwsSt(() => readSafetensors(rawFile(null, [], '"str"'), src), src, "must be a JSON object");
  throwsSt(
    () =>
      readSafetensors(
        rawFile({ w: { dtype: "Q7", shape: [2], data_offsets: [0, 8] } }, data8),
        src,
      ),
    src,
    `"w"`,
    "unknown dtype",
    "Q7",
  );
  throwsSt(
    () =>
      readSafetensors(
        rawFile({ w: { dtype: "F8_E4M3", shape: [8], data_offsets: [0, 8] } }, data8),
        src,
      ),
    `"w"`,
    "not supported",
  );
  throwsSt(
    () =>
      readSafetensors(
        rawFile({ w: { dtype: "F32", shape: [2], data_offsets: [0, 16] } }, data8),
        src,
      ),
    src,
    `"w"`,
    "needs 8 bytes",
  );
  throwsSt(
    () =>
      readSafetensors(
        rawFile({ w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, data8),
        src,
      ),
    src,
    `"w"`,
    "beyond",
  );
  throwsSt(
    () =>
      readSafetensors(
        rawFile({ w: { dtype: "F32", shape: [1.5], data_offsets: [0, 8] } }, data8),
        src,
      ),
    `"w"`,
    "not a non-negative integer",
  );
  throwsSt(
    () =>
      readSafetensors(
        rawFile({ w: { dtype: "F32", shape: ["2"], data_offsets: [0, 8] } }, data8),
        src,
      ),
    `"w"`,
    "shape",
  );
  throwsSt(
    () =>
      readSafetensors(
        rawFile({ w: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }, data8),
        src,
      ),
    `"w"`,
  );
  throwsSt(
    () =>
      readSafetensors(
        rawFile({ w: { dtype: "F32", shape: [2], data_offsets: [8, 0] } }, data8),
        src,
      ),
    `"w"`,
    "end before they begin",
  );
  throwsSt(
    () =>
      readSafetensors(
        rawFile({
          a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          b: { dtype: "F32", shape: [1], data_offsets: [4, 8] },
        }, data8),
        src,
      ),
    src,
    "overlap",
    `"a"`,
  );
  throwsSt(
    () =>
      readSafetensors(
        rawFile({ w: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, data8),
        src,
      ),
    `"w"`,
    "gap",
  );
  throwsSt(
    () =>
      readSafetensors(
        rawFile({ w: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, data8),
        src,
      ),
    src,
    "tensors cover 4",
  );
  throwsSt(
    () => readSafetensors(rawFile({ w: { dtype: "F32", shape: [2] } }, data8), src),
    `"w"`,
    "data_offsets",
  );
  throwsSt(() => readSafetensors(rawFile({ w: 3 }, data8), src), `"w"`, "must be an object");
  throwsSt(() => readSafetensors(rawFile({ __metadata__: { a: 1 } }), src), "__metadata__", `"a"`);
  const badUtf8 = rawFile(null, [], '{"\u00e9":1}');
  badUtf8[10] = 0xff;
  throwsSt(() => readSafetensors(badUtf8, src), "UTF-8");
});

Deno.test("loadSafetensors reports truncated files and files changed after opening", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/t.safetensors`;
    const bytes = encodeSafetensors({ w: { dtype: "F32", shape: [4], data: [1, 2, 3, 4] } });
    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 3));
    await assert.rejects(
      loadSafetensors(path),
      (e: unknown) => e instanceof SafetensorsError && e.message.includes(path),
    );
    await Deno.writeFile(path, bytes.subarray(0, 12));
    await assert.rejects(loadSafetensors(path), SafetensorsError);
    await Deno.writeFile(path, bytes);
    const st = await loadSafetensors(path);
    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 4));
    throwsSt(() => st.tensors.get("w")!.data, path, `"w"`, "changed on disk");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fuzz: random and mutated files parse or throw SafetensorsError, quickly", () => {
  let seed = 0x9e3779b9;
  const rnd = () => {
    // mulberry32
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (n: number) => Math.floor(rnd() * n);
  const valid = encodeSafetensors({
    a: { dtype: "F16", shape: [3], data: [1, 2, 3] },
    b: { dtype: "I64", shape: [2, 1], data: [5, -6] },
    c: { dtype: "F32", shape: [2], data: [0.5, 0.25] },
    d: { dtype: "BF16", shape: [1], data: [7] },
  }, { k: "v" });
  const headerLen = new DataView(valid.buffer).getUint32(0, true);
  const headerText = new TextDecoder().decode(valid.subarray(8, 8 + headerLen));
  const mutateHeader = (): Uint8Array => {
    const h = JSON.parse(headerText);
    const names = Object.keys(h).filter((k) => k !== "__metadata__");
    const e = h[names[int(names.length)]];
    const junk = [-1, 1.5, 1e300, "x", null, [], {}, 2 ** 53, 0, 3, 100];
    switch (int(5)) {
      case 0:
        e.dtype = ["F32", "I64", "U8", "F8_E5M2", "??", 3][int(6)];
        break;
      case 1:
        e.shape = int(2) ? [junk[int(junk.length)]] : [int(5), int(5)];
        break;
      case 2:
        e.data_offsets[int(2)] = int(2) ? junk[int(junk.length)] : int(40);
        break;
      case 3:
        h.__metadata__ = junk[int(junk.length)];
        break;
      default:
        delete e[["dtype", "shape", "data_offsets"][int(3)]];
    }
    return rawFile(h, valid.subarray(8 + headerLen));
  };
  const kinds = ["random", "flip", "truncate", "header", "length"];
  const counts: Record<string, { parsed: number; rejected: number }> = {};
  const start = performance.now();
  for (let i = 0; i < 10_000; i++) {
    const kind = kinds[i % kinds.length];
    let bytes: Uint8Array;
    if (kind === "random") {
      bytes = new Uint8Array(int(64));
      for (let j = 0; j < bytes.length; j++) bytes[j] = int(256);
      if (bytes.length >= 8 && int(2)) {
        new DataView(bytes.buffer).setUint32(0, int(bytes.length), true);
      }
    } else if (kind === "flip") {
      bytes = valid.slice();
      for (let k = 1 + int(4); k > 0; k--) bytes[int(bytes.length)] ^= 1 << int(8);
    } else if (kind === "truncate") {
      bytes = valid.slice(0, int(valid.length));
    } else if (kind === "header") {
      bytes = mutateHeader();
    } else {
      bytes = valid.slice();
      const dv = new DataView(bytes.buffer);
      dv.setUint32(
        int(2) * 4,
        [0, 1, headerLen - 1, headerLen + 1, 0xffffffff, int(2 ** 32)][int(6)],
        true,
      );
    }
    counts[kind] ??= { parsed: 0, rejected: 0 };
    try {
      const st = readSafetensors(bytes, `fuzz#${i}`);
      for (const t of st.tensors.values()) {
        assert.equal(
          t.data.length,
          t.shape.reduce((a, b) => a * b, 1),
        );
      }
      counts[kind].parsed++;
    } catch (e) {
      if (!(e instanceof SafetensorsError)) {
        throw new Error(`case ${i} (${kind}) threw ${e}`, { cause: e });
      }
      assert.match(e.message, new RegExp(`^fuzz#${i}: `));
      counts[kind].rejected++;
    }
  }
  const ms = performance.now() - start;
  assert.ok(ms < 10_000, `fuzzing took ${ms} ms`);
  // every mutation family must exercise the error paths, and flips in the data section must still parse
  for (const kind of kinds) {
    assert.ok(counts[kind].rejected > 0, `${kind}: ${JSON.stringify(counts[kind])}`);
  }
  assert.ok(counts.flip.parsed > 0 && counts.header.parsed > 0, JSON.stringify(counts));
});

Deno.test({
  name: "fake-gpt2 (real HF file): keys, shapes, values, byte-identical re-encoding",
  ignore: !haveFakeGpt2,
  fn: async () => {
    const path = FAKE_GPT2.pathname;
    const st = await loadSafetensors(path);
    assert.deepEqual(st.metadata, { format: "pt" });
    // keys and shapes as listed by Python's json module from the same header
    const expected: Record<string, number[]> = {
      "transformer.h.0.attn.c_attn.bias": [6],
      "transformer.h.0.attn.c_attn.weight": [2, 6],
      "transformer.h.0.attn.c_proj.bias": [2],
      "transformer.h.0.attn.c_proj.weight": [2, 2],
      "transformer.h.0.ln_1.bias": [2],
      "transformer.h.0.ln_1.weight": [2],
      "transformer.h.0.ln_2.bias": [2],
      "transformer.h.0.ln_2.weight": [2],
      "transformer.h.0.mlp.c_fc.bias": [8],
      "transformer.h.0.mlp.c_fc.weight": [2, 8],
      "transformer.h.0.mlp.c_proj.bias": [2],
      "transformer.h.0.mlp.c_proj.weight": [8, 2],
      "transformer.ln_f.bias": [2],
      "transformer.ln_f.weight": [2],
      "transformer.wpe.weight": [1024, 2],
      "transformer.wte.weight": [50257, 2],
    };
    assert.deepEqual(Object.fromEntries([...st.tensors].map(([k, t]) => [k, t.shape])), expected);
    for (const t of st.tensors.values()) assert.equal(t.dtype, "F32");
    // values read with numpy.frombuffer(dtype="<f4") from the same file
    const wte = st.tensors.get("transformer.wte.weight")!.data;
    assert.deepEqual(
      Array.from(wte.subarray(0, 4)),
      [0.027433224022388458, 0.011697583831846714, -0.01185021735727787, -0.019514096900820732],
    );
    assert.equal(wte[wte.length - 1], -0.007940802723169327);
    let sum = 0;
    for (const v of wte) sum += v;
    assert.ok(Math.abs(sum - 0.577284033384899) < 1e-9, `sum ${sum}`);
    assert.deepEqual(Array.from(st.tensors.get("transformer.ln_f.weight")!.data), [1, 1]);

    const original = await Deno.readFile(path);
    const asInput: Record<string, TensorToWrite> = {};
    for (const [k, t] of st.tensors) asInput[k] = { dtype: t.dtype, shape: t.shape, data: t.data };
    const again = encodeSafetensors(asInput, st.metadata);
    assert.equal(again.length, original.length);
    assert.ok(again.every((b, i) => b === original[i]), "re-encoded bytes differ from the HF file");

    const dir = await Deno.makeTempDir();
    try {
      await writeSafetensors(`${dir}/copy.safetensors`, asInput, st.metadata);
      assert.deepEqual(await Deno.readFile(`${dir}/copy.safetensors`), original);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
