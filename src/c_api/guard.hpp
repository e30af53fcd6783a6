// The one guard every extern "C" body of the C ABI runs in (docs/STYLE.md
// "Public surface"): it turns every C++ exception into a udaci_status and a
// thread-local message for udaci_last_error(), so that no exception, abort()
// or exit() crosses the ABI. Also the argument checks that all entry points
// share (NULL pointers, struct_size, the caller-buffer output protocol).
#pragma once

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "udaci/udaci.h"

namespace udaci::c_api {

// The thread's last-error slot (libgit2's giterr_last model: thread-local,
// owned by the library, overwritten by the next call on the thread).
const char* last_error_text() noexcept;
void clear_last_error() noexcept;
// Records "<where>: <what>" and returns `status`. Never throws: when even
// the message cannot be stored, a fixed out-of-memory text is kept instead.
udaci_status record_error(udaci_status status, const char* where, const char* what) noexcept;

// Maps an internal Status to the C enum (their values are identical by
// construction, checked in guard.cpp); anything unknown, and kOk for a
// thrown error, becomes UDACI_ERR_INTERNAL.
udaci_status to_c_status(Status s) noexcept;

// kReset: a call that reports a status starts with an empty last error, so a
// stale message never explains a later failure. kKeep: calls that cannot
// report a status (destroy, names, versions) leave the slot alone, so
// `udaci_result_destroy(r); puts(udaci_last_error());` still shows the
// failure before it.
enum class ErrorSlot { kReset, kKeep };

// Runs body() and returns UDACI_OK, or the status of whatever it threw with
// the message recorded. Catch order: most specific first, c10 before
// std::exception because c10::Error derives from it, and c10's out-of-memory
// error before its base.
template <typename Body>
udaci_status guard(const char* where, Body&& body, ErrorSlot slot = ErrorSlot::kReset) noexcept {
  if (slot == ErrorSlot::kReset) clear_last_error();
  try {
    body();
    return UDACI_OK;
  } catch (const Error& e) {
    return record_error(to_c_status(e.status()), where, e.what());
  } catch (const c10::OutOfMemoryError& e) {
    return record_error(UDACI_ERR_OUT_OF_MEMORY, where, e.what_without_backtrace());
  } catch (const c10::Error& e) {
    return record_error(UDACI_ERR_INTERNAL, where, e.what_without_backtrace());
  } catch (const std::bad_alloc& e) {
    return record_error(UDACI_ERR_OUT_OF_MEMORY, where, e.what());
  } catch (const std::exception& e) {
    return record_error(UDACI_ERR_INTERNAL, where, e.what());
  } catch (...) {
    return record_error(UDACI_ERR_INTERNAL, where, "unknown exception (not a std::exception)");
  }
}

// Throws Error(kInvalidArgument) "<name> is NULL".
inline void require(const void* p, const char* name) {
  if (p == nullptr) fail(Status::kInvalidArgument, "{} is NULL", name);
}

// Reads a caller's parameter struct: at least `min_size` bytes (the end of
// the last field of the first published layout), a larger struct_size from
// a newer header is accepted and only the prefix this library knows is read.
// Fields beyond the caller's struct_size keep `defaults`.
template <typename T>
T read_params(const T* p, const T& defaults, size_t min_size, const char* name) {
  require(p, name);
  UDACI_CHECK(p->struct_size >= min_size,
              "{}->struct_size is {} but must be at least {} (start from the *_default_params() "
              "function of udaci.h)",
              name, p->struct_size, min_size);
  T out = defaults;
  std::memcpy(static_cast<void*>(&out), static_cast<const void*>(p),
              std::min<size_t>(p->struct_size, sizeof(T)));
  out.struct_size = static_cast<uint32_t>(sizeof(T));
  return out;
}

// The caller-buffer protocol of udaci.h for `n` elements of T (text passes
// its bytes plus the terminating NUL): *inout_len in = capacity, out = size
// needed; too small -> Error(kBufferTooSmall) with the buffer untouched.
template <typename T>
void copy_out(const T* data, size_t n, T* buf, size_t* inout_len, const char* what,
              const char* unit) {
  require(inout_len, "inout_len");
  const size_t capacity = *inout_len;
  UDACI_CHECK(buf != nullptr || capacity == 0, "buf is NULL but *inout_len is {} (pass 0 to ask for the size)",
              capacity);
  *inout_len = n;
  if (capacity < n)
    fail(Status::kBufferTooSmall, "{} needs {} {}, the buffer holds {}", what, n, unit, capacity);
  if (n > 0) std::memcpy(buf, data, n * sizeof(T));
}

inline void copy_text(const std::string& s, char* buf, size_t* inout_len, const char* what) {
  // c_str() is NUL-terminated, so size() + 1 bytes copy the terminator too.
  copy_out(s.c_str(), s.size() + 1, buf, inout_len, what, "bytes (terminating NUL included)");
}

inline void copy_ids(const std::vector<int32_t>& ids, int32_t* buf, size_t* inout_len,
                     const char* what) {
  copy_out(ids.data(), ids.size(), buf, inout_len, what, "token ids");
}

}  // namespace udaci::c_api
