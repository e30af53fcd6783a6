// How many threads udaci computes with, in one place. Three parties run
// threads in this process: udaci's own pool (core/thread_pool, the CPU
// kernels), ATen's intra-op team (OpenMP) and the BLAS library's. The policy:
//  - set_threads(n) (--threads, a config's "threads", udaci_engine_params)
//    is process-wide: it sets ATen's count and what the pool uses;
//  - an engine's computing thread adopts that count for the pool and sets
//    ATen's team to one thread there, so the two teams' idle helpers do not
//    spin against each other (measured on 2 cores: a 56-token prefill took
//    340 ms instead of 105 with both at two threads);
//  - under OpenMP ATen's count is per OS thread, hence the adoption.
#pragma once

namespace udaci {

// Sets ATen's intra-op thread count and the kernels' count; n <= 0 keeps the
// current settings. at::set_num_threads rebuilds a thread pool (~8 ms here):
// call it at configuration time, not per request.
void set_threads(int n);

// The count last given to set_threads (0: never).
int requested_threads();

// On an engine's computing thread: take the requested count (or ATen's
// default, before it is set to 1) for udaci's kernels, and ATen's to 1.
void adopt_requested_threads();

// Threads for udaci's own kernels: the adopted count on an engine's computing
// thread, else the count given to set_threads, else ATen's.
int kernel_threads();

// ATen's intra-op count on this thread.
int aten_threads();

}  // namespace udaci
