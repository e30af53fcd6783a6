// The built-in pruners (issue #7), registered in register_pruners.cpp as
// "magnitude", "2:4" and "structured". Each runs on the WeightStore right after
// the model file is opened, before quantisation and before LlamaModel is built,
// and touches only the decoder projections q, k, v, o, gate, up, down: the
// token embedding is a lookup table (zeroing entries erases parts of single
// tokens, and SmolLM2 ties it to the LM head), and the norms are one scale per
// channel. SparseGPT (Frantar & Alistarh, arXiv:2301.00774) and Wanda (Sun et
// al., arXiv:2306.11695) prune the same set, for the same reasons.
#pragma once

#include <string>

#include "prune/pruner.hpp"

namespace udaci {

// One line for a person: what was pruned, how much, what it costs in memory.
std::string prune_summary(const char* pruner, const PruneReport& report);

// Unstructured magnitude pruning (Han et al., "Learning both Weights and
// Connections", arXiv:1506.02626): the smallest |w| become zero. The result is
// stored dense (a plain float tensor keeps its dtype, a GGUF block tensor
// becomes F32), so it saves neither memory nor time on its own: dense BLAS
// multiplies zeros at full price. It is the baseline that shows what the
// structured formats buy.
struct MagnitudeOptions {
  double fraction = 0.3;  // share of weights set to zero, 0 <= f < 1
  // "layer": each tensor loses round(f * elements) weights, below its own
  // threshold. "global": one threshold over all projection weights, so layers
  // with many small weights lose more.
  std::string scope = "layer";
};

class MagnitudePruner final : public Pruner {
 public:
  explicit MagnitudePruner(MagnitudeOptions options);
  const char* name() const override { return "magnitude"; }
  PruneReport prune(WeightStore& store, ModelConfig& config) const override;

 private:
  MagnitudeOptions options_;
};

// 2:4 semi-structured sparsity (NVIDIA Ampere sparse tensor cores; Mishra et
// al., arXiv:2104.08378): in each group of 4 consecutive input weights of an
// output row the 2 largest magnitudes stay. Stored packed (see sparse24.hpp):
// "<w>.weight_sparse_values" and "<w>.weight_sparse_meta" replace
// "<w>.weight", and make_kernel() binds the packed CPU kernel.
class Sparse24Pruner final : public Pruner {
 public:
  const char* name() const override { return "2:4"; }
  PruneReport prune(WeightStore& store, ModelConfig& config) const override;
  std::unique_ptr<LinearKernel> make_kernel(const LinearSpec& spec, const WeightStore& store,
                                            const ModelOptions& options) const override;
};

// Structured FFN pruning: whole intermediate channels (row j of gate and up,
// column j of down) go, the same number in every layer, so the model is a
// smaller dense Llama with a smaller intermediate_size (Sheared LLaMA, Xia et
// al., arXiv:2310.06694, prunes to uniform target shapes for the same reason).
// The channel j of layer l is scored without data by a bound on its output:
// with |silu(a)| <= |a| and Hoelder's inequality,
//   ||down_:,j silu(gate_j x)(up_j x)||_inf
//       <= ||down_:,j||_inf ||gate_j||_inf ||up_j||_inf ||x||_1^2,
// so the score is the product of the three largest magnitudes ("max"). The
// L2 version of the same bound ("l2", the weight-only "vector-wise"
// magnitude of LLM-Pruner, Ma et al., arXiv:2305.11627, which groups
// gate/up/down the same way) is worse than random on SmolLM2-135M: removing
// 30% of channels gives news perplexity 1.2e6 (l2), 1.1e6 (random) and 805
// (max), against 119 unpruned. Single outlier weights ("super weights", Yu et
// al., arXiv:2411.07191) mark the channels that matter and an L2 norm averages
// them away; LLM-Pruner's Table 1 likewise finds weight-L2 below random.
struct StructuredOptions {
  double fraction = 0.3;  // share of intermediate channels removed, 0 <= f < 1
  // The kept count is rounded to a multiple of this (when f > 0) so that the
  // down projection's input still divides into the blocks of group-wise
  // quantisers (GGUF Q4_0/Q8_0: 32; 64 serves groups of 32 and 64).
  int64_t align = 64;
  std::string norm = "max";  // channel score: "max" or "l2" (see above)
  // Share of attention head groups removed, 0 <= heads < 1: a group is one
  // K/V head with the query heads that read it (GQA), so num_heads and
  // num_kv_heads shrink together and their ratio stays. Scored like the
  // channels: the product of the largest magnitudes of the group's q, k, v
  // rows and o columns. At least one group is kept.
  double heads = 0.0;
};

class StructuredPruner final : public Pruner {
 public:
  explicit StructuredPruner(StructuredOptions options);
  const char* name() const override { return "structured"; }
  PruneReport prune(WeightStore& store, ModelConfig& config) const override;
  // The intermediate size kept for `intermediate` channels under `options`.
  static int64_t kept_channels(int64_t intermediate, const StructuredOptions& options);
  // Importance of each intermediate channel ([inter], double) from gate, up
  // [inter, hidden] and down [hidden, inter], by `norm` ("max" or "l2").
  static at::Tensor channel_scores(const at::Tensor& gate, const at::Tensor& up,
                                   const at::Tensor& down, const std::string& norm);
  // The K/V head groups kept out of `kv_heads` under `options`.
  static int64_t kept_head_groups(int64_t kv_heads, const StructuredOptions& options);

 private:
  StructuredOptions options_;
};

}  // namespace udaci
