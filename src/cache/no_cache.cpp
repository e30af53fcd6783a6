// NoCache keeps no K/V: every step recomputes the whole prefix. It exists as
// the baseline that the other strategies are measured against.
#include <set>

#include "cache/cache_strategy.hpp"
#include "core/error.hpp"

namespace udaci {

namespace {

class NoCache final : public CacheStrategy {
 public:
  explicit NoCache(const CacheShape& shape) : shape_(shape) {}
  const char* name() const override { return "none"; }

  void add_sequence(SeqId seq, int64_t) override {
    UDACI_CHECK(live_.insert(seq).second, "sequence {} already exists in the cache", seq);
  }
  void free_sequence(SeqId seq) override { live_.erase(seq); }
  bool has_sequence(SeqId seq) const override { return live_.count(seq) != 0; }
  int64_t cached_length(SeqId seq) const override {
    UDACI_CHECK(has_sequence(seq), "unknown sequence {}", seq);
    return 0;
  }
  std::pair<at::Tensor, at::Tensor> append(int64_t, SeqId seq, const at::Tensor& k,
                                           const at::Tensor& v) override {
    UDACI_CHECK(has_sequence(seq), "unknown sequence {}", seq);
    return {k, v};
  }
  std::pair<at::Tensor, at::Tensor> committed_kv(int64_t, SeqId seq) override {
    UDACI_CHECK(has_sequence(seq), "unknown sequence {}", seq);
    const at::Tensor none = at::empty({0, shape_.num_kv_heads, shape_.head_dim},
                                      at::TensorOptions().dtype(shape_.dtype).device(shape_.device));
    return {none, none};
  }
  void commit(SeqId, int64_t) override {}
  void truncate(SeqId, int64_t) override {}
  void fork(SeqId parent, SeqId child) override {
    UDACI_CHECK(has_sequence(parent), "unknown sequence {}", parent);
    UDACI_CHECK(live_.insert(child).second, "sequence {} already exists in the cache", child);
  }
  int64_t bytes_reserved() const override { return 0; }
  int64_t bytes_for_tokens(int64_t) const override { return 0; }
  bool retains_kv() const override { return false; }

 private:
  CacheShape shape_;
  std::set<SeqId> live_;
};

}  // namespace

std::unique_ptr<CacheStrategy> make_no_cache(const CacheShape& shape) {
  return std::make_unique<NoCache>(shape);
}

}  // namespace udaci
