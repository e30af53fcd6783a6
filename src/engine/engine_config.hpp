// EngineConfig: everything an engine is built from, and the one builder every
// front end uses (issue #21, M12). The C ABI, the Python module, the CLI, the
// benchmark and `udaci serve` fill it through the same functions here: the
// recipe (engine/recipe.hpp), the config file (from_json / to_json), dtype and
// device names (parse_dtype, parse_device). So a setting is spelled one way,
// checked one way and refused with one message whatever the front end.
//
// The config file (JSON, schema "udaci-config/1", docs/config.md):
//   {
//     "schema": "udaci-config/1",
//     "model": "", "tokenizer": "",            paths; "": the default lookup / the model's own
//     "recipe": "kv-cache+as-stored+...",      engine/recipe.hpp
//     "options": {"cache": {...}, "quantizer": {...}, "pruner": {...},
//                 "decoder": {...}, "parallel": {...}},   override the recipe's options
//     "scheduler": {"max_sequences": 64, "max_cache_bytes": 0,
//                   "prefill_chunk": 256, "batch_invariant": false},
//     "prompt": {"use_chat_template": true, "system": "...", "instruction": "...{summary}...",
//                "completion": "Article: {summary}\nHeadline:", "max_summary_bytes": 16384},
//     "limits": {"max_prompt_tokens": 2048, "max_memory_bytes": 0},
//     "generation": {"repetition_stop": 8},    defaults of requests that leave them unset
//     "threads": 0, "device": "cpu", "dtype": "fp32"
//   }
// Every key is optional except "schema"; what is left out keeps its default.
// Unknown keys and values of the wrong type are refused with the key's JSON
// path; the whole configuration is validated (validate()) before from_json
// returns, so a bad file fails before any model file is opened.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <string>

#include "engine/scheduler.hpp"
#include "core/strategy_options.hpp"
#include "text/prompt_builder.hpp"

namespace udaci {

inline constexpr const char* kConfigSchema = "udaci-config/1";
// A config file or config_json string larger than this is refused (real ones
// are under 2 KiB; prompt texts are capped by max_summary_bytes' order).
inline constexpr uint64_t kMaxEngineConfigBytes = 1ull << 20;
// The longest repetition stop, in tokens (HeadlineOptions::repetition_stop).
inline constexpr int64_t kMaxRepetitionStop = 64;

// "fp32" (also "float32", "f32"), "bf16" ("bfloat16"), "fp16" ("float16",
// "f16"); Error(kInvalidArgument) listing them for anything else.
at::ScalarType parse_dtype(const std::string& name);
// "fp32", "bf16", "fp16" (the names parse_dtype reads back).
const char* dtype_name(at::ScalarType dtype);

// "cpu", "cuda" or "cuda:N" as an at::Device; Error(kInvalidArgument) for
// another string, Error(kUnsupported) for CUDA where LibTorch has none.
at::Device parse_device(const std::string& name);

// What an engine is built from. Each strategy is one name from the
// StrategyRegistry (engine/registry.hpp) plus its options; a recipe sets
// them by technique name (set_recipe).
struct EngineConfig {
  std::string model_path;       // empty: resolve_model_path() default lookup
  std::string tokenizer_path;   // empty: the model's own tokenizer
  at::ScalarType dtype = at::kFloat;
  // "cpu", or "cuda" / "cuda:N" where LibTorch was built with CUDA
  // (refused with kUnsupported elsewhere).
  std::string device = "cpu";
  std::string cache = "contiguous";  // CacheStrategy
  StrategyOptions cache_options;
  // Quantizer; "auto" (recipe `as-stored`): run the weights as the file
  // stores them — a GGUF's Q4_0/Q4_1/Q8_0/K-quant blocks natively ("gguf-native") on
  // the CPU of a single process, otherwise "none" (which still runs int8 /
  // int4 / nf4 / 2:4 artefacts as stored and dequantises the rest).
  std::string quantizer = "auto";
  StrategyOptions quantizer_options;
  std::string pruner = "none";       // Pruner
  StrategyOptions pruner_options;
  std::string decoder = "sampling";  // Decoder: "sampling" (per-request options), "greedy", ...
  StrategyOptions decoder_options;
  std::string parallel = "single-device";  // ParallelPlan
  StrategyOptions parallel_options;
  PromptOptions prompt;
  // Continuous batching: caps on live sequences and K/V memory, prefill
  // chunk, batch-invariant mode.
  SchedulerOptions scheduler;
  // Limits (docs/SECURITY.md). A prompt of more tokens is refused with
  // kInvalidArgument before any work (0: no cap beyond the model's context).
  int64_t max_prompt_tokens = 2048;
  // Weights + K/V cache, in bytes (0: no cap). The weights' resident size is
  // estimated before they are materialised: a model that does not fit is
  // refused with kOutOfMemory at load, and what is left bounds the cache
  // (the scheduler's max_cache_bytes), so requests wait or fail instead of
  // the process being killed.
  int64_t max_memory_bytes = 0;
  // > 0: the thread count of udaci's CPU kernels (its own pool; OpenBLAS
  // keeps its own threads). Process-wide: it applies to every engine in the
  // process, and is set once this engine has loaded. 0: leave it as it is
  // (the first engine then uses ATen's default, all cores).
  int threads = 0;
  // Defaults of the per-request options a request leaves to the engine
  // (HeadlineOptions' kEngineDefault; the C ABI's and Python's defaults,
  // a `udaci serve` request without the field): so a config file, e.g. the
  // one `udaci tune` writes, sets them for every front end.
  struct Generation {
    // Stop a headline once its last N tokens repeat a run it already
    // produced, cut before the repeat (HeadlineOptions::repetition_stop);
    // 0: off, at most kMaxRepetitionStop.
    int64_t repetition_stop = 8;
  } generation;

  // Parses `recipe` and sets the slots it names (the others keep their
  // value). Error(kInvalidArgument) naming the part; see engine/recipe.hpp.
  void set_recipe(const std::string& recipe);
  // The canonical recipe of the slots (engine/recipe.hpp).
  std::string recipe() const;

  // Everything that can be checked without reading a file: strategy names
  // and options, device, scheduler, limits, threads, prompt texts.
  // Error(kInvalidArgument) (kUnsupported for a device this build lacks).
  void validate() const;

  // The config file above over the defaults, validated. `source` names the
  // text in errors (a path, "config_json", "--config").
  static EngineConfig from_json(const std::string& text, const std::string& source = "config");
  // from_json of a file: Error(kNotFound) when it cannot be read,
  // kInvalidArgument when it is over kMaxEngineConfigBytes.
  static EngineConfig from_file(const std::string& path);
  // Every setting, the recipe canonical (options spelled out), indented JSON
  // that from_json reads back to an equal configuration.
  std::string to_json() const;
};

// A slot set by its registry name, as the CLI's --cache / --cache-opt, the C
// ABI's `cache` and `parallel` fields and Python's cache= / cache_options=
// give it: a non-empty name replaces the slot's strategy and drops its
// options; the options are then set over the slot's current ones.
struct StrategyOverride {
  std::string name;
  std::map<std::string, std::string> options;
};

// Overrides by slot: "cache", "quantizer", "pruner", "decoder", "parallel"
// (StrategyOverride) and "scheduler" (options only: max_sequences,
// max_cache_bytes, prefill_chunk, batch_invariant). Error(kInvalidArgument)
// for another slot, an unknown key or a bad value; the strategies' own option
// checks run in EngineConfig::validate().
void apply_overrides(EngineConfig& config, const std::map<std::string, StrategyOverride>& overrides);

}  // namespace udaci
