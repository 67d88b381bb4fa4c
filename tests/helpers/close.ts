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
