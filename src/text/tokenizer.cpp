#include "text/tokenizer.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <mutex>
#include <unordered_map>

#include "core/error.hpp"
#include "core/limits.hpp"
#include "core/utf8.hpp"

namespace udaci {

// ---- byte-to-unicode (GPT-2 encoder.py bytes_to_unicode) ---------------------

namespace {

// Printable bytes '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF stand for
// themselves; the other 68 bytes map, in byte order, to U+0100, U+0101, ...
std::array<uint32_t, 256> byte_to_codepoint() {
  std::array<uint32_t, 256> m{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    m[b] = printable ? b : next++;
  }
  return m;
}

// Open-addressing map from a token-id pair to (rank, merged id).
class MergeMap {
 public:
  struct Value {
    int32_t rank;
    int32_t id;
  };
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    keys_.assign(cap, kEmpty);
    values_.assign(cap, Value{0, 0});
    mask_ = cap - 1;
  }
  // Later entries for the same pair replace earlier ones, as HF builds its
  // merge map by collecting (pair, (rank, id)) into a HashMap.
  void put(int32_t a, int32_t b, Value v) {
    const uint64_t key = pack(a, b);
    size_t i = hash(key) & mask_;
    while (keys_[i] != kEmpty && keys_[i] != key) i = (i + 1) & mask_;
    keys_[i] = key;
    values_[i] = v;
  }
  const Value* find(int32_t a, int32_t b) const {
    const uint64_t key = pack(a, b);
    size_t i = hash(key) & mask_;
    while (true) {
      if (keys_[i] == key) return &values_[i];
      if (keys_[i] == kEmpty) return nullptr;
      i = (i + 1) & mask_;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  static uint64_t pack(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  static size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
  std::vector<uint64_t> keys_;
  std::vector<Value> values_;
  size_t mask_ = 0;
};

// Bounded per-word cache, sharded to keep lock contention low when many
// threads encode at once. A full shard is simply cleared (cheap, and words
// repeat heavily in natural text, so it refills with the frequent ones).
class WordCache {
 public:
  static constexpr size_t kShards = 16;
  static constexpr size_t kMaxEntriesPerShard = 4096;
  static constexpr size_t kMaxWordBytes = 256;

  bool get(std::string_view word, size_t h, std::vector<int32_t>& out) const {
    Shard& s = shards_[h % kShards];
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.map.find(h);
    if (it == s.map.end() || it->second.word != word) return false;
    out.insert(out.end(), it->second.ids.begin(), it->second.ids.end());
    return true;
  }
  void put(std::string_view word, size_t h, const int32_t* ids, size_t n) const {
    Shard& s = shards_[h % kShards];
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.map.size() >= kMaxEntriesPerShard) s.map.clear();
    Entry& e = s.map[h];
    e.word.assign(word.data(), word.size());
    e.ids.assign(ids, ids + n);
  }

 private:
  struct Entry {
    std::string word;
    std::vector<int32_t> ids;
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<size_t, Entry> map;
  };
  mutable std::array<Shard, kShards> shards_;
};

// Byte trie of the added tokens, for leftmost-longest matching.
struct AddedTrie {
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
    int32_t token = -1;
  };
  std::vector<Node> nodes{Node{}};
  std::array<bool, 256> first_byte{};

  void insert(std::string_view s, int32_t id) {
    int32_t cur = 0;
    for (char ch : s) {
      const auto c = static_cast<uint8_t>(ch);
      auto& ch_list = nodes[cur].children;
      auto it = std::lower_bound(ch_list.begin(), ch_list.end(), std::make_pair(c, int32_t{-1}));
      if (it != ch_list.end() && it->first == c) {
        cur = it->second;
      } else {
        const auto idx = static_cast<int32_t>(nodes.size());
        ch_list.insert(it, {c, idx});
        nodes.emplace_back();
        cur = idx;
      }
    }
    // The first registration of a content wins (HF keeps one id per content).
    if (nodes[cur].token < 0) nodes[cur].token = id;
    first_byte[static_cast<uint8_t>(s[0])] = true;
  }
  // Longest added token starting at text[pos]: (id, length) or (-1, 0).
  std::pair<int32_t, size_t> longest(std::string_view text, size_t pos) const {
    int32_t cur = 0;
    std::pair<int32_t, size_t> best{-1, 0};
    for (size_t i = pos; i < text.size(); ++i) {
      const auto c = static_cast<uint8_t>(text[i]);
      const auto& ch_list = nodes[cur].children;
      auto it = std::lower_bound(ch_list.begin(), ch_list.end(), std::make_pair(c, int32_t{-1}));
      if (it == ch_list.end() || it->first != c) break;
      cur = it->second;
      if (nodes[cur].token >= 0) best = {nodes[cur].token, i + 1 - pos};
    }
    return best;
  }
};

}  // namespace

// ---- Impl -------------------------------------------------------------------

struct Tokenizer::Impl {
  TokenizerSpec spec;
  std::unique_ptr<PreTokenizer> pre;
  bool ignore_merges = false;
  std::vector<std::string> bytes;     // raw bytes of each token
  std::vector<uint8_t> special;       // control tokens
  std::vector<uint8_t> added;         // split out before BPE
  std::unordered_map<std::string_view, int32_t> by_token;  // into spec.tokens
  std::unordered_map<std::string_view, int32_t> by_bytes;  // normal tokens, into bytes
  std::array<int32_t, 256> byte_id{};
  MergeMap merges;
  AddedTrie trie;
  bool has_added = false;
  std::vector<int32_t> eos_ids;
  WordCache cache;

  void bpe(std::string_view word, std::vector<int32_t>& out) const;
  void bpe_uncached(std::string_view word, std::vector<int32_t>& out) const;
  void encode_segment(std::string_view seg, std::vector<int32_t>& out,
                      std::vector<Piece>& pieces) const;
};

void Tokenizer::Impl::bpe_uncached(std::string_view word, std::vector<int32_t>& out) const {
  struct Sym {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  struct Cand {
    int32_t rank;
    int32_t pos;
    int32_t id;
  };
  // Lowest rank first, then leftmost: HF models/bpe/word.rs Merge ordering.
  auto worse = [](const Cand& a, const Cand& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  std::vector<Sym> syms;
  syms.reserve(word.size());
  for (char c : word) {
    const int32_t id = byte_id[static_cast<uint8_t>(c)];
    if (id < 0) continue;  // no token for this byte: dropped, as HF does
    const auto i = static_cast<int32_t>(syms.size());
    syms.push_back({id, i - 1, -1, true});
    if (i > 0) syms[i - 1].next = i;
  }
  const auto n = static_cast<int32_t>(syms.size());
  std::vector<Cand> heap;
  heap.reserve(n);
  for (int32_t i = 0; i + 1 < n; ++i) {
    if (const auto* m = merges.find(syms[i].id, syms[i + 1].id)) heap.push_back({m->rank, i, m->id});
  }
  std::make_heap(heap.begin(), heap.end(), worse);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    const Cand top = heap.back();
    heap.pop_back();
    Sym& left = syms[top.pos];
    if (!left.alive || left.next < 0) continue;
    Sym& right = syms[left.next];
    // Skip entries made stale by an earlier merge of either neighbour.
    const auto* m = merges.find(left.id, right.id);
    if (!m || m->id != top.id) continue;
    left.id = top.id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) syms[left.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const auto* pm = merges.find(syms[left.prev].id, left.id)) {
        heap.push_back({pm->rank, left.prev, pm->id});
        std::push_heap(heap.begin(), heap.end(), worse);
      }
    }
    if (left.next >= 0) {
      if (const auto* nm = merges.find(left.id, syms[left.next].id)) {
        heap.push_back({nm->rank, top.pos, nm->id});
        std::push_heap(heap.begin(), heap.end(), worse);
      }
    }
  }
  for (int32_t i = 0; i >= 0 && i < n; i = syms[i].next) out.push_back(syms[i].id);
}

void Tokenizer::Impl::bpe(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() == 1) {
    const int32_t id = byte_id[static_cast<uint8_t>(word[0])];
    if (id >= 0) out.push_back(id);
    return;
  }
  if (ignore_merges) {
    auto it = by_bytes.find(word);
    if (it != by_bytes.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (word.size() > WordCache::kMaxWordBytes) {
    bpe_uncached(word, out);
    return;
  }
  const size_t h = std::hash<std::string_view>{}(word);
  if (cache.get(word, h, out)) return;
  const size_t start = out.size();
  bpe_uncached(word, out);
  cache.put(word, h, out.data() + start, out.size() - start);
}

void Tokenizer::Impl::encode_segment(std::string_view seg, std::vector<int32_t>& out,
                                     std::vector<Piece>& pieces) const {
  if (seg.empty()) return;
  pieces.clear();
  pre->split(seg, pieces);
  for (const Piece& p : pieces) bpe(seg.substr(p.first, p.second - p.first), out);
}

// ---- construction -----------------------------------------------------------

Tokenizer Tokenizer::from_spec(TokenizerSpec spec) {
  bool ignore_merges = false;
  auto steps = PreTokenizer::steps_for_name(spec.pre_tokenizer, &ignore_merges);
  return build(std::move(spec), std::move(steps), ignore_merges);
}

Tokenizer Tokenizer::build(TokenizerSpec spec, std::vector<PreTokenizerStep> steps,
                           bool ignore_merges) {
  auto impl = std::make_shared<Impl>();
  Impl& m = *impl;
  m.spec = std::move(spec);
  const TokenizerSpec& s = m.spec;
  const size_t n = s.tokens.size();
  UDACI_CHECK_S(Status::kBadModelFile, n > 0, "tokenizer: the vocabulary is empty");
  UDACI_CHECK_S(Status::kBadModelFile, n <= kMaxVocabTokens,
                "tokenizer: {} tokens, over the limit of {}", n, kMaxVocabTokens);
  UDACI_CHECK_S(Status::kBadModelFile, s.merges.size() <= kMaxMerges,
                "tokenizer: {} merges, over the limit of {}", s.merges.size(), kMaxMerges);
  UDACI_CHECK_S(Status::kBadModelFile, s.chat_template.size() <= kMaxChatTemplateBytes,
                "tokenizer: the chat template is {} bytes, over the limit of {}",
                s.chat_template.size(), kMaxChatTemplateBytes);
  UDACI_CHECK_S(Status::kBadModelFile, s.token_types.empty() || s.token_types.size() == n,
                "tokenizer: {} token types for {} tokens", s.token_types.size(), n);
  auto check_id = [n](int64_t id, const char* what) {
    UDACI_CHECK_S(Status::kBadModelFile, id >= -1 && id < static_cast<int64_t>(n),
                  "tokenizer: {} id {} is outside the vocabulary of {} tokens", what, id, n);
  };
  check_id(s.bos_id, "bos");
  check_id(s.eos_id, "eos");
  check_id(s.pad_id, "pad");
  check_id(s.unk_id, "unk");
  for (int64_t id : s.eos_ids) check_id(id, "eos_ids");
  UDACI_CHECK_S(Status::kBadModelFile, !s.add_bos || s.bos_id >= 0,
                "tokenizer: add_bos is set but there is no bos token");
  UDACI_CHECK_S(Status::kBadModelFile, !s.add_eos || s.eos_id >= 0,
                "tokenizer: add_eos is set but there is no eos token");
  m.pre = std::make_unique<PreTokenizer>(std::move(steps));
  m.ignore_merges = ignore_merges;

  // Token kinds. Control tokens are special added tokens (HF special=true);
  // user-defined ones are added but not special. Without types, the
  // bos/eos/pad/unk tokens are the special ones.
  m.special.assign(n, 0);
  m.added.assign(n, 0);
  if (!s.token_types.empty()) {
    for (size_t i = 0; i < n; ++i) {
      if (s.token_types[i] == TokenType::kControl) m.special[i] = m.added[i] = 1;
      if (s.token_types[i] == TokenType::kUserDefined) m.added[i] = 1;
    }
  } else {
    for (int64_t id : {s.bos_id, s.eos_id, s.pad_id, s.unk_id})
      if (id >= 0) m.special[id] = m.added[id] = 1;
  }

  // Raw bytes of every token: normal tokens through the inverse byte map,
  // added tokens verbatim. A normal token with a character outside the byte
  // alphabet keeps its UTF-8 as is (HF's ByteLevel decoder does the same).
  const auto b2c = byte_to_codepoint();
  std::unordered_map<uint32_t, uint8_t> c2b;
  for (uint32_t b = 0; b < 256; ++b) c2b[b2c[b]] = static_cast<uint8_t>(b);
  m.bytes.resize(n);
  m.by_token.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = s.tokens[i];
    if (t.empty()) continue;
    UDACI_CHECK_S(Status::kBadModelFile, is_valid_utf8(t), "tokenizer: token {} is not valid UTF-8", i);
    m.by_token.emplace(t, static_cast<int32_t>(i));  // first id wins for duplicates
    if (m.added[i]) {
      m.bytes[i] = t;
      continue;
    }
    std::string raw;
    bool all_mapped = true;
    for (size_t k = 0; k < t.size();) {
      size_t len = 0;
      auto it = c2b.find(decode_utf8_at(t, k, &len));
      k += len;
      if (it == c2b.end()) {
        all_mapped = false;
        break;
      }
      raw += static_cast<char>(it->second);
    }
    m.bytes[i] = all_mapped ? raw : t;
  }
  m.by_bytes.reserve(n * 2);
  for (size_t i = 0; i < n; ++i)
    if (!m.added[i] && !m.bytes[i].empty()) m.by_bytes.emplace(m.bytes[i], static_cast<int32_t>(i));

  // Byte tokens. A byte-level vocabulary need not have all 256: SmolLM2's
  // lacks 21 (e.g. 0x04, 0xF1, 0xFF). HF's BPE without an unk_token silently
  // drops a character that has no token, and so do we (byte_id = -1). The
  // printable ASCII bytes and the space must be there, or this is not a
  // byte-level vocabulary at all.
  for (uint32_t b = 0; b < 256; ++b) {
    std::string ch;
    append_utf8(ch, b2c[b]);
    auto it = m.by_token.find(ch);
    const bool required = b >= 0x20 && b <= 0x7E;
    UDACI_CHECK_S(Status::kBadModelFile, it != m.by_token.end() || !required,
                  "tokenizer: the vocabulary has no token for byte 0x{:02X} ('{}'); not a "
                  "byte-level BPE vocabulary",
                  b, ch);
    m.byte_id[b] = it == m.by_token.end() ? -1 : it->second;
  }

  // Merges "left right" in rank order.
  m.merges.reserve(s.merges.size());
  std::string merged;
  for (size_t r = 0; r < s.merges.size(); ++r) {
    const std::string& mg = s.merges[r];
    const size_t sp = mg.find(' ');
    UDACI_CHECK_S(Status::kBadModelFile,
                  sp != std::string::npos && sp > 0 && sp + 1 < mg.size() &&
                      mg.find(' ', sp + 1) == std::string::npos,
                  "tokenizer: merge {} '{}' is not two tokens separated by one space", r, mg);
    const std::string_view a(mg.data(), sp), b(mg.data() + sp + 1, mg.size() - sp - 1);
    auto ia = m.by_token.find(a), ib = m.by_token.find(b);
    UDACI_CHECK_S(Status::kBadModelFile, ia != m.by_token.end(),
                  "tokenizer: merge {} '{}' names '{}', which is not in the vocabulary", r, mg, a);
    UDACI_CHECK_S(Status::kBadModelFile, ib != m.by_token.end(),
                  "tokenizer: merge {} '{}' names '{}', which is not in the vocabulary", r, mg, b);
    merged.assign(a.data(), a.size());
    merged.append(b.data(), b.size());
    auto im = m.by_token.find(merged);
    UDACI_CHECK_S(Status::kBadModelFile, im != m.by_token.end(),
                  "tokenizer: merge {} '{}' makes '{}', which is not in the vocabulary", r, mg, merged);
    m.merges.put(ia->second, ib->second, {static_cast<int32_t>(r), im->second});
  }

  for (size_t i = 0; i < n; ++i) {
    if (m.added[i] && !s.tokens[i].empty()) {
      m.trie.insert(s.tokens[i], static_cast<int32_t>(i));
      m.has_added = true;
    }
  }
  for (int64_t id : s.eos_ids) m.eos_ids.push_back(static_cast<int32_t>(id));
  if (s.eos_id >= 0 &&
      std::find(m.eos_ids.begin(), m.eos_ids.end(), static_cast<int32_t>(s.eos_id)) == m.eos_ids.end())
    m.eos_ids.insert(m.eos_ids.begin(), static_cast<int32_t>(s.eos_id));
  return Tokenizer(std::move(impl));
}

// ---- encode / decode --------------------------------------------------------

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  const Impl& m = *impl_;
  std::string repaired;
  if (!is_valid_utf8(text)) {
    append_utf8_lossy(text, repaired, true);
    text = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_special && m.spec.add_bos) ids.push_back(static_cast<int32_t>(m.spec.bos_id));
  std::vector<Piece> pieces;
  size_t seg = 0;
  if (m.has_added) {
    // Leftmost-longest, non-overlapping, like HF's AddedVocabulary (an
    // Aho-Corasick LeftmostLongest automaton). A special token matched while
    // parse_special is off stays text, and matching resumes after it.
    size_t pos = 0;
    while (pos < text.size()) {
      if (!m.trie.first_byte[static_cast<uint8_t>(text[pos])]) {
        ++pos;
        continue;
      }
      auto [id, len] = m.trie.longest(text, pos);
      if (id < 0) {
        ++pos;
        continue;
      }
      if (!parse_special && m.special[id]) {
        pos += len;
        continue;
      }
      m.encode_segment(text.substr(seg, pos - seg), ids, pieces);
      ids.push_back(id);
      pos += len;
      seg = pos;
    }
  }
  m.encode_segment(text.substr(seg), ids, pieces);
  if (add_special && m.spec.add_eos) ids.push_back(static_cast<int32_t>(m.spec.eos_id));
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  const Impl& m = *impl_;
  std::string raw;
  for (int32_t id : ids) {
    UDACI_CHECK(id >= 0 && static_cast<size_t>(id) < m.bytes.size(),
                "decode: token id {} is outside the vocabulary of {} tokens", id, m.bytes.size());
    if (skip_special && m.special[id]) continue;
    raw += m.bytes[id];
  }
  if (is_valid_utf8(raw)) return raw;
  std::string out;
  append_utf8_lossy(raw, out, true);
  return out;
}

std::string Tokenizer::IncrementalDecoder::feed(int32_t id) {
  const Impl& m = *tok_->impl_;
  UDACI_CHECK(id >= 0 && static_cast<size_t>(id) < m.bytes.size(),
              "decode: token id {} is outside the vocabulary of {} tokens", id, m.bytes.size());
  if (skip_special_ && m.special[id]) return {};
  pending_ += m.bytes[id];
  std::string out;
  const size_t used = append_utf8_lossy(pending_, out, false);
  pending_.erase(0, used);
  return out;
}

std::string Tokenizer::IncrementalDecoder::flush() {
  std::string out;
  append_utf8_lossy(pending_, out, true);
  pending_.clear();
  return out;
}

// ---- accessors --------------------------------------------------------------

const std::string& Tokenizer::id_to_token(int32_t id) const {
  UDACI_CHECK(id >= 0 && static_cast<size_t>(id) < impl_->spec.tokens.size(),
              "token id {} is outside the vocabulary of {} tokens", id, impl_->spec.tokens.size());
  return impl_->spec.tokens[id];
}
const std::string& Tokenizer::token_bytes(int32_t id) const {
  UDACI_CHECK(id >= 0 && static_cast<size_t>(id) < impl_->bytes.size(),
              "token id {} is outside the vocabulary of {} tokens", id, impl_->bytes.size());
  return impl_->bytes[id];
}
int32_t Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->by_token.find(token);
  return it == impl_->by_token.end() ? -1 : it->second;
}
int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->spec.tokens.size()); }
int32_t Tokenizer::bos_id() const { return static_cast<int32_t>(impl_->spec.bos_id); }
int32_t Tokenizer::eos_id() const { return static_cast<int32_t>(impl_->spec.eos_id); }
int32_t Tokenizer::pad_id() const { return static_cast<int32_t>(impl_->spec.pad_id); }
const std::vector<int32_t>& Tokenizer::eos_ids() const { return impl_->eos_ids; }
bool Tokenizer::add_bos() const { return impl_->spec.add_bos; }
bool Tokenizer::add_eos() const { return impl_->spec.add_eos; }
bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special.size() && impl_->special[id];
}
const std::string& Tokenizer::chat_template() const { return impl_->spec.chat_template; }
const TokenizerSpec& Tokenizer::spec() const { return impl_->spec; }

}  // namespace udaci
