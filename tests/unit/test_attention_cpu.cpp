// fp32 CPU attention over K/V spans (model/attention_kernels.hpp, issue #22):
// several ragged sequences in one call, their K/V cut into spans scattered
// over one buffer as a paged cache leaves them, against a double-precision
// causal attention in ATen, on the scalar and the AVX2 body.
#include "udaci_catch.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <random>

#include "core/error.hpp"
#include "model/attention_kernels.hpp"
#include "core/cpu_features.hpp"

using namespace udaci;

namespace {

// Causal grouped-query attention of n new tokens after `past` ones, in double.
at::Tensor reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t past) {
  const int64_t n = q.size(0), heads = q.size(1), d = q.size(2), kvh = k.size(1);
  at::Tensor out = at::empty({n, heads, d}, at::kDouble);
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t g = h / (heads / kvh);
    at::Tensor qh = q.select(1, h).to(at::kDouble);                  // [n, d]
    at::Tensor kh = k.select(1, g).to(at::kDouble);                  // [total, d]
    at::Tensor vh = v.select(1, g).to(at::kDouble);
    at::Tensor s = qh.matmul(kh.t()) / std::sqrt(static_cast<double>(d));  // [n, total]
    at::Tensor mask = at::ones({n, k.size(0)}, at::kBool).triu(past + 1);
    out.select(1, h).copy_(at::softmax(s.masked_fill(mask, -INFINITY), -1).matmul(vh));
  }
  return out.reshape({n, heads * d});
}

}  // namespace

TEST_CASE("attention: every sequence of a step in one call equals causal attention, spans scattered",
          "[attention]") {
  at::manual_seed(11);
  std::mt19937 rng(5);
  std::vector<std::optional<KernelIsa>> isas = {KernelIsa::kScalar};
  if (detected_kernel_isa() >= KernelIsa::kAvx2) isas.push_back(std::nullopt);
  struct Shape {
    int64_t heads, kvh, d;
  };
  for (const Shape sh : {Shape{9, 3, 64}, Shape{4, 4, 8}, Shape{8, 2, 128}, Shape{6, 2, 20}, Shape{2, 1, 72}}) {
    // (new tokens, past) per sequence: decode steps, prompt chunks, a prompt
    // continuing after a cached prefix.
    const std::vector<std::pair<int64_t, int64_t>> seqs = {{1, 0}, {1, 37}, {5, 0}, {3, 16}, {1, 200}, {17, 3}};
    const int64_t row = sh.kvh * sh.d;
    std::vector<at::Tensor> qs, ks, vs;
    int64_t rows = 0;
    for (auto [n, past] : seqs) {
      qs.push_back(at::randn({n, sh.heads, sh.d}));
      ks.push_back(at::randn({past + n, sh.kvh, sh.d}) * 2);
      vs.push_back(at::randn({past + n, sh.kvh, sh.d}));
      rows += past + n;
    }
    // One pool of rows with every sequence's K/V cut into spans of 1..7 rows
    // placed in shuffled order (and 3 spare rows between, never read).
    std::vector<std::pair<size_t, int64_t>> pieces;  // (sequence, first row)
    std::vector<std::vector<int64_t>> lens(seqs.size());
    for (size_t s = 0; s < seqs.size(); ++s) {
      for (int64_t r = 0; r < ks[s].size(0);) {
        const int64_t m = std::min<int64_t>(std::uniform_int_distribution<int64_t>(1, 7)(rng), ks[s].size(0) - r);
        pieces.push_back({s, r});
        lens[s].push_back(m);
        r += m;
      }
    }
    std::vector<size_t> order(pieces.size());
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    at::Tensor kpool = at::full({rows + 3 * static_cast<int64_t>(pieces.size()), row}, NAN);
    at::Tensor vpool = at::full_like(kpool, NAN);
    std::vector<std::vector<KvSpan>> spans(seqs.size());
    for (size_t s = 0; s < seqs.size(); ++s) spans[s].resize(lens[s].size());
    int64_t at_row = 0;
    std::vector<size_t> ordinal(pieces.size());  // piece i is span ordinal[i] of its sequence
    std::vector<size_t> count(seqs.size(), 0);
    for (size_t i = 0; i < pieces.size(); ++i) ordinal[i] = count[pieces[i].first]++;
    for (size_t i : order) {
      const auto [s, r] = pieces[i];
      const int64_t m = lens[s][ordinal[i]];
      kpool.narrow(0, at_row, m).copy_(ks[s].narrow(0, r, m).reshape({m, row}));
      vpool.narrow(0, at_row, m).copy_(vs[s].narrow(0, r, m).reshape({m, row}));
      spans[s][ordinal[i]] = KvSpan{kpool.data_ptr<float>() + at_row * row, vpool.data_ptr<float>() + at_row * row, m};
      at_row += m + 3;
    }
    for (const auto& isa : isas) {
      set_kernel_isa_override(isa);
      std::vector<at::Tensor> outs;
      std::vector<SeqAttention> batch;
      for (size_t s = 0; s < seqs.size(); ++s) {
        outs.push_back(at::full({seqs[s].first, sh.heads * sh.d}, NAN));
        SeqAttention a;
        a.q = qs[s].data_ptr<float>();
        a.out = outs[s].data_ptr<float>();
        a.n = seqs[s].first;
        a.past = seqs[s].second;
        a.spans = spans[s].data();
        a.n_spans = static_cast<int64_t>(spans[s].size());
        batch.push_back(a);
      }
      attend_cpu(batch, AttentionShape{sh.heads, sh.kvh, sh.d}, 1.0f / std::sqrt(static_cast<float>(sh.d)),
                 active_kernel_isa() >= KernelIsa::kAvx2);
      for (size_t s = 0; s < seqs.size(); ++s) {
        INFO("isa " << kernel_isa_name(active_kernel_isa()) << " heads " << sh.heads << "/" << sh.kvh << " d "
                    << sh.d << " sequence " << s);
        at::Tensor ref = reference(qs[s], ks[s], vs[s], seqs[s].second);
        CHECK((outs[s].to(at::kDouble) - ref).abs().max().item<double>() < 2e-5);
      }
    }
  }
  set_kernel_isa_override(std::nullopt);
}

TEST_CASE("attention: a sequence whose spans hold too few rows is an error, not a read past them",
          "[attention]") {
  at::Tensor k = at::randn({4, 1, 8}), v = at::randn({4, 1, 8}), q = at::randn({2, 1, 8});
  at::Tensor out = at::empty({2, 8});
  const KvSpan span{k.data_ptr<float>(), v.data_ptr<float>(), 4};
  SeqAttention a;
  a.q = q.data_ptr<float>();
  a.out = out.data_ptr<float>();
  a.n = 2;
  a.past = 3;  // needs 5 rows
  a.spans = &span;
  a.n_spans = 1;
  CHECK_THROWS_AS(attend_cpu({a}, AttentionShape{1, 1, 8}, 1.0f, false), Error);
  CHECK_THROWS_AS(attend_cpu({a}, AttentionShape{3, 2, 8}, 1.0f, false), Error);
}

TEST_CASE("attention: a sequence's output has the same bits alone, in a batch and as a prompt chunk",
          "[attention]") {
  // Alone, a decode step gives each head its own unit of work; in a batch a
  // unit takes every head of a token; a prompt chunk holds the same token
  // among others. Batch invariance needs the three to agree exactly.
  at::manual_seed(3);
  for (const auto& isa : {std::optional<KernelIsa>(KernelIsa::kScalar), std::optional<KernelIsa>()}) {
    set_kernel_isa_override(isa);
    const int64_t heads = 9, kvh = 3, d = 64, past = 45;
    at::Tensor k = at::randn({past + 4, kvh * d}), v = at::randn({past + 4, kvh * d});
    at::Tensor q = at::randn({4, heads * d});
    const KvSpan span{k.data_ptr<float>(), v.data_ptr<float>(), past + 4};
    const auto one = [&](int64_t token, int64_t n, at::Tensor& out) {
      SeqAttention a;
      a.q = q.data_ptr<float>() + token * heads * d;
      a.out = out.data_ptr<float>();
      a.n = n;
      a.past = past + token;
      a.spans = &span;
      a.n_spans = 1;
      return a;
    };
    const float scale = 0.125f;
    const bool simd = active_kernel_isa() >= KernelIsa::kAvx2;
    at::Tensor alone = at::empty({1, heads * d});
    attend_cpu({one(2, 1, alone)}, AttentionShape{heads, kvh, d}, scale, simd);
    std::vector<at::Tensor> outs;
    std::vector<SeqAttention> batch;
    for (int i = 0; i < 8; ++i) outs.push_back(at::empty({1, heads * d}));
    for (int i = 0; i < 8; ++i) batch.push_back(one(i % 4, 1, outs[static_cast<size_t>(i)]));
    attend_cpu(batch, AttentionShape{heads, kvh, d}, scale, simd);
    at::Tensor chunk = at::empty({4, heads * d});
    attend_cpu({one(0, 4, chunk)}, AttentionShape{heads, kvh, d}, scale, simd);
    INFO("isa " << kernel_isa_name(active_kernel_isa()));
    CHECK(at::equal(alone, outs[2]));
    CHECK(at::equal(alone, outs[6]));
    CHECK(at::equal(alone[0], chunk[2]));
    CHECK(!at::equal(alone, outs[1]));  // a different token: the check can fail
  }
  set_kernel_isa_override(std::nullopt);
}
