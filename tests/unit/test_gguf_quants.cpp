// Block dequantisers against gguf-py's reference (gguf.quants.dequantize) on
// random blocks committed by tools/reference/make_gguf_fixtures.py, and the
// half/bfloat16 conversions against c10's over every bit pattern.
#include "udaci_catch.hpp"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstring>

#include "core/error.hpp"
#include "io/gguf_quants.hpp"
#include "io/gguf_reader.hpp"
#include "io/safetensors_reader.hpp"
#include "test_util.hpp"

using namespace udaci;

TEST_CASE("gguf quants: every block format matches gguf-py", "[unit][gguf]") {
  auto g = GgufFile::open(udaci_test::fixture("gguf/quants.gguf"));
  WeightStore expected;
  read_safetensors_file(udaci_test::fixture("gguf/quants_expected.safetensors"), expected);
  const std::vector<std::string> types = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K",
                                          "Q4_K", "Q5_K", "Q6_K", "F16",  "BF16", "F32"};
  REQUIRE(g->tensors().size() == types.size());
  int64_t exact = 0, total = 0;
  for (const std::string& name : types) {
    INFO("type " << name);
    const GgufTensorInfo& t = g->tensor(name);
    REQUIRE(t.type_info->name == name);
    REQUIRE(t.type_info->weight_type.has_value());
    const at::Tensor want = expected.tensor(name, at::kFloat);
    REQUIRE(want.sizes().vec() == t.shape());
    at::Tensor got = at::empty(t.shape(), at::kFloat);
    dequantize_row(*t.type_info->weight_type, t.data, got.data_ptr<float>(), t.numel());
    // Same float32 operations in the same order as gguf-py: bit-exact unless
    // the compiler fuses a multiply-add (then within an ulp of the scale).
    const double scale = want.abs().masked_fill(at::isinf(want), 0).max().item<double>();
    CHECK(at::allclose(got, want, /*rtol=*/1e-6, /*atol=*/1e-6 * scale, /*equal_nan=*/false));
    exact += got.eq(want).sum().item<int64_t>();
    total += want.numel();
    // Element order matters: a shuffled result must not pass.
    if (name != "F32") CHECK_FALSE(at::allclose(got.flip({-1}), want, 1e-6, 1e-6 * scale));
  }
  INFO(exact << " of " << total << " values bit-exact");
  CHECK(exact > total * 9 / 10);
}

TEST_CASE("gguf quants: half and bfloat16 conversions are exact", "[unit][gguf]") {
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    const uint16_t b = static_cast<uint16_t>(bits);
    c10::Half h;
    h.x = b;
    const float ref = static_cast<float>(h);
    const float got = half_to_float(b);
    if (std::isnan(ref)) {
      CHECK(std::isnan(got));
    } else if (std::memcmp(&ref, &got, 4) != 0) {
      FAIL("half 0x" << std::hex << bits << ": got " << got << ", expected " << ref);
    }
    c10::BFloat16 bf;
    bf.x = b;
    const float bref = static_cast<float>(bf);
    const float bgot = bf16_to_float(b);
    if (std::memcmp(&bref, &bgot, 4) != 0 && !(std::isnan(bref) && std::isnan(bgot))) {
      FAIL("bfloat16 0x" << std::hex << bits << ": got " << bgot << ", expected " << bref);
    }
  }
}

TEST_CASE("gguf quants: bad arguments", "[unit][gguf]") {
  std::vector<uint8_t> src(64, 0);
  std::vector<float> dst(64);
  try {
    dequantize_row(WeightType::kI32, src.data(), dst.data(), 4);
    FAIL("dequantised I32");
  } catch (const Error& e) {
    CHECK(e.status() == Status::kUnsupported);
    CHECK_THAT(e.what(), Catch::Contains("I32"));
  }
  try {
    dequantize_row(WeightType::kQ8_0, src.data(), dst.data(), 33);
    FAIL("dequantised a partial block");
  } catch (const Error& e) {
    CHECK(e.status() == Status::kBadModelFile);
    CHECK_THAT(e.what(), Catch::Contains("whole blocks of 32"));
  }
  // One hand-made Q8_0 block: d = 0.5 (f16 0x3800), q = -3.
  std::vector<uint8_t> blk(34, 0xfd);
  blk[0] = 0x00;
  blk[1] = 0x38;
  dequantize_row(WeightType::kQ8_0, blk.data(), dst.data(), 32);
  CHECK(dst[0] == -1.5f);
  CHECK(dst[31] == -1.5f);
}
