// The cache sequences one generation call holds: ids the cache does not use
// yet, freed however the call ends (a return, an exception, a cancellation).
// Greedy/sampling generation, beam search and speculative decoding share it.
#pragma once

#include <set>

#include "cache/cache_strategy.hpp"

namespace udaci {

class SequenceSlots {
 public:
  explicit SequenceSlots(CacheStrategy& cache) : cache_(cache) {}
  SequenceSlots(const SequenceSlots&) = delete;
  SequenceSlots& operator=(const SequenceSlots&) = delete;
  ~SequenceSlots() {
    for (SeqId s : held_)
      if (cache_.has_sequence(s)) cache_.free_sequence(s);
  }

  // The lowest id that neither the cache nor this call uses; held from now on
  // (the caller adds it to the cache, or forks into it).
  SeqId reserve() {
    SeqId s = 0;
    while (cache_.has_sequence(s) || held_.count(s) != 0) ++s;
    held_.insert(s);
    return s;
  }

  // reserve() and add the sequence to the cache with room for `capacity` tokens.
  SeqId add(int64_t capacity) {
    const SeqId s = reserve();
    cache_.add_sequence(s, capacity);
    return s;
  }

  // Frees one held sequence now.
  void free(SeqId s) {
    if (cache_.has_sequence(s)) cache_.free_sequence(s);
    held_.erase(s);
  }

 private:
  CacheStrategy& cache_;
  std::set<SeqId> held_;
};

}  // namespace udaci
