#include "engine/headline_engine.hpp"

#include <cstring>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>

#include "core/threads.hpp"
#include "core/error.hpp"
#include "core/strings.hpp"
#include "quant/stored_format.hpp"
#include "engine/model_builder.hpp"
#include "engine/model_lookup.hpp"
#include "parallel/communicator.hpp"

namespace udaci {

HeadlineEngine::HeadlineEngine(const EngineConfig& requested, TokenizerNeed need) : config_(requested) {
  // Everything checkable without a file first: a wrong name, option or
  // setting fails before anything is read.
  config_.validate();
  const EngineConfig& config = config_;
  at::Device device = parse_device(config.device);
  const StrategyRegistry& reg = builtin_strategies();
  parallel_ = reg.parallel_plans.create(config.parallel, config.parallel_options);
  // Ranks of one machine share its GPUs: "cuda" means the rank's own one.
  if (device.is_cuda() && !device.has_index() && parallel_->world_size() > 1)
    device = at::Device(at::kCUDA, static_cast<at::DeviceIndex>(dist_env_from_environment().local_rank));
  pruner_ = reg.pruners.create(config.pruner, config.pruner_options);
  decoder_ = reg.decoders.create(config.decoder, config.decoder_options);

  model_path_ = resolve_model_path(config.model_path);
  config_.model_path = model_path_;
  ModelFiles files = open_model(model_path_);
  model_format_ = files.format;
  // as-stored: a GGUF's blocks run in place where their kernels can (CPU, whole
  // tensors); anything else is bound by "none", which runs udaci's own
  // quantised artefacts as stored and dequantises the rest.
  if (config.quantizer == "auto") {
    const bool native = files.format == "gguf" && device.is_cpu() && !parallel_->slices_weights();
    config_.quantizer = native ? "gguf-native" : "none";
    config_.quantizer_options = StrategyOptions{};
  }
  quantizer_ = reg.quantizers.create(config.quantizer, config.quantizer_options);
  UDACI_CHECK_S(Status::kUnsupported, !(parallel_->slices_weights() && quantizer_->runs_stored_blocks()),
                "parallel plan '{}' gives each rank slices of the weights; quantizer '{}' runs a file's "
                "blocks in place and cannot run on slices: use int8, int4, nf4 or none",
                parallel_->name(), quantizer_->name());
  UDACI_CHECK(config.max_prompt_tokens >= 0 && config.max_memory_bytes >= 0,
              "max_prompt_tokens and max_memory_bytes must be >= 0 (0: no cap), got {} and {}",
              config.max_prompt_tokens, config.max_memory_bytes);
  max_prompt_tokens_ = config.max_prompt_tokens;
  SchedulerOptions scheduler_options = config.scheduler;
  ModelBuild build;
  build.quantizer = quantizer_.get();
  build.pruner = pruner_.get();
  build.plan = parallel_.get();
  build.dtype = config.dtype;
  build.device = device;
  if (config.max_memory_bytes > 0) {
    // Before anything is materialised: refuse what does not fit, and leave
    // the rest to the K/V cache.
    build.check_weights = [&](const WeightStore& weights) {
      const int64_t bytes = estimate_resident_weight_bytes(weights, config.dtype, quantizer_->runs_stored_blocks());
      const double mib = 1024.0 * 1024.0;
      UDACI_CHECK_S(Status::kOutOfMemory, bytes < config.max_memory_bytes,
                    "model '{}' needs about {:.1f} MiB for its weights (quantizer '{}', dtype {}), "
                    "over the memory cap of {:.1f} MiB (max_memory_bytes): use a quantizer or raise "
                    "the cap",
                    model_path_, bytes / mib, config.quantizer, c10::toString(config.dtype),
                    config.max_memory_bytes / mib);
      const int64_t left = config.max_memory_bytes - bytes;
      scheduler_options.max_cache_bytes = scheduler_options.max_cache_bytes > 0
                                              ? std::min(scheduler_options.max_cache_bytes, left)
                                              : left;
    };
  }
  BuiltModel built = build_model(files.config, files.weights, build);
  model_ = std::move(built.model);
  prune_report_ = built.prune;
  quantize_report_ = built.quantize;
  try {
    tokenizer_ = std::make_unique<Tokenizer>(
        load_tokenizer(config.tokenizer_path.empty() ? model_path_ : config.tokenizer_path));
  } catch (const Error& e) {
    if (need == TokenizerNeed::kRequired || e.status() != Status::kNotFound) throw;
    no_tokenizer_ = e.what();
  }
  if (tokenizer_) {
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
  }
  // A decoder may need models of its own (a speculative draft): loaded like
  // this one, with the given quantizer, on the same device and dtype.
  DecoderContext dc;
  dc.model_path = model_path_;
  dc.model = model_.get();
  const at::ScalarType dtype = config.dtype;
  dc.load_model = [dtype, device](const std::string& path,
                                  const std::string& quantizer) -> std::shared_ptr<const LlamaModel> {
    ModelFiles f = open_model(resolve_model_path(path));
    return build_quantized_model(f.config, f.weights, quantizer, StrategyOptions{}, dtype, device);
  };
  decoder_->prepare(dc);
  cache_ = parallel_->wrap_cache(reg.caches.create(config.cache, config.cache_options, model_->cache_shape()));
  if (config.max_memory_bytes > 0) {
    // One sequence of a short prompt and headline must fit, or nothing ever would.
    const int64_t one = cache_->bytes_for_tokens(256);
    UDACI_CHECK_S(Status::kOutOfMemory, one <= scheduler_options.max_cache_bytes,
                  "the memory cap (max_memory_bytes {}) leaves {} bytes for the K/V cache after the "
                  "weights, less than one sequence of 256 tokens needs ({} bytes)",
                  config.max_memory_bytes, scheduler_options.max_cache_bytes, one);
  }
  scheduler_ = std::make_unique<Scheduler>(*model_, *cache_, scheduler_options);
  // Only once everything has loaded: a failed build changes nothing.
  if (config.threads > 0) set_threads(config.threads);
}

int64_t estimate_resident_weight_bytes(const WeightStore& store, at::ScalarType dtype,
                                       bool native_gguf_blocks) {
  const int64_t elem = static_cast<int64_t>(c10::elementSize(dtype));
  int64_t total = 0;
  for (const std::string& name : store.names()) {
    const TensorEntry& e = store.entry(name);
    bool as_stored = false;
    switch (e.type) {
      case WeightType::kI8:
      case WeightType::kU8: as_stored = true; break;  // int8 / int4 / nf4 / 2:4 parts
      case WeightType::kQ4_0:
      case WeightType::kQ4_1:
      case WeightType::kQ8_0:
      case WeightType::kQ5_0:
      case WeightType::kQ5_1:
      case WeightType::kQ4_K:
      case WeightType::kQ5_K:
      case WeightType::kQ6_K: as_stored = native_gguf_blocks; break;
      case WeightType::kF16:
      case WeightType::kBF16:  // projections kept 16-bit under gguf-native with fp32 compute
        as_stored = native_gguf_blocks && e.shape.size() == 2 && dtype == at::kFloat;
        break;
      default: break;
    }
    // Scales and minimums of the quantised formats stay as they are.
    if (is_quant_companion(name) || ends_with(name, "_sparse_values")) as_stored = true;
    total += as_stored ? static_cast<int64_t>(e.nbytes) : e.numel() * elem;
  }
  return total;
}

HeadlineEngine::~HeadlineEngine() {
  scheduler_.reset();  // finishes or cancels every request first
  if (parallel_) parallel_->shutdown();
}

bool HeadlineEngine::leader() const { return parallel_->leader(); }

int HeadlineEngine::rank() const { return parallel_->rank(); }

void HeadlineEngine::cancel_all() const { scheduler_->cancel_all(); }

void HeadlineEngine::serve() const { parallel_->serve(*model_, *cache_); }

ParallelStats HeadlineEngine::parallel_stats() const { return parallel_->stats(); }

std::vector<std::string> HeadlineEngine::strategy_names() const {
  return {cache_->name(), quantizer_->name(), pruner_->name(), decoder_->name(), parallel_->name()};
}

const Tokenizer& HeadlineEngine::tokenizer() const {
  UDACI_CHECK_S(Status::kNotFound, tokenizer_ != nullptr, "{}", no_tokenizer_);
  return *tokenizer_;
}

const PromptBuilder& HeadlineEngine::prompt_builder() const {
  UDACI_CHECK_S(Status::kNotFound, prompt_ != nullptr, "{}", no_tokenizer_);
  return *prompt_;
}

std::vector<int64_t> HeadlineEngine::eos_ids() const {
  std::vector<int64_t> ids(model_->config().eos_token_ids.begin(), model_->config().eos_token_ids.end());
  if (!tokenizer_) return ids;
  for (int32_t id : tokenizer_->eos_ids())
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  return ids;
}

std::vector<int32_t> HeadlineEngine::prompt_ids(const std::string& summary) const {
  const std::string text = prompt_builder().build(summary);
  // A chat template prints BOS itself when the model wants it; the completion
  // prompt relies on the tokenizer's add_bos rule.
  const bool add_special = !prompt_->uses_chat_template();
  std::vector<int32_t> ids = tokenizer_->encode(text, add_special, /*parse_special=*/true);
  UDACI_CHECK(max_prompt_tokens_ == 0 || static_cast<int64_t>(ids.size()) <= max_prompt_tokens_,
              "the prompt is {} tokens (a summary of {} bytes), over the limit of {} "
              "(max_prompt_tokens)",
              ids.size(), summary.size(), max_prompt_tokens_);
  return ids;
}

SequenceJob HeadlineEngine::batch_job(std::vector<int64_t> prompt, const GenerationOptions& options) const {
  SequenceJob job;
  job.prompt = std::move(prompt);
  job.options = options;
  decoder_->one_token_per_step(job.options);  // greedy: the sampling options it ignores, cleared
  job.footprint = decoder_->footprint();
  const Decoder* d = decoder_.get();
  const GenerationOptions go = job.options;
  job.start = [d, go](const StepContext& ctx) { return d->start_sequence(go, ctx); };
  return job;
}

std::vector<GenerationResult> HeadlineEngine::generate_ids(
    const std::vector<std::vector<int64_t>>& prompts, const GenerationOptions& options,
    const TokenCallback& on_token) const {
  if (!decoder_->runs_in_batch()) {
    std::vector<GenerationResult> out;
    scheduler_->run_exclusive([&](CacheStrategy& cache) {
      out = decoder_->decode(*model_, cache, prompts, options, on_token);
    });
    return out;
  }
  std::vector<SequenceJob> jobs(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    jobs[i] = batch_job(prompts[i], options);
    if (on_token) jobs[i].on_token = [&on_token, i](int64_t tok) { return on_token(i, tok); };
  }
  std::promise<std::vector<GenerationResult>> promise;
  std::future<std::vector<GenerationResult>> done = promise.get_future();
  scheduler_->submit(std::move(jobs), nullptr,
                     [&promise](std::vector<GenerationResult>& results, std::exception_ptr error) {
                       if (error) {
                         promise.set_exception(error);
                       } else {
                         promise.set_value(std::move(results));
                       }
                     });
  return done.get();
}

namespace {

// When the last n of `ids` repeat a run of n tokens that starts earlier
// (overlapping runs count: a token repeated n + 1 times is a loop too), the
// length of the longest such repeated tail, i.e. where the repeat began;
// 0 when the last n tokens repeat nothing.
// `same` compares two tokens when the occurrences are extended backwards
// (the first word of a text has no leading space where its repeats do).
int64_t repeated_tail(const std::vector<int64_t>& ids, int64_t n,
                      const std::function<bool(int64_t, int64_t)>& same) {
  const int64_t m = static_cast<int64_t>(ids.size());
  if (n <= 0 || m < n + 1) return 0;
  const auto tail = ids.end() - n;
  int64_t best = 0;
  for (int64_t j = 0; j + n < m; ++j) {
    if (!std::equal(tail, ids.end(), ids.begin() + j)) continue;
    // Extend both occurrences backwards while they agree.
    int64_t len = n;
    while (j - (len - n) - 1 >= 0 &&
           same(ids[static_cast<size_t>(j - (len - n) - 1)], ids[static_cast<size_t>(m - len - 1)]))
      ++len;
    best = std::max(best, len);
  }
  return best;
}

// A headline cut before a repeat often ends in the repeat's first word
// where the first occurrence had another ("The Gays for Trump: A", "Liz
// Cambage: L") and in a separator: both go ("The Gays for Trump", "Liz
// Cambage"). Only a short last word (4 bytes or less) after ':', ',', ';' or
// a dash is dropped, so a real last word stays.
std::string trim_cut_headline(std::string h) {
  auto strip_tail = [&h] {
    while (!h.empty() && std::strchr(" :,;-", h.back()) != nullptr) h.pop_back();
    const std::string dash = "\xe2\x80\x94";  // em dash
    while (h.size() >= dash.size() && h.compare(h.size() - dash.size(), dash.size(), dash) == 0) {
      h.resize(h.size() - dash.size());
      while (!h.empty() && h.back() == ' ') h.pop_back();
    }
  };
  strip_tail();
  const size_t space = h.find_last_of(' ');
  if (space != std::string::npos && space > 0 && h.size() - space - 1 <= 4 &&
      std::strchr(":,;-", h[space - 1]) != nullptr) {
    h.resize(space);
    strip_tail();
  }
  return h;
}

}  // namespace

// The state of one generate()/submit() call while its summaries are decoded;
// the token callbacks and the completion run on the scheduler thread.
struct HeadlineEngine::Pending {
  HeadlineOptions options;
  std::vector<HeadlineResult> results;
  std::vector<Tokenizer::IncrementalDecoder> decoders;
  std::vector<std::string> text;
  std::vector<char> stopped;  // on_text (or cancel) ended it
  std::vector<std::vector<int64_t>> ids;  // new tokens so far, per summary
  std::vector<int64_t> keep;              // repetition stop: tokens kept, or -1
  const Tokenizer* tokenizer = nullptr;
  std::shared_ptr<std::atomic<bool>> cancelled;
  std::chrono::steady_clock::time_point t0;
  std::promise<std::vector<HeadlineResult>> promise;

  // Two tokens the repetition stop takes as one word: equal, or the same
  // text but for leading spaces.
  bool same_word(int64_t a, int64_t b) const {
    if (a == b) return true;
    auto bare = [this](int64_t t) {
      std::string s = tokenizer->decode(std::vector<int32_t>{static_cast<int32_t>(t)}, true);
      s.erase(0, s.find_first_not_of(' '));
      return s;
    };
    const std::string x = bare(a);
    return !x.empty() && x == bare(b);
  }

  // Where the repetition stop would have cut `tokens` had they streamed
  // through on_token (the tokens kept), or -1: a beam's n best come whole
  // from the search and get the same cut as the headline.
  int64_t repetition_cut(const std::vector<int64_t>& tokens) const {
    if (options.repetition_stop <= 0) return -1;
    const auto same = [this](int64_t a, int64_t b) { return same_word(a, b); };
    std::vector<int64_t> prefix;
    for (int64_t t : tokens) {
      prefix.push_back(t);
      const int64_t repeat = repeated_tail(prefix, options.repetition_stop, same);
      if (repeat > 0) return static_cast<int64_t>(prefix.size()) - repeat;
    }
    return -1;
  }

  bool on_token(size_t i, int64_t tok) {
    if (cancelled && cancelled->load()) {
      stopped[i] = 1;
      return false;
    }
    ids[i].push_back(tok);
    if (options.repetition_stop > 0) {
      const auto same = [this](int64_t a, int64_t b) { return same_word(a, b); };
      const int64_t repeat = repeated_tail(ids[i], options.repetition_stop, same);
      if (repeat > 0) {
        keep[i] = static_cast<int64_t>(ids[i].size()) - repeat;  // cut where the repeat began
        return false;
      }
    }
    const std::string piece = decoders[i].feed(static_cast<int32_t>(tok));
    text[i] += piece;
    if (options.on_text && !piece.empty() && !options.on_text(i, piece)) {
      stopped[i] = 1;
      return false;
    }
    // Stop once the text holds a complete headline line (an intro line such
    // as "Here is a headline:" does not count).
    return !(options.stop_at_newline && has_complete_headline(text[i]));
  }
};

std::future<std::vector<HeadlineResult>> HeadlineEngine::enqueue(
    const std::vector<std::string>& summaries, const HeadlineOptions& options,
    std::shared_ptr<std::atomic<bool>> cancelled) const {
  UDACI_CHECK(options.repetition_stop == HeadlineOptions::kEngineDefault ||
                  (options.repetition_stop >= 0 && options.repetition_stop <= HeadlineOptions::kMaxRepetitionStop),
              "repetition_stop must be 0 (off), 1 to {} tokens or {} (the engine's), got {}",
              HeadlineOptions::kMaxRepetitionStop, HeadlineOptions::kEngineDefault, options.repetition_stop);
  auto p = std::make_shared<Pending>();
  p->t0 = std::chrono::steady_clock::now();
  p->options = options;
  if (p->options.repetition_stop == HeadlineOptions::kEngineDefault)
    p->options.repetition_stop = config_.generation.repetition_stop;
  p->cancelled = cancelled;
  const size_t n = summaries.size();
  p->results.resize(n);
  std::vector<std::vector<int64_t>> prompts;
  prompts.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    p->results[i].prompt_ids = prompt_ids(summaries[i]);  // throws for a bad summary
    prompts.emplace_back(p->results[i].prompt_ids.begin(), p->results[i].prompt_ids.end());
    p->decoders.push_back(tokenizer().incremental_decoder(true));
  }
  p->text.resize(n);
  p->stopped.assign(n, 0);
  p->ids.resize(n);
  p->tokenizer = &tokenizer();
  p->keep.assign(n, -1);
  GenerationOptions go;
  go.max_new_tokens = options.max_new_tokens;
  go.sampling = options.sampling;
  go.eos_ids = eos_ids();
  if (options.stop_at_newline) {
    // For decoders that only settle their tokens at the end (beam search).
    const Tokenizer* tok = tokenizer_.get();
    go.is_complete = [tok](const std::vector<int64_t>& ids) {
      return has_complete_headline(tok->decode(std::vector<int32_t>(ids.begin(), ids.end()), true));
    };
  }
  std::future<std::vector<HeadlineResult>> future = p->promise.get_future();

  auto finalize = [this, p](std::vector<GenerationResult>& gen, std::exception_ptr error) {
    if (error) {
      p->promise.set_exception(error);
      return;
    }
    try {
      const double wall =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - p->t0).count();
      for (size_t i = 0; i < p->results.size(); ++i) {
        HeadlineResult& r = p->results[i];
        const int64_t keep = p->stopped[i] ? -1 : p->keep[i];
        const auto end = keep >= 0 && keep < static_cast<int64_t>(gen[i].tokens.size())
                             ? gen[i].tokens.begin() + keep
                             : gen[i].tokens.end();
        r.new_ids.assign(gen[i].tokens.begin(), end);
        r.raw_text = tokenizer_->decode(r.new_ids, /*skip_special=*/true);
        r.headline = clean_headline(r.raw_text);
        if (keep >= 0) {
          const std::string trimmed = trim_cut_headline(r.headline);
          if (!trimmed.empty()) r.headline = trimmed;
        }
        r.finish = p->stopped[i] ? FinishReason::kCancelled : keep >= 0 ? FinishReason::kRepetition : gen[i].finish;
        r.prefill_ms = gen[i].prefill_ms;
        r.decode_ms = gen[i].decode_ms;
        r.latency_ms = gen[i].latency_ms > 0 ? gen[i].latency_ms : wall;
        r.queue_ms = gen[i].queue_ms;
        r.drafted = gen[i].drafted;
        r.accepted = gen[i].accepted;
        r.candidates.clear();
        if (gen[i].n_best.size() > 1) {
          for (const Hypothesis& h : gen[i].n_best) {
            HeadlineCandidate hc;
            const int64_t cut = p->repetition_cut(h.tokens);
            hc.new_ids.assign(h.tokens.begin(), cut >= 0 ? h.tokens.begin() + cut : h.tokens.end());
            hc.headline = clean_headline(tokenizer_->decode(hc.new_ids, /*skip_special=*/true));
            if (cut >= 0) {
              const std::string trimmed = trim_cut_headline(hc.headline);
              if (!trimmed.empty()) hc.headline = trimmed;
            }
            hc.score = h.score;
            hc.finish = cut >= 0 ? FinishReason::kRepetition : h.finish;
            r.candidates.push_back(std::move(hc));
          }
        }
      }
      p->promise.set_value(std::move(p->results));
    } catch (...) {
      p->promise.set_exception(std::current_exception());
    }
  };

  if (decoder_->runs_in_batch()) {
    std::vector<SequenceJob> jobs(n);
    for (size_t i = 0; i < n; ++i) {
      jobs[i] = batch_job(std::move(prompts[i]), go);
      jobs[i].on_token = [p, i](int64_t tok) { return p->on_token(i, tok); };
    }
    scheduler_->submit(std::move(jobs), std::move(cancelled), finalize);
  } else {
    // A decoder that drives the model itself runs alone, in queue order.
    scheduler_->submit_exclusive([this, p, prompts = std::move(prompts), go, finalize](CacheStrategy& cache) {
      std::vector<GenerationResult> gen;
      std::exception_ptr error;
      const double queued =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - p->t0).count();
      try {
        gen = decoder_->decode(*model_, cache, prompts, go,
                                 [p](size_t i, int64_t tok) { return p->on_token(i, tok); });
        for (GenerationResult& g : gen) g.queue_ms = queued;
      } catch (...) {
        error = std::current_exception();
      }
      finalize(gen, error);
    });
  }
  return future;
}

std::vector<HeadlineResult> HeadlineEngine::generate(const std::vector<std::string>& summaries,
                                                     const HeadlineOptions& options) const {
  return enqueue(summaries, options, nullptr).get();
}

}  // namespace udaci

namespace udaci {

bool PendingHeadlines::ready() const {
  // A request whose results were taken by get() stays ready.
  return !future_.valid() || future_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

bool PendingHeadlines::wait_for(std::chrono::milliseconds timeout) const {
  return !future_.valid() || future_.wait_for(timeout) == std::future_status::ready;
}

void PendingHeadlines::wait() const {
  if (future_.valid()) future_.wait();
}

std::vector<HeadlineResult> PendingHeadlines::get() {
  UDACI_CHECK(future_.valid(), "PendingHeadlines::get() called twice");
  return future_.get();
}

PendingHeadlines HeadlineEngine::submit(std::vector<std::string> summaries, HeadlineOptions options) const {
  PendingHeadlines req;
  req.cancelled_ = std::make_shared<std::atomic<bool>>(false);
  try {
    req.future_ = enqueue(summaries, options, req.cancelled_);
  } catch (...) {
    std::promise<std::vector<HeadlineResult>> failed;
    req.future_ = failed.get_future();
    failed.set_exception(std::current_exception());
  }
  return req;
}

int64_t HeadlineEngine::cache_bytes() const {
  return scheduler_->with_cache([](const CacheStrategy& c) { return c.bytes_reserved(); });
}

int64_t HeadlineEngine::cache_peak_bytes() const {
  return scheduler_->with_cache([](const CacheStrategy& c) { return c.peak_bytes_reserved(); });
}

CacheStats HeadlineEngine::cache_stats() const {
  return scheduler_->with_cache([](const CacheStrategy& c) { return c.stats(); });
}

void HeadlineEngine::reset_cache_peak() {
  scheduler_->with_mutable_cache([](CacheStrategy& c) { c.reset_peak(); });
}

}  // namespace udaci
