/**
 * Shared numeric assertions of the tests: elementwise closeness with NaN and ±Inf handled
 * exactly, and a scalar form.
 *
 * @module
 */
import assert from "node:assert/strict";

/**
 * Asserts |got − want| ≤ atol + rtol·|want| elementwise. NaN is expected only where `want` is
 * NaN, and ±Inf only where `want` is the same infinity. Names the first element at fault.
 */
export function assertClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  what: string,
  rtol = 1e-5,
  atol = 1e-6,
): void {
  assert.equal(got.length, want.length, `${what}: length ${got.length}, expected ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    const a = got[i], b = want[i];
    if (Number.isNaN(b)) {
      assert.ok(Number.isNaN(a), `${what}[${i}]: got ${a}, want NaN`);
      continue;
    }
    if (a === b) continue;
    assert.ok(Number.isFinite(b), `${what}[${i}]: got ${a}, want ${b}`);
    assert.ok(
      Math.abs(a - b) <= atol + rtol * Math.abs(b),
      `${what}[${i}]: got ${a}, want ${b} (|diff| ${Math.abs(a - b)})`,
    );
  }
}

/** Asserts |got − want| ≤ tol for two numbers (NaN equals only NaN). */
export function assertNear(got: number, want: number, what: string, tol = 1e-6): void {
  if (Number.isNaN(want)) {
    assert.ok(Number.isNaN(got), `${what}: got ${got}, want NaN`);
    return;
  }
  assert.ok(got === want || Math.abs(got - want) <= tol, `${what}: got ${got}, want ${want}`);
}

/** Tolerances of {@link assertCloseScaled}: element i may differ by rtol·|want[i]| + atolScale·max|want| + atol. */
export interface ScaledTolerance {
  /** Relative to each element. */
  rtol?: number;
  /** Relative to the largest |want| (f32 sums in another order differ by ulps of the largest terms). */
  atolScale?: number;
  /** Absolute. */
  atol?: number;
  /** Values of `want` at or below this are markers (e.g. a fully masked row's lse): compared exactly, left out of the scale. */
  exactBelow?: number;
}

/**
 * Asserts closeness with a tolerance that scales with the tensor's largest magnitude (see
 * {@link ScaledTolerance}); NaN is expected only where `want` is NaN. Returns the worst
 * |got − want| / max|want|, for reporting.
 */
export function assertCloseScaled(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  what: string,
  t: ScaledTolerance,
): number {
  assert.equal(got.length, want.length, `${what}: length ${got.length}, expected ${want.length}`);
  const exactBelow = t.exactBelow ?? -Infinity;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    if (want[i] > exactBelow) scale = Math.max(scale, Math.abs(want[i]));
  }
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const a = got[i], e = want[i];
    if (Number.isNaN(e)) {
      assert.ok(Number.isNaN(a), `${what}: element ${i} is ${a}, expected NaN`);
      continue;
    }
    if (e <= exactBelow) {
      assert.equal(a, e, `${what}: element ${i} is ${a}, expected exactly ${e}`);
      continue;
    }
    const tol = (t.rtol ?? 0) * Math.abs(e) + (t.atolScale ?? 0) * scale + (t.atol ?? 0);
    const err = Math.abs(a - e);
    if (!(err <= tol)) {
      assert.fail(`${what}: element ${i} is ${a}, expected ${e} (tolerance ${tol})`);
    }
    worst = Math.max(worst, err / (scale || 1));
  }
  return worst;
}

/**
 * Asserts a sum of `terms` products is within the worst-case bound of float32 summation:
 * |got − want| ≤ factor·terms·2⁻²⁴·mag + 1e-30, where `want` is the exact (float64) sum and `mag`
 * the sum of the terms' magnitudes, elementwise (matmul: mag = |A|·|B|). NaN is expected only
 * where `want` is NaN.
 */
export function assertWithinSumBound(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  mag: ArrayLike<number>,
  terms: number,
  what: string,
  factor = 1,
): void {
  assert.equal(got.length, want.length, `${what}: length ${got.length}, expected ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    const a = got[i], b = want[i];
    if (Number.isNaN(b)) {
      assert.ok(Number.isNaN(a), `${what}[${i}]: got ${a}, want NaN`);
      continue;
    }
    if (a === b) continue;
    const tol = factor * Math.max(1, terms) * 2 ** -24 * mag[i] + 1e-30;
    if (!(Math.abs(a - b) <= tol)) {
      assert.fail(`${what}[${i}]: got ${a}, want ${b} (tolerance ${tol})`);
    }
  }
}
