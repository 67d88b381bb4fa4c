/**
 * Shape and view helpers of the wasm backend: bounds checks of strided views and the merging of
 * dimensions before an elementwise kernel runs.
 *
 * @module
 */

import type { View } from "../backend.ts";

/** Whether two shapes are equal. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Number of elements of a shape. */
export function sizeOfShape(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major contiguous strides. */
export function contiguousStridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/**
 * Throws unless every element of view `v` lies inside a buffer of `length` elements; `what`
 * names the operand in the message.
 */
export function checkView(v: View, length: number, what: string): void {
  if (v.shape.length !== v.strides.length) {
    throw new Error(`wasm backend: ${what} view has shape [${v.shape}] but strides [${v.strides}]`);
  }
  let lo = v.offset, hi = v.offset, empty = false;
  for (let d = 0; d < v.shape.length; d++) {
    const n = v.shape[d];
    if (!Number.isInteger(n) || n < 0) {
      throw new Error(`wasm backend: ${what} has bad shape [${v.shape}]`);
    }
    if (n === 0) empty = true;
    const ext = (n - 1) * v.strides[d];
    if (ext > 0) hi += ext;
    else lo += ext;
  }
  if (!empty && (lo < 0 || hi >= length || !Number.isInteger(v.offset))) {
    throw new RangeError(
      `wasm backend: ${what} view (shape [${v.shape}], strides [${v.strides}], offset ` +
        `${v.offset}) reaches elements ${lo}..${hi} of a buffer of ${length}`,
    );
  }
}

/**
 * Drops size-1 dimensions and merges neighbours that every operand steps through as one
 * (stride[d] = stride[d+1]·shape[d+1] for all operands), so that the innermost row is as long as
 * possible. Returns the merged shape (at least one dimension) and each operand's strides.
 */
export function collapseDims(
  shape: readonly number[],
  operandStrides: readonly (readonly number[])[],
): { dims: number[]; strides: number[][] } {
  const dims: number[] = [];
  const strides: number[][] = operandStrides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = dims.length - 1;
    if (last >= 0 && operandStrides.every((s, k) => strides[k][last] === s[d] * shape[d])) {
      dims[last] *= shape[d];
      for (let k = 0; k < operandStrides.length; k++) strides[k][last] = operandStrides[k][d];
      continue;
    }
    dims.push(shape[d]);
    for (let k = 0; k < operandStrides.length; k++) strides[k].push(operandStrides[k][d]);
  }
  if (dims.length === 0) {
    dims.push(1);
    for (const s of strides) s.push(0);
  }
  return { dims, strides };
}
