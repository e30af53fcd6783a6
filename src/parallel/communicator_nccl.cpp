// The NCCL communicator: ProcessGroupNCCL for CUDA tensors, and the Gloo
// communicator for CPU tensors (the leader's commands are CPU tensors, which
// NCCL cannot carry), both rendezvousing through rank 0's TCPStore. Built
// with UDACI_WITH_NCCL, i.e. against a CUDA LibTorch that has NCCL (issue
// #10's GPU build). Debian's LibTorch has neither, so elsewhere this file is
// compiled twice: as the stub below into udaci_core, and with
// UDACI_WITH_NCCL into the udaci_nccl_check object library against the CUDA
// toolkit's nccl.h, so that a mistake against c10d's NCCL API fails the
// build even where it cannot run.
#include "parallel/communicator.hpp"

#include <vector>

#include "core/error.hpp"

#ifdef UDACI_WITH_NCCL
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "parallel/c10d_communicator.hpp"
#endif

namespace udaci {

#ifdef UDACI_WITH_NCCL

bool nccl_available() { return true; }

namespace {

// CUDA tensors over NCCL; CPU tensors (the leader's commands) over Gloo.
class NcclCommunicator final : public detail::C10dCommunicator<c10d::ProcessGroupNCCL> {
 public:
  NcclCommunicator(const DistEnv& env, std::chrono::milliseconds timeout)
      : C10dCommunicator(env, timeout, "NCCL"), cpu_(make_gloo_communicator(env, timeout)) {
    try {
      // The Gloo communicator's rank 0 hosts the store; every rank joins it
      // again as a client, under a prefix of its own.
      c10d::TCPStoreOptions so;
      so.port = static_cast<uint16_t>(env.master_port);
      so.isServer = false;
      so.waitWorkers = false;
      so.timeout = timeout;
      auto store = c10::make_intrusive<c10d::PrefixStore>(
          "udaci-nccl/", c10::make_intrusive<c10d::TCPStore>(env.master_addr, so));
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      pg_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env.rank, env.world_size, opts);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail(Status::kDistributed, "rank {} of {}: could not create the NCCL process group: {}", env.rank,
           env.world_size, e.what());
    }
  }

  void all_reduce_sum(at::Tensor& t) override {
    t.is_cuda() ? C10dCommunicator::all_reduce_sum(t) : cpu_->all_reduce_sum(t);
  }
  at::Tensor all_gather_cat(const at::Tensor& t, int64_t dim) override {
    return t.is_cuda() ? C10dCommunicator::all_gather_cat(t, dim) : cpu_->all_gather_cat(t, dim);
  }
  void broadcast(at::Tensor& t, int root) override {
    t.is_cuda() ? C10dCommunicator::broadcast(t, root) : cpu_->broadcast(t, root);
  }
  void send(const at::Tensor& t, int dst) override {
    t.is_cuda() ? C10dCommunicator::send(t, dst) : cpu_->send(t, dst);
  }
  std::function<void()> isend(const at::Tensor& t, int dst) override {
    return t.is_cuda() ? C10dCommunicator::isend(t, dst) : cpu_->isend(t, dst);
  }
  void recv(at::Tensor& t, int src) override {
    t.is_cuda() ? C10dCommunicator::recv(t, src) : cpu_->recv(t, src);
  }
  void barrier() override { cpu_->barrier(); }
  double seconds() const override { return seconds_ + cpu_->seconds(); }
  int64_t calls() const override { return calls_ + cpu_->calls(); }

 private:
  std::shared_ptr<Communicator> cpu_;
};

}  // namespace

std::shared_ptr<Communicator> make_nccl_communicator(const DistEnv& env, std::chrono::milliseconds timeout) {
  return std::make_shared<NcclCommunicator>(env, timeout);
}

#else

bool nccl_available() { return false; }

std::shared_ptr<Communicator> make_nccl_communicator(const DistEnv& env, std::chrono::milliseconds) {
  fail(Status::kUnsupported,
       "rank {} of {}: backend=nccl needs udaci built against a CUDA LibTorch with NCCL "
       "(UDACI_WITH_CUDA=ON, issue #10); this build has Gloo only",
       env.rank, env.world_size);
}

#endif

}  // namespace udaci
