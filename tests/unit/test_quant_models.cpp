// Quantizers in whole models: LlamaModel built with the quantizer's
// make_kernel as its LinearFactory, against the same model in fp32 (golden
// fixtures) or dequantised (the default GGUF).
#include "udaci_catch.hpp"

#include <ATen/ATen.h>

#include "cache/cache_strategy.hpp"
#include "core/cpu_features.hpp"
#include "engine/registry.hpp"
#include "model/model_loader.hpp"
#include "io/safetensors_reader.hpp"
#include "model/llama_model.hpp"
#include "quant/quantizers.hpp"
#include "test_util.hpp"

using namespace udaci;

namespace {

ModelOptions with_quantizer(const Quantizer& q) {
  ModelOptions o;
  o.linear_factory = [&q](const LinearSpec& s, const WeightStore& w, const ModelOptions& opt) {
    return q.make_kernel(s, w, opt);
  };
  return o;
}

// The same kernels' weights, dequantised once into dense fp32 kernels: the
// reference that differs from the quantised model only by the int8
// activations of the integer kernels.
ModelOptions dequantised_reference(const Quantizer& q) {
  ModelOptions o;
  o.linear_factory = [&q](const LinearSpec& s, const WeightStore& w,
                          const ModelOptions& opt) -> std::unique_ptr<LinearKernel> {
    std::unique_ptr<LinearKernel> k = q.make_kernel(s, w, opt);
    if (!k) return nullptr;
    at::Tensor rows = at::arange(k->out_features(), at::TensorOptions().dtype(at::kLong));
    return make_dense_kernel(k->gather_rows(rows, at::kFloat));
  };
  return o;
}

std::vector<int64_t> ids_of(const WeightStore& s, const std::string& name) {
  at::Tensor t = s.tensor(name, at::kLong);
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

at::Tensor prompt_logits(const LlamaModel& m, const std::vector<int64_t>& prompt) {
  auto cache = make_contiguous_cache(m.cache_shape());
  cache->add_sequence(0, 64);
  ForwardBatch b;
  b.add(0, prompt, /*all_logits=*/true);
  return m.forward(b, *cache);
}

// max |ours - ref| / (max(ref) - min(ref)) over each row, the worst row.
double worst_relative_error(const at::Tensor& ours, const at::Tensor& ref) {
  at::Tensor range = std::get<0>(ref.max(-1)) - std::get<0>(ref.min(-1));
  return (std::get<0>((ours - ref).abs().max(-1)) / range).max().item<double>();
}

}  // namespace

// The fixtures are tiny random models whose next-token logits are often near
// ties: there even weight-only int8 (dequantised, float activations) flips
// the argmax (free-running agreement measured 100% / 8% / 83% on the three
// fixtures, and 58% / 38% / 100% for the int8 kernels, as one flip changes
// every later step). So agreement is measured step by step under teacher
// forcing on transformers' fp32 greedy continuation, at the steps where fp32's
// top-1 leads top-2 by at least 3% of the logit range (at 1%:
// 100% / 90.5% (19 of 21) / 100%).
TEST_CASE("quant: int8 greedy ids equal fp32 on the golden fixtures", "[quant]") {
  const auto& reg = builtin_strategies();
  for (const std::string name : {"tiny-gqa-tied", "tiny-llama3-rope", "tiny-bf16"}) {
    INFO(name);
    ModelFiles f = open_model(udaci_test::fixture("golden/" + name));
    WeightStore expected;
    read_safetensors_file(udaci_test::fixture("golden/" + name + "/expected.safetensors"), expected);
    const std::vector<int64_t> prompt = ids_of(expected, "prompt_ids");
    const std::vector<int64_t> ref_ids = ids_of(expected, "greedy_ids");
    LlamaModel dense(f.config, f.weights, ModelOptions{});
    auto q = reg.quantizers.create("int8", StrategyOptions{});
    const QuantizeReport rep = q->quantize(f.weights);
    CHECK(rep.tensors_changed > 0);
    LlamaModel quant(f.config, f.weights, with_quantizer(*q));
    CHECK(quant.weight_bytes() < dense.weight_bytes() / 2);

    std::vector<int64_t> full = prompt;
    full.insert(full.end(), ref_ids.begin(), ref_ids.end() - 1);
    const int64_t p0 = static_cast<int64_t>(prompt.size()) - 1;
    const at::Tensor ld = prompt_logits(dense, full).slice(0, p0);  // [steps, vocab]
    const at::Tensor lq = prompt_logits(quant, full).slice(0, p0);
    const at::Tensor top2 = std::get<0>(ld.topk(2, -1));
    const at::Tensor range = std::get<0>(ld.max(-1)) - std::get<0>(ld.min(-1));
    const at::Tensor clear = (top2.select(1, 0) - top2.select(1, 1)) >= 0.03 * range;
    const at::Tensor want = at::tensor(ref_ids, at::TensorOptions().dtype(at::kLong));
    const at::Tensor same = (lq.argmax(-1) == want).masked_select(clear).to(at::kFloat);
    const int64_t steps = same.numel();
    const double agree = steps ? same.mean().item<double>() : 0.0;
    INFO("int8 argmax equals fp32's at " << agree * 100 << "% of " << steps << " clear steps (of "
                                         << ref_ids.size() << ")");
    CHECK(steps >= static_cast<int64_t>(ref_ids.size()) / 3);
    CHECK(agree >= 0.95);
    // fp32 itself reproduces transformers at every step (the fixture is sound).
    CHECK(at::equal(ld.argmax(-1), want));
  }
}

TEST_CASE("quant: int4 / nf4 models and mixed head / embedding formats on a tied model",
          "[quant]") {
  const auto& reg = builtin_strategies();
  struct Case {
    std::string quantizer;
    std::map<std::string, std::string> opts;
  };
  for (const Case& c : {Case{"int8", {{"head", "none"}}}, Case{"int8", {{"embed", "none"}}},
                        Case{"int4", {}}, Case{"int4", {{"head", "int4"}, {"embed", "none"}}},
                        Case{"int4", {{"scheme", "nf4"}, {"head", "none"}}},
                        Case{"nf4", {{"group", "64"}, {"head", "nf4"}, {"embed", "int4"}}}}) {
    INFO(c.quantizer << " with " << c.opts.size() << " options");
    ModelFiles f = open_model(udaci_test::fixture("golden/tiny-gqa-tied"));
    WeightStore expected;
    read_safetensors_file(udaci_test::fixture("golden/tiny-gqa-tied/expected.safetensors"), expected);
    const std::vector<int64_t> prompt = ids_of(expected, "prompt_ids");
    LlamaModel dense(f.config, f.weights, ModelOptions{});
    auto q = reg.quantizers.create(c.quantizer, StrategyOptions(c.opts));
    q->quantize(f.weights);
    LlamaModel quant(f.config, f.weights, with_quantizer(*q));
    LlamaModel ref(f.config, f.weights, dequantised_reference(*q));
    const at::Tensor y = prompt_logits(quant, prompt);
    // Only the int8 activations differ from the dequantised reference (measured
    // up to 0.044 of the logit range on this random tiny model); wrong
    // wiring (row order, scales, a head bound to the wrong format) would not.
    const double err = worst_relative_error(y, prompt_logits(ref, prompt));
    INFO("worst relative logit error vs the dequantised weights " << err);
    CHECK(err <= 6e-2);
    CHECK(worst_relative_error(y, prompt_logits(dense, prompt)) > 0.0);  // quantised kernels ran
    CHECK(quant.weight_bytes() < dense.weight_bytes());
  }
}

TEST_CASE("quant: gguf-native runs the default GGUF's blocks like the dequantised model",
          "[quant][smollm2]") {
  const std::string path = udaci_test::default_model_gguf();
  if (path.empty()) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  ModelFiles f = open_model(path);
  auto q = builtin_strategies().quantizers.create("gguf-native", StrategyOptions{});
  const QuantizeReport rep = q->quantize(f.weights);
  CHECK(rep.tensors_changed == 0);
  CHECK(rep.bytes_before == rep.bytes_after);
  LlamaModel native(f.config, f.weights, with_quantizer(*q));
  LlamaModel dense(f.config, f.weights, ModelOptions{});
  // Q4_1 projections and the Q8_0 tied embedding stay in their blocks.
  CHECK(native.weight_bytes() < dense.weight_bytes() / 4);
  // "<|im_start|>user\nWrite a headline" style ids: any in-vocabulary prompt.
  const std::vector<int64_t> prompt = {1, 4093, 198, 19161, 253, 28424, 314, 260, 1345, 30};
  const at::Tensor a = prompt_logits(native, prompt), b = prompt_logits(dense, prompt);
  const double err = worst_relative_error(a, b);
  INFO("worst relative logit error, int8 activations vs float: " << err);
  // Measured 0.038 (int8 activation rounding through 30 layers; the
  // kernels themselves match to 2e-5 in test_quant_kernels.cpp).
  CHECK(err <= 6e-2);
  // The next-token choice agrees at (nearly) every position.
  const at::Tensor agree = (a.argmax(-1) == b.argmax(-1)).to(at::kFloat).mean();
  CHECK(agree.item<double>() >= 0.9);
}

TEST_CASE("quant: a prompt's rows keep their bits wherever the batch puts them", "[quant]") {
  // LlamaModel moves prompt slices in front of decode slices (the
  // projections take a prompt's rows first: AMX-BF16 where the CPU has it)
  // and returns the logits in the caller's order.
  ModelFiles f = open_model(udaci_test::fixture("golden/tiny-gqa-tied"));
  auto q = builtin_strategies().quantizers.create("int8", StrategyOptions{});
  q->quantize(f.weights);
  LlamaModel m(f.config, f.weights, with_quantizer(*q));
  const std::vector<int64_t> p0 = {1, 5, 9, 13, 17, 21, 25, 29, 33, 3, 7};
  const std::vector<int64_t> p1 = {2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36};
  // Alone: sequence 0's prompt, then its next token; sequence 1's prompt.
  auto alone = make_contiguous_cache(m.cache_shape());
  alone->add_sequence(0, 64);
  alone->add_sequence(1, 64);
  ForwardBatch a0;
  a0.add(0, p0, false, /*prompt=*/true);
  const at::Tensor prompt0 = m.forward(a0, *alone);
  const int64_t next = prompt0.argmax(-1).item<int64_t>();
  ForwardBatch a1;
  a1.add(0, {next});
  const at::Tensor decode0 = m.forward(a1, *alone);
  ForwardBatch a2;
  a2.add(1, p1, /*all_logits=*/true, /*prompt=*/true);
  const at::Tensor prompt1 = m.forward(a2, *alone);
  // Together: the decode slice first, then the prompt.
  auto both = make_contiguous_cache(m.cache_shape());
  both->add_sequence(0, 64);
  both->add_sequence(1, 64);
  CHECK(at::equal(m.forward(a0, *both), prompt0));
  ForwardBatch mixed;
  mixed.add(0, {next});
  mixed.add(1, p1, /*all_logits=*/true, /*prompt=*/true);
  const at::Tensor l = m.forward(mixed, *both);
  REQUIRE(l.size(0) == 1 + static_cast<int64_t>(p1.size()));
  CHECK(at::equal(l.narrow(0, 0, 1), decode0));
  CHECK(at::equal(l.narrow(0, 1, static_cast<int64_t>(p1.size())), prompt1));
  // The same tokens as decode rows take the int8 path: other bits where
  // prompt rows have a path of their own.
  auto plain = make_contiguous_cache(m.cache_shape());
  plain->add_sequence(1, 64);
  ForwardBatch d2;
  d2.add(1, p1, /*all_logits=*/true);
  const at::Tensor as_decode = m.forward(d2, *plain);
  {  // With the prompt path turned off, prompt rows are decode rows.
    set_bf16_prompt_override(false);
    auto off = make_contiguous_cache(m.cache_shape());
    off->add_sequence(1, 64);
    const at::Tensor prompt_off = m.forward(a2, *off);
    set_bf16_prompt_override(std::nullopt);
    CHECK(at::equal(prompt_off, as_decode));
  }
  if (bf16_prompt_rows()) {
    CHECK_FALSE(at::equal(as_decode, prompt1));
    const double err = worst_relative_error(as_decode, prompt1);
    INFO("bf16 vs int8 prompt rows: worst error " << err << " of a row's logit range");
    CHECK(err < 0.05);
  } else {
    CHECK(at::equal(as_decode, prompt1));
  }
}
