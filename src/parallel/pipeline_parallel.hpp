// Pipeline parallelism (GPipe, Huang et al., arXiv:1811.06965) over a c10d
// process group: rank r holds a contiguous range of the decoder layers
// (split as evenly as possible), rank 0 also the embedding, the last rank the
// final norm and LM head. A forward pass splits its batch into micro-batches
// of whole sequences; each stage receives a micro-batch's hidden states,
// runs its layers and sends them on (non-blocking), so that with several
// sequences in flight the stages work at the same time. The last stage sends
// the logits back to rank 0. Each rank keeps the K/V of its own layers.
//
// Weights are read per rank: a rank keeps only its layers' tensors of the
// memory-mapped file, so quantizers, gguf-native included, run unchanged.
// Rank 0 runs the engine; the other ranks replay its passes and cache changes
// (parallel/rank_protocol.hpp), as under tensor parallelism.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "parallel/communicator.hpp"
#include "parallel/parallel_plan.hpp"

namespace udaci {

class StrategyOptions;

struct PipelineParallelOptions {
  std::chrono::milliseconds timeout{60000};  // timeout_s
  int64_t micro_batches = 0;                 // per pass; 0 = the number of stages
  std::string backend = "gloo";              // gloo (CPU tensors) or nccl (CUDA tensors; CUDA builds)

  static PipelineParallelOptions from(const StrategyOptions& o);
};

std::unique_ptr<ParallelPlan> make_pipeline_parallel_plan(const PipelineParallelOptions& options,
                                                          std::shared_ptr<Communicator> comm = nullptr);

}  // namespace udaci
