// What the parallel plans share: rank 0 (the leader) runs the engine and
// tells the other ranks (followers) every forward pass and cache change, in
// order, as broadcasts; a follower replays them on its own model and cache.
//   Leader        the model's ForwardListener on rank 0: broadcasts each
//                 batch and holds a lock for the pass (its collectives belong
//                 to it); sends a heartbeat while idle, every timeout / 4, so
//                 that a follower can tell a silent leader from a dead one.
//   MirroredCache rank 0's cache: add, free, truncate, fork and prompt prefix
//                 lookups are broadcast too (K/V writes happen inside the
//                 replayed passes).
//   serve_leader  a follower's loop, until the leader shuts down.
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <memory>
#include <string>

#include "cache/cache_strategy.hpp"
#include "io/weight_store.hpp"
#include "model/llama_model.hpp"
#include "parallel/communicator.hpp"
#include "parallel/parallel_plan.hpp"

namespace udaci {

class StrategyOptions;

// The communicator of a job of one process: every collective is the identity.
std::shared_ptr<Communicator> make_self_communicator();

// The communicator from the environment: for WORLD_SIZE > 1 Gloo (backend
// "gloo") or NCCL with Gloo beside it ("nccl"), else the one-process
// communicator.
std::shared_ptr<Communicator> communicator_from_environment(std::chrono::milliseconds timeout,
                                                            const std::string& backend = "gloo");

// Adds or replaces `name` in `store` by `t` (fp32, f16 or bf16), which the
// store then owns.
void put_owned_tensor(WeightStore& store, const std::string& name, at::Tensor t, const std::string& source);


// The leader's side; created on rank 0 only.
std::shared_ptr<ForwardListener> make_leader(std::shared_ptr<Communicator> comm);
// Sends the followers home (their serve_leader returns). Never throws.
void shutdown_leader(ForwardListener& leader) noexcept;
// Rank 0's cache around its own; `leader` is make_leader's.
std::unique_ptr<CacheStrategy> make_mirrored_cache(std::unique_ptr<CacheStrategy> cache,
                                                   std::shared_ptr<ForwardListener> leader);
// A follower's loop: replays the leader's passes and cache changes on
// `model` and `cache` until the leader shuts down. Throws Error(kDistributed)
// when the leader dies, goes silent past the timeout, or the caches diverge.
void serve_leader(Communicator& comm, const LlamaModel& model, CacheStrategy& cache, const char* plan);

// The options every multi-process plan takes: timeout_s (0.1 .. 86400) and
// backend (gloo | nccl); the values passed in are the defaults.
void read_rank_options(const StrategyOptions& o, const std::string& owner, std::chrono::milliseconds& timeout,
                       std::string& backend);

// What every multi-process plan shares: its communicator (from the
// environment unless given), rank 0's leader and mirrored cache, the
// followers' loop and the statistics. A plan adds shard() and, if it needs
// them, wrap() and stage().
class RankedPlan : public ParallelPlan {
 public:
  ~RankedPlan() override;
  int world_size() const override { return comm_->world_size(); }
  int rank() const override { return comm_->rank(); }
  std::shared_ptr<ForwardListener> listener() override { return leader_; }
  std::unique_ptr<CacheStrategy> wrap_cache(std::unique_ptr<CacheStrategy> cache) override;
  void serve(const LlamaModel& model, CacheStrategy& cache) override;
  void shutdown() noexcept override;
  ParallelStats stats() const override { return {comm_->seconds(), comm_->calls(), detail_}; }

 protected:
  RankedPlan(std::shared_ptr<Communicator> comm, std::chrono::milliseconds timeout, const std::string& backend);

  std::shared_ptr<Communicator> comm_;
  std::shared_ptr<ForwardListener> leader_;  // rank 0 only
  std::string detail_;                       // what this rank holds, set by shard()
};

}  // namespace udaci
