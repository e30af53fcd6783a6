// `udaci serve`: the HTTP service (issue #24, docs/server.md). One engine
// from the config file / recipe / flags (as every command builds it); every
// request joins its continuous batch. SIGTERM or SIGINT drains: requests in
// flight finish, new ones get 503, then the process exits 0.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <pthread.h>
#include <thread>

#include "core/error.hpp"
#include "tools/cli/common.hpp"
#ifdef UDACI_WITH_SERVER
#include "engine/headline_engine.hpp"
#include "server/http_server.hpp"
#include "server/service.hpp"
#endif

namespace udaci::cli {

namespace {

struct ServeArgs {
  EngineFlags engine;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key_file;
  int64_t max_queue = 64;
  double timeout_s = 120;
  size_t max_body_bytes = 4 * 1024 * 1024;
  int64_t max_articles = 64;
  int max_connections = 256;
  std::string access_log;
  std::string model_id;
};

#ifdef UDACI_WITH_SERVER
std::vector<std::string> read_api_keys(const std::string& path) {
  std::ifstream in(path);
  UDACI_CHECK_S(Status::kNotFound, in.good(), "--api-key-file: cannot read '{}'", path);
  std::vector<std::string> keys;
  std::string line;
  while (std::getline(in, line)) {
    const size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    const size_t e = line.find_last_not_of(" \t\r");
    keys.push_back(line.substr(b, e - b + 1));
  }
  UDACI_CHECK(!keys.empty(), "--api-key-file: '{}' holds no key (one per line; '#' starts a comment)", path);
  return keys;
}

bool loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}
#endif

int cmd_serve(const ServeArgs& a, const GlobalOptions& global) {
#ifndef UDACI_WITH_SERVER
  (void)a;
  (void)global;
  fail(Status::kUnsupported, "this build of udaci has no HTTP server: install libboost-dev and rebuild");
#else
  using namespace udaci::server;
  UDACI_CHECK(a.port >= 0 && a.port <= 65535, "--port {} is not a TCP port", a.port);
  UDACI_CHECK(a.max_queue >= 1, "--max-queue must be at least 1");
  UDACI_CHECK(a.timeout_s > 0, "--timeout-s must be positive");
  UDACI_CHECK(a.max_articles >= 1, "--max-articles must be at least 1");
  ServiceOptions so;
  if (!a.api_key_file.empty()) so.api_keys = read_api_keys(a.api_key_file);
  if (so.api_keys.empty() && !loopback(a.host)) {
    std::fprintf(stderr,
                 "udaci serve: WARNING: listening on %s without API keys: anyone who reaches this port can use "
                 "the model (give --api-key-file)\n",
                 a.host.c_str());
  }
  std::FILE* log = stderr;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> log_file(nullptr, &std::fclose);
  if (!a.access_log.empty() && a.access_log != "-") {
    log_file.reset(std::fopen(a.access_log.c_str(), "a"));
    UDACI_CHECK_S(Status::kNotFound, log_file != nullptr, "--access-log: cannot open '{}'", a.access_log);
    log = log_file.get();
  }
  so.access_log = log;
  so.max_queue = a.max_queue;
  so.timeout_s = a.timeout_s;
  so.max_articles = a.max_articles;
  so.model_id = a.model_id;

  // SIGTERM / SIGINT are taken by sigwait below: blocked before any thread
  // starts, so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const EngineConfig ec = engine_config_from(a.engine, global);
  HeadlineEngine engine(ec);
  if (!engine.leader()) {  // another rank of a parallel plan: it runs rank 0's forward passes
    pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);
    engine.serve();
    return 0;
  }
  Service service(engine, so);
  HttpServerOptions ho;
  ho.host = a.host;
  ho.port = a.port;
  ho.max_body_bytes = a.max_body_bytes;
  ho.max_connections = a.max_connections;
  HttpServer http(ho, [&service](HttpExchange& ex) { service.handle(ex); },
                  [](int status, const std::string& message) { return Service::error_json(status, message); });
  http.start();
  std::printf("udaci serve: listening on http://%s:%d (model %s, recipe %s)\n", a.host.c_str(), http.port(),
              engine.model_path().c_str(), engine.recipe().c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "udaci serve: %s: draining (%lld requests in flight)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
               static_cast<long long>(service.in_flight()));
  service.drain();
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::microseconds(static_cast<int64_t>(a.timeout_s * 1e6));
  while (service.in_flight() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  http.stop_accepting();
  http.wait_connections(2);
  http.shutdown();
  std::fprintf(stderr, "udaci serve: stopped\n");
  return 0;
#endif
}

}  // namespace

CommandRun setup_serve(CLI::App& sub) {
  auto a = std::make_shared<ServeArgs>();
  add_engine_flags(sub, a->engine, true);
  sub.add_option("--host", a->host, "address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)");
  sub.add_option("--port", a->port, "TCP port (default 8080; 0: any free port, printed at start)");
  sub.add_option("--api-key-file", a->api_key_file,
                 "file of API keys, one per line: requests must send 'Authorization: Bearer <key>'");
  sub.add_option("--max-queue", a->max_queue,
                 "generation requests in the engine at once (running or waiting); more get 429 (default 64)");
  sub.add_option("--timeout-s", a->timeout_s, "per-request timeout in seconds (default 120)");
  sub.add_option("--max-body-bytes", a->max_body_bytes, "largest request body (default 4 MiB); larger: 413");
  sub.add_option("--max-articles", a->max_articles, "articles per /v1/headlines request (default 64); more: 413");
  sub.add_option("--max-connections", a->max_connections, "open connections at once (default 256)");
  sub.add_option("--access-log", a->access_log, "JSON access-log lines go here (default: stderr)");
  sub.add_option("--model-id", a->model_id, "the model name /v1/models reports (default: the model file's name)");
  return [a](const GlobalOptions& global) { return cmd_serve(*a, global); };
}

}  // namespace udaci::cli
