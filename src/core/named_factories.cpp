#include "core/named_factories.hpp"

#include "core/error.hpp"

namespace udaci {

void fail_unknown_strategy(const std::string& kind, const std::string& name,
                           const std::vector<std::string>& known) {
  std::string list;
  for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
  fail(Status::kInvalidArgument, "unknown {} '{}' (known: {})", kind, name, list);
}

}  // namespace udaci
