// The `udaci` command-line tool: info, generate, bench-forward.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <thread>

#include "cache/cache_strategy.hpp"
#include "core/compat.hpp"
#include "core/error.hpp"
#include "decode/generate.hpp"
#include "io/model_loader.hpp"
#include "model/llama_model.hpp"

namespace {

using namespace udaci;
using nlohmann::json;

at::ScalarType parse_dtype(const std::string& s) {
  if (s == "fp32" || s == "float32") return at::kFloat;
  if (s == "bf16" || s == "bfloat16") return at::kBFloat16;
  if (s == "fp16" || s == "float16") return at::kHalf;
  fail(Status::kInvalidArgument, "--dtype must be fp32, bf16 or fp16, got '{}'", s);
}

std::unique_ptr<CacheStrategy> make_cache(const std::string& name, const CacheShape& shape) {
  if (name == "contiguous") return make_contiguous_cache(shape);
  if (name == "none") return make_no_cache(shape);
  fail(Status::kInvalidArgument, "--cache must be contiguous or none, got '{}'", name);
}

std::vector<int64_t> parse_ids(const std::string& text) {
  std::vector<int64_t> ids;
  std::string s = text;
  std::replace(s.begin(), s.end(), ',', ' ');
  std::istringstream in(s);
  std::string tok;
  while (in >> tok) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(tok, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    UDACI_CHECK(used == tok.size() && v >= 0, "--ids: '{}' is not a token id", tok);
    ids.push_back(v);
  }
  UDACI_CHECK(!ids.empty(), "--ids: no token ids given");
  return ids;
}

int default_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int cmd_info(const std::string& model_path) {
  ModelFiles m = open_model(model_path);
  const ModelConfig& c = m.config;
  json out;
  out["path"] = m.path;
  out["format"] = m.format;
  out["config"] = {{"vocab_size", c.vocab_size},
                   {"hidden_size", c.hidden_size},
                   {"intermediate_size", c.intermediate_size},
                   {"num_hidden_layers", c.num_layers},
                   {"num_attention_heads", c.num_heads},
                   {"num_key_value_heads", c.num_kv_heads},
                   {"head_dim", c.head_dim},
                   {"max_position_embeddings", c.max_position_embeddings},
                   {"rms_norm_eps", c.rms_norm_eps},
                   {"rope_theta", c.rope_theta},
                   {"rope_scaling", c.rope_scaling.type},
                   {"tie_word_embeddings", c.tie_word_embeddings},
                   {"bos_token_id", c.bos_token_id},
                   {"eos_token_ids", c.eos_token_ids}};
  out["parameters"] = m.weights.total_elements();
  out["tensors"] = m.weights.size();
  json bytes = json::object();
  uint64_t total = 0;
  for (const auto& kv : m.weights.bytes_by_type()) {
    bytes[weight_type_name(kv.first)] = kv.second;
    total += kv.second;
  }
  out["bytes_by_dtype"] = bytes;
  out["bytes_total"] = total;
  std::cout << out.dump(2) << "\n";
  return 0;
}

struct GenerateArgs {
  std::string model;
  std::string ids;
  std::string dtype = "fp32";
  std::string cache = "contiguous";
  int64_t max_new_tokens = 32;
  float temperature = 0.0f;
  int64_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  uint64_t seed = 0;
  bool stream = false;
  bool ignore_eos = false;
};

int cmd_generate(const GenerateArgs& a) {
  ModelFiles m = open_model(a.model);
  ModelOptions mo;
  mo.dtype = parse_dtype(a.dtype);
  LlamaModel model(m.config, m.weights, mo);
  auto cache = make_cache(a.cache, model.cache_shape());
  GenerationOptions go;
  go.max_new_tokens = a.max_new_tokens;
  go.sampling.temperature = a.temperature;
  go.sampling.top_k = a.top_k;
  go.sampling.top_p = a.top_p;
  go.sampling.min_p = a.min_p;
  go.sampling.repetition_penalty = a.repetition_penalty;
  go.sampling.seed = a.seed;
  if (!a.ignore_eos) go.eos_ids = m.config.eos_token_ids;
  TokenCallback cb;
  if (a.stream) {
    cb = [](size_t, int64_t tok) {
      std::fprintf(stderr, "%lld ", static_cast<long long>(tok));
      std::fflush(stderr);
      return true;
    };
  }
  auto results = generate(model, *cache, {parse_ids(a.ids)}, go, cb);
  if (a.stream) std::fprintf(stderr, "\n");
  const GenerationResult& r = results.at(0);
  json out = {{"tokens", r.tokens},
              {"finish_reason", finish_reason_name(r.finish)},
              {"prefill_ms", r.prefill_ms},
              {"decode_ms", r.decode_ms}};
  std::cout << out.dump() << "\n";
  return 0;
}

struct BenchArgs {
  std::string shape = "llama-3.2-1b";
  std::string dtype = "fp32";
  int64_t prompt = 128;
  int64_t gen = 32;
  int repeats = 3;
  uint64_t seed = 0;
};

int cmd_bench_forward(const BenchArgs& a, int threads) {
  using Clock = std::chrono::steady_clock;
  const ModelConfig c = preset_config(a.shape);
  const at::ScalarType dt = parse_dtype(a.dtype);
  UDACI_CHECK(a.prompt > 0 && a.gen > 0 && a.repeats > 0,
              "--prompt, --gen and --repeats must be positive");
  auto t_load = Clock::now();
  WeightStore store = random_weights(c, dt, a.seed);
  LlamaModel model(c, store, ModelOptions{dt, at::kCPU});
  const double load_s = std::chrono::duration<double>(Clock::now() - t_load).count();
  auto cache = make_contiguous_cache(model.cache_shape());

  std::vector<int64_t> prompt(static_cast<size_t>(a.prompt));
  for (int64_t i = 0; i < a.prompt; ++i) prompt[static_cast<size_t>(i)] = (i * 7919 + 13) % c.vocab_size;

  std::vector<double> prefill_tps, decode_tps;
  for (int rep = 0; rep < a.repeats + 1; ++rep) {  // first pass warms up
    cache->add_sequence(0, a.prompt + a.gen);
    ForwardBatch pb;
    pb.add(0, prompt);
    auto t0 = Clock::now();
    at::Tensor logits = model.forward(pb, *cache);
    auto t1 = Clock::now();
    int64_t tok = logits.argmax(-1).item<int64_t>();
    for (int64_t g = 0; g < a.gen; ++g) {
      ForwardBatch db;
      db.add(0, {tok});
      tok = model.forward(db, *cache).argmax(-1).item<int64_t>();
    }
    auto t2 = Clock::now();
    cache->free_sequence(0);
    if (rep == 0) continue;
    prefill_tps.push_back(a.prompt / std::chrono::duration<double>(t1 - t0).count());
    decode_tps.push_back(a.gen / std::chrono::duration<double>(t2 - t1).count());
  }
  json out = {{"shape", a.shape},
              {"dtype", a.dtype},
              {"parameters", c.parameter_count()},
              {"weight_bytes", model.weight_bytes()},
              {"threads", threads},
              {"prompt_tokens", a.prompt},
              {"new_tokens", a.gen},
              {"repeats", a.repeats},
              {"load_s", load_s},
              {"prefill_tok_s_median", median(prefill_tps)},
              {"decode_tok_s_median", median(decode_tps)},
              {"prefill_tok_s", prefill_tps},
              {"decode_tok_s", decode_tps}};
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"udaci: news headlines with Llama-architecture models"};
  app.require_subcommand(1);
  int threads = default_threads();
  app.add_option("--threads", threads, "ATen intra-op threads (default: all cores)")
      ->check(CLI::Range(1, 1024));

  std::string info_model;
  auto* info = app.add_subcommand("info", "print a model's config, parameter count and bytes by dtype");
  info->add_option("--model", info_model, "Hugging Face folder, .safetensors or .gguf")->required();

  GenerateArgs ga;
  auto* gen = app.add_subcommand("generate", "continue a prompt of token ids");
  gen->add_option("--model", ga.model, "Hugging Face folder, .safetensors or .gguf")->required();
  gen->add_option("--ids", ga.ids, "prompt token ids, comma or space separated")->required();
  gen->add_option("--max-new-tokens", ga.max_new_tokens, "tokens to generate")->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  gen->add_option("--dtype", ga.dtype, "fp32, bf16 or fp16");
  gen->add_option("--cache", ga.cache, "contiguous or none (recompute the prefix every step)");
  gen->add_option("--temperature", ga.temperature, "0 = greedy");
  gen->add_option("--top-k", ga.top_k, "0 = off");
  gen->add_option("--top-p", ga.top_p, "1 = off");
  gen->add_option("--min-p", ga.min_p, "0 = off");
  gen->add_option("--repetition-penalty", ga.repetition_penalty, "1 = off");
  gen->add_option("--seed", ga.seed, "sampling seed");
  gen->add_flag("--stream", ga.stream, "print each token id to stderr as it is generated");
  gen->add_flag("--ignore-eos", ga.ignore_eos, "do not stop at the model's EOS ids");

  BenchArgs ba;
  auto* bench = app.add_subcommand(
      "bench-forward", "prefill and decode tokens/s of a random-weight model of a known shape");
  bench->add_option("--shape", ba.shape, "llama-3.2-1b or smollm2-135m");
  bench->add_option("--dtype", ba.dtype, "fp32, bf16 or fp16");
  bench->add_option("--prompt", ba.prompt, "prompt tokens");
  bench->add_option("--gen", ba.gen, "decode steps");
  bench->add_option("--repeats", ba.repeats, "measured repetitions (after one warm-up)");
  bench->add_option("--seed", ba.seed, "weight seed");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    compat::set_threads(threads);
    if (*info) return cmd_info(info_model);
    if (*gen) return cmd_generate(ga);
    if (*bench) return cmd_bench_forward(ba, threads);
  } catch (const udaci::Error& e) {
    std::fprintf(stderr, "udaci: error (%s): %s\n", status_name(e.status()), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "udaci: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
