// Pre-tokenization for byte-level BPE: the text is cut into pieces by a
// sequence of regular expressions before BPE runs on each piece, as Hugging
// Face `tokenizers` does with a Sequence of Split(Regex, Isolated) /
// Digits / ByteLevel(use_regex) pre-tokenizers.
//
// Every step is a regex "split, isolated": each match becomes a piece, and so
// does each gap between matches (HF SplitDelimiterBehavior::Isolated). Each
// step runs on every piece of the previous step separately, so a lookahead
// such as `\s+(?!\S)` never sees past the end of its piece — exactly as HF.
//
// Patterns use PCRE2 with PCRE2_UTF | PCRE2_UCP (JIT when available). HF runs
// them on Oniguruma, whose Unicode `\s` is the White_Space set; PCRE2's UCP
// `\s` also contains U+180E, so `\s` / `\S` are rewritten into explicit
// classes (translate_whitespace_classes) before compiling.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace udaci {

// The GPT-2 regex of HF's ByteLevel pre-tokenizer (use_regex = true).
extern const char* const kGpt2Pattern;
// The Split regex of Llama 3's tokenizer.json.
extern const char* const kLlama3Pattern;

// One step: split each piece by `pattern`, matches and gaps isolated.
struct PreTokenizerStep {
  std::string pattern;
};

// [begin, end) byte offsets into the text given to PreTokenizer::split.
using Piece = std::pair<uint32_t, uint32_t>;

class PreTokenizer {
 public:
  // Compiles every step once. Throws Error(kInvalidArgument) naming the
  // pattern when PCRE2 rejects it.
  explicit PreTokenizer(std::vector<PreTokenizerStep> steps);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Steps for a pre-tokenizer name as GGUF's tokenizer.ggml.pre (llama.cpp
  // names) or TokenizerSpec::pre_tokenizer spell it: "gpt2" / "gpt-2";
  // "llama3" / "llama-bpe" / "llama-v3" (and *ignore_merges = true, as
  // llama.cpp and Llama 3's tokenizer.json set); "smollm" (individual digits,
  // then GPT-2). Throws Error(kUnsupported) for other names.
  static std::vector<PreTokenizerStep> steps_for_name(const std::string& name,
                                                      bool* ignore_merges);

  // Appends the pieces of `text` (valid UTF-8, which the caller guarantees)
  // to `out`. Thread-safe. Throws Error(kInternal) if PCRE2 fails to match
  // (resource limits), never crashes.
  void split(std::string_view text, std::vector<Piece>& out) const;

  size_t num_steps() const { return steps_.size(); }

 private:
  struct Compiled;
  std::vector<std::unique_ptr<Compiled>> steps_;
};

// Rewrites `\s` and `\S` of a Rust/Oniguruma pattern into explicit classes of
// the Unicode White_Space characters (outside a character class `\s` becomes
// `[...]`, `\S` `[^...]`; inside one, `\s` becomes the bare ranges). `\S`
// inside a character class has no explicit form and is left as PCRE2's.
std::string translate_whitespace_classes(const std::string& pattern);

}  // namespace udaci
