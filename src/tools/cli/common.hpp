// What several `udaci` commands share: the engine flags and how they become
// an EngineConfig, the generation options, strategy key=value lists, the model
// and news-sample lookups.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/strategy_options.hpp"
#include "decode/sampler.hpp"
#include "engine/engine_config.hpp"
#include "tools/cli/command.hpp"

namespace udaci::cli {

// The machine's cores (at least 1).
int default_threads();

// This executable's path (/proc/self/exe; argv0 where that cannot be read):
// what `bench` and `tune` start their workers as.
std::string self_exe(const char* argv0);

// "key=value" items of a repeatable --*-opt option.
StrategyOptions parse_strategy_options(const std::vector<std::string>& items, const char* flag);

// The engine flags of every command that builds an engine (headline,
// perplexity, generate, bench): --config FILE and --recipe R set everything,
// then each flag that is given overrides what they set (issue #21). All the
// parsing is the engine's own (EngineConfig, engine/recipe.hpp), so the CLI
// refuses exactly what the C ABI and Python refuse, with the same words.
struct EngineFlags {
  std::string config, recipe, model, tokenizer, dtype, device;
  std::string cache, quantizer, pruner, decoder, parallel;
  std::vector<std::string> cache_opts, quantizer_opts, pruner_opts, decoder_opts, parallel_opts, scheduler_opts;
  bool completion = false;
  int64_t max_prompt_tokens = 0;
  double max_memory_mb = 0;
  std::map<std::string, CLI::Option*> options;
  bool given(const std::string& flag) const {
    auto it = options.find(flag);
    return it != options.end() && it->second->count() > 0;
  }
};

// strategy_flags: also --recipe, the per-slot flags and the limits (bench
// takes its recipes from --techniques instead).
void add_engine_flags(CLI::App& cmd, EngineFlags& f, bool strategy_flags);

// The configuration the flags describe, with the global --threads over the
// file's "threads"; validated, so a bad recipe, option or config file fails
// here, before any model file is opened.
EngineConfig engine_config_from(const EngineFlags& f, const GlobalOptions& global);

// Generation options shared by the commands that write text.
struct RunArgs {
  int64_t max_new_tokens = 32;
  SamplingOptions sampling;
};

void add_run_options(CLI::App& cmd, RunArgs& a);

// The articles `udaci bench` and `udaci perplexity` read without --input:
// $UDACI_NEWS, else the News Category Dataset sample of ../shared/assets when
// the tree sits beside it (README), else the examples' small sample.
std::string default_bench_input();

}  // namespace udaci::cli
