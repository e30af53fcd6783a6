#include "core/cpu_features.hpp"

#include <atomic>
#include <cstdlib>
#include <string>

#if defined(__x86_64__) && defined(UDACI_HAVE_AMX)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace udaci {

namespace {

#if defined(__x86_64__) && defined(UDACI_HAVE_AMX)
// AMX-TILE and AMX-INT8 in CPUID, AVX512-VBMI (CPUID.(7,0):ECX[1]; the AMX
// kernels' file is compiled with it: every AMX CPU has it), and Linux's
// permission to use the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM;
// granted once for the whole process).
bool amx_usable() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  const bool tile = (d >> 24) & 1u, int8 = (d >> 25) & 1u, vbmi = (c >> 1) & 1u;
  if (!tile || !int8 || !vbmi) return false;
#if defined(SYS_arch_prctl)
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

// AMX-BF16 (CPUID.(7,0):EDX[22]) and AVX512-BF16 (CPUID.(7,1):EAX[5]).
bool bf16_tiles() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0 || ((d >> 22) & 1u) == 0) return false;
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d) == 0) return false;
  return ((a >> 5) & 1u) != 0;
}
#endif

KernelIsa probe_cpu() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (!avx2) return KernelIsa::kScalar;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  if (!avx512) return KernelIsa::kAvx2;
#if defined(UDACI_HAVE_AMX)
  if (amx_usable()) return KernelIsa::kAmx;
#endif
  return KernelIsa::kAvx512;
#else
  return KernelIsa::kScalar;
#endif
}

// Probed once (the AMX permission request is a system call).
KernelIsa cpu_best() {
  static const KernelIsa best = probe_cpu();
  return best;
}

KernelIsa clamp(KernelIsa want, KernelIsa best) {
  return static_cast<int>(want) <= static_cast<int>(best) ? want : best;
}

// -1: no override; otherwise a KernelIsa value.
std::atomic<int> g_override{-1};
std::atomic<bool> g_bf16_off{false};

bool bf16_prompts_detected() {
  static const bool on = [] {
#if defined(__x86_64__) && defined(UDACI_HAVE_AMX)
    const char* env = std::getenv("UDACI_BF16_PROMPTS");
    if (env != nullptr && std::string(env) == "0") return false;
    return cpu_best() == KernelIsa::kAmx && bf16_tiles();
#else
    return false;
#endif
  }();
  return on;
}

}  // namespace

const char* kernel_isa_name(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kScalar: return "scalar";
    case KernelIsa::kAvx2: return "avx2";
    case KernelIsa::kAvx512: return "avx512";
    case KernelIsa::kAmx: return "amx";
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
    if (v == "avx512") return clamp(KernelIsa::kAvx512, best);
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

bool bf16_prompt_rows() {
  return !g_bf16_off.load(std::memory_order_relaxed) && active_kernel_isa() == KernelIsa::kAmx &&
         bf16_prompts_detected();
}

void set_bf16_prompt_override(std::optional<bool> on) {
  g_bf16_off.store(on.has_value() && !*on, std::memory_order_relaxed);
}

}  // namespace udaci
