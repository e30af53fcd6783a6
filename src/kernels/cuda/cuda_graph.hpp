// CUDA graphs for the decode step (issue #10), groundwork: not wired into
// the model yet (docs/gpu.md says what is missing). A decode step launches
// hundreds of small kernels whose launch cost exceeds their work at batch 1;
// a captured graph replays all of them with one launch. A graph fixes its
// kernels' arguments, so the step it captures must read its inputs from and
// write its outputs to tensors allocated once (static addresses), must not
// synchronise with the host or allocate host tensors, and must have the same
// shapes every time: hence one graph per bucket of batch sizes, the batch
// padded up to its bucket.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>

namespace at::cuda {
struct CUDAGraph;
}

namespace udaci::cuda {

class DecodeGraphs {
 public:
  DecodeGraphs();
  ~DecodeGraphs();
  DecodeGraphs(const DecodeGraphs&) = delete;
  DecodeGraphs& operator=(const DecodeGraphs&) = delete;

  // The batch sizes graphs are captured for (1, 2, 4, 8, 16, 32, 64, 128).
  // Returns the smallest bucket >= n, or 0 when n exceeds them all (run the
  // step eagerly then).
  static int64_t bucket(int64_t n);

  // Runs `step` for `bucket` on `device`'s current stream: the first time it
  // runs it once eagerly on a side stream (allocations, library handles),
  // captures it, and replays the capture; later calls only replay.
  // Error(kCuda) when capture fails (e.g. the step synchronised).
  void run(int64_t bucket, at::Device device, const std::function<void()>& step);

  // Drops every captured graph (after the static tensors were reallocated).
  void reset();
  int64_t captured() const { return static_cast<int64_t>(graphs_.size()); }

 private:
  std::map<int64_t, std::unique_ptr<at::cuda::CUDAGraph>> graphs_;
};

}  // namespace udaci::cuda
