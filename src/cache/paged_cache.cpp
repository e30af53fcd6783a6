#include "cache/paged_cache.hpp"

#include <algorithm>
#include <cstring>
#include <map>

#include "core/error.hpp"
#include "core/strategy_options.hpp"

namespace udaci {

namespace {

// splitmix64 (Steele, Lea & Flood 2014): a cheap 64-bit mixer with full
// avalanche, enough for a hash-table key (collisions are ruled out by the
// token comparison on every hit, not by the hash).
uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

constexpr int kKey = 0;
constexpr int kValue = 1;
constexpr int64_t kMinChunkBlocks = 16;

}  // namespace

PagedCacheOptions PagedCacheOptions::from(const StrategyOptions& o, const std::string& owner,
                                          bool prefix_default) {
  o.expect_only(owner, {"block", "prefix", "kv", "max_blocks", "max_bytes"});
  PagedCacheOptions p;
  p.block = o.get_int(owner, "block", 16);
  UDACI_CHECK(p.block > 0 && p.block <= 4096, "{}: option \"block\" must be in 1..4096 tokens, got {}",
              owner, p.block);
  const int64_t prefix = o.get_int(owner, "prefix", prefix_default ? 1 : 0);
  UDACI_CHECK(prefix == 0 || prefix == 1, "{}: option \"prefix\" must be 0 or 1, got {}", owner,
              prefix);
  p.prefix = prefix == 1;
  const std::string kv = o.get_string(owner, "kv", "float");
  UDACI_CHECK(kv == "float" || kv == "int8",
              "{}: option \"kv\" must be \"float\" (the model's dtype) or \"int8\", got \"{}\"", owner,
              kv);
  p.int8 = kv == "int8";
  p.max_blocks = o.get_int(owner, "max_blocks", 0);
  UDACI_CHECK(p.max_blocks >= 0, "{}: option \"max_blocks\" must be >= 0 (0 = no cap), got {}",
              owner, p.max_blocks);
  p.max_bytes = o.get_int(owner, "max_bytes", 0);
  UDACI_CHECK(p.max_bytes >= 0, "{}: option \"max_bytes\" must be >= 0 (0 = no cap), got {}", owner,
              p.max_bytes);
  return p;
}

PagedCache::PagedCache(const CacheShape& shape, const PagedCacheOptions& options)
    : shape_(shape), options_(options) {
  UDACI_CHECK(options_.block > 0, "paged cache: block must be > 0 tokens, got {}", options_.block);
  UDACI_CHECK(shape_.num_layers > 0 && shape_.num_kv_heads > 0 && shape_.head_dim > 0,
              "paged cache: bad shape ({} layers, {} kv heads, head_dim {})", shape_.num_layers,
              shape_.num_kv_heads, shape_.head_dim);
  const int64_t per_token_head =
      options_.int8 ? shape_.head_dim + 4  // int8 values + one float scale
                    : shape_.head_dim * static_cast<int64_t>(c10::elementSize(shape_.dtype));
  block_bytes_ = shape_.num_layers * 2 * options_.block * shape_.num_kv_heads * per_token_head;
  cap_blocks_ = options_.max_blocks;
  if (options_.max_bytes > 0) {
    const int64_t by_bytes = options_.max_bytes / block_bytes_;
    UDACI_CHECK(by_bytes > 0, "paged cache: max_bytes={} is less than one block ({} bytes)",
                options_.max_bytes, block_bytes_);
    cap_blocks_ = cap_blocks_ == 0 ? by_bytes : std::min(cap_blocks_, by_bytes);
  }
}

PagedCache::Seq& PagedCache::get(SeqId seq) {
  auto it = seqs_.find(seq);
  UDACI_CHECK(it != seqs_.end(), "unknown sequence {}", seq);
  return it->second;
}
const PagedCache::Seq& PagedCache::get(SeqId seq) const {
  auto it = seqs_.find(seq);
  UDACI_CHECK(it != seqs_.end(), "unknown sequence {}", seq);
  return it->second;
}

void PagedCache::add_sequence(SeqId seq, int64_t) {
  UDACI_CHECK(seqs_.count(seq) == 0, "sequence {} already exists in the cache", seq);
  seqs_.emplace(seq, Seq{});
}

void PagedCache::free_sequence(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  // Last block first: the LRU then evicts a prefix's tail before its head,
  // and a head without its tail can still serve shorter shared prefixes.
  const std::vector<int32_t>& t = it->second.table;
  for (auto b = t.rbegin(); b != t.rend(); ++b) release(*b);
  seqs_.erase(it);
}

int64_t PagedCache::cached_length(SeqId seq) const { return get(seq).length; }

uint64_t PagedCache::chain_hash(uint64_t prev, const int64_t* tokens) const {
  uint64_t h = mix64(prev ^ 0x5bd1e995ULL);
  for (int64_t i = 0; i < options_.block; ++i) h = mix64(h ^ static_cast<uint64_t>(tokens[i]));
  return h;
}

int64_t PagedCache::prefix_available(const std::vector<int64_t>& prompt) const {
  if (!options_.prefix || prompt.empty()) return 0;
  const int64_t B = options_.block;
  const int64_t usable = (static_cast<int64_t>(prompt.size()) - 1) / B;
  uint64_t h = 0;
  int64_t hits = 0;
  for (; hits < usable; ++hits) {
    h = chain_hash(h, prompt.data() + hits * B);
    auto it = prefix_index_.find(h);
    if (it == prefix_index_.end()) break;
    const Block& blk = blocks_[it->second];
    const int64_t end = (hits + 1) * B;
    if (!blk.registered || static_cast<int64_t>(blk.prefix.size()) != end ||
        !std::equal(blk.prefix.begin(), blk.prefix.end(), prompt.begin()))
      break;
  }
  return hits * B;
}

int64_t PagedCache::begin_prompt(SeqId seq, const std::vector<int64_t>& prompt) {
  Seq& s = get(seq);
  UDACI_CHECK(s.length == 0 && s.table.empty(),
              "begin_prompt: sequence {} already holds {} tokens", seq, s.length);
  if (!options_.prefix) return 0;
  s.prompt = prompt;
  const int64_t B = options_.block;
  const int64_t n_full = static_cast<int64_t>(prompt.size()) / B;
  s.hashes.resize(static_cast<size_t>(n_full));
  uint64_t h = 0;
  for (int64_t i = 0; i < n_full; ++i) s.hashes[i] = h = chain_hash(h, prompt.data() + i * B);
  prefix_lookup_tokens_ += static_cast<int64_t>(prompt.size());

  // The last prompt token is never served from the cache: its forward pass
  // gives the logits of the first new token.
  const int64_t usable = prompt.empty() ? 0 : (static_cast<int64_t>(prompt.size()) - 1) / B;
  int64_t hits = 0;
  for (; hits < usable; ++hits) {
    auto it = prefix_index_.find(s.hashes[hits]);
    if (it == prefix_index_.end()) break;
    const Block& blk = blocks_[it->second];
    const int64_t end = (hits + 1) * B;
    if (!blk.registered || static_cast<int64_t>(blk.prefix.size()) != end ||
        !std::equal(blk.prefix.begin(), blk.prefix.end(), prompt.begin()))
      break;  // a hash collision: compute the rest instead
    retain(it->second);
    s.table.push_back(it->second);
  }
  s.length = hits * B;
  s.registered = hits;
  s.gather_len = -1;
  prefix_hit_tokens_ += s.length;
  return s.length;
}

void PagedCache::fork(SeqId parent, SeqId child) {
  UDACI_CHECK(seqs_.count(child) == 0, "sequence {} already exists in the cache", child);
  const Seq& p = get(parent);
  Seq c;
  const int64_t used = (p.length + options_.block - 1) / options_.block;
  c.table.assign(p.table.begin(), p.table.begin() + used);
  for (int32_t b : c.table) retain(b);
  c.length = p.length;
  c.prompt = p.prompt;
  c.hashes = p.hashes;
  c.registered = p.registered;
  seqs_.emplace(child, std::move(c));
}

void PagedCache::grow_pool(int64_t min_blocks) {
  const int64_t have = static_cast<int64_t>(blocks_.size());
  // Doubling chunks: few allocations for a large pool, little waste for a
  // small one.
  int64_t n = std::max({min_blocks, kMinChunkBlocks, have});
  if (cap_blocks_ > 0) n = std::min(n, cap_blocks_ - have);
  if (n <= 0) return;
  const int64_t rows = n * options_.block;
  const auto opts = at::TensorOptions().device(shape_.device);
  Chunk c;
  if (options_.int8) {
    c.data = at::zeros({shape_.num_layers, 2, rows, shape_.num_kv_heads, shape_.head_dim},
                       opts.dtype(at::kChar));
    c.scale = at::zeros({shape_.num_layers, 2, rows, shape_.num_kv_heads, 1}, opts.dtype(at::kFloat));
  } else {
    c.data = at::zeros({shape_.num_layers, 2, rows, shape_.num_kv_heads, shape_.head_dim},
                       opts.dtype(shape_.dtype));
  }
  const auto ci = static_cast<int32_t>(chunks_.size());
  chunks_.push_back(std::move(c));
  for (int64_t i = 0; i < n; ++i) {
    Block b;
    b.chunk = ci;
    b.row0 = i * options_.block;
    blocks_.push_back(std::move(b));
  }
  // Lowest ids are handed out first.
  for (int64_t i = n - 1; i >= 0; --i) free_.push_back(static_cast<int32_t>(have + i));
}

int32_t PagedCache::allocate_block() {
  // With a cap the pool grows to it before cached blocks are reclaimed;
  // without one it grows only when nothing can be reclaimed, so cached
  // prefixes live in the slack that live sequences left and memory follows
  // the peak of live tokens instead of every prompt ever seen.
  if (free_.empty() && (cap_blocks_ > 0 || lru_.empty())) grow_pool(1);
  if (free_.empty() && !lru_.empty()) {
    // Reclaim the least recently used cached prefix block.
    const int32_t b = lru_.front();
    unregister(b);
    ++evictions_;
    return b;
  }
  if (free_.empty()) {
    fail(Status::kOutOfMemory,
         "paged cache: all {} blocks ({} bytes) allowed by the cap (max_blocks={}, max_bytes={}) "
         "are in use by live sequences and none can be evicted; free sequences or raise the cap",
         cap_blocks_, cap_blocks_ * block_bytes_, options_.max_blocks, options_.max_bytes);
  }
  const int32_t b = free_.back();
  free_.pop_back();
  return b;
}

void PagedCache::retain(int32_t b) {
  Block& blk = blocks_[b];
  if (blk.refs == 0) {
    if (blk.in_lru) {
      lru_.erase(blk.lru_it);
      blk.in_lru = false;
    }
    ++blocks_in_use_;
    note_reserved(bytes_reserved());
  }
  ++blk.refs;
}

void PagedCache::release(int32_t b) {
  Block& blk = blocks_[b];
  UDACI_CHECK_S(Status::kInternal, blk.refs > 0, "paged cache: block {} released too often", b);
  if (--blk.refs > 0) return;
  --blocks_in_use_;
  if (blk.registered) {
    blk.lru_it = lru_.insert(lru_.end(), b);
    blk.in_lru = true;
  } else {
    free_.push_back(b);
  }
}

void PagedCache::unregister(int32_t b) {
  Block& blk = blocks_[b];
  if (!blk.registered) return;
  auto it = prefix_index_.find(blk.hash);
  if (it != prefix_index_.end() && it->second == b) prefix_index_.erase(it);
  blk.registered = false;
  blk.prefix.clear();
  blk.prefix.shrink_to_fit();
  if (blk.in_lru) {
    lru_.erase(blk.lru_it);
    blk.in_lru = false;
  }
}

void PagedCache::copy_block(int32_t dst, int32_t src) {
  const Block& d = blocks_[dst];
  const Block& s = blocks_[src];
  const int64_t B = options_.block;
  chunks_[d.chunk].data.narrow(2, d.row0, B).copy_(chunks_[s.chunk].data.narrow(2, s.row0, B));
  if (options_.int8)
    chunks_[d.chunk].scale.narrow(2, d.row0, B).copy_(chunks_[s.chunk].scale.narrow(2, s.row0, B));
}

void PagedCache::prepare_write(Seq& s, int64_t end) {
  const int64_t B = options_.block;
  const int64_t needed = (end + B - 1) / B;
  while (static_cast<int64_t>(s.table.size()) < needed) {
    const int32_t b = allocate_block();
    retain(b);
    s.table.push_back(b);
    s.gather_len = -1;
  }
  // Never write into a block another sequence (or the prefix index) sees.
  for (int64_t i = s.length / B; i < needed; ++i) {
    const int32_t b = s.table[i];
    Block& blk = blocks_[b];
    if (blk.refs == 1) {
      // Only this sequence uses it: a registered block (reached again after a
      // truncate) simply leaves the index.
      unregister(b);
      continue;
    }
    const int32_t nb = allocate_block();
    retain(nb);
    copy_block(nb, b);
    release(b);
    s.table[i] = nb;
    s.gather_len = -1;
  }
}

void PagedCache::write(int64_t layer, Seq& s, const at::Tensor& x, int kind) {
  // x: [n, kv_heads, head_dim]
  const int64_t B = options_.block;
  const int64_t n = x.size(0);
  at::Tensor vals = x;
  at::Tensor scale;
  if (options_.int8) {
    // Symmetric per token and head: scale = max|x| / 127 (an all-zero row
    // keeps scale 1 so it dequantises to 0).
    at::Tensor xf = x.to(at::kFloat);
    scale = std::get<0>(xf.abs().max(-1, /*keepdim=*/true)).div_(127.0f);  // [n, kv_heads, 1]
    scale.masked_fill_(scale == 0, 1.0f);
    vals = xf.div(scale).round_().clamp_(-127, 127).to(at::kChar);
  }
  for (int64_t pos = s.length, end = s.length + n; pos < end;) {
    const Block& blk = blocks_[s.table[pos / B]];
    const int64_t off = pos % B;
    const int64_t cnt = std::min(B - off, end - pos);
    Chunk& c = chunks_[blk.chunk];
    c.data[layer][kind].narrow(0, blk.row0 + off, cnt).copy_(vals.narrow(0, pos - s.length, cnt));
    if (options_.int8)
      c.scale[layer][kind].narrow(0, blk.row0 + off, cnt).copy_(scale.narrow(0, pos - s.length, cnt));
    pos += cnt;
  }
}

const std::vector<PagedCache::GatherPart>& PagedCache::gather_plan(Seq& s, int64_t len) {
  if (s.gather_len == len) return s.gather;
  const int64_t B = options_.block;
  std::map<int32_t, std::pair<std::vector<int64_t>, std::vector<int64_t>>> by_chunk;
  for (int64_t p = 0; p < len; ++p) {
    const Block& blk = blocks_[s.table[p / B]];
    auto& part = by_chunk[blk.chunk];
    part.first.push_back(blk.row0 + p % B);
    part.second.push_back(p);
  }
  s.gather.clear();
  const auto long_opts = at::TensorOptions().dtype(at::kLong);
  for (auto& kv : by_chunk) {
    GatherPart g;
    g.chunk = kv.first;
    g.src_rows = at::tensor(kv.second.first, long_opts).to(shape_.device);
    if (by_chunk.size() > 1) g.dst_pos = at::tensor(kv.second.second, long_opts).to(shape_.device);
    s.gather.push_back(std::move(g));
  }
  s.gather_len = len;
  return s.gather;
}

at::Tensor PagedCache::read(int64_t layer, Seq& s, int64_t len, int kind) {
  const std::vector<GatherPart>& plan = gather_plan(s, len);
  auto part = [&](const GatherPart& g) {
    const Chunk& c = chunks_[g.chunk];
    at::Tensor rows = c.data[layer][kind].index_select(0, g.src_rows);  // [m, kv_heads, head_dim]
    if (!options_.int8) return rows;
    at::Tensor sc = c.scale[layer][kind].index_select(0, g.src_rows);  // [m, kv_heads, 1]
    return rows.to(at::kFloat).mul_(sc).to(shape_.dtype);
  };
  if (plan.size() == 1) return part(plan[0]);
  at::Tensor out = at::empty({len, shape_.num_kv_heads, shape_.head_dim},
                             at::TensorOptions().dtype(shape_.dtype).device(shape_.device));
  for (const GatherPart& g : plan) out.index_copy_(0, g.dst_pos, part(g));
  return out;
}

std::pair<at::Tensor, at::Tensor> PagedCache::append(int64_t layer, SeqId seq, const at::Tensor& k,
                                                     const at::Tensor& v) {
  Seq& s = get(seq);
  UDACI_CHECK(layer >= 0 && layer < shape_.num_layers, "paged cache: layer {} outside 0..{}", layer,
              shape_.num_layers - 1);
  UDACI_CHECK(k.dim() == 3 && k.size(1) == shape_.num_kv_heads && k.size(2) == shape_.head_dim &&
                  v.sizes() == k.sizes(),
              "paged cache: K/V must be [tokens, {}, {}]", shape_.num_kv_heads, shape_.head_dim);
  const int64_t n = k.size(0);
  const int64_t end = s.length + n;
  if (n > 0) {
    prepare_write(s, end);
    write(layer, s, k, kKey);
    write(layer, s, v, kValue);
  }
  if (end == 0) {
    at::Tensor e = at::empty({0, shape_.num_kv_heads, shape_.head_dim},
                             at::TensorOptions().dtype(shape_.dtype).device(shape_.device));
    return {e, e};
  }
  return {read(layer, s, end, kKey), read(layer, s, end, kValue)};
}

bool PagedCache::kv_in_place() const {
  return !options_.int8 && shape_.dtype == at::kFloat && shape_.device.is_cpu();
}

void PagedCache::append_in_place(int64_t layer, SeqId seq, const float* k, const float* v, int64_t n,
                                 std::vector<KvSpan>& spans) {
  UDACI_CHECK(kv_in_place(), "paged cache: K/V in place needs float32 K/V on the CPU (kv=float)");
  Seq& s = get(seq);
  UDACI_CHECK(layer >= 0 && layer < shape_.num_layers && n >= 0,
              "paged cache: layer {} outside 0..{} or {} new tokens", layer, shape_.num_layers - 1, n);
  const int64_t end = s.length + n;
  const int64_t B = options_.block;
  const int64_t row = shape_.num_kv_heads * shape_.head_dim;
  // Chunk data is [layers, 2, rows, kv_heads, head_dim], contiguous.
  auto rows_of = [&](const Block& blk, int kind) {
    const Chunk& c = chunks_[blk.chunk];
    return c.data.data_ptr<float>() + ((layer * 2 + kind) * c.data.size(2) + blk.row0) * row;
  };
  if (n > 0) {
    prepare_write(s, end);
    for (int64_t pos = s.length; pos < end;) {
      const Block& blk = blocks_[s.table[pos / B]];
      const int64_t off = pos % B, cnt = std::min(B - off, end - pos);
      const int64_t src = (pos - s.length) * row;
      std::memcpy(rows_of(blk, kKey) + off * row, k + src, static_cast<size_t>(cnt * row) * sizeof(float));
      std::memcpy(rows_of(blk, kValue) + off * row, v + src, static_cast<size_t>(cnt * row) * sizeof(float));
      pos += cnt;
    }
  }
  spans.clear();
  for (int64_t pos = 0; pos < end;) {
    const Block& blk = blocks_[s.table[pos / B]];
    const int64_t cnt = std::min(B, end - pos);
    const float* kp = rows_of(blk, kKey);
    const float* vp = rows_of(blk, kValue);
    if (!spans.empty() && spans.back().k + spans.back().tokens * row == kp &&
        spans.back().v + spans.back().tokens * row == vp) {
      spans.back().tokens += cnt;  // the next block follows in the same chunk
    } else {
      spans.push_back(KvSpan{kp, vp, cnt});
    }
    pos += cnt;
  }
}

std::pair<at::Tensor, at::Tensor> PagedCache::committed_kv(int64_t layer, SeqId seq) {
  const at::Tensor none = at::empty({0, shape_.num_kv_heads, shape_.head_dim},
                                    at::TensorOptions().dtype(shape_.dtype).device(shape_.device));
  return append(layer, seq, none, none);  // appends nothing, gathers the committed rows
}

void PagedCache::commit(SeqId seq, int64_t n_new) {
  Seq& s = get(seq);
  UDACI_CHECK(n_new >= 0 && s.length + n_new <= static_cast<int64_t>(s.table.size()) * options_.block,
              "paged cache: commit of {} tokens to sequence {} that appended fewer", n_new, seq);
  s.length += n_new;
  if (options_.prefix) register_prompt_blocks(s);
}

void PagedCache::register_prompt_blocks(Seq& s) {
  const int64_t B = options_.block;
  const int64_t full = std::min<int64_t>(s.length, static_cast<int64_t>(s.prompt.size())) / B;
  for (int64_t i = s.registered; i < full; ++i) {
    const int32_t b = s.table[i];
    Block& blk = blocks_[b];
    if (blk.registered) continue;
    // Another sequence of the same batch may have registered this prefix
    // first; keep its block and leave this one private.
    if (prefix_index_.count(s.hashes[i]) != 0) continue;
    blk.registered = true;
    blk.hash = s.hashes[i];
    blk.prefix.assign(s.prompt.begin(), s.prompt.begin() + (i + 1) * B);
    prefix_index_.emplace(blk.hash, b);
  }
  s.registered = std::max(s.registered, full);
}

void PagedCache::truncate(SeqId seq, int64_t length) {
  Seq& s = get(seq);
  UDACI_CHECK(length >= 0 && length <= s.length, "cannot truncate sequence {} of {} tokens to {}",
              seq, s.length, length);
  const int64_t B = options_.block;
  const auto keep = static_cast<size_t>((length + B - 1) / B);
  while (s.table.size() > keep) {
    release(s.table.back());
    s.table.pop_back();
  }
  s.length = length;
  // Tokens after `length` may be replaced by others: only the prompt's first
  // `length` tokens are still known to be in the cache.
  if (static_cast<int64_t>(s.prompt.size()) > length) {
    s.prompt.resize(static_cast<size_t>(length));
    s.hashes.resize(static_cast<size_t>(length / B));
  }
  s.registered = std::min(s.registered, length / B);
  s.gather_len = -1;
}

CacheStats PagedCache::stats() const {
  CacheStats st;
  st.prefix_hit_tokens = prefix_hit_tokens_;
  st.prefix_lookup_tokens = prefix_lookup_tokens_;
  st.blocks_in_use = blocks_in_use_;
  st.blocks_cached_free = static_cast<int64_t>(lru_.size());
  st.evictions = evictions_;
  st.pool_bytes = static_cast<int64_t>(blocks_.size()) * block_bytes_;
  return st;
}

void PagedCache::check_invariants() const {
  auto bad = [](const std::string& what) { fail(Status::kInternal, "paged cache invariant: {}", what); };
  std::vector<int32_t> refs(blocks_.size(), 0);
  for (const auto& kv : seqs_) {
    const Seq& s = kv.second;
    if (static_cast<int64_t>(s.table.size()) * options_.block < s.length)
      bad(fmt::format("sequence {} has {} blocks for {} tokens", kv.first, s.table.size(), s.length));
    for (int32_t b : s.table) ++refs[b];
  }
  int64_t in_use = 0;
  std::vector<int> where(blocks_.size(), 0);
  for (int32_t b : free_) where[b] += 1;
  for (int32_t b : lru_) where[b] += 2;
  for (size_t b = 0; b < blocks_.size(); ++b) {
    const Block& blk = blocks_[b];
    if (blk.refs != refs[b])
      bad(fmt::format("block {} counts {} references, tables hold {}", b, blk.refs, refs[b]));
    if (blk.refs > 0) {
      ++in_use;
      if (where[b] != 0) bad(fmt::format("block {} is in use and on a free list", b));
    } else if (blk.registered) {
      if (where[b] != 2 || !blk.in_lru) bad(fmt::format("cached block {} is not on the LRU once", b));
    } else if (where[b] != 1) {
      bad(fmt::format("free block {} is not on the free list once", b));
    }
    if (blk.registered) {
      auto it = prefix_index_.find(blk.hash);
      if (it == prefix_index_.end() || it->second != static_cast<int32_t>(b))
        bad(fmt::format("registered block {} is not in the prefix index", b));
      if (static_cast<int64_t>(blk.prefix.size()) % options_.block != 0 || blk.prefix.empty())
        bad(fmt::format("registered block {} keeps a prefix of {} tokens", b, blk.prefix.size()));
    }
  }
  for (const auto& kv : prefix_index_)
    if (!blocks_[kv.second].registered) bad(fmt::format("index points at unregistered block {}", kv.second));
  if (in_use != blocks_in_use_)
    bad(fmt::format("{} blocks in use, bookkeeping says {}", in_use, blocks_in_use_));
  if (cap_blocks_ > 0 && static_cast<int64_t>(blocks_.size()) > cap_blocks_)
    bad(fmt::format("pool of {} blocks exceeds the cap of {}", blocks_.size(), cap_blocks_));
}

std::unique_ptr<CacheStrategy> make_paged_cache(const CacheShape& shape,
                                                const PagedCacheOptions& options) {
  return std::make_unique<PagedCache>(shape, options);
}

}  // namespace udaci
