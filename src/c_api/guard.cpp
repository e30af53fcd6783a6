#include "c_api/guard.hpp"

namespace udaci::c_api {

// The C enum and the internal Status are the same list with the same values;
// a value added to one without the other fails to compile here.
static_assert(UDACI_OK == static_cast<int>(Status::kOk));
static_assert(UDACI_ERR_INVALID_ARGUMENT == static_cast<int>(Status::kInvalidArgument));
static_assert(UDACI_ERR_NOT_FOUND == static_cast<int>(Status::kNotFound));
static_assert(UDACI_ERR_BAD_MODEL_FILE == static_cast<int>(Status::kBadModelFile));
static_assert(UDACI_ERR_UNSUPPORTED == static_cast<int>(Status::kUnsupported));
static_assert(UDACI_ERR_OUT_OF_MEMORY == static_cast<int>(Status::kOutOfMemory));
static_assert(UDACI_ERR_BUFFER_TOO_SMALL == static_cast<int>(Status::kBufferTooSmall));
static_assert(UDACI_ERR_CANCELLED == static_cast<int>(Status::kCancelled));
static_assert(UDACI_ERR_CUDA == static_cast<int>(Status::kCuda));
static_assert(UDACI_ERR_DISTRIBUTED == static_cast<int>(Status::kDistributed));
static_assert(UDACI_ERR_INTERNAL == static_cast<int>(Status::kInternal));

namespace {

struct LastError {
  std::string text;
  // Set instead of `text` when storing the message itself ran out of memory.
  const char* fixed = nullptr;
};

thread_local LastError t_last_error;

constexpr const char* kNoMemoryForMessage =
    "udaci: out of memory (the error message itself could not be stored)";

}  // namespace

const char* last_error_text() noexcept {
  return t_last_error.fixed != nullptr ? t_last_error.fixed : t_last_error.text.c_str();
}

void clear_last_error() noexcept {
  t_last_error.text.clear();  // keeps the capacity: does not allocate or throw
  t_last_error.fixed = nullptr;
}

udaci_status record_error(udaci_status status, const char* where, const char* what) noexcept {
  try {
    std::string msg = where != nullptr ? where : "udaci";
    msg += ": ";
    msg += what != nullptr && *what != '\0' ? what : udaci_status_name(status);
    t_last_error.text = std::move(msg);
    t_last_error.fixed = nullptr;
  } catch (...) {
    t_last_error.text.clear();
    t_last_error.fixed = kNoMemoryForMessage;
  }
  return status;
}

udaci_status to_c_status(Status s) noexcept {
  const int v = static_cast<int>(s);
  if (v <= UDACI_OK || v > UDACI_ERR_INTERNAL) return UDACI_ERR_INTERNAL;
  return static_cast<udaci_status>(v);
}

}  // namespace udaci::c_api
