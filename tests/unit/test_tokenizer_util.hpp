// Parity checks of udaci::Tokenizer against the Hugging Face `tokenizers`
// fixtures in tests/fixtures/tokenizer (made by
// tools/reference/make_tokenizer_fixtures.py). Shared by test_tokenizer.cpp
// and test_tokenizer_gguf.cpp.
#pragma once

#include "udaci_catch.hpp"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.hpp"
#include "text/tokenizer.hpp"

namespace udaci_tok_test {

using udaci::Tokenizer;

inline std::string ids_str(const std::vector<int32_t>& v, size_t max = 64) {
  std::string s = "[";
  for (size_t i = 0; i < v.size() && i < max; ++i) s += (i ? " " : "") + std::to_string(v[i]);
  if (v.size() > max) s += " ...";
  return s + "]";
}

inline std::string shorten(const std::string& s, size_t max = 120) {
  return s.size() <= max ? s : s.substr(0, max) + "...(" + std::to_string(s.size()) + " bytes)";
}

inline std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

inline std::vector<int32_t> parse_ids(const nlohmann::json& j) {
  return j.get<std::vector<int32_t>>();
}

// Compares one encoding; on mismatch reports where the two first differ.
// Returns true when equal. `failures` counts mismatches; only the first few
// are reported in full so a broken build does not flood the log.
inline bool compare_ids(const std::string& what, const std::string& text, const std::vector<int32_t>& got,
                        const std::vector<int32_t>& want, int& failures) {
  if (got == want) return true;
  if (++failures <= 3) {
    size_t k = 0;
    while (k < got.size() && k < want.size() && got[k] == want[k]) ++k;
    const size_t from = k > 4 ? k - 4 : 0;
    std::vector<int32_t> g(got.begin() + std::min(from, got.size()), got.end());
    std::vector<int32_t> w(want.begin() + std::min(from, want.size()), want.end());
    FAIL_CHECK(what << ": ids differ from HF tokenizers at index " << k << " for text \"" << shorten(text)
                    << "\"\n  udaci [" << from << "..]: " << ids_str(g, 16) << "\n  HF    [" << from
                    << "..]: " << ids_str(w, 16));
  }
  return false;
}

// Round trip, and the incremental decoder against decode(): equal text, and
// every chunk valid UTF-8.
inline void check_roundtrip(const Tokenizer& tok, const std::string& what, const std::string& text,
                            const std::vector<int32_t>& ids, int& failures) {
  const std::string back = tok.decode(ids);
  if (back != text && ++failures <= 3)
    FAIL_CHECK(what << ": decode(encode(x)) != x for \"" << shorten(text) << "\", got \"" << shorten(back)
                    << "\"");
  auto dec = tok.incremental_decoder();
  std::string streamed;
  for (int32_t id : ids) {
    std::string chunk = dec.feed(id);
    if (!udaci::is_valid_utf8(chunk) && ++failures <= 3)
      FAIL_CHECK(what << ": incremental decoder emitted invalid UTF-8 for \"" << shorten(text) << "\"");
    streamed += chunk;
  }
  streamed += dec.flush();
  if (streamed != back && ++failures <= 3)
    FAIL_CHECK(what << ": incremental decode differs from decode for \"" << shorten(text) << "\"");
}

// `vocab`: "llama3" or "smollm2", the key used in the fixture files.
inline void check_adversarial(const Tokenizer& tok, const std::string& vocab) {
  const auto texts = read_lines(udaci_test::fixture("tokenizer/adversarial.jsonl"));
  const auto expect = read_lines(udaci_test::fixture("tokenizer/adversarial_ids.jsonl"));
  REQUIRE(texts.size() == expect.size());
  REQUIRE(texts.size() >= 60);
  int failures = 0;
  size_t compared = 0, lossy = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string text = nlohmann::json::parse(texts[i])["text"].get<std::string>();
    const auto e = nlohmann::json::parse(expect[i]);
    const std::string where = vocab + " adversarial #" + std::to_string(i);
    const auto ids = tok.encode(text);
    compare_ids(where, text, ids, parse_ids(e[vocab]), failures);
    compare_ids(where + " (parse_special=false)", text, tok.encode(text, false, false),
                parse_ids(e[vocab + "_no_parse_special"]), failures);
    compare_ids(where + " (add_special=true)", text, tok.encode(text, true, true),
                parse_ids(e[vocab + "_add_special"]), failures);
    if (e.contains(vocab + "_decoded")) {
      // The vocabulary lacks a token for some byte of the text, so HF does
      // not round-trip either: compare with HF's decode instead.
      const std::string want = e[vocab + "_decoded"].get<std::string>();
      if (tok.decode(ids) != want && ++failures <= 3)
        FAIL_CHECK(where << ": decode differs from HF's lossy decode");
      ++lossy;
    } else {
      check_roundtrip(tok, where, text, ids, failures);
    }
    ++compared;
  }
  INFO(vocab << ": " << compared << " adversarial strings (" << lossy << " not round-trippable), " << failures
              << " failures");
  CHECK(lossy <= 2);
  CHECK(failures == 0);
}

inline void check_invalid_utf8(const Tokenizer& tok, const std::string& vocab) {
  const auto lines = read_lines(udaci_test::fixture("tokenizer/invalid_utf8.jsonl"));
  REQUIRE(!lines.empty());
  int failures = 0;
  for (const auto& line : lines) {
    const auto e = nlohmann::json::parse(line);
    const std::string hex = e["hex"].get<std::string>();
    std::string bytes;
    for (size_t k = 0; k + 1 < hex.size(); k += 2) bytes += static_cast<char>(std::stoi(hex.substr(k, 2), nullptr, 16));
    REQUIRE_FALSE(udaci::is_valid_utf8(bytes));
    compare_ids(vocab + " invalid UTF-8 " + hex, hex, tok.encode(bytes), parse_ids(e[vocab]), failures);
  }
  CHECK(failures == 0);
}

inline void check_decode_cases(const Tokenizer& tok, const std::string& vocab) {
  const auto lines = read_lines(udaci_test::fixture("tokenizer/decode_cases.jsonl"));
  int failures = 0;
  size_t n = 0;
  for (const auto& line : lines) {
    const auto e = nlohmann::json::parse(line);
    if (e["vocab"] != vocab) continue;
    ++n;
    const auto ids = parse_ids(e["ids"]);
    const bool skip = e["skip_special"].get<bool>();
    const std::string want = e["text"].get<std::string>();
    const std::string got = tok.decode(ids, skip);
    if (got != want && ++failures <= 3)
      FAIL_CHECK(vocab << " decode" << (skip ? " (skip_special)" : "") << " of " << ids_str(ids) << ": got \""
                       << got << "\", HF \"" << want << "\"");
    auto dec = tok.incremental_decoder(skip);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string chunk = dec.feed(id);
      if (!udaci::is_valid_utf8(chunk) && ++failures <= 3) FAIL_CHECK("incremental chunk is not UTF-8");
      streamed += chunk;
    }
    streamed += dec.flush();
    if (streamed != want && ++failures <= 3)
      FAIL_CHECK(vocab << " incremental decode of " << ids_str(ids) << ": got \"" << streamed << "\", HF \""
                       << want << "\"");
  }
  REQUIRE(n > 20);
  CHECK(failures == 0);
}

inline void check_llama_cpp_vectors(const Tokenizer& tok, const std::string& vocab) {
  if (!udaci_test::shared_available()) {
    WARN("shared/ not found at " << udaci_test::shared_path("") << ": skipping the llama.cpp vectors");
    return;
  }
  std::ifstream in(udaci_test::shared_path("assets/tokenizers/llama3/ggml-vocab-llama-bpe.gguf.inp"),
                   std::ios::binary);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string all = ss.str();
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  size_t pos = 0;
  for (size_t k; (k = all.find(sep, pos)) != std::string::npos; pos = k + sep.size())
    texts.push_back(all.substr(pos, k - pos));
  if (pos < all.size()) texts.push_back(all.substr(pos));
  const auto expect = read_lines(udaci_test::fixture("tokenizer/llama_cpp_vectors.jsonl"));
  REQUIRE(texts.size() == expect.size());
  int failures = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto e = nlohmann::json::parse(expect[i]);
    const auto ids = tok.encode(texts[i]);
    compare_ids(vocab + " llama.cpp vector #" + std::to_string(i), texts[i], ids, parse_ids(e[vocab]), failures);
    check_roundtrip(tok, vocab + " llama.cpp vector", texts[i], ids, failures);
  }
  if (vocab == "llama3") {
    // Also against llama.cpp's own expected ids (.out).
    const auto out = read_lines(udaci_test::shared_path("assets/tokenizers/llama3/ggml-vocab-llama-bpe.gguf.out"));
    REQUIRE(out.size() >= texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
      std::vector<int32_t> want;
      std::istringstream ls(out[i]);
      for (int32_t v; ls >> v;) want.push_back(v);
      compare_ids("llama3 llama.cpp .out #" + std::to_string(i), texts[i], tok.encode(texts[i]), want, failures);
    }
  }
  CHECK(failures == 0);
}

inline void check_news(const Tokenizer& tok, const std::string& vocab) {
  if (!udaci_test::shared_available()) {
    WARN("shared/ not found at " << udaci_test::shared_path("") << ": skipping the news parity test");
    return;
  }
  const auto records = read_lines(udaci_test::shared_path("assets/news/news_category_sample.jsonl"));
  const auto expect = read_lines(udaci_test::fixture("tokenizer/news_" + vocab + ".ids"));
  REQUIRE(records.size() == 8782);
  REQUIRE(expect.size() == 2 * records.size());
  int failures = 0;
  size_t compared = 0;
  std::vector<nlohmann::json> parsed(records.size());
  for (const auto& line : expect) {
    const size_t t1 = line.find('\t'), t2 = line.find('\t', t1 + 1);
    REQUIRE(t2 != std::string::npos);
    const size_t rec = std::stoul(line.substr(0, t1));
    const std::string field = line.substr(t1 + 1, t2 - t1 - 1);
    REQUIRE(rec < records.size());
    if (parsed[rec].is_null()) parsed[rec] = nlohmann::json::parse(records[rec]);
    const std::string text = parsed[rec][field].get<std::string>();
    std::vector<int32_t> want;
    std::istringstream ls(line.substr(t2 + 1));
    for (int32_t v; ls >> v;) want.push_back(v);
    const auto ids = tok.encode(text);
    compare_ids(vocab + " news line " + std::to_string(rec) + " " + field, text, ids, want, failures);
    check_roundtrip(tok, vocab + " news", text, ids, failures);
    ++compared;
  }
  INFO(vocab << ": " << compared << " news strings, " << failures << " failures");
  CHECK(compared == 17564);
  CHECK(failures == 0);
}

inline void check_all(const Tokenizer& tok, const std::string& vocab) {
  check_adversarial(tok, vocab);
  check_invalid_utf8(tok, vocab);
  check_decode_cases(tok, vocab);
  check_llama_cpp_vectors(tok, vocab);
  check_news(tok, vocab);
}

}  // namespace udaci_tok_test
