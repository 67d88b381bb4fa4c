/**
 * METEOR 1.5's `-norm` normalisation for English (`edu.cmu.meteor.util.Normalizer`
 * followed by lower-casing): a Moses-style tokenisation with METEOR's additions (quote
 * and dash normalisation, dashes between words split so that "family-friendly" scores
 * as "family friendly", dots dropped from mixed abbreviations "U.S." -> "US").
 * Punctuation is kept (`-norm` without `-noPunct`).
 *
 * Regular expressions mirror Java's semantics: `\s` is ASCII white space and digits are
 * ASCII digits, as in `java.util.regex` without the Unicode flags.
 *
 * @module
 */

// Letters as METEOR lists them: Latin (with Western European accents), Cyrillic.
const ALPHA = "A-Za-z\u0160\u017d\u0161\u017e\u0178\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u017e" +
  "\u0400-\u04ff\u0500-\u0527\ua640-\ua66e\ua67e-\ua697\u1d00-\u1d7f";
const ALNUM = "0-9" + ALPHA;
const JAVA_SPACE = " \\t\\n\\x0B\\f\\r";

const SEP_OTHER = new RegExp(`([^${ALNUM}${JAVA_SPACE}.'\`,\\-\u2018\u2019])`, "gu");
const MULTI_DOT = /\.([.]+)/g;
const MULTI_DOT2 = /DOTMULTI\.([^.])/g;
const COMMA1 = /([^0-9]),([^0-9])/g;
const COMMA2 = /([0-9]),([^0-9])/g;
const COMMA3 = /([^0-9]),([0-9])/g;
const QUOTE_SINGLE = /[`\u2018\u2019]/g;
const QUOTE_DOUBLE = /[\u201c\u201d]|''/g;
const RM_DASH = new RegExp(`([${ALNUM}.])-([${ALNUM}])`, "gu");
const CONT_EN1 = new RegExp(`([^${ALPHA}])'([^${ALPHA}])`, "gu");
const CONT_EN2 = new RegExp(`([^${ALPHA}0-9])'([${ALPHA}])`, "gu");
const CONT_EN3 = new RegExp(`([${ALPHA}])'([^${ALPHA}])`, "gu");
const CONT_EN4 = new RegExp(`([${ALPHA}])'([${ALPHA}])`, "gu");
const CONT_EN5 = /([0-9])'(s)/g;
const WHITE = /[ \u2000-\u200a\u202f\u205f\u3000\u00a0]+/g;
const HAS_ALPHA = new RegExp(`[${ALPHA}]`, "u");

/**
 * English non-breaking prefixes of METEOR 1.5 (`resources/nonbreaking/english.prefixes`,
 * taken by METEOR from Moses): a word "X." with X listed keeps its dot. `true` marks
 * prefixes that only keep the dot before a number ("No. 5").
 */
const NONBREAKING: ReadonlyMap<string, boolean> = new Map([
  ..."ABCDEFGHIJKLMNOPQRSTUVWXYZ".split("").map((c) => [c, false] as const),
  ...("Adj Adm Adv Asst Bart Bldg Brig Bros Capt Cmdr Col Comdr Con Corp Cpl DR Dr Drs Ens " +
    "Gen Gov Hon Hr Hosp Insp Lt MM MR MRS MS Maj Messrs Mlle Mme Mr Mrs Ms Msgr Op Ord Pfc " +
    "Ph Prof Pvt Rep Reps Res Rev Rt Sen Sens Sfc Sgt Sr St Supt Surg v vs i.e rev e.g Nos Nr")
    .split(" ").map((w) => [w, false] as const),
  ...["No", "Art", "pp"].map((w) => [w, true] as const),
]);

/** Java's `trim()`: strips every character up to U+0020. */
function javaTrim(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && s.charCodeAt(a) <= 0x20) a++;
  while (b > a && s.charCodeAt(b - 1) <= 0x20) b--;
  return s.slice(a, b);
}

/** Java's `StringTokenizer` default delimiters: space, tab, newline, carriage return, form feed. */
export function javaTokens(s: string): string[] {
  return s.split(/[ \t\n\r\f]+/).filter((t) => t.length > 0);
}

/**
 * Normalise one line as METEOR 1.5 does with `-l en -norm`: tokenise, normalise quotes
 * and dashes, split contractions and inner dashes, then lower-case.
 *
 * @param line a hypothesis or reference
 * @returns the normalised, space-separated, lower-case line
 */
export function meteorNormalize(line: string): string {
  let s = " " + line + " ";
  s = s.replace(SEP_OTHER, " $1 ");

  // Protect runs of dots from the sentence-final dot splitting below.
  s = s.replace(MULTI_DOT, " DOTMULTI$1");
  while (s.includes("DOTMULTI.")) {
    s = s.replace(MULTI_DOT2, "DOTDOTMULTI $1");
    s = s.replaceAll("DOTMULTI.", "DOTDOTMULTI");
  }

  s = s.replace(COMMA1, "$1 , $2").replace(COMMA2, "$1 , $2").replace(COMMA3, "$1 , $2");
  s = s.replace(QUOTE_SINGLE, "'").replace(QUOTE_DOUBLE, ' " ');
  s = s.replaceAll("\u2013", "-").replaceAll("--", "-");
  s = s.replace(RM_DASH, "$1 $2");

  // English splits contractions to the right ("do n't" stays, "it's" -> "it 's").
  s = s.replace(CONT_EN1, "$1 ' $2").replace(CONT_EN2, "$1 ' $2").replace(CONT_EN3, "$1 ' $2");
  s = s.replace(CONT_EN4, "$1 '$2").replace(CONT_EN5, "$1 '$2");

  const words = javaTokens(s);
  let out = "";
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (w.length > 1 && w.endsWith(".")) {
      const pre = w.slice(0, -1);
      const numericOnly = NONBREAKING.get(pre);
      const next = words[i + 1];
      if (pre.includes(".") && HAS_ALPHA.test(pre)) {
        out += w.replaceAll(".", ""); // U.S. -> US
      } else if (numericOnly === false || (next !== undefined && /^[a-z]/.test(next))) {
        out += w;
      } else if (numericOnly === true && next !== undefined && /^[0-9]+/.test(next)) {
        out += w;
      } else {
        out += pre + " .";
      }
    } else {
      out += w;
    }
    out += " ";
  }
  s = out;

  while (s.includes("DOTDOTMULTI")) s = s.replaceAll("DOTDOTMULTI", "DOTMULTI.");
  s = s.replaceAll("DOTMULTI", ".");
  s = javaTrim(s.replace(WHITE, " "));
  return s.toLowerCase();
}
