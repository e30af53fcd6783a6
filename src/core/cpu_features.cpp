#include "core/cpu_features.hpp"

#include <atomic>
#include <cstdlib>
#include <string>

namespace udaci {

namespace {

KernelIsa cpu_best() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (!avx2) return KernelIsa::kScalar;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return avx512 ? KernelIsa::kAvx512 : KernelIsa::kAvx2;
#else
  return KernelIsa::kScalar;
#endif
}

KernelIsa clamp(KernelIsa want, KernelIsa best) {
  return static_cast<int>(want) <= static_cast<int>(best) ? want : best;
}

// -1: no override; otherwise a KernelIsa value.
std::atomic<int> g_override{-1};

}  // namespace

const char* kernel_isa_name(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kScalar: return "scalar";
    case KernelIsa::kAvx2: return "avx2";
    case KernelIsa::kAvx512: return "avx512";
  }
  return "?";
}

KernelIsa detected_kernel_isa() {
  static const KernelIsa isa = [] {
    const KernelIsa best = cpu_best();
    const char* env = std::getenv("UDACI_KERNELS");
    if (env == nullptr) return best;
    const std::string v = env;
    if (v == "scalar") return KernelIsa::kScalar;
    if (v == "avx2") return clamp(KernelIsa::kAvx2, best);
    return best;
  }();
  return isa;
}

KernelIsa active_kernel_isa() {
  const int o = g_override.load(std::memory_order_relaxed);
  return o < 0 ? detected_kernel_isa() : static_cast<KernelIsa>(o);
}

void set_kernel_isa_override(std::optional<KernelIsa> isa) {
  g_override.store(isa ? static_cast<int>(clamp(*isa, cpu_best())) : -1,
                   std::memory_order_relaxed);
}

}  // namespace udaci
