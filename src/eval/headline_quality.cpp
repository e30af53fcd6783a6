#include "eval/headline_quality.hpp"

#include <set>

namespace udaci {

const char* degeneracy_name(Degeneracy d) {
  switch (d) {
    case Degeneracy::kNone: return "none";
    case Degeneracy::kEmpty: return "empty";
    case Degeneracy::kRepetitive: return "repetitive";
    case Degeneracy::kOverlong: return "overlong";
  }
  return "none";
}

std::vector<std::string> headline_words(const std::string& text) {
  std::vector<std::string> words;
  std::string cur;
  for (const char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    const bool word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '\'' || c >= 0x80;
    if (word) {
      cur += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    } else if (!cur.empty()) {
      words.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) words.push_back(std::move(cur));
  return words;
}

bool repeats_word_ngram(const std::string& text, size_t n) {
  const std::vector<std::string> w = headline_words(text);
  if (n == 0 || w.size() <= n) return false;
  std::set<std::vector<std::string>> seen;
  for (size_t i = 0; i + n <= w.size(); ++i) {
    std::vector<std::string> gram(w.begin() + static_cast<std::ptrdiff_t>(i),
                                  w.begin() + static_cast<std::ptrdiff_t>(i + n));
    if (!seen.insert(std::move(gram)).second) return true;
  }
  return false;
}

Degeneracy classify_headline(const std::string& headline, FinishReason finish) {
  if (headline_words(headline).empty()) return Degeneracy::kEmpty;
  if (repeats_word_ngram(headline, 2)) return Degeneracy::kRepetitive;
  if (finish == FinishReason::kLength) return Degeneracy::kOverlong;
  return Degeneracy::kNone;
}

}  // namespace udaci
