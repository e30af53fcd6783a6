#include "server/http_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "core/error.hpp"

namespace udaci::server {

namespace http = boost::beast::http;

namespace {

using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 200));
}

Clock::time_point after(double seconds) {
  return Clock::now() + std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Writes all of `data` before `deadline`; false when the peer is gone or the
// deadline passes.
bool send_all(int fd, const char* data, size_t n, Clock::time_point deadline, const std::atomic<bool>& stop) {
  while (n > 0) {
    const ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      data += w;
      n -= static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
    if (Clock::now() >= deadline || stop.load()) return false;
    pollfd p{fd, POLLOUT, 0};
    ::poll(&p, 1, ms_left(deadline));
    if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return false;
  }
  return true;
}

class Exchange final : public HttpExchange {
 public:
  Exchange(int fd, const HttpRequest& req, bool keep_alive, double write_timeout_s, const std::atomic<bool>& stop)
      : fd_(fd), req_(req), keep_alive_(keep_alive), write_timeout_s_(write_timeout_s), stop_(stop) {}

  const HttpRequest& request() const override { return req_; }

  void respond(int status, const std::string& content_type, const std::string& body,
               const HeaderList& headers) override {
    if (status_ != 0) return;
    status_ = status;
    // 204 and 304 carry no body and no Content-Length (RFC 9110).
    const bool bodiless = status == 204 || status == 304;
    std::string head = status_line(status) + "Content-Type: " + content_type + "\r\n" +
                       (bodiless ? std::string() : "Content-Length: " + std::to_string(body.size()) + "\r\n") +
                       header_lines(headers) + "\r\n";
    ok_ = write(head) && (req_.method == "HEAD" || bodiless || write(body));
    if (ok_) bytes_ += static_cast<int64_t>(body.size());
  }

  bool begin_stream(int status, const std::string& content_type, const HeaderList& headers) override {
    if (status_ != 0) return false;
    status_ = status;
    streaming_ = true;
    ok_ = write(status_line(status) + "Content-Type: " + content_type +
                "\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n" +
                header_lines(headers) + "\r\n");
    return ok_;
  }

  bool write_chunk(const std::string& data) override {
    if (!streaming_ || !ok_ || ended_) return false;
    if (data.empty()) return true;  // an empty chunk would end the body
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    ok_ = write(std::string(size) + data + "\r\n");
    if (ok_) bytes_ += static_cast<int64_t>(data.size());
    return ok_;
  }

  void end_stream() override {
    if (!streaming_ || ended_) return;
    ended_ = true;
    if (ok_) ok_ = write("0\r\n\r\n");
  }

  bool client_gone() override {
    if (!ok_) return true;
    pollfd p{fd_, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLERR | POLLHUP | POLLNVAL | POLLRDHUP)) return true;
    char c;
    const ssize_t r = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    // 0: the peer closed; data: a pipelined request (still there).
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
  }

  int status() const override { return status_; }
  int64_t bytes_sent() const override { return bytes_; }
  bool ok() const { return ok_; }
  bool streaming() const { return streaming_; }
  bool ended() const { return ended_; }

 private:
  std::string status_line(int status) const {
    return "HTTP/1.1 " + std::to_string(status) + " " + status_text(status) +
           (keep_alive_ ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n");
  }
  static std::string header_lines(const HeaderList& headers) {
    std::string out;
    for (const auto& [k, v] : headers) {
      // A header value never carries a line break (no response splitting).
      std::string clean = v;
      clean.erase(std::remove_if(clean.begin(), clean.end(), [](char c) { return c == '\r' || c == '\n'; }),
                  clean.end());
      out += k + ": " + clean + "\r\n";
    }
    return out;
  }
  bool write(const std::string& s) { return send_all(fd_, s.data(), s.size(), after(write_timeout_s_), stop_); }

  int fd_;
  const HttpRequest& req_;
  bool keep_alive_;
  double write_timeout_s_;
  const std::atomic<bool>& stop_;
  int status_ = 0;
  bool ok_ = true;
  bool streaming_ = false;
  bool ended_ = false;
  int64_t bytes_ = 0;
};

}  // namespace

std::string HttpRequest::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

const char* status_text(int s) {
  switch (s) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

HttpServer::HttpServer(HttpServerOptions options, Handler handler, ErrorBodyFn error_body)
    : options_(std::move(options)), handler_(std::move(handler)), error_body_(std::move(error_body)) {}

HttpServer::~HttpServer() { shutdown(); }

void HttpServer::start() {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(options_.port);
  const int gai = ::getaddrinfo(options_.host.empty() ? nullptr : options_.host.c_str(), port.c_str(), &hints, &res);
  UDACI_CHECK(gai == 0 && res, "serve: cannot resolve host '{}': {}", options_.host, ::gai_strerror(gai));
  std::string why;
  for (addrinfo* a = res; a && listen_fd_ < 0; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
      listen_fd_ = fd;
    } else {
      why = std::strerror(errno);
      ::close(fd);
    }
  }
  ::freeaddrinfo(res);
  UDACI_CHECK(listen_fd_ >= 0, "serve: cannot listen on {}:{}: {}", options_.host, options_.port, why);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len);
  bound_port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

void HttpServer::accept_loop() {
  while (!stopping_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
    if (fd < 0) continue;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss.ss_family == AF_INET) {
      auto* in = reinterpret_cast<sockaddr_in*>(&ss);
      ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
      port = ntohs(in->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      auto* in = reinterpret_cast<sockaddr_in6*>(&ss);
      ::inet_ntop(AF_INET6, &in->sin6_addr, host, sizeof host);
      port = ntohs(in->sin6_port);
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connections_.load() >= options_.max_connections) {
      ++rejected_;
      const std::string body = error_body_(503, "too many connections; retry later");
      const std::string msg = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
                              "Content-Type: application/json\r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n" + body;
      send_all(fd, msg.data(), msg.size(), after(1), closing_);
      ::close(fd);
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++connections_;
      open_fds_.push_back(fd);
    }
    std::thread([this, fd, remote = std::string(host) + ":" + std::to_string(port)] {
      serve_connection(fd, remote);
      std::lock_guard<std::mutex> lock(mu_);
      open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd), open_fds_.end());
      ::close(fd);
      --connections_;
      cv_.notify_all();
    }).detach();
  }
}

void HttpServer::serve_connection(int fd, std::string remote) {
  boost::beast::flat_buffer buffer;
  bool first = true;
  // Sends a response of the layer's own and ends the connection.
  auto fail_with = [&](int status, const std::string& message) {
    const std::string body = error_body_(status, message);
    const std::string msg = "HTTP/1.1 " + std::to_string(status) + " " + status_text(status) +
                            "\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body;
    send_all(fd, msg.data(), msg.size(), after(options_.write_timeout_s), closing_);
  };
  while (!stopping_.load() || buffer.size() > 0) {
    http::request_parser<http::string_body> parser;
    parser.eager(true);
    parser.header_limit(static_cast<std::uint32_t>(options_.max_header_bytes));
    parser.body_limit(options_.max_body_bytes);
    // Waiting for the next request (keep-alive) ends quietly; once a byte of
    // it came, the whole request must arrive within request_timeout_s.
    Clock::time_point deadline = after(first ? options_.request_timeout_s : options_.idle_timeout_s);
    bool started = buffer.size() > 0;
    if (started) deadline = after(options_.request_timeout_s);
    boost::beast::error_code ec;
    bool closed = false;
    while (!parser.is_done()) {
      if (buffer.size() > 0) {
        const size_t used = parser.put(buffer.data(), ec);
        buffer.consume(used);
        if (ec == http::error::need_more) {
          ec = {};
        } else if (ec) {
          break;
        } else if (used > 0) {
          continue;
        }
        if (parser.is_done()) break;
      }
      if ((stopping_.load() && !started) || closing_.load()) {
        closed = true;
        break;
      }
      if (Clock::now() >= deadline) {
        if (started) fail_with(408, "the request did not arrive in time");
        closed = true;
        break;
      }
      pollfd p{fd, POLLIN, 0};
      const int pr = ::poll(&p, 1, ms_left(deadline));
      if (pr < 0 && errno != EINTR) {
        closed = true;
        break;
      }
      if (pr <= 0) continue;
      auto space = buffer.prepare(8192);
      const ssize_t r = ::recv(fd, space.data(), space.size(), 0);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        closed = true;  // the client went away (mid-request or between requests)
        break;
      }
      if (r > 0) {
        buffer.commit(static_cast<size_t>(r));
        if (!started) {
          started = true;
          deadline = after(options_.request_timeout_s);
        }
      }
    }
    if (closed) return;
    if (ec) {
      if (ec == http::error::body_limit) {
        fail_with(413, "the request body is larger than " + std::to_string(options_.max_body_bytes) + " bytes");
      } else if (ec == http::error::header_limit) {
        fail_with(431, "the request header is larger than " + std::to_string(options_.max_header_bytes) + " bytes");
      } else if (ec == http::error::bad_version) {
        fail_with(505, "only HTTP/1.0 and HTTP/1.1 are served");
      } else {
        fail_with(400, "malformed HTTP request: " + ec.message());
      }
      return;
    }
    first = false;
    const auto& msg = parser.get();
    HttpRequest req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    req.path = req.target.substr(0, req.target.find('?'));
    req.remote = remote;
    for (const auto& f : msg) {
      const std::string name = lower(std::string(f.name_string()));
      const std::string value(f.value());
      auto [it, fresh] = req.headers.emplace(name, value);
      if (!fresh) it->second += ", " + value;
    }
    req.body = msg.body();
    const bool keep_alive = msg.keep_alive() && !stopping_.load();
    Exchange ex(fd, req, keep_alive, options_.write_timeout_s, closing_);
    try {
      handler_(ex);
    } catch (const std::exception& e) {
      if (ex.status() == 0) ex.respond(500, "application/json", error_body_(500, e.what()), {});
    }
    if (ex.status() == 0) ex.respond(500, "application/json", error_body_(500, "no response"), {});
    if (ex.streaming() && !ex.ended()) ex.end_stream();
    if (!ex.ok() || !keep_alive) return;
  }
}

void HttpServer::stop_accepting() {
  stopping_.store(true);
  if (acceptor_.joinable()) acceptor_.join();
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
  }
}

bool HttpServer::wait_connections(double timeout_s) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6)),
                      [this] { return connections_.load() == 0; });
}

void HttpServer::shutdown() {
  stop_accepting();
  closing_.store(true);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  wait_connections(10);
}

}  // namespace udaci::server
