// JSON Lines driver for ROUGE; see rouge_cli.hpp for the formats.
#include "eval/rouge_cli.hpp"

#include <istream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "eval/rouge.hpp"

namespace udaci {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

const char* type_name(const Json& v) { return v.type_name(); }

// The pair on one line; throws Error(kInvalidArgument) naming what is wrong.
struct Pair {
  std::vector<std::string> references;
  bool multi = false;
  std::string generated;
};

Pair read_pair(const Json& j) {
  UDACI_CHECK(j.is_object(), "expected a JSON object, got {}", type_name(j));
  Pair p;
  const bool has_one = j.contains("reference");
  const bool has_many = j.contains("references");
  UDACI_CHECK(!(has_one && has_many), "give \"reference\" or \"references\", not both");
  UDACI_CHECK(has_one || has_many,
              "missing field \"reference\" (a string) or \"references\" (an array of strings)");
  if (has_one) {
    const Json& r = j.at("reference");
    UDACI_CHECK(r.is_string(), "field \"reference\" must be a string, got {}", type_name(r));
    p.references.push_back(r.get<std::string>());
  } else {
    const Json& rs = j.at("references");
    UDACI_CHECK(rs.is_array(), "field \"references\" must be an array of strings, got {}",
                type_name(rs));
    UDACI_CHECK(!rs.empty(), "field \"references\" is an empty array (need at least one string)");
    for (size_t i = 0; i < rs.size(); ++i) {
      UDACI_CHECK(rs[i].is_string(), "field \"references\"[{}] must be a string, got {}", i,
                  type_name(rs[i]));
      p.references.push_back(rs[i].get<std::string>());
    }
    p.multi = true;
  }
  UDACI_CHECK(j.contains("generated"), "missing field \"generated\" (a string)");
  const Json& g = j.at("generated");
  UDACI_CHECK(g.is_string(), "field \"generated\" must be a string, got {}", type_name(g));
  p.generated = g.get<std::string>();
  return p;
}

bool is_blank(const std::string& s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '\f' && c != '\v') return false;
  return true;
}

}  // namespace

int run_rouge_jsonl(std::istream& in, const std::string& source, bool use_stemmer,
                    std::ostream& out, std::ostream& err) {
  RougeOptions options;
  options.use_stemmer = use_stemmer;
  double sum[4] = {0, 0, 0, 0};
  int64_t count = 0, errors = 0, line_no = 0;
  std::string line;
  while (std::getline(in, line)) {
    ++line_no;
    if (is_blank(line)) continue;
    OrderedJson row;
    row["line"] = line_no;
    Json id;  // echoed on the result or the error, when the line has one
    bool has_id = false;
    try {
      Json j;
      try {
        j = Json::parse(line);
      } catch (const Json::exception& e) {
        fail(Status::kInvalidArgument, "not valid JSON ({})", e.what());
      }
      if (j.is_object() && j.contains("id")) {
        id = j.at("id");
        has_id = true;
        row["id"] = id;
      }
      const Pair p = read_pair(j);
      const RougeScores s = p.multi ? rouge_score_multi(p.references, p.generated, options)
                                    : rouge_score(p.references[0], p.generated, options);
      const double f[4] = {s.rouge1.fmeasure, s.rouge2.fmeasure, s.rougeL.fmeasure,
                           s.rougeLsum.fmeasure};
      row["rouge1"] = f[0];
      row["rouge2"] = f[1];
      row["rougeL"] = f[2];
      row["rougeLsum"] = f[3];
      for (int k = 0; k < 4; ++k) sum[k] += f[k];
      ++count;
    } catch (const Error& e) {
      ++errors;
      err << source << ":" << line_no << ": " << e.what() << "\n";
      row = OrderedJson();
      row["line"] = line_no;
      if (has_id) row["id"] = id;
      row["error"] = e.what();
    }
    // Invalid UTF-8 from the input may sit in an error message: replace it
    // rather than throw, so the line is still reported.
    out << row.dump(-1, ' ', false, OrderedJson::error_handler_t::replace) << "\n";
  }
  OrderedJson mean;
  const char* names[4] = {"rouge1", "rouge2", "rougeL", "rougeLsum"};
  for (int k = 0; k < 4; ++k)
    mean[names[k]] = count > 0 ? sum[k] / static_cast<double>(count) : 0.0;
  OrderedJson summary;
  summary["mean"] = mean;
  summary["count"] = count;
  summary["errors"] = errors;
  out << summary.dump() << "\n";
  return errors == 0 ? 0 : static_cast<int>(Status::kInvalidArgument);
}

}  // namespace udaci
