#include "bench/techniques.hpp"

#include <map>
#include <set>
#include <sstream>

#include "core/error.hpp"

namespace udaci {

namespace {

// "registered" check for one strategy kind.
template <typename Factories>
std::function<std::string(const StrategyRegistry&)> needs(Factories StrategyRegistry::*kind,
                                                          std::string name, std::string issue) {
  return [kind, name, issue](const StrategyRegistry& r) -> std::string {
    if ((r.*kind).has(name)) return "";
    return "strategy '" + name + "' is not in this build yet (issue " + issue + ")";
  };
}

std::function<std::string(const StrategyRegistry&)> always() {
  return [](const StrategyRegistry&) { return std::string(); };
}

Technique cache(const std::string& name, const std::string& strategy, const std::string& desc,
                const std::string& issue, const std::string& category = "Caching") {
  return {name, category, desc, issue, "cache",
          [strategy](BenchConfig& c) { c.engine.cache = strategy; },
          needs(&StrategyRegistry::caches, strategy, issue)};
}

Technique quant(const std::string& name, const std::string& strategy,
                std::map<std::string, std::string> options, const std::string& desc) {
  return {name, "Quantization", desc, "#7 (M6)", "quantizer",
          [strategy, options](BenchConfig& c) {
            c.engine.quantizer = strategy;
            c.engine.quantizer_options = StrategyOptions(options);
          },
          needs(&StrategyRegistry::quantizers, strategy, "#7 (M6)")};
}

Technique prune(const std::string& name, const std::string& strategy,
                std::map<std::string, std::string> options, const std::string& desc) {
  return {name, "Pruning", desc, "#7 (M6)", "pruner",
          [strategy, options](BenchConfig& c) {
            c.engine.pruner = strategy;
            c.engine.pruner_options = StrategyOptions(options);
          },
          needs(&StrategyRegistry::pruners, strategy, "#7 (M6)")};
}

Technique decoder(const std::string& name, const std::string& strategy,
                  std::map<std::string, std::string> options, const std::string& desc) {
  return {name, "Decoding", desc, "#8 (M7)", "decoder",
          [strategy, options](BenchConfig& c) {
            c.engine.decoder = strategy;
            c.engine.decoder_options = StrategyOptions(options);
          },
          needs(&StrategyRegistry::decoders, strategy, "#8 (M7)")};
}

Technique parallel(const std::string& name, const std::string& strategy, const std::string& desc) {
  return {name, "Parallelism", desc, "#9 (M8)", "parallel",
          [strategy](BenchConfig& c) {
            c.engine.parallel = strategy;
            c.world_size = 2;
          },
          [strategy](const StrategyRegistry& r) -> std::string {
            if (!r.parallel_plans.has(strategy))
              return "strategy '" + strategy + "' is not in this build yet (issue #9 (M8))";
            return "";
          }};
}

std::vector<Technique> make_catalogue() {
  std::vector<Technique> t;
  t.push_back({"baseline", "Baseline",
               "no KV cache: the whole prefix is recomputed at every step (the report's "
               "unoptimised baseline); fp32 on CPU, greedy",
               "#5 (M4)", "cache", [](BenchConfig& c) { c.engine.cache = "none"; }, always()});
  t.push_back(cache("kv-cache", "contiguous", "contiguous K/V cache, one buffer per sequence",
                    "#6 (M5)"));
  t.push_back(cache("paged", "paged", "paged K/V cache: fixed-size blocks from a pool", "#6 (M5)"));
  t.push_back(cache("paged-prefix", "paged-prefix",
                    "paged K/V cache sharing the common instruction prefix across requests",
                    "#6 (M5)"));
  t.push_back({"batch-invariant", "Batching",
               "scheduler's batch-invariant mode: every sequence its own forward pass, so a "
               "headline never depends on its batch (compose: kv-cache+batch-invariant)",
               "#6 (M5)", "scheduler",
               [](BenchConfig& c) { c.engine.scheduler.batch_invariant = true; }, always()});
  t.push_back(quant("int8", "int8", {}, "int8 weights, symmetric per output channel"));
  t.push_back(quant("int4", "int4", {}, "int4 weights, group-wise affine"));
  t.push_back(quant("nf4", "nf4", {}, "4-bit NormalFloat weights (QLoRA's code book)"));
  t.push_back(quant("gguf-native", "gguf-native", {},
                    "the GGUF file's Q4_0/Q4_1/Q8_0 blocks run as stored"));
  t.push_back(prune("prune-30", "magnitude", {{"fraction", "0.3"}},
                    "30% unstructured magnitude pruning (dense storage)"));
  t.push_back(prune("prune-2of4", "2:4", {}, "2:4 semi-structured pruning, packed"));
  t.push_back(prune("prune-struct-30", "structured", {{"fraction", "0.3"}},
                    "30% of FFN channels removed (smaller dense shapes)"));
  t.push_back(decoder("beam-4", "beam", {{"width", "4"}}, "beam search, 4 beams"));
  t.push_back(decoder("spec-lookup", "speculative", {{"draft", "prompt-lookup"}},
                      "speculative decoding, drafts from n-gram lookup in the prompt"));
  t.push_back(decoder("spec-self-int4", "speculative", {{"draft", "self-int4"}},
                      "speculative decoding, the same model quantised to int4 drafts"));
  Technique spec_draft = decoder("spec-draft", "speculative", {{"draft", "draft-model"}},
                                 "speculative decoding with a smaller model (--draft-model)");
  {
    auto base_apply = spec_draft.apply;
    spec_draft.apply = [base_apply](BenchConfig& c) {
      base_apply(c);
      c.engine.decoder_options.set("draft_model", c.draft_model);
    };
  }
  t.push_back(spec_draft);
  t.push_back(parallel("tp-2", "tensor-parallel", "tensor parallel over 2 processes (Gloo)"));
  t.push_back(parallel("pp-2", "pipeline-parallel", "pipeline parallel, 2 stages (Gloo)"));
  return t;
}

}  // namespace

const std::vector<Technique>& technique_catalogue() {
  static const std::vector<Technique> catalogue = make_catalogue();
  return catalogue;
}

std::vector<std::string> technique_names() {
  std::vector<std::string> out;
  for (const Technique& t : technique_catalogue()) out.push_back(t.name);
  return out;
}

std::vector<std::string> split_technique_list(const std::string& list) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(list);
  while (std::getline(in, cur, ',')) {
    const size_t b = cur.find_first_not_of(" \t");
    const size_t e = cur.find_last_not_of(" \t");
    if (b != std::string::npos) out.push_back(cur.substr(b, e - b + 1));
  }
  return out;
}

ResolvedTechnique resolve_technique(const std::string& name, const BenchConfig& base,
                                    const StrategyRegistry& registry) {
  ResolvedTechnique r;
  r.name = name;
  r.config = base;
  // Every technique but `baseline` runs with the KV cache and greedy decoding.
  r.config.engine.cache = "contiguous";
  r.config.engine.decoder = "greedy";

  std::vector<std::string> parts;
  {
    std::istringstream in(name);
    std::string p;
    while (std::getline(in, p, '+')) parts.push_back(p);
  }
  UDACI_CHECK(!parts.empty() && name.back() != '+', "technique '{}' is empty or ends with '+'", name);
  std::map<std::string, std::string> set_by;  // strategy kind -> part that set it
  std::set<std::string> seen;
  for (const std::string& part : parts) {
    const Technique* t = nullptr;
    for (const Technique& c : technique_catalogue())
      if (c.name == part) t = &c;
    if (t == nullptr) {
      std::string known;
      for (const std::string& n : technique_names()) known += (known.empty() ? "" : ", ") + n;
      fail(Status::kInvalidArgument, "unknown technique '{}' in '{}' (known: {}; compose with '+')",
           part, name, known);
    }
    UDACI_CHECK(seen.insert(part).second, "technique '{}' names '{}' twice", name, part);
    auto it = set_by.find(t->sets);
    UDACI_CHECK(it == set_by.end(), "'{}' and '{}' in '{}' both choose the {}", it->second, part,
                name, t->sets);
    set_by[t->sets] = part;
    r.category += (r.category.empty() ? "" : "+") + t->category;
    t->apply(r.config);
    if (r.unavailable.empty()) {
      const std::string why = t->unavailable(registry);
      if (!why.empty()) r.unavailable = part + ": " + why;
    }
    if (part == "spec-draft" && base.draft_model.empty() && r.unavailable.empty())
      r.unavailable = "spec-draft: needs --draft-model PATH (a smaller model with the same vocabulary)";
  }
  return r;
}

}  // namespace udaci
