// ParallelPlan: how weights and work are split over processes, applied once at
// load. "single-device" keeps every weight on one rank. "tensor-parallel"
// (parallel/tensor_parallel.hpp) splits heads, FFN channels and the
// vocabulary over the ranks of a c10d process group; "pipeline-parallel"
// (parallel/pipeline_parallel.hpp) gives each rank a range of layers.
//
// Every rank builds the engine the same way; rank 0 (the leader) owns the
// scheduler and the API, and the plan makes the other ranks (followers) run
// the same forward passes and cache operations: the leader's model tells them
// through its ForwardListener, its cache through wrap_cache(); a follower
// runs serve() until the leader shuts down.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "cache/cache_strategy.hpp"
#include "core/named_factories.hpp"
#include "io/weight_store.hpp"
#include "model/linear.hpp"
#include "model/llama_model.hpp"
#include "model/model_config.hpp"

namespace udaci {

struct ParallelStats {
  double comm_seconds = 0;  // time this rank spent in collectives and transfers
  int64_t comm_calls = 0;
  std::string detail;       // what this rank holds, e.g. "layers 0-14 + embedding"
};

class ParallelPlan {
 public:
  virtual ~ParallelPlan() = default;
  virtual const char* name() const = 0;
  virtual int world_size() const = 0;
  virtual int rank() const = 0;
  bool leader() const { return rank() == 0; }

  // Keeps in `store` only what this rank computes with, and sets `config` to
  // this rank's share (its heads, FFN channels).
  virtual void shard(ModelConfig& config, WeightStore& store) = 0;
  // Capability: each rank holds slices of a projection's weight (not whole
  // tensors), so quantizers that run stored blocks in place cannot serve it.
  virtual bool slices_weights() const { return false; }
  // The kernel factory of this rank's model, around `inner` (the
  // quantizer's and pruner's kernels).
  virtual LinearFactory wrap(LinearFactory inner) { return inner; }
  // The model's listener on this rank (nullptr: none).
  virtual std::shared_ptr<ForwardListener> listener() { return nullptr; }
  // The model's pipeline stage on this rank (nullptr: the whole model).
  virtual std::shared_ptr<PipelineStage> stage() { return nullptr; }
  // The cache this rank's engine uses, around its own.
  virtual std::unique_ptr<CacheStrategy> wrap_cache(std::unique_ptr<CacheStrategy> cache) { return cache; }
  // Follower: runs what the leader sends until it shuts down; throws
  // Error(kDistributed) when the leader dies or goes silent. Leader: no-op.
  virtual void serve(const LlamaModel& model, CacheStrategy& cache) {
    (void)model;
    (void)cache;
  }
  // Leader: releases the followers (their serve() returns). Never throws.
  virtual void shutdown() noexcept {}
  virtual ParallelStats stats() const { return {}; }
};

// The plans by name: "single-device", and where this build has c10d
// "tensor-parallel" and "pipeline-parallel" (register_parallel_plans.cpp).
using ParallelPlanFactories = NamedFactories<ParallelPlan>;
void register_parallel_plans(ParallelPlanFactories& plans);

}  // namespace udaci
