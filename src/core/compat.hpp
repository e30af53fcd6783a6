// The one place where differences between LibTorch 1.13 (Debian) and LibTorch
// 2.x (a PyTorch install) are handled. Everything else includes ATen directly
// and uses only API that both versions share.
#pragma once

#include <ATen/ATen.h>
#if __has_include(<torch/version.h>)
#include <torch/version.h>
#endif

#ifndef TORCH_VERSION_MAJOR
#define TORCH_VERSION_MAJOR 1
#endif

namespace udaci::compat {

inline constexpr int kTorchMajor = TORCH_VERSION_MAJOR;

}  // namespace udaci::compat
