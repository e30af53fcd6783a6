// Decoding inside the batch (issue #25): beam search, speculative decoding
// (prompt lookup, a model draft) and sampled requests run in the scheduler's
// shared steps next to greedy ones. Each request gets exactly what its decoder
// gives alone (batch-invariant mode; in the default mode too on these models),
// requests of every kind from 16 threads at once do not disturb each other,
// and 10,000 random mixed requests with cancellations, callback stops and
// errors leave no cache block in use.
#include "udaci_catch.hpp"

#include <algorithm>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "cache/paged_cache.hpp"
#include "core/strategy_options.hpp"
#include "decode/beam_search.hpp"
#include "decode/generate.hpp"
#include "decode/speculative.hpp"
#include "engine/registry.hpp"
#include "engine/scheduler.hpp"
#include "model/llama_model.hpp"
#include "test_util.hpp"

using namespace udaci;
using udaci_test::Golden;
using udaci_test::load_golden;
using udaci_test::make_cache;

namespace {

// The kinds of request in the mixed workload.
enum Kind { kGreedy, kSampling, kBeam, kSpecLookup, kSpecModel, kKinds };
const char* kind_name(int k) {
  static const char* names[] = {"greedy", "sampling", "beam-4", "spec-lookup", "spec-model"};
  return names[k];
}

struct Decoders {
  std::unique_ptr<Decoder> sampling, beam, spec_lookup, spec_model;
  std::shared_ptr<DraftBatch> draft_batch;
  explicit Decoders(const LlamaModel& model) : draft_batch(make_draft_batch(model)) {
    sampling = builtin_strategies().decoders.create("sampling", StrategyOptions{});
    beam = std::make_unique<BeamSearchDecoder>(
        BeamOptions::from(StrategyOptions(std::map<std::string, std::string>{{"width", "4"}, {"n_best", "2"}})));
    spec_lookup = std::make_unique<SpeculativeDecoder>(
        SpeculativeOptions::from(StrategyOptions{}),
        [](const SamplingOptions&) { return make_prompt_lookup_draft(3, 1); });
    // A model draft (the target itself: every draft is kept under greedy,
    // so rounds verify several tokens), the sequences drafting in a step in
    // one pass of it.
    std::shared_ptr<DraftBatch> batch = draft_batch;
    spec_model = std::make_unique<SpeculativeDecoder>(
        SpeculativeOptions::from(StrategyOptions(std::map<std::string, std::string>{{"k", "3"}})),
        [&model, batch](const SamplingOptions& s) { return make_model_draft(model, s, false, batch); });
  }
  const Decoder* of(int kind) const {
    switch (kind) {
      case kSampling: return sampling.get();
      case kBeam: return beam.get();
      case kSpecLookup: return spec_lookup.get();
      case kSpecModel: return spec_model.get();
      default: return nullptr;  // greedy: the scheduler's own one-token step
    }
  }
};

GenerationOptions options_for(int kind, int64_t n_new, uint64_t seed) {
  GenerationOptions o;
  o.max_new_tokens = n_new;
  o.eos_ids = {2};
  if (kind == kSampling) {
    o.sampling.temperature = 0.9f;
    o.sampling.top_k = 20;
    o.sampling.seed = seed;
  }
  return o;
}

SequenceJob job_for(const Decoders& d, int kind, const std::vector<int64_t>& prompt, const GenerationOptions& o) {
  SequenceJob j;
  j.prompt = prompt;
  j.options = o;
  if (const Decoder* dec = d.of(kind)) {
    j.footprint = dec->footprint();
    j.start = [dec, o](const StepContext& ctx) { return dec->start_sequence(o, ctx); };
  }
  return j;
}

// What the request gets alone: the decoder's own decode() (greedy: the plain loop).
GenerationResult alone(const Decoders& d, int kind, const LlamaModel& model, CacheStrategy& cache,
                       const std::vector<int64_t>& prompt, const GenerationOptions& o) {
  if (const Decoder* dec = d.of(kind)) return dec->decode(model, cache, {prompt}, o, {})[0];
  return decode_sampled(model, cache, {prompt}, o)[0];
}

std::vector<std::vector<int64_t>> make_prompts(const Golden& g, size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int64_t vocab = g.files.config.vocab_size;
  std::vector<std::vector<int64_t>> out;
  for (size_t i = 0; i < n; ++i) {
    std::vector<int64_t> p(g.prompt.begin(), g.prompt.begin() + std::min<size_t>(g.prompt.size(), 4 + i % 12));
    const size_t extra = 1 + rng() % 20;
    for (size_t j = 0; j < extra; ++j) p.push_back(static_cast<int64_t>(3 + rng() % (vocab - 3)));
    // A repeated stretch, so that prompt lookup finds drafts.
    if (i % 3 == 0) p.insert(p.end(), p.begin(), p.begin() + std::min<size_t>(p.size(), 6));
    out.push_back(p);
  }
  return out;
}

struct Submitted {
  int kind;
  std::vector<int64_t> prompt;
  GenerationOptions options;
  std::promise<std::vector<GenerationResult>> promise;
  std::future<std::vector<GenerationResult>> future = promise.get_future();
};

}  // namespace

TEST_CASE("batch decoding: beam, speculative, sampled and greedy requests from 16 threads share steps and "
          "each gets what its decoder gives alone",
          "[scheduler][batch-decoding]") {
  Golden g = load_golden("tiny-gqa-tied");
  LlamaModel model(g.files.config, g.files.weights, ModelOptions{at::kFloat, at::kCPU});
  const Decoders decoders(model);
  const auto prompts = make_prompts(g, 48, 3);
  for (const bool invariant : {true, false}) {
    for (const std::string cache_name : {"contiguous", "paged", "paged-prefix"}) {
      INFO((invariant ? "batch-invariant" : "default") << " mode, cache " << cache_name);
      auto cache = make_cache(cache_name, model.cache_shape(), {});
      SchedulerOptions so;
      so.batch_invariant = invariant;
      so.prefill_chunk = 64;
      Scheduler s(model, *cache, so);

      // 16 threads, 3 requests each, kinds in turn.
      std::vector<std::unique_ptr<Submitted>> subs;
      for (size_t i = 0; i < prompts.size(); ++i) {
        auto sub = std::make_unique<Submitted>();
        sub->kind = static_cast<int>(i % kKinds);
        sub->prompt = prompts[i];
        sub->options = options_for(sub->kind, 6 + static_cast<int64_t>(i % 7), 100 + i);
        subs.push_back(std::move(sub));
      }
      std::vector<std::thread> threads;
      for (int t = 0; t < 16; ++t) {
        threads.emplace_back([&, t] {
          for (size_t i = static_cast<size_t>(t); i < subs.size(); i += 16) {
            Submitted* sub = subs[i].get();
            s.submit({job_for(decoders, sub->kind, sub->prompt, sub->options)}, nullptr,
                     [sub](std::vector<GenerationResult>& r, std::exception_ptr e) {
                       if (e) {
                         sub->promise.set_exception(e);
                       } else {
                         sub->promise.set_value(r);
                       }
                     });
          }
        });
      }
      for (auto& t : threads) t.join();

      auto ref_cache = make_cache("contiguous", model.cache_shape());
      std::map<int, int> seen;
      for (const auto& sub : subs) {
        const std::vector<GenerationResult> got = sub->future.get();
        REQUIRE(got.size() == 1);
        const GenerationResult want = alone(decoders, sub->kind, model, *ref_cache, sub->prompt, sub->options);
        INFO(kind_name(sub->kind) << " prompt of " << sub->prompt.size() << " tokens");
        CHECK(got[0].tokens == want.tokens);
        CHECK(got[0].finish == want.finish);
        if (sub->kind == kBeam) {
          REQUIRE(got[0].n_best.size() == want.n_best.size());
          for (size_t h = 0; h < want.n_best.size(); ++h) {
            CHECK(got[0].n_best[h].tokens == want.n_best[h].tokens);
            CHECK(got[0].n_best[h].score == Approx(want.n_best[h].score).margin(1e-4));
          }
        }
        ++seen[sub->kind];
      }
      CHECK(seen.size() == kKinds);
      const SchedulerStats st = s.stats();
      CHECK(st.peak_running > 4);  // they did run together
      CHECK(st.running == 0);
      CHECK(s.with_cache([](const CacheStrategy& c) { return c.bytes_reserved(); }) == 0);
      if (cache_name != "contiguous") {
        s.with_cache([](const CacheStrategy& c) {
          dynamic_cast<const PagedCache&>(c).check_invariants();
          CHECK(c.stats().blocks_in_use == 0);
          return 0;
        });
      }
      // The speculative requests verified drafts in the shared steps.
      CHECK(decoders.spec_model->stats().rounds > 0);
      CHECK(decoders.spec_model->stats().accepted > 0);
      CHECK(decoders.spec_lookup->stats().rounds > 0);
      // Sequences drafting in the same step shared the draft model's passes.
      CHECK(draft_batch_passes(*decoders.draft_batch) < decoders.spec_model->stats().draft_sequence_passes);
    }
  }
}

TEST_CASE("batch decoding: the sequences that draft in a step share the draft model's passes",
          "[scheduler][batch-decoding][speculative]") {
  Golden g = load_golden("tiny-gqa-tied");
  LlamaModel model(g.files.config, g.files.weights, ModelOptions{at::kFloat, at::kCPU});
  const auto prompts = make_prompts(g, 8, 11);
  for (const bool sampled : {false, true}) {
    INFO((sampled ? "sampled" : "greedy") << " requests");
    std::shared_ptr<DraftBatch> batch = make_draft_batch(model);
    // follow_load=0: every sequence drafts every step (the cost model would
    // stop drafting under a full batch).
    const SpeculativeOptions so = SpeculativeOptions::from(
        StrategyOptions(std::map<std::string, std::string>{{"k", "3"}, {"follow_load", "0"}}));
    SpeculativeDecoder shared(so, [&model, batch](const SamplingOptions& s) {
      return make_model_draft(model, s, false, batch);
    });
    SpeculativeDecoder solo(so, [&model](const SamplingOptions& s) { return make_model_draft(model, s); });
    auto cache = make_cache("contiguous", model.cache_shape());
    Scheduler s(model, *cache, SchedulerOptions{});
    std::vector<SequenceJob> jobs;
    std::vector<GenerationOptions> opts;
    for (size_t i = 0; i < prompts.size(); ++i) {
      GenerationOptions o = options_for(sampled ? kSampling : kGreedy, 10, 7 + i);
      opts.push_back(o);
      SequenceJob j;
      j.prompt = prompts[i];
      j.options = o;
      j.footprint = shared.footprint();
      j.start = [&shared, o](const StepContext& ctx) { return shared.start_sequence(o, ctx); };
      jobs.push_back(std::move(j));
    }
    std::promise<std::vector<GenerationResult>> done;
    auto fut = done.get_future();
    s.submit(std::move(jobs), nullptr, [&done](std::vector<GenerationResult>& r, std::exception_ptr e) {
      if (e) {
        done.set_exception(e);
      } else {
        done.set_value(r);
      }
    });
    const std::vector<GenerationResult> got = fut.get();
    REQUIRE(got.size() == prompts.size());
    const int64_t passes = draft_batch_passes(*batch);
    const DecoderStats st = shared.stats();
    INFO("draft passes " << passes << ", per sequence summed " << st.draft_sequence_passes);
    // Eight sequences drafting together: well under one pass each.
    CHECK(passes > 0);
    CHECK(passes * 3 <= st.draft_sequence_passes);
    CHECK(st.drafted > 0);
    if (!sampled) {
      // Greedy: each request's tokens are its tokens alone, drafted alone.
      auto ref = make_cache("contiguous", model.cache_shape());
      for (size_t i = 0; i < prompts.size(); ++i) {
        const GenerationResult want = solo.decode(model, *ref, {prompts[i]}, opts[i], {})[0];
        CHECK(got[i].tokens == want.tokens);
        const GenerationResult plain = decode_sampled(model, *ref, {prompts[i]}, opts[i])[0];
        CHECK(got[i].tokens == plain.tokens);
      }
      // The target itself drafts: greedy keeps nearly every draft.
      CHECK(st.accepted * 10 >= st.drafted * 9);
    } else {
      for (const GenerationResult& r : got) CHECK(!r.tokens.empty());
    }
    // Every sequence left both caches when its request ended.
    CHECK(s.with_cache([](const CacheStrategy& c) { return c.bytes_reserved(); }) == 0);
    CHECK(draft_batch_bytes(*batch) == 0);
  }
}

TEST_CASE("batch decoding: a beam request's cache sequences are charged at admission and freed at its end",
          "[scheduler][batch-decoding]") {
  Golden g = load_golden("tiny-gqa-tied");
  LlamaModel model(g.files.config, g.files.weights, ModelOptions{at::kFloat, at::kCPU});
  const Decoders decoders(model);
  auto cache = make_cache("contiguous", model.cache_shape());
  const std::vector<int64_t> prompt(g.prompt.begin(), g.prompt.begin() + 10);
  const GenerationOptions o = options_for(kBeam, 8, 0);
  // Room for one beam-4 sequence (4 x (10 + 8 + 1) tokens) but not for two.
  const int64_t one = cache->bytes_for_tokens(10 + 8 + 1) * 4;
  SchedulerOptions so;
  so.max_cache_bytes = one + one / 2;
  Scheduler s(model, *cache, so);
  std::vector<std::unique_ptr<Submitted>> subs;
  for (int i = 0; i < 3; ++i) {
    auto sub = std::make_unique<Submitted>();
    Submitted* p = sub.get();
    s.submit({job_for(decoders, kBeam, prompt, o)}, nullptr,
             [p](std::vector<GenerationResult>& r, std::exception_ptr e) {
               if (e) {
                 p->promise.set_exception(e);
               } else {
                 p->promise.set_value(r);
               }
             });
    subs.push_back(std::move(sub));
  }
  auto ref_cache = make_cache("contiguous", model.cache_shape());
  const GenerationResult want = alone(decoders, kBeam, model, *ref_cache, prompt, o);
  for (auto& sub : subs) CHECK(sub->future.get()[0].tokens == want.tokens);
  // One at a time: the cap let in one search of four beams, never two.
  CHECK(s.stats().peak_running == 1);
  CHECK(s.with_cache([](const CacheStrategy& c) { return c.bytes_reserved(); }) == 0);
}

TEST_CASE("batch decoding: no block leaks after 10,000 random mixed requests with cancellations",
          "[scheduler][batch-decoding]") {
  Golden g = load_golden("tiny-gqa-tied");
  LlamaModel model(g.files.config, g.files.weights, ModelOptions{at::kFloat, at::kCPU});
  const Decoders decoders(model);
  for (const std::string cache_name : {"paged", "paged-prefix"}) {
    INFO(cache_name);
    auto cache = make_cache(cache_name, model.cache_shape(), {{"block", "4"}, {"max_blocks", "600"}});
    SchedulerOptions so;
    so.prefill_chunk = 64;
    Scheduler s(model, *cache, so);
    std::mt19937_64 rng(cache_name.size() + 17);
    const std::vector<int64_t> shared = {11, 12, 13, 14, 15, 16, 17, 18, 19, 11, 12, 13};
    const int kRequests = 10000;
    std::vector<std::future<std::vector<GenerationResult>>> futures;
    std::vector<int> fates;  // 0 cancels, 1 stops at once, 2 throws, else runs to the end
    std::vector<int> kinds;
    std::vector<int64_t> lengths;
    std::vector<std::unique_ptr<std::promise<std::vector<GenerationResult>>>> promises;
    for (int i = 0; i < kRequests; ++i) {
      std::vector<int64_t> p;
      if (rng() % 2) p.assign(shared.begin(), shared.begin() + 1 + rng() % shared.size());
      const size_t extra = 1 + rng() % 6;
      for (size_t j = 0; j < extra; ++j) p.push_back(3 + rng() % 250);
      const int kind = static_cast<int>(rng() % kKinds);
      const int64_t n_new = static_cast<int64_t>(rng() % 5);  // 0 is allowed
      GenerationOptions o = options_for(kind, n_new, rng());
      o.eos_ids.clear();  // every surviving request runs to its length
      SequenceJob j = job_for(decoders, kind, p, o);
      const int fate = static_cast<int>(rng() % 10);
      auto flag = fate == 0 ? std::make_shared<std::atomic<bool>>(false) : nullptr;
      if (fate == 0) j.on_token = [flag](int64_t) { flag->store(true); return true; };
      if (fate == 1) j.on_token = [](int64_t) { return false; };
      if (fate == 2) j.on_token = [](int64_t) -> bool { throw Error(Status::kInternal, "callback failed"); };
      promises.push_back(std::make_unique<std::promise<std::vector<GenerationResult>>>());
      auto* pr = promises.back().get();
      futures.push_back(pr->get_future());
      fates.push_back(fate);
      kinds.push_back(kind);
      lengths.push_back(n_new);
      s.submit({std::move(j)}, flag, [pr](std::vector<GenerationResult>& r, std::exception_ptr e) {
        if (e) {
          pr->set_exception(e);
        } else {
          pr->set_value(r);
        }
      });
    }
    int failed = 0, full = 0;
    for (int i = 0; i < kRequests; ++i) {
      try {
        const auto r = futures[i].get();
        if (fates[i] > 2) {
          INFO(kind_name(kinds[i]));
          CHECK(static_cast<int64_t>(r[0].tokens.size()) == lengths[i]);
          ++full;
        }
      } catch (const Error&) {
        ++failed;
      }
    }
    CHECK(failed > 0);
    CHECK(full > kRequests / 2);
    s.with_cache([&](const CacheStrategy& c) {
      auto& paged = dynamic_cast<const PagedCache&>(c);
      paged.check_invariants();
      CHECK(c.bytes_reserved() == 0);
      CHECK(c.stats().blocks_in_use == 0);
      CHECK(paged.pool_blocks() <= 600);
      return 0;
    });
    // The draft model's cache too (cancelled and failed drafting sequences).
    CHECK(draft_batch_passes(*decoders.draft_batch) > 0);
    CHECK(draft_batch_bytes(*decoders.draft_batch) == 0);
  }
}

TEST_CASE("adaptive speculation: the step cost model interpolates what it measured", "[scheduler][batch-decoding]") {
  StepCostModel m;
  CHECK(m.predict(1) < 0);  // nothing measured yet
  for (int i = 0; i < 20; ++i) {
    m.record(1, 10.0);
    m.record(16, 12.0);
    m.record(64, 40.0);
  }
  CHECK(m.predict(1) == Approx(10.0));
  CHECK(m.predict(16) == Approx(12.0));
  CHECK(m.predict(20) == Approx(12.0 + 28.0 * 4.0 / 48.0));  // between 16 and 64
  CHECK(m.predict(64) == Approx(40.0));
  CHECK(m.predict(128) == Approx(80.0));  // above the last: proportional
  CHECK(m.predict(8) == Approx(10.0 + 2.0 * 7.0 / 15.0));  // between 1 and 16
  CHECK(m.predict(40) == Approx(12.0 + 28.0 * 24.0 / 48.0));
  for (int i = 0; i < 20; ++i) m.record(8, 11.0);
  CHECK(m.predict(8) == Approx(11.0));
  CHECK(m.predict(12) == Approx(11.0 + 1.0 * 4.0 / 8.0));
  // An exponential average: a change of machine speed shows within a few steps.
  for (int i = 0; i < 40; ++i) m.record(16, 24.0);
  CHECK(m.predict(16) == Approx(24.0).epsilon(0.01));
  m.record(0, 5.0);  // ignored
  m.record(4, -1.0);
  CHECK(m.predict(1) == Approx(10.0));
}

TEST_CASE("adaptive speculation: drafts where the step gains, none under a full compute-bound batch",
          "[scheduler][batch-decoding]") {
  DraftWish w;
  w.k = 4;
  w.acceptance = 0.8;

  StepCostModel flat;  // memory-bound: a few more rows cost nothing
  for (int64_t r : {1, 2, 4, 8, 16}) flat.record(r, 10.0);
  CHECK(allow_drafts(flat, {w}, 1, 1.0) == std::vector<int64_t>{4});

  StepCostModel linear;  // compute-bound: time proportional to rows
  for (int64_t r : {1, 2, 4, 8, 16, 32, 64}) linear.record(r, 2.0 * static_cast<double>(r));
  // 16 sequences decoding: d drafts add d rows for fewer than d tokens.
  CHECK(allow_drafts(linear, {w}, 16, 16.0) == std::vector<int64_t>{0});
  std::vector<DraftWish> sixteen(16, w);
  const std::vector<int64_t> none = allow_drafts(linear, sixteen, 16, 16.0);
  CHECK(std::all_of(none.begin(), none.end(), [](int64_t d) { return d == 0; }));

  StepCostModel affine;  // a fixed cost per step plus a little per row
  for (int64_t r : {1, 2, 4, 8, 16, 32, 64}) affine.record(r, 10.0 + 0.1 * static_cast<double>(r));
  CHECK(allow_drafts(affine, {w}, 16, 16.0) == std::vector<int64_t>{4});
  // Beside newcomers' prompt chunks (200 rows of useful work), the same
  // drafts would waste rows the step could spend on prompts.
  CHECK(allow_drafts(affine, {w}, 216, 216.0) == std::vector<int64_t>{0});
  // Low acceptance: the rows are not worth it.
  DraftWish poor = w;
  poor.acceptance = 0.02;
  CHECK(allow_drafts(linear, {poor}, 1, 1.0) == std::vector<int64_t>{0});
  // Best acceptance first; the others get what is left worth having.
  DraftWish good = w;
  good.acceptance = 0.95;
  const std::vector<int64_t> two = allow_drafts(affine, {poor, good}, 2, 2.0);
  CHECK(two[1] == 4);
  CHECK(two[0] <= 1);

  // The draft length that gains most, not the longest that does not lose:
  // a row more costs nothing up to 2 rows and 2 ms a row after (predict(3)
  // = 12, predict(5) = 15); at acceptance 0.4, d = 1 makes 1.4 tokens in
  // 10 ms, d = 4 1.65 in 15 ms (still above 1 in 10 ms, so the longest
  // that does not lose would be 4).
  StepCostModel kink;
  kink.record(1, 10.0);
  kink.record(2, 10.0);
  kink.record(4, 14.0);
  kink.record(8, 18.0);
  DraftWish lookup = w;
  lookup.acceptance = 0.4;
  CHECK(allow_drafts(kink, {lookup}, 1, 1.0) == std::vector<int64_t>{1});
  lookup.acceptance = 0.9;  // long drafts pay at high acceptance
  CHECK(allow_drafts(kink, {lookup}, 1, 1.0) == std::vector<int64_t>{4});

  // A sequence that does not follow the load, or a model with no
  // measurement yet: the whole wish.
  DraftWish stubborn = w;
  stubborn.follow_load = false;
  CHECK(allow_drafts(linear, {stubborn}, 16, 16.0) == std::vector<int64_t>{4});
  CHECK(allow_drafts(StepCostModel{}, {w}, 16, 16.0) == std::vector<int64_t>{4});
  // Nothing wished, nothing given.
  CHECK(allow_drafts(flat, {DraftWish{}}, 1, 1.0) == std::vector<int64_t>{0});

  // A draft model's passes count: a draft whose pass costs what the target's
  // step costs (an int4 copy of a 4-bit model) is not run; a cheap one is.
  DraftWish model = w;
  model.model_passes = true;
  CHECK(allow_drafts(flat, {model}, 1, 1.0, 10.0) == std::vector<int64_t>{0});
  CHECK(allow_drafts(flat, {model}, 1, 1.0, 1.0) == std::vector<int64_t>{4});
  CHECK(allow_drafts(flat, {w}, 1, 1.0, 10.0) == std::vector<int64_t>{4});  // prompt lookup runs no passes
  // The sequences drafting in a step share the draft model's passes: with
  // 3 ms a pass, two sequences drafting 3 each make 5.90 tokens in 19 ms
  // (0.311 a ms), better than 1 each (3.6 in 13: 0.277), 4 each (6.72 in
  // 22: 0.306) or 3 and 4 (6.31 in 22: 0.287); beside a sequence that does
  // not draft, one drafting alone pays the passes alone: 1 draft (2.8 in
  // 13: 0.2154) beats 2 (0.2150) and 3 (0.208).
  CHECK(allow_drafts(flat, {model, model}, 2, 2.0, 3.0) == std::vector<int64_t>{3, 3});
  CHECK(allow_drafts(flat, {model}, 2, 2.0, 3.0) == std::vector<int64_t>{1});
}

TEST_CASE("adaptive speculation: the cost model says which row counts it has timed",
          "[scheduler][batch-decoding]") {
  StepCostModel m;
  m.record(60, 30.0);  // a prompt
  CHECK(m.predict(1) > 0);
  CHECK_FALSE(m.measured(1));
  CHECK(m.measured(60));
  m.record(1, 5.0);
  CHECK(m.measured(1));
  CHECK_FALSE(m.measured(2));
  CHECK_FALSE(m.measured(0));
}

// The greedy decoder's own repetition penalty (a recipe option, so that a
// configuration `udaci tune` chose carries it to every front end, issue #26):
// alone and in the scheduler's batch it gives what a request's own penalty at
// temperature 0 gives, whatever the request asks, and it changes the output.
TEST_CASE("batch decoding: greedy{repetition_penalty} equals a request's penalty at temperature 0",
          "[scheduler][batch-decoding]") {
  Golden g = load_golden("tiny-gqa-tied");
  LlamaModel model(g.files.config, g.files.weights, ModelOptions{at::kFloat, at::kCPU});
  const auto penalised = builtin_strategies().decoders.create(
      "greedy", StrategyOptions(std::map<std::string, std::string>{{"repetition_penalty", "1.8"}}));
  const auto plain = builtin_strategies().decoders.create("greedy", StrategyOptions{});
  size_t changed = 0;
  for (const std::vector<int64_t>& prompt : make_prompts(g, 6, 11)) {
    GenerationOptions want_o;
    want_o.max_new_tokens = 12;
    want_o.sampling.temperature = 0;
    want_o.sampling.repetition_penalty = 1.8f;
    auto c1 = make_cache("contiguous", model.cache_shape());
    const GenerationResult want = decode_sampled(model, *c1, {prompt}, want_o)[0];
    // The request asks for sampling without a penalty: the decoder decides.
    GenerationOptions asked;
    asked.max_new_tokens = 12;
    asked.sampling.temperature = 0.9f;
    asked.sampling.seed = 5;
    auto c2 = make_cache("contiguous", model.cache_shape());
    CHECK(penalised->decode(model, *c2, {prompt}, asked, {})[0].tokens == want.tokens);
    auto c3 = make_cache("paged", model.cache_shape());
    Scheduler s(model, *c3, SchedulerOptions{});
    SequenceJob j;
    j.prompt = prompt;
    j.options = asked;
    const Decoder* dec = penalised.get();
    j.start = [dec, asked](const StepContext& ctx) { return dec->start_sequence(asked, ctx); };
    std::promise<std::vector<GenerationResult>> p;
    auto f = p.get_future();
    s.submit({j}, nullptr, [&p](std::vector<GenerationResult>& r, std::exception_ptr e) {
      if (e) {
        p.set_exception(e);
      } else {
        p.set_value(r);
      }
    });
    CHECK(f.get()[0].tokens == want.tokens);
    auto c4 = make_cache("contiguous", model.cache_shape());
    changed += plain->decode(model, *c4, {prompt}, asked, {})[0].tokens != want.tokens;
  }
  CHECK(changed > 0);
  // Out of range, refused with the option's name.
  CHECK_THROWS_WITH(builtin_strategies().decoders.create(
                        "greedy", StrategyOptions(std::map<std::string, std::string>{{"repetition_penalty", "0"}})),
                    Catch::Contains("repetition_penalty must be in [0.5, 4]"));
}
