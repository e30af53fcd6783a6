#include "quant/quantized_linear.hpp"

#include <algorithm>

#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "core/thread_pool.hpp"
#include "quant/tiled_matrix.hpp"

namespace udaci {

namespace {

class QuantizedKernel final : public LinearKernel {
 public:
  explicit QuantizedKernel(QuantizedKernelParts p) : p_(std::move(p)) {
    p_.matrix.row_order = p_.row_order.empty() ? nullptr : p_.row_order.data();
    tiles_ = repack_tiles(p_.matrix);
    bytes_ = tiles_.bytes() + (p_.bias.defined() ? p_.bias.numel() * 4 : 0);
    // The tiles hold every value: the stored blocks are no longer read, and
    // pages of a file map need not stay resident beside their copy.
    if (p_.source_file)
      p_.source_file->drop_pages(p_.matrix.data, static_cast<size_t>(p_.matrix.rows * p_.matrix.row_bytes));
    p_.matrix.data = nullptr;
    p_.owners.clear();
  }
  const char* name() const override { return qformat_name(p_.matrix.format); }
  int64_t in_features() const override { return p_.matrix.cols; }
  int64_t out_features() const override { return p_.matrix.rows; }
  // What the kernel holds: the tiles (their scales included) and the bias.
  int64_t weight_bytes() const override { return bytes_; }

  at::Tensor forward(const at::Tensor& x) const override {
    std::vector<at::Tensor> ys = run_tiles(input_rows(x), {this}, 0);
    return finish(x, ys[0]);
  }

  at::Tensor forward_prompt(const at::Tensor& x, int64_t prompt_rows) const override {
    std::vector<at::Tensor> ys = run_tiles(input_rows(x), {this}, prompt_rows);
    return finish(x, ys[0]);
  }

  const void* group_key() const override { return &kGroupKey; }

  // One quantisation of x and one parallel loop over the tiles of every
  // member (the group's kernels share kGroupKey, so all are QuantizedKernels).
  std::vector<at::Tensor> forward_group(const at::Tensor& x,
                                        const std::vector<const LinearKernel*>& group) const override {
    return forward_group_prompt(x, group, 0);
  }

  std::vector<at::Tensor> forward_group_prompt(const at::Tensor& x, const std::vector<const LinearKernel*>& group,
                                               int64_t prompt_rows) const override {
    at::Tensor xf = input_rows(x);
    std::vector<const QuantizedKernel*> members;
    for (const LinearKernel* k : group) members.push_back(static_cast<const QuantizedKernel*>(k));
    std::vector<at::Tensor> ys = run_tiles(xf, members, prompt_rows);
    for (size_t i = 0; i < ys.size(); ++i) ys[i] = members[i]->finish(x, ys[i]);
    return ys;
  }

  at::Tensor gather_rows(const at::Tensor& ids, at::ScalarType dtype) const override {
    const TiledMatrix& w = tiles_;
    at::Tensor id = ids.to(at::kLong).contiguous();
    const int64_t n = id.numel();
    at::Tensor out = at::empty({n, w.cols}, at::TensorOptions().dtype(at::kFloat));
    const int64_t* ip = id.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      UDACI_CHECK(ip[i] >= 0 && ip[i] < w.rows, "token id {} is outside the embedding's {} rows",
                  ip[i], w.rows);
      tiled_dequantize_row(w, ip[i], out.data_ptr<float>() + i * w.cols);
    }
    return dtype == at::kFloat ? out : out.to(dtype);
  }

 private:
  static const char kGroupKey;

  // x as [n, in] contiguous fp32 on the CPU.
  at::Tensor input_rows(const at::Tensor& x) const {
    UDACI_CHECK(x.dim() >= 1 && x.size(-1) == tiles_.cols,
                "{} kernel: input has {} features, the weight {}", name(),
                x.dim() >= 1 ? x.size(-1) : 0, tiles_.cols);
    UDACI_CHECK_S(Status::kUnsupported, x.device().is_cpu(), "{} kernel runs on the CPU only",
                  name());
    return x.reshape({-1, tiles_.cols}).to(at::kFloat).contiguous();
  }

  // y [n, out] (bias added) -> x's leading shape and dtype.
  at::Tensor finish(const at::Tensor& x, at::Tensor y) const {
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = tiles_.rows;
    y = y.view(shape);
    return x.scalar_type() == at::kFloat ? y : y.to(x.scalar_type());
  }

  // Every member's [n, out] output (bias added): rows [0, prompt rows) by
  // the bf16 tile kernel where bf16_prompt_rows(), the others by the integer
  // kernels (xf quantised once); one parallel loop over all members' tiles
  // for each.
  static std::vector<at::Tensor> run_tiles(const at::Tensor& xf, const std::vector<const QuantizedKernel*>& members,
                                           int64_t prompt_rows) {
    const int64_t n = xf.size(0), cols = xf.size(1);
    const int64_t p = bf16_prompt_rows() ? std::clamp<int64_t>(prompt_rows, 0, n) : 0;
    std::vector<at::Tensor> ys;
    std::vector<int64_t> first_tile;  // member i's tiles are [first_tile[i], first_tile[i + 1])
    int64_t tiles = 0;
    for (const QuantizedKernel* k : members) {
      ys.push_back(at::empty({n, k->tiles_.rows}, xf.options()));
      first_tile.push_back(tiles);
      tiles += k->tiles_.tiles;
    }
    first_tile.push_back(tiles);
    if (p > 0) prompt_part(xf.data_ptr<float>(), p, cols, members, ys);
    if (p < n) decode_part(xf.data_ptr<float>() + p * cols, n - p, cols, p, members, first_tile, ys);
    for (size_t i = 0; i < members.size(); ++i)
      if (members[i]->p_.bias.defined()) ys[i].add_(members[i]->p_.bias);
    return ys;
  }

  // Rows [row0, row0 + n) of every y from the int8 kernels.
  static void decode_part(const float* x, int64_t n, int64_t cols, int64_t row0,
                          const std::vector<const QuantizedKernel*>& members, const std::vector<int64_t>& first_tile,
                          std::vector<at::Tensor>& ys) {
    const KernelIsa isa = active_kernel_isa();
    // One buffer per calling thread, reused across calls (decode runs the
    // same shapes 200 times a token). The caller's buffer, by reference:
    // inside the lambda the name of a thread_local would mean each worker
    // thread's own (empty) copy.
    thread_local QActs t_acts;
    QActs& acts = t_acts;
    quantize_activations(x, n, cols, acts, isa);
    // Tiles per task: enough work (~8K row blocks) to outweigh the cost of
    // waking a thread; small projections run on the caller alone.
    const int64_t blocks = std::max<int64_t>(1, acts.blocks * n * kTileRows);
    const int64_t grain = std::max<int64_t>(1, 8192 / blocks);
    parallel_for(0, first_tile.back(), grain, [&](int64_t t0, int64_t t1) {
      for (size_t i = 0; i < members.size(); ++i) {
        const int64_t lo = std::max(t0, first_tile[i]), hi = std::min(t1, first_tile[i + 1]);
        if (lo >= hi) continue;
        const TiledMatrix& w = members[i]->tiles_;
        tiled_gemm(w, acts, ys[i].data_ptr<float>() + row0 * w.rows, w.rows, lo - first_tile[i],
                   hi - first_tile[i], isa);
      }
    });
  }

  // Rows [0, n) of every y from the bf16 tile kernel, in units of 4 tiles
  // (the kernel's two panels of 16 weight rows).
  static void prompt_part(const float* x, int64_t n, int64_t cols, const std::vector<const QuantizedKernel*>& members,
                          std::vector<at::Tensor>& ys) {
    thread_local BActs t_acts;
    BActs& acts = t_acts;
    bf16_activations(x, n, cols, acts);
    std::vector<int64_t> first_quad;
    int64_t quads = 0;
    for (const QuantizedKernel* k : members) {
      first_quad.push_back(quads);
      quads += (k->tiles_.tiles + 3) / 4;
    }
    first_quad.push_back(quads);
    parallel_for(0, quads, 1, [&](int64_t q0, int64_t q1) {
      for (size_t i = 0; i < members.size(); ++i) {
        const int64_t lo = std::max(q0, first_quad[i]), hi = std::min(q1, first_quad[i + 1]);
        if (lo >= hi) continue;
        const TiledMatrix& w = members[i]->tiles_;
        tiled_gemm_bf16(w, acts, ys[i].data_ptr<float>(), w.rows, 4 * (lo - first_quad[i]),
                        std::min(w.tiles, 4 * (hi - first_quad[i])));
      }
    });
  }

  QuantizedKernelParts p_;  // the source's description (its data released once repacked)
  TiledMatrix tiles_;
  int64_t bytes_ = 0;
};

const char QuantizedKernel::kGroupKey = 0;

}  // namespace

std::unique_ptr<LinearKernel> make_quantized_kernel(QuantizedKernelParts parts) {
  return std::make_unique<QuantizedKernel>(std::move(parts));
}

}  // namespace udaci
