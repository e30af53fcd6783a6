// `udaci bench-forward`: prefill and decode tokens/s of a random-weight model
// of a preset shape, through a quantizer's kernels, straight on the model (no
// engine, no scheduler). One JSON object of medians and per-repeat rates.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>

#include "cache/cache_strategy.hpp"
#include "core/error.hpp"
#include "engine/model_builder.hpp"
#include "model/llama_model.hpp"
#include "model/model_loader.hpp"
#include "model/slot_decoder.hpp"
#include "tools/cli/common.hpp"

namespace udaci::cli {

namespace {

using nlohmann::json;

struct BenchArgs {
  std::string shape = "llama-3.2-1b";
  std::string dtype = "fp32";
  int64_t prompt = 128;
  int64_t gen = 32;
  int repeats = 3;
  uint64_t seed = 0;
  std::string quantizer = "none";
  std::vector<std::string> quantizer_opts;
  std::string device = "cpu";
  int64_t batch = 1;
  std::string decoder = "model";
  bool op_timing = false;
  bool no_fuse = false;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int cmd_bench_forward(const BenchArgs& a, int threads) {
  using Clock = std::chrono::steady_clock;
  const ModelConfig c = preset_config(a.shape);
  const at::ScalarType dt = parse_dtype(a.dtype);
  UDACI_CHECK(a.prompt > 0 && a.gen > 0 && a.repeats > 0 && a.batch > 0,
              "--prompt, --gen, --repeats and --batch must be positive");
  const at::Device device = parse_device(a.device);
  auto t_load = Clock::now();
  WeightStore store = random_weights(c, dt, a.seed);
  // The engine's load pipeline with the quantizer alone.
  ModelConfig config = c;
  const std::shared_ptr<const LlamaModel> built = build_quantized_model(
      config, store, a.quantizer, parse_strategy_options(a.quantizer_opts, "--quantizer-opt"), dt, device);
  const LlamaModel& model = *built;
  const double load_s = std::chrono::duration<double>(Clock::now() - t_load).count();
  auto cache = make_contiguous_cache(model.cache_shape());

  // --batch sequences, each with its own prompt, prefilled in one pass and
  // then decoded together one token each per step. Next tokens are read back
  // to the host every step (as generation does), which also synchronises a
  // GPU, so the clocks measure finished work.
  std::vector<std::vector<int64_t>> prompts(static_cast<size_t>(a.batch));
  for (int64_t s = 0; s < a.batch; ++s)
    for (int64_t i = 0; i < a.prompt; ++i)
      prompts[static_cast<size_t>(s)].push_back((i * 7919 + 13 + s * 104729) % c.vocab_size);
  auto next_tokens = [](const at::Tensor& logits) {
    at::Tensor ids = logits.argmax(-1).to(at::kCPU).contiguous();
    return std::vector<int64_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
  };

  // --decoder slots|graphs: the slot decoder (model/slot_decoder.hpp) holds
  // the K/V instead of the cache; each prompt is prefilled alone, and every
  // decode step is one pass over all sequences (a CUDA graph with graphs).
  std::unique_ptr<SlotDecoder> slots;
  UDACI_CHECK_S(Status::kUnsupported, a.decoder != "graphs" || device.is_cuda(),
                "--decoder graphs captures CUDA graphs: it needs --device cuda (slots runs anywhere)");
  UDACI_CHECK(!a.op_timing || a.decoder == "slots",
              "--op-timing times the parts of the slot decoder's eager step: it needs --decoder slots");
  if (a.decoder != "model") {
    SlotDecoderOptions so;
    so.slots = a.batch;
    so.capacity = a.prompt + a.gen;
    so.graphs = a.decoder == "graphs";
    so.op_timing = a.op_timing;
    so.fused = !a.no_fuse;
    slots = make_slot_decoder(built, so);
  }
  std::vector<int64_t> slot_ids(static_cast<size_t>(a.batch));
  for (int64_t s = 0; s < a.batch; ++s) slot_ids[static_cast<size_t>(s)] = s;

  std::vector<double> prefill_tps, decode_tps, prefill_s;
  for (int rep = 0; rep < a.repeats + 1; ++rep) {  // first pass warms up (and captures graphs)
    auto t0 = Clock::now();
    std::vector<int64_t> tok;
    if (slots) {
      for (int64_t s = 0; s < a.batch; ++s)
        tok.push_back(next_tokens(slots->prefill(s, prompts[static_cast<size_t>(s)]))[0]);
    } else {
      ForwardBatch pb;
      for (int64_t s = 0; s < a.batch; ++s) {
        cache->add_sequence(s, a.prompt + a.gen);
        pb.add(s, prompts[static_cast<size_t>(s)], false, /*prompt=*/true);
      }
      tok = next_tokens(model.forward(pb, *cache));
    }
    auto t1 = Clock::now();
    for (int64_t g = 0; g < a.gen; ++g) {
      if (slots) {
        tok = next_tokens(slots->decode(slot_ids, tok));
        continue;
      }
      ForwardBatch db;
      for (int64_t s = 0; s < a.batch; ++s) db.add(s, {tok[static_cast<size_t>(s)]});
      tok = next_tokens(model.forward(db, *cache));
    }
    auto t2 = Clock::now();
    if (!slots)
      for (int64_t s = 0; s < a.batch; ++s) cache->free_sequence(s);
    if (rep == 0) {
      if (slots) slots->reset_op_times();  // the warm-up's first calls (cuBLAS set-up) are not counted
      continue;
    }
    const double ps = std::chrono::duration<double>(t1 - t0).count();
    prefill_s.push_back(ps);
    prefill_tps.push_back(static_cast<double>(a.batch * a.prompt) / ps);
    decode_tps.push_back(static_cast<double>(a.batch * a.gen) / std::chrono::duration<double>(t2 - t1).count());
  }
  json out = {{"shape", a.shape},
              {"dtype", a.dtype},
              {"device", device.str()},
              {"batch", a.batch},
              {"decoder", a.decoder},
              {"fused", slots != nullptr && !a.no_fuse},
              {"graphs_captured", slots ? slots->graphs_captured() : 0},
              {"quantizer", a.quantizer},
              {"parameters", c.parameter_count()},
              {"weight_bytes", model.weight_bytes()},
              {"threads", threads},
              {"prompt_tokens", a.prompt},
              {"new_tokens", a.gen},
              {"repeats", a.repeats},
              {"load_s", load_s},
              {"prefill_tok_s_median", median(prefill_tps)},
              // At --batch 1: time to first token (prefill + the first argmax).
              {"prefill_s_median", median(prefill_s)},
              {"decode_tok_s_median", median(decode_tps)},
              {"prefill_tok_s", prefill_tps},
              {"decode_tok_s", decode_tps}};
  if (a.op_timing) {
    // Mean milliseconds per decode step of each part, summed over the layers.
    json ops = json::array();
    double total = 0.0;
    for (const SlotOpTime& t : slots->op_times()) {
      ops.push_back({{"op", t.op}, {"ms_per_step", t.ms_per_step}});
      total += t.ms_per_step;
    }
    out["op_ms_per_step"] = ops;
    out["op_ms_per_step_total"] = total;
  }
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace

CommandRun setup_bench_forward(CLI::App& sub) {
  auto a = std::make_shared<BenchArgs>();
  sub.add_option("--shape", a->shape, "llama-3.2-1b or smollm2-135m");
  sub.add_option("--dtype", a->dtype, "fp32, bf16 or fp16");
  sub.add_option("--prompt", a->prompt, "prompt tokens");
  sub.add_option("--gen", a->gen, "decode steps");
  sub.add_option("--repeats", a->repeats, "measured repetitions (after one warm-up)");
  sub.add_option("--seed", a->seed, "weight seed");
  sub.add_option("--quantizer", a->quantizer, "int8, int4, nf4 or none (gguf-native needs a GGUF)");
  sub.add_option("--quantizer-opt", a->quantizer_opts, "quantizer option key=value (repeatable)")
      ->allow_extra_args(false);
  sub.add_option("--device", a->device, "cpu, cuda or cuda:N");
  sub.add_option("--batch", a->batch, "sequences prefilled and decoded together")
      ->check(CLI::Range(int64_t{1}, int64_t{1024}));
  sub.add_option("--decoder", a->decoder,
                 "model: LlamaModel::forward over a contiguous cache; slots: the slot decoder (K/V in "
                 "fixed slots, one pass per step); graphs: the slot decoder with CUDA graphs (CUDA only)")
      ->check(CLI::IsMember({"model", "slots", "graphs"}));
  sub.add_flag("--no-fuse", a->no_fuse,
               "with --decoder slots|graphs on CUDA: the model's kernels for every projection instead of the "
               "fused decode kernels (q/k/v in one launch, residual and SwiGLU inside the GEMV)");
  sub.add_flag("--op-timing", a->op_timing,
               "with --decoder slots: the mean time per decode step of each part of the step (norms, "
               "projections, rotary + K/V write, attention, LM head; CUDA events on a GPU), in the JSON");
  return [a](const GlobalOptions& global) { return cmd_bench_forward(*a, global.threads); };
}

}  // namespace udaci::cli
