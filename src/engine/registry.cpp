#include "engine/registry.hpp"

#include "decode/beam_search.hpp"
#include "decode/speculative.hpp"

#include <mutex>

#include "core/error.hpp"
#include "model/llama_model.hpp"
#include "parallel/communicator.hpp"
#include "parallel/pipeline_parallel.hpp"
#include "parallel/tensor_parallel.hpp"

namespace udaci {

void fail_unknown_strategy(const std::string& kind, const std::string& name,
                           const std::vector<std::string>& known) {
  std::string list;
  for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
  fail(Status::kInvalidArgument, "unknown {} '{}' (known: {})", kind, name, list);
}

int64_t stored_bytes(const WeightStore& store) {
  int64_t n = 0;
  for (const auto& kv : store.bytes_by_type()) n += static_cast<int64_t>(kv.second);
  return n;
}

double PruneReport::sparsity() const {
  int64_t zeros = 0, total = 0;
  for (const Tensor& t : tensors) {
    zeros += t.zeros;
    total += t.elements;
  }
  return total == 0 ? 0.0 : static_cast<double>(zeros) / static_cast<double>(total);
}

namespace {

// Keeps the weights as stored; the dense kernels LlamaModel binds stay.
class NoQuantizer final : public Quantizer {
 public:
  const char* name() const override { return "none"; }
  QuantizeReport quantize(WeightStore& store) const override {
    const int64_t b = stored_bytes(store);
    return {b, b, 0};
  }
  // A store quantised offline (a `udaci convert` artefact) runs its stored
  // format: int8 / int4 / nf4 entries are recognised by their companion
  // tensors and bound to that quantizer's kernel (group read from the shapes).
  std::unique_ptr<LinearKernel> make_kernel(const LinearSpec& spec, const WeightStore& store,
                                            const ModelOptions& opt) const override {
    const std::string w = spec.weight + ".weight";
    std::map<std::string, std::string> o;
    std::string q;
    if (store.has(w) && store.entry(w).type == WeightType::kI8 && store.has(w + "_scale")) {
      q = "int8";
    } else if (store.has(w + "_packed") && store.has(w + "_scales")) {
      q = store.has(w + "_mins") ? "int4" : "nf4";
      const TensorEntry& sc = store.entry(w + "_scales");
      UDACI_CHECK_S(Status::kBadModelFile, sc.shape.size() == 2 && sc.shape[1] > 0,
                    "quantised tensor '{}_scales' has a bad shape", w);
      o["group"] = std::to_string(spec.in_features / sc.shape[1]);
    } else {
      return nullptr;
    }
    o["head"] = o["embed"] = q;
    return builtin_strategies().quantizers.create(q, StrategyOptions(o))->make_kernel(spec, store, opt);
  }
};

class NoPruner final : public Pruner {
 public:
  const char* name() const override { return "none"; }
  PruneReport prune(WeightStore&, ModelConfig&) const override { return {}; }
  // A store packed 2:4 offline (a `udaci convert` artefact) runs the packed kernel.
  std::unique_ptr<LinearKernel> make_kernel(const LinearSpec& spec, const WeightStore& store,
                                            const ModelOptions& opt) const override {
    if (!store.has(spec.weight + ".weight_sparse_values")) return nullptr;
    return builtin_strategies().pruners.create("2:4", StrategyOptions{})->make_kernel(spec, store, opt);
  }
};

// Argmax at every step whatever the request's sampling options say.
class GreedyDecoder final : public Decoder {
 public:
  const char* name() const override { return "greedy"; }
  std::vector<GenerationResult> generate(const LlamaModel& model, CacheStrategy& cache,
                                         const std::vector<std::vector<int64_t>>& prompts,
                                         const GenerationOptions& options,
                                         const TokenCallback& on_token) const override {
    GenerationOptions greedy = options;
    greedy.sampling = SamplingOptions{};
    return udaci::generate(model, cache, prompts, greedy, on_token);
  }
  bool one_token_per_step(GenerationOptions& options) const override {
    options.sampling = SamplingOptions{};
    return true;
  }
};

// The request's SamplingOptions decide: temperature 0 is greedy, otherwise
// seeded sampling with top-k / top-p / min-p / repetition penalty.
class SamplingDecoder final : public Decoder {
 public:
  const char* name() const override { return "sampling"; }
  std::vector<GenerationResult> generate(const LlamaModel& model, CacheStrategy& cache,
                                         const std::vector<std::vector<int64_t>>& prompts,
                                         const GenerationOptions& options,
                                         const TokenCallback& on_token) const override {
    return udaci::generate(model, cache, prompts, options, on_token);
  }
  bool one_token_per_step(GenerationOptions&) const override { return true; }
};

class SingleDevicePlan final : public ParallelPlan {
 public:
  const char* name() const override { return "single-device"; }
  int world_size() const override { return 1; }
  int rank() const override { return 0; }
  void shard(ModelConfig&, WeightStore&) override {}
};

}  // namespace

void register_builtin_strategies(StrategyRegistry& r) {
  r.caches.add(
      "none",
      [](const StrategyOptions& o, const CacheShape& s) {
        o.expect_only("cache 'none'", {});
        return make_no_cache(s);
      },
      [](const StrategyOptions& o) { o.expect_only("cache 'none'", {}); });
  r.caches.add(
      "contiguous",
      [](const StrategyOptions& o, const CacheShape& s) {
        o.expect_only("cache 'contiguous'", {});
        return make_contiguous_cache(s);
      },
      [](const StrategyOptions& o) { o.expect_only("cache 'contiguous'", {}); });
  r.quantizers.add("none", [](const StrategyOptions& o) -> std::unique_ptr<Quantizer> {
    o.expect_only("quantizer 'none'", {});
    return std::make_unique<NoQuantizer>();
  });
  r.pruners.add("none", [](const StrategyOptions& o) -> std::unique_ptr<Pruner> {
    o.expect_only("pruner 'none'", {});
    return std::make_unique<NoPruner>();
  });
  register_caches(r);
  register_quantizers(r);
  register_pruners(r);
  r.decoders.add("greedy", [](const StrategyOptions& o) -> std::unique_ptr<Decoder> {
    o.expect_only("decoder 'greedy'", {});
    return std::make_unique<GreedyDecoder>();
  });
  r.decoders.add("sampling", [](const StrategyOptions& o) -> std::unique_ptr<Decoder> {
    o.expect_only("decoder 'sampling'", {});
    return std::make_unique<SamplingDecoder>();
  });
  r.decoders.add(
      "beam",
      [](const StrategyOptions& o) -> std::unique_ptr<Decoder> {
        return std::make_unique<BeamSearchDecoder>(BeamOptions::from(o));
      },
      [](const StrategyOptions& o) { BeamOptions::from(o); });
  r.decoders.add(
      "speculative",
      [](const StrategyOptions& o) -> std::unique_ptr<Decoder> {
        return std::make_unique<SpeculativeDecoder>(SpeculativeOptions::from(o));
      },
      [](const StrategyOptions& o) { SpeculativeOptions::from(o); });
  r.parallel_plans.add("single-device", [](const StrategyOptions& o) -> std::unique_ptr<ParallelPlan> {
    o.expect_only("parallel plan 'single-device'", {});
    return std::make_unique<SingleDevicePlan>();
  });
  if (distributed_available()) {
    // Building a plan joins the job's rendezvous: options are checked apart.
    r.parallel_plans.add(
        "tensor-parallel",
        [](const StrategyOptions& o) -> std::unique_ptr<ParallelPlan> {
          return make_tensor_parallel_plan(TensorParallelOptions::from(o));
        },
        [](const StrategyOptions& o) { TensorParallelOptions::from(o); });
    r.parallel_plans.add(
        "pipeline-parallel",
        [](const StrategyOptions& o) -> std::unique_ptr<ParallelPlan> {
          return make_pipeline_parallel_plan(PipelineParallelOptions::from(o));
        },
        [](const StrategyOptions& o) { PipelineParallelOptions::from(o); });
  }
}

const StrategyRegistry& builtin_strategies() {
  static StrategyRegistry registry;
  static std::once_flag once;
  std::call_once(once, [] { register_builtin_strategies(registry); });
  return registry;
}

}  // namespace udaci
