// The CUDA kernels (src/kernels/cuda) against ATen references computed on the
// CPU in fp32/fp64, over grids of shapes and the three activation dtypes
// (issue #10). Every test that needs a GPU skips with a warning when none is
// visible, so the suite can be built and run anywhere.
//
// Tolerances (stated per check below) follow from the arithmetic: the
// kernels accumulate in fp32 in another order than the reference (~1e-6
// relative), and a 16-bit output is rounded once (2^-9 relative for bf16,
// 2^-12 for fp16); inputs are rounded to the dtype before the reference sees
// them, so input rounding is not part of the error.
#include "udaci_catch.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cache/cache_strategy.hpp"
#include "model/model_loader.hpp"
#include "kernels/cuda/cuda_graph.hpp"
#include "kernels/cuda/cuda_ops.hpp"
#include "kernels/cuda/kernels.hpp"
#include "model/linear.hpp"
#include "model/llama_model.hpp"
#include "quant/qmatrix.hpp"
#include "quant/quant_formats.hpp"
#include "quant/quantized_linear.hpp"
#include "quant/quantizers.hpp"
#include "engine/registry.hpp"
#include "slot_decoder_check.hpp"
#include "test_util.hpp"

using namespace udaci;

namespace {

#define UDACI_REQUIRE_GPU()                                                      \
  do {                                                                           \
    if (!cuda::device_available()) {                                             \
      WARN("no CUDA device is visible: skipping (this test needs a GPU)");       \
      return;                                                                    \
    }                                                                            \
  } while (0)

const at::ScalarType kDtypes[] = {at::kFloat, at::kHalf, at::kBFloat16};

// Relative tolerance of one rounding to `t` plus fp32 summation noise.
double output_tol(at::ScalarType t) {
  return t == at::kFloat ? 2e-5 : t == at::kHalf ? 2e-3 : 1e-2;
}

at::Device gpu() { return at::Device(at::kCUDA, 0); }

// A QuantizedKernelParts of `fmt` for w [out, in] fp32, in buffers it owns.
QuantizedKernelParts quantize(const at::Tensor& w, QFormat fmt, int64_t group) {
  const int64_t out = w.size(0), in = w.size(1);
  QuantizedKernelParts p;
  QMatrix& m = p.matrix;
  m.format = fmt;
  m.rows = out;
  m.cols = in;
  m.group = group;
  auto buf = [&](size_t n) {
    auto b = std::make_shared<std::vector<uint8_t>>(n);
    p.owners.push_back(b);
    return b->data();
  };
  const float* src = w.data_ptr<float>();
  if (fmt == QFormat::kI8Row) {
    auto* q = reinterpret_cast<int8_t*>(buf(static_cast<size_t>(out * in)));
    auto* s = reinterpret_cast<float*>(buf(static_cast<size_t>(out) * 4));
    quantize_int8_rows(src, out, in, q, s);
    m.data = reinterpret_cast<const uint8_t*>(q);
    m.row_bytes = in;
    m.row_scale = s;
  } else {
    const bool nf4 = fmt == QFormat::kNF4;
    const int64_t groups = in / group;
    auto* packed = buf(static_cast<size_t>(out * in / 2));
    auto* scales = reinterpret_cast<uint16_t*>(buf(static_cast<size_t>(out * groups) * 2));
    auto* mins = nf4 ? nullptr : reinterpret_cast<uint16_t*>(buf(static_cast<size_t>(out * groups) * 2));
    quantize_int4_groups(src, out, in, group, nf4, packed, scales, mins);
    m.data = packed;
    m.row_bytes = in / 2;
    m.scales = scales;
    m.mins = mins;
  }
  return p;
}

// The exact weight of a QMatrix, [rows, cols] fp32 (CPU reference).
at::Tensor dequantized(const QMatrix& m) {
  at::Tensor t = at::empty({m.rows, m.cols});
  for (int64_t r = 0; r < m.rows; ++r) qmatrix_dequantize_row(m, r, t.data_ptr<float>() + r * m.cols);
  return t;
}

}  // namespace

TEST_CASE("cuda: the kernels' NF4 code book is the CPU's", "[cuda]") {
  float levels[16];
  cuda::nf4_levels(levels);
  for (int i = 0; i < 16; ++i) CHECK(levels[i] == kNF4Levels[i]);
}

// Tolerance per element y[j, r]: output_tol(dtype) * |W_r| * |x_j| (the norms
// bound |y| and the summation error) against fp64 W_exact x, x as rounded.
TEST_CASE("cuda: quantised GEMV / GEMM matches dequantise-then-matmul", "[cuda]") {
  UDACI_REQUIRE_GPU();
  at::manual_seed(7);
  struct Shape { int64_t out, in, group; };
  const Shape shapes[] = {{64, 128, 32}, {200, 576, 64}, {96, 2048, 128}, {130, 1536, 32}};
  const QFormat formats[] = {QFormat::kI8Row, QFormat::kI4Affine, QFormat::kNF4};
  const int64_t batches[] = {1, 3, 8, 17};  // 17: the dequantise + cuBLAS path
  for (const Shape& s : shapes) {
    const at::Tensor w = at::randn({s.out, s.in}) * 0.05;
    for (QFormat f : formats) {
      QuantizedKernelParts parts = quantize(w, f, s.group);
      const at::Tensor w_exact = dequantized(parts.matrix).to(at::kDouble);
      std::unique_ptr<LinearKernel> k = make_quantized_cuda_kernel(parts, gpu());
      for (at::ScalarType dt : kDtypes) {
        for (int64_t n : batches) {
          INFO("format " << qformat_name(f) << ", [" << s.out << ", " << s.in << "] group " << s.group
                         << ", dtype " << c10::toString(dt) << ", n " << n);
          const at::Tensor x = at::randn({n, s.in}).to(dt);
          const at::Tensor y = k->forward(x.to(gpu())).cpu().to(at::kDouble);
          REQUIRE(y.sizes() == at::IntArrayRef({n, s.out}));
          const at::Tensor ref = at::matmul(x.to(at::kDouble), w_exact.t());
          const at::Tensor bound = at::outer(x.to(at::kDouble).norm(2, {1}), w_exact.norm(2, {1}));
          // The cuBLAS path rounds W to the dtype first: one more rounding.
          const double tol = output_tol(dt) * (n > cuda::kMaxGemvRows && dt != at::kFloat ? 2 : 1);
          const double worst = ((y - ref).abs() / bound).max().item<double>();
          CHECK(worst <= tol);
        }
      }
      // Embedding rows: the same exact values (fp32) as the CPU dequantiser.
      const at::Tensor ids = at::tensor(std::vector<int64_t>{0, s.out - 1, 5, 5},
                                        at::TensorOptions().dtype(at::kLong));
      const at::Tensor rows = k->gather_rows(ids.to(gpu()), at::kFloat).cpu().to(at::kDouble);
      CHECK(at::allclose(rows, w_exact.index_select(0, ids), 1e-6, 1e-7));
    }
  }
}

TEST_CASE("cuda: dense GEMV matches the matrix product, other shapes fall back", "[cuda]") {
  UDACI_REQUIRE_GPU();
  at::manual_seed(11);
  struct Shape { int64_t out, in; };
  // 2048 / 8192: Llama-3.2-1B's projections; 576 / 1536: SmolLM2's; 520
  // columns: not a whole number of 16-byte loads per row in fp32 ... fp16 is.
  const Shape shapes[] = {{512, 2048}, {2048, 8192}, {130, 576}, {1536, 576}, {33, 520}};
  const int64_t batches[] = {1, 2, 5, 8, 9};  // 9: more rows than the kernel takes
  for (const Shape& s : shapes) {
    const at::Tensor w32 = at::randn({s.out, s.in}) * 0.05;
    for (at::ScalarType dt : kDtypes) {
      const at::Tensor w = w32.to(dt);
      const at::Tensor wg = w.to(gpu());
      const at::Tensor w_exact = w.to(at::kDouble);
      const int64_t elem = w.element_size();
      for (int64_t n : batches) {
        INFO("[" << s.out << ", " << s.in << "], dtype " << c10::toString(dt) << ", n " << n);
        const at::Tensor x = at::randn({n, s.in}).to(dt);
        const at::Tensor y = cuda::dense_gemv(x.to(gpu()), wg);
        const bool applies = n <= cuda::kMaxGemvRows && (s.in * elem) % 16 == 0;
        REQUIRE(y.defined() == applies);
        if (!applies) continue;
        REQUIRE(y.sizes() == at::IntArrayRef({n, s.out}));
        REQUIRE(y.scalar_type() == dt);
        const at::Tensor yd = y.cpu().to(at::kDouble);
        const at::Tensor ref = at::matmul(x.to(at::kDouble), w_exact.t());
        const at::Tensor bound = at::outer(x.to(at::kDouble).norm(2, {1}), w_exact.norm(2, {1}));
        CHECK(((yd - ref).abs() / bound).max().item<double>() <= output_tol(dt));
      }
      // Through the model's dense kernel: [batch, seq, in] inputs, the GEMV
      // for few rows and cuBLAS beyond, both equal to the product.
      std::unique_ptr<LinearKernel> k = make_dense_kernel(wg);
      for (int64_t n : {int64_t{1}, int64_t{4}, int64_t{24}}) {
        INFO("dense kernel, [" << s.out << ", " << s.in << "], dtype " << c10::toString(dt) << ", rows " << n);
        const at::Tensor x = at::randn({1, n, s.in}).to(dt);
        const at::Tensor y = k->forward(x.to(gpu())).cpu().to(at::kDouble);
        REQUIRE(y.sizes() == at::IntArrayRef({1, n, s.out}));
        const at::Tensor ref = at::matmul(x.to(at::kDouble), w_exact.t());
        const at::Tensor bound =
            at::outer(x.to(at::kDouble).view({n, s.in}).norm(2, {1}), w_exact.norm(2, {1})).view({1, n, s.out});
        // cuBLAS may round through reduced precision on 16-bit inputs.
        CHECK(((y - ref).abs() / bound).max().item<double>() <= 2 * output_tol(dt));
      }
    }
  }
  // The fused forms against the same references: q/k/v in one launch (with a
  // residual on one of them), the residual added, SwiGLU applied.
  for (at::ScalarType dt : kDtypes) {
    for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{8}}) {
      INFO("fused, dtype " << c10::toString(dt) << ", n " << n);
      const int64_t in = 576;
      std::vector<at::Tensor> ws, wg;
      for (int64_t rows : {int64_t{576}, int64_t{192}, int64_t{200}}) {
        ws.push_back((at::randn({rows, in}) * 0.05).to(dt));
        wg.push_back(ws.back().to(gpu()));
      }
      const at::Tensor x = at::randn({n, in}).to(dt);
      const at::Tensor xd = x.to(at::kDouble);
      const at::Tensor r1 = at::randn({n, 192}).to(dt);
      const std::vector<at::Tensor> ys = cuda::dense_gemv_group(x.to(gpu()), wg, {at::Tensor(), r1.to(gpu()), at::Tensor()});
      REQUIRE(ys.size() == 3);
      for (size_t m = 0; m < 3; ++m) {
        INFO("part " << m);
        const at::Tensor wd = ws[m].to(at::kDouble);
        at::Tensor ref = at::matmul(xd, wd.t());
        at::Tensor bound = at::outer(xd.norm(2, {1}), wd.norm(2, {1}));
        if (m == 1) {
          ref = ref + r1.to(at::kDouble);
          bound = bound + r1.to(at::kDouble).abs();
        }
        REQUIRE(ys[m].sizes() == at::IntArrayRef({n, ws[m].size(0)}));
        CHECK(((ys[m].cpu().to(at::kDouble) - ref).abs() / bound).max().item<double>() <= output_tol(dt));
      }
      // SwiGLU: silu(x Wg^T) * (x Wu^T), gate and up of one shape.
      const at::Tensor wgate = (at::randn({200, in}) * 0.05).to(dt), wup = (at::randn({200, in}) * 0.05).to(dt);
      const at::Tensor a = cuda::dense_swiglu(x.to(gpu()), wgate.to(gpu()), wup.to(gpu()));
      REQUIRE(a.defined());
      const at::Tensor g = at::matmul(xd, wgate.to(at::kDouble).t()), u = at::matmul(xd, wup.to(at::kDouble).t());
      const at::Tensor ref = g * at::sigmoid(g) * u;
      const at::Tensor bound = at::outer(xd.norm(2, {1}), wgate.to(at::kDouble).norm(2, {1})) *
                               at::outer(xd.norm(2, {1}), wup.to(at::kDouble).norm(2, {1}));
      CHECK(((a.cpu().to(at::kDouble) - ref).abs() / (bound + 1e-6)).max().item<double>() <= 2 * output_tol(dt));
      // A residual that is not [n, rows], a gate/up pair of two shapes: not taken.
      CHECK(cuda::dense_gemv_group(x.to(gpu()), wg, {at::Tensor(), at::randn({n, 7}).to(dt).to(gpu()), at::Tensor()})
                .empty());
      CHECK_FALSE(cuda::dense_swiglu(x.to(gpu()), wg[1], wg[2]).defined());
    }
  }
  // Not applicable: a weight of another dtype, a CPU input.
  const at::Tensor w = at::randn({64, 128}).to(gpu());
  CHECK_FALSE(cuda::dense_gemv(at::randn({1, 128}).to(gpu()).to(at::kHalf), w).defined());
  CHECK_FALSE(cuda::dense_gemv(at::randn({1, 128}), w).defined());
}

// Against HF's formula in ATen on the CPU (fp32 normalise, cast, scale):
// rtol/atol 1e-5 (fp32), 2e-3 (fp16), 1e-2 (bf16).
TEST_CASE("cuda: fused RMSNorm matches the HF formula", "[cuda]") {
  UDACI_REQUIRE_GPU();
  at::manual_seed(11);
  const double eps = 1e-5;
  for (at::ScalarType dt : kDtypes) {
    for (int64_t rows : {1, 5, 64}) {
      for (int64_t cols : {100, 576, 2048}) {
        INFO("dtype " << c10::toString(dt) << ", [" << rows << ", " << cols << "]");
        const at::Tensor x = (at::randn({rows, cols}) * 3).to(dt);
        const at::Tensor w = (at::rand({cols}) + 0.5).to(dt);
        const at::Tensor xf = x.to(at::kFloat);
        const at::Tensor normed = xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps);
        const at::Tensor ref = (w * normed.to(dt)).to(at::kFloat);
        const at::Tensor y = cuda::rms_norm(x.to(gpu()), w.to(gpu()), eps).cpu().to(at::kFloat);
        const double tol = dt == at::kFloat ? 1e-5 : dt == at::kHalf ? 2e-3 : 1e-2;
        CHECK(at::allclose(y, ref, tol, tol));
      }
    }
  }
}

namespace {

// HF rotate-half rotary in fp32 (model/rope.cpp's formula): x [n, h, d].
at::Tensor rope_ref(const at::Tensor& x, const at::Tensor& pos, const at::Tensor& inv) {
  const int64_t half = x.size(2) / 2;
  const at::Tensor freqs = at::outer(pos.to(at::kFloat), inv);  // [n, d/2]
  const at::Tensor emb = at::cat({freqs, freqs}, -1).unsqueeze(1);
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor rot = at::cat({-xf.narrow(2, half, half), xf.narrow(2, 0, half)}, -1);
  return xf * emb.cos() + rot * emb.sin();
}

struct CacheSetup {
  cuda::KvCacheTensors gpu;
  std::vector<std::vector<int32_t>> tables;  // per slot (paged)
  int64_t capacity = 0;
  // Row of token p of slot s.
  int64_t row(int64_t s, int64_t p) const {
    if (tables.empty()) return s * capacity + p;
    return static_cast<int64_t>(tables[static_cast<size_t>(s)][static_cast<size_t>(p / gpu.block_size)]) *
               gpu.block_size + p % gpu.block_size;
  }
};

// A cache for `slots` sequences of up to `max_len` tokens: paged (blocks of
// 16 handed out in a shuffled order, so no slot's blocks are adjacent) or
// contiguous. K/V zero, or random when `fill`.
CacheSetup make_cache(bool paged, int64_t slots, int64_t max_len, int64_t kvh, int64_t d,
                      at::ScalarType dt, bool fill, std::mt19937& rng) {
  CacheSetup c;
  int64_t rows;
  if (paged) {
    const int64_t B = 16, per = (max_len + B - 1) / B;
    std::vector<int32_t> ids(static_cast<size_t>(slots * per + 3));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    at::Tensor t = at::empty({slots, per}, at::TensorOptions().dtype(at::kInt));
    for (int64_t s = 0; s < slots; ++s) {
      c.tables.emplace_back(ids.begin() + s * per, ids.begin() + (s + 1) * per);
      for (int64_t b = 0; b < per; ++b) t[s][b] = c.tables.back()[static_cast<size_t>(b)];
    }
    c.gpu.block_tables = t.to(gpu());
    c.gpu.block_size = B;
    rows = static_cast<int64_t>(ids.size()) * B;
  } else {
    c.capacity = max_len;
    c.gpu.seq_capacity = max_len;
    rows = slots * max_len;
  }
  const auto opts = at::TensorOptions().dtype(dt).device(gpu());
  c.gpu.k = fill ? at::randn({rows, kvh, d}).to(opts) : at::zeros({rows, kvh, d}, opts);
  c.gpu.v = fill ? at::randn({rows, kvh, d}).to(opts) : at::zeros({rows, kvh, d}, opts);
  return c;
}

struct Heads { int64_t heads, kv_heads, dim; };
const Heads kHeadShapes[] = {{9, 3, 64}, {32, 8, 64}, {16, 1, 128}, {4, 4, 128}};

}  // namespace

// q and the cached k against rope_ref at the token's position: atol/rtol
// output_tol(dtype) (|values| ~ 1); v copied exactly; every other cache row
// still zero.
TEST_CASE("cuda: fused rotary + K/V cache write (paged and contiguous)", "[cuda]") {
  UDACI_REQUIRE_GPU();
  at::manual_seed(3);
  std::mt19937 rng(3);
  for (bool paged : {true, false}) {
    for (const Heads& h : kHeadShapes) {
      for (at::ScalarType dt : kDtypes) {
        for (int64_t n : {1, 4, 7}) {
          INFO((paged ? "paged" : "contiguous") << ", heads " << h.heads << "/" << h.kv_heads << "x" << h.dim
                                                << ", dtype " << c10::toString(dt) << ", n " << n);
          const int64_t max_len = 200;
          CacheSetup c = make_cache(paged, n, max_len, h.kv_heads, h.dim, dt, false, rng);
          std::vector<int64_t> pos_v;
          for (int64_t i = 0; i < n; ++i) pos_v.push_back(std::uniform_int_distribution<int64_t>(0, max_len - 1)(rng));
          const at::Tensor pos = at::tensor(pos_v, at::TensorOptions().dtype(at::kLong));
          std::vector<float> inv_v;
          for (int64_t i = 0; i < h.dim / 2; ++i)
            inv_v.push_back(1.0f / std::pow(500000.0f, static_cast<float>(2 * i) / static_cast<float>(h.dim)));
          const at::Tensor inv = at::tensor(inv_v);
          const at::Tensor q = at::randn({n, h.heads, h.dim}).to(dt);
          const at::Tensor k = at::randn({n, h.kv_heads, h.dim}).to(dt);
          const at::Tensor v = at::randn({n, h.kv_heads, h.dim}).to(dt);
          at::Tensor qg = q.to(gpu());
          cuda::rope_kv_write(qg, k.to(gpu()), v.to(gpu()), pos.to(gpu()), inv.to(gpu()), c.gpu);
          const double tol = output_tol(dt);
          CHECK(at::allclose(qg.cpu().to(at::kFloat), rope_ref(q, pos, inv), tol, tol));
          const at::Tensor kc = c.gpu.k.cpu().to(at::kFloat), vc = c.gpu.v.cpu().to(at::kFloat);
          const at::Tensor k_ref = rope_ref(k, pos, inv);
          std::vector<int64_t> written;
          for (int64_t i = 0; i < n; ++i) {
            const int64_t r = c.row(i, pos_v[static_cast<size_t>(i)]);
            written.push_back(r);
            CHECK(at::allclose(kc[r], k_ref[i], tol, tol));
            CHECK(at::equal(vc[r], v[i].to(at::kFloat)));
          }
          at::Tensor untouched = at::ones({kc.size(0)}, at::TensorOptions().dtype(at::kBool));
          for (int64_t r : written) untouched[r] = false;
          CHECK(kc.index({untouched}).abs().max().item<float>() == 0.0f);
          CHECK(vc.index({untouched}).abs().max().item<float>() == 0.0f);
        }
      }
    }
  }
}

// Against softmax(q K^T / sqrt(d)) V in fp64 on the CPU, per sequence over
// its own rows: atol 2e-5 (fp32), 2e-3 (fp16), 1.5e-2 (bf16) on outputs of
// magnitude ~1.
TEST_CASE("cuda: paged-attention decode matches softmax attention (GQA)", "[cuda]") {
  UDACI_REQUIRE_GPU();
  at::manual_seed(5);
  std::mt19937 rng(5);
  for (bool paged : {true, false}) {
    for (const Heads& h : kHeadShapes) {
      for (at::ScalarType dt : kDtypes) {
        for (int64_t n : {1, 3, 8}) {
          INFO((paged ? "paged" : "contiguous") << ", heads " << h.heads << "/" << h.kv_heads << "x" << h.dim
                                                << ", dtype " << c10::toString(dt) << ", n " << n);
          const int64_t max_len = 300;
          CacheSetup c = make_cache(paged, n, max_len, h.kv_heads, h.dim, dt, true, rng);
          std::vector<int32_t> lens;
          for (int64_t i = 0; i < n; ++i)
            lens.push_back(i == 0 ? 1 : std::uniform_int_distribution<int32_t>(1, max_len)(rng));
          const at::Tensor q = at::randn({n, h.heads, h.dim}).to(dt);
          const double scale = 1.0 / std::sqrt(static_cast<double>(h.dim));
          const at::Tensor out = cuda::attention_decode(q.to(gpu()), c.gpu,
                                                        at::tensor(lens, at::TensorOptions().dtype(at::kInt)).to(gpu()),
                                                        0, scale).cpu().to(at::kDouble);
          const at::Tensor kc = c.gpu.k.cpu().to(at::kDouble), vc = c.gpu.v.cpu().to(at::kDouble);
          const int64_t group = h.heads / h.kv_heads;
          double worst = 0.0;
          for (int64_t s = 0; s < n; ++s) {
            std::vector<int64_t> rows;
            for (int32_t p = 0; p < lens[static_cast<size_t>(s)]; ++p) rows.push_back(c.row(s, p));
            const at::Tensor idx = at::tensor(rows, at::TensorOptions().dtype(at::kLong));
            const at::Tensor ks = kc.index_select(0, idx), vs = vc.index_select(0, idx);  // [len, kvh, d]
            for (int64_t hh = 0; hh < h.heads; ++hh) {
              const at::Tensor qh = q[s][hh].to(at::kDouble);
              const at::Tensor kh = ks.select(1, hh / group), vh = vs.select(1, hh / group);  // [len, d]
              const at::Tensor p = at::softmax(at::mv(kh, qh) * scale, 0);
              const at::Tensor ref = at::mv(vh.t(), p);
              worst = std::max(worst, (out[s][hh] - ref).abs().max().item<double>());
            }
          }
          const double tol = dt == at::kFloat ? 2e-5 : dt == at::kHalf ? 2e-3 : 1.5e-2;
          CHECK(worst <= tol);
        }
      }
    }
  }
}

// The wiring: a golden fixture's prompt logits and greedy decode steps with
// the model on the GPU (fp32: the CUDA RMSNorm, decode attention and, with the
// int8/int4 quantizers, the CUDA GEMV) against the same model on the CPU.
// Logits agree to 1e-3 of their range (dense) and 2e-2 (quantised: the CPU's
// integer kernels round the activations to int8, the GPU's do not).
TEST_CASE("cuda: a golden model on the GPU matches the CPU (dense, int8, int4)", "[cuda]") {
  UDACI_REQUIRE_GPU();
  const ModelFiles f = open_model(udaci_test::fixture("golden/tiny-gqa-tied"));
  const auto& reg = builtin_strategies();
  for (const std::string qname : {"none", "int8", "int4"}) {
    INFO("quantizer " << qname);
    auto q = reg.quantizers.create(qname, StrategyOptions());
    WeightStore store = f.weights;
    q->quantize(store);
    auto options = [&](at::Device d) {
      ModelOptions o;
      o.device = d;
      const Quantizer* qp = q.get();
      o.linear_factory = [qp](const LinearSpec& s, const WeightStore& w, const ModelOptions& opt) {
        return qp->make_kernel(s, w, opt);
      };
      return o;
    };
    const LlamaModel cpu(f.config, store, options(at::kCPU));
    const LlamaModel gpu_model(f.config, store, options(gpu()));
    auto cc = make_contiguous_cache(cpu.cache_shape());
    auto gc = make_contiguous_cache(gpu_model.cache_shape());
    cc->add_sequence(0, 32);
    gc->add_sequence(0, 32);
    std::vector<int64_t> tokens = {1, 5, 9, 2, 7, 3};
    const double tol = qname == "none" ? 1e-3 : 2e-2;
    for (int step = 0; step < 6; ++step) {
      ForwardBatch b;
      b.add(0, tokens);
      const at::Tensor lc = cpu.forward(b, *cc);
      const at::Tensor lg = gpu_model.forward(b, *gc).cpu();
      const double range = (lc.max() - lc.min()).item<double>();
      CHECK((lc - lg).abs().max().item<double>() <= tol * range);
      tokens = {lc.argmax(-1).item<int64_t>()};  // both continue with the CPU's token
    }
  }
}

// A captured step replays on new input values in its static tensors, and a
// second bucket gets a graph of its own.
TEST_CASE("cuda: DecodeGraphs captures once per bucket and replays", "[cuda]") {
  CHECK(cuda::DecodeGraphs::bucket(1) == 1);
  CHECK(cuda::DecodeGraphs::bucket(3) == 4);
  CHECK(cuda::DecodeGraphs::bucket(64) == 64);
  CHECK(cuda::DecodeGraphs::bucket(129) == 0);
  UDACI_REQUIRE_GPU();
  cuda::DecodeGraphs graphs;
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(gpu());
  at::Tensor x = at::zeros({4, 64}, opts), w = at::randn({64, 64}, opts), y = at::zeros({4, 64}, opts);
  auto step = [&] { y.copy_(at::matmul(x, w).add_(1.0f)); };
  for (int i = 0; i < 3; ++i) {
    x.copy_(at::randn({4, 64}, opts));
    graphs.run(4, gpu(), step);
    CHECK(at::allclose(y, at::matmul(x, w) + 1.0f, 1e-4, 1e-4));
  }
  CHECK(graphs.captured() == 1);
  graphs.run(8, gpu(), step);
  CHECK(graphs.captured() == 2);
}

// The slot decoder on the GPU (issue #27): its decode step (the fused rotary +
// K/V write and the attention kernel over its slots, a CUDA graph per batch
// bucket) gives LlamaModel::forward's logits step by step, eager and
// captured, dense fp32 / bf16 and int4; a graph is captured once per bucket
// (4 for three rows, 1 for one) and replayed after. fp32 is the exact check
// (1e-3 of each row's range). In bf16 the fused kernel rounds the rotated q/k
// once where the model's ATen formula rounds three times, and random weights
// amplify that over the layers: up to 5% of the range was measured on an
// H200 (int4 prefill), so bf16 is held to 10%.
TEST_CASE("cuda: the slot decoder with CUDA graphs matches the model (fp32, bf16, int4)", "[cuda]") {
  UDACI_REQUIRE_GPU();
  const ModelConfig c = udaci_test::small_llama(320, 256, 384, 4, 2, 64);
  const auto& reg = builtin_strategies();
  struct Case {
    at::ScalarType dtype;
    const char* quantizer;
    bool graphs;
    double tol;
  };
  for (const Case& k : {Case{at::kFloat, "none", true, 1e-3}, Case{at::kFloat, "none", false, 1e-3},
                        Case{at::kBFloat16, "none", true, 0.1}, Case{at::kBFloat16, "int4", true, 0.1}}) {
    INFO("dtype " << c10::toString(k.dtype) << ", quantizer " << k.quantizer << ", graphs " << k.graphs);
    WeightStore store = random_weights(c, k.dtype, 11, 0.3);
    auto q = reg.quantizers.create(k.quantizer, StrategyOptions());
    q->quantize(store);
    ModelOptions o;
    o.device = gpu();
    o.dtype = k.dtype;
    const Quantizer* qp = q.get();
    o.linear_factory = [qp](const LinearSpec& s, const WeightStore& w, const ModelOptions& opt) {
      return qp->make_kernel(s, w, opt);
    };
    auto model = std::make_shared<const LlamaModel>(c, store, o);
    auto dec = udaci_test::check_slot_decoder_matches_model(model, k.graphs, k.tol);
    CHECK(dec->graphs_captured() == (k.graphs ? 2 : 0));
  }
}

TEST_CASE("cuda: slot decoder op timing times the parts of an eager step with events", "[cuda]") {
  UDACI_REQUIRE_GPU();
  const ModelConfig c = udaci_test::small_llama(320, 256, 384, 4, 2, 64);
  WeightStore store = random_weights(c, at::kFloat, 11, 0.3);
  ModelOptions o;
  o.device = gpu();
  auto model = std::make_shared<const LlamaModel>(c, store, o);
  SlotDecoderOptions so;
  so.slots = 2;
  so.capacity = 32;
  so.graphs = false;
  so.op_timing = true;
  auto dec = make_slot_decoder(model, so);
  dec->prefill(0, {1, 2, 3});
  dec->prefill(1, {4});
  for (int i = 0; i < 3; ++i) dec->decode({0, 1}, {5, 6});
  double total = 0.0;
  for (const SlotOpTime& t : dec->op_times()) {
    INFO(t.op);
    CHECK(t.ms_per_step > 0.0);  // every part launches at least one kernel
    total += t.ms_per_step;
  }
  CHECK(dec->op_times().size() == 10);
  CHECK(total < 1000.0);
  so.graphs = true;
  CHECK_THROWS_AS(make_slot_decoder(model, so), Error);
}
