// The contiguous K/V cache: forks share the parent's K/V instead of copying
// them (a beam search holds its prompt's K/V once), and 10,000 random add /
// extend / fork / truncate / free operations read back exactly what a
// reference of each sequence's tokens says, through both the tensor path
// (append, committed_kv) and the in-place spans attention reads; float32
// forks share, other dtypes (attention reads tensors) copy.
#include "udaci_catch.hpp"

#include <map>

#include "cache/cache_strategy.hpp"
#include "kv_reference.hpp"
#include "test_util.hpp"

using namespace udaci;
using udaci_test::make_cache;

namespace {

constexpr int64_t kL = 2, kH = 2, kD = 3;

at::Tensor values(const std::vector<int64_t>& code, int64_t from, int64_t layer, int kind, at::ScalarType dtype) {
  return udaci_test::kv_values(code, from, layer, kind, kH, kD, dtype);
}
using udaci_test::prefix_codes;

void random_operations(at::ScalarType dtype, int n_ops, uint32_t seed) {
  CacheShape shape{kL, kH, kD, dtype, at::kCPU};
  auto owned = make_cache("contiguous", shape);
  CacheStrategy& c = *owned;
  REQUIRE(c.kv_in_place() == (dtype == at::kFloat));
  udaci_test::RandomOps rnd(seed);
  udaci_test::CacheReference ref;
  SeqId next_id = 0;
  int64_t checks = 0, forks = 0, most_spans = 0;

  auto extend = [&](SeqId s, const std::vector<int64_t>& toks) {
    std::vector<int64_t> all = ref[s];
    all.insert(all.end(), toks.begin(), toks.end());
    udaci_test::append_layers(c, s, prefix_codes(all), static_cast<int64_t>(ref[s].size()), kL, kH, kD, dtype);
    c.commit(s, static_cast<int64_t>(toks.size()));
    ref[s] = all;
  };
  auto verify = [&](SeqId s) {
    ++checks;
    const auto n = static_cast<int64_t>(ref[s].size());
    REQUIRE(c.cached_length(s) == n);
    const std::vector<int64_t> code = prefix_codes(ref[s]);
    for (int64_t l = 0; l < kL; ++l) {
      const at::Tensor kr = values(code, 0, l, 0, dtype), vr = values(code, 0, l, 1, dtype);
      auto kv = c.append(l, s, at::empty({0, kH, kD}, dtype), at::empty({0, kH, kD}, dtype));
      REQUIRE(at::equal(kv.first, kr));
      REQUIRE(at::equal(kv.second, vr));
      auto committed = c.committed_kv(l, s);
      REQUIRE(at::equal(committed.first, kr));
      REQUIRE(at::equal(committed.second, vr));
      if (!c.kv_in_place()) continue;
      std::vector<KvSpan> spans;
      c.append_in_place(l, s, nullptr, nullptr, 0, spans);
      const auto [ks, vs] = udaci_test::gather_spans(spans, n, kH, kD);
      // A long chain of forks is folded: attention never reads many short spans.
      REQUIRE(spans.size() <= 4);
      most_spans = std::max<int64_t>(most_spans, static_cast<int64_t>(spans.size()));
      REQUIRE(at::equal(ks, kr));
      REQUIRE(at::equal(vs, vr));
    }
  };
  auto uni = [&](int64_t lo, int64_t hi) { return rnd.uni(lo, hi); };
  auto pick = [&]() { return rnd.pick(ref); };
  auto random_tokens = [&](int64_t n) { return rnd.tokens(n); };

  for (int op = 0; op < n_ops; ++op) {
    const int64_t kind = ref.empty() ? 0 : uni(0, 9);
    if (kind <= 1 && ref.size() < 8) {  // a new sequence with a prompt
      const SeqId s = next_id++;
      c.add_sequence(s, uni(0, 40));
      ref[s] = {};
      extend(s, random_tokens(uni(1, 20)));
    } else if (kind <= 4) {  // decode a few tokens (or a speculative step's worth)
      const SeqId s = pick();
      if (ref[s].size() < 64) extend(s, random_tokens(uni(1, 5)));
    } else if (udaci_test::common_operation(kind, c, ref, rnd, next_id, 8, verify)) {
      ++forks;
    }
  }
  for (const auto& kv : ref) verify(kv.first);
  std::vector<SeqId> live;
  for (const auto& kv : ref) live.push_back(kv.first);
  for (SeqId s : live) c.free_sequence(s);
  INFO("checks " << checks << ", forks " << forks << ", most spans " << most_spans);
  CHECK(c.bytes_reserved() == 0);  // every buffer went with its last reader
  CHECK(checks > n_ops / 20);
  CHECK(forks > n_ops / 40);
  if (c.kv_in_place()) CHECK(most_spans >= 2);  // the chains were exercised
}

int64_t token_bytes(const CacheShape& s) { return s.num_layers * 2 * s.num_kv_heads * s.head_dim * 4; }

}  // namespace

TEST_CASE("contiguous: 10,000 random fork / truncate / free operations match a reference", "[contiguous]") {
  SECTION("float32: forks share") { random_operations(at::kFloat, 10000, 11); }
  SECTION("float64: forks copy") { random_operations(at::kDouble, 10000, 12); }
}

TEST_CASE("contiguous: a fork shares the parent's K/V; each side's next tokens get their own room",
          "[contiguous]") {
  CacheShape shape{kL, kH, kD, at::kFloat, at::kCPU};
  auto c = make_cache("contiguous", shape);
  const int64_t tb = token_bytes(shape);
  c->add_sequence(0, 120);
  const std::vector<int64_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const std::vector<int64_t> code = prefix_codes(prompt);
  for (int64_t l = 0; l < kL; ++l)
    c->append(l, 0, values(code, 0, l, 0, at::kFloat), values(code, 0, l, 1, at::kFloat));
  c->commit(0, 10);
  CHECK(c->bytes_reserved() == 120 * tb);
  for (SeqId child = 1; child <= 3; ++child) c->fork(0, child);  // four beams
  CHECK(c->bytes_reserved() == 120 * tb);                         // nothing copied
  // The parent writes on in its buffer; a child gets room for the rest of
  // the sequence (120 - 10 tokens), not a copy of the prompt.
  const at::Tensor one = at::full({1, kH, kD}, 7.0f);
  for (SeqId s : {0, 1}) {
    for (int64_t l = 0; l < kL; ++l) c->append(l, s, one * (s + 1), one * (s + 1));
    c->commit(s, 1);
  }
  CHECK(c->bytes_reserved() == (120 + 110) * tb);
  // Each sees the shared prompt, then its own token.
  for (SeqId s : {0, 1, 2}) {
    auto kv = c->committed_kv(0, s);
    REQUIRE(kv.first.size(0) == (s == 2 ? 10 : 11));
    CHECK(at::equal(kv.first.narrow(0, 0, 10), values(code, 0, 0, 0, at::kFloat)));
    if (s != 2) CHECK(at::equal(kv.first.narrow(0, 10, 1), one * (s + 1)));
  }
  // The parent goes; its buffer stays while the children read it.
  c->free_sequence(0);
  CHECK(c->bytes_reserved() == (120 + 110) * tb);
  CHECK(at::equal(c->committed_kv(1, 3).second, values(code, 0, 1, 1, at::kFloat)));
  for (SeqId s : {1, 2, 3}) c->free_sequence(s);
  CHECK(c->bytes_reserved() == 0);
  CHECK(c->peak_bytes_reserved() == (120 + 110) * tb);
}
