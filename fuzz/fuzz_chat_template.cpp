// The chat-template renderer (ChatTemplate) on arbitrary template text and
// messages. Input: the template, then optionally NUL-separated role and
// content strings (NUL never occurs in a template a file can carry usefully);
// without them a fixed four-turn conversation is rendered. Parsing or
// rendering may fail only with udaci::Error; the step, size and depth limits
// of the interpreter keep every input to bounded time and memory.
#include "fuzz_common.hpp"
#include "text/chat_template.hpp"

using namespace udaci;
using udaci::fuzz::as_text;
using udaci::fuzz::expect_error_or_ok;

namespace {

const std::vector<ChatMessage> kConversation = {
    {"system", "You are terse."},
    {"user", "Hi there"},
    {"assistant", "Hello!"},
    {"user", "Tell me 3 things."},
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string_view> parts =
      udaci::fuzz::split_parts(as_text(data, size), std::string_view("\0", 1), 65);
  std::vector<ChatMessage> messages;
  for (size_t i = 1; i + 1 < parts.size(); i += 2)
    messages.push_back({std::string(parts[i]), std::string(parts[i + 1])});
  if (parts.size() == 1) messages = kConversation;

  expect_error_or_ok([&] {
    const ChatTemplate tmpl{std::string(parts[0])};
    ChatRenderOptions opt;
    opt.bos_token = "<s>";
    opt.eos_token = "</s>";
    (void)tmpl.render(messages, opt);
  });
  return 0;
}
