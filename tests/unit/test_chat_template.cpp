// ChatTemplate against transformers' apply_chat_template renders
// (tests/fixtures/chat, made by tools/reference/make_chat_fixtures.py) and
// the interpreter's error behaviour.
#include "udaci_catch.hpp"

#include <algorithm>
#include <fstream>
#include <functional>
#include <optional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/error.hpp"
#include "test_util.hpp"
#include "text/chat_template.hpp"

namespace {

using udaci::ChatMessage;
using udaci::ChatRenderOptions;
using udaci::ChatTemplate;
using udaci::Status;
using json = nlohmann::json;

using udaci_test::read_file;

// The template text of a fixture id, or nullopt when it lives in ../shared
// and that folder is absent.
std::optional<std::string> template_text(const json& entry) {
  if (entry.contains("inline")) return entry["inline"].get<std::string>();
  if (entry.contains("file")) return read_file(udaci_test::fixture("chat/" + entry["file"].get<std::string>()));
  if (!udaci_test::shared_available()) return std::nullopt;
  if (entry.contains("shared")) return read_file(udaci_test::shared_path(entry["shared"].get<std::string>()));
  const json config = json::parse(read_file(udaci_test::shared_path(entry["shared_json"].get<std::string>())));
  return config.at(entry["key"].get<std::string>()).get<std::string>();
}

std::vector<ChatMessage> to_messages(const json& arr) {
  std::vector<ChatMessage> out;
  for (const auto& m : arr) out.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
  return out;
}

using udaci_test::message_of;
using udaci_test::status_of;

ChatRenderOptions llama_options(bool gen = true) {
  ChatRenderOptions o;
  o.add_generation_prompt = gen;
  o.bos_token = "<|begin_of_text|>";
  o.eos_token = "<|eot_id|>";
  return o;
}

}  // namespace

TEST_CASE("chat templates render byte-identically to transformers", "[chat]") {
  const json index = json::parse(read_file(udaci_test::fixture("chat/templates.json")));
  std::map<std::string, std::shared_ptr<ChatTemplate>> templates;
  std::vector<std::string> missing;
  for (const auto& [id, entry] : index.items()) {
    const auto text = template_text(entry);
    if (!text) {
      missing.push_back(id);
      continue;
    }
    INFO("template " << id);
    // The text is the one the reference rendered.
    REQUIRE(text->size() == entry.at("bytes").get<size_t>());
    templates[id] = std::make_shared<ChatTemplate>(*text);
  }
  if (!missing.empty())
    WARN("../shared is absent: skipping the renders of templates kept there (Llama 3, Meta licence)");

  std::ifstream in(udaci_test::fixture("chat/renders.jsonl"));
  REQUIRE(in.good());
  std::string line;
  size_t checked = 0, errors = 0, skipped = 0;
  std::map<std::string, size_t> per_template;
  while (std::getline(in, line)) {
    const json rec = json::parse(line);
    const std::string id = rec.at("template");
    auto it = templates.find(id);
    if (it == templates.end()) {
      REQUIRE(std::find(missing.begin(), missing.end(), id) != missing.end());
      ++skipped;
      continue;
    }
    ChatRenderOptions opt;
    opt.add_generation_prompt = rec.at("add_generation_prompt");
    opt.bos_token = rec.at("bos_token");
    opt.eos_token = rec.at("eos_token");
    opt.date_string = rec.at("date_string");
    const auto messages = to_messages(rec.at("messages"));
    INFO("template " << id << ", conversation " << rec.at("conversation").get<std::string>()
                     << ", add_generation_prompt " << opt.add_generation_prompt);
    if (rec.contains("error")) {
      // The reference raised (raise_exception): so must we, with its message.
      const std::string msg = message_of([&] { it->second->render(messages, opt); });
      const std::string ref = rec["error"].get<std::string>();
      REQUIRE(status_of([&] { it->second->render(messages, opt); }) == Status::kInvalidArgument);
      CHECK_THAT(msg, Catch::Contains(ref.substr(ref.find(": ") + 2)));
      ++errors;
    } else {
      REQUIRE(it->second->render(messages, opt) == rec.at("expected").get<std::string>());
    }
    ++checked;
    ++per_template[id];
  }
  // Every template that could be loaded was exercised on every conversation.
  for (const auto& [id, t] : templates) CHECK(per_template[id] >= 34);
  CHECK(errors >= 20);
  CHECK(checked + skipped >= 270);
}

TEST_CASE("whitespace control matches jinja on random templates", "[chat]") {
  std::ifstream in(udaci_test::fixture("chat/whitespace_fuzz.jsonl"));
  REQUIRE(in.good());
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    const json rec = json::parse(line);
    const std::string src = rec.at("template");
    INFO("template " << json(src).dump());
    const ChatTemplate t(src);
    REQUIRE(t.render(to_messages(rec.at("messages"))) == rec.at("expected").get<std::string>());
    ++n;
  }
  CHECK(n == 400);
}

TEST_CASE("Llama 3.2 template: date_string and bos", "[chat]") {
  if (!udaci_test::shared_available()) {
    WARN("../shared is absent: skipping the Llama 3.2 template checks");
    return;
  }
  const ChatTemplate t(read_file(
      udaci_test::shared_path("assets/tokenizers/llama3/llama-3.2-instruct-chat-template.jinja")));
  const std::vector<ChatMessage> msgs{{"user", "  hi  "}};
  auto opt = llama_options();
  const std::string def = t.render(msgs, opt);
  CHECK_THAT(def, Catch::Contains("Today Date: 26 Jul 2024\n"));
  CHECK_THAT(def, Catch::StartsWith("<|begin_of_text|><|start_header_id|>system"));
  CHECK_THAT(def, Catch::EndsWith("hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"));

  opt.date_string = udaci::format_chat_date(2025, 3, 5);
  CHECK_THAT(t.render(msgs, opt), Catch::Contains("Today Date: 05 Mar 2025\n"));
  // Empty: the variable stays undefined and the template's own fallback
  // applies (udaci provides no strftime_now).
  opt.date_string.clear();
  CHECK(t.render(msgs, opt) == def);

  // messages[0] of an empty conversation is undefined: a clear error, no crash.
  CHECK(status_of([&] { t.render({}, llama_options()); }) == Status::kInvalidArgument);
  CHECK_THAT(message_of([&] { t.render({}, llama_options()); }), Catch::Contains("out of range"));
}

TEST_CASE("SmolLM2 ChatML template adds its default system prompt", "[chat]") {
  const ChatTemplate t(read_file(udaci_test::fixture("chat/smollm2-135m-instruct.jinja")));
  ChatRenderOptions opt;
  const std::string out = t.render({{"user", "Hi"}}, opt);
  CHECK(out ==
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  opt.add_generation_prompt = false;
  CHECK(t.render({{"system", "S"}, {"user", "U"}}, opt) ==
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n");
}

TEST_CASE("format_chat_date", "[chat]") {
  CHECK(udaci::format_chat_date(2024, 7, 26) == "26 Jul 2024");
  CHECK(udaci::format_chat_date(2025, 1, 5) == "05 Jan 2025");
  CHECK(udaci::format_chat_date(1999, 12, 31) == "31 Dec 1999");
  CHECK(status_of([] { udaci::format_chat_date(2024, 13, 1); }) == Status::kInvalidArgument);
  CHECK(status_of([] { udaci::format_chat_date(2024, 0, 1); }) == Status::kInvalidArgument);
  CHECK(status_of([] { udaci::format_chat_date(2024, 2, 0); }) == Status::kInvalidArgument);
}

TEST_CASE("chat template syntax errors are InvalidArgument with a line", "[chat]") {
  const std::vector<std::pair<std::string, std::string>> bad{
      {"{% if x %}open", "missing '{% endif %}'"},
      {"a\n{{ x", "line 2"},
      {"{{ 'unterminated }}", "unterminated string"},
      {"{# never closed", "comment"},
      {"{% for %}{% endfor %}", "expected a name"},
      {"{{ (1 }}", "unexpected '}'"},
      {"{{ (1", "unclosed"},
      {"{{ 1 ) }}", "unexpected ')'"},
      {"{% endif %}", "endif"},
      {"{{ x | }}", "expected a name"},
      {"{{ 'a' ? }}", "unexpected character"},
      {"{% if a %}{% else %}{% else %}{% endif %}", "else"},
      {"{{ '\\xZZ' }}", "escape"},
  };
  for (const auto& [src, what] : bad) {
    INFO(src);
    const std::string msg = message_of([&] { ChatTemplate t(src); });
    CHECK(status_of([&] { ChatTemplate t(src); }) != Status::kOk);
    CHECK_THAT(msg, Catch::Contains(what));
    CHECK_THAT(msg, Catch::Contains("use the completion prompt"));
  }
  CHECK(status_of([] { ChatTemplate t("{% if x %}open"); }) == Status::kInvalidArgument);
  CHECK(status_of([] { ChatTemplate t(std::string("bad \xC3\x28 utf8")); }) == Status::kInvalidArgument);
}

TEST_CASE("Jinja outside the subset is Unsupported", "[chat]") {
  const std::vector<std::string> at_parse{
      "{% macro f() %}x{% endmacro %}", "{% include 'x' %}", "{{ 1.5 }}", "{% raw %}x{% endraw %}",
      "{% for x in y recursive %}{% endfor %}", "{{ f(*args) }}", "{% set a, b = 1, 2 %}"};
  for (const auto& src : at_parse) {
    INFO(src);
    CHECK(status_of([&] { ChatTemplate t(src); }) == Status::kUnsupported);
    CHECK_THAT(message_of([&] { ChatTemplate t(src); }), Catch::Contains("use the completion prompt"));
  }
  const std::vector<std::string> at_render{"{{ 'x'|wordwrap }}", "{{ x is divisibleby(3) }}",
                                           "{{ messages }}",     "{{ 4 / 2 }}",
                                           "{{ '%s' % 1 }}",     "{{ 'x'.zfill(3) }}",
                                           "{{ 'é'|upper }}"};
  for (const auto& src : at_render) {
    INFO(src);
    const ChatTemplate t(src);
    CHECK(status_of([&] { t.render({{"user", "u"}}); }) == Status::kUnsupported);
  }
}

TEST_CASE("chat template runtime errors are InvalidArgument", "[chat]") {
  const ChatRenderOptions opt;
  const std::vector<ChatMessage> msgs{{"user", "u"}};
  struct Case {
    std::string src, what;
  };
  const std::vector<Case> cases{
      {"{{ raise_exception('nope: ' + messages[0].role) }}", "nope: user"},
      {"{{ strftime_now('%d %b %Y') }}", "date_string"},
      {"{{ nothing.attr }}", "'nothing' is undefined"},
      {"{{ 'a' + 1 }}", "unsupported operand"},
      {"{{ 1 // 0 }}", "division"},
      {"{{ 'x' * 100000000 }}", "too large"},
      {"{% for i in range(100000000) %}{% endfor %}", "too large"},
      {"{{ ([1] * 100000000)|length }}", "too large"},
      {"{{ range(-5000000000000000000, 5000000000000000000, 3)|length }}", "too large"},
      {"{{ 3 in 'abc' }}", "requires string"},
      {"{% for x in 3 %}{% endfor %}", "not iterable"},
      {"{% set n = 3 %}{% set n.a = 1 %}", "non-namespace"},
      {"{{ none < 1 }}", "not supported between"},
  };
  for (const auto& c : cases) {
    INFO(c.src);
    const ChatTemplate t(c.src);
    CHECK(status_of([&] { t.render(msgs, opt); }) == Status::kInvalidArgument);
    CHECK_THAT(message_of([&] { t.render(msgs, opt); }), Catch::Contains(c.what));
  }
  // Content that is not UTF-8 is refused before rendering.
  const ChatTemplate echo("{{ messages[0].content }}");
  CHECK(status_of([&] { echo.render({{"user", std::string("\xFF")}}, opt); }) == Status::kInvalidArgument);
}

TEST_CASE("hostile templates fail cleanly", "[chat]") {
  // Deep nesting must not overflow the stack.
  const std::string parens = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  CHECK(status_of([&] { ChatTemplate t(parens); }) == Status::kInvalidArgument);
  std::string ifs;
  for (int k = 0; k < 5000; ++k) ifs += "{% if true %}";
  CHECK(status_of([&] { ChatTemplate t(ifs); }) == Status::kInvalidArgument);
  std::string nots = "{{ ";
  for (int k = 0; k < 5000; ++k) nots += "not ";
  CHECK(status_of([&] { ChatTemplate t(nots + "x }}"); }) == Status::kInvalidArgument);
  CHECK(status_of([] { ChatTemplate t("{{ 99999999999999999999999 }}"); }) == Status::kUnsupported);
  // Found by fuzz/fuzz_chat_template: `.<digits>` beyond int64 threw
  // std::out_of_range out of the parser.
  CHECK(status_of([] { ChatTemplate t("{{ loop.11111111111111111111 }}"); }) == Status::kUnsupported);
  CHECK(ChatTemplate("{% set x = [5, 6] %}{{ x.1 }}").render({}) == "6");
  // int64 arithmetic refuses to wrap (Python's integers would grow).
  for (const char* src : {"{{ 9223372036854775807 + 1 }}", "{{ 2 ** 63 }}", "{{ 3037000500 * 3037000500 }}",
                          "{{ -9223372036854775807 - 2 }}"})
    CHECK(status_of([&] { ChatTemplate(src).render({}); }) == Status::kUnsupported);
  CHECK(ChatTemplate("{{ 2 ** 62 }} {{ (-1) ** 1000000000000000001 }} {{ 1 ** 999999999999 }}").render({}) ==
        "4611686018427387904 -1 1");
  // Long left-deep chains are bounded too (they would recurse in evaluation).
  std::string sum = "{{ 1";
  for (int k = 0; k < 100000; ++k) sum += " + 1";
  CHECK(status_of([&] { ChatTemplate t(sum + " }}"); }) == Status::kInvalidArgument);
  std::string attrs = "{{ x";
  for (int k = 0; k < 100000; ++k) attrs += ".a";
  CHECK(status_of([&] { ChatTemplate t(attrs + " }}"); }) == Status::kInvalidArgument);
  // ...while realistic lengths parse and evaluate.
  std::string fifty = "{{ 0";
  for (int k = 1; k <= 50; ++k) fifty += " + " + std::to_string(k);
  CHECK(ChatTemplate(fifty + " }}").render({}) == "1275");
  std::string nested = "{{ ";
  for (int k = 0; k < 20; ++k) nested += "(1 + ";
  nested += "0";
  for (int k = 0; k < 20; ++k) nested += ")";
  CHECK(ChatTemplate(nested + " }}").render({}) == "20");
}

// Found while writing fuzz/fuzz_chat_template (issue #12; seeds
// fuzz/corpus/chat_template/regress_*): each ran for hours.
TEST_CASE("runaway templates stop at the work limit", "[chat]") {
  const std::vector<ChatMessage> msgs{{"user", "hi"}};
  for (const char* src : {"{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}",
                          "{% for i in range(1000000) %}{{ i }}{% endfor %}",
                          "{% set x = range(1000000) %}{% for i in range(100000) %}{{ 5 in x }}{% endfor %}",
                          "{% set s = 'a' * 16000000 %}{% for i in range(100000) %}{{ s }}{% endfor %}"}) {
    INFO(src);
    CHECK_THAT(message_of([&] { ChatTemplate(src).render(msgs); }),
               Catch::Contains("steps") || Catch::Contains("too large"));
  }
  // An empty sequence repeated any number of times is empty, at once.
  CHECK(ChatTemplate("[{{ '' * 1000000000000 }}{{ ([] * 1000000000000) | length }}]").render(msgs) == "[0]");
  // Realistic work stays far below the limit: a long conversation.
  std::vector<ChatMessage> many;
  for (int k = 0; k < 2000; ++k) many.push_back({k % 2 ? "assistant" : "user", std::string(200, 'x')});
  const ChatTemplate chatml(
      "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content | trim + '<|im_end|>\\n' }}"
      "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\\n{% endif %}");
  CHECK(chatml.render(many).size() > 2000 * 200);
}

TEST_CASE("message content is data, never template code", "[chat]") {
  const ChatTemplate t("{% for m in messages %}[{{ m.content }}]{% endfor %}");
  const std::vector<ChatMessage> msgs{{"user", "{{ 7 * 7 }}"}, {"user", "{% if true %}x{% endif %}"}};
  CHECK(t.render(msgs) == "[{{ 7 * 7 }}][{% if true %}x{% endif %}]");
}

TEST_CASE("a ChatTemplate renders from many threads", "[chat]") {
  const ChatTemplate t(read_file(udaci_test::fixture("chat/smollm2-135m-instruct.jinja")));
  const std::vector<ChatMessage> msgs{{"system", "s"}, {"user", "u"}};
  const std::string expected = t.render(msgs);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      const ChatTemplate copy = t;  // copies share the parsed template
      for (int r = 0; r < 200; ++r) ok[static_cast<size_t>(k)] += copy.render(msgs) == expected;
    });
  for (auto& th : threads) th.join();
  for (int v : ok) CHECK(v == 200);
}
