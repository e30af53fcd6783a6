// Hidden benchmarks of the quantised kernels (run with
// udaci_unit_tests "[.quant-bench]"): GEMV time and weight bandwidth per
// format at SmolLM2-135M and Llama-3.2-1B shapes, 1 and 2 threads, against
// at::linear in fp32; and decode tokens/s of the default GGUF per quantizer.
// They print numbers and assert nothing about time.
#include "udaci_catch.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "cache/cache_strategy.hpp"
#include "engine/registry.hpp"
#include "model/model_loader.hpp"
#include "model/dense_gemm.hpp"
#include "model/llama_model.hpp"
#include "core/cpu_features.hpp"
#include "core/threads.hpp"
#include "quant/quant_formats.hpp"
#include "quant/quantizers.hpp"
#include "test_util.hpp"

using namespace udaci;

namespace {

double now_us() {
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Median of `reps` timed calls after warm-up, in microseconds.
template <typename F>
double median_us(F&& f, int reps) {
  for (int i = 0; i < 3; ++i) f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const double t0 = now_us();
    f();
    t.push_back(now_us() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

TensorEntry float_entry(const std::string& name, const at::Tensor& w) {
  auto buf = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(w.numel() * 4));
  std::memcpy(buf->data(), w.data_ptr<float>(), buf->size());
  TensorEntry e;
  e.name = name;
  e.type = WeightType::kF32;
  e.shape = {w.size(0), w.size(1)};
  e.data = buf->data();
  e.nbytes = buf->size();
  e.owner = buf;
  return e;
}

// GGUF blocks with random quants and a sane f16 scale.
TensorEntry gguf_entry(WeightType t, int64_t out, int64_t in) {
  const int64_t bb = weight_type_block_bytes(t), nb = out * in / 32;
  auto buf = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(nb * bb));
  uint32_t s = 12345;
  for (auto& b : *buf) b = static_cast<uint8_t>((s = s * 1664525u + 1013904223u) >> 24);
  const uint16_t d = float_to_half_bits(0.01f);
  for (int64_t b = 0; b < nb; ++b) {
    std::memcpy(buf->data() + b * bb, &d, 2);
    if (t == WeightType::kQ4_1) std::memcpy(buf->data() + b * bb + 2, &d, 2);
  }
  TensorEntry e;
  e.name = "w.weight";
  e.type = t;
  e.shape = {out, in};
  e.data = buf->data();
  e.nbytes = buf->size();
  e.owner = buf;
  return e;
}

}  // namespace

TEST_CASE("quant bench: GEMV per format and shape", "[.quant-bench]") {
  struct Shape {
    const char* what;
    int64_t in, out;
  };
  const Shape shapes[] = {{"smollm2 up", 576, 1536},     {"smollm2 down", 1536, 576},
                          {"smollm2 head", 576, 49152},  {"llama1b up", 2048, 8192},
                          {"llama1b down", 8192, 2048}};
  std::printf("isa %s\n", kernel_isa_name(active_kernel_isa()));
  std::printf("%-13s %-6s %3s %10s %8s\n", "shape", "format", "thr", "us", "GB/s");
  const int threads_before = at::get_num_threads();
  for (const Shape& sh : shapes) {
    at::manual_seed(1);
    at::Tensor wf = at::randn({sh.out, sh.in}) * 0.02;
    at::Tensor x = at::randn({1, sh.in});
    std::vector<std::pair<std::string, std::unique_ptr<LinearKernel>>> kernels;
    kernels.emplace_back("fp32", make_dense_kernel(wf));
    const LinearSpec spec{"model.layers.0.mlp.up_proj", "model.layers.0.mlp.up_proj",
                          LinearRole::kProjection, sh.out, sh.in, false};
    std::vector<WeightStore> stores(6);
    int si = 0;
    for (auto [name, fmt] : {std::pair<const char*, WeightFormat>{"int8", WeightFormat::kInt8},
                             {"int4", WeightFormat::kInt4},
                             {"nf4", WeightFormat::kNF4}}) {
      WeightQuantOptions o;
      o.name = name;
      o.projections = fmt;
      auto q = make_weight_quantizer(o);
      WeightStore& st = stores[static_cast<size_t>(si++)];
      st.put(float_entry(spec.weight + ".weight", wf));
      q->quantize(st);
      kernels.emplace_back(name, q->make_kernel(spec, st, ModelOptions{}));
    }
    auto native = make_gguf_native_quantizer();
    for (auto [name, t] : {std::pair<const char*, WeightType>{"q8_0", WeightType::kQ8_0},
                           {"q4_0", WeightType::kQ4_0},
                           {"q4_1", WeightType::kQ4_1}}) {
      WeightStore& st = stores[static_cast<size_t>(si++)];
      st.put(gguf_entry(t, sh.out, sh.in));
      kernels.emplace_back(name, native->make_kernel(LinearSpec{"w", "w", LinearRole::kProjection,
                                                                sh.out, sh.in, false},
                                                     st, ModelOptions{}));
    }
    for (int thr : {1, 2}) {
      at::set_num_threads(thr);
      for (auto& [name, k] : kernels) {
        const int reps = sh.out * sh.in > 20000000 ? 15 : 60;
        const double us = median_us([&] { (void)k->forward(x); }, reps);
        std::printf("%-13s %-6s %3d %10.1f %8.2f\n", sh.what, name.c_str(), thr, us,
                    static_cast<double>(k->weight_bytes()) / us / 1e3);
      }
    }
  }
  at::set_num_threads(threads_before);
  CHECK(true);
}

TEST_CASE("quant bench: decode tokens/s of the default model per quantizer", "[.quant-bench]") {
  const std::string path = udaci_test::default_model_gguf();
  if (path.empty()) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  const int threads_before = at::get_num_threads();
  for (const char* qname : {"none", "gguf-native", "int8", "int4", "nf4"}) {
    ModelFiles f = open_model(path);
    auto q = builtin_strategies().quantizers.create(qname, StrategyOptions{});
    const double t0 = now_us();
    const QuantizeReport rep = q->quantize(f.weights);
    const double quant_ms = (now_us() - t0) / 1e3;
    ModelOptions o;
    o.linear_factory = [&q](const LinearSpec& s, const WeightStore& w, const ModelOptions& opt) {
      return q->make_kernel(s, w, opt);
    };
    LlamaModel model(f.config, f.weights, o);
    for (int thr : {1, 2}) {
      at::set_num_threads(thr);
      auto cache = make_contiguous_cache(model.cache_shape());
      cache->add_sequence(0, 128);
      ForwardBatch prompt;
      prompt.add(0, {1, 4093, 198, 19161, 253, 28424, 314, 260});
      const double p0 = now_us();
      at::Tensor logits = model.forward(prompt, *cache);
      const double prefill_ms = (now_us() - p0) / 1e3;
      int64_t next = logits.argmax(-1).item<int64_t>();
      const int steps = 64;
      const double d0 = now_us();
      for (int i = 0; i < steps; ++i) {
        ForwardBatch b;
        b.add(0, {next});
        next = model.forward(b, *cache).argmax(-1).item<int64_t>();
      }
      const double sec = (now_us() - d0) / 1e6;
      std::printf("%-12s threads %d: decode %.1f tok/s, prefill(8) %.1f ms, weights %.1f MB "
                  "(store %.1f -> %.1f MB, quantize %.0f ms)\n",
                  qname, thr, steps / sec, prefill_ms, model.weight_bytes() / 1e6,
                  rep.bytes_before / 1e6, rep.bytes_after / 1e6, quant_ms);
    }
  }
  at::set_num_threads(threads_before);
  CHECK(true);
}

TEST_CASE("quant bench: tiled GEMM multiply-adds per second by row count", "[.quant-bench]") {
  // One thread, the SmolLM2 MLP up shape: how the tile kernel's arithmetic
  // rate grows from decode (1 row) to batched decode and prompts.
  const int64_t in = 576, out = 1536;
  const int threads_before = at::get_num_threads();
  at::set_num_threads(1);
  std::printf("isa %s, [%lld x %lld], 1 thread\n", kernel_isa_name(active_kernel_isa()),
              static_cast<long long>(out), static_cast<long long>(in));
  std::printf("%-6s %5s %10s %10s\n", "format", "rows", "us", "GMAC/s");
  auto native = make_gguf_native_quantizer();
  for (auto [name, t] : {std::pair<const char*, WeightType>{"q8_0", WeightType::kQ8_0},
                         {"q4_0", WeightType::kQ4_0},
                         {"q4_1", WeightType::kQ4_1}}) {
    WeightStore st;
    st.put(gguf_entry(t, out, in));
    auto k = native->make_kernel(LinearSpec{"w", "w", LinearRole::kProjection, out, in, false}, st,
                                 ModelOptions{});
    for (int64_t n : {1, 2, 3, 4, 5, 6, 7, 8, 16, 64, 256}) {
      at::Tensor x = at::randn({n, in});
      const double us = median_us([&] { (void)k->forward(x); }, n >= 64 ? 15 : 40);
      std::printf("%-6s %5lld %10.1f %10.2f\n", name, static_cast<long long>(n), us,
                  static_cast<double>(n * in * out) / us / 1e3);
      if (!bf16_prompt_rows()) continue;
      // The same rows as a prompt's (AMX-BF16 tiles).
      const double ub = median_us([&] { (void)k->forward_prompt(x, n); }, n >= 64 ? 15 : 40);
      std::printf("%-6s %5lld %10.1f %10.2f  bf16 prompt rows\n", name, static_cast<long long>(n), ub,
                  static_cast<double>(n * in * out) / ub / 1e3);
    }
  }
  at::set_num_threads(threads_before);
  CHECK(true);
}

TEST_CASE("dense bench: fp32 GEMM on udaci's pool vs at::linear by row count", "[.quant-bench]") {
  // As an engine computes: 2 kernel threads on udaci's pool, ATen's team at
  // one thread on this thread (OpenBLAS keeps its own threads). Both sides
  // are timed in the same loop, alternating, so the host's drift cancels in
  // the ratio. Prints the ratios that set dense_gemm_max_rows().
  const int threads_before = at::get_num_threads();
  set_threads(2);
  adopt_requested_threads();
  std::printf("isa %s, pool %d threads, ATen %d\n", kernel_isa_name(active_kernel_isa()), kernel_threads(),
              aten_threads());
  std::printf("%-12s %5s %10s %10s %8s %10s\n", "shape", "rows", "pool us", "aten us", "ratio", "pool GF/s");
  for (auto [out, in] : {std::pair<int64_t, int64_t>{1536, 576}, {576, 1536}, {8192, 2048}}) {
    at::Tensor w = at::randn({out, in});
    for (int64_t n : {1, 8, 32, 64, 128, 256, 512}) {
      at::Tensor x = at::randn({n, in});
      at::Tensor y = at::empty({n, out});
      const int reps = n >= 128 ? 9 : 21;
      std::vector<double> pool, aten;
      for (int round = 0; round < 3; ++round) {
        pool.push_back(median_us([&] { dense_gemm(w.data_ptr<float>(), out, in, x.data_ptr<float>(), n,
                                                  y.data_ptr<float>()); }, reps));
        aten.push_back(median_us([&] { (void)at::linear(x, w); }, reps));
      }
      std::sort(pool.begin(), pool.end());
      std::sort(aten.begin(), aten.end());
      std::printf("%5lldx%-6lld %5lld %10.1f %10.1f %8.2f %10.1f\n", static_cast<long long>(out),
                  static_cast<long long>(in), static_cast<long long>(n), pool[1], aten[1], aten[1] / pool[1],
                  2.0 * static_cast<double>(n * in * out) / pool[1] / 1e3);
    }
  }
  set_threads(threads_before);
  CHECK(true);
}

