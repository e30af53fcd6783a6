// The Llama decoder (Touvron et al., arXiv:2302.13971; GQA: Ainslie et al.,
// arXiv:2305.13245) on ATen: embeddings, N decoder layers (RMSNorm, grouped-
// query causal attention with rotary embeddings, SwiGLU MLP), final norm and
// LM head. Weights come from a WeightStore under Hugging Face names; K/V live
// in a CacheStrategy passed to every forward call.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cache/cache_strategy.hpp"
#include "io/weight_store.hpp"
#include "model/forward_batch.hpp"
#include "model/layer_backend.hpp"
#include "model/linear.hpp"
#include "model/llama_names.hpp"
#include "model/model_config.hpp"
#include "model/rope.hpp"

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

struct ModelOptions {
  at::ScalarType dtype = at::kFloat;  // compute and weight dtype (fp32, bf16, fp16)
  at::Device device = at::kCPU;
  // Builds quantised or sparse kernels (a Quantizer's); unset or returning
  // nullptr means dense weights in `dtype`.
  LinearFactory linear_factory;
  std::shared_ptr<ForwardListener> listener;
  std::shared_ptr<PipelineStage> stage;
};

class LlamaModel {
 public:
  // Binds weights from `store` (checked against `config`: every tensor present
  // with the shape the config implies, else Error(kBadModelFile) naming it).
  LlamaModel(const ModelConfig& config, const WeightStore& store, const ModelOptions& options);

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  CacheShape cache_shape() const;

  // Runs the batch and returns float32 logits, [batch.logit_rows(), vocab]:
  // for each sequence in order, one row per new token if all_logits, else one
  // row for its last token. Appends the new tokens' K/V to `cache`.
  at::Tensor forward(const ForwardBatch& batch, CacheStrategy& cache) const;

  // Every Linear with its Hugging Face weight name (without ".weight"), for a
  // Quantizer to bind its kernels; the tied LM head is "lm_head".
  void for_each_linear(const std::function<void(const std::string& name, Linear& linear)>& fn);

  // Bytes held by weights in their bound kernels (tied head counted once).
  int64_t weight_bytes() const;

 private:
  struct Layer {
    at::Tensor input_norm;  // [hidden]
    at::Tensor post_norm;   // [hidden]
    Linear q, k, v, o, gate, up, down;
    // The projection of a part (q ... down; not a norm).
    Linear& projection(LlamaPart part);
  };

  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight) const;
  // The three parts of a pass: token embeddings, the decoder layers (K/V
  // appended and committed), the LM head on the rows whose logits are asked.
  at::Tensor embed(const ForwardBatch& batch) const;
  at::Tensor run_layers(const ForwardBatch& batch, CacheStrategy& cache, at::Tensor x) const;
  at::Tensor head(const ForwardBatch& batch, const at::Tensor& x) const;
  at::Tensor forward_pipeline(const ForwardBatch& batch, CacheStrategy& cache) const;
  // Appends the layer's K/V of every sequence in place (spans: per sequence,
  // kept across layers to reuse their memory) and runs all of the step's
  // attention in one call: [total, heads * head_dim].
  at::Tensor attention_in_place(int64_t layer, const ForwardBatch& batch, const std::vector<int64_t>& pasts,
                                const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                CacheStrategy& cache, std::vector<std::vector<KvSpan>>& spans) const;

  ModelConfig config_;
  ModelOptions options_;
  Rope rope_;
  // Norm, rotation and attention for this model's device and dtype.
  std::shared_ptr<const LayerBackend> backend_;
  Linear embed_;  // the token embedding, looked up with gather_rows
  std::vector<Layer> layers_;
  at::Tensor final_norm_;
  Linear lm_head_;
  bool tied_ = false;
  int64_t first_layer_ = 0;  // global index of layers_[0] (pipeline stages)
};

}  // namespace udaci
