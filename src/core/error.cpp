#include "core/error.hpp"

namespace udaci {

// Identifiers, the same in C (udaci_status_name), C++ (udaci::Error::status_name),
// Python (udaci.Error.status) and the CLI's messages (issue #21).
const char* status_name(Status s) {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kInvalidArgument: return "invalid_argument";
    case Status::kNotFound: return "not_found";
    case Status::kBadModelFile: return "bad_model_file";
    case Status::kUnsupported: return "unsupported";
    case Status::kOutOfMemory: return "out_of_memory";
    case Status::kBufferTooSmall: return "buffer_too_small";
    case Status::kCancelled: return "cancelled";
    case Status::kCuda: return "cuda";
    case Status::kDistributed: return "distributed";
    case Status::kInternal: return "internal";
  }
  return "unknown_status";
}

}  // namespace udaci
