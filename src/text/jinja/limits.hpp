// The limits every stage of the chat-template interpreter enforces, and the
// hint its errors end with.
#pragma once

#include <cstddef>
#include <cstdint>

namespace udaci {
namespace jinja {

inline constexpr const char* kFallbackHint = "; use the completion prompt";
inline constexpr int kMaxDepth = 256;                    // nesting of expressions / blocks
inline constexpr size_t kMaxValueSize = size_t{1} << 24;  // bytes of one string an operation may build
inline constexpr size_t kMaxListSize = size_t{1} << 20;   // elements of one list an operation may build
// Work of one render (issue #12): each rendered node and evaluated expression
// is a step, a loop iteration (a scope and a loop object) kLoopSteps, and
// each list element and each 64 bytes of string an operation produces or
// walks one more. The size limits above bound one operation; without this a
// few nested loops over range() ran for hours (fuzz/corpus/chat_template/
// regress_*). The SmolLM2 and Llama 3.x templates take well under a hundred
// steps per message.
inline constexpr uint64_t kMaxRenderSteps = uint64_t{1} << 21;
inline constexpr uint64_t kLoopSteps = 4;

}  // namespace jinja
}  // namespace udaci
