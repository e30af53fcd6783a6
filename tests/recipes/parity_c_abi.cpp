// The C ABI's side of tests/recipes/parity.py (issue #21): every catalogue
// technique that runs in one process, given as udaci_engine_params.recipe,
// greedy headlines of the same 5 articles one at a time, 2 kernel threads.
// Writes OUT.json ({technique: {"recipe", "headlines"}}); exits 1 on any
// failure. It uses only udaci.h (and nlohmann for its own files), as a CMS
// back end would.
//   udaci_recipe_parity_c ARTICLES.jsonl OUT.json
#include <udaci/udaci.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using nlohmann::json;

namespace {

constexpr int kArticles = 5;
constexpr int kMaxNewTokens = 16;
constexpr int kThreads = 2;

template <typename Get>
std::string text_of(Get get) {
  size_t len = 0;
  if (get(nullptr, &len) != UDACI_ERR_BUFFER_TOO_SMALL) return "";
  std::string s(len, '\0');
  if (get(s.data(), &len) != UDACI_OK) return "";
  s.resize(len - 1);
  return s;
}

std::string recipe_for(const json& t, const std::string& default_model) {
  if (t["name"] != "spec-draft") return t["name"].get<std::string>();
  std::string quoted;
  for (char c : default_model) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return "spec-draft{draft_model=\"" + quoted + "\"}";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s ARTICLES.jsonl OUT.json\n", argv[0]);
    return 2;
  }
  std::remove(argv[2]);
  std::filesystem::create_directories(std::filesystem::path(argv[2]).parent_path());
  std::vector<std::string> summaries;
  {
    std::ifstream in(argv[1]);
    std::string line;
    while (static_cast<int>(summaries.size()) < kArticles && std::getline(in, line))
      if (!line.empty()) summaries.push_back(json::parse(line).at("short_description").get<std::string>());
  }
  if (static_cast<int>(summaries.size()) != kArticles) {
    std::fprintf(stderr, "cannot read %d articles from %s\n", kArticles, argv[1]);
    return 1;
  }
  const json catalogue = json::parse(text_of([](char* b, size_t* n) { return udaci_techniques(b, n); }));

  // The default model's path, as the engine resolves it.
  std::string default_model;
  {
    udaci_engine_params p = udaci_engine_default_params();
    p.recipe = "no-quant";
    udaci_engine* e = nullptr;
    if (udaci_engine_create(&p, &e) != UDACI_OK) {
      std::fprintf(stderr, "default engine: %s\n", udaci_last_error());
      return 1;
    }
    default_model = text_of([e](char* b, size_t* n) { return udaci_engine_get_model_path(e, b, n); });
    udaci_engine_destroy(e);
  }

  json out = json::object();
  int failures = 0;
  for (const json& t : catalogue) {
    // Each distinct one-process configuration once (same_as: aliases).
    if (t["multi_process"].get<bool>() || !t["available"].get<bool>() || t["same_as"] != t["name"]) continue;
    const std::string name = t["name"].get<std::string>();
    const std::string recipe = recipe_for(t, default_model);
    const auto t0 = std::chrono::steady_clock::now();
    udaci_engine_params p = udaci_engine_default_params();
    p.recipe = recipe.c_str();
    p.n_threads = kThreads;
    udaci_engine* engine = nullptr;
    if (udaci_engine_create(&p, &engine) != UDACI_OK) {
      std::fprintf(stderr, "FAILED %s: create: %s\n", name.c_str(), udaci_last_error());
      ++failures;
      continue;
    }
    udaci_generate_params g = udaci_generate_default_params();
    g.max_new_tokens = kMaxNewTokens;
    json headlines = json::array();
    bool ok = true;
    for (const std::string& s : summaries) {
      udaci_result* r = nullptr;
      if (udaci_generate(engine, s.c_str(), &g, &r) != UDACI_OK) {
        std::fprintf(stderr, "FAILED %s: generate: %s\n", name.c_str(), udaci_last_error());
        ok = false;
        break;
      }
      headlines.push_back(text_of([r](char* b, size_t* n) { return udaci_result_get_headline(r, b, n); }));
      udaci_result_destroy(r);
    }
    const json config =
        json::parse(text_of([engine](char* b, size_t* n) { return udaci_engine_get_config(engine, b, n); }));
    udaci_engine_destroy(engine);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("c_api %s: %.1f s\n", name.c_str(), s);
    if (!ok) {
      ++failures;
      continue;
    }
    out[name] = {{"recipe", config.at("recipe")}, {"headlines", headlines}};
  }
  std::ofstream f(argv[2]);
  f << out.dump(1) << "\n";
  return failures == 0 && !out.empty() ? 0 : 1;
}
