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
#include "model/forward_hooks.hpp"
#include "model/layer_backend.hpp"
#include "model/linear.hpp"
#include "model/llama_names.hpp"
#include "model/model_config.hpp"
#include "model/rope.hpp"

namespace udaci {

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

  // The parts, read-only, for executors that run the layers their own way
  // over K/V they keep themselves (model/slot_decoder.hpp: fixed slots whose
  // decode step is captured as a CUDA graph). forward() is the reference.
  struct Layer {
    at::Tensor input_norm;  // [hidden]
    at::Tensor post_norm;   // [hidden]
    Linear q, k, v, o, gate, up, down;
    // The projection of a part (q ... down; not a norm).
    Linear& projection(LlamaPart part);
  };
  const std::vector<Layer>& layers() const { return layers_; }
  // Unbound on a pipeline stage without the embedding / the head.
  const Linear& embedding() const { return embed_; }
  const Linear& lm_head() const { return lm_head_; }
  const at::Tensor& final_norm() const { return final_norm_; }
  const Rope& rope() const { return rope_; }
  const LayerBackend& backend() const { return *backend_; }
  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight) const;

 private:
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
