#include "core/weight_memory.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>

#include "core/error.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#define UDACI_HAVE_MADVISE_HUGEPAGE 1
#endif

namespace udaci {

namespace {

constexpr size_t kHuge = size_t{2} << 20;  // an x86-64 / aarch64 (4 KB granule) huge page
constexpr size_t kSlab = size_t{32} << 20;  // small tensors are packed into slabs of this size
constexpr size_t kOwnMapping = size_t{8} << 20;  // from this size on, a tensor gets its own mapping
constexpr size_t kAlign = 64;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

std::shared_ptr<uint8_t> plain(size_t bytes) {
  void* mem = std::aligned_alloc(kAlign, round_up(std::max<size_t>(bytes, 1), kAlign));
  UDACI_CHECK_S(Status::kOutOfMemory, mem != nullptr, "cannot allocate {} bytes of weights", bytes);
  std::memset(mem, 0, bytes);
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(mem), [](uint8_t* p) { std::free(p); });
}

#ifdef UDACI_HAVE_MADVISE_HUGEPAGE
// A 2 MB-aligned anonymous mapping of round_up(bytes, 4 KB) bytes (zeroed by
// the kernel), its whole 2 MB pages marked MADV_HUGEPAGE; nullptr when mmap fails.
std::shared_ptr<uint8_t> huge_mapping(size_t bytes) {
  const size_t len = round_up(bytes, 4096);
  const size_t span = len + kHuge;
  void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const auto base = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t start = round_up(base, kHuge);
  if (start > base) ::munmap(raw, start - base);
  if (base + span > start + len) ::munmap(reinterpret_cast<void*>(start + len), base + span - (start + len));
  const size_t whole = len / kHuge * kHuge;
  if (whole > 0) (void)::madvise(reinterpret_cast<void*>(start), whole, MADV_HUGEPAGE);
  return std::shared_ptr<uint8_t>(reinterpret_cast<uint8_t*>(start), [len](uint8_t* p) { ::munmap(p, len); });
}

struct Slabs {
  std::mutex mu;
  std::weak_ptr<uint8_t> current;  // the slab being filled (its tensors own it)
  size_t used = 0;
};
#endif

}  // namespace

std::string transparent_huge_page_mode() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  if (!f || !std::getline(f, line)) return "unknown";
  // e.g. "always [madvise] never": the selected mode is in brackets
  const size_t a = line.find('['), b = line.find(']');
  if (a == std::string::npos || b == std::string::npos || b < a) return "unknown";
  return line.substr(a + 1, b - a - 1);
}

bool weight_huge_pages() {
#ifdef UDACI_HAVE_MADVISE_HUGEPAGE
  static const bool on = [] {
    const char* env = std::getenv("UDACI_HUGE_PAGES");
    if (env != nullptr && std::strcmp(env, "0") == 0) return false;
    return transparent_huge_page_mode() != "never";
  }();
  return on;
#else
  return false;
#endif
}

std::shared_ptr<uint8_t> allocate_weight_memory(size_t bytes) {
#ifdef UDACI_HAVE_MADVISE_HUGEPAGE
  if (bytes == 0 || !weight_huge_pages()) return plain(bytes);
  if (bytes >= kOwnMapping) {
    std::shared_ptr<uint8_t> m = huge_mapping(bytes);
    return m ? m : plain(bytes);
  }
  static Slabs slabs;
  std::lock_guard<std::mutex> lk(slabs.mu);
  const size_t need = round_up(bytes, kAlign);
  std::shared_ptr<uint8_t> slab = slabs.current.lock();
  if (!slab || slabs.used + need > kSlab) {
    slab = huge_mapping(kSlab);
    if (!slab) return plain(bytes);
    slabs.current = slab;  // a full slab lives on in the tensors it holds
    slabs.used = 0;
  }
  uint8_t* p = slab.get() + slabs.used;
  slabs.used += need;
  // Shares the slab's ownership: it is unmapped when its last tensor goes.
  return std::shared_ptr<uint8_t>(slab, p);
#else
  return plain(bytes);
#endif
}

}  // namespace udaci
