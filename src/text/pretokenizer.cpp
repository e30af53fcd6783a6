#include "text/pretokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.hpp"

namespace udaci {

// HF tokenizers, pre_tokenizers/byte_level.rs.
const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// meta-llama/Llama-3.x tokenizer.json, pre_tokenizer.pretokenizers[0].
const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// HF pre_tokenizers/digits.rs splits on char::is_numeric (categories Nd, Nl,
// No), which is \p{N}.
const char* const kDigitsIndividual = R"(\p{N})";

namespace {

// Unicode White_Space (PropList.txt), which is Oniguruma's Unicode `\s`:
// 0009..000D, 0020, 0085, 00A0, 1680, 2000..200A, 2028, 2029, 202F, 205F,
// 3000.
constexpr const char* kWhiteSpaceRanges =
    R"(\t\n\x{0B}\f\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

std::string translate_whitespace_classes(const std::string& p) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      if (n == 's') {
        if (in_class) {
          out += kWhiteSpaceRanges;
        } else {
          out += '[';
          out += kWhiteSpaceRanges;
          out += ']';
        }
        ++i;
        continue;
      }
      if (n == 'S' && !in_class) {
        out += "[^";
        out += kWhiteSpaceRanges;
        out += ']';
        ++i;
        continue;
      }
      out += c;
      out += n;
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' (or '^]') right after '[' is a literal, not the end.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

struct PreTokenizer::Compiled {
  std::string pattern;
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Compiled() {
    if (code) pcre2_code_free(code);
  }
};

PreTokenizer::PreTokenizer(std::vector<PreTokenizerStep> steps) {
  for (auto& s : steps) {
    auto c = std::make_unique<Compiled>();
    c->pattern = s.pattern;
    const std::string translated = translate_whitespace_classes(s.pattern);
    int err = 0;
    PCRE2_SIZE err_off = 0;
    c->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                            PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
    UDACI_CHECK(c->code != nullptr, "pre-tokenizer regex '{}' does not compile at offset {}: {}",
                s.pattern, err_off, pcre2_message(err));
    c->jit = pcre2_jit_compile(c->code, PCRE2_JIT_COMPLETE) == 0;
    steps_.push_back(std::move(c));
  }
}

PreTokenizer::~PreTokenizer() = default;

std::vector<PreTokenizerStep> PreTokenizer::steps_for_name(const std::string& name,
                                                           bool* ignore_merges) {
  if (ignore_merges) *ignore_merges = false;
  if (name == "gpt2" || name == "gpt-2") return {{kGpt2Pattern}};
  if (name == "llama3" || name == "llama-bpe" || name == "llama-v3") {
    // llama.cpp sets ignore_merges for this family, as Llama 3's
    // tokenizer.json does ("ignore_merges": true).
    if (ignore_merges) *ignore_merges = true;
    return {{kLlama3Pattern}};
  }
  if (name == "smollm") {
    // SmolLM/SmolLM2 tokenizer.json: Sequence[Digits(individual_digits),
    // ByteLevel(use_regex)]; llama.cpp's "smollm" uses the same two regexes.
    return {{kDigitsIndividual}, {kGpt2Pattern}};
  }
  fail(Status::kUnsupported,
       "pre-tokenizer '{}' is not supported (supported: gpt2, gpt-2, llama3, llama-bpe, "
       "llama-v3, smollm)",
       name);
}

namespace {

// Splits text[begin, end) by one compiled regex, matches and gaps isolated.
void split_one(pcre2_code* code, bool jit, pcre2_match_data* md, std::string_view text,
               Piece piece, std::vector<Piece>& out) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + piece.first);
  const PCRE2_SIZE len = piece.second - piece.first;
  PCRE2_SIZE pos = 0;
  PCRE2_SIZE gap = 0;
  // Input is validated UTF-8 (Tokenizer sanitizes it first), so the per-call
  // UTF check, which would make this loop quadratic, is skipped.
  uint32_t opts = PCRE2_NO_UTF_CHECK;
  while (pos < len) {
    int rc = pcre2_match(code, subject, len, pos, opts, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && jit) {
      // Very long pieces can exhaust the JIT stack; the interpreter keeps its
      // backtracking state on the heap.
      opts |= PCRE2_NO_JIT;
      rc = pcre2_match(code, subject, len, pos, opts, md, nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) fail(Status::kInternal, "pre-tokenizer regex failed: {}", pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const PCRE2_SIZE ms = ov[0], me = ov[1];
    if (me == ms) {
      // None of the supported patterns matches empty; guard anyway by
      // stepping one UTF-8 character.
      ++pos;
      while (pos < len && (subject[pos] & 0xC0) == 0x80) ++pos;
      continue;
    }
    if (ms > gap) out.emplace_back(piece.first + gap, piece.first + ms);
    out.emplace_back(piece.first + ms, piece.first + me);
    gap = pos = me;
  }
  if (gap < len) out.emplace_back(piece.first + gap, piece.first + len);
}

}  // namespace

void PreTokenizer::split(std::string_view text, std::vector<Piece>& out) const {
  if (text.empty()) return;
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  UDACI_CHECK_S(Status::kOutOfMemory, md != nullptr, "pre-tokenizer: cannot allocate match data");
  struct Free {
    pcre2_match_data* m;
    ~Free() { pcre2_match_data_free(m); }
  } guard{md};
  const Piece whole{0, static_cast<uint32_t>(text.size())};
  if (steps_.empty()) {
    out.push_back(whole);
    return;
  }
  std::vector<Piece> cur{whole}, next;
  for (size_t s = 0; s < steps_.size(); ++s) {
    auto& dst = (s + 1 == steps_.size()) ? out : next;
    for (const Piece& p : cur) split_one(steps_[s]->code, steps_[s]->jit, md, text, p, dst);
    if (s + 1 < steps_.size()) {
      cur.swap(next);
      next.clear();
    }
  }
}

}  // namespace udaci
