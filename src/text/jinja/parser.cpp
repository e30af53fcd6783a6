// The chat-template parser (jinja2's parser.py; see parser.hpp).
#include "text/jinja/parser.hpp"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "core/error.hpp"
#include "text/jinja/limits.hpp"

namespace udaci {
namespace jinja {
namespace {

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

}  // namespace

Body parse(std::vector<Token> tokens) { return Parser(std::move(tokens)).parse_template(); }

}  // namespace jinja
}  // namespace udaci
