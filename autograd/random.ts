/**
 * Seeded random numbers: xoshiro128** (Blackman & Vigna 2018) seeded through splitmix32.
 *
 * One generator drives parameter init, dropout seeds and data shuffling, so a seed fixes a
 * whole run. Dropout masks themselves come from the counter-based `hashUniform` of
 * `kernels/backend.ts` so every backend draws the same mask from the same 32-bit seed.
 *
 * @module
 */

/** xoshiro128**: 128-bit state, 32-bit outputs, period 2^128 − 1. */
export class Xoshiro128 {
  #s: Uint32Array;
  #spare: number | null = null;

  /** Seeds the state from a 32-bit integer via splitmix32 (never all zeros). */
  constructor(seed: number | Uint32Array = 0) {
    if (seed instanceof Uint32Array) {
      if (seed.length !== 4 || seed.every((v) => v === 0)) {
        throw new Error("Xoshiro128: state must be 4 words, not all zero");
      }
      this.#s = Uint32Array.from(seed);
      return;
    }
    let x = seed >>> 0;
    this.#s = new Uint32Array(4);
    for (let i = 0; i < 4; i++) {
      // splitmix32 (Mueller's constants), the usual way to spread a small seed.
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.#s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if (this.#s.every((v) => v === 0)) this.#s[0] = 1;
  }

  /** Next 32-bit unsigned integer. */
  nextU32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform float in [0, 1) with 32 random bits. */
  uniform(): number {
    return this.nextU32() / 4294967296;
  }

  /** Standard normal via Box–Muller (the second value is cached). */
  normal(): number {
    if (this.#spare !== null) {
      const v = this.#spare;
      this.#spare = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.#spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Fisher–Yates shuffle in place. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }

  /** Copy of the 128-bit state (checkpoints). */
  getState(): number[] {
    return Array.from(this.#s);
  }

  /** Restores a state from {@link getState}. */
  setState(state: readonly number[]): void {
    this.#s = Uint32Array.from(state);
    this.#spare = null;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

let globalRng = new Xoshiro128(0);

/** Re-seeds the global generator used for init and dropout. */
export function manualSeed(seed: number): void {
  globalRng = new Xoshiro128(seed);
}

/** The global generator. */
export function rng(): Xoshiro128 {
  return globalRng;
}
