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
#endif

namespace udaci {

#ifdef UDACI_WITH_NCCL

bool nccl_available() { return true; }

namespace {

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const DistEnv& env, std::chrono::milliseconds timeout)
      : env_(env), timeout_(timeout), cpu_(make_gloo_communicator(env, timeout)) {
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

  int rank() const override { return env_.rank; }
  int world_size() const override { return env_.world_size; }

  void all_reduce_sum(at::Tensor& t) override {
    if (!t.is_cuda()) return cpu_->all_reduce_sum(t);
    std::vector<at::Tensor> v{t.is_contiguous() ? t : t.contiguous()};
    run("all_reduce", [&] { pg_->allreduce(v)->wait(); });
    if (!v[0].is_same(t)) t.copy_(v[0]);
  }
  at::Tensor all_gather_cat(const at::Tensor& t, int64_t dim) override {
    if (!t.is_cuda()) return cpu_->all_gather_cat(t, dim);
    std::vector<at::Tensor> in{t.contiguous()};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < env_.world_size; ++r) out[0].push_back(at::empty_like(in[0]));
    run("all_gather", [&] { pg_->allgather(out, in)->wait(); });
    return at::cat(out[0], dim);
  }
  void broadcast(at::Tensor& t, int root) override {
    if (!t.is_cuda()) return cpu_->broadcast(t, root);
    std::vector<at::Tensor> v{t.is_contiguous() ? t : t.contiguous()};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    run("broadcast", [&] { pg_->broadcast(v, o)->wait(); });
    if (!v[0].is_same(t)) t.copy_(v[0]);
  }
  void send(const at::Tensor& t, int dst) override {
    if (!t.is_cuda()) return cpu_->send(t, dst);
    std::vector<at::Tensor> v{t.contiguous()};
    run("send", [&] { pg_->send(v, dst, 0)->wait(); });
  }
  std::function<void()> isend(const at::Tensor& t, int dst) override {
    if (!t.is_cuda()) return cpu_->isend(t, dst);
    auto v = std::make_shared<std::vector<at::Tensor>>(1, t.contiguous());
    c10::intrusive_ptr<c10d::Work> work;
    run("send", [&] { work = pg_->send(*v, dst, 0); });
    return [this, v, work] { run("send", [&] { work->wait(); }); };
  }
  void recv(at::Tensor& t, int src) override {
    if (!t.is_cuda()) return cpu_->recv(t, src);
    std::vector<at::Tensor> v{t.is_contiguous() ? t : t.contiguous()};
    run("recv", [&] { pg_->recv(v, src, 0)->wait(); });
    if (!v[0].is_same(t)) t.copy_(v[0]);
  }
  void barrier() override { cpu_->barrier(); }
  double seconds() const override { return seconds_ + cpu_->seconds(); }
  int64_t calls() const override { return calls_ + cpu_->calls(); }
  std::chrono::milliseconds timeout() const override { return timeout_; }

 private:
  template <typename F>
  void run(const char* what, F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      f();
    } catch (const std::exception& e) {
      fail(Status::kDistributed, "rank {} of {}: NCCL {} failed (a peer died, or did not answer within {} s): {}",
           env_.rank, env_.world_size, what, timeout_.count() / 1000.0, e.what());
    }
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++calls_;
  }

  DistEnv env_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<Communicator> cpu_;
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> pg_;
  double seconds_ = 0;
  int64_t calls_ = 0;
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
