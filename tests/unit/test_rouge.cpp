// ROUGE and the Porter stemmer against Google's rouge-score 0.1.2 and nltk
// 3.10.4 (tests/fixtures/rouge, made by tools/reference/make_rouge_fixtures.py),
// the JSON Lines driver, and the bootstrap interval.
#include <nlohmann/json.hpp>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "eval/porter_stemmer.hpp"
#include "eval/rouge.hpp"
#include "eval/rouge_cli.hpp"

// Catch first: test_util.hpp defines expect_error only when Catch is included.
#include "udaci_catch.hpp"

#include "test_util.hpp"

using udaci::RougeScores;
using Json = nlohmann::json;

namespace {

std::vector<double> flat(const RougeScores& s) {
  std::vector<double> v;
  for (const udaci::RougeScore* r : {&s.rouge1, &s.rouge2, &s.rougeL, &s.rougeLsum}) {
    v.push_back(r->precision);
    v.push_back(r->recall);
    v.push_back(r->fmeasure);
  }
  return v;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

}  // namespace

TEST_CASE("rouge: every fixture case equals rouge-score, with and without stemming",
          "[unit][rouge]") {
  const auto lines = split_lines(udaci_test::read_file(udaci_test::fixture("rouge/cases.jsonl")));
  REQUIRE(lines.size() >= 2000);
  const char* names[12] = {"rouge1.p", "rouge1.r",    "rouge1.f",    "rouge2.p",
                           "rouge2.r", "rouge2.f",    "rougeL.p",    "rougeL.r",
                           "rougeL.f", "rougeLsum.p", "rougeLsum.r", "rougeLsum.f"};
  int64_t compared = 0, mismatches = 0, inexact = 0, multi = 0, nonzero = 0;
  for (size_t n = 0; n < lines.size(); ++n) {
    const Json c = Json::parse(lines[n]);
    for (const char* mode : {"plain", "stem"}) {
      udaci::RougeOptions o;
      o.use_stemmer = std::string(mode) == "stem";
      RougeScores s;
      if (c.contains("refs")) {
        s = udaci::rouge_score_multi(c["refs"].get<std::vector<std::string>>(),
                                     c["gen"].get<std::string>(), o);
        ++multi;
      } else {
        s = udaci::rouge_score(c["ref"].get<std::string>(), c["gen"].get<std::string>(), o);
      }
      const std::vector<double> got = flat(s);
      const std::vector<double> want = c[mode].get<std::vector<double>>();
      REQUIRE(want.size() == 12);
      for (int k = 0; k < 12; ++k) {
        ++compared;
        if (want[k] != 0) ++nonzero;
        if (got[k] != want[k]) ++inexact;
        if (std::fabs(got[k] - want[k]) > 1e-9) {
          if (++mismatches <= 10)
            UNSCOPED_INFO("case " << n + 1 << " (" << c["kind"].get<std::string>() << ", " << mode
                                  << ") " << names[k] << ": got " << got[k] << ", rouge-score "
                                  << want[k]);
        }
      }
    }
  }
  INFO(compared << " values compared, " << inexact << " not bit-identical");
  CHECK(mismatches == 0);
  // The same formulas in the same operation order give the same doubles.
  CHECK(inexact == 0);
  CHECK(multi >= 2 * 100);
  // The corpus is not degenerate: most values are non-zero.
  CHECK(nonzero > compared / 2);
}

TEST_CASE("rouge: Porter stems equal NLTK's on every fixture word", "[unit][rouge]") {
  const auto lines = split_lines(udaci_test::read_file(udaci_test::fixture("rouge/stems.txt")));
  REQUIRE(lines.size() > 20000);
  int64_t changed = 0, mismatches = 0;
  for (const std::string& line : lines) {
    const size_t tab = line.find('\t');
    const std::string word = line.substr(0, tab);
    const std::string want = tab == std::string::npos ? word : line.substr(tab + 1);
    if (want != word) ++changed;
    const std::string got = udaci::porter_stem(word);
    if (got != want && ++mismatches <= 20)
      UNSCOPED_INFO(word << ": got " << got << ", nltk " << want);
  }
  CHECK(mismatches == 0);
  CHECK(changed > 5000);
}

TEST_CASE("rouge: stemmer rules and NLTK extensions", "[unit][rouge]") {
  // Paper examples (Porter 1980) and NLTK's departures from them.
  CHECK(udaci::porter_stem("caresses") == "caress");
  CHECK(udaci::porter_stem("ponies") == "poni");
  CHECK(udaci::porter_stem("ties") == "tie");  // NLTK: 4-letter "ies"
  CHECK(udaci::porter_stem("died") == "die");  // NLTK: 4-letter "ied"
  CHECK(udaci::porter_stem("hopping") == "hop");
  CHECK(udaci::porter_stem("filing") == "file");
  CHECK(udaci::porter_stem("relational") == "relat");
  CHECK(udaci::porter_stem("enjoy") == "enjoy");  // NLTK: y -> i only after a consonant
  CHECK(udaci::porter_stem("happy") == "happi");
  CHECK(udaci::porter_stem("skies") == "sky");  // irregular forms
  CHECK(udaci::porter_stem("dying") == "die");
  CHECK(udaci::porter_stem("news") == "news");
  CHECK(udaci::porter_stem("generously") == "gener");
  CHECK(udaci::porter_stem("Meeting") == "meet");  // lower-cased first
  CHECK(udaci::porter_stem("is") == "is");         // two letters: unchanged
  CHECK(udaci::porter_stem("") == "");
}

TEST_CASE("rouge: tokenizer matches rouge-score's, Unicode included", "[unit][rouge]") {
  using V = std::vector<std::string>;
  // rouge_score/tokenizers_test.py
  CHECK(udaci::rouge_tokenize("this is a test", false) == V{"this", "is", "a", "test"});
  CHECK(udaci::rouge_tokenize("the friends had a meeting", true) ==
        V{"the", "friend", "had", "a", "meet"});
  CHECK(udaci::rouge_tokenize("  Hello, WORLD!! 3.5% ", false) == V{"hello", "world", "3", "5"});
  CHECK(udaci::rouge_tokenize("...", false).empty());
  CHECK(udaci::rouge_tokenize("", true).empty());
  // Non-ASCII letters separate words; U+0130 lowers to "i" + combining dot,
  // U+212A (Kelvin) to 'k'.
  CHECK(udaci::rouge_tokenize("caf\xC3\xA9 na\xC3\xAFve", false) == V{"caf", "na", "ve"});
  CHECK(udaci::rouge_tokenize("\xC4\xB0stanbul", false) == V{"i", "stanbul"});
  CHECK(udaci::rouge_tokenize("\xE2\x84\xAA"
                              "elvin",
                              false) == V{"kelvin"});
  CHECK(udaci::rouge_tokenize("\xE6\x97\xA5\xE6\x9C\xAC", false).empty());
  // Invalid UTF-8 separates, never swallows an ASCII letter.
  CHECK(udaci::rouge_tokenize("ab\xC3"
                              "cd\xFF"
                              "ef\xC4",
                              false) == V{"ab", "cd", "ef"});
  // Only tokens longer than 3 characters are stemmed.
  CHECK(udaci::rouge_tokenize("ties dies flies", true) == V{"tie", "die", "fli"});
  CHECK(udaci::rouge_tokenize("was has", true) == V{"was", "has"});
  CHECK(udaci::porter_stem("was") == "wa");
}

TEST_CASE("rouge: definitions on hand-checked examples", "[unit][rouge]") {
  // rouge_scorer_test.py: 1 of 1 generated unigrams matches, 1 of 3 reference.
  auto s = udaci::rouge_score("testing one two", "testing");
  CHECK(s.rouge1.precision == 1.0);
  CHECK(s.rouge1.recall == Approx(1.0 / 3));
  CHECK(s.rouge1.fmeasure == Approx(0.5));
  CHECK(s.rouge2.fmeasure == 0.0);
  // Clipping: "the" occurs 4 times in the generated text, twice in the reference.
  s = udaci::rouge_score("the cat the mat", "the the the the");
  CHECK(s.rouge1.precision == Approx(0.5));
  CHECK(s.rouge1.recall == Approx(0.5));
  // Lin 2004 section 3.2: r = w1..w5, c = [w1 w2 w6 w7 w8], [w1 w3 w8 w9 w5]:
  // union LCS w1 w2 w3 w5 -> R = 4/5, P = 4/10.
  s = udaci::rouge_score("w1 w2 w3 w4 w5", "w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5");
  CHECK(s.rougeLsum.recall == Approx(0.8));
  CHECK(s.rougeLsum.precision == Approx(0.4));
  // Without a newline the text is one sentence: Lsum equals L.
  s = udaci::rouge_score("First sentence. Second sentence.", "Second sentence. First sentence.");
  CHECK(s.rougeLsum.fmeasure == Approx(0.5));
  CHECK(s.rougeL.fmeasure == Approx(0.5));
  s = udaci::rouge_score("First sentence.\nSecond sentence.", "Second sentence.\nFirst sentence.");
  CHECK(s.rougeLsum.fmeasure == Approx(1.0));
  CHECK(udaci::rouge_fmeasure(0, 0) == 0.0);
  CHECK(udaci::rouge_fmeasure(1, 0.5) == Approx(2.0 / 3));
}

TEST_CASE("rouge: several references keep the best F per metric", "[unit][rouge]") {
  // rouge_scorer_test.py testRougeAllMulti.
  auto s = udaci::rouge_score_multi({"first text", "first something"}, "text first");
  CHECK(s.rouge1.fmeasure == Approx(1.0));
  CHECK(s.rouge2.fmeasure == 0.0);
  CHECK(s.rougeL.fmeasure == Approx(0.5));
  // Per metric, not one reference for all: rouge1 prefers the bag-of-words
  // match, rouge2 the one sharing a bigram.
  s = udaci::rouge_score_multi({"a b c d", "x c d y z"}, "d c b a c d");
  const auto s0 = udaci::rouge_score("a b c d", "d c b a c d");
  const auto s1 = udaci::rouge_score("x c d y z", "d c b a c d");
  CHECK(s.rouge1.fmeasure == s0.rouge1.fmeasure);
  CHECK(s.rouge1.fmeasure > s1.rouge1.fmeasure);
  CHECK(s.rouge2.fmeasure == std::max(s0.rouge2.fmeasure, s1.rouge2.fmeasure));
  // Ties keep the first reference (np.argmax). "a b" gives P=1/2, R=1 and
  // the 8-word reference P=1, R=1/2: the same F bit for bit.
  const auto t0 = udaci::rouge_score("a b", "a b c d");
  const auto t1 = udaci::rouge_score("a b c d e f g h", "a b c d");
  REQUIRE(t0.rouge1.fmeasure == t1.rouge1.fmeasure);
  REQUIRE(t0.rouge1.precision != t1.rouge1.precision);
  s = udaci::rouge_score_multi({"a b", "a b c d e f g h"}, "a b c d");
  CHECK(s.rouge1.precision == t0.rouge1.precision);
  s = udaci::rouge_score_multi({"a b c d e f g h", "a b"}, "a b c d");
  CHECK(s.rouge1.precision == t1.rouge1.precision);
  udaci_test::expect_error([] { udaci::rouge_score_multi({}, "x"); },
                           udaci::Status::kInvalidArgument, "no references");
}

TEST_CASE("rouge: bootstrap interval", "[unit][rouge]") {
  CHECK(udaci::bootstrap_mean_ci({}).mean == 0.0);
  CHECK(udaci::bootstrap_mean_ci({}).high == 0.0);
  // Constant input: zero width at the value.
  auto c = udaci::bootstrap_mean_ci(std::vector<double>(50, 0.3));
  CHECK(c.low == c.mean);
  CHECK(c.high == c.mean);
  CHECK(c.mean == Approx(0.3));
  // Values 0..n-1 scaled: the interval contains the mean, is deterministic by
  // seed, changes with the seed, and narrows as the sample grows
  // (standard error ~ 1/sqrt(n)).
  auto make = [](int n) {
    std::vector<double> v;
    for (int i = 0; i < n; ++i) v.push_back(static_cast<double>((i * 37) % 101) / 100.0);
    return v;
  };
  const auto small = udaci::bootstrap_mean_ci(make(40), 1000, 0.95, 1);
  const auto large = udaci::bootstrap_mean_ci(make(1600), 1000, 0.95, 1);
  CHECK(small.low < small.mean);
  CHECK(small.mean < small.high);
  CHECK(large.low < large.mean);
  CHECK(large.mean < large.high);
  const double w_small = small.high - small.low, w_large = large.high - large.low;
  CHECK(w_large < w_small / 3);  // sqrt(40) ratio would be 6.3
  // Normal approximation: width ~ 2 * 1.96 * sd / sqrt(n); sd of ~U(0,1) is ~0.29.
  CHECK(w_large == Approx(2 * 1.96 * 0.29 / 40).epsilon(0.2));
  const auto again = udaci::bootstrap_mean_ci(make(40), 1000, 0.95, 1);
  CHECK(again.low == small.low);
  CHECK(again.high == small.high);
  const auto other = udaci::bootstrap_mean_ci(make(40), 1000, 0.95, 2);
  CHECK((other.low != small.low || other.high != small.high));
  // A wider confidence gives a wider interval.
  const auto c99 = udaci::bootstrap_mean_ci(make(40), 1000, 0.99, 1);
  CHECK(c99.high - c99.low > w_small);
  udaci_test::expect_error([] { udaci::bootstrap_mean_ci({1.0}, 0); },
                           udaci::Status::kInvalidArgument, "resamples");
  udaci_test::expect_error([] { udaci::bootstrap_mean_ci({1.0}, 10, 1.5); },
                           udaci::Status::kInvalidArgument, "confidence");
  udaci_test::expect_error(
      [] {
        udaci::bootstrap_mean_ci({1.0, std::nan("")});
      },
      udaci::Status::kInvalidArgument, "not finite");
}

TEST_CASE("rouge: JSON Lines driver scores good lines and reports bad ones", "[unit][rouge]") {
  const std::string input =
      "{\"id\": \"a\", \"reference\": \"testing one two\", \"generated\": \"testing one\"}\n"
      "\n"
      "not json\n"
      "{\"id\": 7, \"references\": [\"first text\", \"first something\"], \"generated\": \"text "
      "first\"}\n"
      "{\"id\": \"bad\", \"reference\": \"x\"}\n"
      "{\"reference\": 3, \"generated\": \"x\"}\n"
      "[1, 2]\n"
      "{\"references\": [], \"generated\": \"x\"}\n"
      "{\"references\": [\"a\", 1], \"generated\": \"x\"}\n"
      "{\"reference\": \"The friends had a meeting\", \"generated\": \"the friend met\"}\r\n";
  std::istringstream in(input);
  std::ostringstream out, err;
  const int rc = udaci::run_rouge_jsonl(in, "pairs.jsonl", false, out, err);
  CHECK(rc == static_cast<int>(udaci::Status::kInvalidArgument));
  const auto rows = split_lines(out.str());
  REQUIRE(rows.size() == 10);  // 9 non-blank lines + the summary
  std::vector<Json> j;
  for (const auto& r : rows) j.push_back(Json::parse(r));

  CHECK(j[0]["line"] == 1);
  CHECK(j[0]["id"] == "a");
  const auto s0 = udaci::rouge_score("testing one two", "testing one");
  CHECK(j[0]["rouge1"].get<double>() == s0.rouge1.fmeasure);  // full precision
  CHECK(j[0]["rougeLsum"].get<double>() == s0.rougeLsum.fmeasure);
  CHECK(j[1]["line"] == 3);
  CHECK(j[1]["error"].get<std::string>().find("not valid JSON") != std::string::npos);
  CHECK(j[2]["id"] == 7);
  CHECK(j[2]["rouge1"].get<double>() == Approx(1.0));
  CHECK(j[2]["rougeL"].get<double>() == Approx(0.5));
  CHECK(j[3]["error"].get<std::string>().find("\"generated\"") != std::string::npos);
  CHECK(j[3]["id"] == "bad");  // the id travels with the error too
  CHECK(!j[4].contains("id"));
  CHECK(j[4]["error"].get<std::string>().find("\"reference\" must be a string") !=
        std::string::npos);
  CHECK(j[5]["error"].get<std::string>().find("JSON object") != std::string::npos);
  CHECK(j[6]["error"].get<std::string>().find("empty array") != std::string::npos);
  CHECK(j[7]["error"].get<std::string>().find("\"references\"[1]") != std::string::npos);
  CHECK(j[8]["line"] == 10);
  CHECK(!j[8].contains("error"));

  const Json& summary = j[9];
  CHECK(summary["count"] == 3);
  CHECK(summary["errors"] == 6);
  for (const char* m : {"rouge1", "rouge2", "rougeL", "rougeLsum"}) {
    const double mean = (j[0][m].get<double>() + j[2][m].get<double>() + j[8][m].get<double>()) / 3;
    CHECK(summary["mean"][m].get<double>() == Approx(mean).epsilon(1e-12));
  }
  // Every bad line is named on err with the source and its line number.
  const std::string e = err.str();
  for (const char* where : {"pairs.jsonl:3:", "pairs.jsonl:5:", "pairs.jsonl:6:", "pairs.jsonl:7:",
                            "pairs.jsonl:8:", "pairs.jsonl:9:"})
    CHECK(e.find(where) != std::string::npos);
  CHECK(e.find("pairs.jsonl:1:") == std::string::npos);

  // Stemming changes the last pair ("friends"/"friend", "meeting"/"met").
  std::istringstream in2(input);
  std::ostringstream out2, err2;
  udaci::run_rouge_jsonl(in2, "pairs.jsonl", true, out2, err2);
  const Json stemmed = Json::parse(split_lines(out2.str())[8]);
  CHECK(stemmed["rouge1"].get<double>() > j[8]["rouge1"].get<double>());
}

TEST_CASE("rouge: JSON Lines driver returns 0 without errors, and survives odd input",
          "[unit][rouge]") {
  std::istringstream in(
      "{\"reference\": \"a b c\", \"generated\": \"a b c\"}\n"
      "{\"reference\": \"\", \"generated\": \"\"}\n");
  std::ostringstream out, err;
  CHECK(udaci::run_rouge_jsonl(in, "x", false, out, err) == 0);
  CHECK(err.str().empty());
  const auto rows = split_lines(out.str());
  REQUIRE(rows.size() == 3);
  const Json summary = Json::parse(rows[2]);
  CHECK(summary["count"] == 2);
  CHECK(summary["mean"]["rouge1"].get<double>() == Approx(0.5));

  // Empty input: a summary with zeros.
  std::istringstream empty("");
  std::ostringstream out_e, err_e;
  CHECK(udaci::run_rouge_jsonl(empty, "x", false, out_e, err_e) == 0);
  const Json s = Json::parse(out_e.str());
  CHECK(s["count"] == 0);
  CHECK(s["mean"]["rougeL"].get<double>() == 0.0);

  // Invalid UTF-8 inside a JSON string is a reported error, and the output
  // stays valid JSON.
  std::istringstream bad("{\"reference\": \"\xFF\xFE\", \"generated\": \"x\"}\n");
  std::ostringstream out_b, err_b;
  CHECK(udaci::run_rouge_jsonl(bad, "x", false, out_b, err_b) != 0);
  const auto brows = split_lines(out_b.str());
  REQUIRE(brows.size() == 2);
  CHECK(Json::parse(brows[0]).contains("error"));
}
