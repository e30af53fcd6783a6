#include "decode/ngram_history.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace udaci {

NgramHistory::NgramHistory(int64_t capacity, int n_max) : capacity_(capacity), n_max_(n_max) {
  UDACI_CHECK(capacity >= 1, "n-gram history: capacity must be >= 1, got {}", capacity);
  UDACI_CHECK(n_max >= 1 && n_max <= 8, "n-gram history: n_max must be in [1, 8], got {}", n_max);
}

uint64_t NgramHistory::key_of(const int64_t* first, int n) {
  // FNV-1a over the n tokens' 8 bytes each, then n itself (so that a 1-gram
  // and a 2-gram never share a key by construction of their bytes).
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < n; ++i) {
    uint64_t v = static_cast<uint64_t>(first[i]);
    for (int b = 0; b < 8; ++b, v >>= 8) {
      h ^= v & 0xffu;
      h *= 1099511628211ull;
    }
  }
  h ^= static_cast<uint64_t>(n);
  return h * 1099511628211ull;
}

void NgramHistory::add(uint64_t key, int64_t next) {
  Successors& s = table_[key];
  for (auto& p : s) {
    if (p.first == next) {
      ++p.second;
      return;
    }
  }
  s.emplace_back(next, 1);
}

void NgramHistory::remove(const Event& e) {
  auto it = table_.find(e.key);
  if (it == table_.end()) return;
  Successors& s = it->second;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i].first != e.next) continue;
    if (--s[i].second == 0) s.erase(s.begin() + static_cast<std::ptrdiff_t>(i));
    break;
  }
  if (s.empty()) table_.erase(it);
}

void NgramHistory::observe(const std::vector<int64_t>& tokens, int64_t added) {
  const int64_t len = static_cast<int64_t>(tokens.size());
  added = std::clamp<int64_t>(added, 0, len);
  std::lock_guard<std::mutex> lock(mu_);
  for (int64_t j = len - added; j < len; ++j) {
    std::vector<Event> events;
    for (int n = 1; n <= n_max_ && n <= j; ++n) {
      const Event e{key_of(tokens.data() + j - n, n), tokens[static_cast<size_t>(j)]};
      add(e.key, e.next);
      events.push_back(e);
    }
    if (events.empty()) continue;
    order_.push_back(std::move(events));
    while (static_cast<int64_t>(order_.size()) > capacity_) {
      for (const Event& e : order_.front()) remove(e);
      order_.pop_front();
    }
  }
}

int64_t NgramHistory::best_after(uint64_t key) const {
  auto it = table_.find(key);
  if (it == table_.end()) return -1;
  // The most frequent successor; among equals the smallest id (whatever
  // order they were seen in, the same history drafts the same tokens).
  int64_t best = -1, count = 0;
  for (const auto& p : it->second) {
    if (p.second > count || (p.second == count && p.first < best)) {
      best = p.first;
      count = p.second;
    }
  }
  return best;
}

std::vector<int64_t> NgramHistory::draft(const std::vector<int64_t>& tokens, int64_t k, int n_min) const {
  std::vector<int64_t> out;
  if (k <= 0 || tokens.empty()) return out;
  std::vector<int64_t> ctx(tokens.end() - std::min<int64_t>(static_cast<int64_t>(tokens.size()), n_max_),
                           tokens.end());
  std::lock_guard<std::mutex> lock(mu_);
  while (static_cast<int64_t>(out.size()) < k) {
    int64_t next = -1;
    const int longest = static_cast<int>(std::min<int64_t>(n_max_, static_cast<int64_t>(ctx.size())));
    for (int n = longest; n >= std::max(1, n_min) && next < 0; --n)
      next = best_after(key_of(ctx.data() + ctx.size() - static_cast<size_t>(n), n));
    if (next < 0) break;
    out.push_back(next);
    ctx.push_back(next);
  }
  return out;
}

int64_t NgramHistory::tokens() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(order_.size());
}

int64_t NgramHistory::keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(table_.size());
}

}  // namespace udaci
