// ContiguousCache: a sequence's K/V lie in one buffer, [layers, 2, capacity,
// kv_heads, head_dim], sized from the capacity hint and doubled when the
// sequence outgrows it. Attention reads a narrow() view, so no copy happens
// per step.
//
// A fork shares instead of copying (when the K/V are float32 on the CPU, the
// layout attention reads in place): the child's tokens are the parent's
// buffers, read-only, and the first token either appends goes to a buffer of
// its own. A beam search's beams thus hold the prompt's K/V once, not once per
// beam. A sequence is a chain of pieces, each the first `used` tokens of a
// shared buffer (a Segment); only the segment's writer may append to it, and
// only at its end, so no token another sequence reads is ever overwritten. A
// chain longer than kMaxPieces is folded into a fresh buffer when it next
// needs one (a beam forked at every step would otherwise read its K/V in
// one-token spans).
#include <cstring>
#include <map>
#include <memory>

#include "cache/cache_strategy.hpp"
#include "core/error.hpp"

namespace udaci {

namespace {

constexpr size_t kMaxPieces = 4;
constexpr SeqId kNoWriter = -1;

class ContiguousCache final : public CacheStrategy {
 public:
  explicit ContiguousCache(const CacheShape& shape) : shape_(shape) {}
  const char* name() const override { return "contiguous"; }

  void add_sequence(SeqId seq, int64_t capacity_hint) override {
    UDACI_CHECK(seqs_.count(seq) == 0, "sequence {} already exists in the cache", seq);
    Seq s;
    s.hint = std::max<int64_t>(capacity_hint, 16);
    s.pieces.push_back(Piece{new_segment(seq, s.hint), 0});
    seqs_.emplace(seq, std::move(s));
    note_reserved(bytes_reserved());
  }
  void free_sequence(SeqId seq) override {
    auto it = seqs_.find(seq);
    if (it == seqs_.end()) return;
    for (Piece& p : it->second.pieces)
      if (p.seg->writer == seq) p.seg->writer = kNoWriter;
    seqs_.erase(it);
  }
  bool has_sequence(SeqId seq) const override { return seqs_.count(seq) != 0; }
  int64_t cached_length(SeqId seq) const override { return get(seq).length; }

  std::pair<at::Tensor, at::Tensor> append(int64_t layer, SeqId seq, const at::Tensor& k,
                                           const at::Tensor& v) override {
    check_layer(layer);
    const int64_t n = k.size(0);
    Seq& s = get(seq);
    Piece& last = room(seq, s, n);
    at::Tensor kl = last.seg->buffer[layer][0];  // [capacity, kv_heads, head_dim]
    at::Tensor vl = last.seg->buffer[layer][1];
    kl.narrow(0, last.used, n).copy_(k);
    vl.narrow(0, last.used, n).copy_(v);
    if (s.pieces.size() == 1) return {kl.narrow(0, 0, last.used + n), vl.narrow(0, 0, last.used + n)};
    std::vector<at::Tensor> ks, vs;
    for (const Piece& p : s.pieces) {
      const int64_t m = &p == &last ? p.used + n : p.used;
      ks.push_back(p.seg->buffer[layer][0].narrow(0, 0, m));
      vs.push_back(p.seg->buffer[layer][1].narrow(0, 0, m));
    }
    return {at::cat(ks), at::cat(vs)};
  }
  bool kv_in_place() const override { return shape_.dtype == at::kFloat && shape_.device.is_cpu(); }
  void append_in_place(int64_t layer, SeqId seq, const float* k, const float* v, int64_t n,
                       std::vector<KvSpan>& spans) override {
    UDACI_CHECK(kv_in_place(), "contiguous cache: K/V in place needs float32 on the CPU");
    check_layer(layer);
    UDACI_CHECK(n >= 0, "contiguous cache: {} new tokens", n);
    Seq& s = get(seq);
    Piece& last = room(seq, s, n);
    const int64_t row = shape_.num_kv_heads * shape_.head_dim;
    if (n > 0) {
      float* kl = layer_k(*last.seg, layer);
      float* vl = kl + last.seg->capacity() * row;
      std::memcpy(kl + last.used * row, k, static_cast<size_t>(n * row) * sizeof(float));
      std::memcpy(vl + last.used * row, v, static_cast<size_t>(n * row) * sizeof(float));
    }
    spans.clear();
    for (Piece& p : s.pieces) {
      const int64_t m = &p == &last ? p.used + n : p.used;
      if (m == 0) continue;
      float* kl = layer_k(*p.seg, layer);
      spans.push_back(KvSpan{kl, kl + p.seg->capacity() * row, m});
    }
  }
  std::pair<at::Tensor, at::Tensor> committed_kv(int64_t layer, SeqId seq) override {
    check_layer(layer);
    const Seq& s = get(seq);
    std::vector<at::Tensor> ks, vs;
    for (const Piece& p : s.pieces) {
      ks.push_back(p.seg->buffer[layer][0].narrow(0, 0, p.used));
      vs.push_back(p.seg->buffer[layer][1].narrow(0, 0, p.used));
    }
    if (ks.size() == 1) return {ks[0], vs[0]};
    return {at::cat(ks), at::cat(vs)};
  }
  void commit(SeqId seq, int64_t n_new) override {
    Seq& s = get(seq);
    if (n_new == 0) return;
    Piece& last = s.pieces.back();
    UDACI_CHECK_S(Status::kInternal, last.seg->writer == seq && last.used == last.seg->filled &&
                                         last.used + n_new <= last.seg->capacity(),
                  "contiguous cache: commit of {} tokens to sequence {} without an append", n_new, seq);
    last.used += n_new;
    last.seg->filled = last.used;
    s.length += n_new;
  }
  void truncate(SeqId seq, int64_t length) override {
    Seq& s = get(seq);
    UDACI_CHECK(length >= 0 && length <= s.length, "cannot truncate sequence {} of {} tokens to {}",
                seq, s.length, length);
    int64_t kept = 0;
    size_t i = 0;
    for (; i < s.pieces.size() && kept + s.pieces[i].used <= length; ++i) kept += s.pieces[i].used;
    if (i < s.pieces.size()) {
      s.pieces[i].used = length - kept;
      s.pieces.resize(i + 1);
    }
    // Drop empty pieces at the end (keep one: a sequence always has a piece).
    while (s.pieces.size() > 1 && s.pieces.back().used == 0) s.pieces.pop_back();
    Piece& last = s.pieces.back();
    // Sole reader of its writable segment: the tokens past the cut are
    // nobody's, so appending may overwrite them.
    if (last.seg->writer == seq && last.seg.use_count() == 1) last.seg->filled = last.used;
    s.length = length;
  }
  void fork(SeqId parent, SeqId child) override {
    UDACI_CHECK(seqs_.count(child) == 0, "sequence {} already exists in the cache", child);
    const Seq& p = get(parent);
    Seq c;
    c.hint = p.hint;
    c.length = p.length;
    if (kv_in_place()) {
      c.pieces = p.pieces;  // shared; the first append gives `child` a segment of its own
    } else {
      // Attention reads tensors: one buffer per sequence, a copy.
      c.pieces.push_back(Piece{new_segment(child, std::max(p.hint, p.length)), 0});
      copy_tokens(p, *c.pieces[0].seg, 0);
      c.pieces[0].used = c.pieces[0].seg->filled = p.length;
    }
    seqs_.emplace(child, std::move(c));
    note_reserved(bytes_reserved());
  }
  int64_t bytes_for_tokens(int64_t tokens) const override {
    return std::max<int64_t>(tokens, 16) * shape_.num_layers * 2 * shape_.num_kv_heads * shape_.head_dim *
           static_cast<int64_t>(c10::elementSize(shape_.dtype));
  }
  // Every segment a live sequence holds, a shared one once.
  int64_t bytes_reserved() const override { return *reserved_; }

 private:
  // A buffer of K/V; tokens [0, filled) are written, `writer` (if any) is the
  // one sequence that may write the tokens after them.
  struct Segment {
    at::Tensor buffer;  // [layers, 2, capacity, kv_heads, head_dim]
    int64_t filled = 0;
    SeqId writer = kNoWriter;
    int64_t capacity() const { return buffer.size(2); }
  };
  // Tokens [0, used) of a segment, in a sequence's chain.
  struct Piece {
    std::shared_ptr<Segment> seg;
    int64_t used = 0;
  };
  struct Seq {
    std::vector<Piece> pieces;  // never empty
    int64_t length = 0;         // the sum of the pieces' used
    int64_t hint = 16;          // tokens the sequence is expected to reach
  };

  std::shared_ptr<Segment> new_segment(SeqId writer, int64_t capacity) {
    at::Tensor buffer = at::empty({shape_.num_layers, 2, capacity, shape_.num_kv_heads, shape_.head_dim},
                                  at::TensorOptions().dtype(shape_.dtype).device(shape_.device));
    const int64_t bytes = buffer.numel() * buffer.element_size();
    *reserved_ += bytes;
    // The deleter holds the counter: a segment may outlive the cache.
    std::shared_ptr<Segment> seg(new Segment, [counter = reserved_, bytes](Segment* g) {
      *counter -= bytes;
      delete g;
    });
    seg->buffer = std::move(buffer);
    seg->writer = writer;
    return seg;
  }
  // Copies the tokens of s from piece `from` on into `dst` at its start.
  static void copy_tokens(const Seq& s, Segment& dst, size_t from) {
    int64_t at_tok = 0;
    for (size_t i = from; i < s.pieces.size(); ++i) {
      const Piece& p = s.pieces[i];
      if (p.used == 0) continue;
      dst.buffer.narrow(2, at_tok, p.used).copy_(p.seg->buffer.narrow(2, 0, p.used));
      at_tok += p.used;
    }
  }
  // The piece the next n tokens of `seq` go to (at its `used`), with room for
  // them. The same answer for every layer of a step: nothing changes until
  // commit().
  Piece& room(SeqId seq, Seq& s, int64_t n) {
    Piece& last = s.pieces.back();
    const bool writable = last.seg->writer == seq && last.used == last.seg->filled;
    if (writable && last.used + n <= last.seg->capacity()) return last;
    if (n == 0) return last;
    const int64_t need = s.length + n;
    if (writable && s.pieces.size() == 1 && last.seg.use_count() == 1) {
      // The sequence's own single buffer is full: double it.
      auto bigger = new_segment(seq, std::max(need, 2 * last.seg->capacity()));
      copy_tokens(s, *bigger, 0);
      bigger->filled = last.used;
      last.seg = std::move(bigger);
      note_reserved(bytes_reserved());
      return last;
    }
    // A segment of its own: for the rest of the sequence, and for the tail of
    // a long chain (all pieces after the first), folded in.
    const bool fold = s.pieces.size() >= kMaxPieces;
    int64_t tail = 0;
    if (fold)
      for (size_t i = 1; i < s.pieces.size(); ++i) tail += s.pieces[i].used;
    auto seg = new_segment(seq, std::max({tail + n, s.hint - s.length + tail, int64_t{16}}));
    if (fold) {
      copy_tokens(s, *seg, 1);
      seg->filled = tail;
      s.pieces.resize(1);
    }
    if (s.pieces.back().used == 0) s.pieces.pop_back();  // only the last can be empty
    s.pieces.push_back(Piece{std::move(seg), tail});
    note_reserved(bytes_reserved());
    return s.pieces.back();
  }
  float* layer_k(Segment& seg, int64_t layer) const {
    const int64_t row = shape_.num_kv_heads * shape_.head_dim;
    return seg.buffer.data_ptr<float>() + (layer * 2) * seg.capacity() * row;
  }
  void check_layer(int64_t layer) const {
    UDACI_CHECK(layer >= 0 && layer < shape_.num_layers, "contiguous cache: layer {} outside 0..{}", layer,
                shape_.num_layers - 1);
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
  std::shared_ptr<int64_t> reserved_ = std::make_shared<int64_t>(0);  // bytes of the live segments
  std::map<SeqId, Seq> seqs_;
};

}  // namespace

std::unique_ptr<CacheStrategy> make_contiguous_cache(const CacheShape& shape) {
  return std::make_unique<ContiguousCache>(shape);
}

}  // namespace udaci
