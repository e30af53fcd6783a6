// Communicator: the collectives udaci's parallel plans need, over PyTorch's
// own distributed runtime (c10d): ProcessGroupGloo for CPU tensors, with
// rendezvous through a c10d TCPStore from the variables torchrun sets
// (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK). Every operation
// waits for its result; a peer that dies or stops answering surfaces as
// Error(kDistributed) within the timeout instead of a hang.
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace udaci {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

// Reads MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE and LOCAL_RANK. Unset
// variables mean a single process (rank 0 of 1). Throws Error(kDistributed)
// naming the variable for a malformed value, a rank outside [0, WORLD_SIZE),
// or WORLD_SIZE > 1 without MASTER_PORT.
DistEnv dist_env_from_environment();

// A TCP port on 127.0.0.1 that was free a moment ago (for a launcher that
// starts the ranks of a job on this machine).
int free_local_port();

// True when this build can create a process group (LibTorch with Gloo).
bool distributed_available();

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // In place, every rank ends with the element-wise sum.
  virtual void all_reduce_sum(at::Tensor& t) = 0;
  // Each rank's `t` (same shape on every rank) concatenated along `dim` in
  // rank order.
  virtual at::Tensor all_gather_cat(const at::Tensor& t, int64_t dim) = 0;
  // `t` of `root` copied into `t` of every other rank (same shape and dtype).
  virtual void broadcast(at::Tensor& t, int root) = 0;
  virtual void send(const at::Tensor& t, int dst) = 0;
  // Starts sending `t` to `dst` and returns at once; the returned function
  // waits until it is sent (`t` is kept alive until then).
  virtual std::function<void()> isend(const at::Tensor& t, int dst) = 0;
  virtual void recv(at::Tensor& t, int src) = 0;
  virtual void barrier() = 0;

  // Seconds spent inside the calls above, and their number.
  virtual double seconds() const = 0;
  virtual int64_t calls() const = 0;
  virtual std::chrono::milliseconds timeout() const = 0;
};

// A Gloo process group for `env` (loopback or the interface that resolves
// MASTER_ADDR). Rank 0 hosts the TCPStore. Throws Error(kDistributed) when
// the peers do not all arrive within `timeout`, and Error(kUnsupported)
// when distributed_available() is false.
std::shared_ptr<Communicator> make_gloo_communicator(const DistEnv& env, std::chrono::milliseconds timeout);

// ProcessGroupNCCL for CUDA tensors, with the Gloo communicator for CPU
// tensors (parallel/communicator_nccl.cpp). Only in builds against a CUDA
// LibTorch with NCCL (nccl_available()); elsewhere Error(kUnsupported).
bool nccl_available();
std::shared_ptr<Communicator> make_nccl_communicator(const DistEnv& env, std::chrono::milliseconds timeout);

}  // namespace udaci
