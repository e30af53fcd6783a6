#include "parallel/rank_protocol.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/error.hpp"
#include "core/strategy_options.hpp"

namespace udaci {

namespace {

// The communicator of a job of one process: every collective is the identity.
class SelfCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_sum(at::Tensor&) override {}
  at::Tensor all_gather_cat(const at::Tensor& t, int64_t) override { return t; }
  void broadcast(at::Tensor&, int) override {}
  void send(const at::Tensor&, int) override { fail(Status::kDistributed, "send in a job of one rank"); }
  std::function<void()> isend(const at::Tensor&, int) override {
    fail(Status::kDistributed, "send in a job of one rank");
  }
  void recv(at::Tensor&, int) override { fail(Status::kDistributed, "recv in a job of one rank"); }
  void barrier() override {}
  double seconds() const override { return 0; }
  int64_t calls() const override { return 0; }
  std::chrono::milliseconds timeout() const override { return std::chrono::milliseconds(0); }
};

// ---------------------------------------------------------------- commands

enum Op : int64_t { kNoop = 0, kForward, kAdd, kFree, kTruncate, kFork, kBeginPrompt, kShutdown };

struct Command {
  int64_t op = kNoop, a = 0, b = 0, c = 0;
  std::vector<int64_t> payload;
};

// Broadcasts of rank 0: a header [op, a, b, c, payload size], then the payload.
void send_command(Communicator& comm, const Command& cmd) {
  at::Tensor h = at::tensor(std::vector<int64_t>{cmd.op, cmd.a, cmd.b, cmd.c,
                                                 static_cast<int64_t>(cmd.payload.size())},
                            at::kLong);
  comm.broadcast(h, 0);
  if (!cmd.payload.empty()) {
    at::Tensor p = at::tensor(cmd.payload, at::kLong);
    comm.broadcast(p, 0);
  }
}

Command receive_command(Communicator& comm) {
  at::Tensor h = at::zeros({5}, at::kLong);
  comm.broadcast(h, 0);
  const int64_t* v = h.data_ptr<int64_t>();
  Command cmd{v[0], v[1], v[2], v[3], {}};
  UDACI_CHECK_S(Status::kDistributed, v[4] >= 0 && v[4] < (int64_t{1} << 32),
                "parallel plan: malformed command from rank 0 (payload of {} values)", v[4]);
  if (v[4] > 0) {
    at::Tensor p = at::zeros({v[4]}, at::kLong);
    comm.broadcast(p, 0);
    cmd.payload.assign(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + v[4]);
  }
  return cmd;
}

std::vector<int64_t> encode_batch(const ForwardBatch& b) {
  std::vector<int64_t> out{static_cast<int64_t>(b.seqs.size())};
  for (const SeqSlice& s : b.seqs) {
    out.push_back(s.seq);
    out.push_back(s.n_tokens);
    out.push_back((s.all_logits ? 1 : 0) | (s.prompt ? 2 : 0));
  }
  out.insert(out.end(), b.tokens.begin(), b.tokens.end());
  return out;
}

ForwardBatch decode_batch(const std::vector<int64_t>& p) {
  UDACI_CHECK_S(Status::kDistributed, !p.empty() && p[0] >= 0 && 1 + 3 * p[0] <= static_cast<int64_t>(p.size()),
                "parallel plan: malformed forward batch from rank 0");
  ForwardBatch b;
  size_t i = 1;
  int64_t total = 0;
  for (int64_t s = 0; s < p[0]; ++s, i += 3) {
    b.seqs.push_back({p[i], p[i + 1], (p[i + 2] & 1) != 0, (p[i + 2] & 2) != 0});
    total += p[i + 1];
  }
  UDACI_CHECK_S(Status::kDistributed, static_cast<int64_t>(p.size() - i) == total,
                "parallel plan: forward batch from rank 0 has {} tokens for sequences of {}", p.size() - i, total);
  b.tokens.assign(p.begin() + static_cast<int64_t>(i), p.end());
  return b;
}

// ---------------------------------------------------------------- leader

// Rank 0's side: sends every forward pass and cache change, one at a time,
// and a heartbeat while idle.
class Leader final : public ForwardListener {
 public:
  explicit Leader(std::shared_ptr<Communicator> comm) : comm_(std::move(comm)) {
    last_ = Clock::now();
    if (comm_->world_size() > 1) heartbeat_ = std::thread([this] { beat(); });
  }
  ~Leader() override { shutdown(); }

  void begin_forward(const ForwardBatch& batch) override {
    std::unique_lock<std::mutex> lk(mu_);
    send_locked({kForward, 0, 0, 0, encode_batch(batch)});
    lk.release();  // held for the whole pass: its collectives belong to it
  }
  void end_forward() noexcept override { mu_.unlock(); }

  void command(const Command& cmd) {
    std::lock_guard<std::mutex> lk(mu_);
    send_locked(cmd);
  }
  // For cache changes made while unwinding (freeing a sequence): a dead peer
  // is remembered and reported by the next command.
  void command_nothrow(const Command& cmd) noexcept {
    try {
      command(cmd);
    } catch (...) {
    }
  }

  void shutdown() noexcept {
    {
      std::lock_guard<std::mutex> lk(beat_mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    beat_cv_.notify_all();
    if (heartbeat_.joinable()) heartbeat_.join();
    if (comm_->world_size() > 1) command_nothrow({kShutdown});
  }

 private:
  using Clock = std::chrono::steady_clock;

  void send_locked(const Command& cmd) {
    if (!dead_.empty()) fail(Status::kDistributed, "{}", dead_);
    try {
      send_command(*comm_, cmd);
    } catch (const Error& e) {
      dead_ = e.what();
      throw;
    }
    last_ = Clock::now();
  }

  void beat() {
    const auto every = std::max(std::chrono::milliseconds(100), comm_->timeout() / 4);
    std::unique_lock<std::mutex> lk(beat_mu_);
    while (!beat_cv_.wait_for(lk, every, [this] { return stopped_; })) {
      std::unique_lock<std::mutex> g(mu_, std::try_to_lock);
      if (!g.owns_lock() || Clock::now() - last_.load() < every || !dead_.empty()) continue;
      try {
        send_command(*comm_, {kNoop});
        last_ = Clock::now();
      } catch (const std::exception& e) {
        dead_ = e.what();
      }
    }
  }

  std::shared_ptr<Communicator> comm_;
  std::mutex mu_;  // one command (and its collectives) at a time
  std::string dead_;
  std::atomic<Clock::time_point> last_;
  std::thread heartbeat_;
  std::mutex beat_mu_;
  std::condition_variable beat_cv_;
  bool stopped_ = false;
};

// The leader's cache: changes go to the followers' caches too.
class MirroredCache final : public CacheStrategy {
 public:
  MirroredCache(std::unique_ptr<CacheStrategy> inner, std::shared_ptr<Leader> leader)
      : inner_(std::move(inner)), leader_(std::move(leader)) {}
  const char* name() const override { return inner_->name(); }
  void add_sequence(SeqId seq, int64_t capacity_hint) override {
    inner_->add_sequence(seq, capacity_hint);
    note();
    leader_->command({kAdd, seq, capacity_hint});
  }
  void free_sequence(SeqId seq) override {
    inner_->free_sequence(seq);
    leader_->command_nothrow({kFree, seq});
  }
  bool has_sequence(SeqId seq) const override { return inner_->has_sequence(seq); }
  int64_t cached_length(SeqId seq) const override { return inner_->cached_length(seq); }
  std::pair<at::Tensor, at::Tensor> append(int64_t layer, SeqId seq, const at::Tensor& k,
                                           const at::Tensor& v) override {
    return inner_->append(layer, seq, k, v);
  }
  std::pair<at::Tensor, at::Tensor> committed_kv(int64_t layer, SeqId seq) override {
    return inner_->committed_kv(layer, seq);
  }
  void commit(SeqId seq, int64_t n_new) override {
    inner_->commit(seq, n_new);
    note();
  }
  void truncate(SeqId seq, int64_t length) override {
    inner_->truncate(seq, length);
    leader_->command({kTruncate, seq, length});
  }
  int64_t begin_prompt(SeqId seq, const std::vector<int64_t>& prompt) override {
    const int64_t held = inner_->begin_prompt(seq, prompt);
    note();
    leader_->command({kBeginPrompt, seq, held, 0, prompt});
    return held;
  }
  int64_t prefix_share_tokens() const override { return inner_->prefix_share_tokens(); }
  int64_t prefix_available(const std::vector<int64_t>& prompt) const override {
    return inner_->prefix_available(prompt);
  }
  void fork(SeqId parent, SeqId child) override {
    inner_->fork(parent, child);
    note();
    leader_->command({kFork, parent, child});
  }
  int64_t bytes_reserved() const override { return inner_->bytes_reserved(); }
  int64_t bytes_for_tokens(int64_t tokens) const override { return inner_->bytes_for_tokens(tokens); }
  int64_t byte_limit() const override { return inner_->byte_limit(); }
  bool retains_kv() const override { return inner_->retains_kv(); }
  CacheStats stats() const override { return inner_->stats(); }

 private:
  void note() { note_reserved(inner_->peak_bytes_reserved()); }

  std::unique_ptr<CacheStrategy> inner_;
  std::shared_ptr<Leader> leader_;
};

}  // namespace

std::shared_ptr<Communicator> make_self_communicator() { return std::make_shared<SelfCommunicator>(); }

std::shared_ptr<Communicator> communicator_from_environment(std::chrono::milliseconds timeout,
                                                            const std::string& backend) {
  const DistEnv env = dist_env_from_environment();
  if (env.world_size == 1) return make_self_communicator();
  return backend == "nccl" ? make_nccl_communicator(env, timeout) : make_gloo_communicator(env, timeout);
}

void put_owned_tensor(WeightStore& store, const std::string& name, at::Tensor t, const std::string& source) {
  store.put(tensor_entry(name, std::move(t), source));
}

std::shared_ptr<ForwardListener> make_leader(std::shared_ptr<Communicator> comm) {
  return std::make_shared<Leader>(std::move(comm));
}

void shutdown_leader(ForwardListener& leader) noexcept { static_cast<Leader&>(leader).shutdown(); }

std::unique_ptr<CacheStrategy> make_mirrored_cache(std::unique_ptr<CacheStrategy> cache,
                                                   std::shared_ptr<ForwardListener> leader) {
  return std::make_unique<MirroredCache>(std::move(cache), std::static_pointer_cast<Leader>(leader));
}

void serve_leader(Communicator& comm, const LlamaModel& model, CacheStrategy& cache, const char* plan) {
  for (;;) {
    Command cmd = receive_command(comm);
    switch (cmd.op) {
      case kNoop: break;
      case kForward: model.forward(decode_batch(cmd.payload), cache); break;
      case kAdd: cache.add_sequence(cmd.a, cmd.b); break;
      case kFree: cache.free_sequence(cmd.a); break;
      case kTruncate: cache.truncate(cmd.a, cmd.b); break;
      case kFork: cache.fork(cmd.a, cmd.b); break;
      case kBeginPrompt: {
        const int64_t held = cache.begin_prompt(cmd.a, cmd.payload);
        UDACI_CHECK_S(Status::kDistributed, held == cmd.b,
                      "{} rank {}: the cache holds {} tokens of sequence {}'s prompt, rank 0's {}: the caches "
                      "diverged (give every rank the same cache options)",
                      plan, comm.rank(), held, cmd.a, cmd.b);
        break;
      }
      case kShutdown: return;
      default: fail(Status::kDistributed, "{}: unknown command {} from rank 0", plan, cmd.op);
    }
  }
}

void read_rank_options(const StrategyOptions& o, const std::string& owner, std::chrono::milliseconds& timeout,
                       std::string& backend) {
  const double s = o.get_double(owner, "timeout_s", static_cast<double>(timeout.count()) / 1000.0);
  UDACI_CHECK(s >= 0.1 && s <= 86400, "{}: timeout_s must be in [0.1, 86400], got {}", owner, s);
  timeout = std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
  backend = o.get_string(owner, "backend", backend);
  UDACI_CHECK(backend == "gloo" || backend == "nccl", "{}: backend must be gloo or nccl, got '{}'", owner, backend);
}

RankedPlan::RankedPlan(std::shared_ptr<Communicator> comm, std::chrono::milliseconds timeout,
                       const std::string& backend)
    : comm_(comm ? std::move(comm) : communicator_from_environment(timeout, backend)) {
  if (comm_->rank() == 0) leader_ = make_leader(comm_);
}

RankedPlan::~RankedPlan() { RankedPlan::shutdown(); }

std::unique_ptr<CacheStrategy> RankedPlan::wrap_cache(std::unique_ptr<CacheStrategy> cache) {
  if (!leader_ || world_size() == 1) return cache;
  return make_mirrored_cache(std::move(cache), leader_);
}

void RankedPlan::serve(const LlamaModel& model, CacheStrategy& cache) {
  if (!leader()) serve_leader(*comm_, model, cache, name());
}

void RankedPlan::shutdown() noexcept {
  if (leader_) shutdown_leader(*leader_);
}

}  // namespace udaci
