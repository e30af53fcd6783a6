// The chat-template renderer (jinja2's runtime.py, filters.py and tests.py;
// see renderer.hpp).
#include "text/jinja/renderer.hpp"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/utf8.hpp"
#include "text/jinja/limits.hpp"
#include "text/jinja/py_str.hpp"

namespace udaci {
namespace jinja {
namespace {

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
          while (i < s.size() && is_unicode_space(decode_utf8_at(s, i, &n))) i += n;
          if (i >= s.size()) break;
          if (maxsplit >= 0 && done == maxsplit) {
            parts.push_back(Value::string(s.substr(i)));  // Python keeps the remainder's tail
            break;
          }
          size_t j = i;
          while (j < s.size() && !is_unicode_space(decode_utf8_at(s, j, &n))) j += n;
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

std::string render(const Body& body, std::map<std::string, Value> globals) {
  Renderer renderer(std::move(globals));
  std::string out;
  renderer.render(body, out);
  return out;
}

}  // namespace jinja
}  // namespace udaci
