// Turns one row of logits into a token: greedy, or seeded sampling with
// repetition penalty, temperature, top-k, top-p and min-p, applied in that
// order (the order of Hugging Face's logits processors). The random stream is
// std::mt19937_64, which the C++ standard specifies exactly, with our own
// mapping to [0, 1), so the same seed gives the same tokens on every platform.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace udaci {

struct SamplingOptions {
  float temperature = 0.0f;        // 0 = greedy (argmax, first index on ties)
  int64_t top_k = 0;               // keep the k most likely tokens; 0 = off
  float top_p = 1.0f;              // nucleus: smallest set with mass >= top_p; 1 = off
  float min_p = 0.0f;              // drop tokens with p < min_p * p_max; 0 = off
  float repetition_penalty = 1.0f; // CTRL (Keskar et al., arXiv:1909.05858); 1 = off
  uint64_t seed = 0;

  // Throws Error(kInvalidArgument) naming the option that is out of range.
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options);

  // logits: n_vocab floats (modified in place: penalties and filtering);
  // history: the ids generated or prompted so far (for the repetition penalty).
  int64_t sample(float* logits, int64_t n_vocab, const std::vector<int64_t>& history);

  // The distribution sample() draws from, over the whole vocabulary (zeros
  // for filtered tokens; one-hot at the argmax for greedy). Modifies logits.
  void distribution(float* logits, int64_t n_vocab, const std::vector<int64_t>& history,
                    std::vector<double>& probs);
  // Draws an index from an unnormalised distribution with this sampler's
  // random stream.
  int64_t draw(const std::vector<double>& probs);
  // The next number of the random stream, in [0, 1).
  double uniform();
  bool greedy() const { return opt_.temperature == 0.0f; }

 private:
  // Penalty, temperature and filters: leaves the kept candidates in order_ /
  // p_ (descending, normalised before filtering) and returns how many.
  int64_t prepare(float* logits, int64_t n_vocab, const std::vector<int64_t>& history);
  SamplingOptions opt_;
  std::mt19937_64 rng_;
  std::vector<int64_t> order_;
  std::vector<double> p_;
};

}  // namespace udaci
