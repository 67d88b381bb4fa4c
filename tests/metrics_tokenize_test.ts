// The two tokenisations behind the E2E metrics.
//
// mteval: expectations worked out by hand from mteval-v13a.pl's `tokenization` rules.
// PTB: expectations are the output of the real Stanford CoreNLP 3.4.1 PTBTokenizer
// (built from the v3.4.1 tag of stanfordnlp/CoreNLP), run as pycocoevalcap runs it:
//   java edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase FILE
// with each case alone in FILE (no trailing newline), and the multi-line case as one file.
import assert from "node:assert/strict";
import { mtevalTokenize, mtevalWords } from "../metrics/mteval_tokenize.ts";
import {
  cocoTokenize,
  cocoTokenizeCaptions,
  cocoTokenizeCorpus,
  ptbTokenize,
  ptbTokenizeLines,
} from "../metrics/ptb_tokenize.ts";

Deno.test("mteval tokenisation: punctuation, case, numbers, entities", () => {
  const cases: [string, string][] = [
    // "," and "." split off unless between digits; "!" is in the punctuation class
    ["Hello, World!", "hello , world !"],
    ["It costs 3.5 or 1,000.", "it costs 3.5 or 1,000 ."],
    // "-" splits only after a digit; "£" is not ASCII so stays attached
    ["£20-25 and 5-star kid-friendly", "£20 - 25 and 5 - star kid-friendly"],
    // apostrophes are not in the class
    ["It's Sam's", "it's sam's"],
    // entities decoded first, then "&" and '"' split
    ["a &amp; b &quot;c&quot;", 'a & b " c "'],
    // tr/[A-Z]/[a-z]/ only lowers ASCII capitals
    ["ÉCOLE Café", "École café"],
    // "a.b." -> "a" "." "b" "." (each period follows a non-digit)
    ["A.B.", "a . b ."],
    ["(x) [y] {z} a/b", "( x ) [ y ] { z } a / b"],
    ["  spaced \t out  ", "spaced out"],
    ["", ""],
  ];
  for (const [input, expected] of cases) assert.equal(mtevalTokenize(input), expected, input);
  assert.equal(mtevalTokenize("ABC", { preserveCase: true }), "ABC");
  assert.deepEqual(mtevalWords("a b  c"), ["a", "b", "c"]);
  assert.deepEqual(mtevalWords(""), []);
});

/** [input, CoreNLP 3.4.1 output] */
const PTB_CASES: [string, string][] = [
  [
    "The Eagle is a coffee shop in the city centre near Burger King.",
    "the eagle is a coffee shop in the city centre near burger king .",
  ],
  ["It costs £20-25 and is kid-friendly!", "it costs # 20-25 and is kid-friendly !"],
  [
    'It is "great" (really) -- don\'t go... 5 out of 5; rated 1-3 stars/£30.',
    "it is `` great '' -lrb- really -rrb- -- do n't go ... 5 out of 5 ; rated 1-3 stars / # 30 .",
  ],
  [
    "I can't believe it's not butter, don't you? They'll've gone.",
    "i ca n't believe it 's not butter , do n't you ? they 'll 've gone .",
  ],
  [
    "'Quoted' text and ''double'' plus ``latex''.",
    "` quoted ' text and '' double '' plus `` latex '' .",
  ],
  [
    "The U.S. economy. The U.S. The man arrived.",
    "the u.s. economy . the u.s. . the man arrived .",
  ],
  ["Mr. Smith met Dr. Who at 5 p.m. today.", "mr. smith met dr. who at 5 p.m. today ."],
  ["He likes etc. The end etc. and more etc.", "he likes etc. . the end etc. and more etc. ."],
  [
    "Visit http://www.example.com/path?x=1. or mail john.doe@example.org!",
    "visit http://www.example.com/path?x=1 . or mail john.doe@example.org!",
  ],
  [
    "Prices: $5.50, US$20, €30, ¢5, 1/2 cup, 1 1/2 cups, ¼ inch.",
    "prices : $ 5.50 , us$ 20 , $ 30 , cents 5 , 1/2 cup , 1\u00a01/2 cups , 1/4 inch .",
  ],
  ["Phone (555) 123-4567 or 555-123-4567.", "phone -lrb-555-rrb-\u00a0123-4567 or 555-123-4567 ."],
  [
    "Dates 12/25/2014; times 10:30; numbers 1,000,000.50 and -5.",
    "dates 12/25/2014 ; times 10:30 ; numbers 1,000,000.50 and -5 .",
  ],
  [
    "Hyphens: family--friendly, a---b, a-----b, well-known 5-star.",
    "hyphens : family -- friendly , a -- b , a ----- b , well-known 5-star .",
  ],
  ["Dots... and . . . and ..... and …", "dots ... and ... and ... and ..."],
  [
    'Brackets [b] {c} <tag attr="v"> 5 < 6 &amp; &lt; &quot;x&quot;',
    "brackets -lsb- b -rsb- -lcb- c -rcb- <tag\u00a0attr=\"v\"> 5 < 6 & < `` x ''",
  ],
  ["Smileys :) ;D ^_^ (^_^)", "smileys :-rrb- ;d ^_^ -lrb-^_^-rrb-"],
  [
    "Gonna wanna cannot 'tis 'twas y'all o'clock rock'n'roll",
    "gon na wan na can not 't is 't was y' all o'clock rock 'n' roll",
  ],
  ["AT&T S&P-500 Cap'n c'est '90s 'em 'cause", "at&t s&p-500 cap'n c'est '90s 'em 'cause"],
  ["Café Sicilia, naïve résumé. ÉCOLE", "café sicilia , naïve résumé . école"],
  [
    "A.B.C. X.Y. I. am here. Ph.D. students. No. 5",
    "a.b.c. x.y. i. am here . ph.d. students . no. 5",
  ],
  ["soft\u00adhyphen and non\u00a0breaking space.", "softhyphen and non breaking space ."],
  ["«guillemets» ‘single’ “double”", "`` guillemets '' ` single ' `` double ''"],
  ["price of 20 - 25 L.", "price of 20 - 25 l."],
  // longest alternative wins inside a rule (an ACRO, not the literal "a.k.a")
  ["a.k.a.B. and a.k.a. x", "a.k.a.b. and a.k.a. x"],
  // a space run swallows the no-break space after it; one inside a word can join a URL
  ["see \u00a0x.org and\u00a0y.com", "see x.org and\u00a0y.com"],
];

Deno.test("PTB tokenisation equals CoreNLP 3.4.1 on tricky cases", () => {
  for (const [input, expected] of PTB_CASES) {
    // CoreNLP joins tokens with spaces; a few tokens contain a no-break space
    assert.equal(ptbTokenize(input).join(" "), expected, input);
  }
});

Deno.test("PTB tokenisation: the next line is trailing context, as in one tokenizer file", () => {
  // CoreNLP on the 4-line file "price of 20 - 25 L.\nThe Plough is near Café Rouge
  // etc.\nThat is all B.\nx": an acronym before a line starting with "The" is split,
  // "etc." before an upper-case line gets an extra ".", "B." before "x" is kept whole.
  const lines = ptbTokenizeLines(
    "price of 20 - 25 L.\nThe Plough is near Café Rouge etc.\nThat is all B.\nx",
  );
  assert.deepEqual(lines.map((l) => l.join(" ")), [
    "price of 20 - 25 l .",
    "the plough is near café rouge etc. .",
    "that is all b.",
    "x",
  ]);
  // the corpus tokeniser gives captions that context ("l ." then "-" and "." dropped);
  // the single-caption one does not
  assert.deepEqual(cocoTokenizeCaptions(["price of 20 - 25 L.", "The end"]), [
    "price of 20 25 l",
    "the end",
  ]);
  assert.equal(cocoTokenize("price of 20 - 25 L."), "price of 20 25 l.");
});

Deno.test("COCO tokenisation drops pycocoevalcap's punctuation list only", () => {
  // CoreNLP: "it 's -lrb- very -rrb- cheap -- # 20 , ok ?!". "-lrb-" survives: the list
  // has "-LRB-" in upper case but tokens are lower-cased; "?!" is not in the list
  assert.equal(
    cocoTokenize("It's (very) cheap -- £20, ok?!"),
    "it 's -lrb- very -rrb- cheap # 20 ok ?!",
  );
  assert.equal(cocoTokenize(". , ; : ! ? ..."), "");
  assert.equal(cocoTokenize(""), "");
});

Deno.test("cocoTokenizeCorpus keeps shapes and treats line breaks inside a caption as spaces", () => {
  // CoreNLP on "A b.\nC d e" gives "a b." / "c d e" and on "x y\nZ.\nw" gives
  // "x y" / "z." / "w" (a one-letter acronym stays whole unless "The" etc. follows)
  const t = cocoTokenizeCorpus(["A b.", "C\nd\r\ne"], [["x y", "Z."], ["w"]]);
  assert.deepEqual(t.outputs, ["a b.", "c d e"]);
  assert.deepEqual(t.refs, [["x y", "z."], ["w"]]);
  assert.deepEqual(cocoTokenizeCaptions([]), []);
});

Deno.test("PTB tokenisation: characters outside the BMP behave like JFlex's surrogate pairs", () => {
  // JFlex 1.5 sees two UTF-16 units that no positive class accepts: an astral letter
  // is deleted like any untokenizable character, but kept inside a URL (negated classes)
  assert.deepEqual(ptbTokenize("a \u{1D400}b c"), ["a", "b", "c"]);
  assert.deepEqual(ptbTokenize("see http://x.org/\u{1F600}y now"), [
    "see",
    "http://x.org/\u{1F600}y",
    "now",
  ]);
});
