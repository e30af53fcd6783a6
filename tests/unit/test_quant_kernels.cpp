// Quantised CPU kernels against a dequantise-then-ATen reference, over a grid
// of shapes, on every SIMD path the CPU has and the forced scalar path.
//
// Tolerances, per output element y[j, r], relative to |w_r| * |x_j| (norms of
// the weight row and the activation row):
//  - 2e-5 against W_ref x^, where x^ is the activation after the kernels'
//    int8 block quantisation (dequantised): only float summation order
//    differs from the exact integer arithmetic;
//  - 1e-2 against W_ref x with the float x: the int8 activation rounding
//    (at most max|x_block| / 254 per element; ~0.1-0.3% in practice) and, for
//    nf4, the int8 code book (at most 0.5/127 of a group's absmax per weight).
#include "udaci_catch.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "io/gguf_quants.hpp"
#include "model/llama_model.hpp"
#include "core/cpu_features.hpp"
#include "core/threads.hpp"
#include "quant/qmatrix.hpp"
#include "quant/quant_formats.hpp"
#include "quant/quantized_linear.hpp"
#include "quant/quantizers.hpp"
#include "test_util.hpp"

using namespace udaci;

namespace {

std::shared_ptr<std::vector<uint8_t>> bytes_of(size_t n) {
  return std::make_shared<std::vector<uint8_t>>(n);
}

TensorEntry entry_of(const std::string& name, WeightType t, std::vector<int64_t> shape,
                     std::shared_ptr<std::vector<uint8_t>> buf) {
  TensorEntry e;
  e.name = name;
  e.type = t;
  e.shape = std::move(shape);
  e.data = buf->data();
  e.nbytes = buf->size();
  e.owner = buf;
  e.source = "test";
  return e;
}

// Random but valid GGUF blocks: random quant bytes (Q8_0 includes -128, the
// K-quants' packed scales take every value) and f16 scales around 0.01 (mins
// around 0 for Q4_1, dmin around 0.01 for Q4_K / Q5_K).
TensorEntry random_gguf(WeightType t, int64_t out, int64_t in) {
  const int64_t bb = weight_type_block_bytes(t);
  const int64_t nblocks = out * in / weight_type_block_elems(t);
  auto buf = bytes_of(static_cast<size_t>(nblocks * bb));
  at::Tensor rnd = at::randint(0, 256, {nblocks * bb}, at::TensorOptions().dtype(at::kLong));
  at::Tensor sc = at::randn({nblocks, 2}) * 0.01;
  const int64_t* rp = rnd.data_ptr<int64_t>();
  const float* sp = sc.data_ptr<float>();
  const bool k_affine = t == WeightType::kQ4_K || t == WeightType::kQ5_K;
  for (int64_t b = 0; b < nblocks; ++b) {
    uint8_t* p = buf->data() + b * bb;
    for (int64_t i = 0; i < bb; ++i) p[i] = static_cast<uint8_t>(rp[b * bb + i]);
    // K-quant sub-block scales multiply d: keep the products near 0.01 too.
    const float dscale = k_affine ? 1.0f / 32 : t == WeightType::kQ6_K ? 1.0f / 64 : 1.0f;
    const uint16_t d = float_to_half_bits((std::fabs(sp[2 * b]) + 1e-4f) * dscale);
    std::memcpy(p + (t == WeightType::kQ6_K ? 208 : 0), &d, 2);
    if (t == WeightType::kQ4_1 || t == WeightType::kQ5_1 || k_affine) {
      const float m = k_affine ? std::fabs(sp[2 * b + 1]) * dscale : sp[2 * b + 1];
      const uint16_t mb = float_to_half_bits(m);
      std::memcpy(p + 2, &mb, 2);
    }
  }
  return entry_of("w.weight", t, {out, in}, buf);
}

// The kernels hold 8-row tiles: a weight of `out` rows is padded to a
// multiple of 8 with zero rows.
int64_t padded_bytes(int64_t stored_bytes, int64_t out) {
  return stored_bytes / out * ((out + 7) / 8 * 8);
}

float h2f(uint16_t h) { return half_to_float(h); }

// The test's own reading of the stored int8 / int4 / nf4 tensors (the layouts
// of quant_formats.hpp). kernel_levels: nf4 with the kernels' int8 levels.
at::Tensor dequant_ours(const WeightStore& s, const std::string& stem, WeightFormat f, int64_t out,
                        int64_t in, bool kernel_levels) {
  at::Tensor w = at::empty({out, in});
  float* o = w.data_ptr<float>();
  if (f == WeightFormat::kInt8) {
    const int8_t* q = reinterpret_cast<const int8_t*>(s.entry(stem).data);
    const float* sc = reinterpret_cast<const float*>(s.entry(stem + "_scale").data);
    for (int64_t r = 0; r < out; ++r)
      for (int64_t i = 0; i < in; ++i) o[r * in + i] = q[r * in + i] * sc[r];
    return w;
  }
  const uint8_t* p = s.entry(stem + "_packed").data;
  const auto& se = s.entry(stem + "_scales");
  const uint16_t* sc = reinterpret_cast<const uint16_t*>(se.data);
  const uint16_t* mn =
      f == WeightFormat::kInt4 ? reinterpret_cast<const uint16_t*>(s.entry(stem + "_mins").data) : nullptr;
  const int64_t groups = se.shape[1], group = in / groups;
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t i = 0; i < in; ++i) {
      const uint8_t byte = p[r * in / 2 + (i / 32) * 16 + (i % 16)];
      const int q = (i % 32) < 16 ? (byte & 15) : (byte >> 4);
      const int64_t g = r * groups + i / group;
      if (f == WeightFormat::kInt4) {
        o[r * in + i] = q * h2f(sc[g]) + h2f(mn[g]);
      } else {
        o[r * in + i] = h2f(sc[g]) * (kernel_levels ? kNF4LevelsI8[q] / 127.0f : kNF4Levels[q]);
      }
    }
  }
  return w;
}

// x after the kernels' activation quantisation, dequantised: [n, in].
at::Tensor quantised_x(const at::Tensor& x) {
  QActs a;
  quantize_activations(x.data_ptr<float>(), x.size(0), x.size(1), a, KernelIsa::kScalar);
  at::Tensor out = at::empty_like(x);
  for (int64_t j = 0; j < x.size(0); ++j)
    for (int64_t i = 0; i < x.size(1); ++i)
      out.data_ptr<float>()[j * x.size(1) + i] =
          a.q[static_cast<size_t>(j * a.blocks * 32 + i)] * a.d[static_cast<size_t>(j * a.blocks + i / 32)];
  return out;
}

// max over elements of |y - ref| / (|w_r| |x_j|).
double worst_norm_error(const at::Tensor& y, const at::Tensor& ref, const at::Tensor& w,
                        const at::Tensor& x) {
  at::Tensor scale = at::outer(x.norm(2, 1), w.norm(2, 1)) + 1e-30;  // [n, out]
  return ((y - ref).abs() / scale).max().item<double>();
}

struct IsaGuard {
  explicit IsaGuard(std::optional<KernelIsa> isa) { set_kernel_isa_override(isa); }
  ~IsaGuard() { set_kernel_isa_override(std::nullopt); }
};

// The AMX-BF16 prompt path (forward_prompt): x and the kernel's weights
// rounded to bf16, products summed in fp32; rows after the prompt's take the
// int8 path (y: forward(x)) with its bits, and a row's bits do not depend on
// the other prompt rows.
void check_prompt_rows(const LinearKernel& kernel, const at::Tensor& x, const at::Tensor& y,
                       const at::Tensor& w_exact, const at::Tensor& w_kernel) {
  const int64_t n = x.size(0);
  at::Tensor yp = kernel.forward_prompt(x, n);
  REQUIRE(yp.sizes() == y.sizes());
  at::Tensor ref_b = at::linear(x.to(at::kBFloat16).to(at::kDouble), w_kernel.to(at::kBFloat16).to(at::kDouble));
  const double tight = worst_norm_error(yp.to(at::kDouble), ref_b, w_kernel, x);
  const double loose = worst_norm_error(yp, at::linear(x, w_exact), w_exact, x);
  INFO("bf16 prompt rows: error vs bf16-rounded reference " << tight << ", vs float reference " << loose);
  // int8 keeps q exact and scales the sums (more precise than the reference);
  // nf4 rounds level * (absmax / 127), the reference (level / 127) * absmax:
  // a bf16 step apart on some weights, 2^-8 of one term.
  const std::string name = kernel.name();
  CHECK(tight <= (name == "int8" || name == "nf4" ? 4e-3 : 1e-4));
  CHECK(loose <= 1e-2);
  const int64_t p = n / 2;
  if (p == 0) return;
  at::Tensor mixed = kernel.forward_prompt(x, p);
  CHECK(at::equal(mixed.narrow(0, 0, p), yp.narrow(0, 0, p)));
  CHECK(at::equal(mixed.narrow(0, p, n - p), y.narrow(0, p, n - p)));
  CHECK(at::equal(kernel.forward_prompt(x.narrow(0, n - 1, 1), 1), yp.narrow(0, n - 1, 1)));
}

// Runs `kernel` on both paths and checks it against w_exact (the format's
// values) and w_kernel (the values the integer kernel multiplies by).
void check_kernel(const LinearKernel& kernel, const at::Tensor& w_exact, const at::Tensor& w_kernel,
                  int64_t n) {
  const int64_t in = w_exact.size(1);
  at::Tensor x = at::randn({n, in});
  at::Tensor ref = at::linear(x, w_exact);
  at::Tensor ref_q = at::linear(quantised_x(x), w_kernel);
  // Scalar, AVX2 (maddubs), AVX-512 VNNI and the detected best (AMX tiles
  // where the CPU has them); a forced ISA above the CPU's is clamped to what
  // it supports.
  at::Tensor y_vnni;
  for (auto isa : {std::optional<KernelIsa>(KernelIsa::kScalar), std::optional<KernelIsa>(KernelIsa::kAvx2),
                   std::optional<KernelIsa>(KernelIsa::kAvx512), std::optional<KernelIsa>()}) {
    IsaGuard guard(isa);
    INFO("isa " << kernel_isa_name(active_kernel_isa()) << " n " << n << " out " << w_exact.size(0)
                << " in " << in << " kernel " << kernel.name());
    at::Tensor y = kernel.forward(x);
    REQUIRE(y.sizes() == ref.sizes());
    const double tight = worst_norm_error(y, ref_q, w_kernel, x);
    const double loose = worst_norm_error(y, ref, w_exact, x);
    INFO("error vs quantised-x reference " << tight << ", vs float reference " << loose);
    CHECK(tight <= 2e-5);
    CHECK(loose <= 1e-2);
    // The AMX kernel does the VNNI kernel's arithmetic: the same bits.
    if (active_kernel_isa() == KernelIsa::kAvx512) y_vnni = y;
    if (active_kernel_isa() == KernelIsa::kAmx && y_vnni.defined()) CHECK(at::equal(y, y_vnni));
    if (bf16_prompt_rows()) check_prompt_rows(kernel, x, y, w_exact, w_kernel);
    // bf16 input: output in bf16, same values up to bf16 rounding.
    at::Tensor yb = kernel.forward(x.to(at::kBFloat16));
    CHECK(yb.scalar_type() == at::kBFloat16);
    CHECK(worst_norm_error(yb.to(at::kFloat), ref, w_exact, x) <= 2e-2);
  }
}

std::vector<int64_t> batch_sizes(int64_t out, int64_t in) {
  // n = 33 on the big shapes only once per format, to keep the scalar path's
  // run time down.
  if (out * in > 600000) return {1, 5};
  return {1, 2, 5, 16, 33};
}

const std::vector<int64_t> kOuts = {1, 7, 64, 576, 1536};
const std::vector<int64_t> kIns = {32, 64, 576, 1536};

}  // namespace

TEST_CASE("quant: activation quantisation is the same on every path", "[quant]") {
  at::manual_seed(1);
  at::Tensor x = at::randn({3, 576}) * 3.0;
  QActs a, b;
  quantize_activations(x.data_ptr<float>(), 3, 576, a, KernelIsa::kScalar);
  quantize_activations(x.data_ptr<float>(), 3, 576, b, detected_kernel_isa());
  CHECK(a.q == b.q);
  CHECK(a.d == b.d);
  CHECK(a.s == b.s);
  // Rows up to the next multiple of 16 are zero, also in a buffer that held
  // more rows before (the AMX kernel's tile loads read them).
  at::Tensor big = at::randn({40, 576});
  quantize_activations(big.data_ptr<float>(), 40, 576, b, detected_kernel_isa());
  quantize_activations(x.data_ptr<float>(), 3, 576, b, detected_kernel_isa());
  REQUIRE(b.q.size() == static_cast<size_t>(kQActsRowGroup * 576));
  REQUIRE(b.d.size() == static_cast<size_t>(kQActsRowGroup * 18));
  CHECK(std::all_of(b.q.begin() + 3 * 576, b.q.end(), [](int8_t v) { return v == 0; }));
  CHECK(std::all_of(b.d.begin() + 3 * 18, b.d.end(), [](float v) { return v == 0.0f; }));
  CHECK(std::all_of(b.s.begin() + 3 * 18, b.s.end(), [](float v) { return v == 0.0f; }));
  CHECK(std::equal(a.q.begin(), a.q.begin() + 3 * 576, b.q.begin()));
  // Rounding bound: |x - d q| <= d / 2 everywhere.
  for (int64_t i = 0; i < 3 * 576; ++i) {
    const float d = a.d[static_cast<size_t>(i / 32)];
    CHECK(std::fabs(x.data_ptr<float>()[i] - d * a.q[static_cast<size_t>(i)]) <= d * 0.5f * 1.0001f);
  }
}

TEST_CASE("quant: gguf-native Q8_0 / Q4_x / Q5_x / K-quant kernels match dequantised ATen",
          "[quant]") {
  at::manual_seed(2);
  auto q = make_gguf_native_quantizer();
  for (WeightType t : {WeightType::kQ8_0, WeightType::kQ4_0, WeightType::kQ4_1, WeightType::kQ5_0,
                       WeightType::kQ5_1, WeightType::kQ4_K,
                       WeightType::kQ5_K, WeightType::kQ6_K}) {
    const bool k_quant = weight_type_block_elems(t) == 256;
    for (int64_t out : kOuts) {
      for (int64_t in : k_quant ? std::vector<int64_t>{256, 1536} : kIns) {
        WeightStore store;
        TensorEntry e = random_gguf(t, out, in);
        // Q/K-style row permutation where the rows split into 2 heads.
        if (out % 4 == 0) e.unpermute_heads = 2;
        store.put(e);
        LinearSpec spec{"w", "w", LinearRole::kProjection, out, in, false};
        auto k = q->make_kernel(spec, store, ModelOptions{});
        REQUIRE(k);
        INFO(weight_type_name(t) << " out " << out << " in " << in);
        // Q4_K / Q5_K tiles hold their six-bit scales and mins unpacked
        // (a byte each): 1184 / 1152 and 1440 / 1408 bytes per 8 super-blocks.
        const int64_t stored = padded_bytes(static_cast<int64_t>(e.nbytes), out);
        CHECK(k->weight_bytes() >= stored);
        CHECK(static_cast<double>(k->weight_bytes()) <= 1.03 * static_cast<double>(stored));
        if (!k_quant) CHECK(k->weight_bytes() == stored);
        at::Tensor w = store.tensor("w.weight", at::kFloat);  // dequantised, HF row order
        for (int64_t n : batch_sizes(out, in)) check_kernel(*k, w, w, n);
        // Lookups (the tied embedding) read the tiles: the stored values exactly.
        at::Tensor ids = at::tensor(std::vector<int64_t>{out - 1, 0, out / 2}, at::kLong);
        CHECK(at::equal(k->gather_rows(ids, at::kFloat), w.index_select(0, ids)));
      }
    }
  }
}

TEST_CASE("quant: int8 / int4 / nf4 kernels match dequantised ATen", "[quant]") {
  at::manual_seed(3);
  struct Case {
    WeightFormat f;
    int64_t group;
  };
  for (Case c : {Case{WeightFormat::kInt8, 32}, Case{WeightFormat::kInt4, 32},
                 Case{WeightFormat::kInt4, 64}, Case{WeightFormat::kInt4, 128},
                 Case{WeightFormat::kNF4, 32}, Case{WeightFormat::kNF4, 128}}) {
    WeightQuantOptions o;
    o.name = weight_format_name(c.f);
    o.projections = c.f;
    o.group = c.group;
    auto q = make_weight_quantizer(o);
    for (int64_t out : kOuts) {
      for (int64_t in : kIns) {
        if (in % c.group != 0) continue;
        const std::string w = "model.layers.0.mlp.up_proj";
        WeightStore store;
        at::Tensor wf = at::randn({out, in}) * 0.05;
        auto buf = bytes_of(static_cast<size_t>(out * in * 4));
        std::memcpy(buf->data(), wf.data_ptr<float>(), buf->size());
        store.put(entry_of(w + ".weight", WeightType::kF32, {out, in}, buf));
        QuantizeReport rep = q->quantize(store);
        CHECK(rep.tensors_changed == 1);
        CHECK(rep.bytes_after < rep.bytes_before);
        LinearSpec spec{w, w, LinearRole::kProjection, out, in, false};
        auto k = q->make_kernel(spec, store, ModelOptions{});
        REQUIRE(k);
        CHECK(k->weight_bytes() == padded_bytes(rep.bytes_after, out));
        const std::string stem = w + ".weight";
        at::Tensor exact = dequant_ours(store, stem, c.f, out, in, false);
        at::Tensor kern = dequant_ours(store, stem, c.f, out, in, true);
        for (int64_t n : batch_sizes(out, in)) check_kernel(*k, exact, kern, n);
        // Embedding lookup dequantises exactly the requested rows.
        at::Tensor ids = at::tensor(std::vector<int64_t>{out - 1, 0}, at::kLong);
        at::Tensor rows = k->gather_rows(ids, at::kFloat);
        CHECK(at::equal(rows, exact.index_select(0, ids)));
      }
    }
  }
}

TEST_CASE("quant: int8 handles input sizes that are not a multiple of 32", "[quant]") {
  at::manual_seed(4);
  auto q = make_weight_quantizer(WeightQuantOptions{});
  for (int64_t in : {1, 17, 33, 176}) {
    const std::string w = "model.layers.0.mlp.down_proj";
    WeightStore store;
    at::Tensor wf = at::randn({9, in});
    auto buf = bytes_of(static_cast<size_t>(9 * in * 4));
    std::memcpy(buf->data(), wf.data_ptr<float>(), buf->size());
    store.put(entry_of(w + ".weight", WeightType::kF32, {9, in}, buf));
    q->quantize(store);
    auto k = q->make_kernel(LinearSpec{w, w, LinearRole::kProjection, 9, in, false}, store,
                            ModelOptions{});
    REQUIRE(k);
    at::Tensor exact = dequant_ours(store, w + ".weight", WeightFormat::kInt8, 9, in, false);
    for (int64_t n : {1, 3, 6}) check_kernel(*k, exact, exact, n);
  }
}

TEST_CASE("quant: a row's output does not depend on the rows batched with it", "[quant]") {
  // One integer path for any row count (prompts no longer detour through a
  // dequantised GEMM), and each activation row is accumulated alone: the
  // rows of a 300-row batch are bit-identical to the same rows run alone, in
  // groups of 4, 2 and 1, whatever the kernel's register blocking.
  at::manual_seed(5);
  auto native = make_gguf_native_quantizer();
  for (WeightType t : {WeightType::kQ4_1, WeightType::kQ6_K}) {
    WeightStore store;
    store.put(random_gguf(t, 100, 512));
    auto k = native->make_kernel(LinearSpec{"w", "w", LinearRole::kProjection, 100, 512, false}, store,
                                 ModelOptions{});
    REQUIRE(k);
    at::Tensor x = at::randn({300, 512});
    at::Tensor all = k->forward(x);
    for (int64_t row : {0, 1, 150, 297, 299}) {
      INFO(weight_type_name(t) << " row " << row);
      CHECK(at::equal(k->forward(x.narrow(0, row, 1)), all.narrow(0, row, 1)));
    }
    CHECK(at::equal(k->forward(x.narrow(0, 5, 7)), all.narrow(0, 5, 7)));
    // Grouped with other projections of the same input: the same values.
    LinearSpec spec{"w", "w", LinearRole::kProjection, 100, 512, false};
    Linear a(std::shared_ptr<LinearKernel>(native->make_kernel(spec, store, ModelOptions{})));
    Linear b(std::shared_ptr<LinearKernel>(native->make_kernel(spec, store, ModelOptions{})));
    const std::vector<at::Tensor> ys = forward_all(x, {&a, &b});
    CHECK(at::equal(ys[0], all));
    CHECK(at::equal(ys[1], all));
  }
}

namespace {

// The GGUF block types udaci repacks into tiles.
const std::vector<WeightType> kTiledGgufTypes = {WeightType::kQ8_0, WeightType::kQ4_0, WeightType::kQ4_1,
                                                 WeightType::kQ5_0, WeightType::kQ5_1, WeightType::kQ4_K,
                                                 WeightType::kQ5_K, WeightType::kQ6_K};

// A gguf-native kernel over a random [out, in] weight of type t, put in `store`.
std::unique_ptr<LinearKernel> random_native_kernel(WeightStore& store, WeightType t, int64_t out, int64_t in) {
  store.put(random_gguf(t, out, in));
  auto k = make_gguf_native_quantizer()->make_kernel(
      LinearSpec{"w", "w", LinearRole::kProjection, out, in, false}, store, ModelOptions{});
  REQUIRE(k);
  return k;
}

}  // namespace

TEST_CASE("quant: a decode row's bits do not depend on its row group, its tile pair or the thread split",
          "[quant]") {
  // The VNNI kernel runs rows in passes of 4, 3, 2 and 1, and tiles two at a
  // time in 512-bit registers (one alone in 256-bit registers at the end of
  // a thread's range, which moves with the thread count): every lane sees
  // the same operations, so a row computed alone, in any group, on any
  // split has the same bits.
  at::manual_seed(7);
  IsaGuard vnni(KernelIsa::kAvx512);  // clamped to the CPU's best below AVX-512
  const int threads_before = aten_threads();
  for (WeightType t : kTiledGgufTypes) {
    for (int64_t out : {72, 100, 1536}) {  // 9, 13 (the last tile ragged) and 192 tiles
      const int64_t in = weight_type_block_elems(t) == 256 ? 512 : 576;
      WeightStore store;
      auto k = random_native_kernel(store, t, out, in);
      at::Tensor x = at::randn({7, in});
      set_threads(2);
      const at::Tensor all = k->forward(x);  // rows 0-3 in a pass of 4, rows 4-6 in one of 3
      for (int64_t n = 1; n <= 6; ++n) {
        INFO(weight_type_name(t) << " out " << out << " rows " << n);
        CHECK(at::equal(k->forward(x.narrow(0, 0, n)), all.narrow(0, 0, n)));
        CHECK(at::equal(k->forward(x.narrow(0, 7 - n, n)), all.narrow(0, 7 - n, n)));
      }
      set_threads(1);
      INFO(weight_type_name(t) << " out " << out << " one thread");
      CHECK(at::equal(k->forward(x), all));
    }
  }
  set_threads(threads_before);
}

TEST_CASE("quant: bf16 prompt panels made from the tiles' codes give the byte panels' bits", "[quant]") {
  // The prompt path converts pairs of tiles (4-bit, NF4 and 8-bit codes)
  // straight from their codes, a quad of tiles while the products of the
  // quad before run; a tile without a partner (an 8-row weight) goes through
  // the byte panel. So rows of a big weight must equal the same rows held
  // alone.
  if (!bf16_prompt_rows()) {
    WARN("this CPU (or its kernel) offers no AMX-BF16: the bf16 prompt panels are not exercised here");
    return;
  }
  at::manual_seed(7);
  const int64_t out = 200;  // 25 tiles: 6 quads and a lone tile
  auto rows_alone = [](const TensorEntry& e, int64_t r0) {
    const int64_t row_bytes = static_cast<int64_t>(e.nbytes) / e.shape[0];
    auto buf = bytes_of(static_cast<size_t>(8 * row_bytes));
    std::memcpy(buf->data(), e.data + r0 * row_bytes, buf->size());
    return entry_of(e.name, e.type, {8, e.shape[1]}, buf);
  };
  for (WeightType t : {WeightType::kQ4_0, WeightType::kQ4_1, WeightType::kQ4_K, WeightType::kQ8_0}) {
    const int64_t in = weight_type_block_elems(t) == 256 ? 512 : 576;
    WeightStore store;
    auto k = random_native_kernel(store, t, out, in);
    const TensorEntry& e = store.entry("w.weight");
    at::Tensor x = at::randn({45, in});
    for (int64_t n : {1, 16, 45}) {
      const at::Tensor y = k->forward_prompt(x.narrow(0, 0, n), n);
      for (int64_t r0 : {0, 8, 40, 96, 184, 192}) {  // left / right halves of pairs, either panel, the lone tile
        WeightStore one;
        one.put(rows_alone(e, r0));
        auto k1 = make_gguf_native_quantizer()->make_kernel(
            LinearSpec{"w", "w", LinearRole::kProjection, 8, in, false}, one, ModelOptions{});
        REQUIRE(k1);
        INFO(weight_type_name(t) << " n " << n << " rows " << r0);
        CHECK(at::equal(k1->forward_prompt(x.narrow(0, 0, n), n), y.narrow(1, r0, 8)));
      }
    }
  }
  // udaci's int4, int8 and nf4: scales per row or per group of a row, so
  // rows quantise alone to the same values.
  for (WeightFormat f : {WeightFormat::kInt4, WeightFormat::kInt8, WeightFormat::kNF4}) {
    WeightQuantOptions o;
    o.name = weight_format_name(f);
    o.projections = f;
    o.group = 32;
    auto q = make_weight_quantizer(o);
    const std::string w = "model.layers.0.mlp.up_proj";
    at::Tensor wf = at::randn({out, 576}) * 0.05;
    auto quantised_kernel = [&](const at::Tensor& rows, WeightStore& store) {
      auto buf = bytes_of(static_cast<size_t>(rows.numel() * 4));
      std::memcpy(buf->data(), rows.contiguous().data_ptr<float>(), buf->size());
      store.put(entry_of(w + ".weight", WeightType::kF32, {rows.size(0), 576}, buf));
      q->quantize(store);
      auto k = q->make_kernel(LinearSpec{w, w, LinearRole::kProjection, rows.size(0), 576, false}, store,
                              ModelOptions{});
      REQUIRE(k);
      return k;
    };
    WeightStore all_store, first_store, right_store, lone_store;
    auto all = quantised_kernel(wf, all_store);
    auto first = quantised_kernel(wf.narrow(0, 0, 8), first_store);
    auto right = quantised_kernel(wf.narrow(0, 104, 8), right_store);
    auto lone = quantised_kernel(wf.narrow(0, 192, 8), lone_store);
    at::Tensor x = at::randn({45, 576});
    const at::Tensor y = all->forward_prompt(x, 45);
    INFO(weight_format_name(f));
    CHECK(at::equal(first->forward_prompt(x, 45), y.narrow(1, 0, 8)));
    CHECK(at::equal(right->forward_prompt(x, 45), y.narrow(1, 104, 8)));
    CHECK(at::equal(lone->forward_prompt(x, 45), y.narrow(1, 192, 8)));
  }
}

TEST_CASE("quant: the AMX kernel gives the VNNI kernel's bits for every format and row count", "[quant]") {
  // Odd tile counts (a weight tile without a partner), rows not a multiple of
  // 8, and activation row counts around the 16-row tile: full tiles, ragged
  // tails of 1..15 and the VNNI path below 8 rows.
  if (detected_kernel_isa() != KernelIsa::kAmx) {
    WARN("this CPU (or its kernel) offers no AMX-INT8: the AMX kernel is not exercised here; the "
         "other kernels were checked above");
    return;
  }
  at::manual_seed(6);
  for (WeightType t : kTiledGgufTypes) {
    for (int64_t out : {7, 24, 72, 1536}) {
      const int64_t in = weight_type_block_elems(t) == 256 ? 512 : 576;
      WeightStore store;
      auto k = random_native_kernel(store, t, out, in);
      at::Tensor x = at::randn({83, in});
      for (int64_t n : {3, 7, 8, 9, 16, 17, 24, 31, 32, 45, 83}) {
        INFO(weight_type_name(t) << " out " << out << " n " << n);
        at::Tensor xn = x.narrow(0, 0, n);
        at::Tensor amx = k->forward(xn);
        IsaGuard guard(KernelIsa::kAvx512);
        CHECK(at::equal(amx, k->forward(xn)));
      }
    }
  }
  struct Case {
    WeightFormat f;
    int64_t group;
  };
  for (Case c : {Case{WeightFormat::kInt8, 32}, Case{WeightFormat::kInt4, 128}, Case{WeightFormat::kNF4, 64}}) {
    WeightQuantOptions o;
    o.name = weight_format_name(c.f);
    o.projections = c.f;
    o.group = c.group;
    auto q = make_weight_quantizer(o);
    const std::string w = "model.layers.0.mlp.up_proj";
    for (int64_t out : {9, 1536}) {
      WeightStore store;
      at::Tensor wf = at::randn({out, 1536}) * 0.05;
      auto buf = bytes_of(static_cast<size_t>(out * 1536 * 4));
      std::memcpy(buf->data(), wf.data_ptr<float>(), buf->size());
      store.put(entry_of(w + ".weight", WeightType::kF32, {out, 1536}, buf));
      q->quantize(store);
      auto k = q->make_kernel(LinearSpec{w, w, LinearRole::kProjection, out, 1536, false}, store,
                              ModelOptions{});
      REQUIRE(k);
      for (int64_t n : {5, 16, 40}) {
        INFO(weight_format_name(c.f) << " out " << out << " n " << n);
        at::Tensor x = at::randn({n, 1536});
        at::Tensor amx = k->forward(x);
        IsaGuard guard(KernelIsa::kAvx512);
        CHECK(at::equal(amx, k->forward(x)));
      }
    }
  }
}
