// A Jinja interpreter for chat templates: lexer -> parser (AST) -> evaluator.
// Semantics follow jinja2 3.1 (lexer.py, parser.py, runtime.py, tests.py,
// filters.py) as configured by transformers' _compile_jinja_template; the
// comments name the jinja2 rule each piece mirrors. See chat_template.hpp for
// the supported subset.
#include "text/chat_template.hpp"

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>

#include "core/error.hpp"

namespace udaci {
namespace {

constexpr const char* kFallbackHint = "; use the completion prompt";
constexpr int kMaxDepth = 256;                    // nesting of expressions / blocks
constexpr size_t kMaxValueSize = size_t{1} << 24;  // bytes of one string an operation may build
constexpr size_t kMaxListSize = size_t{1} << 20;   // elements of one list an operation may build
// Work of one render (issue #12): each rendered node and evaluated expression
// is a step, a loop iteration (a scope and a loop object) kLoopSteps, and
// each list element and each 64 bytes of string an operation produces or
// walks one more. The size limits above bound one operation; without this a
// few nested loops over range() ran for hours (fuzz/corpus/chat_template/
// regress_*). The SmolLM2 and Llama 3.x templates take well under a hundred
// steps per message.
constexpr uint64_t kMaxRenderSteps = uint64_t{1} << 21;
constexpr uint64_t kLoopSteps = 4;

// ---------------------------------------------------------------- UTF-8 ----

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

// Decodes the code point at s[i] of valid UTF-8; sets len to its byte count.
uint32_t decode_at(std::string_view s, size_t i, size_t* len) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return *len = 1, c;
  size_t n = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
  uint32_t cp = c & (n == 1 ? 0x1F : n == 2 ? 0x0F : 0x07);
  for (size_t k = 1; k <= n && i + k < s.size(); ++k)
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  *len = n + 1;
  return cp;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::vector<std::string> code_points(std::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0, n = 0; i < s.size(); i += n) {
    decode_at(s, i, &n);
    out.emplace_back(s.substr(i, n));
  }
  return out;
}

// Python's str.isspace(): what str.strip() and the regex \s remove.
bool py_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 ||
         cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Python str.strip/lstrip/rstrip: chars == nullopt strips whitespace,
// otherwise the code points in *chars.
std::string py_strip(std::string_view s, bool left, bool right,
                     const std::optional<std::string>& chars = std::nullopt) {
  std::vector<std::string> set;
  if (chars) set = code_points(*chars);
  const auto strippable = [&](size_t i, size_t* n) {
    const uint32_t cp = decode_at(s, i, n);
    if (!chars) return py_space(cp);
    return std::find(set.begin(), set.end(), std::string(s.substr(i, *n))) != set.end();
  };
  size_t begin = 0, end = s.size(), n = 0;
  if (left)
    while (begin < end && strippable(begin, &n)) begin += n;
  if (right) {
    while (end > begin) {
      size_t start = end - 1;  // step back to the lead byte
      while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
      if (!strippable(start, &n)) break;
      end = start;
    }
  }
  return std::string(s.substr(begin, end - begin));
}

bool all_py_space(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); i += n)
    if (!py_space(decode_at(s, i, &n))) return false;
  return true;
}

// ---------------------------------------------------------------- values ---

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion order, as Python dicts

struct Value {
  enum class Kind { kUndefined, kNone, kBool, kInt, kString, kList, kDict, kNamespace, kFunction };
  Kind kind = Kind::kUndefined;
  bool b = false;
  int64_t i = 0;
  std::string s;                      // string value; function name; undefined: what was missing
  std::shared_ptr<const List> list;   // kList
  std::shared_ptr<const Dict> dict;   // kDict
  std::shared_ptr<Dict> ns;           // kNamespace (mutable, shared by all copies, as in Python)
  std::shared_ptr<const Value> self;  // kFunction: the bound object of a method

  static Value undefined(std::string what) {
    Value v;
    v.s = std::move(what);
    return v;
  }
  static Value none() {
    Value v;
    v.kind = Kind::kNone;
    return v;
  }
  static Value boolean(bool x) {
    Value v;
    v.kind = Kind::kBool;
    v.b = x;
    return v;
  }
  static Value integer(int64_t x) {
    Value v;
    v.kind = Kind::kInt;
    v.i = x;
    return v;
  }
  static Value string(std::string x) {
    Value v;
    v.kind = Kind::kString;
    v.s = std::move(x);
    return v;
  }
  static Value make_list(List x) {
    Value v;
    v.kind = Kind::kList;
    v.list = std::make_shared<const List>(std::move(x));
    return v;
  }
  static Value make_dict(Dict x) {
    Value v;
    v.kind = Kind::kDict;
    v.dict = std::make_shared<const Dict>(std::move(x));
    return v;
  }
  static Value function(std::string name, std::shared_ptr<const Value> self = nullptr) {
    Value v;
    v.kind = Kind::kFunction;
    v.s = std::move(name);
    v.self = std::move(self);
    return v;
  }

  bool is_undefined() const { return kind == Kind::kUndefined; }
  bool is_int_like() const { return kind == Kind::kInt || kind == Kind::kBool; }
  int64_t as_int() const { return kind == Kind::kBool ? (b ? 1 : 0) : i; }
};

const char* type_name(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined: return "undefined";
    case Value::Kind::kNone: return "none";
    case Value::Kind::kBool: return "bool";
    case Value::Kind::kInt: return "int";
    case Value::Kind::kString: return "string";
    case Value::Kind::kList: return "list";
    case Value::Kind::kDict: return "dict";
    case Value::Kind::kNamespace: return "namespace";
    case Value::Kind::kFunction: return "function";
  }
  return "?";
}

const Value* dict_find(const Dict& d, std::string_view key) {
  for (const auto& kv : d)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

// Python truthiness (jinja Undefined is falsy).
bool truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return false;
    case Value::Kind::kBool: return v.b;
    case Value::Kind::kInt: return v.i != 0;
    case Value::Kind::kString: return !v.s.empty();
    case Value::Kind::kList: return !v.list->empty();
    case Value::Kind::kDict: return !v.dict->empty();
    case Value::Kind::kNamespace:
    case Value::Kind::kFunction: return true;
  }
  return false;
}

// Python ==, with jinja's Undefined.__eq__ (equal only to another Undefined).
bool equal(const Value& a, const Value& b) {
  if (a.is_int_like() && b.is_int_like()) return a.as_int() == b.as_int();
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return true;
    case Value::Kind::kString: return a.s == b.s;
    case Value::Kind::kList:
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k)
        if (!equal((*a.list)[k], (*b.list)[k])) return false;
      return true;
    case Value::Kind::kDict:
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& kv : *a.dict) {
        const Value* other = dict_find(*b.dict, kv.first);
        if (!other || !equal(kv.second, *other)) return false;
      }
      return true;
    case Value::Kind::kNamespace: return a.ns == b.ns;
    case Value::Kind::kFunction: return a.s == b.s && a.self == b.self;
    default: return false;
  }
}

std::string int_str(int64_t x) { return std::to_string(x); }

// Python str() of a value, as jinja prints it ({{ x }}, ~, |string, |join).
std::string to_str(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined: return "";
    case Value::Kind::kNone: return "None";
    case Value::Kind::kBool: return v.b ? "True" : "False";
    case Value::Kind::kInt: return int_str(v.i);
    case Value::Kind::kString: return v.s;
    default:
      fail(Status::kUnsupported,
           "chat template prints a {} (Python repr of containers is not supported){}",
           type_name(v), kFallbackHint);
  }
}

// json.dumps(x, ensure_ascii=False, indent=indent): transformers' tojson.
void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

void to_json(std::string& out, const Value& v, int indent, int level) {
  const auto newline = [&](int lvl) {
    out += '\n';
    out.append(static_cast<size_t>(indent) * lvl, ' ');
  };
  switch (v.kind) {
    case Value::Kind::kNone: out += "null"; return;
    case Value::Kind::kBool: out += v.b ? "true" : "false"; return;
    case Value::Kind::kInt: out += int_str(v.i); return;
    case Value::Kind::kString: json_string(out, v.s); return;
    case Value::Kind::kList:
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      const bool is_list = v.kind == Value::Kind::kList;
      const size_t n = is_list ? v.list->size() : v.kind == Value::Kind::kDict ? v.dict->size() : 0;
      UDACI_CHECK(v.kind != Value::Kind::kNamespace,
                  "chat template: tojson of a namespace object is not JSON serializable");
      out += is_list ? '[' : '{';
      if (n == 0) {
        out += is_list ? ']' : '}';
        return;
      }
      for (size_t k = 0; k < n; ++k) {
        if (k > 0) out += indent >= 0 ? "," : ", ";
        if (indent >= 0) newline(level + 1);
        if (is_list) {
          to_json(out, (*v.list)[k], indent, level + 1);
        } else {
          json_string(out, (*v.dict)[k].first);
          out += ": ";
          to_json(out, (*v.dict)[k].second, indent, level + 1);
        }
      }
      if (indent >= 0) newline(level);
      out += is_list ? ']' : '}';
      return;
    }
    default:
      fail(Status::kInvalidArgument, "chat template: tojson of {} value '{}' is not JSON serializable",
           type_name(v), v.s);
  }
}

// ----------------------------------------------------------------- lexer ---

enum class Tok { kData, kBlockBegin, kBlockEnd, kVarBegin, kVarEnd, kName, kString, kInt, kOp, kEof };

struct Token {
  Tok type;
  std::string text;  // data text, name, decoded string, integer digits, operator
  int line;
};

[[noreturn]] void syntax_error(int line, const std::string& what) {
  fail(Status::kInvalidArgument, "chat template syntax error at line {}: {}{}", line, what,
       kFallbackHint);
}

[[noreturn]] void unsupported(int line, const std::string& what) {
  fail(Status::kUnsupported, "chat template uses {} (line {}), which udaci does not support{}",
       what, line, kFallbackHint);
}

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
    while (p < src_.size() && py_space(decode_at(src_, p, &n))) p += n;
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
      if (py_space(decode_at(src_, p, &n))) {
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

// ------------------------------------------------------------------- AST ---

struct Expr;
using ExprPtr = std::shared_ptr<const Expr>;

struct Expr {
  enum class Kind {
    kLiteral, kName, kGetAttr, kGetItem, kSlice, kCall, kFilter, kTest, kNot, kNeg, kPos,
    kBinary, kAnd, kOr, kCompare, kCond, kList, kDict
  };
  Kind kind;
  int line = 0;
  Value literal;                                     // kLiteral
  std::string name;                                  // name / attr / filter / test / operator
  std::vector<ExprPtr> args;                         // operands (see the parser for layouts)
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;                      // kCompare operators
  bool negated = false;                              // kTest: "is not"
};

struct Node;
using Body = std::vector<std::shared_ptr<const Node>>;

struct Node {
  enum class Kind { kText, kPrint, kIf, kFor, kSet, kSetBlock, kBreak, kContinue };
  Kind kind;
  int line = 0;
  std::string text;                          // kText; kSet/kSetBlock target name
  std::string attr;                          // kSet: "ns.attr" target attribute
  ExprPtr expr;                              // kPrint, kSet value, kFor iterable
  std::vector<std::pair<ExprPtr, Body>> branches;  // kIf (cond, body)...
  Body body;                                 // kFor body, kSetBlock body
  Body else_body;                            // kIf else, kFor else
  std::vector<std::string> targets;          // kFor loop variables
  ExprPtr filter;                            // kFor "if" filter
};

// ---------------------------------------------------------------- parser ---

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  Body parse_template() {
    std::string end_tag;
    Body body = parse_body({}, &end_tag);
    if (cur().type != Tok::kEof) syntax_error(cur().line, "unexpected tokens at end");
    return body;
  }

 private:
  const Token& cur() const { return toks_[pos_]; }

  // A decimal integer token as int64: Python's integers are unbounded, ours
  // refuse to wrap. (`x.<digits>` used std::stoll, whose std::out_of_range
  // escaped for 20 digits; found by fuzz/fuzz_chat_template, issue #12.)
  static int64_t int_literal(const Token& t) {
    int64_t v = 0;
    for (const char c : t.text) {
      if (v > (INT64_MAX - 9) / 10) unsupported(t.line, "an integer literal beyond 64 bits");
      v = v * 10 + (c - '0');
    }
    return v;
  }
  const Token& peek(size_t k = 1) const { return toks_[std::min(pos_ + k, toks_.size() - 1)]; }
  void advance() {
    if (pos_ + 1 < toks_.size()) ++pos_;
  }
  bool is_op(const char* op) const { return cur().type == Tok::kOp && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == Tok::kName && cur().text == n; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  bool skip_name(const char* n) {
    if (!is_name(n)) return false;
    advance();
    return true;
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) syntax_error(cur().line, fmt::format("expected '{}', got '{}'", op, describe()));
  }
  std::string expect_name() {
    if (cur().type != Tok::kName) syntax_error(cur().line, fmt::format("expected a name, got '{}'", describe()));
    std::string n = cur().text;
    advance();
    return n;
  }
  void expect_block_end() {
    if (cur().type != Tok::kBlockEnd)
      syntax_error(cur().line, fmt::format("expected end of statement block, got '{}'", describe()));
    advance();
  }
  std::string describe() const {
    switch (cur().type) {
      case Tok::kEof: return "end of template";
      case Tok::kBlockEnd: return "%}";
      case Tok::kVarEnd: return "}}";
      default: return cur().text;
    }
  }

  // Left-deep chains (a + b + c ..., x.y.z, x|f|g) deepen the tree without
  // recursion in the parser: each link counts toward kMaxDepth so that the
  // evaluator's recursion stays bounded too.
  struct ChainGuard {
    explicit ChainGuard(int& d) : d_(d) {}
    void grow(int line) {
      ++links_;
      if (++d_ > kMaxDepth) syntax_error(line, "nesting too deep");
    }
    ~ChainGuard() { d_ -= links_; }
    int& d_;
    int links_ = 0;
  };

  struct DepthGuard {
    DepthGuard(int& d, int line) : d_(d) {
      if (++d_ > kMaxDepth) syntax_error(line, "nesting too deep");
    }
    ~DepthGuard() { --d_; }
    int& d_;
  };

  // Parses nodes until "{% <one of end_tags>" (left unconsumed after the name,
  // whose text goes to *end_tag) or the end of input when end_tags is empty.
  Body parse_body(const std::vector<std::string>& end_tags, std::string* end_tag) {
    DepthGuard guard(depth_, cur().line);
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.type == Tok::kEof) {
        if (!end_tags.empty())
          syntax_error(t.line, fmt::format("missing '{{% {} %}}'", end_tags.back()));
        return body;
      }
      if (t.type == Tok::kData) {
        auto n = std::make_shared<Node>();
        n->kind = Node::Kind::kText;
        n->text = t.text;
        body.push_back(n);
        advance();
      } else if (t.type == Tok::kVarBegin) {
        advance();
        auto n = std::make_shared<Node>();
        n->kind = Node::Kind::kPrint;
        n->line = t.line;
        n->expr = parse_tuple_or_expr();
        if (cur().type != Tok::kVarEnd)
          syntax_error(cur().line, fmt::format("expected '}}}}', got '{}'", describe()));
        advance();
        body.push_back(n);
      } else if (t.type == Tok::kBlockBegin) {
        advance();
        if (cur().type != Tok::kName) syntax_error(cur().line, "expected a statement name after '{%'");
        const std::string kw = cur().text;
        if (std::find(end_tags.begin(), end_tags.end(), kw) != end_tags.end()) {
          *end_tag = kw;
          advance();
          return body;
        }
        if (auto n = parse_statement()) body.push_back(n);
      } else {
        syntax_error(t.line, "unexpected token");
      }
    }
  }

  std::shared_ptr<const Node> parse_statement() {
    const int line = cur().line;
    const std::string kw = expect_name();
    auto n = std::make_shared<Node>();
    n->line = line;
    if (kw == "if") {
      n->kind = Node::Kind::kIf;
      ExprPtr cond = parse_expression();
      expect_block_end();
      while (true) {
        std::string end;
        Body b = parse_body({"elif", "else", "endif"}, &end);
        n->branches.emplace_back(cond, std::move(b));
        if (end == "elif") {
          cond = parse_expression();
          expect_block_end();
          continue;
        }
        if (end == "else") {
          expect_block_end();
          n->else_body = parse_body({"endif"}, &end);
        }
        expect_block_end();
        break;
      }
      return n;
    }
    if (kw == "for") {
      n->kind = Node::Kind::kFor;
      n->targets.push_back(expect_name());
      while (skip_op(",")) n->targets.push_back(expect_name());
      if (!skip_name("in")) syntax_error(cur().line, "expected 'in' in a for statement");
      n->expr = parse_expression(/*with_condexpr=*/false);
      if (skip_name("if")) n->filter = parse_expression();
      if (is_name("recursive")) unsupported(line, "a recursive for loop");
      expect_block_end();
      std::string end;
      n->body = parse_body({"else", "endfor"}, &end);
      if (end == "else") {
        expect_block_end();
        n->else_body = parse_body({"endfor"}, &end);
      }
      expect_block_end();
      return n;
    }
    if (kw == "set") {
      n->text = expect_name();
      if (skip_op(".")) n->attr = expect_name();
      if (is_op(",")) unsupported(line, "tuple assignment in set");
      if (skip_op("=")) {
        n->kind = Node::Kind::kSet;
        n->expr = parse_tuple_or_expr();
        expect_block_end();
        return n;
      }
      if (!n->attr.empty()) syntax_error(line, "expected '=' after a namespace attribute");
      if (is_op("|")) unsupported(line, "a filtered block set");
      n->kind = Node::Kind::kSetBlock;
      expect_block_end();
      std::string end;
      n->body = parse_body({"endset"}, &end);
      expect_block_end();
      return n;
    }
    if (kw == "break" || kw == "continue") {
      n->kind = kw == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
      expect_block_end();
      return n;
    }
    if (kw == "generation") {
      // transformers' AssistantTracker: marks assistant text for masks; the
      // rendered text is the body unchanged.
      expect_block_end();
      std::string end;
      Body inner = parse_body({"endgeneration"}, &end);
      expect_block_end();
      n->kind = Node::Kind::kIf;  // an always-true branch renders the body in place
      auto always = std::make_shared<Expr>();
      always->kind = Expr::Kind::kLiteral;
      always->literal = Value::boolean(true);
      n->branches.emplace_back(always, std::move(inner));
      return n;
    }
    unsupported(line, fmt::format("the '{}' statement", kw));
  }

  // {{ a, b }} and (a, b) make tuples; a template that prints a tuple gets
  // the unsupported-repr error at render time.
  ExprPtr parse_tuple_or_expr() {
    ExprPtr first = parse_expression();
    if (!is_op(",")) return first;
    auto list = std::make_shared<Expr>();
    list->kind = Expr::Kind::kList;
    list->line = first->line;
    list->args.push_back(first);
    while (skip_op(",")) {
      if (cur().type == Tok::kVarEnd || cur().type == Tok::kBlockEnd || is_op(")")) break;
      list->args.push_back(parse_expression());
    }
    return list;
  }

  static std::shared_ptr<Expr> node(Expr::Kind k, int line) {
    auto e = std::make_shared<Expr>();
    e->kind = k;
    e->line = line;
    return e;
  }

  // parser.py parse_expression -> parse_condexpr
  ExprPtr parse_expression(bool with_condexpr = true) {
    DepthGuard guard(depth_, cur().line);
    ExprPtr e = parse_or();
    if (!with_condexpr) return e;
    ChainGuard chain(depth_);
    while (is_name("if")) {
      chain.grow(cur().line);
      advance();
      auto c = node(Expr::Kind::kCond, e->line);
      ExprPtr cond = parse_or();
      ExprPtr other = skip_name("else") ? parse_expression() : nullptr;
      c->args = {e, cond, other};
      e = c;
    }
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    ChainGuard chain(depth_);
    while (is_name("or")) {
      chain.grow(cur().line);
      advance();
      auto e = node(Expr::Kind::kOr, left->line);
      e->args = {left, parse_and()};
      left = e;
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    ChainGuard chain(depth_);
    while (is_name("and")) {
      chain.grow(cur().line);
      advance();
      auto e = node(Expr::Kind::kAnd, left->line);
      e->args = {left, parse_not()};
      left = e;
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      const int line = cur().line;
      advance();
      DepthGuard guard(depth_, line);
      auto e = node(Expr::Kind::kNot, line);
      e->args = {parse_not()};
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    ExprPtr first = parse_math1();
    auto cmp = node(Expr::Kind::kCompare, first->line);
    cmp->args.push_back(first);
    ChainGuard chain(depth_);
    while (true) {
      chain.grow(cur().line);
      if (cur().type == Tok::kOp && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                     cur().text == ">" || cur().text == "<=" || cur().text == ">=")) {
        cmp->ops.push_back(cur().text);
        advance();
      } else if (is_name("in")) {
        cmp->ops.emplace_back("in");
        advance();
      } else if (is_name("not") && peek().type == Tok::kName && peek().text == "in") {
        cmp->ops.emplace_back("notin");
        advance();
        advance();
      } else {
        break;
      }
      cmp->args.push_back(parse_math1());
    }
    if (cmp->ops.empty()) return first;
    return cmp;
  }

  ExprPtr binary_chain(ExprPtr (Parser::*next)(), std::initializer_list<const char*> ops) {
    ExprPtr left = (this->*next)();
    ChainGuard chain(depth_);
    while (cur().type == Tok::kOp) {
      const char* match = nullptr;
      for (const char* o : ops)
        if (cur().text == o) match = o;
      if (!match) break;
      chain.grow(cur().line);
      advance();
      auto e = node(Expr::Kind::kBinary, left->line);
      e->name = match;
      e->args = {left, (this->*next)()};
      left = e;
    }
    return left;
  }
  ExprPtr parse_math1() { return binary_chain(&Parser::parse_concat, {"+", "-"}); }
  ExprPtr parse_concat() { return binary_chain(&Parser::parse_math2, {"~"}); }
  ExprPtr parse_math2() { return binary_chain(&Parser::parse_pow, {"*", "/", "//", "%"}); }
  ExprPtr parse_pow() { return binary_chain(&Parser::parse_unary_filtered, {"**"}); }
  ExprPtr parse_unary_filtered() { return parse_unary(true); }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(depth_, cur().line);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      auto u = node(is_op("-") ? Expr::Kind::kNeg : Expr::Kind::kPos, cur().line);
      advance();
      u->args = {parse_unary(false)};
      e = u;
    } else {
      e = parse_primary();
    }
    e = parse_postfix(e);
    if (with_filter) e = parse_filter_expr(e);
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    auto e = node(Expr::Kind::kLiteral, t.line);
    if (t.type == Tok::kName) {
      if (t.text == "true" || t.text == "True") {
        e->literal = Value::boolean(true);
      } else if (t.text == "false" || t.text == "False") {
        e->literal = Value::boolean(false);
      } else if (t.text == "none" || t.text == "None") {
        e->literal = Value::none();
      } else {
        e->kind = Expr::Kind::kName;
        e->name = t.text;
      }
      advance();
      return e;
    }
    if (t.type == Tok::kString) {
      std::string s;
      while (cur().type == Tok::kString) {  // adjacent literals concatenate
        s += cur().text;
        advance();
      }
      e->literal = Value::string(std::move(s));
      return e;
    }
    if (t.type == Tok::kInt) {
      e->literal = Value::integer(int_literal(t));
      advance();
      return e;
    }
    if (skip_op("(")) {
      if (skip_op(")")) {
        e->kind = Expr::Kind::kList;
        return e;
      }
      ExprPtr inner = parse_tuple_or_expr();
      expect_op(")");
      return inner;
    }
    if (skip_op("[")) {
      e->kind = Expr::Kind::kList;
      while (!is_op("]")) {
        if (!e->args.empty()) expect_op(",");
        if (is_op("]")) break;
        e->args.push_back(parse_expression());
      }
      advance();
      return e;
    }
    if (skip_op("{")) {
      e->kind = Expr::Kind::kDict;
      while (!is_op("}")) {
        if (!e->args.empty()) expect_op(",");
        if (is_op("}")) break;
        e->args.push_back(parse_expression());
        expect_op(":");
        e->args.push_back(parse_expression());
      }
      advance();
      return e;
    }
    syntax_error(t.line, fmt::format("unexpected '{}'", describe()));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    ChainGuard chain(depth_);
    while (true) {
      chain.grow(cur().line);
      if (is_op(".")) {
        advance();
        if (cur().type == Tok::kName) {
          auto g = node(Expr::Kind::kGetAttr, e->line);
          g->name = cur().text;
          g->args = {e};
          advance();
          e = g;
        } else if (cur().type == Tok::kInt) {
          auto g = node(Expr::Kind::kGetItem, e->line);
          auto idx = node(Expr::Kind::kLiteral, e->line);
          idx->literal = Value::integer(int_literal(cur()));
          g->args = {e, idx};
          advance();
          e = g;
        } else {
          syntax_error(cur().line, "expected a name after '.'");
        }
      } else if (is_op("[")) {
        advance();
        e = parse_subscript(e);
        expect_op("]");
      } else if (is_op("(")) {
        e = parse_call(e);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr target) {
    // parser.py parse_subscribed
    std::vector<ExprPtr> parts;
    if (is_op(":")) {
      parts.push_back(nullptr);
    } else {
      ExprPtr idx = parse_expression();
      if (!is_op(":")) {
        if (is_op(",")) unsupported(cur().line, "a tuple subscript");
        auto g = node(Expr::Kind::kGetItem, target->line);
        g->args = {target, idx};
        return g;
      }
      parts.push_back(idx);
    }
    advance();  // ':'
    parts.push_back(is_op(":") || is_op("]") ? nullptr : parse_expression());
    if (skip_op(":")) {
      parts.push_back(is_op("]") ? nullptr : parse_expression());
    } else {
      parts.push_back(nullptr);
    }
    auto s = node(Expr::Kind::kSlice, target->line);
    s->args = {target, parts[0], parts[1], parts[2]};
    return s;
  }

  void parse_call_args(Expr* e) {
    expect_op("(");
    while (!is_op(")")) {
      if (e->args.size() > 1 || !e->kwargs.empty()) expect_op(",");  // args[0]: callee / operand
      if (is_op(")")) break;
      if (is_op("*") || is_op("**")) unsupported(cur().line, "*args/**kwargs in a call");
      if (cur().type == Tok::kName && peek().type == Tok::kOp && peek().text == "=") {
        std::string key = cur().text;
        advance();
        advance();
        e->kwargs.emplace_back(std::move(key), parse_expression());
      } else {
        if (!e->kwargs.empty()) syntax_error(cur().line, "positional argument after a keyword argument");
        e->args.push_back(parse_expression());
      }
    }
    advance();
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto c = node(Expr::Kind::kCall, callee->line);
    c->args.push_back(callee);  // args[0] is the callee, the rest positional arguments
    parse_call_args(c.get());
    return c;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    ChainGuard chain(depth_);
    while (true) {
      chain.grow(cur().line);
      if (is_op("|")) {
        advance();
        auto f = node(Expr::Kind::kFilter, e->line);
        f->name = expect_name();
        if (is_op(".")) unsupported(cur().line, "a dotted filter name");
        f->args.push_back(e);  // args[0] is the operand
        if (is_op("(")) parse_call_args(f.get());
        e = f;
      } else if (is_name("is")) {
        advance();
        auto t = node(Expr::Kind::kTest, e->line);
        t->negated = skip_name("not");
        t->name = expect_name();
        t->args.push_back(e);
        if (is_op("(")) {
          parse_call_args(t.get());
        } else if ((cur().type == Tok::kName || cur().type == Tok::kString || cur().type == Tok::kInt ||
                    is_op("(") || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
          if (is_name("is")) syntax_error(cur().line, "cannot chain multiple tests with 'is'");
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = t;
      } else if (is_op("(")) {
        e = parse_call(e);
      } else {
        return e;
      }
    }
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int depth_ = 0;
};

// ------------------------------------------------------------- evaluator ---

enum class Flow { kNormal, kBreak, kContinue };

class Renderer {
 public:
  explicit Renderer(std::map<std::string, Value> globals) { frames_.push_back(std::move(globals)); }
  // Namespaces are the only mutable values, so the only way to make a
  // reference cycle (`set ns.self = ns`, or a list holding ns), which shared
  // ownership never frees: every render leaked it (found by
  // fuzz/fuzz_chat_template, issue #12). No value outlives the render, so
  // emptying every namespace it made breaks all cycles.
  ~Renderer() {
    for (const auto& ns : namespaces_) ns->clear();
  }
  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;

  Flow render(const Body& body, std::string& out) {
    for (const auto& n : body) {
      const Flow f = render_node(*n, out);
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

 private:
  [[noreturn]] static void runtime_error(int line, const std::string& what) {
    fail(Status::kInvalidArgument, "chat template error at line {}: {}", line, what);
  }
  [[noreturn]] static void unsupported_at(int line, const std::string& what) {
    fail(Status::kUnsupported, "chat template uses {} (line {}), which udaci does not support{}",
         what, line, kFallbackHint);
  }

  Value lookup(const std::string& name) const {
    for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    if (name == "raise_exception" || name == "namespace" || name == "range")
      return Value::function(name);
    return Value::undefined("'" + name + "' is undefined");
  }

  void charge(uint64_t steps, int line) {
    steps_ += steps;
    if (steps_ > kMaxRenderSteps)
      runtime_error(line, fmt::format("rendering needs more than {} steps", kMaxRenderSteps));
  }
  static uint64_t string_steps(const std::string& s) { return s.size() / 64; }

  void append(std::string& out, const std::string& text, int line) {
    charge(string_steps(text), line);
    if (out.size() + text.size() > kMaxValueSize) runtime_error(line, "rendered text too large");
    out += text;
  }

  Flow render_node(const Node& n, std::string& out) {
    charge(1, n.line);
    switch (n.kind) {
      case Node::Kind::kText: append(out, n.text, n.line); return Flow::kNormal;
      case Node::Kind::kPrint: append(out, to_str_at(eval(*n.expr), n.line), n.line); return Flow::kNormal;
      case Node::Kind::kIf:
        for (const auto& br : n.branches)
          if (truthy(eval(*br.first))) return render(br.second, out);
        return render(n.else_body, out);
      case Node::Kind::kFor: return render_for(n, out);
      case Node::Kind::kSet: {
        Value v = eval(*n.expr);
        if (n.attr.empty()) {
          frames_.back()[n.text] = std::move(v);
        } else {
          const Value target = lookup(n.text);
          if (target.kind != Value::Kind::kNamespace)
            runtime_error(n.line, fmt::format("cannot assign attribute on non-namespace object '{}'", n.text));
          for (auto& kv : *target.ns)
            if (kv.first == n.attr) {
              kv.second = std::move(v);
              return Flow::kNormal;
            }
          target.ns->emplace_back(n.attr, std::move(v));
        }
        return Flow::kNormal;
      }
      case Node::Kind::kSetBlock: {
        std::string captured;
        render(n.body, captured);
        frames_.back()[n.text] = Value::string(std::move(captured));
        return Flow::kNormal;
      }
      case Node::Kind::kBreak:
      case Node::Kind::kContinue:
        if (loop_depth_ == 0) runtime_error(n.line, "break/continue outside a loop");
        return n.kind == Node::Kind::kBreak ? Flow::kBreak : Flow::kContinue;
    }
    return Flow::kNormal;
  }

  std::string to_str_at(const Value& v, int line) {
    if (v.kind == Value::Kind::kList || v.kind == Value::Kind::kDict || v.kind == Value::Kind::kNamespace ||
        v.kind == Value::Kind::kFunction)
      unsupported_at(line, fmt::format("printing a {} (Python repr)", type_name(v)));
    return to_str(v);
  }

  // Python iteration: lists, dict keys, string code points; jinja's
  // Undefined iterates as empty.
  List iterate(const Value& v, int line) {
    switch (v.kind) {
      case Value::Kind::kUndefined: return {};
      case Value::Kind::kList: return *v.list;
      case Value::Kind::kDict: {
        List keys;
        for (const auto& kv : *v.dict) keys.push_back(Value::string(kv.first));
        return keys;
      }
      case Value::Kind::kString: {
        List chars;
        for (auto& c : code_points(v.s)) chars.push_back(Value::string(std::move(c)));
        return chars;
      }
      default: runtime_error(line, fmt::format("'{}' object is not iterable", type_name(v)));
    }
  }

  Flow render_for(const Node& n, std::string& out) {
    List items = iterate(eval(*n.expr), n.line);
    charge(items.size(), n.line);
    if (n.filter) {
      // The filter sees the loop variable but not `loop` (jinja evaluates it
      // before the loop context exists).
      List kept;
      for (const auto& item : items) {
        frames_.emplace_back();
        bind_targets(n, item);
        const bool keep = truthy(eval(*n.filter));
        frames_.pop_back();
        if (keep) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) return render(n.else_body, out);
    ++loop_depth_;
    const auto len = static_cast<int64_t>(items.size());
    for (int64_t k = 0; k < len; ++k) {
      charge(kLoopSteps, n.line);
      frames_.emplace_back();  // a fresh scope per iteration, as jinja's
      bind_targets(n, items[static_cast<size_t>(k)]);
      Dict loop{{"index", Value::integer(k + 1)},
                {"index0", Value::integer(k)},
                {"revindex", Value::integer(len - k)},
                {"revindex0", Value::integer(len - k - 1)},
                {"first", Value::boolean(k == 0)},
                {"last", Value::boolean(k == len - 1)},
                {"length", Value::integer(len)},
                {"previtem", k > 0 ? items[static_cast<size_t>(k - 1)] : Value::undefined("there is no previous item")},
                {"nextitem", k + 1 < len ? items[static_cast<size_t>(k + 1)] : Value::undefined("there is no next item")}};
      frames_.back()["loop"] = Value::make_dict(std::move(loop));
      const Flow f = render(n.body, out);
      frames_.pop_back();
      if (f == Flow::kBreak) break;
    }
    --loop_depth_;
    return Flow::kNormal;
  }

  void bind_targets(const Node& n, const Value& item) {
    if (n.targets.size() == 1) {
      frames_.back()[n.targets[0]] = item;
      return;
    }
    List parts = item.kind == Value::Kind::kList ? *item.list : List{};
    if (parts.size() != n.targets.size())
      runtime_error(n.line, fmt::format("cannot unpack a {} into {} loop variables", type_name(item),
                                        n.targets.size()));
    for (size_t k = 0; k < parts.size(); ++k) frames_.back()[n.targets[k]] = parts[k];
  }

  // jinja Undefined: using it in an operation raises UndefinedError.
  static void require_defined(const Value& v, int line) {
    if (v.is_undefined()) runtime_error(line, v.s);
  }

  Value get_attr(const Value& obj, const std::string& name, int line) {
    require_defined(obj, line);
    if (obj.kind == Value::Kind::kDict) {
      // Python attributes come before keys (jinja's sandbox getattr).
      if (is_method(kDictMethods, name)) return Value::function(name, std::make_shared<const Value>(obj));
      if (const Value* v = dict_find(*obj.dict, name)) return *v;
      return Value::undefined(fmt::format("dict object has no attribute '{}'", name));
    }
    if (obj.kind == Value::Kind::kNamespace) {
      if (const Value* v = dict_find(*obj.ns, name)) return *v;
      return Value::undefined(fmt::format("namespace object has no attribute '{}'", name));
    }
    if (obj.kind == Value::Kind::kString && is_method(kStrMethods, name))
      return Value::function(name, std::make_shared<const Value>(obj));
    return Value::undefined(fmt::format("{} object has no attribute '{}'", type_name(obj), name));
  }

  // Python's method names, so that `x.method is defined` answers as in
  // Python; call() implements a subset and rejects the rest as unsupported.
  static constexpr const char* kStrMethods[] = {
      "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find",
      "format", "format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit",
      "isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper",
      "join", "ljust", "lower", "lstrip", "maketrans", "partition", "removeprefix", "removesuffix",
      "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip", "split",
      "splitlines", "startswith", "strip", "swapcase", "title", "translate", "upper", "zfill"};
  static constexpr const char* kDictMethods[] = {"clear", "copy", "fromkeys", "get", "items", "keys",
                                                 "pop", "popitem", "setdefault", "update", "values"};
  template <size_t N>
  static bool is_method(const char* const (&names)[N], const std::string& name) {
    for (const char* m : names)
      if (name == m) return true;
    return false;
  }

  static int64_t normalize_index(int64_t idx, int64_t size) { return idx < 0 ? idx + size : idx; }

  Value get_item(const Value& obj, const Value& key, int line) {
    require_defined(obj, line);
    if (obj.kind == Value::Kind::kDict || obj.kind == Value::Kind::kNamespace) {
      if (key.kind == Value::Kind::kString) {
        const Dict& d = obj.kind == Value::Kind::kDict ? *obj.dict : *obj.ns;
        if (const Value* v = dict_find(d, key.s)) return *v;
        return get_attr(obj, key.s, line);
      }
      return Value::undefined(fmt::format("{} object has no element {}", type_name(obj), to_str(key)));
    }
    if ((obj.kind == Value::Kind::kList || obj.kind == Value::Kind::kString) && key.is_int_like()) {
      if (obj.kind == Value::Kind::kList) {
        const int64_t idx = normalize_index(key.as_int(), static_cast<int64_t>(obj.list->size()));
        if (idx >= 0 && idx < static_cast<int64_t>(obj.list->size())) return (*obj.list)[static_cast<size_t>(idx)];
      } else {
        const auto cps = code_points(obj.s);
        const int64_t idx = normalize_index(key.as_int(), static_cast<int64_t>(cps.size()));
        if (idx >= 0 && idx < static_cast<int64_t>(cps.size())) return Value::string(cps[static_cast<size_t>(idx)]);
      }
      return Value::undefined(fmt::format("{} index {} out of range", type_name(obj), key.as_int()));
    }
    if (key.kind == Value::Kind::kString) return get_attr(obj, key.s, line);
    return Value::undefined(fmt::format("{} object has no element {}", type_name(obj), to_str(key)));
  }

  Value slice(const Value& obj, const ExprPtr& a, const ExprPtr& b, const ExprPtr& c, int line) {
    require_defined(obj, line);
    std::vector<Value> elems;
    const bool is_str = obj.kind == Value::Kind::kString;
    if (is_str) {
      for (auto& cp : code_points(obj.s)) elems.push_back(Value::string(std::move(cp)));
    } else if (obj.kind == Value::Kind::kList) {
      elems = *obj.list;
    } else {
      runtime_error(line, fmt::format("cannot slice a {}", type_name(obj)));
    }
    const auto opt_int = [&](const ExprPtr& e) -> std::optional<int64_t> {
      if (!e) return std::nullopt;
      const Value v = eval(*e);
      if (v.kind == Value::Kind::kNone) return std::nullopt;
      if (!v.is_int_like()) runtime_error(line, "slice indices must be integers or none");
      return v.as_int();
    };
    const int64_t n = static_cast<int64_t>(elems.size());
    const int64_t step = opt_int(c).value_or(1);
    if (step == 0) runtime_error(line, "slice step cannot be zero");
    // Python's PySlice_AdjustIndices
    const auto adjust = [&](std::optional<int64_t> v, int64_t dflt) {
      if (!v) return dflt;
      int64_t x = *v;
      if (x < 0) {
        x += n;
        if (x < 0) x = step < 0 ? -1 : 0;
      } else if (x >= n) {
        x = step < 0 ? n - 1 : n;
      }
      return x;
    };
    const int64_t start = adjust(opt_int(a), step < 0 ? n - 1 : 0);
    const int64_t stop = adjust(opt_int(b), step < 0 ? -1 : n);
    List picked;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) picked.push_back(elems[static_cast<size_t>(k)]);
    if (!is_str) return Value::make_list(std::move(picked));
    std::string s;
    for (const auto& p : picked) s += p.s;
    return Value::string(std::move(s));
  }

  Value eval(const Expr& e) {
    charge(1, e.line);
    Value v = eval_node(e);
    // What the node produced: strings are copied by value; lists are shared,
    // so only nodes that may build one pay for its elements.
    uint64_t steps = string_steps(v.s);
    if (v.list && e.kind != Expr::Kind::kName && e.kind != Expr::Kind::kLiteral &&
        e.kind != Expr::Kind::kGetAttr && e.kind != Expr::Kind::kGetItem)
      steps += v.list->size();
    charge(steps, e.line);
    return v;
  }

  Value eval_node(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral: return e.literal;
      case Expr::Kind::kName: return lookup(e.name);
      case Expr::Kind::kGetAttr: return get_attr(eval(*e.args[0]), e.name, e.line);
      case Expr::Kind::kGetItem: {
        const Value obj = eval(*e.args[0]);
        return get_item(obj, eval(*e.args[1]), e.line);
      }
      case Expr::Kind::kSlice: return slice(eval(*e.args[0]), e.args[1], e.args[2], e.args[3], e.line);
      case Expr::Kind::kCall: return call(e);
      case Expr::Kind::kFilter: return apply_filter(e);
      case Expr::Kind::kTest: {
        const bool r = apply_test(e);
        return Value::boolean(e.negated ? !r : r);
      }
      case Expr::Kind::kNot: return Value::boolean(!truthy(eval(*e.args[0])));
      case Expr::Kind::kNeg:
      case Expr::Kind::kPos: {
        const Value v = eval(*e.args[0]);
        require_defined(v, e.line);
        if (!v.is_int_like()) runtime_error(e.line, fmt::format("bad operand type for unary -/+: {}", type_name(v)));
        if (e.kind == Expr::Kind::kNeg && v.as_int() == INT64_MIN)
          unsupported_at(e.line, "integer arithmetic beyond 64 bits");
        return Value::integer(e.kind == Expr::Kind::kNeg ? -v.as_int() : v.as_int());
      }
      case Expr::Kind::kAnd: {
        Value l = eval(*e.args[0]);
        return truthy(l) ? eval(*e.args[1]) : l;
      }
      case Expr::Kind::kOr: {
        Value l = eval(*e.args[0]);
        return truthy(l) ? l : eval(*e.args[1]);
      }
      case Expr::Kind::kCond:
        if (truthy(eval(*e.args[1]))) return eval(*e.args[0]);
        return e.args[2] ? eval(*e.args[2]) : Value::undefined("conditional expression had no else branch");
      case Expr::Kind::kBinary: return binary(e.name, eval(*e.args[0]), eval(*e.args[1]), e.line);
      case Expr::Kind::kCompare: {
        Value left = eval(*e.args[0]);
        for (size_t k = 0; k < e.ops.size(); ++k) {
          Value right = eval(*e.args[k + 1]);
          if (!compare(e.ops[k], left, right, e.line)) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case Expr::Kind::kList: {
        List items;
        for (const auto& a : e.args) items.push_back(eval(*a));
        return Value::make_list(std::move(items));
      }
      case Expr::Kind::kDict: {
        Dict d;
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
          const Value key = eval(*e.args[k]);
          if (key.kind != Value::Kind::kString) unsupported_at(e.line, "a dict literal with non-string keys");
          Value v = eval(*e.args[k + 1]);
          bool replaced = false;
          for (auto& kv : d)
            if (kv.first == key.s) kv.second = v, replaced = true;
          if (!replaced) d.emplace_back(key.s, std::move(v));
        }
        return Value::make_dict(std::move(d));
      }
    }
    return Value::undefined("?");
  }

  bool contains(const Value& container, const Value& item, int line) {
    switch (container.kind) {
      case Value::Kind::kString:
        if (item.kind != Value::Kind::kString)
          runtime_error(line, fmt::format("'in <string>' requires string as left operand, not {}", type_name(item)));
        return container.s.find(item.s) != std::string::npos;
      case Value::Kind::kList:
        charge(container.list->size(), line);
        for (const auto& x : *container.list)
          if (equal(x, item)) return true;
        return false;
      case Value::Kind::kDict: return item.kind == Value::Kind::kString && dict_find(*container.dict, item.s);
      case Value::Kind::kUndefined: return false;
      default: runtime_error(line, fmt::format("argument of type '{}' is not iterable", type_name(container)));
    }
  }

  bool compare(const std::string& op, const Value& a, const Value& b, int line) {
    if (op == "==") return equal(a, b);
    if (op == "!=") return !equal(a, b);
    if (op == "in") return contains(b, a, line);
    if (op == "notin") return !contains(b, a, line);
    int c = 0;
    if (a.is_int_like() && b.is_int_like()) {
      c = a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int() ? 1 : 0;
    } else if (a.kind == Value::Kind::kString && b.kind == Value::Kind::kString) {
      c = a.s.compare(b.s);  // UTF-8 byte order is code point order
    } else {
      require_defined(a, line);
      require_defined(b, line);
      runtime_error(line, fmt::format("'{}' not supported between {} and {}", op, type_name(a), type_name(b)));
    }
    if (op == "<") return c < 0;
    if (op == ">") return c > 0;
    if (op == "<=") return c <= 0;
    return c >= 0;
  }

  Value binary(const std::string& op, const Value& a, const Value& b, int line) {
    if (op == "~") return Value::string(to_str_at(a, line) + to_str_at(b, line));
    require_defined(a, line);
    require_defined(b, line);
    const bool ints = a.is_int_like() && b.is_int_like();
    const auto check_size = [&](size_t n) {
      if (n > kMaxValueSize) runtime_error(line, "result too large");
    };
    // Python integers are unbounded; ours are int64 and refuse to wrap.
    int64_t r = 0;
    // Called after the builtin has stored into r (argument order is unspecified).
    const auto checked = [&](bool overflow) {
      if (overflow) unsupported_at(line, "integer arithmetic beyond 64 bits");
      return Value::integer(r);
    };
    if (op == "+") {
      if (ints) return checked(__builtin_add_overflow(a.as_int(), b.as_int(), &r));
      if (a.kind == Value::Kind::kString && b.kind == Value::Kind::kString) {
        check_size(a.s.size() + b.s.size());
        return Value::string(a.s + b.s);
      }
      if (a.kind == Value::Kind::kList && b.kind == Value::Kind::kList) {
        List l = *a.list;
        if (l.size() + b.list->size() > kMaxListSize) runtime_error(line, "result too large");
        l.insert(l.end(), b.list->begin(), b.list->end());
        return Value::make_list(std::move(l));
      }
    } else if (op == "-" && ints) {
      return checked(__builtin_sub_overflow(a.as_int(), b.as_int(), &r));
    } else if (op == "*") {
      if (ints) return checked(__builtin_mul_overflow(a.as_int(), b.as_int(), &r));
      const Value* seq = a.is_int_like() ? &b : &a;
      const Value* count = a.is_int_like() ? &a : &b;
      if (count->is_int_like() && (seq->kind == Value::Kind::kString || seq->kind == Value::Kind::kList)) {
        const int64_t times = std::max<int64_t>(0, count->as_int());
        const size_t unit = seq->kind == Value::Kind::kString ? seq->s.size() : seq->list->size();
        const size_t limit = seq->kind == Value::Kind::kString ? kMaxValueSize : kMaxListSize;
        if (unit > 0 && static_cast<uint64_t>(times) > limit / unit) runtime_error(line, "result too large");
        // An empty sequence times anything is empty: no loop over `times`
        // (a huge count made the loops below spin; issue #12).
        if (unit == 0) return seq->kind == Value::Kind::kString ? Value::string("") : Value::make_list({});
        if (seq->kind == Value::Kind::kString) {
          std::string s;
          for (int64_t k = 0; k < times; ++k) s += seq->s;
          return Value::string(std::move(s));
        }
        List l;
        for (int64_t k = 0; k < times; ++k) l.insert(l.end(), seq->list->begin(), seq->list->end());
        return Value::make_list(std::move(l));
      }
    } else if ((op == "//" || op == "%") && ints) {
      if (b.as_int() == 0) runtime_error(line, "integer division or modulo by zero");
      if (a.as_int() == INT64_MIN && b.as_int() == -1) unsupported_at(line, "integer arithmetic beyond 64 bits");
      // Python floors toward negative infinity.
      int64_t q = a.as_int() / b.as_int(), r = a.as_int() % b.as_int();
      if (r != 0 && ((r < 0) != (b.as_int() < 0))) --q, r += b.as_int();
      return Value::integer(op == "//" ? q : r);
    } else if (op == "**" && ints && b.as_int() >= 0) {
      const int64_t base = a.as_int(), exp = b.as_int();
      if (base == 0 || base == 1) return Value::integer(exp == 0 ? 1 : base);
      if (base == -1) return Value::integer(exp % 2 == 0 ? 1 : -1);
      r = 1;  // |base| >= 2: overflows within 64 steps
      bool overflow = false;
      for (int64_t k = 0; k < exp && !overflow; ++k) overflow = __builtin_mul_overflow(r, base, &r);
      return checked(overflow);
    } else if (op == "/") {
      unsupported_at(line, "'/' (true division makes floats)");
    } else if (op == "%" && a.kind == Value::Kind::kString) {
      unsupported_at(line, "string '%' formatting");
    }
    runtime_error(line, fmt::format("unsupported operand types for {}: {} and {}", op, type_name(a), type_name(b)));
  }

  struct Args {
    std::vector<Value> pos;
    std::vector<std::pair<std::string, Value>> kw;
    const Value* get(size_t idx, const char* key) const {
      if (idx < pos.size()) return &pos[idx];
      for (const auto& kv : kw)
        if (kv.first == key) return &kv.second;
      return nullptr;
    }
  };

  Args eval_args(const Expr& e, size_t first) {
    Args a;
    for (size_t k = first; k < e.args.size(); ++k) a.pos.push_back(eval(*e.args[k]));
    for (const auto& kv : e.kwargs) a.kw.emplace_back(kv.first, eval(*kv.second));
    return a;
  }

  static void check_arity(const Args& a, size_t max_pos, std::initializer_list<const char*> keys,
                          const std::string& what, int line) {
    if (a.pos.size() > max_pos) runtime_error(line, fmt::format("{} takes at most {} arguments", what, max_pos));
    for (const auto& kv : a.kw)
      if (std::find_if(keys.begin(), keys.end(), [&](const char* k) { return kv.first == k; }) == keys.end())
        unsupported_at(line, fmt::format("argument '{}' of {}", kv.first, what));
  }

  static std::string string_arg(const Value* v, const std::string& what, int line) {
    if (!v || v->kind != Value::Kind::kString) runtime_error(line, fmt::format("{} expects a string argument", what));
    return v->s;
  }

  // Case mapping beyond ASCII needs Unicode tables; refuse rather than differ.
  static std::string ascii_case(const std::string& s, bool upper, int line) {
    std::string out = s;
    for (char& c : out) {
      if (static_cast<unsigned char>(c) >= 0x80) unsupported_at(line, "upper()/lower() of non-ASCII text");
      if (upper && c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
      if (!upper && c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    }
    return out;
  }

  static std::string replace_all(const std::string& s, const std::string& from, const std::string& to,
                                 int64_t count, int line) {
    if (from.empty()) unsupported_at(line, "replace() of an empty string");
    std::string out;
    size_t pos = 0;
    for (int64_t done = 0; count < 0 || done < count; ++done) {
      const size_t hit = s.find(from, pos);
      if (hit == std::string::npos) break;
      out.append(s, pos, hit - pos);
      out += to;
      pos = hit + from.size();
      if (out.size() > kMaxValueSize) runtime_error(line, "result too large");
    }
    out.append(s, pos, std::string::npos);
    return out;
  }

  Value call(const Expr& e) {
    const Value fn = eval(*e.args[0]);
    const Args a = eval_args(e, 1);
    if (fn.kind != Value::Kind::kFunction) {
      if (fn.is_undefined())
        runtime_error(e.line, fmt::format("cannot call an undefined value ({}){}", fn.s,
                                          fn.s.find("strftime_now") != std::string::npos
                                              ? "; pass the date through ChatRenderOptions::date_string"
                                              : ""));
      runtime_error(e.line, fmt::format("'{}' object is not callable", type_name(fn)));
    }
    const std::string& name = fn.s;
    if (!fn.self) {
      if (name == "raise_exception") {
        const Value* msg = a.get(0, "message");
        fail(Status::kInvalidArgument, "chat template raised an error: {}", msg ? to_str(*msg) : "");
      }
      if (name == "namespace") {
        if (!a.pos.empty()) unsupported_at(e.line, "positional arguments to namespace()");
        Value v;
        v.kind = Value::Kind::kNamespace;
        v.ns = std::make_shared<Dict>(a.kw);
        namespaces_.push_back(v.ns);
        return v;
      }
      if (name == "range") {
        check_arity(a, 3, {}, "range()", e.line);
        for (const auto& p : a.pos)
          if (!p.is_int_like()) runtime_error(e.line, "range() arguments must be integers");
        if (a.pos.empty()) runtime_error(e.line, "range() needs at least one argument");
        const int64_t start = a.pos.size() == 1 ? 0 : a.pos[0].as_int();
        const int64_t stop = a.pos.size() == 1 ? a.pos[0].as_int() : a.pos[1].as_int();
        const int64_t step = a.pos.size() == 3 ? a.pos[2].as_int() : 1;
        if (step == 0) runtime_error(e.line, "range() step must not be zero");
        // Unsigned: the span of two int64 values may exceed INT64_MAX.
        const bool empty = step > 0 ? stop <= start : stop >= start;
        const uint64_t span = empty ? 0
                              : step > 0 ? static_cast<uint64_t>(stop) - static_cast<uint64_t>(start)
                                         : static_cast<uint64_t>(start) - static_cast<uint64_t>(stop);
        const uint64_t stride = step > 0 ? static_cast<uint64_t>(step) : 0 - static_cast<uint64_t>(step);
        const uint64_t count = empty ? 0 : (span - 1) / stride + 1;
        if (count > kMaxListSize) runtime_error(e.line, "range() result too large");
        List l;
        l.reserve(static_cast<size_t>(count));
        for (uint64_t k = 0; k < count; ++k) l.push_back(Value::integer(start + static_cast<int64_t>(k) * step));
        return Value::make_list(std::move(l));
      }
    }
    const Value& self = *fn.self;
    if (self.kind == Value::Kind::kDict) {
      if (name != "get" && name != "keys" && name != "values" && name != "items")
        unsupported_at(e.line, fmt::format("the method '{}'", name));
      if (name == "get") {
        check_arity(a, 2, {}, "dict.get()", e.line);
        if (a.pos.empty()) runtime_error(e.line, "dict.get() needs a key");
        const Value* v = a.pos[0].kind == Value::Kind::kString ? dict_find(*self.dict, a.pos[0].s) : nullptr;
        return v ? *v : a.pos.size() > 1 ? a.pos[1] : Value::none();
      }
      List l;
      for (const auto& kv : *self.dict) {
        if (name == "keys") l.push_back(Value::string(kv.first));
        if (name == "values") l.push_back(kv.second);
        if (name == "items") l.push_back(Value::make_list({Value::string(kv.first), kv.second}));
      }
      return Value::make_list(std::move(l));
    }
    // String methods.
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      check_arity(a, 1, {}, name + "()", e.line);
      std::optional<std::string> chars;
      if (!a.pos.empty() && a.pos[0].kind != Value::Kind::kNone) chars = string_arg(&a.pos[0], name + "()", e.line);
      return Value::string(py_strip(self.s, name != "rstrip", name != "lstrip", chars));
    }
    if (name == "startswith" || name == "endswith") {
      check_arity(a, 1, {}, name + "()", e.line);
      List options;
      if (!a.pos.empty() && a.pos[0].kind == Value::Kind::kList) {
        options = *a.pos[0].list;
      } else if (!a.pos.empty()) {
        options.push_back(a.pos[0]);
      }
      if (options.empty() && a.pos.empty()) runtime_error(e.line, fmt::format("{}() needs an argument", name));
      for (const auto& o : options) {
        const std::string p = string_arg(&o, name + "()", e.line);
        const bool hit = name == "startswith" ? self.s.compare(0, p.size(), p) == 0
                                              : self.s.size() >= p.size() &&
                                                    self.s.compare(self.s.size() - p.size(), p.size(), p) == 0;
        if (hit) return Value::boolean(true);
      }
      return Value::boolean(false);
    }
    if (name == "upper" || name == "lower") {
      check_arity(a, 0, {}, name + "()", e.line);
      return Value::string(ascii_case(self.s, name == "upper", e.line));
    }
    if (name == "replace") {
      check_arity(a, 3, {}, "replace()", e.line);
      if (a.pos.size() < 2) runtime_error(e.line, "replace() needs two arguments");
      const int64_t count = a.pos.size() == 3 && a.pos[2].is_int_like() ? a.pos[2].as_int() : -1;
      return Value::string(replace_all(self.s, string_arg(&a.pos[0], "replace()", e.line),
                                       string_arg(&a.pos[1], "replace()", e.line), count, e.line));
    }
    if (name == "split") {
      check_arity(a, 2, {"sep", "maxsplit"}, "split()", e.line);
      const Value* sep = a.get(0, "sep");
      const Value* maxv = a.get(1, "maxsplit");
      const int64_t maxsplit = maxv && maxv->is_int_like() ? maxv->as_int() : -1;
      List parts;
      if (!sep || sep->kind == Value::Kind::kNone) {
        // Runs of whitespace separate; leading/trailing whitespace yields nothing.
        size_t i = 0, n = 0;
        const std::string& s = self.s;
        int64_t done = 0;
        while (i < s.size()) {
          while (i < s.size() && py_space(decode_at(s, i, &n))) i += n;
          if (i >= s.size()) break;
          if (maxsplit >= 0 && done == maxsplit) {
            parts.push_back(Value::string(s.substr(i)));  // Python keeps the remainder's tail
            break;
          }
          size_t j = i;
          while (j < s.size() && !py_space(decode_at(s, j, &n))) j += n;
          parts.push_back(Value::string(s.substr(i, j - i)));
          ++done;
          i = j;
        }
      } else {
        const std::string d = string_arg(sep, "split()", e.line);
        if (d.empty()) runtime_error(e.line, "split(): empty separator");
        size_t pos = 0;
        int64_t done = 0;
        while (maxsplit < 0 || done < maxsplit) {
          const size_t hit = self.s.find(d, pos);
          if (hit == std::string::npos) break;
          parts.push_back(Value::string(self.s.substr(pos, hit - pos)));
          pos = hit + d.size();
          ++done;
        }
        parts.push_back(Value::string(self.s.substr(pos)));
      }
      return Value::make_list(std::move(parts));
    }
    unsupported_at(e.line, fmt::format("the method '{}'", name));
  }

  static int64_t length_of(const Value& v, int line) {
    switch (v.kind) {
      case Value::Kind::kUndefined: return 0;
      case Value::Kind::kString: return static_cast<int64_t>(code_points(v.s).size());
      case Value::Kind::kList: return static_cast<int64_t>(v.list->size());
      case Value::Kind::kDict: return static_cast<int64_t>(v.dict->size());
      default: runtime_error(line, fmt::format("object of type '{}' has no len()", type_name(v)));
    }
  }

  Value apply_filter(const Expr& e) {
    const std::string& f = e.name;
    const Value v = eval(*e.args[0]);
    const Args a = eval_args(e, 1);
    const int line = e.line;
    if (f == "trim") {
      check_arity(a, 1, {"chars"}, "trim", line);
      std::optional<std::string> chars;
      if (const Value* c = a.get(0, "chars"); c && c->kind != Value::Kind::kNone) chars = string_arg(c, "trim", line);
      return Value::string(py_strip(to_str_at(v, line), true, true, chars));
    }
    if (f == "length" || f == "count") {
      check_arity(a, 0, {}, f, line);
      return Value::integer(length_of(v, line));
    }
    if (f == "tojson") {
      check_arity(a, 1, {"indent"}, "tojson", line);
      int indent = -1;
      if (const Value* i = a.get(0, "indent"); i && i->kind != Value::Kind::kNone) {
        if (!i->is_int_like()) unsupported_at(line, "a non-integer tojson indent");
        indent = static_cast<int>(std::clamp<int64_t>(i->as_int(), 0, 64));
      }
      require_defined(v, line);
      std::string out;
      to_json(out, v, indent, 0);
      return Value::string(std::move(out));
    }
    if (f == "string") return Value::string(to_str_at(v, line));
    if (f == "upper" || f == "lower") return Value::string(ascii_case(to_str_at(v, line), f == "upper", line));
    if (f == "first" || f == "last") {
      const List items = iterate(v, line);
      if (items.empty()) return Value::undefined(fmt::format("no {} item, sequence was empty", f));
      return f == "first" ? items.front() : items.back();
    }
    if (f == "list") return Value::make_list(iterate(v, line));
    if (f == "items") {
      if (v.is_undefined()) return Value::make_list({});
      if (v.kind != Value::Kind::kDict) runtime_error(line, "items filter expects a mapping");
      List l;
      for (const auto& kv : *v.dict) l.push_back(Value::make_list({Value::string(kv.first), kv.second}));
      return Value::make_list(std::move(l));
    }
    if (f == "join") {
      check_arity(a, 1, {"d"}, "join", line);
      std::string sep;
      if (const Value* d = a.get(0, "d")) sep = to_str_at(*d, line);
      std::string out;
      bool first = true;
      for (const auto& item : iterate(v, line)) {
        if (!first) out += sep;
        first = false;
        out += to_str_at(item, line);
        if (out.size() > kMaxValueSize) runtime_error(line, "result too large");
      }
      return Value::string(std::move(out));
    }
    if (f == "default" || f == "d") {
      check_arity(a, 2, {"default_value", "boolean"}, "default", line);
      const Value* dv = a.get(0, "default_value");
      const Value* boolean = a.get(1, "boolean");
      const bool use_default = v.is_undefined() || (boolean && truthy(*boolean) && !truthy(v));
      return use_default ? (dv ? *dv : Value::string("")) : v;
    }
    if (f == "replace") {
      check_arity(a, 3, {"old", "new", "count"}, "replace", line);
      const Value* count = a.get(2, "count");
      return Value::string(replace_all(to_str_at(v, line), string_arg(a.get(0, "old"), "replace", line),
                                       string_arg(a.get(1, "new"), "replace", line),
                                       count && count->is_int_like() ? count->as_int() : -1, line));
    }
    unsupported_at(line, fmt::format("the filter '{}'", f));
  }

  bool apply_test(const Expr& e) {
    const std::string& t = e.name;
    const Value v = eval(*e.args[0]);
    const Args a = eval_args(e, 1);
    using K = Value::Kind;
    if (t == "defined") return !v.is_undefined();
    if (t == "undefined") return v.is_undefined();
    if (t == "none") return v.kind == K::kNone;
    if (t == "boolean") return v.kind == K::kBool;
    if (t == "true") return v.kind == K::kBool && v.b;
    if (t == "false") return v.kind == K::kBool && !v.b;
    if (t == "integer") return v.kind == K::kInt;
    if (t == "number") return v.kind == K::kInt || v.kind == K::kBool;
    if (t == "string") return v.kind == K::kString;
    if (t == "mapping") return v.kind == K::kDict;
    if (t == "iterable") return v.kind == K::kString || v.kind == K::kList || v.kind == K::kDict || v.is_undefined();
    if (t == "sequence") return v.kind == K::kString || v.kind == K::kList || v.kind == K::kDict;
    if (t == "odd" || t == "even") {
      if (!v.is_int_like()) runtime_error(e.line, fmt::format("test '{}' needs an integer", t));
      const bool odd = (v.as_int() % 2) != 0;
      return t == "odd" ? odd : !odd;
    }
    if (t == "eq" || t == "equalto" || t == "==" || t == "ne" || t == "!=") {
      if (a.pos.size() != 1) runtime_error(e.line, fmt::format("test '{}' needs one argument", t));
      const bool same = equal(v, a.pos[0]);
      return (t == "ne" || t == "!=") ? !same : same;
    }
    unsupported_at(e.line, fmt::format("the test '{}'", t));
  }

  std::vector<std::map<std::string, Value>> frames_;
  int loop_depth_ = 0;
  uint64_t steps_ = 0;  // charged against kMaxRenderSteps
  std::vector<std::shared_ptr<Dict>> namespaces_;  // every namespace() made, see ~Renderer
};

}  // namespace

struct ChatTemplate::Impl {
  std::string source;
  Body body;
};

ChatTemplate::ChatTemplate(std::string source) {
  UDACI_CHECK(valid_utf8(source), "chat template is not valid UTF-8{}", kFallbackHint);
  auto impl = std::make_shared<Impl>();
  impl->body = Parser(Lexer(source).run()).parse_template();
  impl->source = std::move(source);
  impl_ = std::move(impl);
}

const std::string& ChatTemplate::source() const { return impl_->source; }

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                 const ChatRenderOptions& options) const {
  List msgs;
  msgs.reserve(messages.size());
  for (size_t k = 0; k < messages.size(); ++k) {
    const ChatMessage& m = messages[k];
    UDACI_CHECK(valid_utf8(m.role), "chat message {}: role is not valid UTF-8", k);
    UDACI_CHECK(valid_utf8(m.content), "chat message {} ({}): content is not valid UTF-8", k, m.role);
    msgs.push_back(Value::make_dict({{"role", Value::string(m.role)}, {"content", Value::string(m.content)}}));
  }
  UDACI_CHECK(valid_utf8(options.bos_token) && valid_utf8(options.eos_token) &&
                  valid_utf8(options.date_string),
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
  Renderer renderer(std::move(globals));
  std::string out;
  renderer.render(impl_->body, out);
  return out;
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
