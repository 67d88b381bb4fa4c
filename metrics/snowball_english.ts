/**
 * Snowball English ("Porter2") stemmer, the 2006-era revision of the algorithm that
 * METEOR 1.5 bundles (`org.tartarus.snowball.ext.englishStemmer`). METEOR's stem module
 * compares these stems, so its behaviour — including the quirks of that revision — must
 * match exactly; the algorithm is described at https://snowballstem.org/algorithms/english/stemmer.html.
 *
 * Like the Snowball runtime, the stemmer works on UTF-16 code units and treats every
 * character outside `a`..`y` as a non-vowel. It does not lower-case its input (METEOR
 * lower-cases before stemming).
 *
 * @module
 */

/** Whole words with irregular stems, checked before anything else (Snowball's `exception1`). */
const EXCEPTION1: ReadonlyMap<string, string> = new Map([
  ["skis", "ski"],
  ["skies", "sky"],
  ["dying", "die"],
  ["lying", "lie"],
  ["tying", "tie"],
  ["idly", "idl"],
  ["gently", "gentl"],
  ["ugly", "ugli"],
  ["early", "earli"],
  ["only", "onli"],
  ["singly", "singl"],
  // Invariant words: they stem to themselves.
  ["sky", "sky"],
  ["news", "news"],
  ["howe", "howe"],
  ["atlas", "atlas"],
  ["cosmos", "cosmos"],
  ["bias", "bias"],
  ["andes", "andes"],
]);

/** Words left alone after step 1a (Snowball's `exception2`). */
const EXCEPTION2: ReadonlySet<string> = new Set([
  "inning",
  "outing",
  "canning",
  "herring",
  "earring",
  "proceed",
  "exceed",
  "succeed",
]);

/** Prefixes after which R1 starts (they would otherwise give a too-short R1). */
const R1_PREFIXES: readonly string[] = ["gener", "commun", "arsen"];

/** Step 2 suffixes, longest first so the first hit is the longest match. */
const STEP2: ReadonlyArray<readonly [string, string]> = [
  ["ational", "ate"],
  ["tional", "tion"],
  ["iveness", "ive"],
  ["fulness", "ful"],
  ["ousness", "ous"],
  ["ization", "ize"],
  ["lessli", "less"],
  ["biliti", "ble"],
  ["fulli", "ful"],
  ["entli", "ent"],
  ["ousli", "ous"],
  ["aliti", "al"],
  ["iviti", "ive"],
  ["alism", "al"],
  ["ation", "ate"],
  ["abli", "able"],
  ["alli", "al"],
  ["anci", "ance"],
  ["enci", "ence"],
  ["izer", "ize"],
  ["ator", "ate"],
  ["bli", "ble"],
  ["ogi", "og"], // only after "l", handled below
  ["li", ""], // only after a valid li-ending, handled below
];

/** Step 3 suffixes, longest first. `ative` needs R2 (handled below). */
const STEP3: ReadonlyArray<readonly [string, string]> = [
  ["ational", "ate"],
  ["tional", "tion"],
  ["alize", "al"],
  ["icate", "ic"],
  ["iciti", "ic"],
  ["ative", ""],
  ["ical", "ic"],
  ["ness", ""],
  ["ful", ""],
];

/** Step 4 suffixes, longest first; all are deleted when in R2 (`ion` only after s or t). */
const STEP4: readonly string[] = [
  "ement",
  "ment",
  "ance",
  "ence",
  "able",
  "ible",
  "ant",
  "ent",
  "ism",
  "ate",
  "iti",
  "ous",
  "ive",
  "ize",
  "ion",
  "al",
  "er",
  "ic",
];

function isVowel(c: string | undefined): boolean {
  return c === "a" || c === "e" || c === "i" || c === "o" || c === "u" || c === "y";
}

/** Vowels plus w, x and Y: the letters a short syllable may not end with. */
function isVowelWXY(c: string | undefined): boolean {
  return isVowel(c) || c === "w" || c === "x" || c === "Y";
}

function isValidLiEnding(c: string | undefined): boolean {
  return c !== undefined && "cdeghkmnrt".includes(c);
}

/**
 * True when `w.slice(0, end)` ends in a short syllable: non-vowel (not w, x, Y), vowel,
 * non-vowel; or, at the very start of the word, vowel then non-vowel.
 */
function endsWithShortSyllable(w: string, end: number): boolean {
  if (end >= 3 && !isVowelWXY(w[end - 1]) && isVowel(w[end - 2]) && !isVowel(w[end - 3])) {
    return true;
  }
  return end === 2 && !isVowel(w[1]) && isVowel(w[0]);
}

/** True when some vowel occurs in `w.slice(0, end)`. */
function hasVowelBefore(w: string, end: number): boolean {
  for (let i = 0; i < end; i++) if (isVowel(w[i])) return true;
  return false;
}

/** R1/R2 start offsets; a region that does not exist starts at the word's length. */
function markRegions(w: string): [number, number] {
  const len = w.length;
  let p1 = len;
  let p2 = len;
  let i = 0;
  const prefix = R1_PREFIXES.find((p) => w.startsWith(p));
  if (prefix !== undefined) {
    i = prefix.length;
  } else {
    while (i < len && !isVowel(w[i])) i++;
    if (i >= len) return [p1, p2];
    while (i < len && isVowel(w[i])) i++;
    if (i >= len) return [p1, p2];
    i++;
  }
  p1 = i;
  while (i < len && !isVowel(w[i])) i++;
  if (i >= len) return [p1, p2];
  while (i < len && isVowel(w[i])) i++;
  if (i >= len) return [p1, p2];
  p2 = i + 1;
  return [p1, p2];
}

function step1a(w: string): string {
  // The possessive / apostrophe suffixes go first.
  if (w.endsWith("'s'")) w = w.slice(0, -3);
  else if (w.endsWith("'s")) w = w.slice(0, -2);
  else if (w.endsWith("'")) w = w.slice(0, -1);

  if (w.endsWith("sses")) return w.slice(0, -2);
  if (w.endsWith("ied") || w.endsWith("ies")) {
    const stem = w.slice(0, -3);
    return stem.length >= 2 ? stem + "i" : stem + "ie";
  }
  if (w.endsWith("ss") || w.endsWith("us")) return w;
  if (w.endsWith("s")) {
    // Delete the s if a vowel occurs before the letter that precedes it.
    const sAt = w.length - 1;
    if (sAt >= 1 && hasVowelBefore(w, sAt - 1)) return w.slice(0, -1);
  }
  return w;
}

function step1b(w: string, p1: number): string {
  for (const suf of ["eedly", "eed"]) {
    if (w.endsWith(suf)) {
      const start = w.length - suf.length;
      return start >= p1 ? w.slice(0, start) + "ee" : w;
    }
  }
  const suf = ["ingly", "edly", "ing", "ed"].find((s) => w.endsWith(s));
  if (suf === undefined) return w;
  const start = w.length - suf.length;
  if (!hasVowelBefore(w, start)) return w;
  w = w.slice(0, start);
  if (w.endsWith("at") || w.endsWith("bl") || w.endsWith("iz")) return w + "e";
  for (const d of ["bb", "dd", "ff", "gg", "mm", "nn", "pp", "rr", "tt"]) {
    if (w.endsWith(d)) return w.slice(0, -1);
  }
  // A short word gets an e: R1 must end exactly here (the Java code tests `atmark p1`).
  if (w.length === p1 && endsWithShortSyllable(w, w.length)) return w + "e";
  return w;
}

function step1c(w: string): string {
  const last = w[w.length - 1];
  if ((last === "y" || last === "Y") && w.length > 2 && !isVowel(w[w.length - 2])) {
    return w.slice(0, -1) + "i";
  }
  return w;
}

function step2(w: string, p1: number): string {
  for (const [suf, rep] of STEP2) {
    if (!w.endsWith(suf)) continue;
    const start = w.length - suf.length;
    if (start < p1) return w;
    if (suf === "ogi") return w[start - 1] === "l" ? w.slice(0, start) + rep : w;
    if (suf === "li") return isValidLiEnding(w[start - 1]) ? w.slice(0, start) : w;
    return w.slice(0, start) + rep;
  }
  return w;
}

function step3(w: string, p1: number, p2: number): string {
  for (const [suf, rep] of STEP3) {
    if (!w.endsWith(suf)) continue;
    const start = w.length - suf.length;
    if (start < p1) return w;
    if (suf === "ative" && start < p2) return w;
    return w.slice(0, start) + rep;
  }
  return w;
}

function step4(w: string, p2: number): string {
  for (const suf of STEP4) {
    if (!w.endsWith(suf)) continue;
    const start = w.length - suf.length;
    if (start < p2) return w;
    if (suf === "ion") {
      const prev = w[start - 1];
      return prev === "s" || prev === "t" ? w.slice(0, start) : w;
    }
    return w.slice(0, start);
  }
  return w;
}

function step5(w: string, p1: number, p2: number): string {
  const start = w.length - 1;
  if (w.endsWith("e")) {
    if (start >= p2 || (start >= p1 && !endsWithShortSyllable(w, start))) return w.slice(0, start);
    return w;
  }
  if (w.endsWith("l") && start >= p2 && w[start - 1] === "l") return w.slice(0, start);
  return w;
}

/**
 * Stem one (lower-case) word with the Snowball English stemmer as bundled in METEOR 1.5.
 *
 * @param word the word; words shorter than three characters come back unchanged
 * @returns its stem
 */
export function snowballEnglishStem(word: string): string {
  const exception = EXCEPTION1.get(word);
  if (exception !== undefined) return exception;
  if (word.length < 3) return word;

  // Prelude: drop a leading apostrophe, mark consonant-y as Y.
  let w = word.startsWith("'") ? word.slice(1) : word;
  let yFound = false;
  if (w.startsWith("y")) {
    w = "Y" + w.slice(1);
    yFound = true;
  }
  for (let i = 1; i < w.length; i++) {
    if (w[i] === "y" && isVowel(w[i - 1])) {
      w = w.slice(0, i) + "Y" + w.slice(i + 1);
      yFound = true;
    }
  }

  const [p1, p2] = markRegions(w);
  w = step1a(w);
  if (!EXCEPTION2.has(w)) {
    w = step1b(w, p1);
    w = step1c(w);
    w = step2(w, p1);
    w = step3(w, p1, p2);
    w = step4(w, p2);
    w = step5(w, p1, p2);
  }
  return yFound ? w.replaceAll("Y", "y") : w;
}
