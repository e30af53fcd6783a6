#include "udaci_catch.hpp"

#include <set>

#include "core/error.hpp"
#include "eval/news_dataset.hpp"
#include "test_util.hpp"

using namespace udaci;

TEST_CASE("news: JSONL with bad lines keeps the good ones and names the bad", "[unit][news]") {
  const std::string text =
      "{\"link\": \"a\", \"headline\": \"H1\", \"category\": \"POLITICS\", \"short_description\": \"S1\", "
      "\"authors\": \"X\", \"date\": \"2022-09-23\"}\n"
      "{not json}\n"
      "\n"
      "[1, 2]\n"
      "{\"headline\": \"no summary\"}\n"
      "{\"short_description\": 42}\n"
      "{\"short_description\": \"S2 \xe2\x9c\x93\", \"headline\": \"H2\"}\r\n"
      "{\"short_description\": \"S3\"}";
  NewsDataset ds = parse_news_dataset(text, "mem.jsonl");
  REQUIRE(ds.records.size() == 3);
  CHECK(ds.records[0].headline == "H1");
  CHECK(ds.records[0].line == 1);
  CHECK(ds.records[1].short_description == "S2 \xe2\x9c\x93");
  CHECK(ds.records[1].line == 7);
  CHECK(ds.records[2].line == 8);
  REQUIRE(ds.errors.size() == 4);
  CHECK(ds.errors[0].line == 2);
  CHECK(ds.errors[0].message.find("mem.jsonl:2: invalid JSON") != std::string::npos);
  CHECK(ds.errors[1].line == 4);
  CHECK(ds.errors[1].message.find("expected a JSON object") != std::string::npos);
  CHECK(ds.errors[2].message.find("\"short_description\" is missing or empty") != std::string::npos);
  CHECK(ds.errors[3].message.find("must be a string") != std::string::npos);
}

TEST_CASE("news: one JSON array, and over-long lines", "[unit][news]") {
  NewsDataset a = parse_news_dataset(" [{\"short_description\": \"x\"}, 5]", "arr.json");
  CHECK(a.records.size() == 1);
  REQUIRE(a.errors.size() == 1);
  CHECK(a.errors[0].line == 2);
  CHECK_THROWS_AS(parse_news_dataset("[{\"short_description\": ", "arr.json"), Error);
  NewsReadOptions opt;
  opt.max_line_bytes = 10;
  NewsDataset b = parse_news_dataset("{\"short_description\": \"long enough\"}\n", "x", opt);
  CHECK(b.records.empty());
  REQUIRE(b.errors.size() == 1);
  CHECK(b.errors[0].message.find("exceeds the limit") != std::string::npos);
  CHECK_THROWS_AS(read_news_dataset("/nonexistent.jsonl"), Error);
}

TEST_CASE("news: the shared sample reads completely", "[unit][news]") {
  if (!udaci_test::shared_available()) {
    WARN("../shared is absent: skipping the News Category Dataset sample test");
    return;
  }
  NewsDataset ds = read_news_dataset(udaci_test::shared_path("assets/news/news_category_sample.jsonl"),
                                     NewsReadOptions{{}, 1 << 20});
  CHECK(ds.records.size() == 8782);
  CHECK(ds.errors.empty());
  std::set<std::string> cats;
  for (const auto& r : ds.records) cats.insert(r.category);
  CHECK(cats.count("POLITICS") == 1);
}

TEST_CASE("news: seeded sampling is deterministic, without replacement, per category", "[unit][news]") {
  std::vector<NewsRecord> recs;
  for (int i = 0; i < 100; ++i) {
    NewsRecord r;
    r.headline = std::to_string(i);
    r.category = i % 4 == 0 ? "A" : "B";
    recs.push_back(r);
  }
  auto s1 = sample_records(recs, 10, 7);
  auto s2 = sample_records(recs, 10, 7);
  auto s3 = sample_records(recs, 10, 8);
  REQUIRE(s1.size() == 10);
  std::vector<std::string> h1, h2, h3;
  for (size_t i = 0; i < 10; ++i) {
    h1.push_back(s1[i].headline);
    h2.push_back(s2[i].headline);
    h3.push_back(s3[i].headline);
  }
  CHECK(h1 == h2);
  CHECK(h1 != h3);
  CHECK(std::set<std::string>(h1.begin(), h1.end()).size() == 10);
  auto a = sample_records(recs, 1000, 1, "A");
  CHECK(a.size() == 25);
  for (const auto& r : a) CHECK(r.category == "A");
}
