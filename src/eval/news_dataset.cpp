#include "eval/news_dataset.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.hpp"

namespace udaci {

namespace {

using nlohmann::json;

// Converts one parsed JSON value into a record, or explains why not.
bool to_record(const json& j, int64_t line, const NewsReadOptions& opt, NewsRecord& out,
               std::string& why) {
  if (!j.is_object()) {
    why = std::string("expected a JSON object, got ") + j.type_name();
    return false;
  }
  auto field = [&](const char* key, std::string& dst) -> bool {
    if (!j.contains(key) || j[key].is_null()) return true;
    if (j[key].is_string()) {
      dst = j[key].get<std::string>();
      return true;
    }
    why = std::string("field \"") + key + "\" must be a string, got " + j[key].type_name();
    return false;
  };
  NewsRecord r;
  r.line = line;
  if (!field("link", r.link) || !field("headline", r.headline) || !field("category", r.category) ||
      !field("short_description", r.short_description) || !field("authors", r.authors) ||
      !field("date", r.date))
    return false;
  for (const std::string& req : opt.required) {
    const std::string* v = req == "link"                ? &r.link
                           : req == "headline"          ? &r.headline
                           : req == "category"          ? &r.category
                           : req == "short_description" ? &r.short_description
                           : req == "authors"           ? &r.authors
                           : req == "date"              ? &r.date
                                                        : nullptr;
    if (v == nullptr) {
      fail(Status::kInvalidArgument, "unknown required field \"{}\"", req);
    }
    if (v->empty()) {
      why = "field \"" + req + "\" is missing or empty";
      return false;
    }
  }
  out = std::move(r);
  return true;
}

}  // namespace

NewsDataset parse_news_dataset(const std::string& text, const std::string& source,
                               const NewsReadOptions& opt) {
  NewsDataset ds;
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return ds;
  if (text[first] == '[') {
    json arr;
    try {
      arr = json::parse(text);
    } catch (const json::exception& e) {
      fail(Status::kInvalidArgument, "{}: not a valid JSON array: {}", source, e.what());
    }
    UDACI_CHECK(arr.is_array(), "{}: expected a JSON array", source);
    for (size_t i = 0; i < arr.size(); ++i) {
      NewsRecord r;
      std::string why;
      if (to_record(arr[i], static_cast<int64_t>(i + 1), opt, r, why)) ds.records.push_back(std::move(r));
      else ds.errors.push_back({static_cast<int64_t>(i + 1), "record " + std::to_string(i + 1) + ": " + why});
    }
    return ds;
  }
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    ++line_no;
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) {
      if (end == text.size()) break;
      continue;
    }
    if (line.size() > opt.max_line_bytes) {
      ds.errors.push_back({line_no, fmt::format("{}:{}: line of {} bytes exceeds the limit of {}",
                                                source, line_no, line.size(), opt.max_line_bytes)});
      continue;
    }
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      ds.errors.push_back({line_no, fmt::format("{}:{}: invalid JSON: {}", source, line_no, e.what())});
      continue;
    }
    NewsRecord r;
    std::string why;
    if (to_record(j, line_no, opt, r, why)) ds.records.push_back(std::move(r));
    else ds.errors.push_back({line_no, fmt::format("{}:{}: {}", source, line_no, why)});
    if (end == text.size()) break;
  }
  return ds;
}

NewsDataset read_news_dataset(const std::string& path, const NewsReadOptions& opt) {
  std::ifstream in(path, std::ios::binary);
  UDACI_CHECK_S(Status::kNotFound, in.good(), "cannot open '{}'", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_news_dataset(ss.str(), path, opt);
}

std::vector<NewsRecord> sample_records(const std::vector<NewsRecord>& records, size_t n,
                                       uint64_t seed, const std::string& category) {
  std::vector<size_t> idx;
  for (size_t i = 0; i < records.size(); ++i)
    if (category.empty() || records[i].category == category) idx.push_back(i);
  // Fisher-Yates with mt19937_64 and an unbiased bounded draw (rejection), so the order
  // does not depend on the standard library's distribution implementation.
  std::mt19937_64 rng(seed);
  for (size_t i = idx.size(); i > 1; --i) {
    const uint64_t bound = i;
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t x;
    do x = rng();
    while (x >= limit);
    std::swap(idx[i - 1], idx[static_cast<size_t>(x % bound)]);
  }
  if (idx.size() > n) idx.resize(n);
  std::vector<NewsRecord> out;
  out.reserve(idx.size());
  for (size_t i : idx) out.push_back(records[i]);
  return out;
}

}  // namespace udaci
