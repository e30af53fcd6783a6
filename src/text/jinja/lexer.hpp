// The chat-template lexer: template text to tokens, with jinja's whitespace
// control as transformers configures it (trim_blocks, lstrip_blocks), and the
// errors the lexer and the parser raise.
#pragma once

#include <string>
#include <vector>

namespace udaci {
namespace jinja {

enum class Tok { kData, kBlockBegin, kBlockEnd, kVarBegin, kVarEnd, kName, kString, kInt, kOp, kEof };

struct Token {
  Tok type;
  std::string text;  // data text, name, decoded string, integer digits, operator
  int line;
};

// Error(kInvalidArgument) naming the line.
[[noreturn]] void syntax_error(int line, const std::string& what);

// Error(kUnsupported) naming the construct and the line.
[[noreturn]] void unsupported(int line, const std::string& what);

// The tokens of a template (valid UTF-8), ending in one kEof. Data tokens
// hold text with whitespace control applied; tag contents become kName,
// kString (decoded), kInt and kOp tokens between kBlockBegin/kBlockEnd or
// kVarBegin/kVarEnd; comments leave nothing.
std::vector<Token> lex(std::string source);

}  // namespace jinja
}  // namespace udaci
