#include "core/error.hpp"

namespace udaci {

const char* status_name(Status s) {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kInvalidArgument: return "invalid argument";
    case Status::kNotFound: return "not found";
    case Status::kBadModelFile: return "bad model file";
    case Status::kUnsupported: return "unsupported";
    case Status::kOutOfMemory: return "out of memory";
    case Status::kBufferTooSmall: return "buffer too small";
    case Status::kCancelled: return "cancelled";
    case Status::kCuda: return "CUDA error";
    case Status::kDistributed: return "distributed error";
    case Status::kInternal: return "internal error";
  }
  return "unknown status";
}

}  // namespace udaci
