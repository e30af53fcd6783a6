// The greedy / sampled SequenceDecoder and decode_alone(), the loop in which
// a decoder's own decode() runs its SequenceDecoder one sequence at a time
// (the engine's scheduler runs the same SequenceDecoders in its batch).
#include <algorithm>
#include <chrono>

#include "cache/sequence_slots.hpp"
#include "core/error.hpp"
#include "decode/decoder.hpp"

namespace udaci {

namespace {

class SampledSequence final : public SequenceDecoder {
 public:
  SampledSequence(const SamplingOptions& sampling, const StepContext& context)
      : sampler_(sampling), ctx_(context), row_(static_cast<size_t>(context.vocab)) {}

  void rows(const std::vector<int64_t>& tokens, int64_t, std::vector<StepRows>& out) override {
    // Every token the cache lacks: the newest for a retaining cache, the
    // whole sequence for one that keeps nothing.
    const int64_t held = ctx_.cache->cached_length(ctx_.slot);
    out.push_back({ctx_.slot, std::vector<int64_t>(tokens.begin() + held, tokens.end()), false});
  }

  StepOutcome consume(const float* logits, int64_t n_rows, const std::vector<int64_t>& tokens) override {
    const float* last = logits + (n_rows - 1) * ctx_.vocab;
    std::copy(last, last + ctx_.vocab, row_.begin());  // sample() modifies its row
    StepOutcome o;
    o.tokens.push_back(sampler_.sample(row_.data(), ctx_.vocab, tokens));
    return o;
  }

 private:
  Sampler sampler_;
  StepContext ctx_;
  std::vector<float> row_;
};

}  // namespace

std::unique_ptr<SequenceDecoder> make_sampled_sequence(const SamplingOptions& sampling,
                                                       const StepContext& context) {
  return std::make_unique<SampledSequence>(sampling, context);
}

namespace {

// One prompt of decode_sequences().
struct Running {
  size_t index = 0;
  std::unique_ptr<SequenceSlots> slots;
  StepContext ctx;
  std::unique_ptr<SequenceDecoder> seq;
  std::vector<int64_t> tokens;  // prompt + kept tokens
  std::vector<StepRows> rows;   // of the next pass
  bool first = true;
  bool live = true;
};

// Applies one consume() outcome to a sequence: the scheduler's rule (EOS,
// the callback, max_new_tokens; a search's answer whole).
void apply(Running& r, StepOutcome& o, GenerationResult& res, const GenerationOptions& options,
           const TokenCallback& on_token) {
  res.drafted += o.drafted;
  res.accepted += o.accepted;
  if (o.final) {
    res.tokens = o.tokens;
    res.finish = o.finish;
    res.n_best = std::move(o.n_best);
    // A search's tokens are final only now: streamed at once.
    if (on_token)
      for (int64_t t : res.tokens) on_token(r.index, t);
    r.live = false;
    return;
  }
  for (int64_t tok : o.tokens) {
    r.tokens.push_back(tok);
    res.tokens.push_back(tok);
    const bool eos = std::find(options.eos_ids.begin(), options.eos_ids.end(), tok) != options.eos_ids.end();
    const bool go_on = on_token ? on_token(r.index, tok) : true;
    if (eos) {
      res.finish = FinishReason::kEos;
    } else if (!go_on) {
      res.finish = FinishReason::kStopped;
    } else if (static_cast<int64_t>(res.tokens.size()) >= options.max_new_tokens) {
      res.finish = FinishReason::kLength;
    } else {
      continue;
    }
    r.live = false;
    return;
  }
}

}  // namespace

void decode_sequences(const SequenceStarter& start, const SequenceFootprint& footprint, const LlamaModel& model,
                      CacheStrategy& cache, const std::vector<std::vector<int64_t>>& prompts,
                      const std::vector<size_t>& which, const GenerationOptions& options,
                      const TokenCallback& on_token, std::vector<GenerationResult>& results) {
  using Clock = std::chrono::steady_clock;
  std::vector<Running> run(which.size());
  for (size_t j = 0; j < which.size(); ++j) {
    Running& r = run[j];
    r.index = which[j];
    const std::vector<int64_t>& prompt = prompts[r.index];
    // The cache may hold the caller's other sequences: ids it does not use,
    // freed however this ends.
    r.slots = std::make_unique<SequenceSlots>(cache);
    SequenceSlots* slots = r.slots.get();
    r.ctx.cache = &cache;
    r.ctx.slot = slots->add(static_cast<int64_t>(prompt.size()) + options.max_new_tokens + footprint.extra_tokens);
    r.ctx.new_slot = [slots] { return slots->reserve(); };
    r.ctx.vocab = model.config().vocab_size;
    // A prefix-sharing cache may hold the start of the prompt already; the
    // first pass then feeds only the tokens from cached_length() on.
    cache.begin_prompt(r.ctx.slot, prompt);
    r.tokens = prompt;
  }
  for (Running& r : run) {
    r.seq = start(r.ctx);
    UDACI_CHECK_S(Status::kInternal, r.seq != nullptr, "no sequence decoder");
    const int64_t held = cache.cached_length(r.ctx.slot);
    r.rows.push_back({r.ctx.slot, std::vector<int64_t>(r.tokens.begin() + held, r.tokens.end()), false, true});
  }
  for (;;) {
    ForwardBatch batch;
    std::vector<Running*> members;
    for (Running& r : run) {
      if (!r.live) continue;
      for (const StepRows& row : r.rows) batch.add(row.slot, row.tokens, row.all_logits, row.prompt);
      members.push_back(&r);
    }
    if (members.empty()) break;
    const auto t0 = Clock::now();
    at::Tensor logits = model.forward(batch, cache).contiguous();
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    const float* p = logits.data_ptr<float>();
    for (Running* r : members) {
      GenerationResult& res = results[r->index];
      (r->first ? res.prefill_ms : res.decode_ms) += ms;
      r->first = false;
      int64_t n = 0;
      for (const StepRows& row : r->rows) n += row.all_logits ? static_cast<int64_t>(row.tokens.size()) : 1;
      StepOutcome o = r->seq->consume(p, n, r->tokens);
      p += n * logits.size(1);
      apply(*r, o, res, options, on_token);
      if (!r->live) {
        r->seq.reset();  // it may free cache sequences of its own
        r->slots.reset();
        continue;
      }
      r->rows.clear();
    }
    // Work the live sequences share (a draft model's passes) first, then
    // each one's rows.
    std::vector<StepWork*> works;
    for (Running* r : members) {
      if (!r->live) continue;
      StepWork* w = r->seq->prepare(r->tokens, -1);
      if (w != nullptr && std::find(works.begin(), works.end(), w) == works.end()) works.push_back(w);
    }
    for (StepWork* w : works) w->run();
    for (Running* r : members)
      if (r->live) r->seq->rows(r->tokens, -1, r->rows);
  }
}

std::vector<GenerationResult> decode_alone(const Decoder& decoder, const LlamaModel& model, CacheStrategy& cache,
                                           const std::vector<std::vector<int64_t>>& prompts,
                                           const GenerationOptions& options, const TokenCallback& on_token) {
  check_generation_inputs(model, prompts, options);
  std::vector<GenerationResult> results(prompts.size());
  if (options.max_new_tokens == 0) return results;
  const SequenceStarter start = [&](const StepContext& ctx) { return decoder.start_sequence(options, ctx); };
  for (size_t i = 0; i < prompts.size(); ++i)
    decode_sequences(start, decoder.footprint(), model, cache, prompts, {i}, options, on_token, results);
  return results;
}

}  // namespace udaci
