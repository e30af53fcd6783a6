// Byte-level BPE tokenizer (GPT-2 family: Llama 3, SmolLM2), built from a
// TokenizerSpec (GGUF metadata) or from a Hugging Face tokenizer.json, with
// ids identical to Hugging Face `tokenizers` (see docs/notes/tokenizer.md).
//
// Encoding: invalid UTF-8 in the input is replaced, per maximal ill-formed
// subsequence, by U+FFFD (Unicode's "substitution of maximal subparts", what
// Python's errors="replace" and Rust's from_utf8_lossy do) before anything
// else; then added/special tokens are split out (leftmost, longest first, as
// HF's added vocabulary), each remaining segment is pre-tokenized (regex) and
// every piece is BPE-merged by merge rank.
//
// Thread safety: a Tokenizer is immutable after construction except for an
// internal, mutex-guarded bounded cache; every const method may be called
// from many threads at once. Copies share the same state.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/utf8.hpp"
#include "text/pretokenizer.hpp"
#include "text/tokenizer_spec.hpp"

namespace udaci {

class Tokenizer {
 public:
  // Builds from a spec (e.g. tokenizer_spec_from_gguf). spec.pre_tokenizer
  // names the pre-tokenizer (PreTokenizer::steps_for_name). Throws
  // Error(kBadModelFile) naming the problem for an inconsistent spec (merge
  // naming an unknown token, token_types of the wrong length, special id out
  // of range) and Error(kUnsupported) for an unknown pre-tokenizer.
  static Tokenizer from_spec(TokenizerSpec spec);

  // Reads a Hugging Face tokenizer.json and, when present beside it,
  // tokenizer_config.json (bos/eos/pad/unk tokens, add_bos_token,
  // add_eos_token, chat_template), chat_template.jinja and
  // generation_config.json (eos_token_id list). Error(kNotFound) when the
  // file cannot be read, Error(kBadModelFile) naming file and key when it is
  // malformed, Error(kUnsupported) for anything but byte-level BPE.
  static Tokenizer from_tokenizer_json(const std::string& path);

  // add_special: add BOS/EOS as the spec says (add_bos / add_eos).
  // parse_special: split special (control) tokens written in the text out
  // as their ids; when false they are tokenized as plain text (HF's
  // encode_special_tokens = true). Non-special added tokens are always split.
  std::vector<int32_t> encode(std::string_view text, bool add_special = false,
                              bool parse_special = true) const;

  // Concatenated token bytes; ill-formed UTF-8 in the result (e.g. a cut
  // multi-byte character) becomes U+FFFD, like HF's decode. Throws
  // Error(kInvalidArgument) for an id outside [0, vocab_size).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  // Streaming decode: feed ids one at a time; each call returns only text that
  // is complete, valid UTF-8 (a partial character is held back until its
  // remaining bytes arrive, or replaced by U+FFFD once it cannot complete).
  // The concatenation of all feed() results and flush() equals decode() of
  // the same ids. Belongs to one thread; the Tokenizer must outlive it.
  class IncrementalDecoder {
   public:
    explicit IncrementalDecoder(const Tokenizer& tok, bool skip_special = false)
        : tok_(&tok), skip_special_(skip_special) {}
    std::string feed(int32_t id);
    // Returns what is left (a held-back partial character becomes U+FFFD)
    // and resets the decoder.
    std::string flush();

   private:
    const Tokenizer* tok_;
    bool skip_special_;
    std::string pending_;
  };
  IncrementalDecoder incremental_decoder(bool skip_special = false) const {
    return IncrementalDecoder(*this, skip_special);
  }

  // Token string as stored (byte-to-unicode alphabet for normal tokens).
  // Throws Error(kInvalidArgument) when out of range.
  const std::string& id_to_token(int32_t id) const;
  // The raw bytes the token stands for.
  const std::string& token_bytes(int32_t id) const;
  // -1 when absent.
  int32_t token_to_id(std::string_view token) const;
  int32_t vocab_size() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t pad_id() const;
  const std::vector<int32_t>& eos_ids() const;
  bool add_bos() const;
  bool add_eos() const;
  // Control tokens (special added tokens): skipped by decode(skip_special).
  bool is_special(int32_t id) const;
  const std::string& chat_template() const;
  const TokenizerSpec& spec() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  // Shared by from_spec and from_tokenizer_json: explicit pre-tokenizer steps
  // and HF's BPE ignore_merges flag (a whole piece that is a token is taken
  // as is, without merging).
  static Tokenizer build(TokenizerSpec spec, std::vector<PreTokenizerStep> steps,
                         bool ignore_merges);
  std::shared_ptr<Impl> impl_;
};


}  // namespace udaci
