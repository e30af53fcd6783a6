#include "server/service.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <random>
#include <thread>

#include "core/error.hpp"
#include "core/utf8.hpp"
#include "decode/beam_search.hpp"
#include "server/editor_page.hpp"
#include "text/chat_template.hpp"

namespace udaci::server {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

std::string random_hex(size_t n) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  static const char* digits = "0123456789abcdef";
  std::string s(n, '0');
  for (char& ch : s) ch = digits[rng() & 15];
  return s;
}

uint64_t random_seed() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return rng();
}

// Constant-time equality of two byte strings: every byte of the longer one
// is read whatever the content, so the time says nothing about where they
// differ (it may say the length).
bool same_secret(const std::string& a, const std::string& b) {
  const size_t n = std::max(a.size(), b.size());
  unsigned diff = static_cast<unsigned>(a.size() ^ b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

[[noreturn]] void bad(const std::string& message) { fail(Status::kInvalidArgument, "{}", message); }

void check_keys(const json& j, const std::vector<std::string>& known, const std::string& where) {
  if (!j.is_object()) bad(where + " must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) == known.end()) {
      std::string list;
      for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
      bad("unknown field '" + where + "." + it.key() + "' (known: " + list + ")");
    }
  }
}

double get_number(const json& j, const char* key, double def, double lo, double hi) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_number()) bad(std::string("'") + key + "' must be a number");
  const double v = j[key].get<double>();
  if (!std::isfinite(v) || v < lo || v > hi)
    bad(std::string("'") + key + "' must be between " + json(lo).dump() + " and " + json(hi).dump());
  return v;
}

int64_t get_int(const json& j, const char* key, int64_t def, int64_t lo, int64_t hi) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_number_integer() && !j[key].is_number_unsigned()) bad(std::string("'") + key + "' must be an integer");
  const int64_t v = j[key].is_number_unsigned() && j[key].get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)
                        ? INT64_MAX
                        : j[key].get<int64_t>();
  if (v < lo || v > hi) bad(std::string("'") + key + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return v;
}

uint64_t get_seed(const json& j) {
  if (!j.contains("seed") || j["seed"].is_null()) return random_seed();
  if (j["seed"].is_number_unsigned()) return j["seed"].get<uint64_t>();
  if (j["seed"].is_number_integer()) return static_cast<uint64_t>(j["seed"].get<int64_t>());
  bad("'seed' must be an integer");
}

bool get_bool(const json& j, const char* key, bool def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_boolean()) bad(std::string("'") + key + "' must be true or false");
  return j[key].get<bool>();
}

std::string get_string(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || !j[key].is_string()) bad("'" + where + "' must be a string");
  return j[key].get<std::string>();
}

json parse_body(const std::string& body) {
  if (body.empty()) bad("the request body is empty; a JSON object was expected");
  try {
    return json::parse(body, nullptr, true, /*ignore_comments=*/false);
  } catch (const json::parse_error& e) {
    bad(std::string("the request body is not valid JSON (") + e.what() + ")");
  }
}

int http_status_of(Status s) {
  switch (s) {
    case Status::kInvalidArgument:
    case Status::kBufferTooSmall: return 400;
    case Status::kNotFound: return 404;
    case Status::kUnsupported: return 400;
    case Status::kOutOfMemory: return 503;
    case Status::kCancelled: return 503;
    default: return 500;
  }
}

const char* finish_name(FinishReason f, bool stopped_by_string) {
  if (stopped_by_string) return "stop";
  switch (f) {
    case FinishReason::kEos:
    case FinishReason::kStopped: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kRepetition: return "repetition";
  }
  return "length";
}

std::string sse(const json& j) { return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n"; }

}  // namespace

// ---------------------------------------------------------------------------

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double s) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t i = 0;
  while (i < bounds_.size() && s > bounds_[i]) ++i;
  ++counts_[i];
  ++n_;
  sum_ += s;
}

std::string Histogram::render(const std::string& name, const std::string& help) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out = "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  int64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += name + "_bucket{le=\"" + json(bounds_[i]).dump() + "\"} " + std::to_string(cum) + "\n";
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(n_) + "\n";
  out += name + "_sum " + json(sum_).dump() + "\n" + name + "_count " + std::to_string(n_) + "\n";
  return out;
}

struct Service::Ctx {
  Ctx(HttpExchange& e, const HttpRequest& r, std::string i) : ex(e), req(r), id(std::move(i)) {}
  HttpExchange& ex;
  const HttpRequest& req;
  std::string id;
  Clock::time_point t0 = Clock::now();
  std::string endpoint;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  std::string note;
  bool gone = false;  // the client left before an answer was complete

  HeaderList headers(HeaderList extra = {}) const {
    extra.emplace_back("X-Request-Id", id);
    return extra;
  }
  void json_reply(int status, const json& j, HeaderList extra = {}) {
    ex.respond(status, "application/json", j.dump(-1, ' ', false, json::error_handler_t::replace), headers(extra));
  }
  void error(int status, const std::string& message, const std::string& code = "", HeaderList extra = {}) {
    note = message;
    ex.respond(status, "application/json", Service::error_json(status, message, code), headers(extra));
  }
};

Service::Service(const HeadlineEngine& engine, ServiceOptions options)
    : engine_(engine),
      opt_(std::move(options)),
      ttft_({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}),
      latency_({0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}),
      created_(static_cast<int64_t>(std::time(nullptr))) {
  if (opt_.model_id.empty()) {
    std::string p = engine_.model_path();
    while (!p.empty() && p.back() == '/') p.pop_back();
    const size_t slash = p.find_last_of('/');
    opt_.model_id = slash == std::string::npos ? p : p.substr(slash + 1);
    if (opt_.model_id.empty()) opt_.model_id = "udaci";
  }
  const EngineConfig& cfg = engine_.config();
  if (cfg.decoder == "beam") beam_n_best_ = BeamOptions::from(cfg.decoder_options).n_best;
}

std::string Service::error_json(int status, const std::string& message, const std::string& code) {
  const char* type = status == 401   ? "authentication_error"
                     : status == 429 ? "rate_limit_error"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  json e = {{"message", message}, {"type", type}, {"param", nullptr},
            {"code", code.empty() ? json(nullptr) : json(code)}};
  return json({{"error", e}}).dump(-1, ' ', false, json::error_handler_t::replace);
}

bool Service::authorized(const HttpRequest& r) const {
  if (opt_.api_keys.empty()) return true;
  const std::string h = r.header("authorization");
  const std::string prefix = "bearer ";
  if (h.size() <= prefix.size() || lower(h.substr(0, prefix.size())) != prefix) return false;
  const std::string key = h.substr(prefix.size());
  bool ok = false;
  for (const std::string& k : opt_.api_keys) ok = same_secret(key, k) || ok;  // every key compared
  return ok;
}

void Service::count(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lock(count_mu_);
  ++requests_[{endpoint, status}];
  if (status == 401) ++rejected_["unauthorized"];
  if (status == 413) ++rejected_["too_large"];
  if (status == 429) ++rejected_["queue_full"];
  if (status == 503 && draining_.load()) ++rejected_["draining"];
  if (status == 400) ++rejected_["bad_request"];
}

void Service::handle(HttpExchange& ex) {
  const HttpRequest& req = ex.request();
  Ctx c{ex, req, req.header("x-request-id")};
  const bool id_ok = !c.id.empty() && c.id.size() <= 64 &&
                     std::all_of(c.id.begin(), c.id.end(), [](char ch) {
                       return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.';
                     });
  if (!id_ok) c.id = random_hex(16);
  c.endpoint = req.path;
  try {
    route(c);
  } catch (const Error& e) {
    if (ex.status() == 0) c.error(http_status_of(e.status()), e.what(), status_name(e.status()));
  } catch (const json::exception& e) {
    if (ex.status() == 0) c.error(400, std::string("bad JSON value: ") + e.what());
  } catch (const std::exception& e) {
    if (ex.status() == 0) c.error(500, e.what());
  }
  // A client that left before its answer began gets none; it is counted and
  // logged as 499 (nginx's "client closed request"), not as a server error.
  if (ex.status() == 0 && !c.gone) c.error(500, "no response");
  const int status = ex.status() == 0 ? 499 : ex.status();
  count(c.endpoint, status);
  if (c.endpoint.rfind("/v1/", 0) == 0 && status == 200 && !c.gone) latency_.observe(seconds_since(c.t0));
  log_access(c, status);
}

void Service::client_left(Ctx& c) {
  ++disconnects_;
  c.note = "client disconnected";
  c.gone = true;
}

void Service::route(Ctx& c) {
  const std::string& m = c.req.method;
  const std::string& p = c.req.path;
  auto method_is = [&](const char* want) {
    if (m == want || (std::string(want) == "GET" && m == "HEAD")) return true;
    c.error(405, "use " + std::string(want) + " for " + p, "method_not_allowed", {{"Allow", want}});
    return false;
  };
  if (p == "/health") {
    if (!method_is("GET")) return;
    if (draining_.load()) return c.json_reply(503, {{"status", "draining"}});
    return c.json_reply(200, {{"status", "ok"}, {"model", opt_.model_id}});
  }
  if (p == "/metrics") {
    if (!method_is("GET")) return;
    c.ex.respond(200, "text/plain; version=0.0.4; charset=utf-8", metrics_text(), c.headers());
    return;
  }
  if (p == "/" || p == "/index.html") {
    if (!method_is("GET")) return;
    c.ex.respond(200, "text/html; charset=utf-8", editor_page_html(),
                 c.headers({{"Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; "
                                                        "script-src 'unsafe-inline'; connect-src 'self'"}}));
    return;
  }
  if (p == "/favicon.ico") {  // browsers ask for it; nothing to show
    if (!method_is("GET")) return;
    c.ex.respond(204, "image/x-icon", "", c.headers());
    return;
  }
  const bool api = p == "/v1/models" || p == "/v1/headlines" || p == "/v1/chat/completions" || p == "/v1/completions";
  if (!api) {
    c.endpoint = "other";
    return c.error(404, "no route " + p + " (see docs/server.md)", "not_found");
  }
  if (!authorized(c.req)) {
    return c.error(401, "a valid API key is needed: send 'Authorization: Bearer <key>'", "invalid_api_key",
                   {{"WWW-Authenticate", "Bearer"}});
  }
  if (p == "/v1/models") {
    if (!method_is("GET")) return;
    return models(c);
  }
  if (!method_is("POST")) return;
  if (draining_.load()) return c.error(503, "the server is shutting down", "draining", {{"Retry-After", "1"}});
  if (p == "/v1/headlines") return headlines(c);
  return completions(c, p == "/v1/chat/completions");
}

void Service::models(Ctx& c) {
  json m = {{"id", opt_.model_id}, {"object", "model"}, {"created", created_}, {"owned_by", "udaci"},
            {"recipe", engine_.recipe()}};
  c.json_reply(200, {{"object", "list"}, {"data", json::array({m})}});
}

namespace {

// One request's place in the engine, released when it goes out of scope.
class Admission {
 public:
  Admission(std::atomic<int64_t>& counter, int64_t cap) : counter_(counter) {
    ok_ = counter_.fetch_add(1) < cap;
    if (!ok_) counter_.fetch_sub(1);
  }
  ~Admission() {
    if (ok_) counter_.fetch_sub(1);
  }
  bool ok() const { return ok_; }

 private:
  std::atomic<int64_t>& counter_;
  bool ok_ = false;
};

struct Article {
  std::string id;
  std::string summary;
  HeadlineOptions options;
  int64_t n = 1;
  bool beam = false;  // the n candidates are one beam search's n best
  int64_t prompt_tokens = 0;
};

}  // namespace

void Service::headlines(Ctx& c) {
  const std::string ctype = lower(c.req.header("content-type"));
  const bool jsonl = ctype.find("ndjson") != std::string::npos || ctype.find("jsonl") != std::string::npos ||
                     ctype.find("json-lines") != std::string::npos;
  const std::vector<std::string> opt_keys = {"max_new_tokens", "temperature", "top_p", "seed", "n",
                                             "repetition_stop"};
  auto read_options = [&](const json& j, Article& a) {
    a.options.max_new_tokens = get_int(j, "max_new_tokens", 32, 1, opt_.max_new_tokens_cap);
    a.options.sampling.temperature = static_cast<float>(get_number(j, "temperature", 0.0, 0.0, 5.0));
    a.options.sampling.top_p = static_cast<float>(get_number(j, "top_p", 1.0, 0.0, 1.0));
    a.options.sampling.seed = get_seed(j);  // random when not given (greedy ignores it)
    a.n = get_int(j, "n", 1, 1, 16);
    // Absent: the engine's (its config's generation.repetition_stop).
    a.options.repetition_stop = get_int(j, "repetition_stop", HeadlineOptions::kEngineDefault, 0,
                                        HeadlineOptions::kMaxRepetitionStop);
    a.beam = false;
    if (a.n > 1 && a.options.sampling.temperature <= 0) {
      if (a.n > beam_n_best_) {
        bad(beam_n_best_ > 0
                ? "'n' is " + std::to_string(a.n) + " but the server's beam search keeps " +
                      std::to_string(beam_n_best_) + " best: ask for fewer, or sampled candidates with a "
                      "'temperature' > 0"
                : std::string("'n' > 1 asks for candidates: give a 'temperature' > 0 for samples, or run the "
                              "server with a beam recipe keeping n best (e.g. --decoder beam "
                              "--decoder-opt width=4 --decoder-opt n_best=4)"));
      }
      a.beam = true;
    }
    a.options.sampling.validate();
  };
  auto read_article = [&](const json& j, const std::string& where, const json* defaults) {
    std::vector<std::string> known = {"id", "summary"};
    if (jsonl) known.insert(known.end(), opt_keys.begin(), opt_keys.end());
    check_keys(j, known, where);
    Article a;
    if (defaults) read_options(*defaults, a);
    if (jsonl) read_options(j, a);
    if (j.contains("id")) {
      if (j["id"].is_string()) a.id = j["id"].get<std::string>();
      else if (j["id"].is_number_integer()) a.id = std::to_string(j["id"].get<int64_t>());
      else bad("'" + where + ".id' must be a string or an integer");
    }
    a.summary = get_string(j, "summary", where + ".summary");
    return a;
  };
  std::vector<Article> arts;
  bool sse_stream = false;  // "stream": true: text pieces as server-sent events
  if (jsonl) {
    size_t start = 0, line = 0;
    while (start <= c.req.body.size()) {
      size_t end = c.req.body.find('\n', start);
      if (end == std::string::npos) end = c.req.body.size();
      std::string text = c.req.body.substr(start, end - start);
      start = end + 1;
      ++line;
      if (!text.empty() && text.back() == '\r') text.pop_back();
      if (text.find_first_not_of(" \t") == std::string::npos) continue;
      json j;
      try {
        j = json::parse(text);
      } catch (const json::parse_error& e) {
        bad("line " + std::to_string(line) + " is not valid JSON (" + e.what() + ")");
      }
      arts.push_back(read_article(j, "line " + std::to_string(line), nullptr));
      if (static_cast<int64_t>(arts.size()) > opt_.max_articles) break;
    }
  } else {
    const json body = parse_body(c.req.body);
    std::vector<std::string> known = {"summary", "id", "articles", "stream"};
    known.insert(known.end(), opt_keys.begin(), opt_keys.end());
    check_keys(body, known, "body");
    sse_stream = get_bool(body, "stream", false);
    if (body.contains("summary") == body.contains("articles")) bad("give either 'summary' or 'articles'");
    if (body.contains("summary")) {
      json one = {{"summary", body["summary"]}};
      if (body.contains("id")) one["id"] = body["id"];
      arts.push_back(read_article(one, "body", &body));
    } else {
      if (!body["articles"].is_array()) bad("'articles' must be an array of {\"id\", \"summary\"}");
      if (static_cast<int64_t>(body["articles"].size()) > opt_.max_articles) {
        return c.error(413, "at most " + std::to_string(opt_.max_articles) + " articles per request",
                       "too_many_articles");
      }
      for (size_t i = 0; i < body["articles"].size(); ++i)
        arts.push_back(read_article(body["articles"][i], "articles[" + std::to_string(i) + "]", &body));
    }
  }
  if (arts.empty()) bad("no articles in the request");
  int64_t total = 0;
  for (const Article& a : arts) total += a.n;
  if (total > opt_.max_articles) {
    return c.error(413, "at most " + std::to_string(opt_.max_articles) + " articles (times n) per request",
                   "too_many_articles");
  }
  for (size_t i = 0; i < arts.size(); ++i) {
    try {
      arts[i].prompt_tokens = static_cast<int64_t>(engine_.prompt_ids(arts[i].summary).size());
    } catch (const Error& e) {
      bad("article " + std::to_string(i) + (arts[i].id.empty() ? "" : " ('" + arts[i].id + "')") + ": " + e.what());
    }
    c.prompt_tokens += arts[i].prompt_tokens;
  }
  Admission admit(in_flight_, opt_.max_queue);
  if (!admit.ok()) return c.error(429, "the server is busy; retry later", "queue_full", {{"Retry-After", "1"}});

  struct Job {
    Job(size_t a, int64_t k, PendingHeadlines p) : article(a), candidate(k), pending(std::move(p)) {}
    size_t article;
    int64_t candidate;
    PendingHeadlines pending;
    bool done = false;
    HeadlineResult result;
    std::string error;
  };
  std::vector<Job> jobs;
  // Streaming: the engine's thread only appends (job, piece) here; this
  // thread writes them out.
  struct Pieces {
    std::mutex mu;
    std::condition_variable cv;  // wakes this thread as soon as a piece arrives
    std::vector<std::pair<size_t, std::string>> items;
  };
  auto pieces = std::make_shared<Pieces>();
  for (size_t i = 0; i < arts.size(); ++i) {
    // Beam candidates come from one search; sampled ones from n requests.
    for (int64_t k = 0; k < (arts[i].beam ? 1 : arts[i].n); ++k) {
      HeadlineOptions o = arts[i].options;
      if (sse_stream) {
        const size_t job = jobs.size();
        o.on_text = [pieces, job](size_t, const std::string& piece) {
          {
            std::lock_guard<std::mutex> lock(pieces->mu);
            pieces->items.emplace_back(job, piece);
          }
          pieces->cv.notify_one();
          return true;
        };
      }
      o.sampling.seed += static_cast<uint64_t>(k);
      jobs.emplace_back(i, k, engine_.submit({arts[i].summary}, o));
    }
  }
  const auto deadline = c.t0 + std::chrono::microseconds(static_cast<int64_t>(opt_.timeout_s * 1e6));
  auto result_json = [&](const Job& j) {
    json r = {{"headline", j.result.headline},
              {"finish_reason", finish_name(j.result.finish, false)},
              {"prompt_tokens", j.result.prompt_ids.size()},
              {"completion_tokens", j.result.new_ids.size()},
              {"queue_ms", j.result.queue_ms},
              {"prefill_ms", j.result.prefill_ms},
              {"decode_ms", j.result.decode_ms},
              {"latency_ms", j.result.latency_ms},
              {"drafted_tokens", j.result.drafted},
              {"accepted_tokens", j.result.accepted}};
    if (!j.error.empty()) r = {{"error", json::parse(error_json(500, j.error))["error"]}};
    return r;
  };
  auto article_json = [&](size_t i) {
    json a = {{"id", arts[i].id}};
    json cands = json::array();
    for (const Job& j : jobs) {
      if (j.article != i) continue;
      if (arts[i].beam && j.error.empty() && !j.result.candidates.empty()) {
        // The beam's n best, best first, each with its score.
        for (size_t k = 0; k < j.result.candidates.size() && static_cast<int64_t>(k) < arts[i].n; ++k) {
          const HeadlineCandidate& hc = j.result.candidates[k];
          json r = result_json(j);
          r["headline"] = hc.headline;
          r["completion_tokens"] = hc.new_ids.size();
          r["finish_reason"] = finish_name(hc.finish, false);
          r["score"] = hc.score;
          cands.push_back(r);
        }
      } else {
        cands.push_back(result_json(j));
      }
    }
    if (arts[i].n == 1) {
      a.update(cands[0]);
    } else {
      a["headline"] = cands[0].value("headline", "");
      a["candidates"] = cands;
    }
    return a;
  };
  auto cancel_all = [&] {
    for (Job& j : jobs)
      if (!j.done) j.pending.cancel();
    for (Job& j : jobs) {
      if (j.done) continue;
      try {
        j.pending.get();
      } catch (...) {
      }
      j.done = true;
    }
  };
  if (jsonl && !c.ex.begin_stream(200, "application/x-ndjson", c.headers())) return cancel_all();
  if (sse_stream && !c.ex.begin_stream(200, "text/event-stream", c.headers())) return cancel_all();
  // Writes the text pieces that arrived; false once the client is gone.
  auto flush_pieces = [&] {
    std::vector<std::pair<size_t, std::string>> items;
    {
      std::lock_guard<std::mutex> lock(pieces->mu);
      items.swap(pieces->items);
    }
    for (const auto& [job, piece] : items) {
      const Job& j = jobs[job];
      json e = {{"id", arts[j.article].id}, {"candidate", j.candidate}, {"delta", piece}};
      if (!c.ex.write_chunk(sse(e))) return false;
    }
    return true;
  };
  std::vector<size_t> left(arts.size(), 0);
  for (const Job& j : jobs) ++left[j.article];
  size_t remaining = jobs.size();
  while (remaining > 0) {
    bool progressed = false;
    for (Job& j : jobs) {
      if (j.done || !j.pending.wait_for(std::chrono::milliseconds(0))) continue;
      try {
        j.result = j.pending.get().at(0);
        generated_tokens_ += static_cast<int64_t>(j.result.new_ids.size());
        c.completion_tokens += static_cast<int64_t>(j.result.new_ids.size());
        ttft_.observe((j.result.queue_ms + j.result.prefill_ms) / 1e3);
      } catch (const std::exception& e) {
        j.error = e.what();
      }
      j.done = true;
      --remaining;
      progressed = true;
      if (sse_stream) {
        json e = result_json(j);
        e["id"] = arts[j.article].id;
        e["candidate"] = j.candidate;
        e["done"] = true;
        if (!flush_pieces() || !c.ex.write_chunk(sse(e))) {
          client_left(c);
          return cancel_all();
        }
      }
      if (jsonl && --left[j.article] == 0) {
        if (!c.ex.write_chunk(article_json(j.article).dump(-1, ' ', false, json::error_handler_t::replace) + "\n")) {
          client_left(c);
          return cancel_all();
        }
      }
    }
    if (remaining == 0) break;
    if ((sse_stream && !flush_pieces()) || c.ex.client_gone()) {
      client_left(c);
      return cancel_all();
    }
    if (Clock::now() >= deadline) {
      ++timeouts_;
      cancel_all();
      if (jsonl || sse_stream) {
        c.note = "timeout";
        const std::string err = error_json(504, "the request ran past its timeout");
        c.ex.write_chunk(jsonl ? err + "\n" : "data: " + err + "\n\ndata: [DONE]\n\n");
        return;
      }
      return c.error(504, "the request ran past its timeout of " + json(opt_.timeout_s).dump() + " s", "timeout");
    }
    if (!progressed && sse_stream) {
      // Until a piece arrives (written at once) or 5 ms pass (to see ends).
      std::unique_lock<std::mutex> lock(pieces->mu);
      pieces->cv.wait_for(lock, std::chrono::milliseconds(5), [&] { return !pieces->items.empty(); });
    } else if (!progressed) {
      for (Job& j : jobs) {
        if (!j.done) {
          j.pending.wait_for(std::chrono::milliseconds(20));
          break;
        }
      }
    }
  }
  if (jsonl) return;
  if (sse_stream) {
    c.ex.write_chunk("data: [DONE]\n\n");
    return;
  }
  json results = json::array();
  for (size_t i = 0; i < arts.size(); ++i) results.push_back(article_json(i));
  c.json_reply(200, {{"object", "headlines"}, {"model", opt_.model_id}, {"results", results}});
}

void Service::completions(Ctx& c, bool chat) {
  const json body = parse_body(c.req.body);
  std::vector<std::string> known = {"model", "max_tokens", "temperature", "top_p", "seed", "stop", "stream",
                                    "stream_options", "n", "user", "frequency_penalty", "presence_penalty"};
  known.push_back(chat ? "messages" : "prompt");
  if (chat) known.push_back("max_completion_tokens");
  check_keys(body, known, "body");
  if (body.contains("model") && !body["model"].is_null()) {
    const std::string m = get_string(body, "model", "model");
    if (m != opt_.model_id)
      return c.error(404, "model '" + m + "' is not served here; this server serves '" + opt_.model_id + "'",
                     "model_not_found");
  }
  if (get_int(body, "n", 1, 1, 1) != 1) bad("'n' must be 1");
  if (get_number(body, "frequency_penalty", 0, 0, 0) != 0 || get_number(body, "presence_penalty", 0, 0, 0) != 0)
    bad("penalties are not supported");
  const bool stream = get_bool(body, "stream", false);
  bool include_usage = false;
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    check_keys(body["stream_options"], {"include_usage"}, "stream_options");
    include_usage = get_bool(body["stream_options"], "include_usage", false);
  }
  std::vector<std::string> stops;
  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& s = body["stop"];
    if (s.is_string()) {
      stops.push_back(s.get<std::string>());
    } else if (s.is_array() && s.size() <= 4) {
      for (const json& x : s) {
        if (!x.is_string()) bad("'stop' must be a string or an array of up to 4 strings");
        stops.push_back(x.get<std::string>());
      }
    } else {
      bad("'stop' must be a string or an array of up to 4 strings");
    }
    stops.erase(std::remove(stops.begin(), stops.end(), std::string()), stops.end());
  }
  GenerationOptions go;
  int64_t max_tokens = get_int(body, "max_tokens", chat ? 128 : 16, 1, opt_.max_new_tokens_cap);
  if (chat && body.contains("max_completion_tokens"))
    max_tokens = get_int(body, "max_completion_tokens", max_tokens, 1, opt_.max_new_tokens_cap);
  go.max_new_tokens = max_tokens;
  go.sampling.temperature = static_cast<float>(get_number(body, "temperature", 1.0, 0.0, 2.0));
  go.sampling.top_p = static_cast<float>(get_number(body, "top_p", 1.0, 0.0, 1.0));
  go.sampling.seed = get_seed(body);
  go.sampling.validate();
  go.eos_ids = engine_.eos_ids();

  // The prompt's token ids.
  const Tokenizer& tok = engine_.tokenizer();
  std::vector<int32_t> ids;
  if (chat) {
    if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
      bad("'messages' must be a non-empty array of {\"role\", \"content\"}");
    std::vector<ChatMessage> msgs;
    for (size_t i = 0; i < body["messages"].size(); ++i) {
      const json& m = body["messages"][i];
      const std::string where = "messages[" + std::to_string(i) + "]";
      check_keys(m, {"role", "content", "name"}, where);
      ChatMessage cm{get_string(m, "role", where + ".role"), ""};
      if (m.contains("content") && m["content"].is_array()) {  // [{"type": "text", "text": ...}]
        for (const json& part : m["content"]) {
          check_keys(part, {"type", "text"}, where + ".content[]");
          if (get_string(part, "type", where + ".content[].type") != "text") bad(where + ": only text content is served");
          cm.content += get_string(part, "text", where + ".content[].text");
        }
      } else {
        cm.content = get_string(m, "content", where + ".content");
      }
      if (!is_valid_utf8(cm.content)) bad(where + ".content is not valid UTF-8");
      msgs.push_back(std::move(cm));
    }
    std::string text;
    if (!tok.chat_template().empty()) {
      text = ChatTemplate(tok.chat_template()).render(msgs, engine_.prompt_builder().options().chat);
    } else {
      for (const ChatMessage& m : msgs) text += m.role + ": " + m.content + "\n";
      text += "assistant:";
    }
    ids = tok.encode(text, tok.chat_template().empty());
  } else {
    std::string prompt;
    if (body.contains("prompt") && body["prompt"].is_array() && body["prompt"].size() == 1 && body["prompt"][0].is_string())
      prompt = body["prompt"][0].get<std::string>();
    else
      prompt = get_string(body, "prompt", "prompt");
    if (!is_valid_utf8(prompt)) bad("'prompt' is not valid UTF-8");
    ids = tok.encode(prompt, true);
  }
  if (ids.empty()) bad("the prompt is empty");
  const int64_t cap = engine_.config().max_prompt_tokens;
  if (cap > 0 && static_cast<int64_t>(ids.size()) > cap) {
    return c.error(400, "the prompt has " + std::to_string(ids.size()) + " tokens; this server takes at most " +
                            std::to_string(cap), "context_length_exceeded");
  }
  c.prompt_tokens = static_cast<int64_t>(ids.size());
  Admission admit(in_flight_, opt_.max_queue);
  if (!admit.ok()) return c.error(429, "the server is busy; retry later", "queue_full", {{"Retry-After", "1"}});

  // Generation runs on a thread of its own (generate_ids blocks); its token
  // callback, on the engine's thread, only appends to `st`.
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<int32_t> tokens;
    bool done = false;
    GenerationResult result;
    std::exception_ptr error;
    std::atomic<bool> cancel{false};
  };
  auto st = std::make_shared<State>();
  std::vector<int64_t> prompt(ids.begin(), ids.end());
  std::thread worker([this, st, prompt, go] {
    try {
      auto r = engine_.generate_ids({prompt}, go, [st](size_t, int64_t t) {
        {
          std::lock_guard<std::mutex> lock(st->mu);
          st->tokens.push_back(static_cast<int32_t>(t));
        }
        st->cv.notify_one();
        return !st->cancel.load();
      });
      std::lock_guard<std::mutex> lock(st->mu);
      st->result = r.at(0);
    } catch (...) {
      std::lock_guard<std::mutex> lock(st->mu);
      st->error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(st->mu);
      st->done = true;
    }
    st->cv.notify_one();
  });
  struct Join {
    std::thread& t;
    State& s;
    ~Join() {
      s.cancel.store(true);
      if (t.joinable()) t.join();
    }
  } join{worker, *st};

  const std::string rid = (chat ? "chatcmpl-" : "cmpl-") + c.id;
  const int64_t created = static_cast<int64_t>(std::time(nullptr));
  auto chunk = [&](const json& delta_or_text, const json& finish) {
    json choice = {{"index", 0}, {"finish_reason", finish}};
    if (chat) choice["delta"] = delta_or_text;
    else {
      choice["text"] = delta_or_text;
      choice["logprobs"] = nullptr;
    }
    return json{{"id", rid}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", created},
                {"model", opt_.model_id}, {"choices", json::array({choice})}};
  };
  if (stream) {
    if (!c.ex.begin_stream(200, "text/event-stream", c.headers())) return;
    if (chat && !c.ex.write_chunk(sse(chunk({{"role", "assistant"}, {"content", ""}}, nullptr)))) return;
  }
  const auto deadline = c.t0 + std::chrono::microseconds(static_cast<int64_t>(opt_.timeout_s * 1e6));
  std::vector<int32_t> got;
  std::string text;   // the answer so far, cut at a stop string
  size_t sent = 0;    // bytes of `text` already streamed
  bool stopped = false, finished = false, first = true;
  std::exception_ptr error;
  GenerationResult result;
  size_t decoded = 0;  // tokens of `got` already decoded into `text`
  while (!finished) {
    {
      std::unique_lock<std::mutex> lock(st->mu);
      st->cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return st->done || st->tokens.size() > got.size(); });
      // Only the new tokens are copied out under the lock.
      got.insert(got.end(), st->tokens.begin() + static_cast<std::ptrdiff_t>(got.size()), st->tokens.end());
      finished = st->done;
      if (finished) {
        result = st->result;
        error = st->error;
      }
    }
    // The text is decoded again only when tokens arrived (or at the end,
    // where a held-back partial character is flushed).
    const bool grew = got.size() > decoded;
    decoded = got.size();
    if (!stopped && !got.empty() && (grew || finished)) {
      if (first) {
        ttft_.observe(seconds_since(c.t0));
        first = false;
      }
      const std::string full = tok.decode(got, /*skip_special=*/true);
      std::string clean;
      append_utf8_lossy(full, clean, /*final=*/finished);
      for (const std::string& s : stops) {
        const size_t at = clean.find(s);
        if (at != std::string::npos) {
          clean.resize(at);
          stopped = true;
        }
      }
      // Hold back a tail that could still grow into a stop string.
      size_t safe = clean.size();
      if (!stopped && !finished) {
        for (const std::string& s : stops)
          for (size_t k = std::min(s.size() - 1, clean.size()); k > 0; --k)
            if (clean.compare(clean.size() - k, k, s, 0, k) == 0) {
              safe = std::min(safe, clean.size() - k);
              break;
            }
      }
      text = clean;
      if (stopped) st->cancel.store(true);
      if (stream && safe > sent) {
        const std::string piece = text.substr(sent, safe - sent);
        sent = safe;
        if (!c.ex.write_chunk(sse(chunk(chat ? json{{"content", piece}} : json(piece), nullptr)))) {
          client_left(c);
          return;
        }
      }
    }
    if (finished) break;
    if (c.ex.client_gone()) {
      client_left(c);
      return;
    }
    if (Clock::now() >= deadline) {
      ++timeouts_;
      if (stream) {
        c.note = "timeout";
        c.ex.write_chunk(sse(json::parse(error_json(504, "the request ran past its timeout"))));
        c.ex.write_chunk("data: [DONE]\n\n");
        return;
      }
      return c.error(504, "the request ran past its timeout of " + json(opt_.timeout_s).dump() + " s", "timeout");
    }
  }
  if (error) {
    if (!stream) std::rethrow_exception(error);
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      c.note = e.what();
      c.ex.write_chunk(sse(json::parse(error_json(500, e.what()))));
      c.ex.write_chunk("data: [DONE]\n\n");
      return;
    }
  }
  c.completion_tokens = static_cast<int64_t>(result.tokens.size());
  generated_tokens_ += c.completion_tokens;
  const json usage = {{"prompt_tokens", c.prompt_tokens},
                      {"completion_tokens", c.completion_tokens},
                      {"total_tokens", c.prompt_tokens + c.completion_tokens}};
  const std::string finish = finish_name(result.finish, stopped);
  if (stream) {
    if (text.size() > sent) c.ex.write_chunk(sse(chunk(chat ? json{{"content", text.substr(sent)}} : json(text.substr(sent)), nullptr)));
    c.ex.write_chunk(sse(chunk(chat ? json::object() : json(""), finish)));
    if (include_usage) {
      json u = chunk(json::object(), nullptr);
      u["choices"] = json::array();
      u["usage"] = usage;
      c.ex.write_chunk(sse(u));
    }
    c.ex.write_chunk("data: [DONE]\n\n");
    return;
  }
  json choice = {{"index", 0}, {"finish_reason", finish}};
  if (chat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
    choice["logprobs"] = nullptr;
  }
  c.json_reply(200, {{"id", rid}, {"object", chat ? "chat.completion" : "text_completion"}, {"created", created},
                     {"model", opt_.model_id}, {"choices", json::array({choice})}, {"usage", usage}});
}

std::string Service::metrics_text() const {
  const SchedulerStats s = engine_.scheduler_stats();
  std::string out;
  auto gauge = [&](const std::string& name, const std::string& help, const std::string& type, double v) {
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " + json(v).dump() + "\n";
  };
  {
    std::lock_guard<std::mutex> lock(count_mu_);
    out += "# HELP udaci_requests_total HTTP requests by endpoint and status.\n# TYPE udaci_requests_total counter\n";
    for (const auto& [k, n] : requests_)
      out += "udaci_requests_total{endpoint=\"" + k.first + "\",status=\"" + std::to_string(k.second) + "\"} " +
             std::to_string(n) + "\n";
    out += "# HELP udaci_rejected_requests_total Requests refused, by reason.\n"
           "# TYPE udaci_rejected_requests_total counter\n";
    for (const char* r : {"unauthorized", "too_large", "queue_full", "draining", "bad_request"}) {
      auto it = rejected_.find(r);
      out += std::string("udaci_rejected_requests_total{reason=\"") + r + "\"} " +
             std::to_string(it == rejected_.end() ? 0 : it->second) + "\n";
    }
  }
  gauge("udaci_queue_depth", "Sequences waiting for a place in the batch.", "gauge", static_cast<double>(s.queued));
  gauge("udaci_live_sequences", "Sequences in the running batch.", "gauge", static_cast<double>(s.running));
  gauge("udaci_in_flight_requests", "Generation requests in the engine (running or waiting).", "gauge",
        static_cast<double>(in_flight_.load()));
  gauge("udaci_generated_tokens_total", "Tokens generated for HTTP requests.", "counter",
        static_cast<double>(generated_tokens_.load()));
  gauge("udaci_kv_cache_bytes", "Bytes of K/V cache in use.", "gauge", static_cast<double>(engine_.cache_bytes()));
  gauge("udaci_client_disconnects_total", "Requests cancelled because the client went away.", "counter",
        static_cast<double>(disconnects_.load()));
  gauge("udaci_timeouts_total", "Requests cancelled at their timeout.", "counter", static_cast<double>(timeouts_.load()));
  gauge("udaci_draining", "1 while the server drains for shutdown.", "gauge", draining_.load() ? 1 : 0);
  out += ttft_.render("udaci_time_to_first_token_seconds", "Time from a request's arrival to its first token.");
  out += latency_.render("udaci_request_duration_seconds", "Time from arrival to the end of successful /v1 requests.");
  return out;
}

void Service::log_access(const Ctx& c, int status) const {
  if (!opt_.access_log) return;
  char ts[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
  json line = {{"time", ts},
               {"request_id", c.id},
               {"remote", c.req.remote},
               {"method", c.req.method},
               {"path", c.req.path},
               {"status", status},
               {"bytes", c.ex.bytes_sent()},
               {"duration_ms", seconds_since(c.t0) * 1e3}};
  if (c.prompt_tokens) line["prompt_tokens"] = c.prompt_tokens;
  if (c.completion_tokens) line["completion_tokens"] = c.completion_tokens;
  if (!c.note.empty()) line["note"] = c.note;
  const std::string s = line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  std::fwrite(s.data(), 1, s.size(), opt_.access_log);
  std::fflush(opt_.access_log);
}

}  // namespace udaci::server
