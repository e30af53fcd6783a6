// `udaci perplexity`: perplexity of the model (after its quantizer and
// pruner) on news records, each scored as "headline. short_description" with
// BOS: what a technique costs in quality without generating text. With
// --kl-divergence also the divergence from the fp32 reference on the same
// tokens. One JSON object on stdout.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "core/error.hpp"
#include "engine/headline_engine.hpp"
#include "eval/news_dataset.hpp"
#include "eval/perplexity.hpp"
#include "tools/cli/common.hpp"

namespace udaci::cli {

namespace {

using nlohmann::json;

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

int cmd_perplexity(const PerplexityArgs& a, const GlobalOptions& global) {
  const EngineConfig ec = engine_config_from(a.engine, global);
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

}  // namespace

CommandRun setup_perplexity(CLI::App& sub) {
  auto a = std::make_shared<PerplexityArgs>();
  add_engine_flags(sub, a->engine, true);
  sub.add_option("--input", a->input,
                 "News Category Dataset JSONL (default: $UDACI_NEWS, else the ../shared/assets/news sample)");
  sub.add_option("--samples", a->samples, "records scored")->check(CLI::Range(size_t{1}, size_t{1000000}));
  sub.add_option("--seed", a->seed, "record sample seed");
  sub.add_option("--batch", a->batch, "sequences per forward pass")->check(CLI::Range(int64_t{1}, int64_t{1024}));
  sub.add_flag("--kl-divergence", a->kl_divergence,
               "also run the fp32 reference (no-quant, no-prune) on the same tokens and report the KL "
               "divergence from it (mean, 99th percentile, max), top-1 agreement and mean |dp| of the "
               "next token");
  sub.add_option("--kl-reference", a->kl_reference,
                 "the reference model for --kl-divergence (default: --model itself, dequantised): e.g. "
                 "the F32 GGUF a quantised file was made from");
  sub.add_option("--tokens-out", a->tokens_out,
                 "also write the scored token ids here, one JSON line {\"ids\": [...]} per sequence (to score "
                 "the same tokens in another engine)");
  return [a](const GlobalOptions& global) { return cmd_perplexity(*a, global); };
}

}  // namespace udaci::cli
