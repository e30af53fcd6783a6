// The parallel plans, registered by name. Building a distributed plan joins
// the job's rendezvous, so its options are checked apart from building it.
#include "parallel/communicator.hpp"
#include "parallel/pipeline_parallel.hpp"
#include "parallel/tensor_parallel.hpp"

namespace udaci {

namespace {

class SingleDevicePlan final : public ParallelPlan {
 public:
  const char* name() const override { return "single-device"; }
  int world_size() const override { return 1; }
  int rank() const override { return 0; }
  void shard(ModelConfig&, WeightStore&) override {}
};

}  // namespace

void register_parallel_plans(ParallelPlanFactories& r) {
  r.add("single-device", [](const StrategyOptions& o) -> std::unique_ptr<ParallelPlan> {
    o.expect_only("parallel plan 'single-device'", {});
    return std::make_unique<SingleDevicePlan>();
  });
  if (!distributed_available()) return;
  r.add(
      "tensor-parallel",
      [](const StrategyOptions& o) -> std::unique_ptr<ParallelPlan> {
        return make_tensor_parallel_plan(TensorParallelOptions::from(o));
      },
      [](const StrategyOptions& o) { TensorParallelOptions::from(o); });
  r.add(
      "pipeline-parallel",
      [](const StrategyOptions& o) -> std::unique_ptr<ParallelPlan> {
        return make_pipeline_parallel_plan(PipelineParallelOptions::from(o));
      },
      [](const StrategyOptions& o) { PipelineParallelOptions::from(o); });
}

}  // namespace udaci
