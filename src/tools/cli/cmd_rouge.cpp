// `udaci rouge`: ROUGE-1/2/L/Lsum F-measures of JSONL {"reference",
// "generated"} pairs (stdin or --input), scored as rouge-score scores them:
// one line per pair, then the means (eval/rouge_cli.hpp).
#include <fstream>
#include <iostream>

#include "core/error.hpp"
#include "eval/rouge_cli.hpp"
#include "tools/cli/common.hpp"

namespace udaci::cli {

namespace {

struct RougeArgs {
  std::string input;
  bool stem = false;
};

int cmd_rouge(const RougeArgs& a) {
  if (a.input.empty() || a.input == "-") return run_rouge_jsonl(std::cin, "<stdin>", a.stem, std::cout, std::cerr);
  std::ifstream in(a.input, std::ios::binary);
  UDACI_CHECK_S(Status::kNotFound, in.good(), "rouge: cannot open --input '{}'", a.input);
  return run_rouge_jsonl(in, a.input, a.stem, std::cout, std::cerr);
}

}  // namespace

CommandRun setup_rouge(CLI::App& sub) {
  auto a = std::make_shared<RougeArgs>();
  sub.add_option("--input", a->input, "JSON Lines file (default: stdin)");
  sub.add_flag("--stem", a->stem, "Porter-stem tokens longer than 3 characters");
  return [a](const GlobalOptions&) { return cmd_rouge(*a); };
}

}  // namespace udaci::cli
