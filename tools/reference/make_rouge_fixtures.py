#!/usr/bin/env python3
"""Reference ROUGE scores and Porter stems for udaci's ROUGE tests.

Reference: Google's rouge-score 0.1.2 (PyPI `rouge-score`, the package most
summarisation papers report) with nltk 3.10.4 providing its Porter stemmer
(nltk.stem.porter.PorterStemmer(), default mode NLTK_EXTENSIONS, which is
what rouge_score.tokenizers.DefaultTokenizer instantiates). Install with
    /opt/udaci-ref/bin/pip install rouge-score==0.1.2 nltk==3.10.4
and run from the repository root:
    /opt/udaci-ref/bin/python tools/reference/make_rouge_fixtures.py

Writes tests/fixtures/rouge/:
  cases.jsonl   one line per case: {"ref": str} or {"refs": [str, ...]}
                (multi-reference, scored with RougeScorer.score_multi),
                "gen": str, "kind": where the case comes from, and the
                expected scores "plain" (use_stemmer=False) and "stem"
                (use_stemmer=True): 12 numbers each, precision, recall,
                fmeasure for rouge1, rouge2, rougeL, rougeLsum, written with
                repr() (shortest round-trip form, so the exact double).
  stems.txt     one word per line, "word" when NLTK's stem equals the word,
                else "word<TAB>stem": every distinct token of the news sample
                (headline and short_description), the words of NLTK's
                stem.doctest, and words built to reach each rule of the
                algorithm (suffix x stem grid, y runs, irregular forms).
  VERSIONS.json versions, the scorer call and input hashes.

Cases: rouge-score's own test strings (rouge_scorer_test.py, tokenizers_test.py,
README); pairs from ../shared/assets/news (News Category Dataset, Misra 2022,
arXiv:2209.11429, CC BY 4.0): headline vs short_description, headline vs
perturbed headline (dropped, shuffled, repeated, re-cased, inflected words),
multi-sentence summaries joined by newlines for rougeLsum, long texts;
multi-reference cases; seeded random short texts over a few words (LCS and
argmax ties); edge cases (empty, punctuation only, Unicode incl. the
two non-ASCII code points whose Python lower() contains ASCII letters, U+0130
and U+212A, digits, repeated words, CR/LF). Seeded, so reruns are identical.
"""
import hashlib
import json
import pathlib
import platform
import random

import nltk
import rouge_score
from nltk.stem import porter
from rouge_score import rouge_scorer, tokenize

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
NEWS = SHARED / "assets/news/news_category_sample.jsonl"
OUT = ROOT / "tests/fixtures/rouge"
TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
RS_VERSION = "0.1.2"


def rs_version():
    try:
        from importlib.metadata import version
        return version("rouge-score")
    except Exception:  # pragma: no cover
        return RS_VERSION


def published_cases():
    # Strings from rouge_score/rouge_scorer_test.py, tokenizers_test.py and the
    # package README.
    pairs = [
        ("testing one two", "testing"),
        ("testing one two", ""),
        ("testing one two", "testing one"),
        ("testing one two", "testing two"),
        ("First sentence.\nSecond Sentence.", "Second sentence.\nFirst Sentence."),
        ("First sentence. Second Sentence.", "Second sentence. First Sentence."),
        ("w1 w2 w3 w4 w5", "w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5"),
        ("w1 w2 w3 w4 w5", ""),
        ("", "w1"),
        ("w1 w2 w3 w4 w5", "/"),
        ("this is a test", "this is a test"),
        ("the friends had a meeting", "the friend has met"),
        ("The quick brown fox jumps over the lazy dog",
         "The quick brown dog jumps on the log."),
    ]
    cases = [{"ref": r, "gen": g, "kind": "published"} for r, g in pairs]
    cases.append({"refs": ["testing one two"], "gen": "testing", "kind": "published"})
    cases.append({"refs": ["first text", "first something"], "gen": "text first",
                  "kind": "published"})
    return cases


def edge_cases():
    long_a = " ".join(["alpha beta gamma delta"] * 60)
    long_b = " ".join(["beta alpha delta gamma epsilon"] * 50)
    pairs = [
        ("", ""),
        ("", "something"),
        ("something", ""),
        ("!!! ... ???", "--- ,,, ;;;"),
        ("!!!", "hello"),
        ("hello", "HELLO"),
        ("Hello, World!", "hello world"),
        ("the the the the", "the the"),
        ("the the", "the the the the"),
        ("a a a b b", "a b a b a b"),
        ("1990s inflation hits 3.5% in 2022", "inflation 3 5 in 2022 hits 1990s"),
        ("COVID-19 cases rise", "covid 19 cases rising"),
        ("e-mail vs email", "email vs e mail"),
        ("naïve café résumé", "naive cafe resume"),
        ("İstanbul İİ", "i stanbul i i"),
        ("\u212aelvin \u212a", "kelvin k"),
        ("Ångström \u212b", "ngstr m"),
        ("日本語 テキスト", "日本語"),
        ("emoji 🎉 party 🎉", "emoji party"),
        ("straße STRASSE", "strasse"),
        ("ΣΊΣΥΦΟΣ sisyphus", "sisyphus"),
        ("tab\tseparated\twords", "tab separated words"),
        ("line one\r\nline two", "line two\nline one"),
        ("\n\n\n", "\n"),
        ("one\n\ntwo\n", "two\none"),
        ("sentence one.\nsentence two.\nsentence three.", "sentence three. sentence one."),
        ("no newline here at all", "here at all\nno newline"),
        ("x", "x"),
        ("x", "y"),
        ("a b", "b a"),
        ("running runner runs ran", "run runs running"),
        ("generously generous generate general", "generally generic genes"),
        ("the dying lying tying skies sky news innings", "die lie tie sky news inning"),
        ("caresses flies dies mules denied died agreed owned humbled sized",
         "caress fly die mule deny die agree own humble size"),
        ("meeting stating siezing itemization sensational traditional reference colonizer plotted",
         "meet state siez item sensation tradition refer colon plot"),
        ("happy happiness happily", "happi happy"),
        ("relational conditional rational valency hesitancy",
         "relate condition ration valence hesitance"),
        ("123 456 789", "123 789"),
        ("0 00 000 0000", "0000 000 00 0"),
        ("a\u00a0b\u2003c", "a b c"),
        ("under_score and-dash", "under score and dash"),
        (long_a, long_b),
        (long_b, long_a),
        (long_a, long_a),
    ]
    cases = [{"ref": r, "gen": g, "kind": "edge"} for r, g in pairs]
    cases.append({"refs": ["", "!!!"], "gen": "hello", "kind": "edge"})
    cases.append({"refs": ["hello there", "hello there"], "gen": "hello", "kind": "edge"})
    cases.append({"refs": ["a b c", "c b a", "a c"], "gen": "a c b", "kind": "edge"})
    cases.append({"refs": ["x y z"], "gen": "", "kind": "edge"})
    return cases


def perturb(words, rng):
    w = list(words)
    op = rng.randrange(8)
    if op == 0 and len(w) > 2:  # drop some words
        k = rng.randrange(1, max(2, len(w) // 3))
        for _ in range(k):
            w.pop(rng.randrange(len(w)))
    elif op == 1:  # shuffle
        rng.shuffle(w)
    elif op == 2 and w:  # repeat a word
        i = rng.randrange(len(w))
        w.insert(i, w[i])
    elif op == 3:  # case change
        w = [x.upper() if rng.random() < 0.5 else x.lower() for x in w]
    elif op == 4:  # inflect (exercises the stemmer)
        suffixes = ["s", "ing", "ed", "ly", "ness", "ation", "er", "ies", "ful"]
        w = [x + rng.choice(suffixes) if rng.random() < 0.4 else x for x in w]
    elif op == 5 and len(w) > 3:  # swap adjacent spans
        i = rng.randrange(len(w) - 2)
        w[i], w[i + 1] = w[i + 1], w[i]
    elif op == 6:  # truncate
        w = w[: max(1, len(w) // 2)]
    else:  # insert filler
        fillers = ["the", "a", "new", "report", "says", "Trump", "2022", "—", "..."]
        for _ in range(rng.randrange(1, 4)):
            w.insert(rng.randrange(len(w) + 1), rng.choice(fillers))
    return " ".join(w)


def news_cases(records, rng):
    cases = []
    recs = [r for r in records if r.get("headline") and r.get("short_description")]
    sample = rng.sample(recs, 1900)
    for r in sample[:800]:
        cases.append({"ref": r["short_description"], "gen": r["headline"], "kind": "news_desc"})
    for r in sample[800:1500]:
        cases.append({"ref": r["headline"], "gen": perturb(r["headline"].split(), rng),
                      "kind": "news_perturbed"})
    for r in sample[1500:1650]:
        # Unrelated headlines: mostly low overlap.
        other = rng.choice(recs)
        cases.append({"ref": r["headline"], "gen": other["headline"], "kind": "news_other"})
    # Multi-sentence summaries for rougeLsum.
    for i in range(150):
        group = rng.sample(recs, rng.randrange(2, 5))
        ref = "\n".join(g["headline"] for g in group)
        gen_parts = [perturb(g["headline"].split(), rng) for g in group]
        rng.shuffle(gen_parts)
        if rng.random() < 0.3:
            gen_parts = gen_parts[:-1] + [rng.choice(recs)["headline"]]
        sep = "\n" if rng.random() < 0.8 else " "
        cases.append({"ref": ref, "gen": sep.join(gen_parts), "kind": "news_lsum"})
    # Descriptions as multi-line summaries (sentences split on '. ').
    for r in sample[1650:1750]:
        ref = r["short_description"].replace(". ", ".\n")
        gen = r["headline"] + "\n" + perturb(r["short_description"].split(), rng)
        cases.append({"ref": ref, "gen": gen, "kind": "news_lsum_desc"})
    # Long texts.
    for i in range(12):
        ref = " ".join(g["short_description"] for g in rng.sample(recs, 12))
        gen = " ".join(g["short_description"] for g in rng.sample(recs, 8))
        if i % 2:
            gen = ref[: len(ref) // 2] + " " + gen
        if i % 3 == 0:
            ref = ref.replace(". ", ".\n")
        cases.append({"ref": ref, "gen": gen, "kind": "news_long"})
    # Multi-reference.
    for r in sample[1750:1900]:
        k = rng.randrange(2, 5)
        refs = [r["headline"], r["short_description"]] + [g["headline"] for g in rng.sample(recs, k - 2)]
        rng.shuffle(refs)
        cases.append({"refs": refs, "gen": perturb(r["headline"].split(), rng), "kind": "news_multi"})
    return cases


def fuzz_cases(rng):
    # Short texts over a few words with many repeats and newlines: many LCS
    # ties, so the union in rougeLsum depends on which LCS the backtrack picks
    # (rouge_scorer._backtrack_norec), and many argmax ties in score_multi.
    pieces = ["a", "b", "c", "dd", "the", "run", "running", "runs", "ties", "\u0130x",
              "\u212a", "\u00e9", "x1", "1990s", "!", ".", "\n", "\n", " ", "\t",
              "Relational", "hopping", "flies"]

    def text():
        k = rng.randrange(2, len(pieces) + 1)
        return "".join(rng.choice(pieces[:k]) + (" " if rng.random() < 0.7 else "")
                       for _ in range(rng.randrange(0, 25)))

    cases = []
    for i in range(400):
        if rng.random() < 0.25:
            cases.append({"refs": [text() for _ in range(rng.randrange(1, 4))], "gen": text(),
                          "kind": "fuzz_multi"})
        else:
            cases.append({"ref": text(), "gen": text(), "kind": "fuzz"})
    return cases


def scores_of(scorer, case):
    if "refs" in case:
        s = scorer.score_multi(case["refs"], case["gen"])
    else:
        s = scorer.score(case["ref"], case["gen"])
    out = []
    for t in TYPES:
        out += [float(s[t].precision), float(s[t].recall), float(s[t].fmeasure)]
    return out


def stem_words(records):
    words = set()
    for r in records:
        for f in ("headline", "short_description"):
            words.update(tokenize.tokenize(r.get(f) or "", None))
    doctest = ["caresses", "flies", "dies", "mules", "denied", "died", "agreed", "owned",
               "humbled", "sized", "meeting", "stating", "siezing", "itemization",
               "sensational", "traditional", "reference", "colonizer", "plotted",
               "generously", "running", "having"]
    words.update(doctest)
    # Irregular forms, y runs and short words.
    words.update(["sky", "skies", "dying", "lying", "tying", "news", "innings", "inning",
                  "outings", "outing", "cannings", "canning", "howe", "proceed", "exceed",
                  "succeed", "y", "yy", "yyy", "yyyy", "yyyyy", "ay", "ays", "by", "bys",
                  "toy", "toys", "syzygy", "ies", "ied", "ties", "tied", "pies", "spied",
                  "feed", "agreed", "bleed", "eed", "ed", "ing", "sing", "s", "ss", "sss",
                  "a", "at", "ate", "aaa", "bbbb", "zzzz", "llll", "fizzed", "hissing",
                  "falling", "hopping", "tanned", "failing", "filing", "controll", "roll",
                  "cease", "rate", "probate", "oed", "oing", "axed", "boxing", "wowing"])
    # Suffix x stem grid: reaches every rule of steps 1-5 with stems of
    # measure 0, 1 and 2 and different endings.
    stems = ["r", "tr", "oat", "troubl", "privat", "hop", "fil", "conflat", "siz", "tann",
             "fall", "hiss", "fizz", "bl", "gen", "form", "electr", "depend", "adopt",
             "activ", "sensibl", "happ", "enjo", "sp", "fl", "cr", "analog", "ari", "bio",
             "y", "ky", "oy", "ee", "at", "iz", "ivit", "xyz", "col", "con", "val"]
    suffixes = ["", "s", "es", "ies", "sses", "ss", "ied", "eed", "ed", "ing", "y",
                "ational", "tional", "enci", "anci", "izer", "bli", "abli", "alli", "entli",
                "eli", "ousli", "ization", "ation", "ator", "alism", "iveness", "fulness",
                "ousness", "aliti", "iviti", "biliti", "fulli", "logi", "icate", "ative",
                "alize", "iciti", "ical", "ful", "ness", "al", "ance", "ence", "er", "ic",
                "able", "ible", "ant", "ement", "ment", "ent", "ion", "sion", "tion", "ou",
                "ism", "ate", "iti", "ous", "ive", "ize", "e", "ll", "alli" + "s",
                "ationalli", "fullness"]
    for s in stems:
        for x in suffixes:
            words.add(s + x)
    stemmer = porter.PorterStemmer()
    return sorted(words), stemmer


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    records = [json.loads(l) for l in NEWS.read_text(encoding="utf-8").splitlines() if l.strip()]
    rng = random.Random(20240611)
    cases = published_cases() + edge_cases() + news_cases(records, rng) + fuzz_cases(random.Random(7))

    plain = rouge_scorer.RougeScorer(TYPES, use_stemmer=False)
    stem = rouge_scorer.RougeScorer(TYPES, use_stemmer=True)
    lines = []
    for c in cases:
        c["plain"] = scores_of(plain, c)
        c["stem"] = scores_of(stem, c)
        lines.append(json.dumps(c, ensure_ascii=False, separators=(",", ":")))
    (OUT / "cases.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    words, stemmer = stem_words(records)
    stem_lines = []
    changed = 0
    for w in words:
        s = stemmer.stem(w)
        if s == w:
            stem_lines.append(w)
        else:
            changed += 1
            stem_lines.append(w + "\t" + s)
    (OUT / "stems.txt").write_text("\n".join(stem_lines) + "\n", encoding="utf-8")

    versions = {
        "script": "tools/reference/make_rouge_fixtures.py",
        "python": platform.python_version(),
        "rouge-score": rs_version(),
        "nltk": nltk.__version__,
        "reference_call": "rouge_scorer.RougeScorer(['rouge1','rouge2','rougeL','rougeLsum'], "
                          "use_stemmer=False|True).score(ref, gen) / .score_multi(refs, gen)",
        "stemmer_call": "nltk.stem.porter.PorterStemmer().stem(word)  (mode NLTK_EXTENSIONS)",
        "score_layout": [f"{t}.{m}" for t in TYPES for m in ("precision", "recall", "fmeasure")],
        "inputs": {
            "news": {
                "path": "shared/assets/news/news_category_sample.jsonl",
                "sha256": hashlib.sha256(NEWS.read_bytes()).hexdigest(),
            }
        },
        "seeds": {"news_cases": 20240611, "fuzz_cases": 7},
        "cases": len(cases),
        "multi_reference_cases": sum(1 for c in cases if "refs" in c),
        "stem_words": len(words),
        "stem_words_changed": changed,
    }
    (OUT / "VERSIONS.json").write_text(json.dumps(versions, indent=2) + "\n", encoding="utf-8")
    print(f"{len(cases)} cases, {len(words)} words ({changed} changed by the stemmer)")


if __name__ == "__main__":
    main()
