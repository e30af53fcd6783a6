// Python semantics of template values (see value.hpp).
#include "text/jinja/value.hpp"

#include "core/error.hpp"
#include "text/jinja/limits.hpp"

namespace udaci {
namespace jinja {

namespace {

std::string int_str(int64_t x) { return std::to_string(x); }

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

}  // namespace

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

}  // namespace jinja
}  // namespace udaci
