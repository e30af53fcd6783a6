// ParallelPlan: how weights and work are split over processes or devices,
// applied once at load by tensor-name patterns. "single-device" keeps every
// weight on one rank; tensor- and pipeline-parallel plans over c10d arrive
// with issue #9.
#pragma once

#include <string>

#include "io/weight_store.hpp"
#include "model/model_config.hpp"

namespace udaci {

class ParallelPlan {
 public:
  virtual ~ParallelPlan() = default;
  virtual const char* name() const = 0;
  virtual int world_size() const = 0;
  virtual int rank() const = 0;
  // Keeps in `store` only what this rank computes with (and adjusts nothing
  // in `config` for a single device).
  virtual void shard(const ModelConfig& config, WeightStore& store) const = 0;
};

}  // namespace udaci
