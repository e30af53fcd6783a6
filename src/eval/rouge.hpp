// ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum (Lin 2004, "ROUGE: A Package for
// Automatic Evaluation of Summaries", ACL workshop W04-1013) computed exactly
// as Google's rouge-score 0.1.2 (PyPI `rouge-score`, rouge_scorer.py) does, so
// udaci's numbers can be compared with published ones. The committed fixtures
// tests/fixtures/rouge/ (tools/reference/make_rouge_fixtures.py) hold
// rouge-score's values for 2,125 cases; the test asserts every one.
//
// What "exactly" means here, after rouge_score/tokenize.py and rouge_scorer.py:
// - Tokens: Python's str.lower(), every run of characters outside [a-z0-9]
//   becomes a separator, empty tokens dropped. So non-ASCII letters separate
//   words ("café" -> "caf"), except the two code points whose Unicode lower
//   case contains ASCII: U+0130 'İ' -> "i" + U+0307 (a separator follows) and
//   U+212A KELVIN SIGN -> "k". With stemming, tokens longer than 3 characters
//   go through NLTK's Porter stemmer (porter_stemmer.hpp).
// - ROUGE-N: clipped n-gram overlap; precision = overlap / max(#generated
//   n-grams, 1), recall = overlap / max(#reference n-grams, 1).
// - ROUGE-L: longest common subsequence over the whole token lists; 0 when
//   either is empty.
// - ROUGE-Lsum: summary-level union LCS (Lin 2004 section 3.2) over sentences
//   split on '\n' only (rouge-score's default split_summaries=False: a text
//   without newlines is one sentence), empty sentences dropped, with
//   ROUGE-1.5.5's guard against counting a token more often than it occurs.
// - F = 2PR / (P + R), 0 when P + R = 0 (scoring.fmeasure).
// - Several references: each metric independently takes the reference with
//   the highest F (the first on ties), as RougeScorer.score_multi.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace udaci {

struct RougeScore {
  double precision = 0;
  double recall = 0;
  double fmeasure = 0;
};

struct RougeScores {
  RougeScore rouge1;
  RougeScore rouge2;
  RougeScore rougeL;
  RougeScore rougeLsum;
};

struct RougeOptions {
  // Porter-stem tokens longer than 3 characters (rouge-score's use_stemmer,
  // ROUGE-1.5.5's -m).
  bool use_stemmer = false;
};

// rouge-score's DefaultTokenizer on UTF-8 text. Bytes that are not valid UTF-8
// act as separators.
std::vector<std::string> rouge_tokenize(std::string_view text, bool use_stemmer);

// Scores `generated` against one reference.
RougeScores rouge_score(std::string_view reference, std::string_view generated,
                        const RougeOptions& options = {});

// Scores against several references, keeping per metric the best F.
// Throws Error(kInvalidArgument) when `references` is empty.
RougeScores rouge_score_multi(const std::vector<std::string>& references,
                              std::string_view generated, const RougeOptions& options = {});

// scoring.fmeasure: 2 * p * r / (p + r), or 0 when p + r is not positive.
double rouge_fmeasure(double precision, double recall);

// A mean with a percentile-bootstrap confidence interval (Efron & Tibshirani
// 1993, ch. 13; what rouge-score's BootstrapAggregator reports, though that one
// draws from NumPy's global generator and so is not reproducible).
struct MeanCI {
  double mean = 0;
  double low = 0;
  double high = 0;
};

// `resamples` resamples of values.size() draws with replacement from
// std::mt19937_64(seed); low/high are the (1-confidence)/2 and
// 1-(1-confidence)/2 percentiles of the resample means, linearly interpolated
// as numpy.percentile does. Deterministic for a seed on every platform (the
// index draw does not use std::uniform_int_distribution, whose algorithm
// differs between standard libraries). Empty input -> all zeros. Throws
// Error(kInvalidArgument) for resamples < 1, confidence outside [0, 1] or a
// value that is not finite.
MeanCI bootstrap_mean_ci(const std::vector<double>& values, int resamples = 1000,
                         double confidence = 0.95, uint64_t seed = 0);

}  // namespace udaci
