// The extern "C" functions of include/udaci/udaci.h. Each body runs inside
// c_api::guard (guard.hpp); the handles wrap the C++ engine and its results.
// What each function promises (ownership, thread safety, errors) is written
// once, in udaci.h.
// The library defines the ABI 0 by-value default-params symbols itself (the
// header's inline versions are for programs).
#define UDACI_BUILDING_LIBRARY 1
#include "udaci/udaci.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "c_api/guard.hpp"
#include "core/error.hpp"
#include "engine/headline_engine.hpp"
#include "engine/recipe.hpp"

struct udaci_engine {
  std::unique_ptr<const udaci::HeadlineEngine> impl;
  // Calls inside the engine now, so that udaci_engine_destroy can cancel and
  // wait for them rather than pull the engine from under them.
  mutable std::mutex mu;
  mutable std::condition_variable idle;
  mutable int in_flight = 0;
  bool closing = false;
};

struct udaci_result {
  udaci::HeadlineResult value;
};

namespace {

using udaci::c_api::ErrorSlot;
using udaci::c_api::guard;
using udaci::c_api::require;

// The smallest struct_size accepted: the end of the last field of the first
// published layout (ABI 0). Appending fields never changes these, so callers
// built against the ABI 0 header keep working.
constexpr size_t kEngineParamsMinSize =
    offsetof(udaci_engine_params, instruction) + sizeof(const char*);
constexpr size_t kGenerateParamsMinSize =
    offsetof(udaci_generate_params, stop_at_newline) + sizeof(int32_t);
constexpr size_t kTimingsMinSize = offsetof(udaci_timings, latency_ms) + sizeof(double);

// udaci_engine_params as the ABI 0 header laid it out (before recipe and
// config_json): what udaci_engine_default_params() returned by value.
struct udaci_engine_params_abi0 {
  uint32_t struct_size;
  const char* model_path;
  const char* tokenizer_path;
  udaci_dtype dtype;
  const char* cache;
  int32_t n_threads;
  int32_t use_chat_template;
  const char* system_prompt;
  const char* instruction;
  int32_t max_sequences;
  int32_t batch_invariant;
  const char* parallel;
  int32_t max_prompt_tokens;
  int64_t max_memory_bytes;
};
static_assert(sizeof(udaci_engine_params_abi0) == offsetof(udaci_engine_params, recipe),
              "udaci_engine_params must start with the ABI 0 layout");

// Writes the defaults into the caller's `size` bytes (the layout of the
// caller's header): the fields both know, then zeros.
template <typename T>
void init_params(T* params, size_t size, const T& defaults, size_t min_size, const char* name) {
  require(params, name);
  UDACI_CHECK(size >= min_size && size <= (size_t{1} << 16),
              "size is {} but must be at least {} (pass sizeof the struct)", size, min_size);
  std::memset(static_cast<void*>(params), 0, size);
  std::memcpy(static_cast<void*>(params), &defaults, std::min(size, sizeof(T)));
  params->struct_size = static_cast<uint32_t>(size);
}

udaci_engine_params engine_defaults() {
  udaci_engine_params p{};
  p.struct_size = sizeof(udaci_engine_params);
  p.model_path = nullptr;
  p.tokenizer_path = nullptr;
  p.dtype = UDACI_DTYPE_F32;
  p.cache = nullptr;
  p.n_threads = 0;
  p.use_chat_template = 1;
  p.system_prompt = nullptr;
  p.instruction = nullptr;
  p.max_sequences = 0;
  p.batch_invariant = 0;
  p.parallel = nullptr;
  p.max_prompt_tokens = static_cast<int32_t>(udaci::EngineConfig{}.max_prompt_tokens);
  p.max_memory_bytes = 0;
  p.recipe = nullptr;
  p.config_json = nullptr;
  return p;
}

udaci_generate_params generate_defaults() {
  // The C defaults are HeadlineOptions' defaults, so C and C++ callers that
  // change nothing get the same headline.
  const udaci::HeadlineOptions o;
  udaci_generate_params p{};
  p.struct_size = sizeof(udaci_generate_params);
  p.max_new_tokens = static_cast<int32_t>(o.max_new_tokens);
  p.temperature = o.sampling.temperature;
  p.top_k = static_cast<int32_t>(o.sampling.top_k);
  p.top_p = o.sampling.top_p;
  p.min_p = o.sampling.min_p;
  p.repetition_penalty = o.sampling.repetition_penalty;
  p.seed = o.sampling.seed;
  p.stop_at_newline = o.stop_at_newline ? 1 : 0;
  p.repetition_stop = static_cast<int32_t>(o.repetition_stop);
  return p;
}

// The integer a C caller passed for an enum. C allows any int there; loading
// an out-of-range value as the C++ enum type is undefined behaviour (UBSan's
// -fsanitize=enum), so read its bytes.
template <typename E>
int enum_bits(const E& e) {
  static_assert(sizeof(E) == sizeof(int), "udaci's C enums are int-sized");
  int v = 0;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

at::ScalarType to_scalar_type(int d) {
  switch (d) {
    case UDACI_DTYPE_F32: return at::kFloat;
    case UDACI_DTYPE_BF16: return at::kBFloat16;
    case UDACI_DTYPE_F16: return at::kHalf;
  }
  udaci::fail(udaci::Status::kInvalidArgument,
              "params->dtype is {}, not a udaci_dtype (UDACI_DTYPE_F32 = 0, UDACI_DTYPE_BF16 = 1, "
              "UDACI_DTYPE_F16 = 2)",
              d);
}

// The one builder (engine/engine_config.hpp): config_json is the base, the
// recipe sets the slots it names, then each field away from its default
// overrides (udaci.h).
udaci::EngineConfig to_engine_config(const udaci_engine_params& p) {
  const udaci_engine_params d = engine_defaults();
  udaci::EngineConfig c = p.config_json != nullptr
                              ? udaci::EngineConfig::from_json(p.config_json, "params->config_json")
                              : udaci::EngineConfig{};
  if (p.recipe != nullptr) {
    try {
      c.set_recipe(p.recipe);
    } catch (const udaci::Error& e) {
      throw udaci::Error(e.status(), std::string("params->recipe: ") + e.what());
    }
  }
  if (p.model_path != nullptr && *p.model_path != '\0') c.model_path = p.model_path;
  if (p.tokenizer_path != nullptr && *p.tokenizer_path != '\0') c.tokenizer_path = p.tokenizer_path;
  const at::ScalarType dtype = to_scalar_type(enum_bits(p.dtype));
  if (enum_bits(p.dtype) != enum_bits(d.dtype)) c.dtype = dtype;
  if (p.cache != nullptr) {
    c.cache = p.cache;
    c.cache_options = udaci::StrategyOptions{};
  }
  UDACI_CHECK(p.n_threads >= 0, "params->n_threads must be >= 0 (0 = the config's, else leave as it is), got {}",
              p.n_threads);
  if (p.n_threads > 0) c.threads = p.n_threads;
  if (p.use_chat_template == 0) c.prompt.use_chat_template = false;
  if (p.system_prompt != nullptr) c.prompt.system = p.system_prompt;
  if (p.instruction != nullptr) c.prompt.instruction = p.instruction;
  UDACI_CHECK(p.max_sequences >= 0, "params->max_sequences must be >= 0 (0 = default), got {}",
              p.max_sequences);
  if (p.max_sequences > 0) c.scheduler.max_sequences = p.max_sequences;
  if (p.batch_invariant != 0) c.scheduler.batch_invariant = true;
  if (p.parallel != nullptr && *p.parallel != '\0') {
    c.parallel = p.parallel;
    c.parallel_options = udaci::StrategyOptions{};
  }
  UDACI_CHECK(p.max_prompt_tokens >= 0, "params->max_prompt_tokens must be >= 0 (0 = no cap), got {}",
              p.max_prompt_tokens);
  UDACI_CHECK(p.max_memory_bytes >= 0, "params->max_memory_bytes must be >= 0 (0 = no cap), got {}",
              p.max_memory_bytes);
  if (p.max_prompt_tokens != d.max_prompt_tokens) c.max_prompt_tokens = p.max_prompt_tokens;
  if (p.max_memory_bytes != d.max_memory_bytes) c.max_memory_bytes = p.max_memory_bytes;
  c.validate();
  return c;
}

udaci::HeadlineOptions to_headline_options(const udaci_generate_params& p) {
  UDACI_CHECK(p.max_new_tokens >= 1, "params->max_new_tokens must be >= 1, got {}", p.max_new_tokens);
  udaci::HeadlineOptions o;
  o.max_new_tokens = p.max_new_tokens;
  o.sampling.temperature = p.temperature;
  o.sampling.top_k = p.top_k;
  o.sampling.top_p = p.top_p;
  o.sampling.min_p = p.min_p;
  o.sampling.repetition_penalty = p.repetition_penalty;
  o.sampling.seed = p.seed;
  o.stop_at_newline = p.stop_at_newline != 0;
  UDACI_CHECK(p.repetition_stop == udaci::HeadlineOptions::kEngineDefault ||
                  (p.repetition_stop >= 0 && p.repetition_stop <= udaci::HeadlineOptions::kMaxRepetitionStop),
              "params->repetition_stop must be 0 (off), 1 to {} or -1 (the engine's), got {}",
              udaci::HeadlineOptions::kMaxRepetitionStop, p.repetition_stop);
  o.repetition_stop = p.repetition_stop;
  try {
    o.sampling.validate();
  } catch (const udaci::Error& e) {
    throw udaci::Error(e.status(), std::string("params->") + e.what());
  }
  return o;
}

// Engines generating on this thread (inside a udaci_generate* call). A
// streaming callback that calls generation on the same engine would wait on
// the engine's own lock forever; it is refused instead.
thread_local std::vector<const udaci_engine*> t_generating;

class GeneratingScope {
 public:
  explicit GeneratingScope(const udaci_engine* e) {
    for (const udaci_engine* g : t_generating)
      UDACI_CHECK(g != e,
                  "called from inside an on_text callback of the same engine (generation on an "
                  "engine is serialised, so this would never return)");
    t_generating.push_back(e);
  }
  ~GeneratingScope() { t_generating.pop_back(); }
  GeneratingScope(const GeneratingScope&) = delete;
  GeneratingScope& operator=(const GeneratingScope&) = delete;
};

// Marks a call as inside the engine for its lifetime; refused with
// kCancelled once udaci_engine_destroy has begun.
class EngineCall {
 public:
  explicit EngineCall(const udaci_engine* e) : e_(e) {
    std::lock_guard<std::mutex> lock(e_->mu);
    UDACI_CHECK_S(udaci::Status::kCancelled, !e_->closing, "the engine is being destroyed");
    ++e_->in_flight;
  }
  ~EngineCall() {
    std::lock_guard<std::mutex> lock(e_->mu);
    if (--e_->in_flight == 0) e_->idle.notify_all();
  }
  EngineCall(const EngineCall&) = delete;
  EngineCall& operator=(const EngineCall&) = delete;

 private:
  const udaci_engine* e_;
};

// The body shared by the three generation entry points. out_results is
// cleared first so that every failure leaves NULLs behind.
void generate_into(udaci_engine* engine, const char* const* summaries, size_t n,
                   const udaci_generate_params* params, udaci_text_callback on_text,
                   void* user_data, udaci_result** out_results) {
  if (n > 0) {
    require(out_results, "out_results");
    for (size_t i = 0; i < n; ++i) out_results[i] = nullptr;
  }
  require(engine, "engine");
  const udaci_generate_params p =
      udaci::c_api::read_params(params, generate_defaults(), kGenerateParamsMinSize, "params");
  udaci::HeadlineOptions options = to_headline_options(p);
  if (n == 0) return;
  EngineCall call(engine);
  require(summaries, "summaries");
  std::vector<std::string> texts;
  texts.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (summaries[i] == nullptr) udaci::fail(udaci::Status::kInvalidArgument, "summaries[{}] is NULL", i);
    texts.emplace_back(summaries[i]);
  }
  if (on_text != nullptr) {
    options.on_text = [on_text, user_data](size_t index, const std::string& piece) {
      return on_text(user_data, index, piece.c_str(), piece.size()) != 0;
    };
  }
  std::vector<udaci::HeadlineResult> results;
  {
    GeneratingScope scope(engine);
    results = engine->impl->generate(texts, options);
  }
  UDACI_CHECK_S(udaci::Status::kInternal, results.size() == n,
                "the engine returned {} results for {} summaries", results.size(), n);
  std::vector<std::unique_ptr<udaci_result>> owned;
  owned.reserve(n);
  for (auto& r : results) owned.push_back(std::unique_ptr<udaci_result>(new udaci_result{std::move(r)}));
  // Nothing below throws: hand all results over at once.
  for (size_t i = 0; i < n; ++i) out_results[i] = owned[i].release();
}

}  // namespace

extern "C" {

const char* udaci_last_error(void) {
  const char* text = "";
  guard(__func__, [&] { text = udaci::c_api::last_error_text(); }, ErrorSlot::kKeep);
  return text;
}

const char* udaci_status_name(udaci_status status) {
  const char* name = "unknown_status";
  guard(__func__, [&] {
    const int s = enum_bits(status);
    if (s >= UDACI_OK && s <= UDACI_ERR_INTERNAL) name = udaci::status_name(static_cast<udaci::Status>(s));
  }, ErrorSlot::kKeep);
  return name;
}

const char* udaci_version(void) {
  const char* v = "";
  guard(__func__, [&] { v = UDACI_VERSION_STRING; }, ErrorSlot::kKeep);
  return v;
}

int udaci_abi_version(void) {
  int v = -1;
  guard(__func__, [&] { v = UDACI_ABI_VERSION; }, ErrorSlot::kKeep);
  return v;
}

udaci_status udaci_engine_params_init(udaci_engine_params* params, size_t size) {
  return guard(
      __func__, [&] { init_params(params, size, engine_defaults(), kEngineParamsMinSize, "params"); },
      ErrorSlot::kKeep);
}

// For programs built against the ABI 0 header, whose inline-free
// udaci_engine_default_params() returned the struct by value: exactly that
// layout (up to max_memory_bytes), never the library's larger one.
UDACI_API udaci_engine_params_abi0 udaci_engine_default_params(void) {
  udaci_engine_params_abi0 p{};
  guard(__func__, [&] {
    const udaci_engine_params d = engine_defaults();
    std::memcpy(static_cast<void*>(&p), &d, sizeof p);
    p.struct_size = sizeof p;
  }, ErrorSlot::kKeep);
  return p;
}

udaci_status udaci_engine_create(const udaci_engine_params* params, udaci_engine** out_engine) {
  return guard(__func__, [&] {
    require(out_engine, "out_engine");
    *out_engine = nullptr;
    const udaci_engine_params p =
        udaci::c_api::read_params(params, engine_defaults(), kEngineParamsMinSize, "params");
    const udaci::EngineConfig config = to_engine_config(p);
    auto engine = std::make_unique<udaci_engine>();
    engine->impl = std::make_unique<const udaci::HeadlineEngine>(config);
    *out_engine = engine.release();
  });
}

udaci_status udaci_engine_create_from_file(const char* path, udaci_engine** out_engine) {
  return guard(__func__, [&] {
    require(out_engine, "out_engine");
    *out_engine = nullptr;
    require(path, "path");
    auto engine = std::make_unique<udaci_engine>();
    engine->impl = std::make_unique<const udaci::HeadlineEngine>(udaci::EngineConfig::from_file(path));
    *out_engine = engine.release();
  });
}

udaci_status udaci_engine_get_config(const udaci_engine* engine, char* buf, size_t* inout_len) {
  return guard(__func__, [&] {
    require(engine, "engine");
    udaci::c_api::copy_text(engine->impl->config().to_json(), buf, inout_len, "the configuration");
  });
}

udaci_status udaci_techniques(char* buf, size_t* inout_len) {
  return guard(__func__, [&] {
    udaci::c_api::copy_text(udaci::technique_catalogue_json(), buf, inout_len, "the technique catalogue");
  });
}

void udaci_engine_destroy(udaci_engine* engine) {
  guard(__func__, [&] {
    if (engine == nullptr) return;
    for (const udaci_engine* g : t_generating) {
      // Waiting for the calls to end would wait for this very callback.
      UDACI_CHECK(g != engine,
                  "called from inside an on_text callback of the same engine; the engine was "
                  "not destroyed");
    }
    {
      std::lock_guard<std::mutex> lock(engine->mu);
      engine->closing = true;
    }
    // Calls in flight end soon, their summaries cancelled; then none is left.
    engine->impl->cancel_all();
    {
      std::unique_lock<std::mutex> lock(engine->mu);
      engine->idle.wait(lock, [&] { return engine->in_flight == 0; });
    }
    delete engine;
  }, ErrorSlot::kKeep);
}

udaci_status udaci_engine_get_model_path(const udaci_engine* engine, char* buf, size_t* inout_len) {
  return guard(__func__, [&] {
    require(engine, "engine");
    udaci::c_api::copy_text(engine->impl->model_path(), buf, inout_len, "the model path");
  });
}

int32_t udaci_engine_rank(const udaci_engine* engine) {
  int32_t rank = 0;
  guard(__func__, [&] {
    if (engine != nullptr) rank = engine->impl->rank();
  }, ErrorSlot::kKeep);
  return rank;
}

udaci_status udaci_engine_serve(udaci_engine* engine) {
  return guard(__func__, [&] {
    require(engine, "engine");
    engine->impl->serve();
  });
}

udaci_status udaci_generate_params_init(udaci_generate_params* params, size_t size) {
  return guard(
      __func__, [&] { init_params(params, size, generate_defaults(), kGenerateParamsMinSize, "params"); },
      ErrorSlot::kKeep);
}

// The ABI 0 by-value symbol (the layout has not grown since).
UDACI_API udaci_generate_params udaci_generate_default_params(void) {
  udaci_generate_params p{};
  guard(__func__, [&] { p = generate_defaults(); }, ErrorSlot::kKeep);
  return p;
}

udaci_status udaci_generate(udaci_engine* engine, const char* summary,
                            const udaci_generate_params* params, udaci_result** out_result) {
  return guard(__func__, [&] {
    require(out_result, "out_result");
    *out_result = nullptr;
    require(summary, "summary");
    generate_into(engine, &summary, 1, params, nullptr, nullptr, out_result);
  });
}

udaci_status udaci_generate_batch(udaci_engine* engine, const char* const* summaries,
                                  size_t n_summaries, const udaci_generate_params* params,
                                  udaci_result** out_results) {
  return guard(__func__, [&] {
    generate_into(engine, summaries, n_summaries, params, nullptr, nullptr, out_results);
  });
}

udaci_status udaci_generate_stream(udaci_engine* engine, const char* const* summaries,
                                   size_t n_summaries, const udaci_generate_params* params,
                                   udaci_text_callback on_text, void* user_data,
                                   udaci_result** out_results) {
  return guard(__func__, [&] {
    if (n_summaries > 0 && out_results != nullptr)
      for (size_t i = 0; i < n_summaries; ++i) out_results[i] = nullptr;
    require(reinterpret_cast<const void*>(on_text), "on_text");
    generate_into(engine, summaries, n_summaries, params, on_text, user_data, out_results);
  });
}

void udaci_result_destroy(udaci_result* result) {
  guard(__func__, [&] { delete result; }, ErrorSlot::kKeep);
}

udaci_status udaci_result_get_headline(const udaci_result* result, char* buf, size_t* inout_len) {
  return guard(__func__, [&] {
    require(result, "result");
    udaci::c_api::copy_text(result->value.headline, buf, inout_len, "the headline");
  });
}

udaci_status udaci_result_get_raw_text(const udaci_result* result, char* buf, size_t* inout_len) {
  return guard(__func__, [&] {
    require(result, "result");
    udaci::c_api::copy_text(result->value.raw_text, buf, inout_len, "the raw text");
  });
}

udaci_status udaci_result_get_token_ids(const udaci_result* result, int32_t* buf, size_t* inout_len) {
  return guard(__func__, [&] {
    require(result, "result");
    udaci::c_api::copy_ids(result->value.new_ids, buf, inout_len, "the generated tokens");
  });
}

udaci_status udaci_result_get_prompt_tokens(const udaci_result* result, int32_t* buf,
                                            size_t* inout_len) {
  return guard(__func__, [&] {
    require(result, "result");
    udaci::c_api::copy_ids(result->value.prompt_ids, buf, inout_len, "the prompt tokens");
  });
}

udaci_status udaci_result_get_finish_reason(const udaci_result* result,
                                            udaci_finish_reason* out_reason) {
  return guard(__func__, [&] {
    require(result, "result");
    require(out_reason, "out_reason");
    switch (result->value.finish) {
      case udaci::FinishReason::kLength: *out_reason = UDACI_FINISH_LENGTH; return;
      case udaci::FinishReason::kEos: *out_reason = UDACI_FINISH_EOS; return;
      case udaci::FinishReason::kStopped: *out_reason = UDACI_FINISH_STOPPED; return;
      case udaci::FinishReason::kCancelled: *out_reason = UDACI_FINISH_CANCELLED; return;
      case udaci::FinishReason::kRepetition: *out_reason = UDACI_FINISH_REPETITION; return;
    }
    udaci::fail(udaci::Status::kInternal, "finish reason {} has no udaci_finish_reason",
                static_cast<int>(result->value.finish));
  });
}

const char* udaci_finish_reason_name(udaci_finish_reason reason) {
  const char* name = "unknown";
  guard(__func__, [&] {
    switch (enum_bits(reason)) {
      case UDACI_FINISH_LENGTH: name = "length"; return;
      case UDACI_FINISH_EOS: name = "eos"; return;
      case UDACI_FINISH_STOPPED: name = "stop"; return;
      case UDACI_FINISH_CANCELLED: name = "cancelled"; return;
      case UDACI_FINISH_REPETITION: name = "repetition"; return;
    }
  }, ErrorSlot::kKeep);
  return name;
}

udaci_status udaci_result_get_timings(const udaci_result* result, udaci_timings* out) {
  return guard(__func__, [&] {
    require(result, "result");
    require(out, "out");
    const uint32_t size = out->struct_size;
    UDACI_CHECK(size >= kTimingsMinSize,
                "out->struct_size is {} but must be at least {} (set it to sizeof(udaci_timings))",
                size, kTimingsMinSize);
    udaci_timings t{};
    t.prefill_ms = result->value.prefill_ms;
    t.decode_ms = result->value.decode_ms;
    t.latency_ms = result->value.latency_ms;
    t.queue_ms = result->value.queue_ms;
    t.drafted_tokens = result->value.drafted;
    t.accepted_tokens = result->value.accepted;
    std::memcpy(static_cast<void*>(out), &t, std::min<size_t>(size, sizeof t));
    out->struct_size = size;
  });
}

udaci_status udaci_tokenize(const udaci_engine* engine, const char* text, size_t text_len,
                            int32_t add_special, int32_t parse_special, int32_t* ids,
                            size_t* inout_len) {
  return guard(__func__, [&] {
    require(engine, "engine");
    EngineCall call(engine);
    UDACI_CHECK(text != nullptr || text_len == 0, "text is NULL but text_len is {}", text_len);
    const std::vector<int32_t> out = engine->impl->tokenizer().encode(
        text_len == 0 ? std::string_view() : std::string_view(text, text_len), add_special != 0,
        parse_special != 0);
    udaci::c_api::copy_ids(out, ids, inout_len, "the token ids");
  });
}

udaci_status udaci_detokenize(const udaci_engine* engine, const int32_t* ids, size_t n_ids,
                              int32_t skip_special, char* buf, size_t* inout_len) {
  return guard(__func__, [&] {
    require(engine, "engine");
    EngineCall call(engine);
    UDACI_CHECK(ids != nullptr || n_ids == 0, "ids is NULL but n_ids is {}", n_ids);
    const std::vector<int32_t> v(ids, ids + n_ids);
    udaci::c_api::copy_text(engine->impl->tokenizer().decode(v, skip_special != 0), buf, inout_len,
                            "the text");
  });
}

}  // extern "C"
