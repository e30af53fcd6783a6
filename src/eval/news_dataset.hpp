// The News Category Dataset (Rishabh Misra, arXiv:2209.11429; Misra & Grover
// 2021, "Sculpting Data for ML"; CC BY 4.0): HuffPost records with link,
// headline, category, short_description, authors and date. Read from JSON
// Lines (one object per line, as published) or from one JSON array. A bad
// record is reported with its line number and skipped; it never stops the
// rest from being read.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace udaci {

struct NewsRecord {
  std::string link;
  std::string headline;
  std::string category;
  std::string short_description;
  std::string authors;
  std::string date;
  int64_t line = 0;  // 1-based line in the file (JSONL) or index + 1 (array)
};

struct RecordError {
  int64_t line = 0;
  std::string message;
};

struct NewsDataset {
  std::vector<NewsRecord> records;
  std::vector<RecordError> errors;
};

struct NewsReadOptions {
  // Fields that must be present and non-empty for a record to be kept; a
  // record without them becomes a RecordError. short_description is what the
  // model reads.
  std::vector<std::string> required = {"short_description"};
  // Longest accepted line; longer lines are reported, not parsed.
  size_t max_line_bytes = 1 << 20;
};

// Reads a file; throws Error(kNotFound) when it cannot be opened. The format
// (JSONL or one JSON array) is detected from the first non-space byte.
NewsDataset read_news_dataset(const std::string& path, const NewsReadOptions& options = {});
// The same over text already in memory; `source` names it in messages.
NewsDataset parse_news_dataset(const std::string& text, const std::string& source,
                               const NewsReadOptions& options = {});

// n records chosen without replacement by a seeded shuffle (the same seed and
// input give the same records on every platform), optionally only from one
// category (empty = all). Fewer than n when fewer exist.
std::vector<NewsRecord> sample_records(const std::vector<NewsRecord>& records, size_t n,
                                       uint64_t seed, const std::string& category = "");

}  // namespace udaci
