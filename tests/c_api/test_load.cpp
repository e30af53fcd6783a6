// Under load through the C ABI (issue #12): 10,000 requests from 32 threads
// with random cancellations, and an engine destroyed with calls in flight.
// The model is a random-weight toy with SmolLM2's real tokenizer
// (`udaci random-model --shape tiny`), so the load is many requests, not big
// matrices. Run under the sanitizer build (scripts/sanitize.sh) these are
// also the leak and race checks.
#include <udaci/udaci.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "c_api_test_util.hpp"

using namespace udaci_c_test;
namespace fs = std::filesystem;

namespace {

// The toy model, made once per test process from the default model's tokenizer;
// empty (after a WARN) when the default model is not installed.
std::string tiny_model() {
  static const std::string path = [] {
    EnginePtr def = default_engine();
    if (!def) return std::string();
    size_t n = 0;
    REQUIRE(udaci_engine_get_model_path(def.get(), nullptr, &n) == UDACI_ERR_BUFFER_TOO_SMALL);
    std::string tokenizer(n, '\0');
    REQUIRE(udaci_engine_get_model_path(def.get(), tokenizer.data(), &n) == UDACI_OK);
    tokenizer.resize(n - 1);
    const fs::path out =
        fs::temp_directory_path() / ("udaci_load_tiny_" + std::to_string(::getpid()) + ".gguf");
    const std::string cmd = std::string(UDACI_CLI_PATH) + " random-model --shape tiny --seed 7" +
                            " --tokenizer '" + tokenizer + "' --output '" + out.string() +
                            "' > /dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);
    return out.string();
  }();
  return path;
}

EnginePtr tiny_engine() {
  const std::string model = tiny_model();
  if (model.empty()) return nullptr;
  udaci_engine_params p = udaci_engine_default_params();
  p.model_path = model.c_str();
  p.max_sequences = 64;
  // Every headline then equals the one it gets alone, whatever runs beside it.
  p.batch_invariant = 1;
  udaci_engine* e = nullptr;
  INFO(udaci_last_error());
  REQUIRE(udaci_engine_create(&p, &e) == UDACI_OK);
  return EnginePtr(e);
}

std::vector<int32_t> token_ids(const udaci_result* r) {
  size_t n = 0;
  if (udaci_result_get_token_ids(r, nullptr, &n) == UDACI_OK) return {};
  std::vector<int32_t> ids(n);
  if (udaci_result_get_token_ids(r, ids.data(), &n) != UDACI_OK) return {};
  ids.resize(n);
  return ids;
}

udaci_finish_reason finish_of(const udaci_result* r) {
  udaci_finish_reason f = UDACI_FINISH_LENGTH;
  udaci_result_get_finish_reason(r, &f);
  return f;
}

struct Expected {
  std::vector<int32_t> ids;
  udaci_finish_reason finish;
};

struct Cancel {
  int at_piece = -1;  // return 0 at this piece (-1: never)
  int pieces = 0;
  bool cancelled = false;
};

int cancel_at(void* user, size_t, const char*, size_t) {
  auto* c = static_cast<Cancel*>(user);
  if (c->pieces++ == c->at_piece) {
    c->cancelled = true;
    return 0;
  }
  return 1;
}

}  // namespace

TEST_CASE("c_api load: 10,000 requests from 32 threads with random cancellations",
          "[c_api][load]") {
  EnginePtr engine = tiny_engine();
  if (!engine) return;
  udaci_generate_params gp = udaci_generate_default_params();
  gp.max_new_tokens = 4;
  gp.stop_at_newline = 0;

  std::vector<std::string> summaries;
  for (int i = 0; i < 24; ++i) {
    std::string s = "Report " + std::to_string(i) + ": the council voted on the budget";
    for (int k = 0; k < i % 5; ++k) s += ", and residents asked about parks, schools and roads";
    if (i % 7 == 3) s += " \xe2\x80\x94 caf\xc3\xa9 owners \xf0\x9f\x98\x80 cheered.";
    summaries.push_back(s + ".");
  }
  std::vector<Expected> expected;
  for (const std::string& s : summaries) {
    udaci_result* r = nullptr;
    REQUIRE(udaci_generate(engine.get(), s.c_str(), &gp, &r) == UDACI_OK);
    expected.push_back({token_ids(r), finish_of(r)});
    REQUIRE(!expected.back().ids.empty());
    udaci_result_destroy(r);
  }

  constexpr int kThreads = 32, kRequests = 10000;
  std::atomic<int> next{0}, full{0}, cancelled{0}, wrong{0};
  std::mutex mu;
  std::vector<std::string> failures;  // Catch2 assertions stay on the main thread
  auto note = [&](std::string what) {
    ++wrong;
    std::lock_guard<std::mutex> lock(mu);
    if (failures.size() < 10) failures.push_back(std::move(what));
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(1000 + t);
      for (int i = next++; i < kRequests; i = next++) {
        const size_t k = rng() % summaries.size();
        Cancel c;
        if (rng() % 5 == 0) c.at_piece = static_cast<int>(rng() % 4);  // about one in five
        const char* text = summaries[k].c_str();
        udaci_result* r = nullptr;
        const udaci_status st = udaci_generate_stream(engine.get(), &text, 1, &gp, cancel_at, &c, &r);
        if (st != UDACI_OK || r == nullptr) {
          note("request " + std::to_string(i) + ": status " + udaci_status_name(st) + ": " +
               udaci_last_error());
          continue;
        }
        const std::vector<int32_t> ids = token_ids(r);
        const Expected& e = expected[k];
        if (c.cancelled) {
          ++cancelled;
          const bool prefix = ids.size() <= e.ids.size() &&
                              std::equal(ids.begin(), ids.end(), e.ids.begin());
          if (finish_of(r) != UDACI_FINISH_CANCELLED || !prefix)
            note("request " + std::to_string(i) + ": cancelled result is not a cancelled prefix");
        } else {
          ++full;
          if (ids != e.ids || finish_of(r) != e.finish)
            note("request " + std::to_string(i) + " (summary " + std::to_string(k) +
                 "): result differs from the same summary generated alone");
        }
        udaci_result_destroy(r);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const std::string& f : failures) FAIL_CHECK(f);
  CHECK(wrong == 0);
  CHECK(full + cancelled == kRequests);
  CHECK(cancelled > 500);  // the cancellations did happen
  CHECK(full > 5000);
}

TEST_CASE("c_api load: destroying an engine with 32 calls in flight cancels them cleanly",
          "[c_api][load]") {
  EnginePtr owned = tiny_engine();
  if (!owned) return;
  udaci_engine* engine = owned.release();
  udaci_generate_params gp = udaci_generate_default_params();
  gp.max_new_tokens = 1500;  // far longer than the test waits
  gp.stop_at_newline = 0;
  gp.repetition_stop = 0;  // the tiny random model loops: it must run until cancelled

  constexpr int kThreads = 32;
  struct Call {
    std::atomic<int>* started;
    bool counted = false;
  };
  std::atomic<int> started{0}, ended{0};
  std::vector<udaci_status> status(kThreads, UDACI_OK);
  std::vector<udaci_result*> results(kThreads, nullptr);
  std::vector<Call> calls(kThreads, Call{&started});
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string s = "Thread " + std::to_string(t) + " asks for a very long headline.";
      const char* text = s.c_str();
      status[t] = udaci_generate_stream(
          engine, &text, 1, &gp,
          [](void* user, size_t, const char*, size_t) {
            auto* c = static_cast<Call*>(user);
            if (!c->counted) {
              c->counted = true;
              ++*c->started;
            }
            return 1;
          },
          &calls[t], &results[t]);
      ++ended;
    });
  }
  // Every call is inside the engine and producing text (or already over).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (started + ended < kThreads && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  REQUIRE(started + ended == kThreads);
  udaci_engine_destroy(engine);  // cancels the 32 calls and waits for them
  // No call is inside the engine any more: each has returned or is returning.
  for (auto& th : threads) th.join();
  int cancelled = 0;
  for (int t = 0; t < kThreads; ++t) {
    INFO("thread " << t);
    CHECK(status[t] == UDACI_OK);
    REQUIRE(results[t] != nullptr);
    // Results outlive their engine.
    const udaci_finish_reason f = finish_of(results[t]);
    CHECK((f == UDACI_FINISH_CANCELLED || f == UDACI_FINISH_EOS));
    if (f == UDACI_FINISH_CANCELLED) ++cancelled;
    CHECK(token_ids(results[t]).size() < 1500);
    udaci_result_destroy(results[t]);
  }
  CHECK(cancelled > 0);
}

TEST_CASE("c_api limits: max_prompt_tokens and max_memory_bytes", "[c_api][limits]") {
  const std::string model = tiny_model();
  if (model.empty()) return;
  udaci_engine_params p = udaci_engine_default_params();
  CHECK(p.max_prompt_tokens == 2048);
  CHECK(p.max_memory_bytes == 0);
  p.model_path = model.c_str();
  p.max_prompt_tokens = 8;
  udaci_engine* e = nullptr;
  REQUIRE(udaci_engine_create(&p, &e) == UDACI_OK);
  EnginePtr engine(e);
  const udaci_generate_params gp = udaci_generate_default_params();
  udaci_result* r = nullptr;
  CHECK(udaci_generate(engine.get(), "A summary long enough to need more than eight tokens.", &gp,
                       &r) == UDACI_ERR_INVALID_ARGUMENT);
  CHECK(r == nullptr);
  CHECK(std::string(udaci_last_error()).find("max_prompt_tokens") != std::string::npos);

  p.max_prompt_tokens = -1;
  CHECK(udaci_engine_create(&p, &e) == UDACI_ERR_INVALID_ARGUMENT);
  p.max_prompt_tokens = 2048;
  p.max_memory_bytes = 1 << 20;  // the toy's embedding alone is 12 MiB
  CHECK(udaci_engine_create(&p, &e) == UDACI_ERR_OUT_OF_MEMORY);
  CHECK(e == nullptr);
  CHECK(std::string(udaci_last_error()).find("max_memory_bytes") != std::string::npos);
}
