// The HTTP/1.1 layer of `udaci serve` (issue #24, docs/server.md): sockets,
// deadlines and framing; what a request means is the handler's business
// (server/service.hpp).
//
// Requests are parsed by Boost.Beast's parser (header and body limits,
// chunked request bodies, every framing rule), fed from plain POSIX sockets
// that this file reads and writes with poll() deadlines: Asio's synchronous
// operations have no timeouts, and with our own socket a handler can ask,
// while its headline is being generated, whether the client is still there
// (client_gone), so that a request whose client left is cancelled and its
// batch slot freed. One thread per connection, at most max_connections (one
// more is answered 503 and closed); keep-alive between requests.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace udaci::server {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;   // as sent, e.g. "POST"
  std::string target;   // as sent, e.g. "/v1/models?x=1"
  std::string path;     // target up to '?'
  std::map<std::string, std::string> headers;  // names lower-cased; repeated ones joined with ", "
  std::string body;
  std::string remote;   // "address:port" of the peer
  // The header's value, or "" when absent (name in lower case).
  std::string header(const std::string& name) const;
};

// One request and its response. A handler calls respond() once, or
// begin_stream(), write_chunk()s and end_stream(); a handler that does
// neither gets a 500.
class HttpExchange {
 public:
  virtual ~HttpExchange() = default;
  virtual const HttpRequest& request() const = 0;
  // A whole response with Content-Length.
  virtual void respond(int status, const std::string& content_type, const std::string& body,
                       const HeaderList& headers = {}) = 0;
  // A chunked response: returns false (and every later write does) once the
  // client is gone or stops reading for the write timeout.
  virtual bool begin_stream(int status, const std::string& content_type, const HeaderList& headers = {}) = 0;
  virtual bool write_chunk(const std::string& data) = 0;
  virtual void end_stream() = 0;
  // True when the peer closed or reset the connection (checked now, without
  // blocking). Meant to be polled while a response is being computed.
  virtual bool client_gone() = 0;
  virtual int status() const = 0;          // the status sent (0 before any)
  virtual int64_t bytes_sent() const = 0;  // body bytes written
};

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see HttpServer::port)
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 4 * 1024 * 1024;
  int max_connections = 256;
  double request_timeout_s = 30;   // from a request's first byte to its end
  double idle_timeout_s = 60;      // keep-alive wait for the next request
  double write_timeout_s = 30;     // a client that stops reading a response
};

// What the layer itself answers (bad framing, limits, timeouts): a status
// and a message, written by the `error_body` hook as the handler's errors are.
using ErrorBodyFn = std::function<std::string(int status, const std::string& message)>;

class HttpServer {
 public:
  using Handler = std::function<void(HttpExchange&)>;
  HttpServer(HttpServerOptions options, Handler handler, ErrorBodyFn error_body);
  ~HttpServer();  // shutdown()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens (Error(kInvalidArgument) naming host:port when it
  // cannot), then accepts on a thread of its own.
  void start();
  int port() const { return bound_port_; }
  // No new connections; connections finish the request they are in and close.
  void stop_accepting();
  // Waits until every connection thread has ended or `timeout_s` passed;
  // true when none is left.
  bool wait_connections(double timeout_s);
  // stop_accepting(), then closes every connection (their pending reads and
  // writes fail) and waits for the threads.
  void shutdown();
  int connections() const { return connections_.load(); }
  int64_t rejected_connections() const { return rejected_.load(); }

 private:
  void accept_loop();
  void serve_connection(int fd, std::string remote);

  HttpServerOptions options_;
  Handler handler_;
  ErrorBodyFn error_body_;
  int listen_fd_ = -1;
  int bound_port_ = 0;
  std::atomic<bool> stopping_{false};  // no new connections or requests
  std::atomic<bool> closing_{false};   // abort reads and writes (shutdown)
  std::atomic<int> connections_{0};
  std::atomic<int64_t> rejected_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> open_fds_;  // connections, for shutdown()
};

// The reason phrase of a status code ("Not Found").
const char* status_text(int status);

}  // namespace udaci::server
