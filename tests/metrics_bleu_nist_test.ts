// BLEU and NIST on hand-computed cases. Every expected value is derived in the
// comments from mteval-v13a's definitions; the same cases were also run through
// the official script (measure_scores.py + mteval-v13a.pl) and agree.
import assert from "node:assert/strict";
import { bleu, bleuNist, nist } from "../metrics/bleu_nist.ts";
import { assertNear } from "./helpers/close.ts";

/** mteval's NIST length penalty: beta chosen so a 2/3 length ratio scores 0.5. */
const nistPenalty = (ratio: number) => {
  const beta = -Math.log(0.5) / Math.log(1.5) ** 2;
  return Math.exp(-beta * Math.log(ratio) ** 2);
};

Deno.test("BLEU: an output identical to its reference scores 1", () => {
  // every n-gram precision is 1 and the lengths are equal, so BP = 1
  assertNear(bleu(["the cat sat on the mat"], [["the cat sat on the mat"]]), 1, "BLEU", 1e-12);
});

Deno.test("BLEU: an empty output scores 0, as does NIST", () => {
  // mteval: no test words -> exp_len_score = 0 -> BLEU 0; NIST: no matched info, ratio 0
  const r = bleuNist([""], [["the cat sat"]]);
  assert.equal(r.bleu, 0);
  assert.equal(r.nist, 0);
});

Deno.test("BLEU: no n-gram overlap gives mteval's smoothed value, not 0", () => {
  // "a b c d" vs "w x y z": counts 4,3,2,1, no match at any order. mteval-v13a smooths
  // each zero precision to 1/(2^k * count): 1/(2*4), 1/(4*3), 1/(8*2), 1/(16*1), BP = 1.
  // BLEU = (1/8 * 1/12 * 1/16 * 1/16)^(1/4) = 24576^(-1/4) = 0.07986788803...
  assertNear(bleu(["a b c d"], [["w x y z"]]), 24576 ** -0.25, "BLEU", 1e-12);
  // NIST is a sum of matched information: nothing matches
  assert.equal(nist(["a b c d"], [["w x y z"]]), 0);
});

Deno.test("BLEU: multiple references clip counts by the best reference, smoothing the 4-gram", () => {
  // output "the cat is on the mat" (6 words); refs R1 "the cat sat on the mat",
  // R2 "there is a cat on the mat".
  // 1-grams: the(2, R1 has 2), cat, is (R2), on, mat -> 6/6
  // 2-grams: the cat (R1), cat is (-), is on (-), on the (R1,R2), the mat (R1,R2) -> 3/5
  // 3-grams: the cat is, cat is on, is on the, on the mat (R1,R2) -> 1/4
  // 4-grams: none of 3 matches -> smoothed 1/(2*3)
  // closest reference length to 6 is 6 -> BP = 1
  // BLEU = (1 * 3/5 * 1/4 * 1/6)^(1/4) = 0.025^(1/4) = 0.39763536438...
  const refs = [["the cat sat on the mat", "there is a cat on the mat"]];
  assertNear(bleu(["the cat is on the mat"], refs), 0.025 ** 0.25, "BLEU", 1e-12);
});

Deno.test("BLEU: brevity penalty uses the closest reference length", () => {
  // output "the cat" (2 words) vs refs of 6 and 3 words: closest is 3.
  // precisions: 1-gram 2/2, 2-gram 1/1; no 3- or 4-grams in the output, which mteval
  // scores as log 1 = 0 (not smoothed). BP = exp(1 - 3/2) -> BLEU = exp(-0.5)
  const refs = [["the cat sat on the mat", "the cat sat"]];
  assertNear(bleu(["the cat"], refs), Math.exp(-0.5), "BLEU", 1e-12);
});

Deno.test("BLEU: equally close references resolve to the shorter one", () => {
  // output "a b c d" (4), refs "a b c" (3) and "a b c d e" (5): both 1 away; mteval
  // takes 3, which is shorter than the output, so BP = 1. All precisions are 1
  // (every n-gram of "a b c d" is in the second reference), so BLEU = 1; had the
  // longer reference been chosen, BLEU would be exp(1 - 5/4).
  assertNear(bleu(["a b c d"], [["a b c", "a b c d e"]]), 1, "BLEU", 1e-12);
});

Deno.test("BLEU and NIST are corpus-level: statistics are pooled before scoring", () => {
  // instance 1: "a b c d" vs "a b c d" (all match); instance 2: "w x y z" vs "a b c d"
  // (nothing matches). Pooled: 1-grams 4/8, 2-grams 3/6, 3-grams 2/4, 4-grams 1/2,
  // lengths 8 = 8 -> BLEU = 1/2 exactly. (The mean of the sentence scores would be
  // (1 + 24576^(-1/4)) / 2 = 0.5399.)
  assertNear(bleu(["a b c d", "w x y z"], [["a b c d"], ["a b c d"]]), 0.5, "BLEU", 1e-12);
});

Deno.test("NIST: an output identical to a two-word reference", () => {
  // refs: "a b" (2 words). info(a) = info(b) = -log2(1/2) = 1; info("a b") =
  // -log2(count(a b)/count(a)) = 0. Output "a b": 1-gram info 2 over 2 words = 1,
  // 2-gram info 0 over 1 -> NIST = 1; average reference length 2 = output length -> no penalty.
  assertNear(nist(["a b"], [["a b"]]), 1, "NIST", 1e-12);
});

Deno.test("NIST: information weights from all references, length penalty below ratio 1", () => {
  // refs: "a b a" and "b c" (5 words). counts a:2 b:2 c:1, "a b":1 "b a":1 "b c":1.
  // info(a) = info(b) = log2(5/2), info(c) = log2(5); each bigram: -log2(1/2) = 1.
  // output 1 "a b": matches a, b, "a b"; output 2 "c c": c clipped to 1, "c c" no match.
  // 1-grams: (2 log2(2.5) + log2(5)) / 4 output words; 2-grams: 1 / 2 output bigrams.
  // length ratio = 4 output words / (5 reference words / 1 ref per segment) = 0.8
  const expected = ((2 * Math.log2(2.5) + Math.log2(5)) / 4 + 1 / 2) * nistPenalty(0.8);
  assertNear(nist(["a b", "c c"], [["a b a"], ["b c"]]), expected, "NIST", 1e-12); // 1.41167892...
});

Deno.test("NIST: mteval's quirk for bigrams starting with the word 0 is reproduced", () => {
  // ref "0 a 0 a b" (5 words): count(0) = count(a) = 2, count("0 a") = 2.
  // info("0 a") should be -log2(2/2) = 0, but Perl's `$mgram ? ... : ...` treats the
  // prefix "0" as false and divides by the total word count: -log2(2/5) = log2(2.5).
  // output "0 a": 1-grams (log2(2.5) * 2) / 2, 2-gram log2(2.5) / 1, ratio 2/5.
  const expected = 2 * Math.log2(2.5) * nistPenalty(0.4); // 0.0767184...
  assertNear(nist(["0 a"], [["0 a 0 a b"]]), expected, "NIST", 1e-12);
});

Deno.test("BLEU/NIST normalise text like mteval: case, punctuation, entities", () => {
  // "The CAT, sat." -> "the cat , sat ." ; "&quot;" is decoded before tokenising
  const a = bleuNist(["The CAT, sat."], [["the cat , sat ."]]);
  assertNear(a.bleu, 1, "BLEU", 1e-12);
  const b = bleuNist(["say &quot;hi&quot;"], [['say " hi "']]);
  assertNear(b.bleu, 1, "BLEU", 1e-12);
});

Deno.test("bleu/nist reject misaligned input", () => {
  assert.throws(() => bleu(["a", "b"], [["a"]]), /2 outputs but 1 reference groups/);
  assert.throws(() => nist(["a"], [[]]), /refs\[0\] is empty/);
  assert.throws(() => bleu([], []), /no outputs/);
});
