// A Jinja interpreter for chat templates: lexer -> parser (AST) -> evaluator,
// in text/jinja/ (lexer, parser, renderer over the values of value.hpp); this
// file binds them to ChatTemplate and sets up transformers' template context.
// Semantics follow jinja2 3.1 (lexer.py, parser.py, runtime.py, tests.py,
// filters.py) as configured by transformers' _compile_jinja_template; the
// comments name the jinja2 rule each piece mirrors. See chat_template.hpp for
// the supported subset.
#include "text/chat_template.hpp"

#include <map>
#include <utility>

#include "core/error.hpp"
#include "core/utf8.hpp"
#include "text/jinja/lexer.hpp"
#include "text/jinja/limits.hpp"
#include "text/jinja/parser.hpp"
#include "text/jinja/renderer.hpp"
#include "text/jinja/value.hpp"

namespace udaci {

struct ChatTemplate::Impl {
  std::string source;
  jinja::Body body;
};

ChatTemplate::ChatTemplate(std::string source) {
  UDACI_CHECK(is_valid_utf8(source), "chat template is not valid UTF-8{}", jinja::kFallbackHint);
  auto impl = std::make_shared<Impl>();
  impl->body = jinja::parse(jinja::lex(source));
  impl->source = std::move(source);
  impl_ = std::move(impl);
}

const std::string& ChatTemplate::source() const { return impl_->source; }

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                 const ChatRenderOptions& options) const {
  using jinja::List;
  using jinja::Value;
  List msgs;
  msgs.reserve(messages.size());
  for (size_t k = 0; k < messages.size(); ++k) {
    const ChatMessage& m = messages[k];
    UDACI_CHECK(is_valid_utf8(m.role), "chat message {}: role is not valid UTF-8", k);
    UDACI_CHECK(is_valid_utf8(m.content), "chat message {} ({}): content is not valid UTF-8", k, m.role);
    msgs.push_back(Value::make_dict({{"role", Value::string(m.role)}, {"content", Value::string(m.content)}}));
  }
  UDACI_CHECK(is_valid_utf8(options.bos_token) && is_valid_utf8(options.eos_token) &&
                  is_valid_utf8(options.date_string),
              "chat render options: bos_token, eos_token and date_string must be valid UTF-8");
  // What transformers' apply_chat_template puts in the template's context:
  // messages, tools=None, documents=None, add_generation_prompt and the
  // special-token strings (plus caller kwargs such as date_string).
  std::map<std::string, Value> globals{
      {"messages", Value::make_list(std::move(msgs))},
      {"tools", Value::none()},
      {"documents", Value::none()},
      {"add_generation_prompt", Value::boolean(options.add_generation_prompt)},
      {"bos_token", Value::string(options.bos_token)},
      {"eos_token", Value::string(options.eos_token)},
  };
  if (!options.date_string.empty()) globals["date_string"] = Value::string(options.date_string);
  return jinja::render(impl_->body, std::move(globals));
}

std::string format_chat_date(int year, int month, int day) {
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  UDACI_CHECK(month >= 1 && month <= 12, "format_chat_date: month {} is not in 1..12", month);
  UDACI_CHECK(day >= 1 && day <= 31, "format_chat_date: day {} is not in 1..31", day);
  UDACI_CHECK(year >= 1000 && year <= 9999, "format_chat_date: year {} is not in 1000..9999", year);
  return fmt::format("{:02d} {} {:04d}", day, kMonths[month - 1], year);
}

}  // namespace udaci
