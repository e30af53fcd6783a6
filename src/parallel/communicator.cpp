#include "parallel/communicator.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <mutex>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.hpp"

#ifdef UDACI_WITH_GLOO
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "parallel/c10d_communicator.hpp"
#endif

namespace udaci {

namespace {

// The integer in variable `name`, or `fallback` when it is unset or empty.
int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  UDACI_CHECK_S(Status::kDistributed, end != v && *end == '\0' && x >= lo && x <= hi,
                "environment variable {}=\"{}\" must be an integer in [{}, {}]", name, v, lo, hi);
  return static_cast<int>(x);
}

}  // namespace

DistEnv dist_env_from_environment() {
  DistEnv e;
  e.world_size = env_int("WORLD_SIZE", 1, 1, 1 << 16);
  const bool has_rank = std::getenv("RANK") != nullptr && *std::getenv("RANK") != '\0';
  UDACI_CHECK_S(Status::kDistributed, e.world_size == 1 || has_rank,
                "WORLD_SIZE={} but RANK is not set: start every process with its RANK (as torchrun does)",
                e.world_size);
  e.rank = env_int("RANK", 0, 0, 1 << 16);
  UDACI_CHECK_S(Status::kDistributed, e.rank < e.world_size,
                "RANK={} is outside [0, WORLD_SIZE={}): the ranks of one job must be 0 .. WORLD_SIZE-1",
                e.rank, e.world_size);
  e.local_rank = env_int("LOCAL_RANK", e.rank, 0, 1 << 16);
  if (const char* a = std::getenv("MASTER_ADDR"); a != nullptr && *a != '\0') e.master_addr = a;
  const bool has_port = std::getenv("MASTER_PORT") != nullptr && *std::getenv("MASTER_PORT") != '\0';
  UDACI_CHECK_S(Status::kDistributed, e.world_size == 1 || has_port,
                "WORLD_SIZE={} but MASTER_PORT is not set: every rank needs MASTER_ADDR and MASTER_PORT "
                "of rank 0's rendezvous store",
                e.world_size);
  e.master_port = env_int("MASTER_PORT", 29500, 1, 65535);
  return e;
}

int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  UDACI_CHECK_S(Status::kDistributed, fd >= 0, "cannot open a socket to find a free port");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  UDACI_CHECK_S(Status::kDistributed, ok, "cannot find a free port on 127.0.0.1");
  return ntohs(a.sin_port);
}

#ifdef UDACI_WITH_GLOO

bool distributed_available() { return true; }

namespace {

class GlooCommunicator final : public detail::C10dCommunicator<c10d::ProcessGroupGloo> {
 public:
  GlooCommunicator(const DistEnv& env, std::chrono::milliseconds timeout) : C10dCommunicator(env, timeout, "Gloo") {
    try {
      c10d::TCPStoreOptions so;
      so.port = static_cast<uint16_t>(env.master_port);
      // Under torchrun the agent already hosts a store on MASTER_PORT and
      // tells its workers so: then every rank is a client of it.
      const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
      const bool agent_store = agent != nullptr && std::string(agent) == "True";
      so.isServer = env.rank == 0 && !agent_store;
      so.numWorkers = static_cast<size_t>(env.world_size);
      so.waitWorkers = true;
      so.timeout = timeout;
      auto store = c10::make_intrusive<c10d::PrefixStore>(
          "udaci/", c10::make_intrusive<c10d::TCPStore>(env.master_addr, so));
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(env.master_addr));
      pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size, opts);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail(Status::kDistributed,
           "rank {} of {}: could not join the process group at {}:{} within {} s: {}", env.rank,
           env.world_size, env.master_addr, env.master_port, timeout.count() / 1000.0, e.what());
    }
  }
};

}  // namespace

std::shared_ptr<Communicator> make_gloo_communicator(const DistEnv& env, std::chrono::milliseconds timeout) {
  // A rank that dies leaves its peers' sockets broken: the next write there
  // must fail (and the plan report kDistributed), not raise SIGPIPE, whose
  // default action would kill this process. Only when nobody handles it.
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction old {};
    if (sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) std::signal(SIGPIPE, SIG_IGN);
  });
  return std::make_shared<GlooCommunicator>(env, timeout);
}

#else

bool distributed_available() { return false; }

std::shared_ptr<Communicator> make_gloo_communicator(const DistEnv& env, std::chrono::milliseconds) {
  fail(Status::kUnsupported,
       "rank {} of {}: this build of udaci has no c10d/Gloo (LibTorch without distributed support)",
       env.rank, env.world_size);
}

#endif

}  // namespace udaci
