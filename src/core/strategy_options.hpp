// Options of a named strategy, as key = value strings from a config file, the
// CLI (--quantizer-opt group=64) or the C ABI. Each strategy reads the keys it
// knows through the typed getters, which name the strategy and the key in
// their errors, and rejects keys it does not know.
#pragma once

#include <map>
#include <set>
#include <string>

namespace udaci {

class StrategyOptions {
 public:
  StrategyOptions() = default;
  StrategyOptions(std::map<std::string, std::string> values) : values_(std::move(values)) {}

  void set(const std::string& key, const std::string& value) { values_[key] = value; }
  bool has(const std::string& key) const { return values_.count(key) != 0; }
  const std::map<std::string, std::string>& values() const { return values_; }

  // Typed reads with a default; Error(kInvalidArgument) naming `owner` and the
  // key when the value does not parse.
  std::string get_string(const std::string& owner, const std::string& key, const std::string& fallback) const;
  int64_t get_int(const std::string& owner, const std::string& key, int64_t fallback) const;
  double get_double(const std::string& owner, const std::string& key, double fallback) const;

  // Error(kInvalidArgument) naming the first key not in `known`.
  void expect_only(const std::string& owner, const std::set<std::string>& known) const;

  // While set, every typed read also writes the value it settled on (the
  // given one, or the default) to *sink, formatted so that it reads back the
  // same: a strategy's option parser run once on a recording copy spells out
  // every option it knows, defaults included (canonical recipes, issue #21).
  // Not thread-safe; the sink must outlive the reads.
  void record_into(std::map<std::string, std::string>* sink) const { record_ = sink; }

 private:
  void record(const std::string& key, std::string value) const {
    if (record_ != nullptr) (*record_)[key] = std::move(value);
  }

  std::map<std::string, std::string> values_;
  mutable std::map<std::string, std::string>* record_ = nullptr;
};

}  // namespace udaci
