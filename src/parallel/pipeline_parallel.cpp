#include "parallel/pipeline_parallel.hpp"

#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/strategy_options.hpp"
#include "core/strings.hpp"
#include "model/llama_names.hpp"
#include "parallel/rank_protocol.hpp"
#include "parallel/tensor_parallel.hpp"

namespace udaci {

PipelineParallelOptions PipelineParallelOptions::from(const StrategyOptions& o) {
  const std::string owner = "parallel plan 'pipeline-parallel'";
  o.expect_only(owner, {"timeout_s", "micro_batches", "backend"});
  PipelineParallelOptions p;
  read_rank_options(o, owner, p.timeout, p.backend);
  p.micro_batches = o.get_int(owner, "micro_batches", 0);
  UDACI_CHECK(p.micro_batches >= 0 && p.micro_batches <= 1024,
              "{}: micro_batches must be in [0, 1024] (0 = the number of stages), got {}", owner, p.micro_batches);
  return p;
}

namespace {

// This rank's stage: point-to-point transfers with its neighbours.
class Stage final : public PipelineStage {
 public:
  Stage(std::shared_ptr<Communicator> comm, int64_t first_layer, int64_t micro_batches)
      : comm_(std::move(comm)), first_layer_(first_layer), micro_batches_(micro_batches) {}
  int64_t first_layer() const override { return first_layer_; }
  bool first() const override { return comm_->rank() == 0; }
  bool last() const override { return comm_->rank() == comm_->world_size() - 1; }
  int64_t micro_batches() const override { return micro_batches_; }
  at::Tensor receive_hidden(int64_t rows, int64_t hidden, at::ScalarType dtype) override {
    at::Tensor x = at::empty({rows, hidden}, at::TensorOptions().dtype(dtype));
    comm_->recv(x, comm_->rank() - 1);
    return x;
  }
  void send_hidden(const at::Tensor& x) override { pending_.push_back(comm_->isend(x.contiguous(), comm_->rank() + 1)); }
  void send_logits(const at::Tensor& logits) override { pending_.push_back(comm_->isend(logits.contiguous(), 0)); }
  at::Tensor receive_logits(int64_t rows, int64_t vocab) override {
    at::Tensor l = at::empty({rows, vocab}, at::TensorOptions().dtype(at::kFloat));
    comm_->recv(l, comm_->world_size() - 1);
    return l;
  }
  void finish() override {
    std::vector<std::function<void()>> p;
    p.swap(pending_);
    for (auto& wait : p) wait();
  }

 private:
  std::shared_ptr<Communicator> comm_;
  int64_t first_layer_, micro_batches_;
  std::vector<std::function<void()>> pending_;
};

class PipelineParallelPlan final : public RankedPlan {
 public:
  PipelineParallelPlan(const PipelineParallelOptions& options, std::shared_ptr<Communicator> comm)
      : RankedPlan(std::move(comm), options.timeout, options.backend), options_(options) {}

  const char* name() const override { return "pipeline-parallel"; }

  void shard(ModelConfig& c, WeightStore& store) override {
    const int world = world_size(), r = rank();
    UDACI_CHECK_S(Status::kUnsupported, c.num_layers >= world,
                  "pipeline-parallel over {} ranks: the model has only {} layers; each stage needs at least one",
                  world, c.num_layers);
    const auto [l0, l1] = split_range(c.num_layers, world, r);
    const bool first = r == 0, last = r == world - 1;
    const std::string embed = std::string(kLlamaEmbed) + ".", norm = std::string(kLlamaFinalNorm) + ".",
                      head = std::string(kLlamaHead) + ".", layers = kLlamaLayerPrefix;
    const bool tied = c.tie_word_embeddings || !store.has(head + "weight");
    for (const std::string& name : store.names()) {
      bool keep = true;
      if (starts_with(name, layers)) {  // model.layers.N.… (weights, biases, quantised parts)
        const size_t n0 = layers.size();
        const int64_t l = std::stoll(name.substr(n0, name.find('.', n0) - n0));
        keep = l >= l0 && l < l1;
      } else if (starts_with(name, embed)) {
        keep = first || (last && tied);
      } else if (starts_with(name, norm) || starts_with(name, head)) {
        keep = last;
      }
      if (!keep) store.remove(name);
    }
    c.num_layers = l1 - l0;
    const int64_t m = options_.micro_batches > 0 ? options_.micro_batches : world;
    stage_ = std::make_shared<Stage>(comm_, l0, m);
    detail_ = "layers " + std::to_string(l0) + "-" + std::to_string(l1 - 1) + (first ? " + embedding" : "") +
              (last ? " + head" : "");
  }

  std::shared_ptr<PipelineStage> stage() override { return world_size() > 1 ? stage_ : nullptr; }

 private:
  PipelineParallelOptions options_;
  std::shared_ptr<Stage> stage_;
};

}  // namespace

std::unique_ptr<ParallelPlan> make_pipeline_parallel_plan(const PipelineParallelOptions& options,
                                                          std::shared_ptr<Communicator> comm) {
  return std::make_unique<PipelineParallelPlan>(options, std::move(comm));
}

}  // namespace udaci
