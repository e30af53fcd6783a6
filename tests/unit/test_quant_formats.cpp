// Offline quantisation (src/quant/quant_formats.hpp, quantizers.hpp): round
// trip error bounds, the NF4 code book, stored bytes, idempotence on an
// already-quantised store and option errors.
#include "udaci_catch.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <cstring>

#include "engine/registry.hpp"
#include "io/gguf_quants.hpp"
#include "model/model_loader.hpp"
#include "quant/qmatrix.hpp"
#include "quant/quant_formats.hpp"
#include "quant/quantizers.hpp"
#include "test_util.hpp"

using namespace udaci;

namespace {

// Inverse of the standard normal CDF by bisection on erfc (double precision).
double normal_ppf(double p) {
  double lo = -10.0, hi = 10.0;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

std::vector<float> linspace(double a, double b, int n) {
  std::vector<float> v;
  for (int i = 0; i < n; ++i) v.push_back(static_cast<float>(a + (b - a) * i / (n - 1)));
  return v;
}

float h2f(uint16_t h) { return half_to_float(h); }

}  // namespace

TEST_CASE("quant: NF4 code book is bitsandbytes' normal map", "[quant]") {
  // QLoRA (arXiv:2305.14314) / bitsandbytes create_normal_map(0.9677083):
  // 8 positive quantiles of N(0,1) at linspace(offset, 0.5, 9)[:-1], 7
  // negative at linspace(offset, 0.5, 8)[:-1], and 0, normalised by the max.
  const double offset = 0.9677083;
  std::vector<double> v;
  const auto pos = linspace(offset, 0.5, 9), neg = linspace(offset, 0.5, 8);
  for (int i = 0; i < 8; ++i) v.push_back(normal_ppf(pos[static_cast<size_t>(i)]));
  for (int i = 0; i < 7; ++i) v.push_back(-normal_ppf(neg[static_cast<size_t>(i)]));
  v.push_back(0.0);
  std::sort(v.begin(), v.end());
  const double mx = v.back();
  for (int i = 0; i < 16; ++i) {
    INFO("level " << i);
    CHECK(kNF4Levels[i] == Approx(v[static_cast<size_t>(i)] / mx).margin(1e-6));
    // The kernels' int8 stand-ins are the nearest integers to 127 * level.
    CHECK(kNF4LevelsI8[i] == static_cast<int>(std::lround(127.0 * kNF4Levels[i])));
  }
}

TEST_CASE("quant: int8 round trip is within half a step", "[quant]") {
  at::manual_seed(11);
  const int64_t rows = 40, cols = 100;
  at::Tensor w = at::randn({rows, cols});
  w[3].zero_();  // an all-zero row: scale 0, exact
  std::vector<int8_t> q(rows * cols);
  std::vector<float> s(rows);
  quantize_int8_rows(w.data_ptr<float>(), rows, cols, q.data(), s.data());
  for (int64_t r = 0; r < rows; ++r) {
    const float amax = w[r].abs().max().item<float>();
    CHECK(s[r] == Approx(amax / 127.0f));
    for (int64_t i = 0; i < cols; ++i) {
      const float x = w.data_ptr<float>()[r * cols + i];
      CHECK(std::abs(q[r * cols + i]) <= 127);
      CHECK(std::fabs(x - q[r * cols + i] * s[r]) <= 0.5f * s[r] * 1.0001f + 1e-30f);
    }
  }
}

TEST_CASE("quant: int4 affine and nf4 round trips are within their bounds", "[quant]") {
  at::manual_seed(12);
  for (int64_t group : {32, 64, 128}) {
    const int64_t rows = 12, cols = 256, groups = cols / group;
    at::Tensor w = at::randn({rows, cols}) * 0.1 + 0.02;
    w[5].fill_(0.25f);  // constant groups: scale 0
    const float* x = w.data_ptr<float>();
    std::vector<uint8_t> packed(rows * cols / 2);
    std::vector<uint16_t> sc(rows * groups), mn(rows * groups);
    auto nib = [&](int64_t r, int64_t i) {
      const uint8_t b = packed[static_cast<size_t>(r * cols / 2 + (i / 32) * 16 + i % 16)];
      return (i % 32) < 16 ? (b & 15) : (b >> 4);
    };
    INFO("group " << group);
    quantize_int4_groups(x, rows, cols, group, /*nf4=*/false, packed.data(), sc.data(), mn.data());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < cols; ++i) {
        const int64_t g = r * groups + i / group;
        const float s = h2f(sc[g]), m = h2f(mn[g]);
        at::Tensor grp = w[r].slice(0, (i / group) * group, (i / group + 1) * group);
        const float lo = grp.min().item<float>(), hi = grp.max().item<float>();
        CHECK(s == Approx((hi - lo) / 15.0f).epsilon(1e-3));
        // Half a step, plus the f16 rounding of scale and min.
        const float bound = 0.5f * s + std::ldexp(std::fabs(lo) + std::fabs(hi), -10) + 1e-7f;
        CHECK(std::fabs(x[r * cols + i] - (nib(r, i) * s + m)) <= bound);
      }
    }
    quantize_int4_groups(x, rows, cols, group, /*nf4=*/true, packed.data(), sc.data(), nullptr);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < cols; ++i) {
        const float a = h2f(sc[r * groups + i / group]);
        const float v = x[r * cols + i] / a;
        const int q = nib(r, i);
        // The nearest level, so at most half the widest gap (-1 .. -0.6962) away.
        for (int k = 0; k < 16; ++k) CHECK(std::fabs(v - kNF4Levels[q]) <= std::fabs(v - kNF4Levels[k]) + 1e-6f);
        CHECK(std::fabs(x[r * cols + i] - a * kNF4Levels[q]) <= 0.5f * (kNF4Levels[1] - kNF4Levels[0]) * a * 1.001f + 1e-7f);
      }
    }
  }
}

TEST_CASE("quant: int4 keeps SmolLM2-shaped weights under 20% of fp32 bytes; quantize is idempotent",
          "[quant]") {
  const auto& reg = builtin_strategies();
  WeightStore store = random_weights(preset_config("smollm2-135m"), at::kFloat, 7);
  const int64_t fp32 = stored_bytes(store);
  auto q = reg.quantizers.create("int4", StrategyOptions{});
  QuantizeReport rep = q->quantize(store);
  INFO("fp32 " << fp32 << " bytes, int4 " << rep.bytes_after);
  CHECK(rep.bytes_before == fp32);
  CHECK(rep.bytes_after <= fp32 / 5);
  CHECK(rep.tensors_changed == 30 * 7 + 1);  // projections + the tied embedding (int8)
  CHECK_FALSE(store.has("model.layers.0.mlp.up_proj.weight"));
  CHECK(store.entry("model.layers.0.mlp.up_proj.weight_packed").type == WeightType::kU8);
  CHECK(store.entry("model.embed_tokens.weight").type == WeightType::kI8);
  CHECK(store.entry("model.norm.weight").type == WeightType::kF32);  // norms stay float

  // A reloaded artefact: nothing changes.
  const std::vector<std::string> names = store.names();
  const void* packed = store.entry("model.layers.0.mlp.up_proj.weight_packed").data;
  QuantizeReport again = q->quantize(store);
  CHECK(again.tensors_changed == 0);
  CHECK(again.bytes_before == rep.bytes_after);
  CHECK(again.bytes_after == rep.bytes_after);
  CHECK(store.names() == names);
  CHECK(store.entry("model.layers.0.mlp.up_proj.weight_packed").data == packed);
}

TEST_CASE("quant: int8 stores about a quarter of the fp32 bytes and is idempotent", "[quant]") {
  const auto& reg = builtin_strategies();
  ModelConfig c = preset_config("smollm2-135m");
  c.num_layers = 2;
  WeightStore store = random_weights(c, at::kFloat, 8);
  auto q = reg.quantizers.create("int8", StrategyOptions{});
  QuantizeReport rep = q->quantize(store);
  CHECK(rep.bytes_after <= rep.bytes_before / 4 + rep.bytes_before / 100);
  CHECK(store.entry("model.layers.1.self_attn.q_proj.weight").type == WeightType::kI8);
  CHECK(store.entry("model.layers.1.self_attn.q_proj.weight_scale").shape == std::vector<int64_t>{576});
  CHECK(q->quantize(store).tensors_changed == 0);
}

TEST_CASE("quant: bad quantizer options are rejected by name", "[quant]") {
  const auto& reg = builtin_strategies();
  using udaci_test::expect_error;
  auto make = [&](const std::string& name, std::map<std::string, std::string> kv) {
    return [&reg, name, kv] { reg.quantizers.create(name, StrategyOptions(kv)); };
  };
  expect_error(make("int4", {{"group", "48"}}), Status::kInvalidArgument, "group must be 32, 64 or 128, got 48");
  expect_error(make("int4", {{"scheme", "x"}}), Status::kInvalidArgument, "'scheme' must be affine or nf4");
  expect_error(make("nf4", {{"head", "int3"}}), Status::kInvalidArgument, "'head' must be none, int8, int4 or nf4");
  expect_error(make("int8", {{"group", "32"}}), Status::kInvalidArgument, "group");
  expect_error(make("gguf-native", {{"head", "int8"}}), Status::kInvalidArgument, "head");
  for (const char* n : {"int8", "int4", "nf4", "gguf-native"}) CHECK(reg.quantizers.has(n));
  CHECK(std::string(reg.quantizers.create("int4", StrategyOptions(std::map<std::string, std::string>{{"scheme", "nf4"}}))->name()) == "int4");
}
