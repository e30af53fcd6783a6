// What a parallel plan hooks into a model's forward pass without the model
// knowing the plan: a listener told of every pass (tensor parallelism's leader
// replays it on the other ranks) and a pipeline stage (the model holds a range
// of layers and passes hidden states on). parallel/ implements both.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "model/forward_batch.hpp"

namespace udaci {

// Told about every forward pass once its batch has been checked, and when it
// ends (normally or by an exception). A parallel plan's leader uses it to
// make the other ranks run the same pass.
class ForwardListener {
 public:
  virtual ~ForwardListener() = default;
  virtual void begin_forward(const ForwardBatch& batch) = 0;
  virtual void end_forward() noexcept = 0;
};

// One stage of a pipeline (parallel/pipeline_parallel.hpp): the model holds
// config.num_layers layers of a deeper model, starting at global layer
// first_layer(); the embedding only on the first stage, the final norm and
// LM head only on the last. forward() then splits a batch into micro-batches
// of whole sequences, takes each one's hidden states from the previous stage
// (or the embedding) and hands them to the next (or the head); the first
// stage returns the logits, which the last stage sends it. Other stages
// return an undefined tensor.
class PipelineStage {
 public:
  virtual ~PipelineStage() = default;
  virtual int64_t first_layer() const = 0;
  virtual bool first() const = 0;
  virtual bool last() const = 0;
  virtual int64_t micro_batches() const = 0;
  // Hidden states [rows, hidden] from the previous stage / to the next.
  virtual at::Tensor receive_hidden(int64_t rows, int64_t hidden, at::ScalarType dtype) = 0;
  virtual void send_hidden(const at::Tensor& x) = 0;
  // Logits [rows, vocab] float32 from the last stage to the first.
  virtual void send_logits(const at::Tensor& logits) = 0;
  virtual at::Tensor receive_logits(int64_t rows, int64_t vocab) = 0;
  // Waits for sends still in flight (end of a pass).
  virtual void finish() = 0;
};

}  // namespace udaci
