// The News Category Dataset reader (parse_news_dataset) on arbitrary text, as
// JSON Lines or one JSON array, with the default options and with stricter
// ones (more required fields, a small line limit). Checked: every non-blank
// JSONL line ends up as exactly one record or one error, in line order, and a
// kept record has its required fields.
#include "eval/news_dataset.hpp"
#include "fuzz_common.hpp"

using namespace udaci;
using udaci::fuzz::as_text;
using udaci::fuzz::expect_error_or_ok;
using udaci::fuzz::fuzz_check;

namespace {

size_t non_blank_lines(const std::string& text) {
  size_t n = 0, pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") != std::string_view::npos) ++n;
    pos = end + 1;
  }
  return n;
}

void check(const std::string& text, const NewsDataset& ds, const NewsReadOptions& opt) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  const bool jsonl = first != std::string::npos && text[first] != '[';
  if (jsonl) {
    fuzz_check(ds.records.size() + ds.errors.size() == non_blank_lines(text),
               "one record or one error per non-blank line");
  }
  int64_t last = 0;
  for (const NewsRecord& r : ds.records) {
    fuzz_check(r.line > last, "records in line order");
    last = r.line;
    for (const std::string& f : opt.required) {
      if (f == "short_description") fuzz_check(!r.short_description.empty(), "required field");
      if (f == "headline") fuzz_check(!r.headline.empty(), "required field");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(as_text(data, size));
  NewsReadOptions strict;
  strict.required = {"headline", "short_description"};
  strict.max_line_bytes = 64;
  for (const NewsReadOptions& opt : {NewsReadOptions{}, strict}) {
    expect_error_or_ok([&] { check(text, parse_news_dataset(text, "fuzz.jsonl", opt), opt); });
  }
  return 0;
}
