#include "udaci_catch.hpp"

#include <cmath>
#include <map>

#include "core/error.hpp"
#include "decode/sampler.hpp"

using namespace udaci;

namespace {

std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

std::map<int64_t, int> histogram(SamplingOptions opt, const std::vector<float>& logits, int n) {
  Sampler s(opt);
  std::map<int64_t, int> h;
  for (int i = 0; i < n; ++i) {
    std::vector<float> row = logits;
    ++h[s.sample(row.data(), static_cast<int64_t>(row.size()), {})];
  }
  return h;
}

}  // namespace

TEST_CASE("sampler: greedy is argmax, first index on ties", "[unit][sampler]") {
  Sampler s(SamplingOptions{});
  std::vector<float> l = {0.1f, 3.0f, -1.0f, 3.0f};
  CHECK(s.sample(l.data(), 4, {}) == 1);
}

TEST_CASE("sampler: same seed gives the same draws, another seed differs", "[unit][sampler]") {
  std::vector<float> logits = logits_of({0.2, 0.2, 0.2, 0.2, 0.2});
  auto draws = [&](uint64_t seed) {
    SamplingOptions o;
    o.temperature = 1.0f;
    o.seed = seed;
    Sampler s(o);
    std::vector<int64_t> out;
    for (int i = 0; i < 64; ++i) {
      std::vector<float> row = logits;
      out.push_back(s.sample(row.data(), 5, {}));
    }
    return out;
  };
  CHECK(draws(7) == draws(7));
  CHECK(draws(7) != draws(8));
}

TEST_CASE("sampler: frequencies follow the softmax at temperature 1", "[unit][sampler]") {
  std::vector<double> p = {0.5, 0.25, 0.15, 0.1};
  SamplingOptions o;
  o.temperature = 1.0f;
  o.seed = 3;
  const int n = 40000;
  auto h = histogram(o, logits_of(p), n);
  for (size_t i = 0; i < p.size(); ++i) CHECK(std::abs(h[static_cast<int64_t>(i)] / double(n) - p[i]) < 0.01);
}

TEST_CASE("sampler: temperature sharpens and flattens", "[unit][sampler]") {
  std::vector<double> p = {0.6, 0.4};
  SamplingOptions o;
  o.seed = 5;
  o.temperature = 0.5f;  // p^2 normalised: 0.692
  auto cold = histogram(o, logits_of(p), 20000);
  CHECK(std::abs(cold[0] / 20000.0 - 0.36 / 0.52) < 0.015);
  o.temperature = 2.0f;  // sqrt(p) normalised: 0.5505
  auto hot = histogram(o, logits_of(p), 20000);
  CHECK(std::abs(hot[0] / 20000.0 - std::sqrt(0.6) / (std::sqrt(0.6) + std::sqrt(0.4))) < 0.015);
}

TEST_CASE("sampler: top-k, top-p and min-p keep only the allowed tokens", "[unit][sampler]") {
  std::vector<float> logits = logits_of({0.05, 0.5, 0.3, 0.15});
  SamplingOptions o;
  o.temperature = 1.0f;
  o.seed = 11;
  SECTION("top-k 2") {
    o.top_k = 2;
    auto h = histogram(o, logits, 5000);
    CHECK(h.size() == 2);
    CHECK(h.count(1) == 1);
    CHECK(h.count(2) == 1);
    CHECK(std::abs(h[1] / 5000.0 - 0.625) < 0.03);  // renormalised 0.5 / 0.8
  }
  SECTION("top-k 1 is greedy at any temperature") {
    o.top_k = 1;
    o.temperature = 5.0f;
    auto h = histogram(o, logits, 500);
    CHECK(h.size() == 1);
    CHECK(h.count(1) == 1);
  }
  SECTION("top-p 0.75 keeps the two most likely") {
    o.top_p = 0.75f;
    auto h = histogram(o, logits, 5000);
    CHECK(h.size() == 2);
    CHECK(h.count(0) == 0);
    CHECK(h.count(3) == 0);
  }
  SECTION("min-p 0.25 drops tokens under a quarter of the best") {
    o.min_p = 0.25f;  // threshold 0.125: keeps 0.5, 0.3, 0.15
    auto h = histogram(o, logits, 5000);
    CHECK(h.size() == 3);
    CHECK(h.count(0) == 0);
  }
}

TEST_CASE("sampler: repetition penalty divides positive and multiplies negative logits", "[unit][sampler]") {
  SamplingOptions o;
  o.repetition_penalty = 2.0f;
  Sampler s(o);
  std::vector<float> l = {2.0f, 1.9f, -1.0f};
  CHECK(s.sample(l.data(), 3, {0, 0, 2}) == 1);
  CHECK(l[0] == 1.0f);
  CHECK(l[2] == -2.0f);
  CHECK(l[1] == 1.9f);
}

TEST_CASE("sampler: out-of-range options are rejected by name", "[unit][sampler]") {
  auto bad = [](auto patch, const char* needle) {
    SamplingOptions o;
    patch(o);
    try {
      Sampler s(o);
      FAIL("no error for " << needle);
    } catch (const Error& e) {
      CHECK(e.status() == Status::kInvalidArgument);
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
  };
  bad([](SamplingOptions& o) { o.temperature = -1; }, "temperature");
  bad([](SamplingOptions& o) { o.temperature = NAN; }, "temperature");
  bad([](SamplingOptions& o) { o.top_p = 0; }, "top_p");
  bad([](SamplingOptions& o) { o.top_p = 1.5f; }, "top_p");
  bad([](SamplingOptions& o) { o.min_p = -0.1f; }, "min_p");
  bad([](SamplingOptions& o) { o.top_k = -2; }, "top_k");
  bad([](SamplingOptions& o) { o.repetition_penalty = 0; }, "repetition_penalty");
}
