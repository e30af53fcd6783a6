// The slot decoder (model/slot_decoder.hpp) against LlamaModel::forward over
// a contiguous cache, shared by the CPU unit test and the CUDA test (there
// with CUDA graphs): three prompts of different lengths prefilled into slots
// of a four-slot decoder, then decode steps that alternate between all three
// sequences (in another order than their slots) and one of them, so the rows
// of a step sit at different positions and a graph step is padded (3 rows to
// the bucket of 4). Both sides continue with the reference's greedy tokens;
// every logit row must agree to `tol` of the reference row's range.
#pragma once

#include "udaci_catch.hpp"

#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "cache/cache_strategy.hpp"
#include "model/llama_model.hpp"
#include "model/slot_decoder.hpp"

namespace udaci_test {

// A small tied Llama config (GQA: heads / kv_heads query heads per KV head).
inline udaci::ModelConfig small_llama(int64_t vocab, int64_t hidden, int64_t intermediate, int64_t heads,
                                      int64_t kv_heads, int64_t head_dim) {
  udaci::ModelConfig c;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = intermediate;
  c.num_layers = 2;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.rope_theta = 10000;
  c.tie_word_embeddings = true;
  c.validate("test");
  return c;
}

inline double range_tol(const at::Tensor& ref, double tol) {
  return tol * (ref.max() - ref.min()).item<double>();
}

// Runs the scenario above; returns the decoder (for its graph count).
inline std::unique_ptr<udaci::SlotDecoder> check_slot_decoder_matches_model(
    const std::shared_ptr<const udaci::LlamaModel>& model, bool graphs, double tol, int steps = 6) {
  using namespace udaci;
  const int64_t vocab = model->config().vocab_size;
  SlotDecoderOptions so;
  so.slots = 4;
  so.capacity = 32;
  so.graphs = graphs;
  std::unique_ptr<SlotDecoder> dec = make_slot_decoder(model, so);
  auto cache = make_contiguous_cache(model->cache_shape());
  const std::vector<std::vector<int64_t>> prompts = {
      {1, 17, 33, 2, 90}, {7}, {3, 11, 40, 41, 5, 66, 12, 9, 30}};
  // Sequence i lives in slot slot_of[i] (slot 2 stays empty).
  const std::vector<int64_t> slot_of = {3, 0, 1};
  std::vector<int64_t> next(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::vector<int64_t> p = prompts[i];
    for (int64_t& t : p) t %= vocab;
    cache->add_sequence(static_cast<int64_t>(i), so.capacity);
    ForwardBatch b;
    b.add(static_cast<int64_t>(i), p);
    const at::Tensor ref = model->forward(b, *cache).cpu();
    const at::Tensor got = dec->prefill(slot_of[i], p).cpu();
    REQUIRE(got.sizes() == ref.sizes());
    CHECK((got - ref).abs().max().item<double>() <= range_tol(ref, tol));
    CHECK(dec->length(slot_of[i]) == static_cast<int64_t>(p.size()));
    next[i] = ref.argmax(-1).item<int64_t>();
  }
  for (int step = 0; step < steps; ++step) {
    INFO("decode step " << step);
    const std::vector<size_t> seqs = step % 2 == 0 ? std::vector<size_t>{2, 0, 1} : std::vector<size_t>{1};
    ForwardBatch b;
    std::vector<int64_t> slots, tokens;
    for (size_t i : seqs) {
      b.add(static_cast<int64_t>(i), {next[i]});
      slots.push_back(slot_of[i]);
      tokens.push_back(next[i]);
    }
    const at::Tensor ref = model->forward(b, *cache).cpu();
    const at::Tensor got = dec->decode(slots, tokens).cpu();
    REQUIRE(got.sizes() == ref.sizes());
    for (int64_t r = 0; r < ref.size(0); ++r) {
      INFO("row " << r);
      CHECK((got[r] - ref[r]).abs().max().item<double>() <= range_tol(ref[r], tol));
    }
    for (size_t j = 0; j < seqs.size(); ++j) next[seqs[j]] = ref[static_cast<int64_t>(j)].argmax(-1).item<int64_t>();
  }
  for (size_t i = 0; i < prompts.size(); ++i)
    CHECK(dec->length(slot_of[i]) == cache->cached_length(static_cast<int64_t>(i)));
  CHECK(dec->length(2) == 0);
  return dec;
}

}  // namespace udaci_test
