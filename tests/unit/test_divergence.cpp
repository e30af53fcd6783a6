// KL divergence, top-1 agreement and |dp| against a reference model
// (eval/perplexity.hpp, issue #22): the arithmetic on hand-made
// distributions, and the whole path on a golden model against itself and
// against its int8 quantisation.
#include "udaci_catch.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "engine/registry.hpp"
#include "eval/perplexity.hpp"
#include "model/model_loader.hpp"
#include "model/llama_model.hpp"
#include "test_util.hpp"

using namespace udaci;

namespace {

// log of a probability table given row by row.
at::Tensor logp_of(const std::vector<std::vector<double>>& rows) {
  at::Tensor t = at::empty({static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())},
                           at::kFloat);
  for (size_t i = 0; i < rows.size(); ++i)
    for (size_t j = 0; j < rows[i].size(); ++j)
      t[static_cast<int64_t>(i)][static_cast<int64_t>(j)] = std::log(rows[i][j]);
  return t;
}

}  // namespace

TEST_CASE("divergence: KL, top-1 agreement and |dp| by hand", "[divergence]") {
  // Three positions over a vocabulary of 3; the last predicts nothing.
  const at::Tensor ref = logp_of({{0.5, 0.25, 0.25}, {0.1, 0.2, 0.7}, {0.3, 0.3, 0.4}});
  const at::Tensor q = logp_of({{0.25, 0.5, 0.25}, {0.1, 0.2, 0.7}, {0.9, 0.05, 0.05}});
  DivergenceSums sums;
  accumulate_divergence(ref, q, {0, 2, -1}, sums);
  const DivergenceResult r = finish_divergence(sums);
  // Row 0: 0.5 ln(0.5/0.25) + 0.25 ln(0.25/0.5) = 0.25 ln 2; row 1: identical, 0.
  const double k0 = 0.25 * std::log(2.0);
  CHECK(r.positions == 2);
  CHECK(r.mean_kld == Approx(k0 / 2).epsilon(1e-6));
  CHECK(r.max_kld == Approx(k0).epsilon(1e-6));
  CHECK(r.p99_kld == Approx(k0).epsilon(1e-6));  // nearest rank of 2 values: the larger
  CHECK(r.top1_agreement == Approx(0.5));         // argmax 0 vs 1; 2 vs 2
  // |dp| of the next token: row 0 token 0: |0.25 - 0.5|; row 1 token 2: 0.
  CHECK(r.mean_abs_dp == Approx(0.125).epsilon(1e-6));
  CHECK(r.reference.predicted == 2);
  CHECK(r.reference.nll_sum == Approx(-std::log(0.5) - std::log(0.7)).epsilon(1e-6));
  CHECK(r.model.nll_sum == Approx(-std::log(0.25) - std::log(0.7)).epsilon(1e-6));

  DivergenceSums bad;
  CHECK_THROWS_AS(accumulate_divergence(ref, q.narrow(0, 0, 2), {0, 2, -1}, bad), Error);
}

TEST_CASE("divergence: a golden model against itself and against int8", "[divergence]") {
  const std::string name = "tiny-gqa-tied";
  ModelFiles a = open_model(udaci_test::fixture("golden/" + name));
  ModelFiles b = open_model(udaci_test::fixture("golden/" + name));
  const LlamaModel ref(a.config, a.weights, ModelOptions{});
  auto q = builtin_strategies().quantizers.create("int8", StrategyOptions());
  q->quantize(b.weights);
  ModelOptions o;
  o.linear_factory = [&q](const LinearSpec& s, const WeightStore& w, const ModelOptions& opt) {
    return q->make_kernel(s, w, opt);
  };
  const LlamaModel int8(b.config, b.weights, o);
  const std::vector<std::vector<int64_t>> seqs = {{1, 5, 9, 2, 7, 3, 4}, {2, 8, 6}, {3}};

  const DivergenceResult self = evaluate_divergence(ref, ref, seqs, 2);
  CHECK(self.positions == 8);  // 6 + 2; the 1-token sequence predicts nothing
  CHECK(self.mean_kld < 1e-9);
  CHECK(self.top1_agreement == 1.0);
  CHECK(self.mean_abs_dp < 1e-6);
  CHECK(self.reference.perplexity() == Approx(evaluate_perplexity(ref, seqs).perplexity()).epsilon(1e-6));

  const DivergenceResult d = evaluate_divergence(ref, int8, seqs, 8);
  CHECK(d.positions == 8);
  CHECK(d.mean_kld > 0.0);
  CHECK(d.mean_kld < 0.05);  // int8 per channel: close to the reference
  CHECK(d.max_kld >= d.p99_kld);
  CHECK(d.p99_kld >= d.mean_kld);
  CHECK(d.model.perplexity() == Approx(evaluate_perplexity(int8, seqs).perplexity()).epsilon(1e-6));
}
