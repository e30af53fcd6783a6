// The slot decoder on the CPU (its ATen path): the same logits as
// LlamaModel::forward with a contiguous cache, step by step, for sequences at
// different positions decoded together; and its argument checks. The CUDA
// test runs the same scenario with CUDA graphs (tests/cuda).
#include "udaci_catch.hpp"

#include "core/error.hpp"
#include "model/model_loader.hpp"
#include "slot_decoder_check.hpp"

using namespace udaci;

namespace {

std::shared_ptr<const LlamaModel> small_model(at::ScalarType dtype) {
  const ModelConfig c = udaci_test::small_llama(97, 32, 48, 4, 2, 8);
  const WeightStore store = random_weights(c, dtype, 7, 0.3);
  ModelOptions o;
  o.dtype = dtype;
  return std::make_shared<const LlamaModel>(c, store, o);
}

Status status_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.status();
  }
  return Status::kOk;
}

}  // namespace

TEST_CASE("slot decoder: CPU logits equal LlamaModel::forward's, sequences at different positions",
          "[unit][slot_decoder]") {
  auto dec = udaci_test::check_slot_decoder_matches_model(small_model(at::kFloat), /*graphs=*/true, 1e-5);
  CHECK(dec->graphs_captured() == 0);  // graphs are a CUDA matter; the CPU step runs eagerly
}

TEST_CASE("slot decoder: bf16 on the CPU stays within bf16 rounding of the model", "[unit][slot_decoder]") {
  udaci_test::check_slot_decoder_matches_model(small_model(at::kBFloat16), false, 3e-2);
}

TEST_CASE("slot decoder: bad slots, tokens and sizes are refused with invalid_argument", "[unit][slot_decoder]") {
  auto model = small_model(at::kFloat);
  SlotDecoderOptions o;
  o.slots = 2;
  o.capacity = 4;
  auto dec = make_slot_decoder(model, o);
  auto invalid = [](const std::function<void()>& f) { return status_of(f) == Status::kInvalidArgument; };
  CHECK(invalid([&] { dec->prefill(2, {1}); }));
  CHECK(invalid([&] { dec->prefill(-1, {1}); }));
  CHECK(invalid([&] { dec->prefill(0, {}); }));
  CHECK(invalid([&] { dec->prefill(0, {1, 2, 3, 4, 5}); }));  // over the capacity
  CHECK(invalid([&] { dec->prefill(0, {97}); }));             // outside the vocabulary
  dec->prefill(0, {1, 2, 3});
  dec->prefill(1, {4});
  CHECK(invalid([&] { dec->decode({0, 0}, {1, 2}); }));  // one slot twice
  CHECK(invalid([&] { dec->decode({0}, {1, 2}); }));
  CHECK(invalid([&] { dec->decode({0, 1, 1}, {1, 2, 3}); }));
  CHECK(invalid([&] { dec->decode({0}, {-1}); }));
  CHECK(dec->decode({0, 1}, {5, 6}).sizes() == at::IntArrayRef({2, 97}));
  CHECK(dec->length(0) == 4);
  CHECK(dec->length(1) == 2);
  CHECK(invalid([&] { dec->decode({0}, {5}); }));  // slot 0 is full
  CHECK(dec->length(0) == 4);
  dec->prefill(0, {9});  // a new prompt empties the slot first
  CHECK(dec->length(0) == 1);
  CHECK(dec->decode({0}, {5}).size(0) == 1);
  o.slots = 0;
  CHECK(invalid([&] { make_slot_decoder(model, o); }));
  o.slots = 1;
  o.capacity = 0;
  CHECK(invalid([&] { make_slot_decoder(model, o); }));
}

TEST_CASE("slot decoder: op timing reports every part of the decode step, per step", "[unit][slot_decoder]") {
  auto model = small_model(at::kFloat);
  SlotDecoderOptions o;
  o.slots = 2;
  o.capacity = 16;
  o.graphs = false;
  o.op_timing = true;
  auto dec = make_slot_decoder(model, o);
  dec->prefill(0, {1, 2, 3});
  CHECK(dec->op_times().empty());  // prefill is not timed
  at::Tensor plain;
  {
    SlotDecoderOptions p = o;
    p.op_timing = false;
    auto ref = make_slot_decoder(model, p);
    ref->prefill(0, {1, 2, 3});
    ref->prefill(1, {4});
    plain = ref->decode({0, 1}, {5, 6});
    CHECK(ref->op_times().empty());
  }
  dec->prefill(1, {4});
  const at::Tensor timed = dec->decode({0, 1}, {5, 6});
  CHECK(at::equal(timed, plain));  // timing changes nothing computed
  dec->decode({0}, {7});
  const std::vector<SlotOpTime> t = dec->op_times();
  std::vector<std::string> ops;
  for (const SlotOpTime& e : t) {
    ops.push_back(e.op);
    CHECK(e.ms_per_step >= 0.0);
  }
  const std::vector<std::string> expected = {"embedding",      "attn_norm",    "qkv_proj",
                                             "rope+kv_write",  "attention",    "o_proj+residual",
                                             "mlp_norm",       "gate_up_proj+silu", "down_proj+residual",
                                             "final_norm+lm_head"};
  CHECK(ops == expected);
  dec->reset_op_times();
  CHECK(dec->op_times().empty());
  // A replayed CUDA graph has no parts: op timing with graphs is refused.
  o.graphs = true;
  CHECK(status_of([&] { make_slot_decoder(model, o); }) == (model->options().device.is_cuda()
                                                                ? Status::kInvalidArgument
                                                                : Status::kOk));
}
