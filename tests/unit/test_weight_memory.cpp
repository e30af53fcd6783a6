// Weight memory (core/weight_memory): zeroed, aligned, disjoint, marked for
// 2 MB pages where the system gives them, and unmapped when the last tensor
// that lives in it goes.
#include "udaci_catch.hpp"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/weight_memory.hpp"

using namespace udaci;

namespace {

struct Vma {
  bool found = false;
  uintptr_t lo = 0, hi = 0;
  int thp_eligible = -1;  // smaps' THPeligible, -1 when the kernel does not say
};

// The mapping of this process that holds address p (/proc/self/smaps).
Vma vma_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  std::ifstream f("/proc/self/smaps");
  std::string line;
  Vma v;
  bool in = false;
  while (std::getline(f, line)) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-' && line.find(':') > line.find(' ')) {
      if (v.found) break;  // the next mapping starts
      in = a >= lo && a < hi;
      if (in) v = Vma{true, lo, hi, -1};
      continue;
    }
    if (in && line.rfind("THPeligible:", 0) == 0) v.thp_eligible = std::stoi(line.substr(12));
  }
  return v;
}

bool zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

}  // namespace

TEST_CASE("weight memory: zeroed, 64-byte aligned and disjoint, small tensors and large") {
  const std::vector<size_t> sizes = {1, 63, 64, 1000, 200000, size_t{3} << 20, size_t{9} << 20, 7, size_t{20} << 20};
  std::vector<std::shared_ptr<uint8_t>> bufs;
  for (size_t n : sizes) {
    std::shared_ptr<uint8_t> b = allocate_weight_memory(n);
    REQUIRE(b);
    CHECK(reinterpret_cast<uintptr_t>(b.get()) % 64 == 0);
    CHECK(zero(b.get(), n));
    bufs.push_back(b);
  }
  // Each buffer written with its own byte: no buffer overlaps another.
  for (size_t i = 0; i < bufs.size(); ++i) std::memset(bufs[i].get(), static_cast<int>(i + 1), sizes[i]);
  for (size_t i = 0; i < bufs.size(); ++i) {
    INFO("buffer " << i << " of " << sizes[i] << " bytes");
    bool same = true;
    for (size_t k = 0; k < sizes[i]; ++k) same = same && bufs[i].get()[k] == static_cast<uint8_t>(i + 1);
    CHECK(same);
  }
  CHECK(allocate_weight_memory(0) != nullptr);
}

TEST_CASE("weight memory: marked for huge pages where the system has them, unmapped with its last tensor") {
  const std::string mode = transparent_huge_page_mode();
  INFO("transparent_hugepage: " << mode << ", weight_huge_pages: " << weight_huge_pages());
  if (mode == "never") CHECK_FALSE(weight_huge_pages());
  if (!weight_huge_pages()) {
    // Ordinary memory: still usable, nothing more to check here.
    CHECK(allocate_weight_memory(size_t{9} << 20) != nullptr);
    return;
  }
  // A large tensor: its own 2 MB-aligned mapping, huge-page eligible.
  std::shared_ptr<uint8_t> big = allocate_weight_memory((size_t{9} << 20) + 123);
  CHECK(reinterpret_cast<uintptr_t>(big.get()) % (size_t{2} << 20) == 0);
  const Vma v = vma_of(big.get());
  REQUIRE(v.found);
  if (v.thp_eligible >= 0) CHECK(v.thp_eligible == 1);

  // Small tensors are packed into a slab, huge-page eligible too, that each of
  // them owns a share of.
  std::shared_ptr<uint8_t> a, b;
  for (int tries = 0; tries < 3; ++tries) {  // a pair at a slab's end lands in two slabs
    a = allocate_weight_memory(100000);
    b = allocate_weight_memory(100000);
    if (b.get() == a.get() + 100032) break;
  }
  REQUIRE(b.get() == a.get() + 100032);  // bump allocation, 64-byte steps
  const Vma va = vma_of(a.get());
  REQUIRE(va.found);
  if (va.thp_eligible >= 0) CHECK(va.thp_eligible == 1);
  const long both = b.use_count();
  CHECK(both >= 2);
  a.reset();
  CHECK(b.use_count() == both - 1);

  // The large mapping is unmapped with its tensor.
  const void* big_at = big.get();
  big.reset();
  CHECK_FALSE(vma_of(big_at).found);
}
