/**
 * The tokenisation that pycocoevalcap applies before ROUGE-L, CIDEr and METEOR
 * in the official E2E NLG scoring script: Stanford CoreNLP 3.4.1's
 * `PTBTokenizer -preserveLines -lowerCase` (its JFlex lexer `PTBLexer` with the
 * default PTB3 options of that release), followed by pycocoevalcap's removal of
 * the punctuation tokens in {@link COCO_PUNCTUATIONS}.
 *
 * The lexer is re-implemented here as a longest-match scanner over the same
 * rules as the 3.4.1 JFlex specification, in its rule order (a JFlex lexer takes
 * the longest match over all rules, counting trailing context, and breaks ties
 * by rule order). Each rule's regex is our own JavaScript transcription;
 * top-level alternatives that can overlap are separate sub-rules so that the
 * longest one wins as in a DFA, and nested alternatives are ordered so that
 * JavaScript's first-match backtracking finds that same longest match.
 *
 * Checked against the real CoreNLP 3.4.1 (compiled from its v3.4.1 sources):
 * identical output on all 68,591 distinct lines of the E2E data (MRs,
 * references, outputs) and on ~37,000 randomly assembled adversarial lines.
 * Known approximation (it cannot matter for E2E data, which is ASCII plus "£"
 * and "é"): Unicode classes follow the JavaScript engine's Unicode version
 * rather than the tables baked into the 3.4.1 lexer.
 *
 * @module
 */

/** The tokens that pycocoevalcap's `PTBTokenizer` wrapper drops after tokenising. */
export const COCO_PUNCTUATIONS: ReadonlySet<string> = new Set([
  "''",
  "'",
  "``",
  "`",
  "-LRB-",
  "-RRB-",
  "-LCB-",
  "-RCB-",
  ".",
  "?",
  "!",
  ",",
  ":",
  "-",
  "--",
  "...",
  ";",
]);

// ---------------------------------------------------------------------------
// Regex building blocks. The JFlex spec is %caseless: literal letters match
// either case, but character classes do not change, so literals go through
// `ci` while classes are written out as they are in the spec.

/** Escapes a literal and makes its ASCII letters match both cases. */
function ci(literal: string): string {
  let out = "";
  for (const ch of literal) {
    if (/[A-Za-z]/.test(ch)) out += `[${ch.toLowerCase()}${ch.toUpperCase()}]`;
    else if (/[\\^$.*+?()[\]{}|/]/.test(ch)) out += `\\${ch}`;
    else out += ch;
  }
  return out;
}

/** Caseless alternation of literals, longest first so that backtracking prefers the longest. */
function ciAlt(words: string[]): string {
  return `(?:${[...words].sort((a, b) => b.length - a.length).map(ci).join("|")})`;
}

const SPACE = "[ \\t\\u00A0\\u2000-\\u200A\\u3000]";
const NEWLINE = "(?:\\r\\n|\\r|\\n|\\u2028|\\u2029|\\u000B|\\u000C|\\u0085)";
const SPACENL = `(?:${SPACE}|${NEWLINE})`;
const SPACENLS = `(?:${SPACENL})+`;
const NAME_CHARS = "[A-Za-z0-9_:.\\-]";
const SGML =
  `<(?:[!?][A-Za-z\\-][^>\\r\\n]*|[A-Za-z]${NAME_CHARS}*(?:[ ]+(?:[A-Za-z]${NAME_CHARS}*[ ]*=[ ]*(?:'[^']*'|"[^"]*")|[A-Za-z]${NAME_CHARS}*))*[ ]*\\/?|\\/[A-Za-z]${NAME_CHARS}*)[ ]*>`;
const UPPER = "\\p{Uppercase}";
const SENTEND = `${SPACENL}(?:${SGML}|${SPACENL}|${UPPER})`;
const DIGIT = "[\\p{Nd}\\u07C0-\\u07C9]";
const DATE = `${DIGIT}{1,2}[\\-\\/]${DIGIT}{1,2}[\\-\\/]${DIGIT}{2,4}`;
const NUM = `(?:${DIGIT}*(?:[.:,\\u00AD\\u066B\\u066C]${DIGIT}+)+|${DIGIT}+)`;
const NUMBER = `[\\-+]?${NUM}`;
const SUBSUPNUM =
  "[\\u207A\\u207B\\u208A\\u208B]?(?:[\\u2070\\u00B9\\u00B2\\u00B3\\u2074-\\u2079]+|[\\u2080-\\u2089]+)";
const FRAC = `(?:${DIGIT}{1,4}[\\- \\u00A0])?${DIGIT}{1,4}(?:\\\\?\\/|\\u2044)${DIGIT}{1,4}`;
const FRAC2 = "[\\u00BC\\u00BD\\u00BE\\u2153-\\u215E]";
const DOLSIGN = "(?:[A-Z]*\\$|#)";
const DOLSIGN2 =
  "[\\u00A2\\u00A3\\u00A4\\u00A5\\u0080\\u20A0\\u20AC\\u060B\\u0E3F\\u20A4\\uFFE0\\uFFE1\\uFFE5\\uFFE6]";
const SPLET = `&[aeiouAEIOU]${ciAlt(["acute", "grave", "uml"])};`;
// [:letter:] plus the combining marks and odd letters the spec adds by hand
const LETTER_CLASS = "[\\p{L}\\u00AD\\u0237-\\u024F\\u02C2-\\u02C5\\u02D2-\\u02DF\\u02E5-\\u02FF" +
  "\\u0300-\\u036F\\u0370-\\u037D\\u0384\\u0385\\u03CF\\u03F6\\u03FC-\\u03FF\\u0483-\\u0487\\u04CF" +
  "\\u04F6-\\u04FF\\u0510-\\u0525\\u055A-\\u055F\\u0591-\\u05BD\\u05BF\\u05C1\\u05C2\\u05C4\\u05C5" +
  "\\u05C7\\u0615-\\u061A\\u063B-\\u063F\\u064B-\\u065E\\u0670\\u06D6-\\u06EF\\u06FA-\\u06FF\\u070F" +
  "\\u0711\\u0730-\\u074F\\u0750-\\u077F\\u07A6-\\u07B1\\u07CA-\\u07F5\\u07FA\\u0900-\\u0903\\u093C" +
  "\\u093E-\\u094E\\u0951-\\u0955\\u0962-\\u0963\\u0981-\\u0983\\u09BC-\\u09C4\\u09C7\\u09C8" +
  "\\u09CB-\\u09CD\\u09D7\\u09E2\\u09E3\\u0A01-\\u0A03\\u0A3C\\u0A3E-\\u0A4F\\u0A81-\\u0A83" +
  "\\u0ABC-\\u0ACF\\u0B82\\u0BBE-\\u0BC2\\u0BC6-\\u0BC8\\u0BCA-\\u0BCD\\u0C01-\\u0C03\\u0C3E-\\u0C56" +
  "\\u0D3E-\\u0D44\\u0D46-\\u0D48\\u0E30-\\u0E3A\\u0E47-\\u0E4E\\u0EB1-\\u0EBC\\u0EC8-\\u0ECD]";
const LETTER = `(?:${LETTER_CLASS}|${SPLET})`;
const LETTER_OR_DIGIT = `(?:${LETTER}|${DIGIT})`;
const WORD = `${LETTER}${LETTER_OR_DIGIT}*(?:[.!?]${LETTER}${LETTER_OR_DIGIT}*)*`;
const FILENAME_EXT = ciAlt(
  ("bat bmp c class cgi cpp dll doc docx exe gif gz h htm html jar java jpeg jpg mov mp3 pdf " +
    "php pl png ppt ps py sql tar txt wav x xml zip").split(" "),
);
const FILENAME = `${LETTER_OR_DIGIT}+(?:[.]${LETTER_OR_DIGIT}+)*(?:[.]${FILENAME_EXT})`;
const APOS = `(?:['\\u0092\\u2019]|&${ci("apos")};)`;
const APOSETCETERA = `(?:${APOS}|[\`\\u0091\\u2018\\u201B])`;
const LD = "[\\p{L}\\p{Nd}]"; // [:letter:]|[:digit:]
const HYPHEN = "[\\-_\\u058A\\u2010\\u2011]";
const THING_PART = `(?:[dDoOlL]${APOSETCETERA}${LD})?${LD}+`;
const THING = `${THING_PART}(?:${HYPHEN}${THING_PART})*`;
const SPAMP = `&${ci("amp")};`;
const THINGA = `[A-Z]+(?:(?:${SPAMP}|[+&])[A-Z]+)+`;
const THING3 = "[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\\\?\\/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}";
const ACRO_SPECIAL = `${ci("U.S.-")}(?:${ci("U.S.S.R")}|${ci("U.K")})|${
  ciAlt(["Canada", "Sino", "Korean", "EU", "Japan", "non"])
}-${ci("U.S")}`;
const ACRO = `(?:${ACRO_SPECIAL}|[A-Za-z](?:\\.[A-Za-z])*)`;
const ACRO2 = `(?:${ACRO_SPECIAL}|[A-Za-z](?:\\.[A-Za-z])+)`;
const HTHING = `[A-Za-z0-9][A-Za-z0-9.,\\u00AD]*(?:-(?:${ACRO2}\\.|[A-Za-z0-9\\u00AD]+))+`;
const REDAUX = `${APOS}(?:[msdMSD]|${ciAlt(["re", "ve", "ll"])})`;
const SWORD = "[A-Za-z\\u00AD]*[A-MO-Za-mo-z]\\u00AD*";
const SREDAUX = `[nN]${APOSETCETERA}[tT]`;
/** APOWORD's alternatives; kept apart so the longest one wins. */
const APOWORD_ALTS = [
  `${APOS}[nN]${APOS}?`,
  `[lLdDjJ]${APOS}`,
  `${ci("Dunkin")}${APOS}`,
  `${ci("somethin")}${APOS}`,
  `${ci("ol")}${APOS}`,
  `${APOS}${ci("em")}`,
  `[A-HJ-XZn]${APOSETCETERA}\\p{L}{2}\\p{L}*`,
  `${APOS}[2-9]0[sS]`,
  `${APOS}${ci("til")}[lL]?`,
  `\\p{L}\\p{L}*[aeiouyAEIOUY]${APOSETCETERA}[aeiouA-Z]\\p{L}*`,
  `${APOS}${ci("cause")}`,
  `${ci("cont'd")}\\.?`,
  ci("'twas"),
  ci("nor'easter"),
  ci("c'mon"),
  ci("e'er"),
  ci("s'mores"),
  ci("ev'ry"),
  ci("li'l"),
  ci("nat'l"),
  `[oO]${APOSETCETERA}[oO]`,
];
const APOWORD2 = `[yY]${APOS}`;
const URL_END = '[^ \\t\\n\\f\\r"<>|.!?(){},\\-]';
const FULLURL = `${ci("http")}[sS]?:\\/\\/[^ \\t\\n\\f\\r"<>|(){}]+${URL_END}`;
const URL_PATH = `(?:\\/[^ \\t\\n\\f\\r"<>|()]+${URL_END})?`;
const LIKELYURL_WWW = `${
  ci("www")
}\\.(?:[^ \\t\\n\\f\\r"<>|.!?(){},]+\\.)+[a-zA-Z]{2,4}${URL_PATH}`;
// `,-_` is a range (U+002C..U+005F) in the spec's class, kept as such
const LIKELYURL_TLD = `(?:[^ \\t\\n\\f\\r"\`'<>|.!?(){},-_$]+\\.)+${
  ciAlt(["com", "net", "org", "edu"])
}${URL_PATH}`;
const EMAIL_CHARS = '[^ \\t\\n\\f\\r"<>|(){}.\\u00A0]';
const EMAIL = `(?:&${
  ci("lt")
};|<)?[a-zA-Z0-9][^ \\t\\n\\f\\r"<>|()\\u00A0{}]*@(?:${EMAIL_CHARS}+\\.)*${EMAIL_CHARS}+(?:&${
  ci("gt")
};|>)?`;
const TWITTER = `@[a-zA-Z_][a-zA-Z_0-9]*|#${LETTER}+`;

/** Caseless alternation where a `[X]` prefix keeps its first letter's case as in the spec. */
function abbrevAlt(spec: string): string {
  const parts = spec.split("|").map((p) => {
    const m = /^\[([A-Z])\](.*)$/.exec(p);
    if (m) return `${m[1]}${ci(m[2])}`;
    // `?` and `[ye]`-style classes inside these few entries are written out by hand below
    return p.replace(/[A-Za-z]+(?![^[]*\])/g, (w) => ci(w));
  });
  return `(?:${parts.join("|")})`;
}

const ABMONTH = abbrevAlt("Sept|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Oct|Nov|Dec");
const ABDAYS = abbrevAlt("Tues|Thurs|Mon|Tue|Wed|Thu|Fri");
const ABSTATE = abbrevAlt(
  "Ariz|Ala|[A]z|[A]rk|Calif|Colo|Conn|Ct|Dak|[D]el|Fla|Ga|[I]ll|Ind|Kans?|Ky|[L]a|[M]ass|Md|" +
    "Mich|Minn|[M]iss|Mont|Mo|Neb|Nev|Okla|[O]re|[P]a|Penn|Tenn|[T]ex|Va|Vt|[W]ash|Wisc?|Wyo",
);
const ABCOMP = abbrevAlt(
  "Inc|Cos?|Corp|Pp?t[ye]s?|Ltd|Plc|Rt|Bancorp|Bhd|Assn|Univ|Intl|Sys",
);
const ABNUM = abbrevAlt("tel|est|ext|sq");
const ABPTIT = `(?:${ci("Jr")}|${ci("Sr")}|${ci("Bros")}|(?:${ci("Ed")}|${ci("Ph")})\\.${ci("D")}|${
  ci("Blvd")
}|${ci("Rd")}|${ci("Esq")})`;
const ABBREV1 = `(?:${ABMONTH}|${ABDAYS}|${ABSTATE}|${ABCOMP}|${ABNUM}|${ABPTIT}|${
  ciAlt(["etc", "al", "seq", "Bldg"])
})\\.`;
const ABTITLE = abbrevAlt(
  "Messrs|Mrs|Mr|Ms|[M]iss|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Govs?|Adm|Rev|Maj|Sgt|Cpl|" +
    "Pvt|Capt|Ste?|Ave|Pres|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det|Mt|Ft|Adj|Adv|Asst|Assoc|Ens|" +
    "Insp|Mlle|Mme|Msgr|Sfc",
);
const ABCOMP2 = abbrevAlt("Invt|Elec|Natl|M[ft]g|Dept");
/**
 * ABBREV4's alternatives, kept apart so that the longest wins: "a.k.a.B." is one
 * ACRO-based token, not the literal "a.k.a." plus more.
 */
const ABBREV4_ALTS = [
  ABTITLE,
  ciAlt(["vs", "Alex", "Wm", "Jos", "Cie", "cf", "TREAS", "Ph"]),
  ci("a.k.a"),
  ACRO,
  ABCOMP2,
];
const ACRONYM = `${ACRO}\\.`;
const ABBREV3 = `${
  ciAlt(["ca", "figs", "fig", "prop", "nos", "no", "art", "bldg", "pp", "op"])
}\\.`;
const PHONE_A =
  "(?:\\([0-9]{2,3}\\)[ \\u00A0]?|(?:\\+\\+?)?(?:[0-9]{2,4}[\\- \\u00A0])?[0-9]{2,4}[\\- \\u00A0])[0-9]{3,4}[\\- \\u00A0]?[0-9]{3,5}";
const PHONE_B = "(?:(?:\\+\\+?)?[0-9]{2,4}\\.)?[0-9]{2,4}\\.[0-9]{3,4}\\.[0-9]{3,5}";
const INSENTP = "[,;:\\u3001]";
const DBLQUOT = `(?:"|&${ci("quot")};)`;
const ACRONYM_FOLLOWERS = [
  "About",
  "According",
  "Additionally",
  "After",
  "An",
  "A",
  "As",
  "At",
  "But",
  "Earlier",
  "He",
  "Her",
  "Here",
  "However",
  "If",
  "In",
  "It",
  "Last",
  "Many",
  "More",
  "Mr.",
  "Ms.",
  "Now",
  "Once",
  "One",
  "Other",
  "Our",
  "She",
  "Since",
  "So",
  "Some",
  "Such",
  "That",
  "The",
  "Their",
  "Then",
  "There",
  "These",
  "They",
  "This",
  "We",
  "When",
  "While",
  "What",
  "Yet",
  "You",
].sort((a, b) => b.length - a.length).map((w) => `${w[0]}${ci(w.slice(1))}`).join("|");
const SMILEY = "[<>]?[:;=][\\-o*']?[()DPdpO\\\\{@|\\[\\]]";
const ASIAN_SMILEY_CH = "[\\-\\^x=~<>']";
const ASIANSMILEY_ALTS = [
  `[\\^x=~<>]\\.\\[\\^[xX]=~<>\\]`,
  `${ASIAN_SMILEY_CH}_${ASIAN_SMILEY_CH}`,
  `\\(${ASIAN_SMILEY_CH}[_.]?${ASIAN_SMILEY_CH}\\)`,
  "\\([\\^x=~<>']-[\\^x=~<>'`]\\)",
];
const MISCSYMBOL = "[+%&~\\^|\\\\\\u00A6\\u00A7\\u00A8\\u00A9\\u00AC\\u00AE\\u00AF\\u00B0-\\u00B3" +
  "\\u00B4-\\u00BA\\u00D7\\u00F7\\u0387\\u05BE\\u05C0\\u05C3\\u05C6\\u05F3\\u05F4\\u0600-\\u0603" +
  "\\u0606-\\u060A\\u060C\\u0614\\u061B\\u061E\\u066A\\u066D\\u0703-\\u070D\\u07F6\\u07F7\\u07F8" +
  "\\u0964\\u0965\\u0E4F\\u1FBD\\u2016\\u2017\\u2020-\\u2023\\u2030-\\u2038\\u203B\\u203E-\\u2042" +
  "\\u2044\\u207A-\\u207F\\u208A-\\u208E\\u2100-\\u214F\\u2190-\\u21FF\\u2200-\\u2BFF\\u3012\\u30FB" +
  "\\uFF01-\\uFF0F\\uFF1A-\\uFF20\\uFF3B-\\uFF40\\uFF5B-\\uFF65]";

// ---------------------------------------------------------------------------
// Token transformations of PTBLexer's actions (3.4.1 defaults: ptb3Escaping on,
// latexQuotes, ptb3Ellipsis, ptb3Dashes, normalizeCurrency, no americanize).

const NEWLINE_TOKEN = "\n";

function removeSoftHyphens(s: string): string {
  if (!s.includes("\u00AD")) return s;
  const out = s.replaceAll("\u00AD", "");
  return out === "" ? "-" : out;
}

function normalizeAmp(s: string): string {
  return s.replace(/&amp;/gi, "&");
}

function normalizeCurrency(s: string): string {
  return s.replace(/\u00A2/g, "cents").replace(/\u00A3/g, "#").replace(
    /[\u0080\u00A4\u20A0\u20AC]/g,
    "$",
  );
}

function normalizeFractions(s: string): string {
  return s.replace(/\u00BC/g, "1/4").replace(/\u00BD/g, "1/2").replace(/\u00BE/g, "3/4")
    .replace(/\u2153/g, "1/3").replace(/\u2154/g, "2/3");
}

function latexQuotes(s: string, probablyLeft: boolean): string {
  let t = probablyLeft
    ? s.replace(/&apos;|'/g, "`").replace(/"|&quot;/g, "``")
    : s.replace(/&apos;|'/g, "'").replace(/"|&quot;/g, "''");
  t = t.replace(/[\u0091\u2018\u201B\u2039]/g, "`").replace(/[\u0092\u2019\u203A]/g, "'");
  return t.replace(/[\u0093\u201C\u00AB]/g, "``").replace(/[\u0094\u201D\u00BB]/g, "''");
}

function spacesToNbsp(s: string): string {
  return s.replaceAll(" ", "\u00A0");
}

function normalizeParens(s: string): string {
  return s.replaceAll("(", "-LRB-").replaceAll(")", "-RRB-");
}

/** What an action does with the matched text: the token (null: none) and how much it consumes. */
interface Emit {
  token: string | null;
  consumed: number;
}

type Action = (text: string) => Emit;

const keep: Action = (t) => ({ token: t, consumed: t.length });
const skip: Action = (t) => ({ token: null, consumed: t.length });
const mapTo = (f: (t: string) => string): Action => (t) => ({ token: f(t), consumed: t.length });
/** `yypushback(n)`: emit the text minus its last n characters, which are lexed again. */
const pushback = (n: number): Action => (t) => ({
  token: t.slice(0, t.length - n),
  consumed: t.length - n,
});
/** ABBREV1 with non-strict Treebank 3: emit "etc." and lex its period again as ".". */
const abbrevWithPeriodAgain: Action = (t) => ({ token: t, consumed: t.length - 1 });

/** One rule of the lexer: alternatives sharing an action and a priority. */
interface Rule {
  alternatives: RegExp[];
  /** Whether each regex ends with a trailing-context lookahead capturing group 1. */
  trailing: boolean;
  action: Action;
}

function rule(alts: string | string[], action: Action, trailingContext?: string): Rule {
  const list = Array.isArray(alts) ? alts : [alts];
  const suffix = trailingContext === undefined ? "" : `(?=(${trailingContext}))`;
  return {
    alternatives: list.map((a) => new RegExp(`(?:${a})${suffix}`, "uy")),
    trailing: trailingContext !== undefined,
    action,
  };
}

const acronymAction: Action = (t) => {
  // 3.4.1 strips trailing whitespace a buggy trailing-context length could leave; none here.
  if (t.length === 2) return { token: t.slice(0, 1), consumed: 1 }; // "I." -> "I", then "."
  return { token: t, consumed: t.length - 1 }; // "U.S." -> "U.S.", then "."
};

/** The rules in PTBLexer.flex (3.4.1) order; state-restricted rules of strict mode omitted. */
const RULES: Rule[] = [
  rule(`${ci("c")}[+][+]`, keep),
  rule(`(?:${ci("c")}|${ci("f")})#`, keep),
  rule(ci("cannot"), pushback(3)),
  rule(ci("'twas"), pushback(3)),
  rule(ci("'tis"), pushback(2)),
  rule(["gonna", "gotta", "lemme", "gimme", "wanna"].map(ci), pushback(2)),
  rule(SGML, mapTo(spacesToNbsp)),
  rule(
    [`&${ciAlt(["MD", "mdash", "ndash"])};`, "[\\u0096\\u0097\\u2013\\u2014\\u2015]"],
    mapTo(() => "--"),
  ),
  rule(SPAMP, mapTo(normalizeAmp)),
  rule(`&(?:${ciAlt(["HT", "TL", "UR", "LR", "QC", "QL", "QR", "odq", "cdq"])}|#[0-9]+);`, keep),
  rule(WORD, mapTo(removeSoftHyphens), REDAUX),
  rule(SWORD, mapTo(removeSoftHyphens), SREDAUX),
  rule(WORD, mapTo(removeSoftHyphens)),
  rule(APOWORD_ALTS, keep),
  rule(APOWORD2, keep, "\\p{L}"),
  rule(FULLURL, keep),
  rule([LIKELYURL_WWW, LIKELYURL_TLD], keep),
  rule(EMAIL, keep),
  rule(TWITTER, keep),
  rule(REDAUX, mapTo((t) => latexQuotes(t, false)), "[^A-Za-z]"),
  rule(SREDAUX, mapTo((t) => latexQuotes(t, false)), "[^A-Za-z]"),
  rule(DATE, keep),
  rule(NUMBER, mapTo(removeSoftHyphens)),
  rule(SUBSUPNUM, keep),
  rule(FRAC, mapTo(spacesToNbsp)),
  rule(FRAC2, mapTo(normalizeFractions)),
  rule(
    [
      `-${ciAlt(["RRB", "LRB", "RCB", "LCB", "RSB", "LSB"])}-`,
      ci("C.D.s"),
      ci("pro-"),
      ci("anti-"),
      `${ci("S")}(?:${SPAMP}|&)${ci("P-500")}`,
      `${ci("S")}(?:${SPAMP}|&)${ci("Ls")}`,
      `${ci("Cap")}${APOS}${ci("n")}`,
      `${ci("c")}${APOS}${ci("est")}`,
    ],
    mapTo(normalizeAmp),
  ),
  rule(THING3, keep),
  rule(DOLSIGN, keep),
  rule(DOLSIGN2, mapTo(normalizeCurrency)),
  rule(ACRONYM, acronymAction, `${SPACENLS}(?:${ACRONYM_FOLLOWERS}|${SGML})${SPACENL}`),
  rule(ABBREV3, keep, `${SPACENL}?\\p{Nd}`),
  rule(`(?:[pP][tT][eyEY]|${ci("co")})\\.`, keep, `${SPACE}${ciAlt(["ltd", "lim"])}`),
  rule(ABBREV1, abbrevWithPeriodAgain, SENTEND),
  rule(ABBREV1, keep, "[\\s\\S][\\s\\S]"),
  rule(ABBREV1, abbrevWithPeriodAgain),
  rule(ABBREV4_ALTS.map((a) => `${a}\\.`), keep), // ABBREV2
  rule(ABBREV4_ALTS, keep, SPACE),
  rule(ACRO, keep, SPACENL),
  rule(`${APOS}[0-9][0-9]`, keep, SPACENL),
  rule(FILENAME, keep, `${SPACENL}|[.?!,]`),
  rule(`${WORD}\\.`, mapTo(removeSoftHyphens), INSENTP),
  rule([PHONE_A, PHONE_B], mapTo((t) => normalizeParens(spacesToNbsp(t)))),
  rule(DBLQUOT, mapTo((t) => latexQuotes(t, true)), "[A-Za-z0-9$]"),
  rule(DBLQUOT, mapTo((t) => latexQuotes(t, false))),
  rule("\\x7F", skip),
  rule(`<|&${ci("lt")};`, mapTo(() => "<")),
  rule(`>|&${ci("gt")};`, mapTo(() => ">")),
  rule(SMILEY, mapTo(normalizeParens), "[^A-Za-z0-9]"),
  rule(ASIANSMILEY_ALTS, mapTo(normalizeParens)),
  rule("\\{", mapTo(() => "-LCB-")),
  rule("\\}", mapTo(() => "-RCB-")),
  rule("\\[", mapTo(() => "-LSB-")),
  rule("\\]", mapTo(() => "-RSB-")),
  rule("\\(", mapTo(() => "-LRB-")),
  rule("\\)", mapTo(() => "-RRB-")),
  rule("-+", mapTo((t) => (t.length >= 3 && t.length <= 4 ? "--" : t))),
  rule(["\\.{3,5}", "(?:\\.[ \\u00A0]){2,4}\\.", "[\\u0085\\u2026]"], mapTo(() => "...")),
  rule(["@+", "#+", "_+"], keep),
  rule(["\\*+", "(?:\\\\\\*){1,3}"], keep),
  rule(INSENTP, keep),
  rule("[?!]+", keep),
  rule("[.\\u00A1\\u00BF\\u037E\\u0589\\u061F\\u06D4\\u0700-\\u0702\\u07FA\\u3002]", keep),
  rule("=", keep),
  rule("\\/", keep),
  rule(`${HTHING}\\.`, mapTo(removeSoftHyphens), INSENTP),
  rule(HTHING, mapTo(removeSoftHyphens)),
  rule(`${THING}\\.`, keep, INSENTP),
  rule(THING, keep),
  rule(`${THINGA}\\.`, mapTo(normalizeAmp), INSENTP),
  rule(THINGA, mapTo(normalizeAmp)),
  rule("'", mapTo((t) => latexQuotes(t, true)), "[A-Za-z][^ \\t\\n\\r\\u00A0]"),
  rule(REDAUX, mapTo((t) => latexQuotes(t, false))),
  rule(SREDAUX, mapTo((t) => latexQuotes(t, false))),
  rule(
    [
      APOS,
      "''",
      "[`\\u2018\\u2019\\u201A\\u201B\\u201C\\u201D\\u0091\\u0092\\u0093\\u0094\\u201E\\u201F\\u2039\\u203A\\u00AB\\u00BB]{1,2}",
    ],
    mapTo((t) => latexQuotes(t, false)),
  ),
  rule(["<<", ">>"], keep),
  rule(MISCSYMBOL, keep),
  rule(`\\x00|${SPACE}+|[\\u200B\\u200E\\u200F\\uFEFF]`, skip),
  rule(NEWLINE, mapTo(() => NEWLINE_TOKEN)),
  rule(`&${ci("nbsp")};`, skip),
  // untokenizable character: 3.4.1's default (firstDelete) drops it with a warning
  rule("[\\s\\S]", skip),
];

/**
 * JFlex 1.5 lexers read UTF-16 code units, so a character outside the Basic
 * Multilingual Plane reaches PTBLexer as two surrogates, which no positive class
 * contains (only negated classes such as a URL's match them). A private-use
 * character behaves the same in every rule, so each such character is lexed as
 * U+E000 and put back into the tokens afterwards.
 */
const ASTRAL_PLACEHOLDER = "\uE000";
const SPACE_RUN = new RegExp(`${SPACE}+`, "uy");
const ASTRAL = /[\u{10000}-\u{10FFFF}]/gu;

/**
 * Tokenises text as CoreNLP 3.4.1's `PTBTokenizer -preserveLines -lowerCase`
 * does, and returns the tokens of each line (lines split where the lexer sees a
 * newline: \r\n, \r, \n, U+2028, U+2029, VT, FF or NEL).
 *
 * @param text Text to tokenise.
 * @returns One array of lower-cased tokens per line.
 */
export function ptbTokenizeLines(text: string): string[][] {
  // originals of the placeholders, by position in the lexed string
  const originals = new Map<number, string>();
  let src = text;
  if (/[\uD800-\uDFFF]/.test(text)) {
    let out = "";
    let last = 0;
    for (const m of text.matchAll(ASTRAL)) {
      out += text.slice(last, m.index);
      originals.set(out.length, m[0]);
      out += ASTRAL_PLACEHOLDER;
      last = m.index + m[0].length;
    }
    src = out + text.slice(last);
  }
  const lines: string[][] = [[]];
  let pos = 0;
  while (pos < src.length) {
    // fast path: at a space or tab only the SPACES rule can match (no other rule starts
    // with one); it takes the whole run of SPACE characters (no-break spaces included,
    // which therefore cannot start a token) and produces nothing
    const c = src.charCodeAt(pos);
    if (c === 0x20 || c === 0x09) {
      SPACE_RUN.lastIndex = pos;
      SPACE_RUN.test(src);
      pos = SPACE_RUN.lastIndex;
      continue;
    }
    let bestLen = -1;
    let bestRule: Rule | null = null;
    let bestText = "";
    for (const r of RULES) {
      for (const re of r.alternatives) {
        re.lastIndex = pos;
        const m = re.exec(src);
        if (m === null) continue;
        const total = m[0].length + (r.trailing ? m[1].length : 0);
        // strict ">" keeps the earlier rule on ties, as JFlex does
        if (total > bestLen) {
          bestLen = total;
          bestRule = r;
          bestText = m[0];
        }
      }
    }
    // the catch-all rule always matches, so bestRule is set
    const emitted = bestRule!.action(bestText);
    let token = emitted.token;
    if (token === NEWLINE_TOKEN) lines.push([]);
    else if (token !== null) {
      if (originals.size > 0 && token.includes(ASTRAL_PLACEHOLDER)) {
        token = restoreAstral(token, src, pos, bestText.length, originals);
      }
      lines[lines.length - 1].push(token.toLowerCase());
    }
    pos += emitted.consumed;
  }
  return lines;
}

/** Puts the characters behind the placeholders of src[pos, pos+len) back into a token, in order. */
function restoreAstral(
  token: string,
  src: string,
  pos: number,
  len: number,
  originals: Map<number, string>,
): string {
  const queue: string[] = [];
  for (let i = pos; i < pos + len; i++) {
    if (src[i] === ASTRAL_PLACEHOLDER) queue.push(originals.get(i) ?? ASTRAL_PLACEHOLDER);
  }
  let k = 0;
  return token.replace(/\uE000/g, (p) => queue[k++] ?? p);
}

/**
 * PTB tokens of one caption, as pycocoevalcap feeds them to the scorers, before
 * punctuation removal. Line breaks inside the caption count as spaces (the
 * official wrapper only ever passes single lines).
 *
 * @param text One caption.
 * @returns Lower-cased tokens.
 */
export function ptbTokenize(text: string): string[] {
  return ptbTokenizeLines(text).flat();
}

/**
 * One caption as pycocoevalcap's `PTBTokenizer.tokenize` returns it: PTB tokens,
 * lower-cased, without the tokens in {@link COCO_PUNCTUATIONS}, joined by single
 * spaces (an empty string when nothing is left). This tokenises the caption on
 * its own, as if it ended the tokenizer's input; the scorers use
 * {@link cocoTokenizeCaptions}, which gives each caption the context the
 * official script gives it.
 *
 * @param text One caption (system output or reference).
 * @returns The tokenised caption.
 */
export function cocoTokenize(text: string): string {
  return ptbTokenize(text).filter((t) => !COCO_PUNCTUATIONS.has(t)).join(" ");
}

/** Line breaks of the lexer, which would split a caption into two lines of tokenizer output. */
const LEXER_NEWLINES = /\r\n|[\r\n\u2028\u2029\v\f\u0085]/g;

/**
 * Tokenises a list of captions the way pycocoevalcap does it in one call: the
 * captions are joined with newlines into one file for the PTB tokenizer, so the
 * lexer sees the start of the next caption after the end of each one (this
 * matters: "25 L." before a caption starting "The" gives "l ." but "l." at the
 * end of the file). The official wrapper replaces "\n" inside a caption by a
 * space; we do the same for the lexer's other line breaks, which the official
 * file readers never leave inside a caption.
 *
 * @param captions Captions in the order the official script passes them (all
 *   references of instance 0, then of instance 1, ...; outputs separately).
 * @returns One tokenised caption per input (see {@link cocoTokenize}).
 */
export function cocoTokenizeCaptions(captions: string[]): string[] {
  if (captions.length === 0) return [];
  const joined = captions.map((c) => c.replace(LEXER_NEWLINES, " ")).join("\n");
  const lines = ptbTokenizeLines(joined);
  return lines.map((tokens) => tokens.filter((t) => !COCO_PUNCTUATIONS.has(t)).join(" "));
}

/**
 * Tokenises outputs and references as the official E2E script does before
 * ROUGE-L, CIDEr and METEOR: two tokenizer runs, one over all references
 * (instance by instance) and one over all outputs.
 *
 * @param outputs One output per instance.
 * @param refs References per instance.
 * @returns The tokenised outputs and references, in the same shapes.
 */
export function cocoTokenizeCorpus(
  outputs: string[],
  refs: string[][],
): { outputs: string[]; refs: string[][] } {
  const flat = cocoTokenizeCaptions(refs.flat());
  let k = 0;
  const grouped = refs.map((rs) => rs.map(() => flat[k++]));
  return { outputs: cocoTokenizeCaptions(outputs), refs: grouped };
}
