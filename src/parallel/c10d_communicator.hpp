// Internal to src/parallel: a Communicator over one c10d process group type
// (ProcessGroupGloo, ProcessGroupNCCL), which share their API. Each
// operation waits for its result and turns any failure into
// Error(kDistributed) naming the rank, the backend and the operation.
// Included only where c10d's headers are usable (UDACI_WITH_GLOO).
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "core/error.hpp"
#include "parallel/communicator.hpp"

namespace udaci {
namespace detail {

template <typename PG>
class C10dCommunicator : public Communicator {
 public:
  C10dCommunicator(const DistEnv& env, std::chrono::milliseconds timeout, const char* backend)
      : env_(env), timeout_(timeout), backend_(backend) {}

  int rank() const override { return env_.rank; }
  int world_size() const override { return env_.world_size; }

  void all_reduce_sum(at::Tensor& t) override {
    std::vector<at::Tensor> v{t.is_contiguous() ? t : t.contiguous()};
    run("all_reduce", [&] { pg_->allreduce(v)->wait(); });
    if (!v[0].is_same(t)) t.copy_(v[0]);
  }
  at::Tensor all_gather_cat(const at::Tensor& t, int64_t dim) override {
    std::vector<at::Tensor> in{t.contiguous()};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < env_.world_size; ++r) out[0].push_back(at::empty_like(in[0]));
    run("all_gather", [&] { pg_->allgather(out, in)->wait(); });
    return at::cat(out[0], dim);
  }
  void broadcast(at::Tensor& t, int root) override {
    std::vector<at::Tensor> v{t.is_contiguous() ? t : t.contiguous()};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    run("broadcast", [&] { pg_->broadcast(v, o)->wait(); });
    if (!v[0].is_same(t)) t.copy_(v[0]);
  }
  void send(const at::Tensor& t, int dst) override {
    std::vector<at::Tensor> v{t.contiguous()};
    run("send", [&] { pg_->send(v, dst, 0)->wait(); });
  }
  std::function<void()> isend(const at::Tensor& t, int dst) override {
    auto v = std::make_shared<std::vector<at::Tensor>>(1, t.contiguous());
    c10::intrusive_ptr<c10d::Work> work;
    run("send", [&] { work = pg_->send(*v, dst, 0); });
    return [this, v, work] { run("send", [&] { work->wait(); }); };
  }
  void recv(at::Tensor& t, int src) override {
    std::vector<at::Tensor> v{t.is_contiguous() ? t : t.contiguous()};
    run("recv", [&] { pg_->recv(v, src, 0)->wait(); });
    if (!v[0].is_same(t)) t.copy_(v[0]);
  }
  void barrier() override {
    run("barrier", [&] { pg_->barrier()->wait(); });
  }
  double seconds() const override { return seconds_; }
  int64_t calls() const override { return calls_; }
  std::chrono::milliseconds timeout() const override { return timeout_; }

 protected:
  template <typename F>
  void run(const char* what, F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      f();
    } catch (const std::exception& e) {
      fail(Status::kDistributed, "rank {} of {}: {} {} failed (a peer died, or did not answer within {} s): {}",
           env_.rank, env_.world_size, backend_, what, timeout_.count() / 1000.0, e.what());
    }
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++calls_;
  }

  DistEnv env_;
  std::chrono::milliseconds timeout_;
  const char* backend_;
  c10::intrusive_ptr<PG> pg_;  // set by the derived constructor
  double seconds_ = 0;
  int64_t calls_ = 0;
};

}  // namespace detail
}  // namespace udaci
