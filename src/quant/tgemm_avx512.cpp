// AVX-512 VNNI kernels: the AVX2 bodies with vpdpbusd in place of
// maddubs + madd (compiled with -mavx512f/bw/vl/dq/vnni; only called after
// cpu_features.hpp has checked the CPU).
#define UDACI_TGEMM_FN tgemm_avx512
#define UDACI_TGEMM_VNNI 1
#include "quant/tgemm_simd.inl"
