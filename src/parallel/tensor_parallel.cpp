#include "parallel/tensor_parallel.hpp"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/error.hpp"
#include "engine/strategy_options.hpp"

namespace udaci {

std::pair<int64_t, int64_t> split_range(int64_t n, int world, int rank) {
  const int64_t base = n / world, extra = n % world;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

TensorParallelOptions TensorParallelOptions::from(const StrategyOptions& o) {
  const std::string owner = "parallel plan 'tensor-parallel'";
  o.expect_only(owner, {"timeout_s"});
  TensorParallelOptions t;
  const double s = o.get_double(owner, "timeout_s", 60.0);
  UDACI_CHECK(s >= 0.1 && s <= 86400, "{}: timeout_s must be in [0.1, 86400], got {}", owner, s);
  t.timeout = std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
  return t;
}

namespace {

// ---------------------------------------------------------------- one rank

// The communicator of a job of one process: every collective is the identity.
class SelfCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_sum(at::Tensor&) override {}
  at::Tensor all_gather_cat(const at::Tensor& t, int64_t) override { return t; }
  void broadcast(at::Tensor&, int) override {}
  void send(const at::Tensor&, int) override { fail(Status::kDistributed, "send in a job of one rank"); }
  void recv(at::Tensor&, int) override { fail(Status::kDistributed, "recv in a job of one rank"); }
  void barrier() override {}
  double seconds() const override { return 0; }
  int64_t calls() const override { return 0; }
  std::chrono::milliseconds timeout() const override { return std::chrono::milliseconds(0); }
};

// ---------------------------------------------------------------- weights

WeightType weight_type_of(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return WeightType::kF32;
    case at::kHalf: return WeightType::kF16;
    case at::kBFloat16: return WeightType::kBF16;
    default: fail(Status::kInternal, "tensor-parallel: no weight type for {}", c10::toString(t));
  }
}

void put_tensor(WeightStore& store, const std::string& name, at::Tensor t, const std::string& source) {
  TensorEntry e;
  e.name = name;
  e.type = weight_type_of(t.scalar_type());
  e.shape = t.sizes().vec();
  e.data = static_cast<const uint8_t*>(t.data_ptr());
  e.nbytes = static_cast<uint64_t>(t.numel() * t.element_size());
  e.owner = std::shared_ptr<const void>(new at::Tensor(t), [](const void* p) {
    delete static_cast<const at::Tensor*>(p);
  });
  e.source = source;
  store.put(std::move(e));
}

// Replaces `name` by rows (dim 0) or columns (dim 1) [begin, end) of it, in
// its own dtype (fp32 for quantised blocks), copied out of the mapping.
void keep_slice(WeightStore& store, const std::string& name, int64_t dim, int64_t begin, int64_t end,
                int rank) {
  if (!store.has(name)) return;
  const TensorEntry& src = store.entry(name);
  const at::ScalarType dt = src.type == WeightType::kF16    ? at::kHalf
                            : src.type == WeightType::kBF16 ? at::kBFloat16
                                                            : at::kFloat;
  const std::string source = src.source + " (rank " + std::to_string(rank) + " slice)";
  at::Tensor part = store.tensor(name, dt).narrow(dim, begin, end - begin).clone(at::MemoryFormat::Contiguous);
  put_tensor(store, name, part, source);
}

// A bias that only rank 0 adds (after a row split every rank's part would add it).
void keep_on_rank0(WeightStore& store, const std::string& name, int rank) {
  if (!store.has(name) || rank == 0) return;
  const TensorEntry& src = store.entry(name);
  put_tensor(store, name, at::zeros(src.shape, at::kFloat), src.source + " (zero on rank " + std::to_string(rank) + ")");
}

// ---------------------------------------------------------------- kernels

// A row-split projection: this rank's columns of W times its slice of x; the
// all-reduce adds the ranks' parts.
class RowParallelKernel final : public LinearKernel {
 public:
  RowParallelKernel(std::unique_ptr<LinearKernel> inner, std::shared_ptr<Communicator> comm)
      : inner_(std::move(inner)), comm_(std::move(comm)) {}
  const char* name() const override { return inner_->name(); }
  at::Tensor forward(const at::Tensor& x) const override {
    at::Tensor y = inner_->forward(x).contiguous();
    comm_->all_reduce_sum(y);
    return y;
  }
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  int64_t weight_bytes() const override { return inner_->weight_bytes(); }

 private:
  std::unique_ptr<LinearKernel> inner_;
  std::shared_ptr<Communicator> comm_;
};

// Rows [offset, offset + local) of a [vocab, hidden] matrix: the LM head
// (logits all-gathered) and the embedding (rows of other ranks' ids are zero
// here; the all-reduce fills them in).
class VocabParallelKernel final : public LinearKernel {
 public:
  VocabParallelKernel(std::unique_ptr<LinearKernel> inner, std::shared_ptr<Communicator> comm,
                      int64_t vocab, int64_t offset)
      : inner_(std::move(inner)), comm_(std::move(comm)), vocab_(vocab), offset_(offset) {}
  const char* name() const override { return inner_->name(); }
  at::Tensor forward(const at::Tensor& x) const override {
    return comm_->all_gather_cat(inner_->forward(x), 1);
  }
  at::Tensor gather_rows(const at::Tensor& ids, at::ScalarType dtype) const override {
    const int64_t local = inner_->out_features();
    at::Tensor rel = ids - offset_;
    at::Tensor mine = rel.ge(0).logical_and(rel.lt(local));
    at::Tensor rows = inner_->gather_rows(rel.clamp(0, local - 1), dtype).contiguous();
    rows.mul_(mine.unsqueeze(1).to(rows.scalar_type()));
    comm_->all_reduce_sum(rows);
    return rows;
  }
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return vocab_; }
  int64_t weight_bytes() const override { return inner_->weight_bytes(); }

 private:
  std::unique_ptr<LinearKernel> inner_;
  std::shared_ptr<Communicator> comm_;
  int64_t vocab_, offset_;
};

std::unique_ptr<LinearKernel> build(const LinearFactory& inner, const LinearSpec& spec, const WeightStore& store,
                                    const ModelOptions& opt) {
  if (inner) {
    if (std::unique_ptr<LinearKernel> k = inner(spec, store, opt)) return k;
  }
  at::Tensor w = store.tensor(spec.weight + ".weight", opt.dtype);
  UDACI_CHECK_S(Status::kInternal, w.dim() == 2 && w.size(0) == spec.out_features && w.size(1) == spec.in_features,
                "tensor-parallel: slice of '{}' is [{}, {}], expected [{}, {}]", spec.weight, w.size(0),
                w.dim() > 1 ? w.size(1) : 0, spec.out_features, spec.in_features);
  at::Tensor b = spec.bias ? store.tensor(spec.weight + ".bias", opt.dtype) : at::Tensor();
  if (!opt.device.is_cpu()) {
    w = w.to(opt.device);
    if (b.defined()) b = b.to(opt.device);
  }
  return make_dense_kernel(w, b);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

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
                "tensor-parallel: malformed command from rank 0 (payload of {} values)", v[4]);
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
    out.push_back(s.all_logits ? 1 : 0);
  }
  out.insert(out.end(), b.tokens.begin(), b.tokens.end());
  return out;
}

ForwardBatch decode_batch(const std::vector<int64_t>& p) {
  UDACI_CHECK_S(Status::kDistributed, !p.empty() && p[0] >= 0 && 1 + 3 * p[0] <= static_cast<int64_t>(p.size()),
                "tensor-parallel: malformed forward batch from rank 0");
  ForwardBatch b;
  size_t i = 1;
  int64_t total = 0;
  for (int64_t s = 0; s < p[0]; ++s, i += 3) {
    b.seqs.push_back({p[i], p[i + 1], p[i + 2] != 0});
    total += p[i + 1];
  }
  UDACI_CHECK_S(Status::kDistributed, static_cast<int64_t>(p.size() - i) == total,
                "tensor-parallel: forward batch from rank 0 has {} tokens for sequences of {}", p.size() - i, total);
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

// ---------------------------------------------------------------- the plan

class TensorParallelPlan final : public ParallelPlan {
 public:
  TensorParallelPlan(const TensorParallelOptions& options, std::shared_ptr<Communicator> comm)
      : options_(options), comm_(std::move(comm)) {
    if (!comm_) {
      const DistEnv env = dist_env_from_environment();
      comm_ = env.world_size == 1 ? std::make_shared<SelfCommunicator>()
                                  : make_gloo_communicator(env, options.timeout);
    }
    if (comm_->rank() == 0) leader_ = std::make_shared<Leader>(comm_);
  }
  ~TensorParallelPlan() override { shutdown(); }

  const char* name() const override { return "tensor-parallel"; }
  int world_size() const override { return comm_->world_size(); }
  int rank() const override { return comm_->rank(); }

  void shard(ModelConfig& c, WeightStore& store) override {
    const int world = world_size(), r = rank();
    UDACI_CHECK_S(Status::kUnsupported, c.num_kv_heads >= world,
                  "tensor-parallel over {} ranks: the model has only {} K/V heads; each rank needs at least one",
                  world, c.num_kv_heads);
    UDACI_CHECK_S(Status::kUnsupported, c.intermediate_size >= world,
                  "tensor-parallel over {} ranks: the MLP has only {} channels", world, c.intermediate_size);
    UDACI_CHECK_S(Status::kUnsupported, c.vocab_size % world == 0,
                  "tensor-parallel over {} ranks: the vocabulary of {} tokens does not divide by {}", world,
                  c.vocab_size, world);
    const int64_t group = c.num_heads / c.num_kv_heads, d = c.head_dim;
    const auto [kv0, kv1] = split_range(c.num_kv_heads, world, r);
    const auto [i0, i1] = split_range(c.intermediate_size, world, r);
    const int64_t v_local = c.vocab_size / world;
    vocab_offset_ = r * v_local;
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l);
      for (const char* w : {".weight", ".bias"}) {
        keep_slice(store, p + ".self_attn.q_proj" + w, 0, kv0 * group * d, kv1 * group * d, r);
        keep_slice(store, p + ".self_attn.k_proj" + w, 0, kv0 * d, kv1 * d, r);
        keep_slice(store, p + ".self_attn.v_proj" + w, 0, kv0 * d, kv1 * d, r);
        keep_slice(store, p + ".mlp.gate_proj" + w, 0, i0, i1, r);
        keep_slice(store, p + ".mlp.up_proj" + w, 0, i0, i1, r);
      }
      keep_slice(store, p + ".self_attn.o_proj.weight", 1, kv0 * group * d, kv1 * group * d, r);
      keep_slice(store, p + ".mlp.down_proj.weight", 1, i0, i1, r);
      keep_on_rank0(store, p + ".self_attn.o_proj.bias", r);
      keep_on_rank0(store, p + ".mlp.down_proj.bias", r);
    }
    keep_slice(store, "model.embed_tokens.weight", 0, vocab_offset_, vocab_offset_ + v_local, r);
    keep_slice(store, "lm_head.weight", 0, vocab_offset_, vocab_offset_ + v_local, r);
    c.num_kv_heads = kv1 - kv0;
    c.num_heads = c.num_kv_heads * group;
    c.intermediate_size = i1 - i0;
    vocab_ = c.vocab_size;
    sharded_ = true;
  }

  LinearFactory wrap(LinearFactory inner) override {
    UDACI_CHECK_S(Status::kInternal, sharded_, "tensor-parallel: wrap() before shard()");
    auto comm = comm_;
    const int64_t vocab = vocab_, offset = vocab_offset_, world = world_size();
    return [inner, comm, vocab, offset, world](const LinearSpec& spec, const WeightStore& store,
                                               const ModelOptions& opt) -> std::unique_ptr<LinearKernel> {
      if (spec.role == LinearRole::kProjection) {
        std::unique_ptr<LinearKernel> k = build(inner, spec, store, opt);
        if (ends_with(spec.name, "o_proj") || ends_with(spec.name, "down_proj"))
          return std::make_unique<RowParallelKernel>(std::move(k), comm);
        return k;
      }
      // Embedding or LM head: this rank's rows of the vocabulary.
      LinearSpec local = spec;
      local.out_features = vocab / world;
      const bool tied_head = spec.role == LinearRole::kLmHead && spec.weight == "model.embed_tokens";
      std::unique_ptr<LinearKernel> k;
      if (inner) k = inner(local, store, opt);
      if (!k && tied_head) return nullptr;  // shares the embedding's kernel
      if (!k) k = build(nullptr, local, store, opt);
      return std::make_unique<VocabParallelKernel>(std::move(k), comm, vocab, offset);
    };
  }

  std::shared_ptr<ForwardListener> listener() override { return leader_; }

  std::unique_ptr<CacheStrategy> wrap_cache(std::unique_ptr<CacheStrategy> cache) override {
    if (!leader_ || world_size() == 1) return cache;
    return std::make_unique<MirroredCache>(std::move(cache), leader_);
  }

  void serve(const LlamaModel& model, CacheStrategy& cache) override {
    if (leader()) return;
    for (;;) {
      Command cmd = receive_command(*comm_);
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
                        "tensor-parallel rank {}: the cache holds {} tokens of sequence {}'s prompt, rank 0's "
                        "{}: the caches diverged (give every rank the same cache options)",
                        rank(), held, cmd.a, cmd.b);
          break;
        }
        case kShutdown: return;
        default: fail(Status::kDistributed, "tensor-parallel: unknown command {} from rank 0", cmd.op);
      }
    }
  }

  void shutdown() noexcept override {
    if (leader_) leader_->shutdown();
  }

  ParallelStats stats() const override { return {comm_->seconds(), comm_->calls()}; }

 private:
  TensorParallelOptions options_;
  std::shared_ptr<Communicator> comm_;
  std::shared_ptr<Leader> leader_;
  int64_t vocab_ = 0, vocab_offset_ = 0;
  bool sharded_ = false;
};

}  // namespace

std::unique_ptr<ParallelPlan> make_tensor_parallel_plan(const TensorParallelOptions& options,
                                                        std::shared_ptr<Communicator> comm) {
  return std::make_unique<TensorParallelPlan>(options, std::move(comm));
}

}  // namespace udaci
