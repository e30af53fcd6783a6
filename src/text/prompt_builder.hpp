// THE headline prompt: the one place that decides what a model is asked
// (issue M2 item 4). Everything that turns a news summary into prompt text
// (CLI, C ABI, Python, benchmark, evaluation) goes through PromptBuilder, and
// everything that turns generated text into a headline goes through
// clean_headline.
//
// Chat models (a chat template in tokenizer_config.json / GGUF metadata):
//   system: PromptOptions::system
//   user:   PromptOptions::instruction with "{summary}" replaced
//   rendered by the model's ChatTemplate with add_generation_prompt.
// Base models (no template, or use_chat_template = false):
//   PromptOptions::completion with "{summary}" replaced
//   ("Article: {summary}\nHeadline:").
//
// BOS: chat templates such as Llama 3.x print the BOS token text themselves;
// when build()'s result starts with options.chat.bos_token, tokenize it
// without adding BOS again. The completion prompt never contains BOS: let
// the tokenizer add it as the model's tokenizer config says.
//
// Thread safety: a PromptBuilder is immutable after construction; build()
// may be called from many threads at once.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "text/chat_template.hpp"

namespace udaci {

// The defaults. They are part of udaci's reproducible behaviour (fixtures
// made with llama.cpp and transformers use exactly these strings): change
// them only together with those fixtures.
inline constexpr const char* kDefaultHeadlineSystem =
    "You are a helpful assistant that writes concise news headlines.";
inline constexpr const char* kDefaultHeadlineInstruction =
    "Write one concise headline for this news summary:\n\n{summary}";
inline constexpr const char* kDefaultCompletionPrompt = "Article: {summary}\nHeadline:";
inline constexpr size_t kDefaultMaxSummaryBytes = 16 * 1024;

struct PromptOptions {
  // System message of the chat prompt; empty: no system message is sent
  // (the template may still add its own, as SmolLM2's does).
  std::string system = kDefaultHeadlineSystem;
  // User message of the chat prompt; every "{summary}" is replaced by the
  // normalised summary (once: text inside the summary is never re-expanded).
  std::string instruction = kDefaultHeadlineInstruction;
  // Prompt for base models, same placeholder rule.
  std::string completion = kDefaultCompletionPrompt;
  // Use the model's chat template when it has one; false forces the
  // completion prompt even for chat models.
  bool use_chat_template = true;
  // Longest summary accepted, in bytes of UTF-8 after trimming; longer input
  // is refused (Error kInvalidArgument), never silently cut.
  size_t max_summary_bytes = kDefaultMaxSummaryBytes;
  // Passed to ChatTemplate::render: add_generation_prompt (true),
  // bos_token/eos_token strings of the model's tokenizer, date_string.
  ChatRenderOptions chat;
};

class PromptBuilder {
 public:
  // chat_template: the model's template text (empty when it has none).
  // Throws Error(kInvalidArgument) when instruction or completion lacks
  // "{summary}" or max_summary_bytes is 0, and what ChatTemplate's
  // constructor throws (kUnsupported / kInvalidArgument, "...; use the
  // completion prompt") for a template udaci cannot render; a caller that
  // prefers a fallback retries with use_chat_template = false.
  explicit PromptBuilder(PromptOptions options = {}, const std::string& chat_template = "");

  // The prompt text for one summary. Throws Error(kInvalidArgument) for a
  // summary that is not valid UTF-8, empty after trimming, or longer than
  // max_summary_bytes.
  std::string build(const std::string& summary) const;

  // The chat messages build() renders (system, if any, then user).
  std::vector<ChatMessage> messages(const std::string& summary) const;

  // True when build() renders the chat template, false for the completion prompt.
  bool uses_chat_template() const { return chat_template_.has_value(); }

  const PromptOptions& options() const { return options_; }

 private:
  PromptOptions options_;
  std::optional<ChatTemplate> chat_template_;
};

// The summary as it goes into a prompt: surrounding whitespace (Unicode
// White_Space, as Python's str.strip) removed, nothing else changed. Throws
// Error(kInvalidArgument) for invalid UTF-8, an empty result, or more than
// max_bytes bytes.
std::string normalize_summary(std::string_view summary, size_t max_bytes = kDefaultMaxSummaryBytes);

// One clean headline line from generated text:
//  - lines are split at \n, \r, U+2028, U+2029; the first line that is
//    non-empty after cleaning wins; a leading line that ends with ':' (an
//    introduction such as "Here is a headline:") is skipped when a later
//    line has text;
//  - per line, repeated until nothing changes: trim whitespace; drop
//    markdown markers (leading '#'s, '>' quote, "- "/"* "/"• " bullets,
//    every "**" and "__", a wrapping '*' or '_'); drop a label ending in
//    "headline" or "title" before ':' (case-insensitive, at most six words,
//    e.g. "Headline:", "**Title:**", "Suggested headline:"); drop matching
//    surrounding quotes " ' “ ” ‘ ’ « » „ ` and a stray unmatched leading or
//    trailing double quote (a trailing apostrophe such as "Students'" stays);
//  - the result is valid UTF-8: invalid bytes become U+FFFD and an
//    incomplete sequence at the very end (generation cut mid-character) is
//    dropped; nothing is ever cut inside a character.
// Returns "" when no line has text.
std::string clean_headline(std::string_view generated);

// For stopping generation early: true once `generated` holds a complete line
// (ended by a line break) that clean_headline would return, i.e. one that
// cleans to text and is not an introduction ending in ':'. While this is
// false, more tokens may still change clean_headline's answer.
bool has_complete_headline(std::string_view generated);

}  // namespace udaci
