// The `udaci` command-line tool: random-model, info, convert, headline,
// tokenize, detokenize, generate, bench-forward, rouge, bench, techniques,
// perplexity, launch (and the hidden bench-worker that `bench` starts). Each
// command is a file of src/tools/cli; the table there (command.hpp) says
// which, in `--help` order. This file only sets the process up, parses the
// command line and reports errors.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <vector>

#include "core/threads.hpp"
#include "core/error.hpp"
#include "tools/cli/command.hpp"
#include "tools/cli/common.hpp"

int main(int argc, char** argv) {
  using namespace udaci;
  // LibTorch's OpenMP threads spin after each parallel region and then fight
  // OpenBLAS's own threads for the cores: measured here (2 cores), prefill
  // runs 3.4x faster with passive waiting and decode is unchanged. libgomp
  // reads OMP_WAIT_POLICY once, when it loads, so the CLI sets it and starts
  // itself again; an explicit setting by the user is kept (docs/BENCHMARKS.md).
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: run on as we are
  }
  CLI::App app{"udaci: news headlines with Llama-architecture models"};
  app.require_subcommand(1);
  cli::GlobalOptions global;
  global.threads = cli::default_threads();
  global.argv0 = argv[0];
  CLI::Option* threads_opt =
      app.add_option("--threads", global.threads,
                     "threads of udaci's CPU kernels (default: a config file's \"threads\", else all cores, "
                     "which launch shares among its ranks)")
          ->check(CLI::Range(1, 1024));

  // One subcommand per row of the table, its run bound to its options.
  struct Bound {
    const cli::Command* command;
    CLI::App* sub;
    cli::CommandRun run;
  };
  std::vector<Bound> bound;
  for (const cli::Command& c : cli::commands()) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    bound.push_back({&c, sub, c.setup(*sub)});
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  global.threads_given = threads_opt->count() > 0;
  try {
    for (const Bound& b : bound) {
      if (!*b.sub) continue;  // not the one given (require_subcommand(1): exactly one is)
      if (b.command->sets_threads) set_threads(global.threads);
      return b.run(global);
    }
  } catch (const udaci::Error& e) {
    std::fprintf(stderr, "udaci: error (%s): %s\n", status_name(e.status()), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "udaci: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
