// ROUGE as rouge-score 0.1.2 computes it; see rouge.hpp for the definitions
// and tests/unit/test_rouge.cpp for the parity check against its outputs.
#include "eval/rouge.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <unordered_map>

#include "core/error.hpp"
#include "eval/porter_stemmer.hpp"

namespace udaci {
namespace {

// A text as token ids (shared between the reference and the generated text
// of one comparison), split into its '\n'-separated sentences.
struct Tokenized {
  std::vector<int> tokens;                  // the whole text
  std::vector<std::vector<int>> sentences;  // non-empty '\n' pieces, for Lsum
};

class Vocab {
 public:
  int id(const std::string& token) {
    auto [it, inserted] = ids_.emplace(token, static_cast<int>(ids_.size()));
    return it->second;
  }
  int size() const { return static_cast<int>(ids_.size()); }

 private:
  std::unordered_map<std::string, int> ids_;
};

// Calls emit(token) for each token of `text`, see rouge.hpp for the rules.
template <typename Emit>
void for_each_token(std::string_view text, bool use_stemmer, Emit&& emit) {
  std::string cur;
  auto flush = [&]() {
    if (cur.empty()) return;
    // tokenize.py stems only tokens longer than 3 characters.
    if (use_stemmer && cur.size() > 3) {
      std::string stem = porter_stem(cur);
      if (!stem.empty()) emit(std::move(stem));
    } else {
      emit(std::move(cur));
    }
    cur.clear();
  };
  const size_t n = text.size();
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 'A' && c <= 'Z') {
      cur += static_cast<char>(c - 'A' + 'a');
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      cur += static_cast<char>(c);
    } else if (c == 0xC4 && i + 1 < n && static_cast<unsigned char>(text[i + 1]) == 0xB0) {
      // U+0130 LATIN CAPITAL LETTER I WITH DOT ABOVE: Python lowers it to
      // "i" U+0307, and the combining dot is a separator.
      cur += 'i';
      flush();
      i += 1;
    } else if (c == 0xE2 && i + 2 < n && static_cast<unsigned char>(text[i + 1]) == 0x84 &&
               static_cast<unsigned char>(text[i + 2]) == 0xAA) {
      cur += 'k';  // U+212A KELVIN SIGN lowers to ASCII 'k'
      i += 2;
    } else {
      // Any other byte: ASCII punctuation/space or part of a non-ASCII code
      // point, none of whose lower-case forms is in [a-z0-9]. UTF-8
      // continuation bytes are never ASCII, so no letter is swallowed.
      flush();
    }
  }
  flush();
}

// Sentences are split on '\n' only (Python's str.split("\n")). Because '\n'
// is itself a separator for the tokenizer, the tokens of the whole text are
// the sentences' tokens in order, so one pass gives both.
Tokenized tokenize_ids(std::string_view text, bool use_stemmer, Vocab& vocab) {
  Tokenized t;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view piece = text.substr(start, end - start);
    if (!piece.empty()) {
      // rouge_scorer.py keeps every non-empty piece, even one without tokens.
      std::vector<int>& sentence = t.sentences.emplace_back();
      for_each_token(piece, use_stemmer, [&](std::string&& tok) {
        const int id = vocab.id(tok);
        sentence.push_back(id);
        t.tokens.push_back(id);
      });
    }
    start = end + 1;
  }
  return t;
}

RougeScore make_score(double precision, double recall) {
  return RougeScore{precision, recall, rouge_fmeasure(precision, recall)};
}

// Clipped n-gram overlap for n = 1 or 2; n-grams are keyed as integers.
RougeScore score_ngrams(const std::vector<int>& ref, const std::vector<int>& gen, int n,
                        int vocab_size) {
  auto keys = [&](const std::vector<int>& toks) {
    std::vector<uint64_t> k;
    if (toks.size() >= static_cast<size_t>(n)) {
      k.reserve(toks.size() - n + 1);
      for (size_t i = 0; i + n <= toks.size(); ++i) {
        uint64_t key = 0;
        for (int j = 0; j < n; ++j) key = key * static_cast<uint64_t>(vocab_size) + toks[i + j];
        k.push_back(key);
      }
    }
    std::sort(k.begin(), k.end());
    return k;
  };
  const std::vector<uint64_t> r = keys(ref);
  const std::vector<uint64_t> g = keys(gen);
  // Sorted merge: the overlap is sum over n-grams of min(count_ref, count_gen).
  int64_t overlap = 0;
  size_t i = 0, j = 0;
  while (i < r.size() && j < g.size()) {
    if (r[i] < g[j])
      ++i;
    else if (g[j] < r[i])
      ++j;
    else {
      ++overlap;
      ++i;
      ++j;
    }
  }
  const double precision =
      static_cast<double>(overlap) / static_cast<double>(std::max<size_t>(g.size(), 1));
  const double recall =
      static_cast<double>(overlap) / static_cast<double>(std::max<size_t>(r.size(), 1));
  return make_score(precision, recall);
}

// LCS length with two rows of the DP table.
size_t lcs_length(const std::vector<int>& a, const std::vector<int>& b) {
  std::vector<size_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

RougeScore score_lcs(const std::vector<int>& ref, const std::vector<int>& gen) {
  if (ref.empty() || gen.empty()) return RougeScore{};
  const auto lcs = static_cast<double>(lcs_length(ref, gen));
  return make_score(lcs / static_cast<double>(gen.size()), lcs / static_cast<double>(ref.size()));
}

// Marks in `in_union` the reference positions of one LCS of ref and can. Which
// LCS matters for the union, so the table and the backtrack follow
// rouge_scorer.py's _lcs_table / _backtrack_norec exactly: on a mismatch step
// left only when the left cell is strictly greater, else step up.
void mark_lcs(const std::vector<int>& ref, const std::vector<int>& can, std::vector<int>& table,
              std::vector<char>& in_union) {
  const size_t rows = ref.size(), cols = can.size();
  table.assign((rows + 1) * (cols + 1), 0);
  auto at = [&](size_t i, size_t j) -> int& { return table[i * (cols + 1) + j]; };
  for (size_t i = 1; i <= rows; ++i)
    for (size_t j = 1; j <= cols; ++j)
      at(i, j) =
          ref[i - 1] == can[j - 1] ? at(i - 1, j - 1) + 1 : std::max(at(i - 1, j), at(i, j - 1));
  size_t i = rows, j = cols;
  while (i > 0 && j > 0) {
    if (ref[i - 1] == can[j - 1]) {
      in_union[i - 1] = 1;
      --i;
      --j;
    } else if (at(i, j - 1) > at(i - 1, j)) {
      --j;
    } else {
      --i;
    }
  }
}

// Summary-level LCS (Lin 2004, section 3.2) as rouge_scorer._summary_level_lcs:
// for each reference sentence the union of its LCS with every generated
// sentence; a union token counts as a hit only while both texts still have an
// unused occurrence of it (ROUGE-1.5.5's guard against double counting).
RougeScore score_lsum(const Tokenized& ref, const Tokenized& gen, int vocab_size) {
  const size_t m = ref.tokens.size(), n = gen.tokens.size();
  if (m == 0 || n == 0) return RougeScore{};
  std::vector<int> left_ref(vocab_size, 0), left_gen(vocab_size, 0);
  for (int t : ref.tokens) ++left_ref[t];
  for (int t : gen.tokens) ++left_gen[t];
  int64_t hits = 0;
  std::vector<int> table;
  std::vector<char> in_union;
  for (const std::vector<int>& r : ref.sentences) {
    in_union.assign(r.size(), 0);
    for (const std::vector<int>& c : gen.sentences) mark_lcs(r, c, table, in_union);
    for (size_t i = 0; i < r.size(); ++i) {
      if (!in_union[i]) continue;
      const int t = r[i];
      if (left_gen[t] > 0 && left_ref[t] > 0) {
        ++hits;
        --left_gen[t];
        --left_ref[t];
      }
    }
  }
  const auto h = static_cast<double>(hits);
  return make_score(h / static_cast<double>(n), h / static_cast<double>(m));
}

// Draws an index in [0, n) without bias and without
// std::uniform_int_distribution, whose algorithm is library-specific:
// rejection of the top partial block of 2^64 values.
uint64_t draw_index(std::mt19937_64& rng, uint64_t n) {
  const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
  for (;;) {
    const uint64_t r = rng();
    if (r >= threshold) return r % n;
  }
}

// numpy.percentile's default ("linear") on sorted data, q in [0, 1].
double percentile_sorted(const std::vector<double>& sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  if (lo + 1 >= sorted.size()) return sorted.back();
  const double frac = pos - static_cast<double>(lo);
  return sorted[lo] + (sorted[lo + 1] - sorted[lo]) * frac;
}

}  // namespace

double rouge_fmeasure(double precision, double recall) {
  // Same operation order as scoring.fmeasure, so results match bit for bit.
  if (precision + recall > 0) return 2 * precision * recall / (precision + recall);
  return 0.0;
}

std::vector<std::string> rouge_tokenize(std::string_view text, bool use_stemmer) {
  std::vector<std::string> out;
  for_each_token(text, use_stemmer, [&](std::string&& tok) { out.push_back(std::move(tok)); });
  return out;
}

RougeScores rouge_score(std::string_view reference, std::string_view generated,
                        const RougeOptions& options) {
  Vocab vocab;
  const Tokenized ref = tokenize_ids(reference, options.use_stemmer, vocab);
  const Tokenized gen = tokenize_ids(generated, options.use_stemmer, vocab);
  RougeScores s;
  s.rouge1 = score_ngrams(ref.tokens, gen.tokens, 1, vocab.size());
  s.rouge2 = score_ngrams(ref.tokens, gen.tokens, 2, vocab.size());
  s.rougeL = score_lcs(ref.tokens, gen.tokens);
  s.rougeLsum = score_lsum(ref, gen, vocab.size());
  return s;
}

RougeScores rouge_score_multi(const std::vector<std::string>& references,
                              std::string_view generated, const RougeOptions& options) {
  UDACI_CHECK(!references.empty(), "rouge_score_multi: no references given (need at least one)");
  RougeScores best = rouge_score(references[0], generated, options);
  for (size_t k = 1; k < references.size(); ++k) {
    const RougeScores s = rouge_score(references[k], generated, options);
    // np.argmax keeps the first maximum: replace only on a strictly greater F.
    if (s.rouge1.fmeasure > best.rouge1.fmeasure) best.rouge1 = s.rouge1;
    if (s.rouge2.fmeasure > best.rouge2.fmeasure) best.rouge2 = s.rouge2;
    if (s.rougeL.fmeasure > best.rougeL.fmeasure) best.rougeL = s.rougeL;
    if (s.rougeLsum.fmeasure > best.rougeLsum.fmeasure) best.rougeLsum = s.rougeLsum;
  }
  return best;
}

MeanCI bootstrap_mean_ci(const std::vector<double>& values, int resamples, double confidence,
                         uint64_t seed) {
  UDACI_CHECK(resamples >= 1, "bootstrap_mean_ci: resamples must be at least 1, got {}", resamples);
  UDACI_CHECK(confidence >= 0 && confidence <= 1,
              "bootstrap_mean_ci: confidence must be in [0, 1], got {}", confidence);
  for (size_t i = 0; i < values.size(); ++i)
    UDACI_CHECK(std::isfinite(values[i]), "bootstrap_mean_ci: value {} is not finite ({})", i,
                values[i]);
  if (values.empty()) return MeanCI{};
  const size_t n = values.size();
  double sum = 0;
  for (double v : values) sum += v;
  MeanCI ci;
  ci.mean = sum / static_cast<double>(n);

  std::mt19937_64 rng(seed);
  std::vector<double> means(static_cast<size_t>(resamples));
  for (double& m : means) {
    double s = 0;
    for (size_t k = 0; k < n; ++k) s += values[draw_index(rng, n)];
    m = s / static_cast<double>(n);
  }
  std::sort(means.begin(), means.end());
  const double tail = (1 - confidence) / 2;
  ci.low = percentile_sorted(means, tail);
  ci.high = percentile_sorted(means, 1 - tail);
  return ci;
}

}  // namespace udaci
