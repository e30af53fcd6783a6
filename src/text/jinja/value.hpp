// The values a chat template computes with (Python's None, bool, int, str,
// list, dict and jinja's Undefined and namespace) and the Python semantics
// the renderer needs of them: truthiness, ==, str() and json.dumps.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace udaci {
namespace jinja {

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

// The name of v's type in error messages.
const char* type_name(const Value& v);

// The value under key, or nullptr.
const Value* dict_find(const Dict& d, std::string_view key);

// Python truthiness (jinja Undefined is falsy).
bool truthy(const Value& v);

// Python ==, with jinja's Undefined.__eq__ (equal only to another Undefined).
bool equal(const Value& a, const Value& b);

// Python str() of a value, as jinja prints it ({{ x }}, ~, |string, |join).
std::string to_str(const Value& v);

// json.dumps(x, ensure_ascii=False, indent=indent): transformers' tojson,
// appended to out; indent < 0 is json.dumps' indent=None.
void to_json(std::string& out, const Value& v, int indent, int level);

}  // namespace jinja
}  // namespace udaci
