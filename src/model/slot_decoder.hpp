// A decode loop over a fixed set of sequence slots whose K/V live in buffers
// the decoder allocates once (issue #27, docs/gpu.md). Its decode step reads
// its inputs (token ids, positions, lengths, slot of each row) from tensors at
// fixed addresses and allocates nothing outside its own memory: on a CUDA
// device it is captured as one CUDA graph per bucket of batch sizes
// (kernels/cuda/cuda_graph.hpp) and replayed with one launch, which removes
// the per-kernel host cost that bounds the eager step at batch 1.
//
// K/V of slot s, layer l: rows [s * capacity, (s + 1) * capacity) of a
// [(slots + 1) * capacity, kv_heads, head_dim] buffer; the extra slot takes
// the rows a step is padded with up to its bucket. On CUDA the fused rotary +
// K/V write and the decode-attention kernels read them through a one-block-
// per-slot table; on the CPU the same step runs on ATen ops (the reference
// the tests compare with LlamaModel::forward). Defined in
// kernels/slot_decoder.cpp (the model layer names no CUDA).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/llama_model.hpp"

namespace udaci {

struct SlotDecoderOptions {
  int64_t slots = 1;       // sequences held at once
  int64_t capacity = 256;  // tokens per sequence (prompt + generated)
  // CUDA graphs of the decode step (CUDA devices only; ignored elsewhere).
  bool graphs = true;
  // Time each part of every decode step (CUDA events on a GPU, the clock on
  // the CPU), read with op_times(). Needs graphs off: a replayed graph is
  // one launch with no parts to time. Costs an event (a host sync on the CPU
  // path: none) per part, so not for production.
  bool op_timing = false;
  // On CUDA, when every projection is a dense weight: decode steps of up to
  // 8 rows run q/k/v as one kernel, o and down with the residual added in
  // the kernel, and gate/up with SwiGLU applied in the kernel
  // (kernels/cuda/dense_gemv.cu): 9 fewer launches per layer.
  bool fused = true;
};

// The mean time per decode step of one part of the step (SlotDecoder::op_times).
struct SlotOpTime {
  std::string op;
  double ms_per_step = 0.0;
};

class SlotDecoder {
 public:
  virtual ~SlotDecoder() = default;
  virtual int64_t slots() const = 0;
  virtual int64_t capacity() const = 0;
  // Tokens held by `slot`.
  virtual int64_t length(int64_t slot) const = 0;
  // Empties `slot`, runs `tokens` (1 .. capacity of them) through the model
  // into it and returns the last token's float32 logits, [1, vocab], on the
  // model's device.
  virtual at::Tensor prefill(int64_t slot, const std::vector<int64_t>& tokens) = 0;
  // One new token for each of `slots` (distinct, each with room for it),
  // appended at the slot's length: float32 logits [slots.size(), vocab].
  virtual at::Tensor decode(const std::vector<int64_t>& slots, const std::vector<int64_t>& tokens) = 0;
  // CUDA graphs captured so far (one per batch bucket used).
  virtual int64_t graphs_captured() const = 0;
  // With op_timing: the parts of the decode steps since the last reset, in
  // step order, each summed over the layers (empty without op_timing).
  virtual std::vector<SlotOpTime> op_times() const = 0;
  virtual void reset_op_times() = 0;
};

// For a whole model (not a pipeline stage) with head_dim 64 or 128 on CUDA
// (any head_dim on the CPU). Error(kInvalidArgument) for bad options,
// kUnsupported for a model it cannot serve.
std::unique_ptr<SlotDecoder> make_slot_decoder(std::shared_ptr<const LlamaModel> model,
                                               const SlotDecoderOptions& options);

}  // namespace udaci
