// PromptBuilder (the headline prompt) and clean_headline.
#include "udaci_catch.hpp"

#include <cstdint>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "test_util.hpp"
#include "text/prompt_builder.hpp"

namespace {

using udaci::clean_headline;
using udaci::PromptBuilder;
using udaci::PromptOptions;
using udaci::Status;
using json = nlohmann::json;

using udaci_test::read_file;

using udaci_test::message_of;
using udaci_test::status_of;

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

// The reference render of the default headline prompt (transformers), from
// the chat fixtures: (summary, expected text) for a template id.
std::pair<std::string, std::string> reference_headline_prompt(const std::string& template_id) {
  std::ifstream in(udaci_test::fixture("chat/renders.jsonl"));
  REQUIRE(in.good());
  std::string line;
  while (std::getline(in, line)) {
    const json r = json::parse(line);
    if (r["template"] == template_id && r["conversation"] == "headline_prompt" &&
        r["add_generation_prompt"] == true && r["date_string"] == udaci::kDefaultChatDate) {
      const std::string user = r["messages"][1]["content"];
      return {user.substr(user.find("\n\n") + 2), r["expected"]};
    }
  }
  FAIL("no headline_prompt render for " << template_id);
  return {};
}

}  // namespace

TEST_CASE("the default headline prompt strings", "[prompt]") {
  const PromptOptions o;
  CHECK(o.system == "You are a helpful assistant that writes concise news headlines.");
  CHECK(o.instruction == "Write one concise headline for this news summary:\n\n{summary}");
  CHECK(o.completion == "Article: {summary}\nHeadline:");
  CHECK(o.use_chat_template);
  CHECK(o.max_summary_bytes == 16 * 1024);
  CHECK(o.chat.add_generation_prompt);
}

TEST_CASE("completion prompt for base models", "[prompt]") {
  const PromptBuilder base;
  CHECK_FALSE(base.uses_chat_template());
  CHECK(base.build("  The council approved the park.\n") == "Article: The council approved the park.\nHeadline:");
  // Inner whitespace is kept as written.
  CHECK(base.build("a  b\n\nc\td") == "Article: a  b\n\nc\td\nHeadline:");

  // A chat template is ignored when use_chat_template is false.
  PromptOptions o;
  o.use_chat_template = false;
  const PromptBuilder forced(o, read_file(udaci_test::fixture("chat/smollm2-135m-instruct.jinja")));
  CHECK_FALSE(forced.uses_chat_template());
  CHECK(forced.build("x") == "Article: x\nHeadline:");
}

TEST_CASE("chat prompt equals transformers' render of the default prompt", "[prompt]") {
  {
    const auto [summary, expected] = reference_headline_prompt("smollm2");
    PromptOptions o;
    o.chat.bos_token = "<|im_start|>";
    o.chat.eos_token = "<|im_end|>";
    const PromptBuilder pb(o, read_file(udaci_test::fixture("chat/smollm2-135m-instruct.jinja")));
    CHECK(pb.uses_chat_template());
    CHECK(pb.build(summary) == expected);
    CHECK(pb.build("\n  " + summary + " \t") == expected);  // the summary is trimmed
  }
  if (!udaci_test::shared_available()) {
    WARN("../shared is absent: skipping the Llama 3.2 headline prompt check");
    return;
  }
  const auto [summary, expected] = reference_headline_prompt("llama32");
  PromptOptions o;
  o.chat.bos_token = "<|begin_of_text|>";
  o.chat.eos_token = "<|eot_id|>";
  const PromptBuilder pb(
      o, read_file(udaci_test::shared_path("assets/tokenizers/llama3/llama-3.2-instruct-chat-template.jinja")));
  const std::string prompt = pb.build(summary);
  CHECK(prompt == expected);
  // The template prints BOS itself: the caller must not add another.
  CHECK(prompt.rfind(o.chat.bos_token, 0) == 0);
}

TEST_CASE("messages() of the chat prompt", "[prompt]") {
  const std::string tmpl = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}";
  const PromptBuilder pb({}, tmpl);
  const auto msgs = pb.messages(" S ");
  REQUIRE(msgs.size() == 2);
  CHECK(msgs[0].role == "system");
  CHECK(msgs[0].content == udaci::kDefaultHeadlineSystem);
  CHECK(msgs[1].role == "user");
  CHECK(msgs[1].content == "Write one concise headline for this news summary:\n\nS");
  CHECK(pb.build("S") == "<system>" + std::string(udaci::kDefaultHeadlineSystem) + "<user>" + msgs[1].content);

  PromptOptions o;
  o.system.clear();
  o.instruction = "Summary: {summary}\nAgain: {summary}";
  const PromptBuilder custom(o, tmpl);
  const auto only_user = custom.messages("X");
  REQUIRE(only_user.size() == 1);
  CHECK(only_user[0].content == "Summary: X\nAgain: X");
  // Placeholder text inside the summary is not expanded again, and template
  // syntax in it stays data.
  CHECK(custom.messages("{summary} {{ 1 }}")[0].content == "Summary: {summary} {{ 1 }}\nAgain: {summary} {{ 1 }}");
  CHECK(custom.build("{% if true %}") == "<user>Summary: {% if true %}\nAgain: {% if true %}");
}

TEST_CASE("summary normalisation and limits", "[prompt]") {
  CHECK(udaci::normalize_summary("\xC2\xA0\xE3\x80\x80 text \xE2\x80\x83\n") == "text");  // NBSP, ideographic, em space
  CHECK(udaci::normalize_summary("a \xE2\x80\x8B") == "a \xE2\x80\x8B");  // U+200B is not whitespace
  CHECK(status_of([] { udaci::normalize_summary(""); }) == Status::kInvalidArgument);
  CHECK(status_of([] { udaci::normalize_summary(" \n\t\xC2\xA0"); }) == Status::kInvalidArgument);
  CHECK_THAT(message_of([] { udaci::normalize_summary(" "); }), Catch::Contains("empty"));
  CHECK(status_of([] { udaci::normalize_summary("bad \xC3\x28"); }) == Status::kInvalidArgument);
  CHECK_THAT(message_of([] { udaci::normalize_summary("\xFF"); }), Catch::Contains("UTF-8"));

  const PromptBuilder pb;
  const std::string at_limit(16 * 1024, 'a');
  CHECK_NOTHROW(pb.build(at_limit));
  CHECK_NOTHROW(pb.build("  " + at_limit + "  "));  // the limit applies after trimming
  CHECK(status_of([&] { pb.build(at_limit + "a"); }) == Status::kInvalidArgument);
  CHECK_THAT(message_of([&] { pb.build(at_limit + "a"); }), Catch::Contains("max_summary_bytes"));

  PromptOptions small;
  small.max_summary_bytes = 8;
  const PromptBuilder capped(small);
  CHECK_NOTHROW(capped.build("12345678"));
  CHECK(status_of([&] { capped.build("123456789"); }) == Status::kInvalidArgument);
  CHECK(status_of([&] { capped.build("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"); }) == Status::kInvalidArgument);
}

TEST_CASE("invalid prompt options and templates", "[prompt]") {
  PromptOptions no_ph;
  no_ph.completion = "Article:\nHeadline:";
  CHECK(status_of([&] { PromptBuilder pb(no_ph); }) == Status::kInvalidArgument);
  PromptOptions no_ph_chat;
  no_ph_chat.instruction = "Write a headline.";
  CHECK(status_of([&] { PromptBuilder pb(no_ph_chat, "{{ messages[0].content }}"); }) == Status::kInvalidArgument);
  PromptOptions zero;
  zero.max_summary_bytes = 0;
  CHECK(status_of([&] { PromptBuilder pb(zero); }) == Status::kInvalidArgument);
  // A template outside the supported Jinja subset: Unsupported, with the hint.
  CHECK(status_of([] { PromptBuilder pb({}, "{% macro m() %}{% endmacro %}"); }) == Status::kUnsupported);
  CHECK_THAT(message_of([] { PromptBuilder pb({}, "{% macro m() %}{% endmacro %}"); }),
             Catch::Contains("completion prompt"));
}

TEST_CASE("clean_headline on realistic model outputs", "[prompt]") {
  const std::string h = "City Turns Rail Yard Into Park";
  const std::vector<std::pair<std::string, std::string>> cases{
      {h, h},
      {"  " + h + "  \n", h},
      {"\n\n\n" + h, h},
      {"\"" + h + "\"", h},
      {"'" + h + "'", h},
      {"`" + h + "`", h},
      {"\xE2\x80\x9C" + h + "\xE2\x80\x9D", h},  // “ ”
      {"\xE2\x80\x98" + h + "\xE2\x80\x99", h},  // ‘ ’
      {"\xC2\xAB" + h + "\xC2\xBB", h},          // « »
      {"\xE2\x80\x9E" + h + "\xE2\x80\x9C", h},  // „ “
      {"Headline: " + h, h},
      {"HEADLINE: " + h, h},
      {"headline:" + h, h},
      {"Title: " + h, h},
      {"Headline: \"" + h + "\"", h},
      {"**Headline:** " + h, h},
      {"**Headline**: " + h, h},
      {"**" + h + "**", h},
      {"## " + h, h},
      {"# Headline: \"" + h + "\"", h},
      {"# **\"" + h + "\"**", h},
      {"*" + h + "*", h},
      {"_" + h + "_", h},
      {"> " + h, h},
      {"- " + h, h},
      {"* " + h, h},
      {"Suggested headline: " + h, h},
      {"Here's a headline: " + h, h},
      {"Here\xE2\x80\x99s a headline: " + h, h},
      {h + "\n\nThis headline captures the main point of the summary.", h},
      {h + "\r\nExplanation: it is short.", h},
      {"Here is a concise headline for the news summary:\n\n\"" + h + "\"", h},
      {"Sure! Here's a headline:\n**" + h + "**", h},
      {"Headline:\n" + h, h},
      {"**Headline:**\n\n" + h + "\n", h},
      {"Headline\n" + h, h},
      {"\"" + h, h},           // cut at max tokens: stray opening quote
      {h + "\"", h},           // stray closing quote
      {h + "\xE2\x80\x9D", h},  // stray ”
      {"\xE2\x80\x9C" + h, h},  // stray “
      {"'" + h, h},            // stray opening single quote
      {"\"\"" + h + "\"\"", h},
      // A base model continuing "Article: ...\nHeadline:" runs on into the next article.
      {" " + h + "\n\nArticle: The mayor also said that\nHeadline: Mayor Speaks", h},
      {"Title: \"Caf\xC3\xA9 Owner Wins Award\" ", "Caf\xC3\xA9 Owner Wins Award"},
      {"Headline: 'Rail Yard to Park'", "Rail Yard to Park"},
      {"'Biden's Plan Faces Vote'", "Biden's Plan Faces Vote"},
      {"\xE2\x80\x9CTokyo\xE2\x80\x99s Trains Run Late\xE2\x80\x9D", "Tokyo\xE2\x80\x99s Trains Run Late"},
      {"\xE3\x80\x8C\xE6\x9D\xB1\xE4\xBA\xAC\xE3\x80\x8D", "\xE6\x9D\xB1\xE4\xBA\xAC"},  // 「東京」
      {"\xE6\x9D\xB1\xE4\xBA\xAC\xE3\x81\xA7\xE5\xA4\xA7\xE9\x9B\xA8", "\xE6\x9D\xB1\xE4\xBA\xAC\xE3\x81\xA7\xE5\xA4\xA7\xE9\x9B\xA8"},
      {"\xC2\xA0\xE3\x80\x80" + h + "\xE2\x80\x83", h},  // Unicode spaces trimmed
      {h + "\xE2\x80\xA8More text", h},                  // U+2028 ends the line
      // Kept as they are: quotes that belong to the headline, apostrophes,
      // prefixes that are not a headline label.
      {"Mayor Says \"No\" to Stadium", "Mayor Says \"No\" to Stadium"},
      {"\"Stop\" Says Mayor of \"Go\"", "\"Stop\" Says Mayor of \"Go\""},
      {"Students' Rights Upheld", "Students' Rights Upheld"},
      {"Court Sides With Students'", "Court Sides With Students'"},
      {"'Biden's Plan' Faces Vote", "'Biden's Plan' Faces Vote"},
      {"Breaking: " + h, "Breaking: " + h},
      {"Note: the park opens in May", "Note: the park opens in May"},
      {"5 Things to Know: Rail Yard Park", "5 Things to Know: Rail Yard Park"},
      {"#MeToo Movement Grows", "MeToo Movement Grows"},
      // Nothing usable.
      {"", ""},
      {"   \n\t\n", ""},
      {"\"\"", ""},
      {"**", ""},
      {"Headline:", ""},
      {"Headline: ", ""},
      {"''", ""},
  };
  for (const auto& [in, want] : cases) {
    INFO("input: " << in);
    CHECK(clean_headline(in) == want);
  }
}

TEST_CASE("clean_headline is UTF-8 safe", "[prompt]") {
  // A generation cut inside a character: the partial character goes.
  CHECK(clean_headline("Caf\xC3\xA9 Opens\xC3") == "Caf\xC3\xA9 Opens");
  CHECK(clean_headline("\"Tokyo \xE6\x9D\xB1\xE4\xBA") == "Tokyo \xE6\x9D\xB1");
  CHECK(clean_headline("Rocket \xF0\x9F\x9A") == "Rocket");
  // Invalid bytes inside become U+FFFD.
  CHECK(clean_headline("Caf\xFF Bar") == "Caf\xEF\xBF\xBD Bar");
  CHECK(clean_headline("A \xED\xA0\x80 B") == "A \xEF\xBF\xBD B");  // a surrogate is not UTF-8
  // Quote characters share lead bytes with other characters: “ (E2 80 9C)
  // next to — (E2 80 94) must not be confused.
  CHECK(clean_headline("\xE2\x80\x94" "Dash\xE2\x80\x94") == "\xE2\x80\x94" "Dash\xE2\x80\x94");

  // Fuzz: arbitrary bytes never crash and always give valid UTF-8 that is
  // at most as long as one line of the input.
  uint64_t state = 0x9E3779B97F4A7C15ull;
  const std::string alphabet[] = {"\"", "'", "*", "#", "_", ":", " ", "\n", "\xE2\x80\x9C", "\xE2\x80\x9D",
                                  "\xC2\xAB", "\xC2\xBB", "Headline", "a", "\xC3", "\xA9", "\xE2", "\x80",
                                  "\xFF", "\xF0\x9F\x9A\x80", "> ", "- "};
  for (int round = 0; round < 3000; ++round) {
    std::string in;
    const int len = static_cast<int>(state >> 60);
    for (int k = 0; k < len + 1; ++k) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      in += alphabet[(state >> 33) % (sizeof(alphabet) / sizeof(alphabet[0]))];
    }
    const std::string out = clean_headline(in);
    INFO("input bytes: " << in.size());
    REQUIRE(valid_utf8(out));
    REQUIRE(out.find('\n') == std::string::npos);
    REQUIRE(clean_headline(out) == out);  // cleaning is idempotent
  }
}

TEST_CASE("has_complete_headline tells when generation may stop", "[prompt]") {
  using udaci::has_complete_headline;
  CHECK_FALSE(has_complete_headline(""));
  CHECK_FALSE(has_complete_headline("City Turns Rail Yard"));  // the line may still grow
  CHECK(has_complete_headline("City Turns Rail Yard Into Park\n"));
  CHECK(has_complete_headline("City Turns Rail Yard Into Park\r"));
  CHECK_FALSE(has_complete_headline("\n\n  \n"));
  CHECK_FALSE(has_complete_headline("Headline:\n"));
  CHECK_FALSE(has_complete_headline("**Headline:**\n\n"));
  // An introduction line is not the headline: keep generating.
  CHECK_FALSE(has_complete_headline("Here is a concise headline for the news summary:\n\n"));
  CHECK_FALSE(has_complete_headline("Here is a concise headline for the news summary:\n\n\"City Turns"));
  const std::string done = "Here is a concise headline for the news summary:\n\n\"City Turns Rail Yard Into Park\"\n";
  CHECK(has_complete_headline(done));
  // When it says stop, clean_headline's answer no longer depends on what follows.
  CHECK(clean_headline(done) == clean_headline(done + "This headline captures the key point."));
  CHECK(clean_headline(done) == "City Turns Rail Yard Into Park");
}
