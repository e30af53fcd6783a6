// Typed errors inside the library. Every failure carries a Status whose values
// mirror udaci_status of the C ABI (include/udaci/udaci.h), so the ABI guard can
// map an exception to a status without losing the message.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace udaci {

enum class Status : int {
  kOk = 0,
  kInvalidArgument = 1,
  kNotFound = 2,
  kBadModelFile = 3,
  kUnsupported = 4,
  kOutOfMemory = 5,
  kBufferTooSmall = 6,
  kCancelled = 7,
  kCuda = 8,
  kDistributed = 9,
  kInternal = 10,
};

const char* status_name(Status s);

class Error : public std::runtime_error {
 public:
  Error(Status status, std::string message)
      : std::runtime_error(std::move(message)), status_(status) {}
  Status status() const { return status_; }

 private:
  Status status_;
};

template <typename... Args>
[[noreturn]] void fail(Status status, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(status, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace udaci

// UDACI_CHECK(cond, "fmt {}", args...): throws udaci::Error(kInvalidArgument).
// UDACI_CHECK_S(status, cond, "fmt {}", args...): throws with the given status.
#define UDACI_CHECK(cond, ...)                                            \
  do {                                                                    \
    if (!(cond)) ::udaci::fail(::udaci::Status::kInvalidArgument, __VA_ARGS__); \
  } while (0)
#define UDACI_CHECK_S(status, cond, ...)                 \
  do {                                                   \
    if (!(cond)) ::udaci::fail((status), __VA_ARGS__);   \
  } while (0)
