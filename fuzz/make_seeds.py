#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/) and the
small tokenizer fuzz_tokenize runs (fuzz/data/tokenizer.json).

Only the Python standard library: the GGUF and safetensors seeds are packed
here by hand (GGUF v3 layout: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md;
safetensors: 8-byte little-endian header length, JSON header, data), so that
they are small and cover what the readers branch on (every metadata value
type, nested arrays, several ggml tensor types, Q/K tensors that get
unpermuted, a tokenizer and a chat template in the metadata). The chat
templates come from tests/fixtures/chat. Output is deterministic; rerun after
changing this file:  python3 fuzz/make_seeds.py
"""
import json
import os
import re
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ = os.path.join(ROOT, "fuzz")
CORPUS = os.path.join(FUZZ, "corpus")
# Separates the documents of one input in fuzz_tokenizer_json and
# fuzz_chat_template (never valid inside JSON or template text).
SEP = b"\x00"


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- a small byte-level BPE tokenizer ---------------------------------------

def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + \
        list(range(0xAE, 0xFF + 1))
    table = {}
    extra = 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


TRAINING_TEXT = """
The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away.
Headlines: Markets rise as investors weigh the new rules. Scientists find water
on a distant planet. The city council votes 7-2 to build the new bridge in 2025.
Weather: sunny, 21 degrees, light wind from the west. Don't forget: it's the
last day of the sale, and they'll close at 9 pm. We've seen 1,000,000 visitors.
Café, naïve, déjà vu — Zürich, São Paulo, Kraków. 東京の天気は晴れです。
Привет, мир! Γειά σου κόσμε. مرحبا بالعالم. 🙂 👍🏽 🇫🇷
def main():\n    return [x * 2 for x in range(10)]\n\t# tabs and\r\nnewlines
"""


def train_bpe(text, n_merges):
    b2u = bytes_to_unicode()
    words = {}
    for w in re.findall(r" ?\w+| ?[^\s\w]+|\s+", text):
        key = tuple(b2u[b] for b in w.encode("utf-8"))
        words[key] = words.get(key, 0) + 1
    merges = []
    for _ in range(n_merges):
        pairs = {}
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + c
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda p: pairs[p])
        if pairs[best] < 2:
            break
        merges.append(best)
        merged = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + c
        words = merged
    vocab = {}
    for b in range(256):
        vocab[b2u[b]] = len(vocab)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    return vocab, merges


VOCAB, MERGES = train_bpe(TRAINING_TEXT, 160)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED_PLAIN = ["<tool>"]  # an added token that is not special


def added_tokens(first_id):
    out = []
    for i, t in enumerate(SPECIAL + ADDED_PLAIN):
        out.append({"id": first_id + i, "content": t, "single_word": False, "lstrip": False,
                    "rstrip": False, "normalized": False, "special": t in SPECIAL})
    return out


def tokenizer_json(pre_tokenizer, post_processor=None, ignore_merges=False, pair_merges=False):
    merges = [[a, b] for a, b in MERGES] if pair_merges else [f"{a} {b}" for a, b in MERGES]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens(len(VOCAB)),
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor or {"type": "ByteLevel", "add_prefix_space": False,
                                             "trim_offsets": True, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": ignore_merges,
                  "vocab": VOCAB, "merges": merges},
    }


SMOLLM_PRE = {"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": True},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_PRE = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated",
     "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
BOS_TEMPLATE = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}},
                           {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [], "special_tokens": {
                    "<|im_start|>": {"id": "<|im_start|>", "ids": [len(VOCAB) + 1],
                                     "tokens": ["<|im_start|>"]}}}


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False, indent=None, separators=(",", ":"))


def tokenizer_seeds():
    smollm = tokenizer_json(SMOLLM_PRE)
    os.makedirs(os.path.join(FUZZ, "data"), exist_ok=True)
    with open(os.path.join(FUZZ, "data", "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(dumps(smollm))
    # fuzz_tokenizer_json inputs: tokenizer.json [NUL tokenizer_config.json
    # [NUL generation_config.json [NUL chat_template.jinja]]].
    write("tokenizer_json", "smollm_style", dumps(smollm))
    write("tokenizer_json", "gpt2_pairs", dumps(tokenizer_json(
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        pair_merges=True)))
    llama3 = dumps(tokenizer_json(LLAMA3_PRE, BOS_TEMPLATE, ignore_merges=True))
    config = dumps({"add_bos_token": True, "add_eos_token": False,
                    "bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"},
                    "pad_token": None, "unk_token": "<|endoftext|>",
                    "chat_template": [{"name": "default", "template": "{{ bos_token }}"},
                                      {"name": "tool_use", "template": "{{ messages }}"}]})
    generation = dumps({"bos_token_id": len(VOCAB) + 1, "eos_token_id": [len(VOCAB) + 2,
                                                                          len(VOCAB)]})
    write("tokenizer_json", "llama3_style_with_configs",
          llama3.encode() + SEP + config.encode() + SEP + generation.encode())
    write("tokenizer_json", "template_file",
          dumps(smollm).encode() + SEP + b"{}" + SEP + b'{"eos_token_id": 2}' + SEP +
          b"{% for m in messages %}{{ m.content }}{% endfor %}")


def tokenize_seeds():
    # fuzz_tokenize inputs: one flag byte, then text (or token ids when the
    # ids flag is set); see fuzz/fuzz_tokenize.cpp for the bits.
    texts = {
        "plain": "The quick brown fox jumps over the lazy dog.",
        "digits": "In 2025, 1,000,000 people paid $3.50 (or 12345678901234567890).",
        "unicode": "Café déjà vu — 東京 Привет 🙂👍🏽🇫🇷 مرحبا",
        "contractions": "Don't, it's, they'll, we've, I'm, you'd, IT'S, O'Neil's",
        "whitespace": "a  b\t\tc\n\n\nd \r\n e   \u00a0 \u3000 f    ",
        "specials": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<tool> done"
                    "<|endoftext|><|im_end",
        "code": "def f(x):\n    return [i ** 2 for i in range(x)]  # squares\n",
    }
    for i, (name, text) in enumerate(sorted(texts.items())):
        for flags in (0x00, 0x06 | (i & 1), 0x0F):
            write("tokenize", f"{name}_{flags:02x}", bytes([flags]) + text.encode("utf-8"))
    write("tokenize", "invalid_utf8_00",
          b"\x00" + b"ok \xff\xfe \xc3 \xe2\x82 \xf0\x9f\x99 \xed\xa0\x80 \xc0\xaf end")
    write("tokenize", "invalid_utf8_07", b"\x07" + b"\xe6\x9d\xb1\xe4\xba\xac\xe6\x9d")
    ids = struct.pack("<12H", 84, 104, 101, 300, 301, len(VOCAB) + 1, 226, 130, 172, 240, 159,
                      len(VOCAB) + 40)
    write("tokenize", "ids_10", b"\x10" + ids)
    write("tokenize", "ids_19", b"\x19" + ids)


# ---- GGUF ---------------------------------------------------------------------

class Gguf:
    """Packs a GGUF v3 file (little-endian)."""

    def __init__(self, alignment=32):
        self.kv = []
        self.tensors = []
        self.alignment = alignment

    @staticmethod
    def string(s):
        b = s.encode("utf-8") if isinstance(s, str) else s
        return struct.pack("<Q", len(b)) + b

    FMT = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
           12: "d"}

    def value(self, vtype, v):
        if vtype == 8:
            return self.string(v)
        if vtype == 9:
            etype, items = v
            body = struct.pack("<IQ", etype, len(items))
            return body + b"".join(self.value(etype, x) for x in items)
        return struct.pack("<" + self.FMT[vtype], v)

    def add(self, key, vtype, v):
        self.kv.append(self.string(key) + struct.pack("<I", vtype) + self.value(vtype, v))

    def tensor(self, name, dims, ggml_type, data):
        self.tensors.append((name, dims, ggml_type, data))

    def bytes(self, version=3):
        out = b"GGUF" + struct.pack("<IQQ", version, len(self.tensors), len(self.kv))
        out += b"".join(self.kv)
        offset = 0
        blobs = []
        for name, dims, t, data in self.tensors:
            out += self.string(name) + struct.pack("<I", len(dims))
            out += b"".join(struct.pack("<Q", d) for d in dims)
            out += struct.pack("<IQ", t, offset)
            pad = (-len(data)) % self.alignment
            blobs.append(data + b"\x00" * pad)
            offset += len(data) + pad
        out += b"\x00" * ((-len(out)) % self.alignment)
        return out + b"".join(blobs)


def f32(values):
    return struct.pack(f"<{len(values)}f", *values)


def f16(values):
    return struct.pack(f"<{len(values)}e", *values)


def q8_0_block(scale, qs):
    return struct.pack("<e", scale) + struct.pack("<32b", *qs)


def q4_0_block(scale, nibbles):
    packed = bytes((nibbles[j] & 15) | ((nibbles[j + 16] & 15) << 4) for j in range(16))
    return struct.pack("<e", scale) + packed


def llama_gguf(full_vocab):
    hidden, heads, kv_heads, ff, layers = 32, 4, 2, 64, 1
    head_dim = hidden // heads
    g = Gguf()
    g.add("general.architecture", 8, "llama")
    g.add("general.name", 8, "fuzz-tiny")
    g.add("general.alignment", 4, 32)
    g.add("general.file_type", 4, 7)
    g.add("llama.context_length", 4, 256)
    g.add("llama.embedding_length", 4, hidden)
    g.add("llama.block_count", 4, layers)
    g.add("llama.feed_forward_length", 4, ff)
    g.add("llama.attention.head_count", 4, heads)
    g.add("llama.attention.head_count_kv", 4, kv_heads)
    g.add("llama.attention.layer_norm_rms_epsilon", 6, 1e-5)
    g.add("llama.rope.freq_base", 6, 10000.0)
    g.add("llama.rope.dimension_count", 4, head_dim)
    g.add("llama.rope.scaling.type", 8, "linear")
    g.add("llama.rope.scaling.factor", 6, 2.0)
    if full_vocab:
        # The tokenizer of fuzz/data/tokenizer.json: every byte has a token,
        # so Tokenizer::from_spec accepts it.
        tokens = sorted(VOCAB, key=VOCAB.get) + SPECIAL + ADDED_PLAIN
        types = [1] * len(VOCAB) + [3] * len(SPECIAL) + [4] * len(ADDED_PLAIN)
        merges = [f"{a} {b}" for a, b in MERGES]
    else:
        # Too few tokens for a byte-level vocabulary: rejected when built.
        tokens = ["!", "\"", "a", "b", "c", "ab", "Ġ", "Ġa", "<|im_start|>", "<|im_end|>"]
        types = [1] * 8 + [3, 3]
        merges = ["a b", "Ġ a"]
    g.add("tokenizer.ggml.model", 8, "gpt2")
    g.add("tokenizer.ggml.pre", 8, "smollm")
    g.add("tokenizer.ggml.tokens", 9, (8, tokens))
    g.add("tokenizer.ggml.token_type", 9, (5, types))
    g.add("tokenizer.ggml.merges", 9, (8, merges))
    g.add("tokenizer.ggml.bos_token_id", 4, tokens.index("<|im_start|>"))
    g.add("tokenizer.ggml.eos_token_id", 4, tokens.index("<|im_end|>"))
    g.add("tokenizer.ggml.add_bos_token", 7, False)
    g.add("tokenizer.chat_template", 8,
          "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
          "{% endfor %}")
    vocab = len(tokens)
    if full_vocab:
        g.tensor("token_embd.weight", [hidden, vocab], 2,
                 b"".join(q4_0_block(0.125, [(i * 3 + r) % 16 for i in range(32)])
                          for r in range(vocab)))
    else:
        g.tensor("token_embd.weight", [hidden, vocab], 1,
                 f16([0.01 * i for i in range(hidden * vocab)]))
    g.tensor("output_norm.weight", [hidden], 0, f32([1.0] * hidden))
    g.tensor("rope_freqs.weight", [head_dim // 2], 0, f32([1.0, 2.0, 4.0, 8.0]))
    q8 = b"".join(q8_0_block(0.5, [(i * 7 + r) % 255 - 127 for i in range(32)])
                  for r in range(hidden))
    g.tensor("blk.0.attn_q.weight", [hidden, hidden], 8, q8)
    q4 = b"".join(q4_0_block(0.25, [(i + r) % 16 for i in range(32)])
                  for r in range(kv_heads * head_dim))
    g.tensor("blk.0.attn_k.weight", [hidden, kv_heads * head_dim], 2, q4)
    g.tensor("blk.0.attn_norm.weight", [hidden], 30,
             b"".join(struct.pack("<H", 0x3F80) for _ in range(hidden)))  # BF16 ones
    return g


def gguf_seeds():
    write("gguf", "tiny_llama_v3", llama_gguf(full_vocab=True).bytes(3))
    write("gguf", "tiny_llama_v2", llama_gguf(full_vocab=False).bytes(2))
    # Every metadata value type, an array of arrays, an empty string and array.
    g = Gguf(alignment=64)
    g.add("general.alignment", 4, 64)
    for key, vtype, v in [("t.u8", 0, 200), ("t.i8", 1, -5), ("t.u16", 2, 60000),
                          ("t.i16", 3, -30000), ("t.u32", 4, 4000000000), ("t.i32", 5, -7),
                          ("t.f32", 6, 1.5), ("t.bool", 7, True), ("t.str", 8, ""),
                          ("t.u64", 10, 2 ** 63 + 5), ("t.i64", 11, -2 ** 40),
                          ("t.f64", 12, -0.125)]:
        g.add(key, vtype, v)
    g.add("t.arr_f64", 9, (12, [1.0, -2.5]))
    g.add("t.arr_u64", 9, (10, [1, 2 ** 64 - 1]))
    g.add("t.arr_i8", 9, (1, [-1, 2, -3]))
    g.add("t.arr_empty", 9, (8, []))
    g.add("t.nested", 9, (9, [(4, [1, 2]), (8, ["x", "yz"])]))
    g.tensor("f64", [2], 28, struct.pack("<2d", 1.0, 2.0))
    g.tensor("i32", [3, 1], 26, struct.pack("<3i", 1, -2, 3))
    g.tensor("q8_1_no_dequantiser", [32], 9, b"\x00" * 40)
    write("gguf", "all_value_types", g.bytes(3))
    write("gguf", "header_only", Gguf().bytes(3))
    shutil.copyfile(os.path.join(ROOT, "tests", "fixtures", "gguf", "quants.gguf"),
                    os.path.join(CORPUS, "gguf", "quants_fixture"))


# ---- safetensors ---------------------------------------------------------------

def safetensors(tensors, metadata=None, pad_header_to=8):
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, blob in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % pad_header_to)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds():
    write("safetensors", "mixed_dtypes", safetensors([
        ("model.embed_tokens.weight", "F32", [4, 3], f32([0.5 * i for i in range(12)])),
        ("a.f16", "F16", [2, 2], f16([1.0, -2.0, 0.5, 65504.0])),
        ("a.bf16", "BF16", [3], struct.pack("<3H", 0x3F80, 0xC000, 0x7F80)),
        ("a.f64", "F64", [1], struct.pack("<d", 3.25)),
        ("a.i8", "I8", [4], struct.pack("<4b", -1, 0, 1, 127)),
        ("a.i16", "I16", [2], struct.pack("<2h", -300, 300)),
        ("a.i32", "I32", [1, 1], struct.pack("<i", 7)),
        ("a.i64", "I64", [2], struct.pack("<2q", -1, 2 ** 40)),
        ("a.u8", "U8", [3], b"\x00\x7f\xff"),
        ("a.bool", "BOOL", [2], b"\x00\x01"),
    ], metadata={"format": "pt"}))
    write("safetensors", "scalar_and_empty", safetensors([
        ("scalar", "F32", [], f32([42.0])),
        ("empty", "F16", [0, 5], b""),
    ]))
    write("safetensors", "header_only", safetensors([], metadata={}))
    write("safetensors", "unaligned_offsets", safetensors([
        ("b", "U8", [3], b"abc"),
        ("f", "F32", [2], f32([1.0, 2.0])),
    ], pad_header_to=1))


# ---- chat templates ------------------------------------------------------------

MESSAGES = [("system", "You are terse."), ("user", "Hi <b>there</b> {{ x }}"),
            ("assistant", "Hello!\n"), ("user", "Tell me 3 things.")]


def chat_seeds():
    # fuzz_chat_template inputs: template [NUL role NUL content]...; without a
    # NUL the target renders a fixed conversation.
    chat = os.path.join(ROOT, "tests", "fixtures", "chat")
    with open(os.path.join(chat, "templates.json"), encoding="utf-8") as f:
        templates = json.load(f)
    sources = {}
    for name, spec in sorted(templates.items()):
        if "inline" in spec:
            sources[name] = spec["inline"]
        elif "file" in spec:
            with open(os.path.join(chat, spec["file"]), encoding="utf-8") as f:
                sources[name] = f.read()
    llama32 = os.path.join(ROOT, "tests", "fixtures", "chat", "llama32.jinja")
    shared = os.path.join(os.path.dirname(ROOT), "shared", "assets", "tokenizers", "llama3",
                          "llama-3.2-instruct-chat-template.jinja")
    for path in (llama32, shared):
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                sources["llama32"] = f.read()
            break
    conversation = b"".join(SEP + r.encode() + SEP + c.encode() for r, c in MESSAGES)
    for name, text in sorted(sources.items()):
        write("chat_template", name, text)
        write("chat_template", name + "_messages", text.encode("utf-8") + conversation)
    write("chat_template", "expressions",
          "{% set ns = namespace(n=0) %}{% for i in range(3) if i is odd %}{% set ns.n = ns.n + i %}"
          "{{ loop.index0 }}/{{ loop.revindex }}{% else %}none{% endfor %}"
          "{{ [1, 2, 3][1:] | join(',') }} {{ {'a': 1}.items() | list | tojson }} "
          "{{ 'x' ~ 2 * 3 ** 2 // 4 % 5 }} {{ 'Hi'.upper().startswith('H') and not false }} "
          "{{ messages | length }} {{ (messages | last).content | trim | replace('3', 'three') }}"
          "{{ none is none }} {{ 'a,b'.split(',') | first | default('z') }} {{ 1 < 2 < 3 }}"
          "{%- generation %} {{ ns.n }} {% endgeneration -%}{# comment #}"
          "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}")


# ---- JSONL ---------------------------------------------------------------------

def jsonl_seeds():
    rec = {"link": "https://example.com/a", "headline": "Rain expected",
           "category": "WEATHER", "short_description": "Bring an umbrella.",
           "authors": "A. Writer", "date": "2022-09-23"}
    good = json.dumps(rec, ensure_ascii=False)
    write("jsonl", "records", "\n".join([
        good,
        json.dumps(dict(rec, headline="Ünïcödé — 東京 🙂", short_description="Line\nbreak \"q\"")),
        "",
        json.dumps(dict(rec, authors=None, date=None)),
    ]) + "\n")
    write("jsonl", "malformed", "\r\n".join([
        good,
        '{"headline": "no description"}',
        '{"short_description": 5}',
        '["not", "an", "object"]',
        '{"short_description": "unterminated',
        "   \t ",
        "null",
        '{"short_description": "ok", "extra": {"nested": [1, 2, {"x": null}]}}',
        '{"short_description": "bad escape \\uD800"}',
    ]))
    write("jsonl", "array", json.dumps([rec, {"short_description": ""}, 3, None]))
    write("jsonl", "no_final_newline", good + "\n" + good)


def main():
    # Seeds named regress_* are inputs that once found a bug, added by hand
    # with the fix; they are kept.
    for target in os.listdir(CORPUS) if os.path.isdir(CORPUS) else []:
        for name in os.listdir(os.path.join(CORPUS, target)):
            if not name.startswith("regress_"):
                os.remove(os.path.join(CORPUS, target, name))
    tokenizer_seeds()
    tokenize_seeds()
    gguf_seeds()
    safetensors_seeds()
    chat_seeds()
    jsonl_seeds()
    for target in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, target))
        size = sum(os.path.getsize(os.path.join(CORPUS, target, f)) for f in files)
        print(f"{target}: {len(files)} seeds, {size} bytes")


if __name__ == "__main__":
    main()
