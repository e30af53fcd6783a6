#include "parallel/tensor_parallel.hpp"

#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/strategy_options.hpp"
#include "model/llama_names.hpp"
#include "parallel/rank_protocol.hpp"
#include "core/strings.hpp"

namespace udaci {

std::pair<int64_t, int64_t> split_range(int64_t n, int world, int rank) {
  const int64_t base = n / world, extra = n % world;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

TensorParallelOptions TensorParallelOptions::from(const StrategyOptions& o) {
  const std::string owner = "parallel plan 'tensor-parallel'";
  o.expect_only(owner, {"timeout_s", "backend"});
  TensorParallelOptions t;
  read_rank_options(o, owner, t.timeout, t.backend);
  return t;
}

namespace {

// Replaces `name` by rows (dim 0) or columns (dim 1) [begin, end) of it, in
// its own dtype (fp32 for quantised blocks), copied out of the mapping.
void keep_slice(WeightStore& store, const std::string& name, int64_t dim, int64_t begin, int64_t end,
                int rank) {
  if (!store.has(name)) return;
  const TensorEntry& src = store.entry(name);
  const at::ScalarType dt =
      src.type == WeightType::kF16 || src.type == WeightType::kBF16 ? weight_type_scalar_type(src.type) : at::kFloat;
  const std::string source = src.source + " (rank " + std::to_string(rank) + " slice)";
  at::Tensor part = store.tensor(name, dt).narrow(dim, begin, end - begin).clone(at::MemoryFormat::Contiguous);
  put_owned_tensor(store, name, part, source);
}

// A bias that only rank 0 adds (after a row split every rank's part would add it).
void keep_on_rank0(WeightStore& store, const std::string& name, int rank) {
  if (!store.has(name) || rank == 0) return;
  const TensorEntry& src = store.entry(name);
  put_owned_tensor(store, name, at::zeros(src.shape, at::kFloat), src.source + " (zero on rank " + std::to_string(rank) + ")");
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
  at::Tensor forward_prompt(const at::Tensor& x, int64_t prompt_rows) const override {
    at::Tensor y = inner_->forward_prompt(x, prompt_rows).contiguous();
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

// ---------------------------------------------------------------- the plan

class TensorParallelPlan final : public RankedPlan {
 public:
  TensorParallelPlan(const TensorParallelOptions& options, std::shared_ptr<Communicator> comm)
      : RankedPlan(std::move(comm), options.timeout, options.backend) {}

  const char* name() const override { return "tensor-parallel"; }
  bool slices_weights() const override { return true; }

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
    const int64_t q0 = kv0 * group * d, q1 = kv1 * group * d;
    for (int64_t l = 0; l < c.num_layers; ++l) {
      for (const LlamaPartName& part : llama_parts()) {
        const std::string n = llama_layer_name(l, part.part);
        switch (part.part) {
          // Column-parallel: each rank its rows of the output (and of the bias).
          case LlamaPart::kQ:
          case LlamaPart::kK:
          case LlamaPart::kV:
          case LlamaPart::kGate:
          case LlamaPart::kUp: {
            const bool q = part.part == LlamaPart::kQ, kv = part.part == LlamaPart::kK || part.part == LlamaPart::kV;
            const int64_t b = q ? q0 : kv ? kv0 * d : i0, e = q ? q1 : kv ? kv1 * d : i1;
            for (const char* w : {".weight", ".bias"}) keep_slice(store, n + w, 0, b, e, r);
            break;
          }
          // Row-parallel: each rank its columns of the input; the bias added once.
          case LlamaPart::kO:
          case LlamaPart::kDown: {
            const bool o = part.part == LlamaPart::kO;
            keep_slice(store, n + ".weight", 1, o ? q0 : i0, o ? q1 : i1, r);
            keep_on_rank0(store, n + ".bias", r);
            break;
          }
          default: break;  // norms: whole on every rank
        }
      }
    }
    keep_slice(store, std::string(kLlamaEmbed) + ".weight", 0, vocab_offset_, vocab_offset_ + v_local, r);
    keep_slice(store, std::string(kLlamaHead) + ".weight", 0, vocab_offset_, vocab_offset_ + v_local, r);
    c.num_kv_heads = kv1 - kv0;
    c.num_heads = c.num_kv_heads * group;
    c.intermediate_size = i1 - i0;
    vocab_ = c.vocab_size;
    sharded_ = true;
    detail_ = "K/V heads " + std::to_string(kv0) + "-" + std::to_string(kv1 - 1) + ", MLP channels " +
              std::to_string(i0) + "-" + std::to_string(i1 - 1) + ", vocabulary rows " +
              std::to_string(vocab_offset_) + "-" + std::to_string(vocab_offset_ + v_local - 1);
  }

  LinearFactory wrap(LinearFactory inner) override {
    UDACI_CHECK_S(Status::kInternal, sharded_, "tensor-parallel: wrap() before shard()");
    auto comm = comm_;
    const int64_t vocab = vocab_, offset = vocab_offset_, world = world_size();
    return [inner, comm, vocab, offset, world](const LinearSpec& spec, const WeightStore& store,
                                               const ModelOptions& opt) -> std::unique_ptr<LinearKernel> {
      if (spec.role == LinearRole::kProjection) {
        std::unique_ptr<LinearKernel> k = build(inner, spec, store, opt);
        const std::optional<LlamaLayerTensor> part = parse_llama_layer_name(spec.name);
        if (part && (part->part == LlamaPart::kO || part->part == LlamaPart::kDown))
          return std::make_unique<RowParallelKernel>(std::move(k), comm);
        return k;
      }
      // Embedding or LM head: this rank's rows of the vocabulary.
      LinearSpec local = spec;
      local.out_features = vocab / world;
      const bool tied_head = spec.role == LinearRole::kLmHead && spec.weight == kLlamaEmbed;
      std::unique_ptr<LinearKernel> k;
      if (inner) k = inner(local, store, opt);
      if (!k && tied_head) return nullptr;  // shares the embedding's kernel
      if (!k) k = build(nullptr, local, store, opt);
      return std::make_unique<VocabParallelKernel>(std::move(k), comm, vocab, offset);
    };
  }

 private:
  int64_t vocab_ = 0, vocab_offset_ = 0;
  bool sharded_ = false;
};

}  // namespace

std::unique_ptr<ParallelPlan> make_tensor_parallel_plan(const TensorParallelOptions& options,
                                                        std::shared_ptr<Communicator> comm) {
  return std::make_unique<TensorParallelPlan>(options, std::move(comm));
}

}  // namespace udaci
