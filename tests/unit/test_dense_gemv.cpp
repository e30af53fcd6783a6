// The fp32 GEMV that dense projections run for decode-sized batches
// (model/dense_gemv.hpp, issue #22) against at::linear, on both paths.
#include "udaci_catch.hpp"

#include <ATen/ATen.h>

#include <optional>

#include "model/dense_gemv.hpp"
#include "model/linear.hpp"
#include "core/cpu_features.hpp"

using namespace udaci;

TEST_CASE("dense gemv: decode-sized fp32 batches equal at::linear up to rounding", "[dense-gemv]") {
  at::manual_seed(7);
  for (auto isa : {std::optional<KernelIsa>(KernelIsa::kScalar), std::optional<KernelIsa>()}) {
    set_kernel_isa_override(isa);
    for (int64_t out : {1, 5, 64, 1000}) {
      for (int64_t in : {3, 8, 576, 1003}) {
        at::Tensor w = at::randn({out, in});
        at::Tensor b = at::randn({out});
        auto k = make_dense_kernel(w, b);
        for (int64_t n : {int64_t{1}, int64_t{2}, int64_t{3}, kDenseGemvMaxRows, kDenseGemvMaxRows + 1}) {
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
