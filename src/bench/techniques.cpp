#include "bench/techniques.hpp"

#include "core/error.hpp"

namespace udaci {

std::vector<std::string> technique_names() {
  std::vector<std::string> out;
  for (const Technique& t : technique_catalogue()) out.push_back(t.name);
  return out;
}

std::vector<std::string> split_technique_list(const std::string& list) { return split_recipe_list(list); }

ResolvedTechnique resolve_technique(const std::string& name, const BenchConfig& base,
                                    const StrategyRegistry& registry) {
  ResolvedTechnique r;
  r.name = name;
  r.config = base;
  EngineConfig& e = r.config.engine;
  // The benchmark's base: KV cache, the fp32 reference weights, greedy.
  e.cache = "contiguous";
  e.quantizer = "none";
  e.pruner = "none";
  e.decoder = "greedy";
  e.parallel = "single-device";
  e.cache_options = e.quantizer_options = e.pruner_options = e.decoder_options = e.parallel_options =
      StrategyOptions{};

  Recipe recipe = parse_recipe(name);
  for (RecipePart& part : recipe.parts) {
    const Technique& t = *part.technique;
    r.category += (r.category.empty() ? "" : "+") + t.category;
    if (r.unavailable.empty()) {
      const std::string why = technique_unavailable(t, registry);
      if (!why.empty()) r.unavailable = part.text + ": " + why;
    }
    if (t.multi_process) r.config.world_size = 2;
    const auto draft = part.options.find("draft");
    if (t.slot == Slot::kDecoder && draft != part.options.end() && draft->second == "draft-model" &&
        part.options.count("draft_model") == 0) {
      if (base.draft_model.empty()) {
        if (r.unavailable.empty())
          r.unavailable = part.text + ": needs --draft-model PATH (a smaller model with the same vocabulary)";
      } else {
        part.options["draft_model"] = base.draft_model;
      }
    }
  }
  if (!r.unavailable.empty()) return r;
  apply_recipe(recipe, e);
  r.recipe = e.recipe();
  return r;
}

}  // namespace udaci
