// The chat-template renderer: evaluates a parsed template against its
// variables, with jinja2's runtime semantics and the filters, tests, global
// functions and methods of the supported subset (chat_template.hpp).
#pragma once

#include <map>
#include <string>

#include "text/jinja/parser.hpp"
#include "text/jinja/value.hpp"

namespace udaci {
namespace jinja {

// The text body renders to with the given template variables. Throws
// Error(kInvalidArgument) when the template raises or fails at run time (or
// exceeds kMaxRenderSteps or a size limit), Error(kUnsupported) for a
// construct outside the subset.
std::string render(const Body& body, std::map<std::string, Value> globals);

}  // namespace jinja
}  // namespace udaci
