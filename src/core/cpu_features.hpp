// Which instruction set the quantised CPU kernels use. The library is built
// portable (no -march=native); kernels for one instruction set live in files
// named *_avx2.cpp / *_avx512.cpp (compiled with those flags, see
// src/CMakeLists.txt) and are only called after a run-time check here.
#pragma once

#include <optional>

namespace udaci {

enum class KernelIsa {
  kScalar,  // portable C++, the reference every SIMD path is tested against
  kAvx2,    // AVX2 + FMA + F16C
  kAvx512,  // AVX-512 F/BW/VL + VNNI (dpbusd), on top of AVX2
  kAmx,     // the AVX-512 kernels, and AMX-INT8 tile products for several rows
            // at once (Sapphire Rapids and later; Linux must grant the tile state)
};

const char* kernel_isa_name(KernelIsa isa);

// The best instruction set this CPU supports, lowered by the environment
// variable UDACI_KERNELS=scalar|avx2|avx512|amx (read once; a value above what
// the CPU supports is ignored, an unknown value means "best").
KernelIsa detected_kernel_isa();

// What kernels run now: the override if one is set, else detected_kernel_isa().
KernelIsa active_kernel_isa();

// Test hook: forces an instruction set (clamped to what the CPU supports), or
// clears the override with std::nullopt. Not meant for concurrent use with
// running kernels of another thread.
void set_kernel_isa_override(std::optional<KernelIsa> isa);

// Whether prompt rows run through the AMX-BF16 kernel (quant/tiled_matrix.hpp
// tiled_gemm_bf16): the kernels run at kAmx, the CPU has AMX-BF16 and
// AVX512-BF16, and the environment variable UDACI_BF16_PROMPTS is not "0"
// (read once; with "0" prompts take the int8 kernels as decode rows do).
bool bf16_prompt_rows();

// Test hook, as set_kernel_isa_override: forces bf16_prompt_rows() off
// (false) or back to what the CPU and environment say (std::nullopt); it
// cannot turn on what the CPU lacks.
void set_bf16_prompt_override(std::optional<bool> on);

}  // namespace udaci
