#include "engine/model_builder.hpp"

#include "core/error.hpp"
#include "engine/registry.hpp"

namespace udaci {

BuiltModel build_model(ModelConfig& config, WeightStore& weights, const ModelBuild& build) {
  UDACI_CHECK_S(Status::kInternal, build.quantizer != nullptr, "build_model: no quantizer");
  BuiltModel out;
  if (build.plan) build.plan->shard(config, weights);
  if (build.pruner) out.prune = build.pruner->prune(weights, config);
  out.quantize = build.quantizer->quantize(weights);
  if (build.check_weights) build.check_weights(weights);
  ModelOptions options;
  options.dtype = build.dtype;
  options.device = build.device;
  const Quantizer* q = build.quantizer;
  const Pruner* pr = build.pruner;
  LinearFactory kernels = [q, pr](const LinearSpec& spec, const WeightStore& store, const ModelOptions& opt) {
    std::unique_ptr<LinearKernel> k = q->make_kernel(spec, store, opt);
    return k || pr == nullptr ? std::move(k) : pr->make_kernel(spec, store, opt);
  };
  if (build.plan) {
    options.linear_factory = build.plan->wrap(std::move(kernels));
    options.listener = build.plan->listener();
    options.stage = build.plan->stage();
  } else {
    options.linear_factory = std::move(kernels);
  }
  out.model = std::make_unique<LlamaModel>(config, weights, options);
  return out;
}

std::shared_ptr<const LlamaModel> build_quantized_model(ModelConfig& config, WeightStore& weights,
                                                        const std::string& quantizer,
                                                        const StrategyOptions& quantizer_options,
                                                        at::ScalarType dtype, at::Device device) {
  std::shared_ptr<const Quantizer> q = builtin_strategies().quantizers.create(quantizer, quantizer_options);
  ModelBuild build;
  build.quantizer = q.get();
  build.dtype = dtype;
  build.device = device;
  LlamaModel* model = build_model(config, weights, build).model.release();
  // The quantizer lives as long as the model its kernels came from.
  return std::shared_ptr<const LlamaModel>(model, [q](const LlamaModel* p) { delete p; });
}

}  // namespace udaci
