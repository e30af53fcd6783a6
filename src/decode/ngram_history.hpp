// What the model wrote before, as n-gram statistics for prompt-lookup drafts
// (issue #25). A headline rarely copies its summary (prompt lookup alone
// finds a draft on a third of the steps), but a model's headlines share
// their phrasing: "The ...", ": A New ...", "How to ...", the end of the
// answer. The speculative decoder's sequences report every token they keep
// (observe) and look up drafts here (draft) when their own context has no
// match: after the last n tokens (n from n_max down to 1), the token that
// most often followed them, chained up to k tokens. llama.cpp's lookup
// decoding keeps such a "dynamic" n-gram cache across generations too.
//
// Bounded: the statistics cover the last `capacity` tokens observed (older
// ones are subtracted again), so a long-running server holds a fixed
// amount. A draft is only a proposal: the target verifies it, so what is
// looked up here never changes a greedy result, and a key collision (keys
// are 64-bit hashes of the n tokens) costs a rejected draft at worst.
// Safe to use from several threads (one lock).
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace udaci {

class NgramHistory {
 public:
  // capacity: tokens whose n-grams are kept (>= 1); n_max: longest n-gram (1..8).
  NgramHistory(int64_t capacity, int n_max);

  // `added` tokens just appended to `tokens` (the whole sequence so far,
  // prompt included): each is counted after the n tokens before it.
  void observe(const std::vector<int64_t>& tokens, int64_t added);
  // Up to k tokens to follow `tokens`, each the most frequent successor of
  // the longest n-gram (n >= n_min) that has one; empty when none has.
  std::vector<int64_t> draft(const std::vector<int64_t>& tokens, int64_t k, int n_min) const;

  int n_max() const { return n_max_; }
  int64_t tokens() const;  // tokens whose n-grams are held now
  int64_t keys() const;    // distinct n-grams held now

 private:
  struct Event {
    uint64_t key;
    int64_t next;
  };
  using Successors = std::vector<std::pair<int64_t, int64_t>>;  // (token, count)

  static uint64_t key_of(const int64_t* first, int n);
  int64_t best_after(uint64_t key) const;  // -1: no successor known
  void add(uint64_t key, int64_t next);
  void remove(const Event& e);

  int64_t capacity_;
  int n_max_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Successors> table_;
  std::deque<std::vector<Event>> order_;  // per observed token, its n-grams, oldest first
};

}  // namespace udaci
