// The chat-template lexer (jinja2's lexer.py with trim_blocks and
// lstrip_blocks; see lexer.hpp).
#include "text/jinja/lexer.hpp"

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <utility>

#include "core/error.hpp"
#include "core/utf8.hpp"
#include "text/jinja/limits.hpp"
#include "text/jinja/py_str.hpp"

namespace udaci {
namespace jinja {

[[noreturn]] void syntax_error(int line, const std::string& what) {
  fail(Status::kInvalidArgument, "chat template syntax error at line {}: {}{}", line, what,
       kFallbackHint);
}

[[noreturn]] void unsupported(int line, const std::string& what) {
  fail(Status::kUnsupported, "chat template uses {} (line {}), which udaci does not support{}",
       what, line, kFallbackHint);
}

namespace {

bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Python's "unicode-escape" decoding of a string literal body, as jinja's
// lexer applies it (lexer.py wrap(): encode("ascii", "backslashreplace")
// .decode("unicode-escape")); non-ASCII text passes through.
std::string unescape(std::string_view body, int line) {
  std::string out;
  for (size_t k = 0; k < body.size(); ++k) {
    if (body[k] != '\\' || k + 1 >= body.size()) {
      out += body[k];
      continue;
    }
    const char e = body[++k];
    const auto hex = [&](size_t digits) {
      uint32_t cp = 0;
      for (size_t d = 1; d <= digits; ++d) {
        const char h = k + d < body.size() ? body[k + d] : 'g';
        int val = is_digit(h) ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                                        : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
        if (val < 0) syntax_error(line, "malformed \\x/\\u/\\U escape in a string literal");
        cp = cp * 16 + static_cast<uint32_t>(val);
      }
      if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        syntax_error(line, "escape outside Unicode scalar values in a string literal");
      k += digits;
      append_utf8(out, cp);
    };
    switch (e) {
      case '\n': break;  // line continuation
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case 'x': hex(2); break;
      case 'u': hex(4); break;
      case 'U': hex(8); break;
      case 'N': unsupported(line, "a \\N{...} escape");
      default:
        if (e >= '0' && e <= '7') {
          uint32_t cp = static_cast<uint32_t>(e - '0');
          for (int d = 0; d < 2 && k + 1 < body.size() && body[k + 1] >= '0' && body[k + 1] <= '7'; ++d)
            cp = cp * 8 + static_cast<uint32_t>(body[++k] - '0');
          append_utf8(out, cp);
        } else {
          out += '\\';  // Python keeps unknown escapes as written
          out += e;
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string src) : src_(std::move(src)) {}

  std::vector<Token> run() {
    normalize_newlines();
    size_t pos = 0;
    bool line_starting = true;  // lexer.py: did the previous match end with "\n"
    while (pos < src_.size()) {
      const size_t tag = find_tag(pos);
      if (tag == std::string::npos) {
        emit(Tok::kData, src_.substr(pos), pos);
        break;
      }
      const char kind = src_[tag + 1];
      const char sign = tag + 2 < src_.size() && (src_[tag + 2] == '-' || src_[tag + 2] == '+')
                            ? src_[tag + 2]
                            : '\0';
      std::string text = src_.substr(pos, tag - pos);
      if (sign == '-') {
        text = py_strip(text, false, true);
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: drop the spaces between the line start and a block
        // or comment tag when nothing else precedes the tag on its line.
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
            all_py_space(std::string_view(text).substr(l_pos)))
          text.resize(l_pos);
      }
      emit(Tok::kData, std::move(text), pos);
      pos = tag + 2 + (sign ? 1 : 0);
      pos = kind == '#' ? end_of_comment(pos) : lex_tag(pos, kind == '%');
      line_starting = src_[pos - 1] == '\n';
    }
    tokens_.push_back({Tok::kEof, "", line_at(src_.size())});
    return std::move(tokens_);
  }

 private:
  void normalize_newlines() {
    // jinja: "\r\n" and "\r" become "\n", and one trailing newline is
    // dropped (keep_trailing_newline=False).
    std::string out;
    out.reserve(src_.size());
    for (size_t k = 0; k < src_.size(); ++k) {
      if (src_[k] == '\r') {
        out += '\n';
        if (k + 1 < src_.size() && src_[k + 1] == '\n') ++k;
      } else {
        out += src_[k];
      }
    }
    if (!out.empty() && out.back() == '\n') out.pop_back();
    src_ = std::move(out);
  }

  // First "{{", "{%" or "{#" at or after pos (lexer.py root rule, lazy).
  size_t find_tag(size_t pos) const {
    for (size_t t = src_.find('{', pos); t != std::string::npos; t = src_.find('{', t + 1)) {
      if (t + 1 >= src_.size()) return std::string::npos;
      const char k = src_[t + 1];
      if (k == '{' || k == '%' || k == '#') return t;
    }
    return std::string::npos;
  }

  // 1-based line of a source position; positions are asked in increasing order.
  int line_at(size_t p) {
    p = std::min(p, src_.size());
    if (p < line_pos_) line_pos_ = 0, line_ = 1;
    line_ += static_cast<int>(std::count(src_.begin() + static_cast<long>(line_pos_),
                                         src_.begin() + static_cast<long>(p), '\n'));
    line_pos_ = p;
    return line_;
  }

  void emit(Tok type, std::string text, size_t at) {
    if (type == Tok::kData && text.empty()) return;
    tokens_.push_back({type, std::move(text), line_at(at)});
  }

  size_t skip_py_space(size_t p) const {
    size_t n = 0;
    while (p < src_.size() && is_unicode_space(decode_utf8_at(src_, p, &n))) p += n;
    return p;
  }

  // lexer.py comment rule: (.*?)((?:\+#}|\-#}\s*|#}\n?))
  size_t end_of_comment(size_t p) {
    for (size_t k = p; k + 1 < src_.size(); ++k) {
      if (src_.compare(k, 3, "+#}") == 0) return k + 3;
      if (src_.compare(k, 3, "-#}") == 0) return skip_py_space(k + 3);
      if (src_.compare(k, 2, "#}") == 0) {
        const size_t end = k + 2;
        return end < src_.size() && src_[end] == '\n' ? end + 1 : end;  // trim_blocks
      }
    }
    syntax_error(line_at(p), "missing end of comment tag");
  }

  // The tokens of a {% %} or {{ }} tag; returns the position after its end
  // (lexer.py block/variable states; end tags count only outside brackets).
  size_t lex_tag(size_t p, bool block) {
    emit(block ? Tok::kBlockBegin : Tok::kVarBegin, "", p);
    std::vector<char> balance;
    while (true) {
      if (p >= src_.size()) syntax_error(line_at(p), block ? "unclosed '{%' tag" : "unclosed '{{' tag");
      if (balance.empty()) {
        size_t end = std::string::npos;
        if (block) {
          if (src_.compare(p, 3, "+%}") == 0) {
            end = p + 3;
          } else if (src_.compare(p, 3, "-%}") == 0) {
            end = skip_py_space(p + 3);
          } else if (src_.compare(p, 2, "%}") == 0) {
            end = p + 2;
            if (end < src_.size() && src_[end] == '\n') ++end;  // trim_blocks
          }
        } else if (src_.compare(p, 3, "-}}") == 0) {
          end = skip_py_space(p + 3);
        } else if (src_.compare(p, 2, "}}") == 0) {
          end = p + 2;
        }
        if (end != std::string::npos) {
          emit(block ? Tok::kBlockEnd : Tok::kVarEnd, "", p);
          return end;
        }
      }
      const char c = src_[p];
      size_t n = 0;
      if (is_unicode_space(decode_utf8_at(src_, p, &n))) {
        p += n;
      } else if (is_name_start(c)) {
        size_t e = p;
        while (e < src_.size() && (is_name_start(src_[e]) || is_digit(src_[e]))) ++e;
        emit(Tok::kName, src_.substr(p, e - p), p);
        p = e;
      } else if (is_digit(c)) {
        size_t e = p;
        while (e < src_.size() && (is_digit(src_[e]) || src_[e] == '_')) ++e;
        const bool after_dot = p > 0 && src_[p - 1] == '.';
        if (!after_dot && e + 1 < src_.size() &&
            ((src_[e] == '.' && is_digit(src_[e + 1])) || src_[e] == 'e' || src_[e] == 'E'))
          unsupported(line_at(p), "a float literal");
        std::string digits;
        for (size_t k = p; k < e; ++k)
          if (src_[k] != '_') digits += src_[k];
        emit(Tok::kInt, digits, p);
        p = e;
      } else if (c == '\'' || c == '"') {
        size_t e = p + 1;
        while (e < src_.size() && src_[e] != c) e += src_[e] == '\\' ? 2 : 1;
        if (e >= src_.size()) syntax_error(line_at(p), "unterminated string literal");
        const int line = line_at(p);
        tokens_.push_back({Tok::kString, unescape(std::string_view(src_).substr(p + 1, e - p - 1), line), line});
        p = e + 1;
      } else {
        static const char* const kOps[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/",
                                           "*",  "%",  "~",  "[",  "]",  "(",  ")", "{", "}",
                                           ">",  "<",  "=",  ".",  ":",  "|",  ",", ";"};
        const char* op = nullptr;
        for (const char* o : kOps)
          if (src_.compare(p, std::char_traits<char>::length(o), o) == 0) {
            op = o;
            break;
          }
        if (!op) syntax_error(line_at(p), fmt::format("unexpected character '{}'", src_.substr(p, n)));
        const std::string o(op);
        if (o == "(" || o == "[" || o == "{") {
          balance.push_back(o == "(" ? ')' : o == "[" ? ']' : '}');
        } else if (o == ")" || o == "]" || o == "}") {
          if (balance.empty() || balance.back() != o[0])
            syntax_error(line_at(p), fmt::format("unexpected '{}'", o));
          balance.pop_back();
        }
        emit(Tok::kOp, o, p);
        p += o.size();
      }
    }
  }

  std::string src_;
  std::vector<Token> tokens_;
  size_t line_pos_ = 0;
  int line_ = 1;
};

}  // namespace

std::vector<Token> lex(std::string source) { return Lexer(std::move(source)).run(); }

}  // namespace jinja
}  // namespace udaci
