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

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace udaci
