// The headline prompt and the cleaning of generated headlines; see
// prompt_builder.hpp for the rules, which the "[prompt]" tests pin down.
#include "text/prompt_builder.hpp"

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/strings.hpp"
#include "core/utf8.hpp"

namespace udaci {
namespace {

constexpr const char* kPlaceholder = "{summary}";

// Trims whitespace on both ends of valid UTF-8, whole characters only.
std::string_view trim(std::string_view s) {
  size_t n = 0;
  while (!s.empty() && is_unicode_space(decode_utf8_at(s, 0, &n))) s.remove_prefix(n);
  while (!s.empty()) {
    const size_t start = utf8_char_start_before(s, s.size());
    if (!is_unicode_space(decode_utf8_at(s, start, &n))) break;
    s.remove_suffix(s.size() - start);
  }
  return s;
}

std::string replace_placeholder(std::string_view text, std::string_view summary) {
  std::string out;
  const std::string_view ph(kPlaceholder);
  size_t pos = 0;
  for (size_t hit = text.find(ph); hit != std::string_view::npos; hit = text.find(ph, pos)) {
    out.append(text.substr(pos, hit - pos));
    out.append(summary);
    pos = hit + ph.size();
  }
  out.append(text.substr(pos));
  return out;
}

std::string remove_all(std::string s, std::string_view what) {
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p)) s.erase(p, what.size());
  return s;
}

bool is_ascii_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// An apostrophe inside a word (Biden's, Biden’s) rather than a quote.
bool is_inner_apostrophe(std::string_view s, size_t pos, size_t len) {
  return pos > 0 && pos + len < s.size() && is_ascii_alnum(s[pos - 1]) && is_ascii_alnum(s[pos + len]);
}

size_t count_of(std::string_view s, std::string_view what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string_view::npos; p = s.find(what, p + what.size())) ++n;
  return n;
}

// True when every occurrence of `q` in s is a word-inner apostrophe.
bool only_apostrophes(std::string_view s, std::string_view q) {
  for (size_t p = s.find(q); p != std::string_view::npos; p = s.find(q, p + q.size()))
    if (!is_inner_apostrophe(s, p, q.size())) return false;
  return true;
}

// "Headline:", "Title:", "Suggested headline:", "Here's a headline:" ...:
// at most six words of letters/apostrophes/hyphens, the last one "headline"
// or "title" (or plural), then ':' (ASCII or fullwidth).
std::string_view strip_label(std::string_view s) {
  size_t colon = std::string_view::npos, colon_len = 1;
  for (size_t k = 0; k < s.size() && k < 64; ++k) {
    if (s[k] == ':') {
      colon = k;
      break;
    }
    if (s.substr(k, 3) == "\xEF\xBC\x9A") {  // U+FF1A FULLWIDTH COLON
      colon = k, colon_len = 3;
      break;
    }
  }
  if (colon == std::string_view::npos) return s;
  // Lower-cased ASCII label; ’ (U+2019) counts as an apostrophe ("Here’s").
  std::string label;
  const std::string_view head = trim(s.substr(0, colon));
  for (size_t k = 0; k < head.size(); ++k) {
    const char c = head[k];
    if (head.substr(k, 3) == "\xE2\x80\x99") {
      label += '\'';
      k += 2;
    } else if (c >= 'A' && c <= 'Z') {
      label += static_cast<char>(c - 'A' + 'a');
    } else if ((c >= 'a' && c <= 'z') || c == ' ' || c == '\'' || c == '-') {
      label += c;
    } else {
      return s;
    }
  }
  std::vector<std::string> words;
  size_t start = 0;
  while (start < label.size()) {
    size_t end = label.find(' ', start);
    if (end == std::string::npos) end = label.size();
    if (end > start) words.push_back(label.substr(start, end - start));
    start = end + 1;
  }
  if (words.empty() || words.size() > 6) return s;
  const std::string& last = words.back();
  if (last != "headline" && last != "headlines" && last != "title" && last != "titles") return s;
  return s.substr(colon + colon_len);
}

struct QuotePair {
  std::string_view open, close;
};
// Surrounding quotes a model may wrap a headline in.
constexpr std::array<QuotePair, 12> kQuotePairs{{
    {"\"", "\""},
    {"'", "'"},
    {"`", "`"},
    {"\xE2\x80\x9C", "\xE2\x80\x9D"},  // “ ”
    {"\xE2\x80\x9D", "\xE2\x80\x9D"},  // ” ”
    {"\xE2\x80\x9E", "\xE2\x80\x9C"},  // „ “
    {"\xE2\x80\x9E", "\xE2\x80\x9D"},  // „ ”
    {"\xE2\x80\x98", "\xE2\x80\x99"},  // ‘ ’
    {"\xE2\x80\x9A", "\xE2\x80\x98"},  // ‚ ‘
    {"\xC2\xAB", "\xC2\xBB"},          // « »
    {"\xC2\xBB", "\xC2\xAB"},          // » «
    {"\xE3\x80\x8C", "\xE3\x80\x8D"},  // 「 」
}};

// Double-quote characters whose unmatched occurrence at an end is noise.
constexpr std::array<std::string_view, 6> kDoubleQuotes{
    "\"", "\xE2\x80\x9C", "\xE2\x80\x9D", "\xE2\x80\x9E", "\xC2\xAB", "\xC2\xBB"};

std::string_view strip_quote_pair(std::string_view s) {
  for (const auto& q : kQuotePairs) {
    if (s.size() < q.open.size() + q.close.size() || !starts_with(s, q.open) || !ends_with(s, q.close))
      continue;
    const std::string_view inner = s.substr(q.open.size(), s.size() - q.open.size() - q.close.size());
    // Doubled wrapping (""x"") peels one layer per round.
    if (inner.size() >= q.open.size() + q.close.size() && starts_with(inner, q.open) && ends_with(inner, q.close))
      return inner;
    // Quotes of the same kind inside mean the ends may not be one pair
    // ("Stop" Says Mayor of "Go"); apostrophes inside words do not count.
    const bool single = q.close == "'" || q.close == "\xE2\x80\x99";
    if (single ? !only_apostrophes(inner, q.close) || (q.open != q.close && count_of(inner, q.open) > 0)
               : count_of(inner, q.open) > 0 || count_of(inner, q.close) > 0)
      continue;
    return inner;
  }
  return s;
}

// A lone quote left at either end, e.g. by a generation cut at max tokens
// ("City Turns Rail Yard Into Park) or a model that closes what it never opened.
std::string_view strip_stray_quotes(std::string_view s) {
  for (const auto q : kDoubleQuotes) {
    const bool unmatched = q == "\"" ? count_of(s, q) % 2 == 1
                                     : count_of(s, "\xE2\x80\x9C") + count_of(s, "\xE2\x80\x9E") + count_of(s, "\xC2\xAB") !=
                                           count_of(s, "\xE2\x80\x9D") + count_of(s, "\xC2\xBB");
    if (!unmatched) continue;
    if (starts_with(s, q) && q != "\xE2\x80\x9D" && q != "\xC2\xBB") {
      s.remove_prefix(q.size());
      return s;
    }
    if (ends_with(s, q) && q != "\xE2\x80\x9C" && q != "\xE2\x80\x9E" && q != "\xC2\xAB") {
      s.remove_suffix(q.size());
      return s;
    }
  }
  // A leading single quote with no closing partner (apostrophes do not count).
  for (const std::string_view open : {std::string_view("'"), std::string_view("\xE2\x80\x98")}) {
    const std::string_view close = open == "'" ? std::string_view("'") : std::string_view("\xE2\x80\x99");
    if (starts_with(s, open) && only_apostrophes(s.substr(open.size()), close)) s.remove_prefix(open.size());
  }
  return s;
}

std::string clean_line(std::string_view raw) {
  std::string line(trim(raw));
  for (int round = 0; round < 32; ++round) {
    const std::string before = line;
    line = remove_all(std::move(line), "**");
    line = remove_all(std::move(line), "__");
    std::string_view s = trim(line);
    while (starts_with(s, "#")) s = trim(s.substr(1));
    if (starts_with(s, ">")) s = trim(s.substr(1));
    for (const std::string_view bullet : {"- ", "* ", "\xE2\x80\xA2 "})  // •
      if (starts_with(s, bullet)) s = trim(s.substr(bullet.size()));
    for (const std::string_view em : {"*", "_"})
      if (s.size() >= 2 && starts_with(s, em) && ends_with(s, em)) s = trim(s.substr(1, s.size() - 2));
    s = trim(strip_label(s));
    s = trim(strip_quote_pair(s));
    s = trim(strip_stray_quotes(s));
    line = std::string(s);
    if (line == before) break;
  }
  // A line that is only the label word ("Headline") carries no headline.
  std::string lower;
  for (const char c : line) lower += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  if (lower == "headline" || lower == "title") return "";
  return line;
}

std::vector<std::string_view> split_lines(std::string_view s) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  for (size_t i = 0; i < s.size();) {
    size_t sep = 0;
    if (s[i] == '\n' || s[i] == '\r') {
      sep = 1;
    } else if (s.substr(i, 3) == "\xE2\x80\xA8" || s.substr(i, 3) == "\xE2\x80\xA9") {  // U+2028/9
      sep = 3;
    }
    if (sep == 0) {
      ++i;
      continue;
    }
    lines.push_back(s.substr(start, i - start));
    i += sep;
    start = i;
  }
  lines.push_back(s.substr(start));
  return lines;
}

// "Here is a concise headline for the summary:" introduces the headline.
bool is_intro_line(std::string_view line) {
  const std::string_view raw = trim(line);
  return ends_with(raw, ":") || ends_with(raw, "\xEF\xBC\x9A") || ends_with(raw, ":**");
}

}  // namespace

std::string normalize_summary(std::string_view summary, size_t max_bytes) {
  UDACI_CHECK(is_valid_utf8(summary), "summary is not valid UTF-8");
  const std::string_view t = trim(summary);
  UDACI_CHECK(!t.empty(), "summary is empty (after trimming whitespace)");
  UDACI_CHECK(t.size() <= max_bytes,
              "summary is {} bytes, above the limit of {} (PromptOptions::max_summary_bytes)", t.size(),
              max_bytes);
  return std::string(t);
}

PromptBuilder::PromptBuilder(PromptOptions options, const std::string& chat_template)
    : options_(std::move(options)) {
  UDACI_CHECK(options_.max_summary_bytes > 0, "PromptOptions::max_summary_bytes must be positive");
  UDACI_CHECK(options_.completion.find(kPlaceholder) != std::string::npos,
              "PromptOptions::completion must contain {}", kPlaceholder);
  UDACI_CHECK(is_valid_utf8(options_.system) && is_valid_utf8(options_.instruction) && is_valid_utf8(options_.completion),
              "PromptOptions: system, instruction and completion must be valid UTF-8");
  if (options_.use_chat_template && !chat_template.empty()) {
    UDACI_CHECK(options_.instruction.find(kPlaceholder) != std::string::npos,
                "PromptOptions::instruction must contain {}", kPlaceholder);
    chat_template_.emplace(chat_template);
  }
}

std::vector<ChatMessage> PromptBuilder::messages(const std::string& summary) const {
  const std::string text = normalize_summary(summary, options_.max_summary_bytes);
  std::vector<ChatMessage> msgs;
  if (!options_.system.empty()) msgs.push_back({"system", options_.system});
  msgs.push_back({"user", replace_placeholder(options_.instruction, text)});
  return msgs;
}

std::string PromptBuilder::build(const std::string& summary) const {
  if (chat_template_) return chat_template_->render(messages(summary), options_.chat);
  return replace_placeholder(options_.completion, normalize_summary(summary, options_.max_summary_bytes));
}

bool has_complete_headline(std::string_view generated) {
  const std::string text = sanitize_utf8(generated);
  const auto lines = split_lines(text);
  // The last piece has no line break after it yet: it may still grow.
  for (size_t k = 0; k + 1 < lines.size(); ++k)
    if (!clean_line(lines[k]).empty() && !is_intro_line(lines[k])) return true;
  return false;
}

std::string clean_headline(std::string_view generated) {
  const std::string text = sanitize_utf8(generated);
  const auto lines = split_lines(text);
  for (size_t k = 0; k < lines.size(); ++k) {
    std::string line = clean_line(lines[k]);
    if (line.empty()) continue;
    if (is_intro_line(lines[k])) {
      bool later = false;
      for (size_t j = k + 1; j < lines.size() && !later; ++j) later = !clean_line(lines[j]).empty();
      if (later) continue;
    }
    return line;
  }
  return "";
}

}  // namespace udaci
