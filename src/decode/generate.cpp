#include "decode/generate.hpp"

#include <algorithm>
#include <chrono>

#include "cache/sequence_slots.hpp"
#include "core/error.hpp"

namespace udaci {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kLength: return "length";
    case FinishReason::kEos: return "eos";
    case FinishReason::kStopped: return "stop";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kRepetition: return "repetition";
  }
  return "?";
}

void check_generation_inputs(const LlamaModel& model, const std::vector<std::vector<int64_t>>& prompts,
                             const GenerationOptions& options) {
  UDACI_CHECK(options.max_new_tokens >= 0, "max_new_tokens must be >= 0, got {}",
              options.max_new_tokens);
  options.sampling.validate();
  const int64_t vocab = model.config().vocab_size;
  for (size_t i = 0; i < prompts.size(); ++i) {
    UDACI_CHECK(!prompts[i].empty(), "prompt {} is empty", i);
    for (int64_t t : prompts[i])
      UDACI_CHECK(t >= 0 && t < vocab, "prompt {} holds token id {}, outside the vocabulary of {}",
                  i, t, vocab);
  }
}

std::vector<GenerationResult> decode_sampled(const LlamaModel& model, CacheStrategy& cache,
                                       const std::vector<std::vector<int64_t>>& prompts,
                                       const GenerationOptions& options,
                                       const TokenCallback& on_token) {
  using Clock = std::chrono::steady_clock;
  check_generation_inputs(model, prompts, options);
  const int64_t vocab = model.config().vocab_size;

  const size_t n = prompts.size();
  std::vector<GenerationResult> results(n);
  if (n == 0 || options.max_new_tokens == 0) return results;

  // The cache may hold the caller's other sequences: take ids it does not use.
  std::vector<SeqId> slot(n);
  SequenceSlots slots(cache);
  for (size_t i = 0; i < n; ++i) {
    slot[i] = slots.add(static_cast<int64_t>(prompts[i].size()) + options.max_new_tokens);
    // A prefix-sharing cache may already hold the start of the prompt; the loop
    // below then feeds only the tokens from cached_length() on.
    cache.begin_prompt(slot[i], prompts[i]);
  }

  std::vector<std::vector<int64_t>> seqs = prompts;  // prompt + generated so far
  std::vector<Sampler> samplers(n, Sampler(options.sampling));
  std::vector<bool> live(n, true);
  bool first_step = true;
  std::vector<float> row(static_cast<size_t>(vocab));

  while (true) {
    ForwardBatch batch;
    std::vector<size_t> members;
    for (size_t i = 0; i < n; ++i) {
      if (!live[i]) continue;
      // Feed every token the cache does not hold yet: only the newest one for
      // a retaining cache, the whole sequence for NoCache.
      const int64_t held = cache.cached_length(slot[i]);
      std::vector<int64_t> fresh(seqs[i].begin() + held, seqs[i].end());
      batch.add(slot[i], fresh);
      members.push_back(i);
    }
    if (members.empty()) break;

    const auto t0 = Clock::now();
    at::Tensor logits = model.forward(batch, cache).contiguous();  // [members, vocab]
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();

    for (size_t r = 0; r < members.size(); ++r) {
      const size_t i = members[r];
      (first_step ? results[i].prefill_ms : results[i].decode_ms) += ms;
      const float* src = logits.data_ptr<float>() + static_cast<int64_t>(r) * vocab;
      std::copy(src, src + vocab, row.begin());
      const int64_t tok = samplers[i].sample(row.data(), vocab, seqs[i]);
      seqs[i].push_back(tok);
      results[i].tokens.push_back(tok);
      const bool eos = std::find(options.eos_ids.begin(), options.eos_ids.end(), tok) !=
                       options.eos_ids.end();
      bool keep_going = true;
      if (on_token) keep_going = on_token(i, tok);
      if (eos) {
        results[i].finish = FinishReason::kEos;
        live[i] = false;
      } else if (!keep_going) {
        results[i].finish = FinishReason::kStopped;
        live[i] = false;
      } else if (static_cast<int64_t>(results[i].tokens.size()) >= options.max_new_tokens) {
        results[i].finish = FinishReason::kLength;
        live[i] = false;
      }
      if (!live[i]) cache.free_sequence(slot[i]);
    }
    first_step = false;
  }
  return results;
}

}  // namespace udaci
