// Tokenizer::from_tokenizer_json on arbitrary files. The input holds up to
// four documents separated by NUL bytes (never valid inside JSON or a
// template): tokenizer.json, tokenizer_config.json, generation_config.json,
// chat_template.jinja. They are written into a private temporary directory
// (the reader takes a path and looks for the others beside it; a document
// that is absent from the input is absent from the directory). A tokenizer
// that loads is then run on a fixed text.
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "fuzz_common.hpp"
#include "text/tokenizer.hpp"

using namespace udaci;
using udaci::fuzz::as_text;
using udaci::fuzz::expect_error_or_ok;
using udaci::fuzz::fuzz_check;

namespace {

namespace fs = std::filesystem;

const char* const kFiles[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                              "chat_template.jinja"};

fs::path g_dir;

void remove_dir() {
  std::error_code ec;
  fs::remove_all(g_dir, ec);
}

void put(const char* name, const std::string_view* text) {
  const fs::path p = g_dir / name;
  if (text == nullptr) {
    std::error_code ec;
    fs::remove(p, ec);
    return;
  }
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(text->data(), static_cast<std::streamsize>(text->size()));
  fuzz_check(out.good(), "writing the input to the temporary directory");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::string tmpl = (fs::temp_directory_path() / "udaci-fuzz-tokenizer-XXXXXX").string();
  fuzz_check(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp");
  g_dir = tmpl;
  std::atexit(remove_dir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string_view> parts =
      udaci::fuzz::split_parts(as_text(data, size), std::string_view("\0", 1), 4);
  for (size_t i = 0; i < 4; ++i) put(kFiles[i], i < parts.size() ? &parts[i] : nullptr);

  expect_error_or_ok([&] {
    const Tokenizer tok = Tokenizer::from_tokenizer_json((g_dir / "tokenizer.json").string());
    fuzz_check(tok.vocab_size() > 0, "a loaded tokenizer has a vocabulary");
    const std::vector<int32_t> ids = tok.encode("Hello, world! 123 <|im_start|>é🙂", true);
    for (int32_t id : ids) fuzz_check(id >= 0 && id < tok.vocab_size(), "encoded id in range");
    (void)tok.decode(ids, true);
  });
  return 0;
}
