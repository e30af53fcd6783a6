// Chat templates: the Jinja text a model ships (tokenizer_config.json
// "chat_template", chat_template.jinja, GGUF "tokenizer.chat_template")
// rendered by a small Jinja interpreter of our own.
//
// Why an interpreter and not built-in renderers keyed on marker strings: a
// model's template is the contract of how it was trained to see a
// conversation, and variants of "the same" template differ in details
// (shared/assets/tokenizers/llama3 alone holds two different Llama 3
// templates). Interpreting the text renders each one as written.
//
// Reference behaviour: Hugging Face transformers' apply_chat_template(...,
// tokenize=False), i.e. jinja2's ImmutableSandboxedEnvironment with
// trim_blocks=True and lstrip_blocks=True, plus transformers' globals
// raise_exception and namespace and its tojson filter (json.dumps with
// ensure_ascii=False). tests/fixtures/chat/renders.jsonl holds renders made by
// that reference (tools/reference/make_chat_fixtures.py) and the unit tests
// ("[chat]") require byte-identical output.
//
// Supported Jinja subset (everything the SmolLM2 ChatML and Llama 3.x
// templates use, and the common constructs of other Hub templates):
//   {{ }} {% %} {# #}, whitespace control '-' and '+', trim_blocks,
//   lstrip_blocks; if/elif/else, for (loop.index/index0/revindex/revindex0/
//   first/last/length/previtem/nextitem, "for x in xs if cond", for-else,
//   "for k, v in d.items()"), set (also "set ns.attr = ..." and block set),
//   break/continue, generation/endgeneration (rendered transparently);
//   literals (strings with Python escapes, integers, true/false/none, lists,
//   dicts), + - * // % ** ~, comparisons (chained), and/or/not, in/not in,
//   x if c else y, attribute/item access, slices; filters trim, length,
//   count, tojson(indent), string, first, last, join, default, replace,
//   upper, lower, items, list; tests defined, undefined, none, boolean, true,
//   false, integer, number, string, mapping, iterable, sequence, odd, even,
//   eq/equalto/ne; functions raise_exception, namespace, range; string
//   methods strip/lstrip/rstrip/startswith/endswith/split/upper/lower/replace,
//   dict methods get/items/keys/values.
// Anything else (macros, includes, floats, '/', string '%' formatting, other
// filters...) is rejected with Error(kUnsupported) naming the construct, at
// construction when it is syntax and at render when it is a name.
// strftime_now is deliberately not provided: the date is an explicit option
// (ChatRenderOptions::date_string) so that a prompt never depends on the clock.
//
// Thread safety: a ChatTemplate is immutable after construction; render() may
// be called from many threads at once. Copies share the parsed template.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace udaci {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant", or what the template knows
  std::string content;  // UTF-8 text, passed to the template unchanged
};

// The Llama 3.x templates' own fallback date ("Today Date: ..." in the system
// header) when no date_string is given and no strftime_now exists.
inline constexpr const char* kDefaultChatDate = "26 Jul 2024";

struct ChatRenderOptions {
  // Append the header that opens the assistant's turn (what a generation
  // prompt needs). Note: transformers' own default is false.
  bool add_generation_prompt = true;
  // Special-token strings the template may print ({{ bos_token }}). The
  // Llama 3.x templates print bos_token themselves, so a rendered prompt
  // must be tokenized WITHOUT adding BOS again.
  std::string bos_token;
  std::string eos_token;
  // The template variable date_string (Llama 3.x: "Today Date: ..."; other
  // templates ignore it). transformers renders today's date through
  // strftime_now("%d %b %Y"); udaci defaults to the template's fixed fallback
  // so that prompts are reproducible. Pass format_chat_date(...) of today to
  // match transformers on a given day. Empty: the variable is left undefined
  // and the template's own fallback applies.
  std::string date_string = kDefaultChatDate;
};

class ChatTemplate {
 public:
  // Parses the template text. Throws Error(kInvalidArgument) for a syntax
  // error or text that is not valid UTF-8 (message has the line), and
  // Error(kUnsupported) for Jinja outside the supported subset; both
  // messages end in "; use the completion prompt" so a caller can fall back.
  explicit ChatTemplate(std::string source);

  // Renders the conversation. Throws Error(kInvalidArgument) when a message
  // is not valid UTF-8, when the template raises (raise_exception, e.g. an
  // unsupported role order) or fails at run time (e.g. an empty conversation
  // where the template reads messages[0]), and Error(kUnsupported) for a
  // filter, test or function outside the subset.
  std::string render(const std::vector<ChatMessage>& messages,
                     const ChatRenderOptions& options = {}) const;

  const std::string& source() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

// "%d %b %Y" in the C locale, e.g. format_chat_date(2024, 7, 26) ==
// "26 Jul 2024" (what the Llama 3.x templates ask strftime_now for).
// Error(kInvalidArgument) for a month outside 1..12 or a day outside 1..31.
std::string format_chat_date(int year, int month, int day);

}  // namespace udaci
