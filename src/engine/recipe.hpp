// Recipes: the one configuration language of every front end (issue #21, M12).
// A recipe names the techniques an engine runs with, joined by '+', each with
// optional options in braces:
//
//   gguf-native+paged-prefix+spec-lookup
//   int4{group=64}+paged{block=32}+spec-self-int4{k_max=6}
//   kv-cache+spec-draft{draft_model="/models/draft v2.gguf"}
//
// Grammar (whitespace around names, keys and values is ignored):
//   recipe  := part ('+' part)*
//   part    := name ('{' [option (',' option)*] '}')?
//   name    := [a-z0-9:-]+           a technique of technique_catalogue()
//   option  := key '=' value
//   key     := [a-z0-9_]+
//   value   := bare | quoted
//   bare    := [A-Za-z0-9_.:/~-]+   (no ',', '}', '+', '=', quotes or spaces)
//   quoted  := '"' ( any byte but '"' and '\' | '\"' | '\\' )* '"'
//
// Each technique chooses one slot of the engine (its cache, quantizer,
// pruner, decoder, parallel plan, or the scheduler's batch-invariant mode)
// and may preset options there (prune-30 is the magnitude pruner with
// fraction=0.3); options in braces are the strategy's own options
// (docs/user_guide.md lists them) and override the preset. Two parts that
// choose the same slot are an error, as is an option the strategy does not
// know, a value it refuses, or an unknown name: every error names the part
// and lists what is allowed. Parsing and validation read no file.
//
// The canonical recipe of a configuration (canonical_recipe) names every
// slot in the order cache, quantizer, pruner, decoder, parallel plan
// (then batch-invariant when on), with the generic technique of each strategy
// and every option the strategy reads spelled out, defaults included, keys
// sorted, so that parsing it back gives the same configuration and the same
// string.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace udaci {

struct EngineConfig;

// What a technique configures.
enum class Slot { kCache, kQuantizer, kPruner, kDecoder, kParallel, kScheduler };

// "cache", "quantizer", "pruner", "decoder", "parallel plan", "scheduler".
const char* slot_name(Slot slot);

struct Technique {
  std::string name;         // as written in a recipe, e.g. "paged-prefix", "prune-30"
  std::string category;     // Baseline, Caching, Batching, Quantization, Pruning, Decoding, Parallelism
  std::string description;
  std::string issue;        // where it was delivered, e.g. "#6 (M5)"
  Slot slot = Slot::kCache;
  std::string strategy;     // the registry's name in that slot ("" for batch-invariant)
  std::map<std::string, std::string> preset;  // options the name implies
  // The name canonical recipes use for `strategy` (one per strategy); the
  // others are presets (prune-30) and aliases (baseline).
  bool canonical = false;
  // Runs over several processes (a `udaci launch` / torchrun job).
  bool multi_process = false;
};

// Every technique, in the order of the report this project grew from (its
// baseline, caching, quantisation, pruning, decoding, parallelism), then the
// generic and "no-" names.
const std::vector<Technique>& technique_catalogue();

// nullptr when `name` is not in the catalogue.
const Technique* find_technique(const std::string& name);

struct StrategyRegistry;
// Empty when `registry` (and so this build) has the technique's strategy,
// else why not.
std::string technique_unavailable(const Technique& technique, const StrategyRegistry& registry);

// The catalogue as a JSON array of {"name", "same_as", "category", "slot",
// "strategy", "preset", "description", "issue", "multi_process", "available"}
// (same_as: the first technique giving the same configuration, or itself) (the C
// ABI's udaci_techniques, `udaci techniques --json`, udaci.techniques()).
std::string technique_catalogue_json();

// The catalogue's names, in order, joined with ", " (for error messages).
std::string technique_list();

struct RecipePart {
  std::string text;                            // as written, e.g. "int4{group=64}"
  const Technique* technique = nullptr;
  std::map<std::string, std::string> options;  // preset, then the options in braces
};

struct Recipe {
  std::string text;
  std::vector<RecipePart> parts;
};

// Parses the syntax above: Error(kInvalidArgument) naming the part for an
// empty part, an unknown name, a malformed option list or two parts of the
// same slot. Option keys and values are checked by apply_recipe.
Recipe parse_recipe(const std::string& text);

// Sets the slots the parts choose in `config` (the others keep their value)
// and checks each part's options with its strategy's own option reader
// (Error(kInvalidArgument) naming the part, the option and the known ones).
void apply_recipe(const Recipe& recipe, EngineConfig& config);

// The canonical recipe of `config` (see above). A quantizer "auto" (the
// default: run the weights as the file stores them) is written `as-stored`;
// a built engine reports what it resolved to (HeadlineEngine::recipe()).
std::string canonical_recipe(const EngineConfig& config);

// "name{k=v,...}" with the value quoted when it has characters a bare value
// may not have; options sorted by key, empty values left out.
std::string format_recipe_part(const std::string& name, const std::map<std::string, std::string>& options);

// Splits a comma-separated list of recipes ("a+b{x=1,y=2}, c") at the commas
// outside braces and quotes, trimming spaces and dropping empty entries.
std::vector<std::string> split_recipe_list(const std::string& list);

}  // namespace udaci
