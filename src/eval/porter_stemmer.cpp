// Porter stemmer, NLTK_EXTENSIONS mode. Written from Porter (1980) and the
// rule list of nltk/stem/porter.py (nltk 3.10.4), whose results it must equal:
// tests/fixtures/rouge/stems.txt holds NLTK's stems for ~23,000 words.
// Rules are tried in the paper's order; within a step the FIRST rule whose
// suffix matches decides, even when its condition fails (then the word is
// returned unchanged) -- NLTK's _apply_rule_list, and Porter's own C code.
#include "eval/porter_stemmer.hpp"
#include "core/strings.hpp"

#include <array>
#include <string>
#include <utility>

namespace udaci {
namespace {

bool is_vowel_letter(char c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u'; }

// Consonant flags from the left: a 'y' is a consonant at the start of a word
// or after a vowel, a vowel after a consonant ("toy": t, y consonants;
// "syzygy": s, z, g). Digits and other bytes are consonants, as in NLTK.
bool is_consonant(std::string_view w, size_t i) {
  bool cons = true;
  for (size_t k = 0; k <= i; ++k) {
    const char c = w[k];
    if (is_vowel_letter(c))
      cons = false;
    else if (c == 'y')
      cons = (k == 0) ? true : !cons;
    else
      cons = true;
  }
  return cons;
}

// m in [C](VC){m}[V]: the number of vowel -> consonant transitions.
int measure(std::string_view w) {
  int m = 0;
  bool prev_cons = true;
  for (size_t k = 0; k < w.size(); ++k) {
    const char c = w[k];
    bool cons;
    if (is_vowel_letter(c))
      cons = false;
    else if (c == 'y')
      cons = (k == 0) ? true : !prev_cons;
    else
      cons = true;
    if (k > 0 && !prev_cons && cons) ++m;
    prev_cons = cons;
  }
  return m;
}

bool contains_vowel(std::string_view w) {
  for (size_t k = 0; k < w.size(); ++k)
    if (!is_consonant(w, k)) return true;
  return false;
}

// *d: ends with a double consonant.
bool ends_double_consonant(std::string_view w) {
  const size_t n = w.size();
  return n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1);
}

// *o: ends consonant-vowel-consonant, the last not w, x or y; NLTK also
// accepts a two-letter stem vowel-consonant (any consonant), so "owing"
// (stem "ow", m=1) becomes "owe".
bool ends_cvc(std::string_view w) {
  const size_t n = w.size();
  if (n >= 3 && is_consonant(w, n - 3) && !is_consonant(w, n - 2) && is_consonant(w, n - 1) &&
      w[n - 1] != 'w' && w[n - 1] != 'x' && w[n - 1] != 'y')
    return true;
  return n == 2 && !is_consonant(w, 0) && is_consonant(w, 1);
}

enum class Cond {
  kNone,        // unconditional
  kMeasureGt0,  // (m>0) on the stem
  kMeasureGt1,  // (m>1) on the stem
  kIon,         // (m>1 and (*S or *T)) on the stem
  kLogi,        // NLTK: m>0 on the word less "ogi" (the stem keeps its 'l')
  kYToI,        // NLTK step 1c: stem longer than one letter ending in a consonant
};

struct Rule {
  std::string_view suffix;
  std::string_view replacement;
  Cond cond;
};

bool holds(Cond cond, std::string_view word, std::string_view stem) {
  switch (cond) {
    case Cond::kNone:
      return true;
    case Cond::kMeasureGt0:
      return measure(stem) > 0;
    case Cond::kMeasureGt1:
      return measure(stem) > 1;
    case Cond::kIon:
      return measure(stem) > 1 && !stem.empty() && (stem.back() == 's' || stem.back() == 't');
    case Cond::kLogi:
      return measure(word.substr(0, word.size() - 3)) > 0;
    case Cond::kYToI:
      return stem.size() > 1 && is_consonant(stem, stem.size() - 1);
  }
  return false;
}

template <size_t N>
std::string apply_rules(const std::string& word, const std::array<Rule, N>& rules) {
  for (const Rule& r : rules) {
    if (!ends_with(word, r.suffix)) continue;
    const std::string_view stem = std::string_view(word).substr(0, word.size() - r.suffix.size());
    if (!holds(r.cond, word, stem)) return word;
    std::string out(stem);
    out += r.replacement;
    return out;
  }
  return word;
}

std::string replace_suffix(const std::string& w, size_t suffix_len, std::string_view repl) {
  std::string out = w.substr(0, w.size() - suffix_len);
  out += repl;
  return out;
}

std::string step1a(const std::string& w) {
  if (ends_with(w, "ies") && w.size() == 4) return replace_suffix(w, 3, "ie");  // NLTK: ties -> tie
  static const std::array<Rule, 4> kRules = {{
      {"sses", "ss", Cond::kNone},
      {"ies", "i", Cond::kNone},
      {"ss", "ss", Cond::kNone},
      {"s", "", Cond::kNone},
  }};
  return apply_rules(w, kRules);
}

std::string step1b(const std::string& w) {
  if (ends_with(w, "ied")) return replace_suffix(w, 3, w.size() == 4 ? "ie" : "i");  // NLTK
  if (ends_with(w, "eed")) {
    const std::string stem = w.substr(0, w.size() - 3);
    return measure(stem) > 0 ? stem + "ee" : w;
  }
  std::string s;  // the word less "ed" / "ing" when that leaves a vowel
  bool removed = false;
  for (std::string_view suffix : {std::string_view("ed"), std::string_view("ing")}) {
    if (ends_with(w, suffix)) {
      s = w.substr(0, w.size() - suffix.size());
      if (contains_vowel(s)) {
        removed = true;
        break;
      }
    }
  }
  if (!removed) return w;
  // Tidying after -ed/-ing: the first matching rule decides.
  if (ends_with(s, "at")) return s + "e";
  if (ends_with(s, "bl")) return s + "e";
  if (ends_with(s, "iz")) return s + "e";
  if (ends_double_consonant(s)) {
    const char last = s.back();
    if (last != 'l' && last != 's' && last != 'z') return s.substr(0, s.size() - 1);
    return s;
  }
  if (measure(s) == 1 && ends_cvc(s)) return s + "e";
  return s;
}

std::string step1c(const std::string& w) {
  static const std::array<Rule, 1> kRules = {{{"y", "i", Cond::kYToI}}};
  return apply_rules(w, kRules);
}

std::string step2(const std::string& w) {
  // NLTK: "alli" -> "al" and run step 2 again (so "-ationalli" can reach "-ate").
  if (ends_with(w, "alli") && measure(std::string_view(w).substr(0, w.size() - 4)) > 0)
    return step2(replace_suffix(w, 4, "al"));
  static const std::array<Rule, 22> kRules = {{
      {"ational", "ate", Cond::kMeasureGt0},
      {"tional", "tion", Cond::kMeasureGt0},
      {"enci", "ence", Cond::kMeasureGt0},
      {"anci", "ance", Cond::kMeasureGt0},
      {"izer", "ize", Cond::kMeasureGt0},
      {"bli", "ble", Cond::kMeasureGt0},  // Porter's later change of "abli"
      {"alli", "al", Cond::kMeasureGt0},
      {"entli", "ent", Cond::kMeasureGt0},
      {"eli", "e", Cond::kMeasureGt0},
      {"ousli", "ous", Cond::kMeasureGt0},
      {"ization", "ize", Cond::kMeasureGt0},
      {"ation", "ate", Cond::kMeasureGt0},
      {"ator", "ate", Cond::kMeasureGt0},
      {"alism", "al", Cond::kMeasureGt0},
      {"iveness", "ive", Cond::kMeasureGt0},
      {"fulness", "ful", Cond::kMeasureGt0},
      {"ousness", "ous", Cond::kMeasureGt0},
      {"aliti", "al", Cond::kMeasureGt0},
      {"iviti", "ive", Cond::kMeasureGt0},
      {"biliti", "ble", Cond::kMeasureGt0},
      {"fulli", "ful", Cond::kMeasureGt0},  // NLTK
      {"logi", "log", Cond::kLogi},         // NLTK
  }};
  return apply_rules(w, kRules);
}

std::string step3(const std::string& w) {
  static const std::array<Rule, 7> kRules = {{
      {"icate", "ic", Cond::kMeasureGt0},
      {"ative", "", Cond::kMeasureGt0},
      {"alize", "al", Cond::kMeasureGt0},
      {"iciti", "ic", Cond::kMeasureGt0},
      {"ical", "ic", Cond::kMeasureGt0},
      {"ful", "", Cond::kMeasureGt0},
      {"ness", "", Cond::kMeasureGt0},
  }};
  return apply_rules(w, kRules);
}

std::string step4(const std::string& w) {
  static const std::array<Rule, 19> kRules = {{
      {"al", "", Cond::kMeasureGt1},    {"ance", "", Cond::kMeasureGt1},
      {"ence", "", Cond::kMeasureGt1},  {"er", "", Cond::kMeasureGt1},
      {"ic", "", Cond::kMeasureGt1},    {"able", "", Cond::kMeasureGt1},
      {"ible", "", Cond::kMeasureGt1},  {"ant", "", Cond::kMeasureGt1},
      {"ement", "", Cond::kMeasureGt1}, {"ment", "", Cond::kMeasureGt1},
      {"ent", "", Cond::kMeasureGt1},   {"ion", "", Cond::kIon},
      {"ou", "", Cond::kMeasureGt1},    {"ism", "", Cond::kMeasureGt1},
      {"ate", "", Cond::kMeasureGt1},   {"iti", "", Cond::kMeasureGt1},
      {"ous", "", Cond::kMeasureGt1},   {"ive", "", Cond::kMeasureGt1},
      {"ize", "", Cond::kMeasureGt1},
  }};
  return apply_rules(w, kRules);
}

std::string step5a(const std::string& w) {
  if (!ends_with(w, "e")) return w;
  const std::string stem = w.substr(0, w.size() - 1);
  const int m = measure(stem);
  if (m > 1) return stem;
  if (m == 1 && !ends_cvc(stem)) return stem;
  return w;
}

std::string step5b(const std::string& w) {
  // (m>1 and *d and *L): NLTK measures the word less one 'l'.
  if (ends_with(w, "ll") && measure(std::string_view(w).substr(0, w.size() - 1)) > 1)
    return w.substr(0, w.size() - 1);
  return w;
}

// NLTK's irregular forms, looked up before any rule.
const char* irregular(const std::string& w) {
  static const std::array<std::pair<const char*, const char*>, 16> kPool = {{
      {"sky", "sky"},
      {"skies", "sky"},
      {"dying", "die"},
      {"lying", "lie"},
      {"tying", "tie"},
      {"news", "news"},
      {"innings", "inning"},
      {"inning", "inning"},
      {"outings", "outing"},
      {"outing", "outing"},
      {"cannings", "canning"},
      {"canning", "canning"},
      {"howe", "howe"},
      {"proceed", "proceed"},
      {"exceed", "exceed"},
      {"succeed", "succeed"},
  }};
  for (const auto& [form, stem] : kPool)
    if (w == form) return stem;
  return nullptr;
}

}  // namespace

std::string porter_stem(std::string_view word) {
  std::string w(word);
  for (char& c : w)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (const char* s = irregular(w)) return s;
  if (w.size() <= 2) return w;
  w = step1a(w);
  w = step1b(w);
  w = step1c(w);
  w = step2(w);
  w = step3(w);
  w = step4(w);
  w = step5a(w);
  w = step5b(w);
  return w;
}

}  // namespace udaci
