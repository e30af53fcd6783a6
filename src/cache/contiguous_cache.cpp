// ContiguousCache: one buffer per sequence, [layers, 2, capacity, kv_heads,
// head_dim], sized from the capacity hint and doubled when a sequence outgrows
// it. Attention reads a narrow() view, so no copy happens per step.
#include <cstring>
#include <map>

#include "cache/cache_strategy.hpp"
#include "core/error.hpp"

namespace udaci {

namespace {

class ContiguousCache final : public CacheStrategy {
 public:
  explicit ContiguousCache(const CacheShape& shape) : shape_(shape) {}
  const char* name() const override { return "contiguous"; }

  void add_sequence(SeqId seq, int64_t capacity_hint) override {
    UDACI_CHECK(seqs_.count(seq) == 0, "sequence {} already exists in the cache", seq);
    Seq s;
    s.buffer = allocate(std::max<int64_t>(capacity_hint, 16));
    seqs_.emplace(seq, std::move(s));
    note_reserved(bytes_reserved());
  }
  void free_sequence(SeqId seq) override { seqs_.erase(seq); }
  bool has_sequence(SeqId seq) const override { return seqs_.count(seq) != 0; }
  int64_t cached_length(SeqId seq) const override { return get(seq).length; }

  std::pair<at::Tensor, at::Tensor> append(int64_t layer, SeqId seq, const at::Tensor& k,
                                           const at::Tensor& v) override {
    Seq& s = get(seq);
    const int64_t n = k.size(0);
    const int64_t end = s.length + n;
    if (end > s.buffer.size(2)) grow(s, std::max(end, 2 * s.buffer.size(2)));
    at::Tensor kl = s.buffer[layer][0];  // [capacity, kv_heads, head_dim]
    at::Tensor vl = s.buffer[layer][1];
    kl.narrow(0, s.length, n).copy_(k);
    vl.narrow(0, s.length, n).copy_(v);
    return {kl.narrow(0, 0, end), vl.narrow(0, 0, end)};
  }
  bool kv_in_place() const override { return shape_.dtype == at::kFloat && shape_.device.is_cpu(); }
  void append_in_place(int64_t layer, SeqId seq, const float* k, const float* v, int64_t n,
                       std::vector<KvSpan>& spans) override {
    UDACI_CHECK(kv_in_place(), "contiguous cache: K/V in place needs float32 on the CPU");
    UDACI_CHECK(layer >= 0 && layer < shape_.num_layers && n >= 0,
                "contiguous cache: layer {} outside 0..{} or {} new tokens", layer, shape_.num_layers - 1, n);
    Seq& s = get(seq);
    const int64_t end = s.length + n;
    if (end > s.buffer.size(2)) grow(s, std::max(end, 2 * s.buffer.size(2)));
    // buffer: [layers, 2, capacity, kv_heads, head_dim], contiguous.
    const int64_t row = shape_.num_kv_heads * shape_.head_dim, cap = s.buffer.size(2);
    float* kl = s.buffer.data_ptr<float>() + (layer * 2) * cap * row;
    float* vl = kl + cap * row;
    if (n > 0) {
      std::memcpy(kl + s.length * row, k, static_cast<size_t>(n * row) * sizeof(float));
      std::memcpy(vl + s.length * row, v, static_cast<size_t>(n * row) * sizeof(float));
    }
    spans.assign(1, KvSpan{kl, vl, end});
  }
  std::pair<at::Tensor, at::Tensor> committed_kv(int64_t layer, SeqId seq) override {
    const Seq& s = get(seq);
    UDACI_CHECK(layer >= 0 && layer < shape_.num_layers, "contiguous cache: layer {} outside 0..{}", layer,
                shape_.num_layers - 1);
    return {s.buffer[layer][0].narrow(0, 0, s.length), s.buffer[layer][1].narrow(0, 0, s.length)};
  }
  void commit(SeqId seq, int64_t n_new) override { get(seq).length += n_new; }
  void truncate(SeqId seq, int64_t length) override {
    Seq& s = get(seq);
    UDACI_CHECK(length >= 0 && length <= s.length, "cannot truncate sequence {} of {} tokens to {}",
                seq, s.length, length);
    s.length = length;
  }
  void fork(SeqId parent, SeqId child) override {
    UDACI_CHECK(seqs_.count(child) == 0, "sequence {} already exists in the cache", child);
    const Seq& p = get(parent);
    Seq c;
    c.buffer = p.buffer.clone();
    c.length = p.length;
    seqs_.emplace(child, std::move(c));
    note_reserved(bytes_reserved());
  }
  int64_t bytes_for_tokens(int64_t tokens) const override {
    return std::max<int64_t>(tokens, 16) * shape_.num_layers * 2 * shape_.num_kv_heads *
           shape_.head_dim * static_cast<int64_t>(c10::elementSize(shape_.dtype));
  }
  int64_t bytes_reserved() const override {
    int64_t n = 0;
    for (const auto& kv : seqs_) n += kv.second.buffer.numel() * kv.second.buffer.element_size();
    return n;
  }

 private:
  struct Seq {
    at::Tensor buffer;  // [layers, 2, capacity, kv_heads, head_dim]
    int64_t length = 0;
  };

  at::Tensor allocate(int64_t capacity) const {
    return at::empty({shape_.num_layers, 2, capacity, shape_.num_kv_heads, shape_.head_dim},
                     at::TensorOptions().dtype(shape_.dtype).device(shape_.device));
  }
  void grow(Seq& s, int64_t capacity) {
    at::Tensor bigger = allocate(capacity);
    bigger.narrow(2, 0, s.length).copy_(s.buffer.narrow(2, 0, s.length));
    s.buffer = bigger;
    note_reserved(bytes_reserved());
  }
  CacheStats stats() const override {
    CacheStats st;
    st.pool_bytes = bytes_reserved();
    return st;
  }
  Seq& get(SeqId seq) {
    auto it = seqs_.find(seq);
    UDACI_CHECK(it != seqs_.end(), "unknown sequence {}", seq);
    return it->second;
  }
  const Seq& get(SeqId seq) const {
    auto it = seqs_.find(seq);
    UDACI_CHECK(it != seqs_.end(), "unknown sequence {}", seq);
    return it->second;
  }

  CacheShape shape_;
  std::map<SeqId, Seq> seqs_;
};

}  // namespace

std::unique_ptr<CacheStrategy> make_contiguous_cache(const CacheShape& shape) {
  return std::make_unique<ContiguousCache>(shape);
}

}  // namespace udaci
