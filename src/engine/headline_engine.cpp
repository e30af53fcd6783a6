#include "engine/headline_engine.hpp"

#include <algorithm>
#include <chrono>

#include "core/error.hpp"
#include "engine/model_lookup.hpp"

namespace udaci {

namespace {

at::Device parse_device(const std::string& name) {
  if (name == "cpu") return at::kCPU;
  UDACI_CHECK(name == "cuda" || name.rfind("cuda:", 0) == 0,
              "device must be \"cpu\", \"cuda\" or \"cuda:N\", got \"{}\"", name);
  UDACI_CHECK_S(Status::kUnsupported, at::hasCUDA(),
                "device \"{}\": this build of LibTorch has no CUDA (or no GPU is visible)", name);
  try {
    return at::Device(name);
  } catch (const std::exception& e) {
    fail(Status::kInvalidArgument, "device \"{}\": {}", name, e.what());
  }
}

}  // namespace

HeadlineEngine::HeadlineEngine(const EngineConfig& config) {
  const at::Device device = parse_device(config.device);
  // Strategies first: a wrong name or option fails before any file is read.
  const StrategyRegistry& reg = builtin_strategies();
  parallel_ = reg.parallel_plans.create(config.parallel, config.parallel_options);
  pruner_ = reg.pruners.create(config.pruner, config.pruner_options);
  quantizer_ = reg.quantizers.create(config.quantizer, config.quantizer_options);
  decoder_ = reg.decoders.create(config.decoder, config.decoder_options);
  UDACI_CHECK(reg.caches.has(config.cache), "unknown cache strategy '{}'", config.cache);

  model_path_ = resolve_model_path(config.model_path);
  ModelFiles files = open_model(model_path_);
  model_format_ = files.format;
  // Load pipeline: split for this rank, prune, quantise, build, bind kernels.
  parallel_->shard(files.config, files.weights);
  prune_report_ = pruner_->prune(files.weights, files.config);
  quantize_report_ = quantizer_->quantize(files.weights);
  ModelOptions model_options{config.dtype, device, {}};
  const Quantizer* q = quantizer_.get();
  const Pruner* pr = pruner_.get();
  model_options.linear_factory = [q, pr](const LinearSpec& spec, const WeightStore& store,
                                         const ModelOptions& opt) {
    std::unique_ptr<LinearKernel> k = q->make_kernel(spec, store, opt);
    return k ? std::move(k) : pr->make_kernel(spec, store, opt);
  };
  model_ = std::make_unique<LlamaModel>(files.config, files.weights, model_options);
  tokenizer_ = std::make_unique<Tokenizer>(
      load_tokenizer(config.tokenizer_path.empty() ? model_path_ : config.tokenizer_path));
  UDACI_CHECK_S(Status::kBadModelFile, tokenizer_->vocab_size() <= files.config.vocab_size,
                "the tokenizer has {} tokens but the model's vocabulary only {}",
                tokenizer_->vocab_size(), files.config.vocab_size);
  PromptOptions po = config.prompt;
  if (po.chat.bos_token.empty() && tokenizer_->bos_id() >= 0)
    po.chat.bos_token = tokenizer_->id_to_token(tokenizer_->bos_id());
  if (po.chat.eos_token.empty() && tokenizer_->eos_id() >= 0)
    po.chat.eos_token = tokenizer_->id_to_token(tokenizer_->eos_id());
  const std::string& tmpl = po.use_chat_template ? tokenizer_->chat_template() : std::string();
  prompt_ = std::make_unique<PromptBuilder>(po, tmpl);
  cache_ = reg.caches.create(config.cache, config.cache_options, model_->cache_shape());
}

std::vector<std::string> HeadlineEngine::strategy_names() const {
  return {cache_->name(), quantizer_->name(), pruner_->name(), decoder_->name(), parallel_->name()};
}

std::vector<int64_t> HeadlineEngine::eos_ids() const {
  std::vector<int64_t> ids(model_->config().eos_token_ids.begin(), model_->config().eos_token_ids.end());
  for (int32_t id : tokenizer_->eos_ids())
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  return ids;
}

std::vector<int32_t> HeadlineEngine::prompt_ids(const std::string& summary) const {
  const std::string text = prompt_->build(summary);
  // A chat template prints BOS itself when the model wants it; the completion
  // prompt relies on the tokenizer's add_bos rule.
  const bool add_special = !prompt_->uses_chat_template();
  return tokenizer_->encode(text, add_special, /*parse_special=*/true);
}

std::vector<GenerationResult> HeadlineEngine::generate_ids(
    const std::vector<std::vector<int64_t>>& prompts, const GenerationOptions& options,
    const TokenCallback& on_token) const {
  std::lock_guard<std::mutex> lock(mu_);
  return decoder_->generate(*model_, *cache_, prompts, options, on_token);
}

std::vector<HeadlineResult> HeadlineEngine::generate(const std::vector<std::string>& summaries,
                                                     const HeadlineOptions& options) const {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  std::vector<HeadlineResult> results(summaries.size());
  std::vector<std::vector<int64_t>> prompts;
  prompts.reserve(summaries.size());
  for (size_t i = 0; i < summaries.size(); ++i) {
    results[i].prompt_ids = prompt_ids(summaries[i]);
    prompts.emplace_back(results[i].prompt_ids.begin(), results[i].prompt_ids.end());
  }
  GenerationOptions go;
  go.max_new_tokens = options.max_new_tokens;
  go.sampling = options.sampling;
  go.eos_ids = eos_ids();

  std::vector<Tokenizer::IncrementalDecoder> decoders;
  std::vector<std::string> text(summaries.size());
  std::vector<bool> cancelled(summaries.size(), false);
  for (size_t i = 0; i < summaries.size(); ++i) decoders.push_back(tokenizer_->incremental_decoder(true));
  auto on_token = [&](size_t i, int64_t tok) {
    const std::string piece = decoders[i].feed(static_cast<int32_t>(tok));
    text[i] += piece;
    if (options.on_text && !piece.empty() && !options.on_text(i, piece)) {
      cancelled[i] = true;
      return false;
    }
    // Stop once the text holds a complete headline line (an intro line such
    // as "Here is a headline:" does not count).
    return !(options.stop_at_newline && has_complete_headline(text[i]));
  };
  std::vector<GenerationResult> gen = generate_ids(prompts, go, on_token);
  const double wall = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  for (size_t i = 0; i < summaries.size(); ++i) {
    HeadlineResult& r = results[i];
    r.new_ids.assign(gen[i].tokens.begin(), gen[i].tokens.end());
    r.raw_text = tokenizer_->decode(r.new_ids, /*skip_special=*/true);
    r.headline = clean_headline(r.raw_text);
    r.finish = cancelled[i] ? FinishReason::kCancelled : gen[i].finish;
    r.prefill_ms = gen[i].prefill_ms;
    r.decode_ms = gen[i].decode_ms;
    r.latency_ms = wall;
  }
  return results;
}

}  // namespace udaci

namespace udaci {

bool HeadlineRequest::ready() const {
  // A request whose results were taken by get() stays ready.
  return !future_.valid() || future_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

void HeadlineRequest::wait() const {
  if (future_.valid()) future_.wait();
}

std::vector<HeadlineResult> HeadlineRequest::get() {
  UDACI_CHECK(future_.valid(), "HeadlineRequest::get() called twice");
  return future_.get();
}

HeadlineRequest HeadlineEngine::submit(std::vector<std::string> summaries, HeadlineOptions options) const {
  HeadlineRequest req;
  req.cancelled_ = std::make_shared<std::atomic<bool>>(false);
  auto flag = req.cancelled_;
  // The caller's streaming callback still runs; cancellation is checked first.
  auto user_cb = std::move(options.on_text);
  options.on_text = [flag, user_cb](size_t i, const std::string& piece) {
    if (flag->load()) return false;
    return user_cb ? user_cb(i, piece) : true;
  };
  req.future_ = std::async(std::launch::async, [this, summaries = std::move(summaries),
                                                options = std::move(options)] {
    return generate(summaries, options);
  });
  return req;
}

int64_t HeadlineEngine::cache_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cache_->bytes_reserved();
}

int64_t HeadlineEngine::cache_peak_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cache_->peak_bytes_reserved();
}

CacheStats HeadlineEngine::cache_stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cache_->stats();
}

void HeadlineEngine::reset_cache_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  cache_->reset_peak();
}

}  // namespace udaci
