// What `udaci serve` answers (issue #24, docs/server.md): the routes over one
// HeadlineEngine, whose continuous batch every request joins; API keys,
// limits, a bounded number of requests in the engine, timeouts, cancellation
// when the client leaves, draining, metrics and one JSON access-log line per
// request. The HTTP layer is server/http_server.hpp.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/headline_engine.hpp"
#include "server/http_server.hpp"

namespace udaci::server {

struct ServiceOptions {
  std::vector<std::string> api_keys;  // empty: no authentication
  int64_t max_queue = 64;             // requests in the engine at once (running or waiting); more: 429
  double timeout_s = 120;             // per request, from arrival to its last token
  int64_t max_articles = 64;          // per /v1/headlines request; more: 413
  int64_t max_new_tokens_cap = 512;   // the most a request may ask for
  std::string model_id;               // the name /v1/models reports (default: the model file's stem)
  std::FILE* access_log = stderr;     // one JSON line per request (nullptr: none)
};

// Fixed-bucket histogram in seconds, for the Prometheus text format.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double seconds);
  std::string render(const std::string& name, const std::string& help) const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<int64_t> counts_;  // per bucket, not cumulative
  int64_t n_ = 0;
  double sum_ = 0;
};

class Service {
 public:
  Service(const HeadlineEngine& engine, ServiceOptions options);
  // The HTTP handler.
  void handle(HttpExchange& ex);
  // The error body every response of the server uses (OpenAI's shape).
  static std::string error_json(int status, const std::string& message, const std::string& code = "");
  // From now on /health answers 503 and new generation requests 503.
  void drain() { draining_.store(true); }
  bool draining() const { return draining_.load(); }
  // Generation requests in the engine now.
  int64_t in_flight() const { return in_flight_.load(); }
  std::string metrics_text() const;

 private:
  struct Ctx;
  void route(Ctx& c);
  bool authorized(const HttpRequest& r) const;
  void headlines(Ctx& c);
  void completions(Ctx& c, bool chat);
  void models(Ctx& c);
  void log_access(const Ctx& c, int status) const;
  void client_left(Ctx& c);  // counts a departure and marks the request as abandoned
  void count(const std::string& endpoint, int status);

  const HeadlineEngine& engine_;
  ServiceOptions opt_;
  // n_best of the engine's beam-search decoder (0 for other decoders): a
  // greedy request for n <= this many candidates gets the beam's n best.
  int64_t beam_n_best_ = 0;
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> disconnects_{0};
  std::atomic<int64_t> timeouts_{0};
  std::atomic<int64_t> generated_tokens_{0};
  mutable std::mutex count_mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_;  // (endpoint, status) -> count
  std::map<std::string, int64_t> rejected_;                  // reason -> count
  Histogram ttft_;
  Histogram latency_;
  int64_t created_ = 0;  // unix time the service started (the model's "created")
};

}  // namespace udaci::server
