// Tensor parallelism (Shoeybi et al., Megatron-LM, arXiv:1909.08053) over a
// c10d process group:
//   - attention: each rank keeps a contiguous range of K/V heads and the query
//     heads that share them (column split of q/k/v_proj), computes attention
//     for them with a cache of its heads only, and applies its columns of
//     o_proj; one all-reduce sums the ranks' parts;
//   - MLP: column split of gate/up, row split of down, one all-reduce;
//   - vocabulary: each rank holds V / world rows of the embedding and LM head;
//     a lookup is an all-reduce of masked rows, the logits an all-gather.
// Heads need not divide evenly: with 3 K/V heads over 2 ranks, rank 0 takes
// 2 and rank 1 one (an error only when there are fewer K/V heads than
// ranks). FFN channels are split as evenly as possible; the vocabulary must
// divide by the world size.
//
// Weights are read per rank: each keeps only its slices of the memory-mapped
// file (GGUF blocks are dequantised tensor by tensor first), and the
// quantizer then runs on the slices. gguf-native kernels, which read a
// file's blocks in place, cannot run on slices and are refused.
//
// Work: the leader (rank 0) runs the engine; its model's listener broadcasts
// each forward batch, its cache broadcasts each change (add, free, truncate,
// fork, prompt prefix lookup), so that every follower, running serve(),
// computes the same passes on the same cache layout. While idle the leader
// sends a heartbeat every timeout / 4, so a follower can tell a silent leader
// from a dead one.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "parallel/communicator.hpp"
#include "parallel/parallel_plan.hpp"

namespace udaci {

class StrategyOptions;

struct TensorParallelOptions {
  std::chrono::milliseconds timeout{60000};  // timeout_s: collectives and rendezvous
  std::string backend = "gloo";               // gloo (CPU tensors) or nccl (CUDA tensors; CUDA builds)

  static TensorParallelOptions from(const StrategyOptions& o);
};

// Over `comm`, or a Gloo group from the environment (dist_env_from_environment)
// when null.
std::unique_ptr<ParallelPlan> make_tensor_parallel_plan(const TensorParallelOptions& options,
                                                        std::shared_ptr<Communicator> comm = nullptr);

// The contiguous range [begin, end) of `n` items rank `rank` of `world` takes
// (the first n % world ranks take one more).
std::pair<int64_t, int64_t> split_range(int64_t n, int world, int rank);

}  // namespace udaci
