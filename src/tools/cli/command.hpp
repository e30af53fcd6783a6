// The table of `udaci` subcommands. Each command lives in its own file,
// src/tools/cli/cmd_<name>.cpp, with its argument struct, its options and its
// run function; main (src/tools/udaci_main.cpp) adds one CLI11 subcommand per
// row of commands(), in that order (the order of `udaci --help`), and runs the
// one chosen. To add a command: write its file, declare its setup below, add
// a row to the table in command.cpp.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <vector>

namespace udaci::cli {

// The options given before the subcommand.
struct GlobalOptions {
  int threads = 1;             // --threads, else all cores
  bool threads_given = false;  // whether --threads was on the command line
  const char* argv0 = "";
  // --threads when given, else 0: what overrides a config file's "threads".
  int given_threads() const { return threads_given ? threads : 0; }
};

// A command once its options are parsed: the arguments it reads are bound into
// it. Returns the exit status; errors are thrown (main reports them, status 1).
using CommandRun = std::function<int(const GlobalOptions&)>;

struct Command {
  const char* name;
  const char* help;  // the line of `udaci --help`
  // Adds the command's options to its subcommand and returns its run, which
  // owns the struct those options fill.
  CommandRun (*setup)(CLI::App& sub);
  // Whether main sets the kernel threads (--threads) before the run: all but
  // launch, whose ranks are other processes that set their own.
  bool sets_threads = true;
};

// The commands in the order `udaci --help` lists them.
const std::vector<Command>& commands();

// One per command; each defined in its cmd_*.cpp.
CommandRun setup_random_model(CLI::App& sub);
CommandRun setup_info(CLI::App& sub);
CommandRun setup_convert(CLI::App& sub);
CommandRun setup_headline(CLI::App& sub);
CommandRun setup_tokenize(CLI::App& sub);
CommandRun setup_detokenize(CLI::App& sub);
CommandRun setup_generate(CLI::App& sub);
CommandRun setup_bench_forward(CLI::App& sub);
CommandRun setup_rouge(CLI::App& sub);
CommandRun setup_bench(CLI::App& sub);
CommandRun setup_techniques(CLI::App& sub);
CommandRun setup_perplexity(CLI::App& sub);
CommandRun setup_tune(CLI::App& sub);
CommandRun setup_launch(CLI::App& sub);
CommandRun setup_serve(CLI::App& sub);
CommandRun setup_bench_worker(CLI::App& sub);

}  // namespace udaci::cli
