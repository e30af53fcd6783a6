// The CPU layer backend's elementwise steps (model/layer_backend.hpp):
// SwiGLU's product, the residual sum and the rotation, split over udaci's
// pool, against the ATen reference backend, on the scalar and AVX2 paths; a
// row's values are the same bits whatever else is in the batch.
#include "udaci_catch.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "core/cpu_features.hpp"
#include "core/threads.hpp"
#include "model/elementwise.hpp"
#include "model/layer_backend.hpp"

using namespace udaci;

namespace {

std::vector<std::optional<KernelIsa>> isas() {
  std::vector<std::optional<KernelIsa>> v = {KernelIsa::kScalar};
  if (detected_kernel_isa() >= KernelIsa::kAvx2) v.push_back(std::nullopt);
  return v;
}

}  // namespace

TEST_CASE("layer backend: the CPU SwiGLU product equals ATen's silu(gate) * up, the same bits in any batch",
          "[layer-backend]") {
  set_threads(2);
  at::manual_seed(7);
  const std::unique_ptr<LayerBackend> cpu = make_cpu_layer_backend(at::kFloat);
  const std::unique_ptr<LayerBackend> ref = make_aten_layer_backend();
  for (const auto& isa : isas()) {
    set_kernel_isa_override(isa);
    INFO("isa " << kernel_isa_name(active_kernel_isa()));
    // 83 columns: rows that end mid-vector; 64 rows: enough to split over
    // the pool. Values up to +-120: exp overflows and underflows.
    at::Tensor g = at::randn({64, 83}) * 4;
    g[3][5] = 120.0f;
    g[3][6] = -120.0f;
    g[5][0] = 0.0f;
    at::Tensor u = at::randn({64, 83});
    at::Tensor got = cpu->swiglu(g, u);
    at::Tensor want = ref->swiglu(g.to(at::kDouble), u.to(at::kDouble));
    CHECK((got.to(at::kDouble) - want).abs().max().item<double>() <= 1e-5);
    CHECK(((got.to(at::kDouble) - want).abs() / want.abs().clamp_min(1e-3)).max().item<double>() < 1e-5);
    CHECK(std::abs(got[3][6].item<float>()) < 1e-30f);
    CHECK(std::isfinite(got[3][5].item<float>()));
    // Row 9 alone and inside the 64-row batch.
    for (int64_t r : {0, 9, 63}) CHECK(at::equal(cpu->swiglu(g[r].unsqueeze(0), u[r].unsqueeze(0))[0], got[r]));
    // Outside its domain (another dtype) it hands over to ATen.
    CHECK(at::allclose(cpu->swiglu(g.to(at::kDouble), u.to(at::kDouble)), want));
  }
  set_kernel_isa_override(std::nullopt);
}

TEST_CASE("layer backend: the CPU residual sum and rotation equal ATen's on rows split over the pool",
          "[layer-backend]") {
  set_threads(2);
  at::manual_seed(8);
  const std::unique_ptr<LayerBackend> cpu = make_cpu_layer_backend(at::kFloat);
  const std::unique_ptr<LayerBackend> ref = make_aten_layer_backend();
  at::Tensor x = at::randn({300, 576}), y = at::randn({300, 576});
  CHECK(at::equal(cpu->add(x, y), x + y));
  // 300 tokens x 9 heads x 64: several tasks; then one token alone.
  at::Tensor q = at::randn({300, 9, 64});
  at::Tensor cos = at::randn({300, 64}), sin = at::randn({300, 64});
  at::Tensor got = cpu->rope(q, cos, sin);
  CHECK(at::allclose(got, ref->rope(q, cos, sin), 1e-5, 1e-5));
  CHECK(at::equal(cpu->rope(q.narrow(0, 17, 1), cos.narrow(0, 17, 1), sin.narrow(0, 17, 1))[0], got[17]));
}

TEST_CASE("layer backend: log-sum-exp of a logit row is within 1e-6 of the double reference", "[layer-backend]") {
  at::manual_seed(3);
  for (int64_t n : {1, 7, 8, 9, 100, 49152}) {
    at::Tensor x = (at::randn({n}) * 8).contiguous();
    if (n > 2) x[n / 2] = -std::numeric_limits<float>::infinity();  // a masked logit counts as 0
    const double ref = x.to(at::kDouble).logsumexp(0).item<double>();
    const float* p = x.data_ptr<float>();
    INFO("n " << n);
    CHECK(std::abs(udaci::detail::log_sum_exp_scalar(p, n) - ref) < 1e-6);
    if (detected_kernel_isa() >= KernelIsa::kAvx2) CHECK(std::abs(udaci::detail::log_sum_exp_avx2(p, n) - ref) < 1e-6);
    CHECK(std::abs(log_sum_exp(p, n) - ref) < 1e-6);
  }
  // One logit far above the rest: the sum is that one term.
  std::vector<float> row(100, -200.0f);
  row[37] = 50.0f;
  CHECK(log_sum_exp(row.data(), 100) == Approx(50.0).margin(1e-9));
  std::vector<float> masked(20, -std::numeric_limits<float>::infinity());
  CHECK(std::isinf(log_sum_exp(masked.data(), 20)));
  if (detected_kernel_isa() >= KernelIsa::kAvx2) CHECK(std::isinf(udaci::detail::log_sum_exp_avx2(masked.data(), 20)));
}
