#include "model/llama_model.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.hpp"
#include "model/llama_names.hpp"

namespace udaci {

namespace {

std::string shape_str(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

at::Tensor load(const WeightStore& store, const std::string& name, std::vector<int64_t> shape,
                const ModelOptions& opt) {
  const TensorEntry& e = store.entry(name);
  UDACI_CHECK_S(Status::kBadModelFile, e.shape == shape,
                "tensor '{}' in '{}' has shape {}, but the model config implies {}", name, e.source,
                shape_str(e.shape), shape_str(shape));
  at::Tensor t = store.tensor(name, opt.dtype);
  return opt.device.is_cpu() ? t : t.to(opt.device);
}

}  // namespace

LlamaModel::LlamaModel(const ModelConfig& c, const WeightStore& store, const ModelOptions& opt)
    : config_(c), options_(opt), rope_(c), backend_(select_layer_backend(opt.device, opt.dtype)) {
  UDACI_CHECK_S(Status::kUnsupported,
                opt.dtype == at::kFloat || opt.dtype == at::kBFloat16 || opt.dtype == at::kHalf,
                "compute dtype must be float32, bfloat16 or float16");
  UDACI_CHECK_S(Status::kUnsupported, !(opt.dtype == at::kHalf && opt.device.is_cpu()),
                "float16 compute runs on CUDA devices only: LibTorch's CPU kernels have no float16 matmul or "
                "SiLU; on the CPU use bf16 (half the weight bytes of fp32) or fp32");
  const int64_t h = c.hidden_size;
  // Each projection's kernel: the factory's if it builds one, else dense.
  auto make = [&](const std::string& name, const std::string& weight, LinearRole role, int64_t out,
                  int64_t in, bool bias) {
    LinearSpec spec{name, weight, role, out, in, bias};
    if (opt.linear_factory) {
      if (std::unique_ptr<LinearKernel> k = opt.linear_factory(spec, store, opt)) {
        UDACI_CHECK_S(Status::kBadModelFile, k->out_features() == out && k->in_features() == in,
                      "the {} kernel for '{}' is [{}, {}], but the model config implies [{}, {}]",
                      k->name(), name, k->out_features(), k->in_features(), out, in);
        return Linear(std::shared_ptr<LinearKernel>(std::move(k)));
      }
    }
    at::Tensor w = load(store, weight + ".weight", {out, in}, opt);
    at::Tensor b = bias ? load(store, weight + ".bias", {out}, opt) : at::Tensor();
    return Linear(std::shared_ptr<LinearKernel>(make_dense_kernel(w, b)));
  };
  auto dense = [&](const std::string& prefix, int64_t out, int64_t in, bool bias) {
    return make(prefix, prefix, LinearRole::kProjection, out, in, bias);
  };

  // A pipeline stage holds a range of layers, and the embedding or the head
  // only when it is the first or the last stage.
  const int64_t first_layer = opt.stage ? opt.stage->first_layer() : 0;
  first_layer_ = first_layer;
  const bool has_embedding = !opt.stage || opt.stage->first();
  const bool has_head = !opt.stage || opt.stage->last();
  if (has_embedding) embed_ = make(kLlamaEmbed, kLlamaEmbed, LinearRole::kEmbedding, c.vocab_size, h, false);
  layers_.resize(static_cast<size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const int64_t layer = first_layer + i;
    Layer& L = layers_[static_cast<size_t>(i)];
    L.input_norm = load(store, llama_layer_name(layer, LlamaPart::kAttnNorm) + ".weight", {h}, opt);
    L.post_norm = load(store, llama_layer_name(layer, LlamaPart::kFfnNorm) + ".weight", {h}, opt);
    for (const LlamaPartName& p : llama_parts()) {
      if (!p.projection) continue;
      const std::vector<int64_t> shape = llama_part_shape(c, p.part);
      L.projection(p.part) = dense(llama_layer_name(layer, p.part), shape[0], shape[1], llama_part_has_bias(c, p.part));
    }
  }
  if (!has_head) return;
  final_norm_ = load(store, std::string(kLlamaFinalNorm) + ".weight", {h}, opt);
  // Tied checkpoints usually omit lm_head.weight (transformers drops it); a
  // tied config whose file still carries it uses the embedding all the same.
  const std::string head_weight = std::string(kLlamaHead) + ".weight";
  tied_ = c.tie_word_embeddings || !store.has(head_weight);
  UDACI_CHECK_S(Status::kBadModelFile, c.tie_word_embeddings || store.has(head_weight),
                "missing tensor '{}' (the config says tie_word_embeddings = false)", head_weight);
  if (!tied_) {
    lm_head_ = make(kLlamaHead, kLlamaHead, LinearRole::kLmHead, c.vocab_size, h, false);
  } else {
    // A factory may build a head kernel of its own from the embedding's
    // weight (e.g. int8 head, dense embedding); otherwise the two share one.
    LinearSpec spec{kLlamaHead, kLlamaEmbed, LinearRole::kLmHead, c.vocab_size, h, false};
    std::unique_ptr<LinearKernel> k =
        opt.linear_factory ? opt.linear_factory(spec, store, opt) : nullptr;
    if (k) {
      lm_head_ = Linear(std::shared_ptr<LinearKernel>(std::move(k)));
    } else if (embed_.bound()) {
      lm_head_ = embed_;
    } else {  // the last stage of a pipeline: the embedding's kernel, built here
      lm_head_ = make(kLlamaEmbed, kLlamaEmbed, LinearRole::kEmbedding, c.vocab_size, h, false);
    }
  }
}

Linear& LlamaModel::Layer::projection(LlamaPart part) {
  switch (part) {
    case LlamaPart::kQ: return q;
    case LlamaPart::kK: return k;
    case LlamaPart::kV: return v;
    case LlamaPart::kO: return o;
    case LlamaPart::kGate: return gate;
    case LlamaPart::kUp: return up;
    case LlamaPart::kDown: return down;
    default: fail(Status::kInternal, "layer part {} is not a projection", static_cast<int>(part));
  }
}

CacheShape LlamaModel::cache_shape() const {
  CacheShape s;
  s.num_layers = config_.num_layers;
  s.num_kv_heads = config_.num_kv_heads;
  s.head_dim = config_.head_dim;
  s.dtype = options_.dtype;
  s.device = options_.device;
  return s;
}

void LlamaModel::for_each_linear(const std::function<void(const std::string&, Linear&)>& fn) {
  for (size_t i = 0; i < layers_.size(); ++i) {
    const int64_t layer = first_layer_ + static_cast<int64_t>(i);
    for (const LlamaPartName& p : llama_parts())
      if (p.projection) fn(llama_layer_name(layer, p.part), layers_[i].projection(p.part));
  }
  if (lm_head_.bound()) fn(kLlamaHead, lm_head_);
}

int64_t LlamaModel::weight_bytes() const {
  auto bytes = [](const at::Tensor& t) { return t.numel() * t.element_size(); };
  int64_t n = (embed_.bound() ? embed_.kernel().weight_bytes() : 0) +
              (final_norm_.defined() ? bytes(final_norm_) : 0);
  for (const Layer& L : layers_) {
    n += bytes(L.input_norm) + bytes(L.post_norm);
    for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
      n += l->kernel().weight_bytes();
  }
  if (lm_head_.bound() && lm_head_.kernel_ptr() != embed_.kernel_ptr()) n += lm_head_.kernel().weight_bytes();
  return n;
}

at::Tensor LlamaModel::rms_norm(const at::Tensor& x, const at::Tensor& weight) const {
  return backend_->rms_norm(x, weight, config_.rms_norm_eps);
}

at::Tensor LlamaModel::attention_in_place(int64_t layer, const ForwardBatch& batch,
                                          const std::vector<int64_t>& pasts, const at::Tensor& q,
                                          const at::Tensor& k, const at::Tensor& v, CacheStrategy& cache,
                                          std::vector<std::vector<KvSpan>>& spans) const {
  const ModelConfig& c = config_;
  const int64_t total = q.size(0);
  at::Tensor qc = q.contiguous();  // [total, heads, d]
  const at::Tensor kc = k.contiguous(), vc = v.contiguous();  // [total, kv_heads, d]
  const float* kp = kc.data_ptr<float>();
  const float* vp = vc.data_ptr<float>();
  const int64_t row = c.num_kv_heads * c.head_dim;
  at::Tensor out = at::empty({total, c.num_heads * c.head_dim}, q.options());
  std::vector<SeqAttention> seqs(batch.seqs.size());
  int64_t offset = 0;
  for (size_t si = 0; si < batch.seqs.size(); ++si) {
    const SeqSlice& s = batch.seqs[si];
    cache.append_in_place(layer, s.seq, kp + offset * row, vp + offset * row, s.n_tokens, spans[si]);
    SeqAttention& a = seqs[si];
    a.q = qc.data_ptr<float>() + offset * c.num_heads * c.head_dim;
    a.out = out.data_ptr<float>() + offset * c.num_heads * c.head_dim;
    a.n = s.n_tokens;
    a.past = pasts[si];
    a.spans = spans[si].data();
    a.n_spans = static_cast<int64_t>(spans[si].size());
    offset += s.n_tokens;
  }
  backend_->attend_in_place(seqs, AttentionShape{c.num_heads, c.num_kv_heads, c.head_dim},
                            static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim))));
  return out;
}

at::Tensor LlamaModel::forward(const ForwardBatch& batch, CacheStrategy& cache) const {
  const ModelConfig& c = config_;
  UDACI_CHECK(!batch.seqs.empty(), "forward: empty batch");
  int64_t total = 0;
  for (const SeqSlice& s : batch.seqs) {
    UDACI_CHECK(s.n_tokens > 0, "forward: sequence {} has no new tokens", s.seq);
    total += s.n_tokens;
  }
  UDACI_CHECK(total == static_cast<int64_t>(batch.tokens.size()),
              "forward: batch has {} tokens but its sequences claim {}", batch.tokens.size(), total);
  for (int64_t t : batch.tokens) {
    UDACI_CHECK(t >= 0 && t < c.vocab_size, "token id {} is outside the vocabulary of {}", t,
                c.vocab_size);
  }
  // Prompt slices go first: the projections take a prompt's rows as the
  // leading rows of their input (LinearKernel::forward_prompt). The logits
  // come back in the caller's order.
  bool decode_seen = false, reorder = false;
  for (const SeqSlice& s : batch.seqs) {
    reorder = reorder || (s.prompt && decode_seen);
    decode_seen = decode_seen || !s.prompt;
  }
  ForwardBatch sorted;
  std::vector<int64_t> first_row;  // each caller slice's first logits row in `sorted`'s
  int64_t rows = 0;
  if (reorder) {
    first_row.resize(batch.seqs.size());
    for (bool prompt : {true, false}) {
      int64_t offset = 0;
      for (size_t i = 0; i < batch.seqs.size(); ++i) {
        const SeqSlice& s = batch.seqs[i];
        if (s.prompt == prompt) {
          sorted.tokens.insert(sorted.tokens.end(), batch.tokens.begin() + offset,
                               batch.tokens.begin() + offset + s.n_tokens);
          sorted.seqs.push_back(s);
          first_row[i] = rows;
          rows += s.all_logits ? s.n_tokens : 1;
        }
        offset += s.n_tokens;
      }
    }
  }
  const ForwardBatch& run = reorder ? sorted : batch;
  struct ListenerScope {
    ForwardListener* l;
    ~ListenerScope() {
      if (l) l->end_forward();
    }
  } scope{nullptr};
  if (options_.listener) {
    options_.listener->begin_forward(run);  // the batch as computed (other ranks compute the same)
    scope.l = options_.listener.get();
  }
  at::Tensor logits = options_.stage ? forward_pipeline(run, cache) : head(run, run_layers(run, cache, embed(run)));
  if (!reorder) return logits;
  std::vector<int64_t> order;
  order.reserve(static_cast<size_t>(rows));
  for (size_t i = 0; i < batch.seqs.size(); ++i) {
    const SeqSlice& s = batch.seqs[i];
    for (int64_t r = 0; r < (s.all_logits ? s.n_tokens : 1); ++r) order.push_back(first_row[i] + r);
  }
  return logits.index_select(0, at::tensor(order, at::TensorOptions().dtype(at::kLong)).to(logits.device()));
}

at::Tensor LlamaModel::embed(const ForwardBatch& batch) const {
  at::Tensor ids = at::tensor(batch.tokens, at::TensorOptions().dtype(at::kLong)).to(options_.device);
  return embed_.kernel().gather_rows(ids, options_.dtype);  // [total, hidden]
}

at::Tensor LlamaModel::run_layers(const ForwardBatch& batch, CacheStrategy& cache, at::Tensor x) const {
  const ModelConfig& c = config_;
  const int64_t total = static_cast<int64_t>(batch.tokens.size());
  // The leading prompt slices' rows (forward() puts every prompt slice first).
  int64_t prompt_rows = 0;
  for (const SeqSlice& s : batch.seqs) {
    if (!s.prompt) break;
    prompt_rows += s.n_tokens;
  }
  std::vector<int64_t> pasts;
  std::vector<int64_t> positions;
  positions.reserve(batch.tokens.size());
  for (const SeqSlice& s : batch.seqs) {
    const int64_t past = cache.cached_length(s.seq);
    pasts.push_back(past);
    for (int64_t i = 0; i < s.n_tokens; ++i) positions.push_back(past + i);
  }
  at::Tensor pos = at::tensor(positions, at::TensorOptions().dtype(at::kLong)).to(options_.device);
  auto [cos, sin] = rope_.cos_sin(pos);  // [total, head_dim]
  // Every sequence's attention of a layer in one call, reading K/V where the
  // cache keeps them, when the cache and the backend allow it for every slice.
  bool in_place = cache.kv_in_place();
  for (const SeqSlice& s : batch.seqs) in_place = in_place && backend_->attends_in_place(s.n_tokens);
  std::vector<std::vector<KvSpan>> spans(in_place ? batch.seqs.size() : 0);

  for (size_t li = 0; li < layers_.size(); ++li) {
    const Layer& L = layers_[li];
    at::Tensor hn = rms_norm(x, L.input_norm);
    std::vector<at::Tensor> qkv = forward_all(hn, {&L.q, &L.k, &L.v}, prompt_rows);
    at::Tensor q = qkv[0].view({total, c.num_heads, c.head_dim});
    at::Tensor k = qkv[1].view({total, c.num_kv_heads, c.head_dim});
    at::Tensor v = qkv[2].view({total, c.num_kv_heads, c.head_dim});
    q = backend_->rope(q, cos, sin);
    k = backend_->rope(k, cos, sin);

    at::Tensor attn;  // [total, heads * d]
    if (in_place) {
      attn = attention_in_place(static_cast<int64_t>(li), batch, pasts, q, k, v, cache, spans);
    } else {
      std::vector<at::Tensor> outs;
      outs.reserve(batch.seqs.size());
      int64_t offset = 0;
      for (size_t si = 0; si < batch.seqs.size(); ++si) {
        const SeqSlice& s = batch.seqs[si];
        auto [kk, vv] = cache.append(static_cast<int64_t>(li), s.seq, k.narrow(0, offset, s.n_tokens),
                                     v.narrow(0, offset, s.n_tokens));
        outs.push_back(backend_->attention(q.narrow(0, offset, s.n_tokens), kk, vv, pasts[si]));
        offset += s.n_tokens;
      }
      attn = outs.size() == 1 ? outs[0] : at::cat(outs, 0);
    }
    x = backend_->add(x, L.o(attn, prompt_rows));

    at::Tensor hm = rms_norm(x, L.post_norm);
    std::vector<at::Tensor> gu = forward_all(hm, {&L.gate, &L.up}, prompt_rows);
    x = backend_->add(x, L.down(backend_->swiglu(gu[0], gu[1]), prompt_rows));
  }
  for (const SeqSlice& s : batch.seqs) cache.commit(s.seq, s.n_tokens);
  return x;
}

at::Tensor LlamaModel::head(const ForwardBatch& batch, const at::Tensor& x) const {
  // Only the rows whose logits were asked for go through the final norm and
  // the LM head: at decode time that is one row per sequence.
  std::vector<int64_t> rows;
  int64_t offset = 0;
  for (const SeqSlice& s : batch.seqs) {
    if (s.all_logits) {
      for (int64_t i = 0; i < s.n_tokens; ++i) rows.push_back(offset + i);
    } else {
      rows.push_back(offset + s.n_tokens - 1);
    }
    offset += s.n_tokens;
  }
  at::Tensor sel = static_cast<int64_t>(rows.size()) == x.size(0)
                       ? x
                       : x.index_select(0, at::tensor(rows, at::TensorOptions().dtype(at::kLong)).to(options_.device));
  return lm_head_(rms_norm(sel, final_norm_)).to(at::kFloat);
}

at::Tensor LlamaModel::forward_pipeline(const ForwardBatch& batch, CacheStrategy& cache) const {
  PipelineStage& st = *options_.stage;
  // Micro-batches of whole sequences, the same on every stage: while a later
  // stage works on one, an earlier stage computes the next.
  const int64_t n_seqs = static_cast<int64_t>(batch.seqs.size());
  const int64_t m = std::max<int64_t>(1, std::min<int64_t>(st.micro_batches(), n_seqs));
  std::vector<ForwardBatch> parts(static_cast<size_t>(m));
  {
    size_t tok = 0;
    for (int64_t i = 0; i < n_seqs; ++i) {
      const SeqSlice& s = batch.seqs[static_cast<size_t>(i)];
      ForwardBatch& p = parts[static_cast<size_t>(i * m / n_seqs)];
      p.seqs.push_back(s);
      p.tokens.insert(p.tokens.end(), batch.tokens.begin() + static_cast<int64_t>(tok),
                      batch.tokens.begin() + static_cast<int64_t>(tok + static_cast<size_t>(s.n_tokens)));
      tok += static_cast<size_t>(s.n_tokens);
    }
  }
  struct Finish {
    PipelineStage& st;
    bool done = false;
    ~Finish() {
      if (!done) {
        try {
          st.finish();
        } catch (...) {
        }
      }
    }
  } finish{st};
  std::vector<at::Tensor> logits;
  for (const ForwardBatch& p : parts) {
    const int64_t rows = static_cast<int64_t>(p.tokens.size());
    at::Tensor x = st.first() ? embed(p) : st.receive_hidden(rows, config_.hidden_size, options_.dtype);
    x = run_layers(p, cache, x);
    if (!st.last()) {
      st.send_hidden(x);
    } else if (st.first()) {
      logits.push_back(head(p, x));
    } else {
      st.send_logits(head(p, x));
    }
  }
  if (st.first() && !st.last()) {
    for (const ForwardBatch& p : parts) logits.push_back(st.receive_logits(p.logit_rows(), config_.vocab_size));
  }
  finish.done = true;
  st.finish();
  if (!st.first()) return at::Tensor();
  return logits.size() == 1 ? logits[0] : at::cat(logits, 0);
}

}  // namespace udaci
