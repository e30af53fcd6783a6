// Include this instead of <catch2/catch.hpp> in tests that use ATen. Debian's
// LibTorch logs through glog, whose CHECK() macros collide with Catch's: glog's
// CHECK aborts the process instead of recording a failure. ATen (and with it
// glog) is included first and glog's macros are removed before Catch defines
// its own.
#pragma once

#include <ATen/ATen.h>

#undef CHECK
#undef CHECK_EQ
#undef CHECK_NE
#undef CHECK_LT
#undef CHECK_LE
#undef CHECK_GT
#undef CHECK_GE
#undef CHECK_NOTNULL

#include <catch2/catch.hpp>
