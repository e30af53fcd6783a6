// The fp32 GEMM that dense projections run for decode steps and prompts
// (model/dense_gemm.hpp, issue #22) against at::linear, on both paths.
#include "udaci_catch.hpp"

#include <ATen/ATen.h>

#include <optional>

#include "model/dense_gemm.hpp"
#include "model/linear.hpp"
#include "core/cpu_features.hpp"

using namespace udaci;

TEST_CASE("dense gemm: fp32 batches of every size equal at::linear up to rounding", "[dense-gemm]") {
  at::manual_seed(7);
  for (auto isa : {std::optional<KernelIsa>(KernelIsa::kScalar), std::optional<KernelIsa>(KernelIsa::kAvx2),
                   std::optional<KernelIsa>()}) {
    set_kernel_isa_override(isa);
    for (int64_t out : {1, 5, 64, 1000}) {
      for (int64_t in : {3, 8, 576, 1003}) {
        at::Tensor w = at::randn({out, in});
        at::Tensor b = at::randn({out});
        auto k = make_dense_kernel(w, b);
        for (int64_t n : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{4}, int64_t{5}, int64_t{8}, int64_t{67},
                          dense_gemm_max_rows(), dense_gemm_max_rows() + 1}) {
          INFO("isa " << kernel_isa_name(active_kernel_isa()) << " out " << out << " in " << in << " n " << n);
          at::Tensor x = at::randn({n, in});
          at::Tensor ref = at::linear(x.to(at::kDouble), w.to(at::kDouble), b.to(at::kDouble));
          at::Tensor y = k->forward(x);
          REQUIRE(y.sizes() == ref.sizes());
          const double scale = std::sqrt(static_cast<double>(in)) + 1.0;
          CHECK((y.to(at::kDouble) - ref).abs().max().item<double>() <= 1e-5 * scale);
        }
        // Leading dimensions are kept: [2, 3, in] -> [2, 3, out].
        CHECK(k->forward(at::randn({2, 3, in})).sizes() == at::IntArrayRef({2, 3, out}));
      }
    }
  }
  set_kernel_isa_override(std::nullopt);
}

TEST_CASE("dense gemm: a row's output does not depend on the rows batched with it", "[dense-gemm]") {
  // Every (activation row, weight row) dot product runs the same sequence of
  // operations whatever block it falls in, so fp32 projections are batch
  // invariant up to dense_gemm_max_rows() without the scheduler's
  // batch-invariant mode.
  at::manual_seed(11);
  for (auto isa : {std::optional<KernelIsa>(KernelIsa::kScalar), std::optional<KernelIsa>(KernelIsa::kAvx2),
                   std::optional<KernelIsa>()}) {
    set_kernel_isa_override(isa);
    const int64_t out = 67, in = 203;
    auto k = make_dense_kernel(at::randn({out, in}), at::Tensor());
    const int64_t max_rows = dense_gemm_max_rows();
    at::Tensor x = at::randn({max_rows, in});
    at::Tensor all = k->forward(x);
    // 2-4 rows take wider blocks of weight rows than 5-6 (block_rows).
    for (int64_t n : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{4}, int64_t{5}, int64_t{7}, max_rows - 1}) {
      INFO("isa " << kernel_isa_name(active_kernel_isa()) << " n " << n);
      at::Tensor part = k->forward(x.narrow(0, max_rows - n, n));
      CHECK(at::equal(part, all.narrow(0, max_rows - n, n)));
      CHECK(at::equal(k->forward(x.narrow(0, 3, 1)), all.narrow(0, 3, 1)));
    }
  }
  set_kernel_isa_override(std::nullopt);
}

TEST_CASE("dense gemm: bf16 and fp16 weights equal an fp32 product of the same values", "[dense-gemm]") {
  // The 16-bit kernels widen each weight exactly, so the reference is the
  // fp32 product of the widened weights and the input rounded to the
  // model's dtype; the output is rounded to that dtype again.
  at::manual_seed(5);
  for (auto isa : {std::optional<KernelIsa>(KernelIsa::kScalar), std::optional<KernelIsa>(KernelIsa::kAvx2),
                   std::optional<KernelIsa>()}) {
    set_kernel_isa_override(isa);
    for (at::ScalarType t : {at::kBFloat16, at::kHalf}) {
      for (int64_t out : {1, 9, 300}) {
        for (int64_t in : {5, 16, 576, 1003}) {
          at::Tensor w = at::randn({out, in}).to(t);
          at::Tensor b = at::randn({out}).to(t);
          auto k = make_dense_kernel(w, b);
          for (int64_t n : {1, 2, 7, 65, 300}) {
            INFO("isa " << kernel_isa_name(active_kernel_isa()) << " dtype " << at::toString(t) << " out " << out
                        << " in " << in << " n " << n);
            at::Tensor x = at::randn({n, in}).to(t);
            at::Tensor ref = at::linear(x.to(at::kDouble), w.to(at::kDouble), b.to(at::kDouble));
            at::Tensor y = k->forward(x);
            REQUIRE(y.scalar_type() == t);
            REQUIRE(y.sizes() == ref.sizes());
            // fp32 accumulation, then one rounding to the 16-bit type.
            const double eps = t == at::kBFloat16 ? 1.0 / 128 : 1.0 / 1024;
            const double tol = 1e-5 * (std::sqrt(static_cast<double>(in)) + 1.0) + eps * ref.abs().max().item<double>();
            CHECK((y.to(at::kDouble) - ref).abs().max().item<double>() <= tol);
          }
        }
      }
    }
  }
  set_kernel_isa_override(std::nullopt);
}

TEST_CASE("dense gemm: a bf16 weight's prompt rows through AMX-BF16 tiles", "[dense-gemm]") {
  // forward_prompt: the prompt rows rounded to bf16 and multiplied in tiles
  // (fp32 sums), the rows after them as forward() computes them, and a
  // prompt row's bits do not depend on the other rows.
  if (!bf16_prompt_rows()) {
    WARN("this CPU (or UDACI_BF16_PROMPTS=0) offers no AMX-BF16: the bf16 prompt path is not exercised here");
    return;
  }
  at::manual_seed(6);
  for (int64_t out : {1, 17, 48, 300}) {
    for (int64_t in : {32, 576, 1024}) {
      at::Tensor w = at::randn({out, in}).to(at::kBFloat16);
      at::Tensor b = at::randn({out}).to(at::kFloat);
      auto k = make_dense_kernel(w, b);
      for (int64_t n : {1, 5, 16, 33, 70}) {
        INFO("out " << out << " in " << in << " n " << n);
        at::Tensor x = at::randn({n, in});
        at::Tensor y = k->forward_prompt(x, n);
        at::Tensor ref = at::linear(x.to(at::kBFloat16).to(at::kDouble), w.to(at::kDouble), b.to(at::kDouble));
        REQUIRE(y.sizes() == ref.sizes());
        const double scale = at::linear(x.abs().to(at::kDouble), w.abs().to(at::kDouble)).max().item<double>();
        CHECK((y.to(at::kDouble) - ref).abs().max().item<double>() <= 1e-5 * scale);
        const int64_t p = n / 2;
        if (p > 0) {
          at::Tensor mixed = k->forward_prompt(x, p);
          CHECK(at::equal(mixed.narrow(0, 0, p), y.narrow(0, 0, p)));
          CHECK(at::equal(mixed.narrow(0, p, n - p), k->forward(x).narrow(0, p, n - p)));
        }
        CHECK(at::equal(k->forward_prompt(x.narrow(0, n - 1, 1), 1), y.narrow(0, n - 1, 1)));
      }
    }
  }
  // A width that is not a multiple of 32 takes forward()'s path.
  at::Tensor w = at::randn({8, 40}).to(at::kBFloat16);
  auto k = make_dense_kernel(w, at::Tensor());
  at::Tensor x = at::randn({4, 40});
  CHECK(at::equal(k->forward_prompt(x, 4), k->forward(x)));
}
