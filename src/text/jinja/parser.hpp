// The chat-template AST and parser: tokens to a tree of statements (Node)
// and expressions (Expr), following jinja2's parser.py.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja/lexer.hpp"
#include "text/jinja/value.hpp"

namespace udaci {
namespace jinja {

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
  std::vector<ExprPtr> args;                         // operands (see parser.cpp for layouts)
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

// The template's statements. Throws syntax_error/unsupported (lexer.hpp),
// also when nesting exceeds kMaxDepth.
Body parse(std::vector<Token> tokens);

}  // namespace jinja
}  // namespace udaci
