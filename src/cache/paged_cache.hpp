// PagedCache: K/V in fixed-size blocks of `block` tokens taken from a pool,
// one block table per sequence (the layout of vLLM's PagedAttention, Kwon et
// al. 2023, arXiv:2309.06180). A sequence holds only the blocks its tokens
// fill, so memory follows the real lengths instead of capacity hints, and
// blocks can be shared between sequences by reference count:
//   - fork(): the child points at the parent's blocks; the partly filled last
//     block is copied by whichever sequence writes into it first
//     (copy-on-write; a sequence never writes into a shared block).
//   - prefix sharing (option prefix=1, strategy "paged-prefix"): every full
//     block of a prompt is registered under a hash chained over the token ids
//     of all blocks up to and including it, so a block is found only when the
//     whole prefix before it matches (the automatic prefix caching of vLLM;
//     SGLang's RadixAttention, Zheng et al. 2024, arXiv:2312.07104, keeps the
//     same information in a radix tree). The prefix's token ids are kept with
//     the block and compared on a hit, so a hash collision can never hand out
//     the wrong K/V. Registered blocks that no sequence uses any more stay
//     cached in LRU order and are reclaimed when a block is needed and the
//     pool is at its cap (max_blocks / max_bytes) or, without a cap, before
//     the pool would grow. The caller promises that a sequence's first tokens
//     are the prompt it gave begin_prompt (generate() does).
//   - kv=int8: each token's K and V of each head are stored as int8 with one
//     float scale (symmetric, scale = max|x| / 127) and dequantised on read;
//     about 3.8x less memory than float32 at head_dim 64.
// Attention still receives contiguous [tokens, kv_heads, head_dim] tensors:
// append() gathers the sequence's rows from the pool (one index_select per
// pool chunk the sequence touches).
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/cache_strategy.hpp"

namespace udaci {

class StrategyOptions;

struct PagedCacheOptions {
  int64_t block = 16;      // tokens per block (> 0)
  bool prefix = false;     // share full prompt blocks between sequences
  bool int8 = false;       // store K/V as int8 + per-token-per-head scale
  int64_t max_blocks = 0;  // cap on pool blocks; 0 = no cap
  int64_t max_bytes = 0;   // cap on pool bytes (turned into blocks); 0 = no cap

  // Reads block, prefix, kv (float | int8), max_blocks, max_bytes; any other
  // key or a bad value is Error(kInvalidArgument) naming `owner` and the key.
  static PagedCacheOptions from(const StrategyOptions& o, const std::string& owner,
                                bool prefix_default);
};

class PagedCache final : public CacheStrategy {
 public:
  PagedCache(const CacheShape& shape, const PagedCacheOptions& options);
  const char* name() const override { return options_.prefix ? "paged-prefix" : "paged"; }

  void add_sequence(SeqId seq, int64_t capacity_hint) override;
  void free_sequence(SeqId seq) override;
  bool has_sequence(SeqId seq) const override { return seqs_.count(seq) != 0; }
  int64_t cached_length(SeqId seq) const override;
  int64_t begin_prompt(SeqId seq, const std::vector<int64_t>& prompt) override;
  void fork(SeqId parent, SeqId child) override;

  // k, v may hold 0 tokens: then it only reads the sequence's K/V.
  std::pair<at::Tensor, at::Tensor> append(int64_t layer, SeqId seq, const at::Tensor& k,
                                           const at::Tensor& v) override;
  // float K/V on the CPU: one span per run of blocks adjacent in the pool.
  bool kv_in_place() const override;
  void append_in_place(int64_t layer, SeqId seq, const float* k, const float* v, int64_t n_new,
                       std::vector<KvSpan>& spans) override;
  std::pair<at::Tensor, at::Tensor> committed_kv(int64_t layer, SeqId seq) override;
  void commit(SeqId seq, int64_t n_new) override;
  void truncate(SeqId seq, int64_t length) override;

  int64_t bytes_reserved() const override { return blocks_in_use_ * block_bytes_; }
  // Its blocks, plus one for the copy at a shared prefix's boundary.
  int64_t bytes_for_tokens(int64_t tokens) const override {
    return ((tokens + options_.block - 1) / options_.block + 1) * block_bytes_;
  }
  int64_t byte_limit() const override { return cap_blocks_ * block_bytes_; }
  int64_t prefix_share_tokens() const override { return options_.prefix ? options_.block : 0; }
  int64_t prefix_available(const std::vector<int64_t>& prompt) const override;
  CacheStats stats() const override;

  int64_t block_tokens() const { return options_.block; }
  int64_t block_bytes() const { return block_bytes_; }
  int64_t pool_blocks() const { return static_cast<int64_t>(blocks_.size()); }
  // Recounts every block's references from the block tables and checks them
  // and the free / LRU lists against the bookkeeping; Error(kInternal) naming
  // the first mismatch. For tests.
  void check_invariants() const;

 private:
  struct Block {
    int32_t refs = 0;
    int32_t chunk = 0;      // index into chunks_
    int64_t row0 = 0;       // first row of the block in its chunk
    bool registered = false;  // in prefix_index_: immutable from then on
    uint64_t hash = 0;
    std::vector<int64_t> prefix;  // token ids of all positions up to the block's end
    bool in_lru = false;
    std::list<int32_t>::iterator lru_it;
  };
  struct Chunk {
    at::Tensor data;   // [layers, 2, rows, kv_heads, head_dim] (dtype or int8)
    at::Tensor scale;  // int8 only: [layers, 2, rows, kv_heads, 1] float
  };
  // Where a sequence's rows lie in the pool, rebuilt when its table or length
  // changes: one entry per chunk it touches.
  struct GatherPart {
    int32_t chunk = 0;
    at::Tensor src_rows;  // [m] rows in the chunk
    at::Tensor dst_pos;   // [m] positions in the sequence (unused when single)
  };
  struct Seq {
    std::vector<int32_t> table;   // block per block-sized span of positions
    int64_t length = 0;           // committed tokens
    std::vector<int64_t> prompt;  // from begin_prompt (prefix mode)
    std::vector<uint64_t> hashes; // chain hash of each full prompt block
    int64_t registered = 0;       // leading blocks already offered to the index
    int64_t gather_len = -1;      // the plan below covers this many positions
    std::vector<GatherPart> gather;
  };

  Seq& get(SeqId seq);
  const Seq& get(SeqId seq) const;
  int32_t allocate_block();
  void grow_pool(int64_t min_blocks);
  void release(int32_t b);
  void retain(int32_t b);
  // Blocks and private (copy-on-write) tail for positions [s.length, end).
  void prepare_write(Seq& s, int64_t end);
  void copy_block(int32_t dst, int32_t src);
  void write(int64_t layer, Seq& s, const at::Tensor& x, int kind);
  const std::vector<GatherPart>& gather_plan(Seq& s, int64_t len);
  at::Tensor read(int64_t layer, Seq& s, int64_t len, int kind);
  void register_prompt_blocks(Seq& s);
  uint64_t chain_hash(uint64_t prev, const int64_t* tokens) const;
  void unregister(int32_t b);

  CacheShape shape_;
  PagedCacheOptions options_;
  int64_t cap_blocks_ = 0;  // 0 = none
  int64_t block_bytes_ = 0;
  std::vector<Chunk> chunks_;
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;   // unreferenced, unregistered blocks
  std::list<int32_t> lru_;      // unreferenced registered blocks, oldest first
  std::unordered_map<uint64_t, int32_t> prefix_index_;
  std::map<SeqId, Seq> seqs_;
  int64_t blocks_in_use_ = 0;
  int64_t prefix_hit_tokens_ = 0;
  int64_t prefix_lookup_tokens_ = 0;
  int64_t evictions_ = 0;
};

std::unique_ptr<CacheStrategy> make_paged_cache(const CacheShape& shape,
                                                const PagedCacheOptions& options);

}  // namespace udaci
