#include "core/strategy_options.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

#include "core/error.hpp"

namespace udaci {

std::string StrategyOptions::get_string(const std::string&, const std::string& key,
                                        const std::string& fallback) const {
  auto it = values_.find(key);
  const std::string& v = it == values_.end() ? fallback : it->second;
  record(key, v);
  return v;
}

int64_t StrategyOptions::get_int(const std::string& owner, const std::string& key, int64_t fallback) const {
  auto it = values_.find(key);
  if (it == values_.end()) {
    record(key, std::to_string(fallback));
    return fallback;
  }
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(it->second.c_str(), &end, 10);
  UDACI_CHECK(!it->second.empty() && *end == '\0' && errno == 0,
              "{}: option \"{}\" must be an integer, got \"{}\"", owner, key, it->second);
  record(key, std::to_string(v));
  return v;
}

double StrategyOptions::get_double(const std::string& owner, const std::string& key, double fallback) const {
  auto it = values_.find(key);
  if (it == values_.end()) {
    record(key, fmt::format("{}", fallback));  // shortest text that reads back the same
    return fallback;
  }
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  UDACI_CHECK(!it->second.empty() && *end == '\0' && std::isfinite(v),
              "{}: option \"{}\" must be a finite number, got \"{}\"", owner, key, it->second);
  record(key, fmt::format("{}", v));
  return v;
}

void StrategyOptions::expect_only(const std::string& owner, const std::set<std::string>& known) const {
  for (const auto& kv : values_) {
    if (known.count(kv.first) != 0) continue;
    std::string list;
    for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
    fail(Status::kInvalidArgument, "{}: unknown option \"{}\" (known: {})", owner, kv.first,
         list.empty() ? "none" : list);
  }
}

}  // namespace udaci
