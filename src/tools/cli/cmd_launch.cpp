// `udaci launch`: runs a udaci command as the N ranks of one parallel job on
// this machine, as torchrun does: each rank a child running this executable
// with RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <optional>
#include <thread>

#include "core/error.hpp"
#include "parallel/communicator.hpp"
#include "tools/cli/common.hpp"

namespace udaci::cli {

namespace {

struct LaunchArgs {
  int nproc = 2;
  int port = 0;
  double grace_s = 10;
  std::vector<std::string> command;
};

// Starts the ranks as children running this executable, waits for all of
// them; when one fails the others get --grace seconds (they notice a dead
// peer within their plan's timeout) and are then stopped. Exit status: 0 when
// every rank succeeded, else the first failing rank's (128 + signal for a
// signal). threads: the global --threads when given, else 0.
int cmd_launch(const LaunchArgs& a, int threads) {
  const int port = a.port > 0 ? a.port : free_local_port();
  // The ranks share this machine's cores unless --threads says otherwise.
  const int per_rank = threads > 0 ? threads : std::max(1, default_threads() / a.nproc);
  std::vector<std::string> args{"/proc/self/exe", "--threads", std::to_string(per_rank)};
  args.insert(args.end(), a.command.begin(), a.command.end());
  std::vector<char*> argv;
  for (std::string& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::fflush(nullptr);
  std::vector<pid_t> pids;
  for (int r = 0; r < a.nproc; ++r) {
    const pid_t pid = fork();
    UDACI_CHECK_S(Status::kInternal, pid >= 0, "launch: fork failed");
    if (pid == 0) {
      setenv("RANK", std::to_string(r).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(a.nproc).c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "udaci launch: cannot start rank %d\n", r);
      _exit(127);
    }
    pids.push_back(pid);
  }
  int result = 0;
  size_t alive = pids.size();
  std::optional<std::chrono::steady_clock::time_point> deadline;
  while (alive > 0) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, deadline ? WNOHANG : 0);
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) break;
    if (pid == 0) {  // a rank failed: the others have until the deadline
      if (std::chrono::steady_clock::now() > *deadline) {
        for (pid_t p : pids)
          if (p > 0) kill(p, SIGTERM);
        deadline.reset();
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      continue;
    }
    auto it = std::find(pids.begin(), pids.end(), pid);
    if (it == pids.end()) continue;
    const int rank = static_cast<int>(it - pids.begin());
    *it = -1;
    --alive;
    const int code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    if (code != 0 && result == 0) {
      result = code;
      std::fprintf(stderr, "udaci launch: rank %d exited with status %d\n", rank, code);
      deadline = std::chrono::steady_clock::now() +
                 std::chrono::milliseconds(static_cast<int64_t>(a.grace_s * 1000));
    }
  }
  return result;
}

}  // namespace

CommandRun setup_launch(CLI::App& sub) {
  auto a = std::make_shared<LaunchArgs>();
  sub.add_option("--nproc", a->nproc, "processes")->check(CLI::Range(1, 64));
  sub.add_option("--master-port", a->port, "rendezvous port on 127.0.0.1 (default: a free one)")
      ->check(CLI::Range(0, 65535));
  sub.add_option("--grace", a->grace_s, "seconds the other ranks get to finish after one fails, before they are stopped")
      ->check(CLI::Range(0.0, 3600.0));
  sub.add_option("command", a->command, "the udaci command and its options (after --)")->required();
  return [a](const GlobalOptions& global) { return cmd_launch(*a, global.given_threads()); };
}

}  // namespace udaci::cli
