#include "model/dense_gemm.hpp"

#include <c10/util/Half.h>

#include <algorithm>

#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "core/thread_pool.hpp"

namespace udaci {

namespace detail {
void dense_gemm_scalar(const float* w, int64_t in, const float* x, int64_t n, float* y, int64_t r0,
                       int64_t r1, int64_t ldy) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t r = r0; r < r1; ++r) {
      float s = 0.0f;
      for (int64_t c = 0; c < in; ++c) s += w[r * in + c] * x[j * in + c];
      y[j * ldy + r] = s;
    }
}

void dense_gemm_half_scalar(const uint16_t* w, bool bf16, int64_t in, const float* x, int64_t n, float* y,
                            int64_t r0, int64_t r1, int64_t ldy) {
  const auto widen = [bf16](uint16_t v) {
    return bf16 ? bf16_bits_to_float(v) : static_cast<float>(c10::Half(v, c10::Half::from_bits()));
  };
  for (int64_t j = 0; j < n; ++j)
    for (int64_t r = r0; r < r1; ++r) {
      float s = 0.0f;
      for (int64_t c = 0; c < in; ++c) s += widen(w[r * in + c]) * x[j * in + c];
      y[j * ldy + r] = s;
    }
}
}  // namespace detail

int64_t dense_gemm_max_rows() {
  switch (active_kernel_isa()) {
    case KernelIsa::kAmx: return 4096;
    case KernelIsa::kAvx512: return 128;
    case KernelIsa::kAvx2: return 64;
    default: return 8;
  }
}

namespace {
// Weight rows per task: ~64K multiply-adds outweigh waking a thread.
int64_t grain_for(int64_t in, int64_t n) { return std::max<int64_t>(4, 65536 / std::max<int64_t>(1, in * n)); }
}  // namespace

void dense_gemm(const float* w, int64_t out, int64_t in, const float* x, int64_t n, float* y) {
  const KernelIsa isa = active_kernel_isa();
  parallel_for(0, out, grain_for(in, n), [&](int64_t r0, int64_t r1) {
    if (isa >= KernelIsa::kAvx512) {
      detail::dense_gemm_avx512(w, in, x, n, y, r0, r1, out);
    } else if (isa == KernelIsa::kAvx2) {
      detail::dense_gemm_avx2(w, in, x, n, y, r0, r1, out);
    } else {
      detail::dense_gemm_scalar(w, in, x, n, y, r0, r1, out);
    }
  });
}

void dense_gemm_half(const uint16_t* w, bool bf16, int64_t out, int64_t in, const float* x, int64_t n, float* y) {
  const KernelIsa isa = active_kernel_isa();
  parallel_for(0, out, grain_for(in, n), [&](int64_t r0, int64_t r1) {
    if (isa >= KernelIsa::kAvx512) {
      detail::dense_gemm_half_avx512(w, bf16, in, x, n, y, r0, r1, out);
    } else if (isa == KernelIsa::kAvx2) {
      detail::dense_gemm_half_avx2(w, bf16, in, x, n, y, r0, r1, out);
    } else {
      detail::dense_gemm_half_scalar(w, bf16, in, x, n, y, r0, r1, out);
    }
  });
}

bool dense_bf16_prompt_ok(int64_t in) {
#if defined(UDACI_HAVE_AMX)
  return in % 32 == 0 && bf16_prompt_rows();
#else
  (void)in;
  return false;
#endif
}

void dense_gemm_bf16_prompt(const uint16_t* w, int64_t out, int64_t in, const float* x, int64_t n, float* y) {
  UDACI_CHECK_S(Status::kInternal, dense_bf16_prompt_ok(in), "bf16 prompt rows without AMX-BF16 or with {} columns", in);
#if defined(UDACI_HAVE_AMX)
  thread_local std::vector<uint16_t> buf;
  std::vector<uint16_t>& b = buf;
  uint16_t* xb = nullptr;
  detail::bf16_pairs_amx(x, n, in, b, &xb);
  parallel_for(0, (out + 31) / 32, 1, [&](int64_t q0, int64_t q1) {
    detail::dense_gemm_bf16_amx(w, out, in, xb, n, y, 32 * q0, std::min(out, 32 * q1), out);
  });
#else
  (void)w, (void)out, (void)x, (void)n, (void)y;
#endif
}

}  // namespace udaci
