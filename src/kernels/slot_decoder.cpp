#include "model/slot_decoder.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/error.hpp"
#ifdef UDACI_WITH_CUDA
#include "kernels/cuda/cuda_graph.hpp"
#include "kernels/cuda/cuda_ops.hpp"
#endif

namespace udaci {

namespace {

// The buckets CUDA graphs are captured for; without CUDA, the largest batch
// a step takes in one pass is simply `slots`.
int64_t graph_bucket(int64_t n) {
#ifdef UDACI_WITH_CUDA
  return cuda::DecodeGraphs::bucket(n);
#else
  (void)n;
  return 0;
#endif
}

class SlotDecoderImpl final : public SlotDecoder {
 public:
  SlotDecoderImpl(std::shared_ptr<const LlamaModel> model, const SlotDecoderOptions& o)
      : model_(std::move(model)), slots_(o.slots), capacity_(o.capacity) {
    UDACI_CHECK(model_ != nullptr, "slot decoder: no model");
    const ModelConfig& c = model_->config();
    const ModelOptions& mo = model_->options();
    UDACI_CHECK(o.slots >= 1 && o.slots <= 65535, "slot decoder: {} slots (1 to 65535)", o.slots);
    UDACI_CHECK(o.capacity >= 1 && o.capacity <= (int64_t{1} << 24), "slot decoder: capacity {} tokens (1 to {})",
                o.capacity, int64_t{1} << 24);
    UDACI_CHECK_S(Status::kUnsupported, !mo.stage && model_->embedding().bound() && model_->lm_head().bound(),
                  "slot decoder: the model is a pipeline stage; it needs the whole model");
    device_ = mo.device;
    dtype_ = mo.dtype;
    cuda_ = device_.is_cuda();
#ifndef UDACI_WITH_CUDA
    UDACI_CHECK_S(Status::kUnsupported, !cuda_, "slot decoder: this build of udaci has no CUDA");
#endif
    if (cuda_) {
      UDACI_CHECK_S(Status::kUnsupported, c.head_dim == 64 || c.head_dim == 128,
                    "slot decoder: head_dim {} on CUDA (the attention kernel has 64 and 128)", c.head_dim);
    }
    graphs_ = o.graphs && cuda_;
    UDACI_CHECK(!(o.op_timing && graphs_),
                "slot decoder: op timing needs graphs off (a replayed graph has no parts to time)");
    timing_ = o.op_timing;
#ifdef UDACI_WITH_CUDA
    if (timing_ && cuda_) timeline_ = std::make_unique<cuda::EventTimeline>(device_);
#endif
    const int64_t bucket = graph_bucket(o.slots);
    max_rows_ = graphs_ && bucket > 0 ? bucket : o.slots;
    scale_ = 1.0 / std::sqrt(static_cast<double>(c.head_dim));

    const auto on = at::TensorOptions().device(device_);
    const int64_t rows = (o.slots + 1) * o.capacity;  // + the scratch slot padded rows write to
    try {
      for (size_t l = 0; l < model_->layers().size(); ++l) {
        k_.push_back(at::zeros({rows, c.num_kv_heads, c.head_dim}, on.dtype(dtype_)));
        v_.push_back(at::zeros({rows, c.num_kv_heads, c.head_dim}, on.dtype(dtype_)));
      }
      packed_ = at::zeros({4 * max_rows_}, on.dtype(at::kLong));
      lens_ = at::zeros({max_rows_}, on.dtype(at::kInt));
      table_ = at::zeros({max_rows_, 1}, on.dtype(at::kInt));
      x_in_ = at::zeros({max_rows_, c.hidden_size}, on.dtype(dtype_));
      logits_ = at::zeros({max_rows_, c.vocab_size}, on.dtype(at::kFloat));
    } catch (const c10::Error& e) {
      fail(Status::kOutOfMemory, "slot decoder: K/V for {} slots of {} tokens on {} could not be allocated: {}",
           o.slots, o.capacity, device_.str(), e.what_without_backtrace());
    }
    inv_freq_ = model_->rope().inv_freq().to(device_, at::kFloat).contiguous();
    if (cuda_ && o.fused) collect_dense_weights();
    lengths_.assign(static_cast<size_t>(o.slots), 0);
  }

  int64_t slots() const override { return slots_; }
  int64_t capacity() const override { return capacity_; }
  int64_t length(int64_t slot) const override {
    check_slot(slot);
    return lengths_[static_cast<size_t>(slot)];
  }
  int64_t graphs_captured() const override {
#ifdef UDACI_WITH_CUDA
    return graphs_cache_.captured();
#else
    return 0;
#endif
  }

  std::vector<SlotOpTime> op_times() const override {
    std::vector<SlotOpTime> out;
    for (const auto& [op, ms] : op_totals_)
      out.push_back({op, timed_steps_ > 0 ? ms / static_cast<double>(timed_steps_) : 0.0});
    return out;
  }
  void reset_op_times() override {
    op_totals_.clear();
    timed_steps_ = 0;
  }

  at::Tensor prefill(int64_t slot, const std::vector<int64_t>& tokens) override {
    check_slot(slot);
    const int64_t n = static_cast<int64_t>(tokens.size());
    UDACI_CHECK(n >= 1 && n <= capacity_, "slot decoder: a prompt of {} tokens (1 to the capacity, {})", n,
                capacity_);
    check_tokens(tokens);
    lengths_[static_cast<size_t>(slot)] = 0;
    Rows r;
    r.n = n;
    r.positions.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) r.positions[static_cast<size_t>(i)] = i;
    r.slot_of.assign(static_cast<size_t>(n), static_cast<int32_t>(slot));
    r.lens.assign(static_cast<size_t>(n), 0);  // unused: prefill attends causally within the slot
    const auto on = at::TensorOptions().device(device_);
    r.d_positions = at::arange(n, on.dtype(at::kLong));
    r.d_table = at::full({n, 1}, slot, on.dtype(at::kInt));
    const at::Tensor ids = at::tensor(tokens, at::TensorOptions().dtype(at::kLong)).to(device_);
    at::Tensor x = model_->embedding().kernel().gather_rows(ids, dtype_);
    x = layer_stack(x, r, slot);
    lengths_[static_cast<size_t>(slot)] = n;
    return head(x.narrow(0, n - 1, 1));
  }

  at::Tensor decode(const std::vector<int64_t>& slots, const std::vector<int64_t>& tokens) override {
    const int64_t n = static_cast<int64_t>(tokens.size());
    UDACI_CHECK(static_cast<int64_t>(slots.size()) == n, "slot decoder: {} slots for {} tokens", slots.size(), n);
    UDACI_CHECK(n >= 1 && n <= slots_, "slot decoder: a step of {} rows (1 to {} slots)", n, slots_);
    check_tokens(tokens);
    std::vector<char> seen(static_cast<size_t>(slots_), 0);
    for (int64_t s : slots) {
      check_slot(s);
      UDACI_CHECK(!seen[static_cast<size_t>(s)], "slot decoder: slot {} appears twice in one step", s);
      seen[static_cast<size_t>(s)] = 1;
      UDACI_CHECK(lengths_[static_cast<size_t>(s)] < capacity_, "slot decoder: slot {} is full ({} tokens)", s,
                  capacity_);
    }
    // With graphs, the step runs at its bucket's size: rows n .. b-1 decode
    // token 0 at position 0 of the scratch slot.
    const int64_t bucket = graphs_ ? graph_bucket(n) : 0;
    const int64_t b = bucket > 0 && bucket <= max_rows_ ? bucket : n;
    Rows r;
    r.n = b;
    r.positions.assign(static_cast<size_t>(b), 0);
    r.slot_of.assign(static_cast<size_t>(b), static_cast<int32_t>(slots_));
    r.lens.assign(static_cast<size_t>(b), 1);
    // One host-to-device copy per step: tokens, positions, lengths, slots.
    std::vector<int64_t> host(static_cast<size_t>(4 * max_rows_), 0);
    for (int64_t i = 0; i < b; ++i) {
      const bool real = i < n;
      const size_t si = static_cast<size_t>(i);
      const int64_t s = real ? slots[si] : slots_;
      const int64_t pos = real ? lengths_[static_cast<size_t>(s)] : 0;
      r.positions[si] = pos;
      r.slot_of[si] = static_cast<int32_t>(s);
      r.lens[si] = static_cast<int32_t>(pos + 1);
      host[si] = real ? tokens[si] : 0;
      host[static_cast<size_t>(max_rows_) + si] = pos;
      host[static_cast<size_t>(2 * max_rows_) + si] = pos + 1;
      host[static_cast<size_t>(3 * max_rows_) + si] = s;
    }
    packed_.copy_(at::from_blob(host.data(), {4 * max_rows_}, at::TensorOptions().dtype(at::kLong)));
    lens_.copy_(packed_.narrow(0, 2 * max_rows_, max_rows_));
    table_.copy_(packed_.narrow(0, 3 * max_rows_, max_rows_).view({max_rows_, 1}));
    r.d_positions = packed_.narrow(0, max_rows_, b);
    r.d_lens = lens_.narrow(0, 0, b);
    r.d_table = table_.narrow(0, 0, b);
    begin_timing();
    // The embedding outside the step: a quantised one checks ids on the host.
    x_in_.narrow(0, 0, n).copy_(model_->embedding().kernel().gather_rows(packed_.narrow(0, 0, n), dtype_));
    mark("embedding");
    auto step = [this, b, &r] {
      logits_.narrow(0, 0, b).copy_(head(layer_stack(x_in_.narrow(0, 0, b), r, -1)));
      mark("final_norm+lm_head");
    };
#ifdef UDACI_WITH_CUDA
    if (bucket > 0 && b == bucket) {
      graphs_cache_.run(b, device_, step);
    } else {
      step();
    }
#else
    step();
#endif
    for (int64_t s : slots) ++lengths_[static_cast<size_t>(s)];
    at::Tensor out = logits_.narrow(0, 0, n).clone();
    end_timing();
    return out;
  }

 private:
  // One layer's dense projection weights (the fused decode kernels' input).
  struct DenseLayer {
    at::Tensor q, k, v, o, gate, up, down;
  };
  // The rows of one pass: host copies (the CPU path) and device tensors.
  struct Rows {
    int64_t n = 0;
    std::vector<int64_t> positions;
    std::vector<int32_t> slot_of;
    std::vector<int32_t> lens;  // decode: tokens attended (position + 1)
    at::Tensor d_positions;     // int64 [n]
    at::Tensor d_table;         // int32 [n, 1]: each row's slot
    at::Tensor d_lens;          // int32 [n] (decode)
  };

  // Op timing of decode steps: begin_timing() at the start of a step, mark(op)
  // after each part (the time since the previous mark goes to op), and
  // end_timing() adds the step's parts to the totals.
  void begin_timing() {
    if (!timing_) return;
    step_ops_.clear();
    cpu_stamps_.clear();
#ifdef UDACI_WITH_CUDA
    if (timeline_) timeline_->clear();
#endif
    timing_now_ = true;
    stamp();
  }
  void mark(const char* op) const {
    if (!timing_now_) return;
    step_ops_.push_back(op);
    stamp();
  }
  void stamp() const {
#ifdef UDACI_WITH_CUDA
    if (timeline_) {
      timeline_->record();
      return;
    }
#endif
    cpu_stamps_.push_back(std::chrono::steady_clock::now());
  }
  void end_timing() {
    if (!timing_now_) return;
    timing_now_ = false;
    std::vector<double> gaps;
#ifdef UDACI_WITH_CUDA
    if (timeline_) {
      gaps = timeline_->gaps_ms();
      timeline_->clear();
    }
#endif
    for (size_t i = 1; i < cpu_stamps_.size(); ++i)
      gaps.push_back(std::chrono::duration<double, std::milli>(cpu_stamps_[i] - cpu_stamps_[i - 1]).count());
    cpu_stamps_.clear();
    for (size_t i = 0; i < step_ops_.size() && i < gaps.size(); ++i) {
      auto it = std::find_if(op_totals_.begin(), op_totals_.end(),
                             [&](const auto& e) { return e.first == step_ops_[i]; });
      if (it == op_totals_.end()) {
        op_totals_.emplace_back(step_ops_[i], gaps[i]);
      } else {
        it->second += gaps[i];
      }
    }
    ++timed_steps_;
  }

  void check_slot(int64_t slot) const {
    UDACI_CHECK(slot >= 0 && slot < slots_, "slot decoder: slot {} outside 0..{}", slot, slots_ - 1);
  }
  void check_tokens(const std::vector<int64_t>& tokens) const {
    const int64_t vocab = model_->config().vocab_size;
    for (int64_t t : tokens) UDACI_CHECK(t >= 0 && t < vocab, "token id {} is outside the vocabulary of {}", t, vocab);
  }

  at::Tensor slot_rows(const at::Tensor& kv, int64_t slot, int64_t n) const {
    return kv.narrow(0, slot * capacity_, n);
  }

  // Rotates q and k of every row at its position and stores k and v in the
  // row's slot; returns the rotated q, [n, heads, head_dim].
  at::Tensor rotate_and_store(size_t layer, at::Tensor q, const at::Tensor& k, const at::Tensor& v,
                              const Rows& r) const {
#ifdef UDACI_WITH_CUDA
    if (cuda_) {
      q = q.contiguous();  // rotated in place
      cuda::rope_kv_write(q, k, v, r.d_positions, inv_freq_, kv_view(layer, r.d_table));
      return q;
    }
#endif
    auto [cos, sin] = model_->rope().cos_sin(r.d_positions);
    const LayerBackend& be = model_->backend();
    at::Tensor rows = r.d_table.view({-1}).to(at::kLong).mul(capacity_).add(r.d_positions);
    k_[layer].index_copy_(0, rows, be.rope(k, cos, sin).to(dtype_));
    v_[layer].index_copy_(0, rows, v.to(dtype_));
    return be.rope(q, cos, sin);
  }

  // Decode attention: row i attends to its slot's first lens[i] tokens.
  at::Tensor attend(size_t layer, const at::Tensor& q, const Rows& r) const {
#ifdef UDACI_WITH_CUDA
    if (cuda_) {
      const ModelConfig& c = model_->config();
      return cuda::attention_decode(q, kv_view(layer, r.d_table), r.d_lens, 0, scale_)
          .view({r.n, c.num_heads * c.head_dim});
    }
#endif
    const LayerBackend& be = model_->backend();
    if (be.attends_in_place(1) && q.scalar_type() == at::kFloat && k_[layer].scalar_type() == at::kFloat &&
        k_[layer].is_contiguous() && v_[layer].is_contiguous()) {
      // Every row in one call, reading the slots in place (as LlamaModel's
      // decode over a cache does).
      const ModelConfig& c = model_->config();
      at::Tensor qc = q.contiguous();
      at::Tensor out = at::empty({r.n, c.num_heads * c.head_dim}, q.options());
      const int64_t row = c.num_kv_heads * c.head_dim;
      std::vector<KvSpan> spans(static_cast<size_t>(r.n));
      std::vector<SeqAttention> seqs(static_cast<size_t>(r.n));
      for (int64_t i = 0; i < r.n; ++i) {
        const size_t si = static_cast<size_t>(i);
        const int64_t first = r.slot_of[si] * capacity_ * row;
        spans[si] = KvSpan{k_[layer].data_ptr<float>() + first, v_[layer].data_ptr<float>() + first, r.lens[si]};
        SeqAttention& a = seqs[si];
        a.q = qc.data_ptr<float>() + i * c.num_heads * c.head_dim;
        a.out = out.data_ptr<float>() + i * c.num_heads * c.head_dim;
        a.n = 1;
        a.past = r.lens[si] - 1;
        a.spans = &spans[si];
        a.n_spans = 1;
      }
      be.attend_in_place(seqs, AttentionShape{c.num_heads, c.num_kv_heads, c.head_dim}, static_cast<float>(scale_));
      return out;
    }
    std::vector<at::Tensor> outs;
    outs.reserve(static_cast<size_t>(r.n));
    for (int64_t i = 0; i < r.n; ++i) {
      const size_t si = static_cast<size_t>(i);
      const int64_t len = r.lens[si];
      outs.push_back(be.attention(q.narrow(0, i, 1), slot_rows(k_[layer], r.slot_of[si], len),
                                                 slot_rows(v_[layer], r.slot_of[si], len), len - 1));
    }
    return outs.size() == 1 ? outs[0] : at::cat(outs, 0);
  }

#ifdef UDACI_WITH_CUDA
  cuda::KvCacheTensors kv_view(size_t layer, const at::Tensor& table) const {
    cuda::KvCacheTensors t;
    t.k = k_[layer];
    t.v = v_[layer];
    t.block_tables = table;  // one block of `capacity` rows per slot
    t.block_size = capacity_;
    return t;
  }
#endif

  // The dense weights of every layer's projections, for the fused decode
  // kernels; left empty when any projection is something else (quantised,
  // sparse, with a bias).
  void collect_dense_weights() {
    std::vector<DenseLayer> layers;
    for (const LlamaModel::Layer& L : model_->layers()) {
      DenseLayer d;
      const std::pair<const Linear*, at::Tensor*> parts[] = {{&L.q, &d.q},       {&L.k, &d.k},   {&L.v, &d.v},
                                                             {&L.o, &d.o},       {&L.gate, &d.gate},
                                                             {&L.up, &d.up},     {&L.down, &d.down}};
      for (const auto& [lin, dst] : parts) {
        const at::Tensor* w = lin->kernel().dense_weight();
        if (w == nullptr || !w->is_cuda() || w->scalar_type() != dtype_) return;
        *dst = *w;
      }
      layers.push_back(std::move(d));
    }
    dense_ = std::move(layers);
  }

  // The fused kernels of a decode step of n rows; each returns an undefined
  // tensor (empty vector) where they do not apply, and the caller takes the
  // model's kernels.
  bool fused_step(int64_t n, int64_t prefill_slot) const {
    return !dense_.empty() && prefill_slot < 0 && n <= 8;
  }
  std::vector<at::Tensor> fused_qkv(const DenseLayer& d, const at::Tensor& hn) const {
#ifdef UDACI_WITH_CUDA
    return cuda::dense_gemv_group(hn, {d.q, d.k, d.v});
#else
    (void)d, (void)hn;
    return {};
#endif
  }
  at::Tensor fused_add(const at::Tensor& w, const at::Tensor& in, const at::Tensor& residual) const {
#ifdef UDACI_WITH_CUDA
    return cuda::dense_gemv(in, w, residual);
#else
    (void)w, (void)in, (void)residual;
    return {};
#endif
  }
  at::Tensor fused_swiglu(const DenseLayer& d, const at::Tensor& hm) const {
#ifdef UDACI_WITH_CUDA
    return cuda::dense_swiglu(hm, d.gate, d.up);
#else
    (void)d, (void)hm;
    return {};
#endif
  }

  // The decoder layers over rows x [n, hidden]; prefill_slot >= 0: the rows
  // are that slot's prompt (causal attention within it), else one decode
  // token per row.
  at::Tensor layer_stack(at::Tensor x, const Rows& r, int64_t prefill_slot) const {
    const ModelConfig& c = model_->config();
    const int64_t n = r.n;
    const std::vector<LlamaModel::Layer>& layers = model_->layers();
    const bool fused = fused_step(n, prefill_slot);
    const int64_t prompt_rows = prefill_slot >= 0 ? n : 0;  // LinearKernel::forward_prompt
    for (size_t li = 0; li < layers.size(); ++li) {
      const LlamaModel::Layer& L = layers[li];
      const DenseLayer* d = fused ? &dense_[li] : nullptr;
      at::Tensor hn = model_->rms_norm(x, L.input_norm);
      mark("attn_norm");
      std::vector<at::Tensor> qkv = d ? fused_qkv(*d, hn) : std::vector<at::Tensor>();
      if (qkv.empty()) qkv = forward_all(hn, {&L.q, &L.k, &L.v}, prompt_rows);
      mark("qkv_proj");
      at::Tensor q = qkv[0].reshape({n, c.num_heads, c.head_dim});
      at::Tensor k = qkv[1].reshape({n, c.num_kv_heads, c.head_dim});
      at::Tensor v = qkv[2].reshape({n, c.num_kv_heads, c.head_dim});
      q = rotate_and_store(li, q, k, v, r);
      mark("rope+kv_write");
      at::Tensor attn;
      if (prefill_slot >= 0) {
        attn = model_->backend().attention(q, slot_rows(k_[li], prefill_slot, n), slot_rows(v_[li], prefill_slot, n), 0);
      } else {
        attn = attend(li, q, r);
      }
      mark("attention");
      at::Tensor xo = d ? fused_add(d->o, attn, x) : at::Tensor();
      x = xo.defined() ? xo : model_->backend().add(x, L.o(attn, prompt_rows));
      mark("o_proj+residual");
      at::Tensor hm = model_->rms_norm(x, L.post_norm);
      mark("mlp_norm");
      at::Tensor act = d ? fused_swiglu(*d, hm) : at::Tensor();
      if (!act.defined()) {
        std::vector<at::Tensor> gu = forward_all(hm, {&L.gate, &L.up}, prompt_rows);
        act = model_->backend().swiglu(gu[0], gu[1]);
      }
      mark("gate_up_proj+silu");
      at::Tensor xd = d ? fused_add(d->down, act, x) : at::Tensor();
      x = xd.defined() ? xd : model_->backend().add(x, L.down(act, prompt_rows));
      mark("down_proj+residual");
    }
    return x;
  }

  at::Tensor head(const at::Tensor& x) const {
    return model_->lm_head()(model_->rms_norm(x, model_->final_norm())).to(at::kFloat);
  }

  std::shared_ptr<const LlamaModel> model_;
  int64_t slots_;
  int64_t capacity_;
  at::Device device_ = at::kCPU;
  at::ScalarType dtype_ = at::kFloat;
  bool cuda_ = false;
  bool graphs_ = false;
  int64_t max_rows_ = 1;
  double scale_ = 1.0;
  std::vector<at::Tensor> k_, v_;  // per layer [(slots + 1) * capacity, kv_heads, head_dim]
  at::Tensor packed_;              // int64 [4 * max_rows]: tokens, positions, lengths, slots
  at::Tensor lens_;                // int32 [max_rows]
  at::Tensor table_;               // int32 [max_rows, 1]
  at::Tensor x_in_;                // [max_rows, hidden]: the step's embeddings
  at::Tensor logits_;              // float [max_rows, vocab]
  at::Tensor inv_freq_;            // float [head_dim / 2] on the device
  std::vector<int64_t> lengths_;
  std::vector<DenseLayer> dense_;  // SlotDecoderOptions::fused on CUDA; else empty
  // Op timing (SlotDecoderOptions::op_timing).
  bool timing_ = false;
  mutable bool timing_now_ = false;  // inside a timed decode step
  mutable std::vector<const char*> step_ops_;
  mutable std::vector<std::chrono::steady_clock::time_point> cpu_stamps_;
  std::vector<std::pair<std::string, double>> op_totals_;  // op -> ms, in step order
  int64_t timed_steps_ = 0;
#ifdef UDACI_WITH_CUDA
  cuda::DecodeGraphs graphs_cache_;
  std::unique_ptr<cuda::EventTimeline> timeline_;
#endif
};

}  // namespace

std::unique_ptr<SlotDecoder> make_slot_decoder(std::shared_ptr<const LlamaModel> model,
                                               const SlotDecoderOptions& options) {
  return std::make_unique<SlotDecoderImpl>(std::move(model), options);
}

}  // namespace udaci
