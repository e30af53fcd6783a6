#include "kernels/cuda/cuda_graph.hpp"

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "core/error.hpp"

namespace udaci::cuda {

namespace {
constexpr int64_t kBuckets[] = {1, 2, 4, 8, 16, 32, 64, 128};
}  // namespace

DecodeGraphs::DecodeGraphs() = default;
DecodeGraphs::~DecodeGraphs() = default;

int64_t DecodeGraphs::bucket(int64_t n) {
  for (int64_t b : kBuckets)
    if (n <= b) return b;
  return 0;
}

void DecodeGraphs::run(int64_t bucket, at::Device device, const std::function<void()>& step) {
  UDACI_CHECK(device.is_cuda(), "DecodeGraphs: device {} is not CUDA", device.str());
  UDACI_CHECK(bucket > 0, "DecodeGraphs: bucket {} (0 means: run the step eagerly)", bucket);
  const c10::cuda::CUDAGuard guard(device);
  auto it = graphs_.find(bucket);
  if (it == graphs_.end()) {
    // Capture may not happen on the legacy default stream; PyTorch's
    // torch.cuda.graphs warms up on a side stream first, so that lazy
    // initialisation (cuBLAS workspaces, allocator pools) is not captured.
    c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(device.index());
    c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, device.index());
    side.synchronize();
    current.synchronize();
    auto graph = std::make_unique<at::cuda::CUDAGraph>();
    try {
      const c10::cuda::CUDAStreamGuard on_side(side);
      step();
      side.synchronize();
      graph->capture_begin();
      step();
      graph->capture_end();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail(Status::kCuda, "DecodeGraphs: capturing the step for batch bucket {} failed: {}", bucket, e.what());
    }
    side.synchronize();
    it = graphs_.emplace(bucket, std::move(graph)).first;
  }
  it->second->replay();
}

void DecodeGraphs::reset() { graphs_.clear(); }

}  // namespace udaci::cuda
