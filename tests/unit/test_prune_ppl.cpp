// What pruning costs the default model: perplexity on news records
// ("headline. short_description") for each pruner, against the unpruned
// model. Hidden tag: run with `udaci_unit_tests "[.prune-ppl]"`; it loads the
// model once per configuration and takes about a minute per configuration on
// two cores.
#include "udaci_catch.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <cmath>
#include <iostream>

#include "eval/news_dataset.hpp"
#include "eval/perplexity.hpp"
#include "engine/model_lookup.hpp"
#include "engine/registry.hpp"
#include "model/model_loader.hpp"
#include "model/llama_model.hpp"
#include "prune/pruners.hpp"
#include "prune/sparse24.hpp"
#include "test_util.hpp"

using namespace udaci;

TEST_CASE("prune: perplexity of the default model on news, per pruner", "[.prune-ppl]") {
  const std::string path = udaci_test::default_model_gguf();
  if (path.empty()) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  if (!udaci_test::shared_available()) {
    WARN("shared/ not found at " << udaci_test::shared_path("") << ": skipping");
    return;
  }
  NewsDataset ds = read_news_dataset(udaci_test::shared_path("assets/news/news_category_sample.jsonl"));
  const std::vector<NewsRecord> recs = sample_records(ds.records, 50, /*seed=*/2024);
  const Tokenizer tok = load_tokenizer(path);
  std::vector<std::vector<int64_t>> seqs;
  int64_t tokens = 0;
  for (const NewsRecord& r : recs) {
    const std::vector<int32_t> ids = tok.encode(r.headline + ". " + r.short_description, true, false);
    seqs.emplace_back(ids.begin(), ids.end());
    tokens += static_cast<int64_t>(ids.size());
  }
  REQUIRE(seqs.size() == 50);

  struct Case {
    std::string pruner;
    std::map<std::string, std::string> options;
  };
  const std::vector<Case> cases = {
      {"none", {}},
      {"magnitude", {{"fraction", "0.1"}}},
      {"magnitude", {{"fraction", "0.3"}}},
      {"magnitude", {{"fraction", "0.5"}}},
      {"magnitude", {{"fraction", "0.3"}, {"scope", "global"}}},
      {"2:4", {}},
      {"structured", {{"fraction", "0.1"}}},
      {"structured", {{"fraction", "0.3"}}},
      {"structured", {{"fraction", "0.3"}, {"norm", "l2"}}},
  };
  std::cout << "perplexity on " << seqs.size() << " news records (" << tokens << " tokens), "
            << path << "\n";
  std::map<std::string, double> ppl;
  for (const Case& c : cases) {
    std::string label = c.pruner;
    for (const auto& kv : c.options) label += " " + kv.first + "=" + kv.second;
    const auto t0 = std::chrono::steady_clock::now();
    ModelFiles f = open_model(path);
    auto pruner = builtin_strategies().pruners.create(c.pruner, StrategyOptions(c.options));
    const PruneReport report = pruner->prune(f.weights, f.config);
    ModelOptions mo{at::kFloat, at::kCPU, {}};
    const Pruner* p = pruner.get();
    mo.linear_factory = [p](const LinearSpec& s, const WeightStore& w, const ModelOptions& o) {
      return p->make_kernel(s, w, o);
    };
    LlamaModel model(f.config, f.weights, mo);
    const double value = perplexity(model, seqs);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "  " << label << ": perplexity " << value << ", sparsity "
              << report.sparsity() << ", weight bytes " << model.weight_bytes() << ", "
              << secs << " s\n";
    CHECK(std::isfinite(value));
    ppl[label] = value;
  }
  // Removing more weights by magnitude costs more.
  CHECK(ppl["none"] < ppl["magnitude fraction=0.5"]);
  CHECK(ppl["magnitude fraction=0.1"] < ppl["magnitude fraction=0.5"]);
  // The max-magnitude channel score beats the L2 one (pruners.hpp).
  CHECK(ppl["structured fraction=0.3"] < ppl["structured fraction=0.3 norm=l2"]);
}

// Packed 2:4 kernel against dense at::linear (BLAS) on the pruned weight at
// SmolLM2-135M's FFN shapes. Prints times; asserts nothing about them.
TEST_CASE("prune: 2:4 kernel timing against dense at::linear", "[.prune-bench]") {
  at::manual_seed(0);
  const int saved_threads = at::get_num_threads();
  std::cout << "2:4 packed kernel vs dense at::linear (fp32), median of 7 runs of 50 calls\n";
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    for (auto [out, in] : std::vector<std::pair<int64_t, int64_t>>{{1536, 576}, {576, 1536}}) {
      at::Tensor w = at::randn({out, in});
      Packed24 p = pack_2of4(w);
      at::Tensor dense = unpack_2of4(p.values, p.meta, in);
      for (int64_t n : {1, 4, 16, 64}) {
        at::Tensor x = at::randn({n, in});
        auto time_us = [&](const std::function<void()>& fn) {
          std::vector<double> runs;
          for (int r = 0; r < 7; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            for (int i = 0; i < 50; ++i) fn();
            runs.push_back(std::chrono::duration<double, std::micro>(
                               std::chrono::steady_clock::now() - t0).count() / 50);
          }
          std::sort(runs.begin(), runs.end());
          return runs[3];
        };
        const double td = time_us([&] { at::linear(x, dense); });
        const double ts = time_us([&] { sparse24_linear(x, p.values, p.meta, in); });
        const double tsc =
            time_us([&] { sparse24_linear(x, p.values, p.meta, in, Sparse24Path::kScalar); });
        std::cout << "  threads " << threads << " " << in << "->" << out << " n=" << n
                  << ": dense " << td << " us, 2:4 auto " << ts << " us, 2:4 scalar " << tsc
                  << " us\n";
      }
    }
  }
  at::set_num_threads(saved_threads);
}
