// The one load pipeline every model goes through — the engine's, the
// speculative draft's, `udaci info`'s and `udaci bench-forward`'s: split for
// this rank, prune, quantise, then build the LlamaModel with each projection's
// kernel from the quantizer, else the pruner, wrapped by the parallel plan.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>

#include "core/strategy_options.hpp"
#include "io/weight_store.hpp"
#include "model/llama_model.hpp"
#include "model/model_config.hpp"
#include "parallel/parallel_plan.hpp"
#include "prune/pruner.hpp"
#include "quant/quantizer.hpp"

namespace udaci {

struct ModelBuild {
  const Quantizer* quantizer = nullptr;  // required
  const Pruner* pruner = nullptr;        // nullptr: no pruning
  ParallelPlan* plan = nullptr;          // nullptr: the whole model on one device
  at::ScalarType dtype = at::kFloat;     // compute dtype
  at::Device device = at::kCPU;
  // Called with the weights as they will be built (after split, prune and
  // quantise), before anything is materialised: the engine's memory cap.
  std::function<void(const WeightStore&)> check_weights;
};

struct BuiltModel {
  std::unique_ptr<LlamaModel> model;
  PruneReport prune;
  QuantizeReport quantize;
};

// Runs the pipeline over `config` and `weights` (both rewritten in place).
BuiltModel build_model(ModelConfig& config, WeightStore& weights, const ModelBuild& build);

// A model with one quantizer by name and nothing else (no pruning, one
// device), which keeps the quantizer alive as long as the model.
std::shared_ptr<const LlamaModel> build_quantized_model(ModelConfig& config, WeightStore& weights,
                                                        const std::string& quantizer,
                                                        const StrategyOptions& quantizer_options,
                                                        at::ScalarType dtype, at::Device device);

}  // namespace udaci
