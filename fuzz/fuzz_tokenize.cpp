// The tokenizer on arbitrary bytes, with a fixed small byte-level BPE
// tokenizer (fuzz/data/tokenizer.json, made by make_seeds.py: 256 byte tokens,
// 76 merges, special and non-special added tokens) in two variants, built
// once: as read from tokenizer.json (SmolLM2's pre-tokenizer: digits, then the
// GPT-2 regex) and through Tokenizer::from_spec with Llama 3's pre-tokenizer
// ("llama-bpe", ignore_merges) and BOS/EOS added.
//
// Input: one flag byte, then the payload.
//   bit 0: variant (0 tokenizer.json, 1 from_spec llama-bpe)
//   bit 1: add_special    bit 2: parse_special    bit 3: skip_special (decode)
//   bit 4: the payload is token ids (uint16 little-endian, some past the
//          vocabulary) to decode; otherwise it is text to encode.
// Checked: ids are in range; decode(encode(text)) gives the text back (with
// ill-formed UTF-8 replaced by U+FFFD); the incremental decoder's output
// equals decode(); decoded text is valid UTF-8.
#include <optional>

#include "fuzz_common.hpp"
#include "text/tokenizer.hpp"

using namespace udaci;
using udaci::fuzz::as_text;
using udaci::fuzz::expect_error_or_ok;
using udaci::fuzz::fuzz_check;

namespace {

std::optional<Tokenizer> g_tokenizers[2];

std::string decode_incrementally(const Tokenizer& tok, const std::vector<int32_t>& ids,
                                 bool skip_special) {
  Tokenizer::IncrementalDecoder dec = tok.incremental_decoder(skip_special);
  std::string out;
  for (int32_t id : ids) {
    const std::string piece = dec.feed(id);
    fuzz_check(is_valid_utf8(piece), "incremental decoder emits valid UTF-8");
    out += piece;
  }
  out += dec.flush();
  return out;
}

void check_decode(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
  const std::string text = tok.decode(ids, skip_special);
  fuzz_check(is_valid_utf8(text), "decode gives valid UTF-8");
  fuzz_check(decode_incrementally(tok, ids, skip_special) == text,
             "incremental decode equals decode");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_tokenizers[0] = Tokenizer::from_tokenizer_json(UDACI_FUZZ_DATA_DIR "/tokenizer.json");
  TokenizerSpec spec = g_tokenizers[0]->spec();
  spec.pre_tokenizer = "llama-bpe";
  spec.bos_id = g_tokenizers[0]->token_to_id("<|im_start|>");
  spec.eos_id = g_tokenizers[0]->token_to_id("<|im_end|>");
  spec.add_bos = spec.add_eos = true;
  g_tokenizers[1] = Tokenizer::from_spec(std::move(spec));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  const Tokenizer& tok = *g_tokenizers[flags & 1];
  const bool add_special = flags & 2, parse_special = flags & 4, skip_special = flags & 8;
  const std::string_view payload = as_text(data + 1, size - 1);

  if (flags & 16) {
    std::vector<int32_t> ids;
    bool in_range = true;
    for (size_t i = 0; i + 1 < payload.size(); i += 2) {
      const int32_t id = static_cast<uint8_t>(payload[i]) | static_cast<uint8_t>(payload[i + 1]) << 8;
      in_range = in_range && id < tok.vocab_size();
      ids.push_back(id);
    }
    const bool ok = expect_error_or_ok([&] { check_decode(tok, ids, skip_special); });
    fuzz_check(ok == in_range, "decode rejects exactly the ids outside the vocabulary");
    return 0;
  }

  const std::vector<int32_t> ids = tok.encode(payload, add_special, parse_special);
  for (int32_t id : ids) fuzz_check(id >= 0 && id < tok.vocab_size(), "encoded id in range");
  check_decode(tok, ids, skip_special);

  // Byte-level BPE loses nothing but ill-formed UTF-8: without BOS/EOS the
  // ids decode to the (sanitised) input.
  std::string expected;
  append_utf8_lossy(payload, expected);
  const std::vector<int32_t> plain = tok.encode(payload, false, parse_special);
  fuzz_check(tok.decode(plain) == expected, "decode(encode(text)) == text");
  return 0;
}
