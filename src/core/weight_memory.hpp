#pragma once
// Memory for weights that every decode step reads in full (issue #22).
//
// A decode step streams every weight once. On 4 KB pages that is one TLB
// entry per 4 KB, and the page walks of an 800 MB model miss the caches: on
// this project's 2-core Xeon, Llama-3.2-1B-shape Q4_K_M decoded at 54 ms a
// token on 4 KB pages and 41 ms on 2 MB pages, same kernels (BENCHMARKS.md
// M13 "Seventh step"). Linux backs anonymous memory with 2 MB pages only where
// asked (transparent_hugepage = madvise, the common default), so weights are
// allocated here: from 2 MB-aligned slabs marked MADV_HUGEPAGE, small tensors
// packed together (a SmolLM2 projection is 0.2 MB), a large one in its own
// mapping. Only whole 2 MB pages are marked, so a tail never costs more than
// the bytes it holds. Nothing changes where the kernel gives no huge pages
// (transparent_hugepage = never, other systems): the memory is then ordinary.
//
// UDACI_HUGE_PAGES=0 turns it off (plain aligned_alloc), for comparisons.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace udaci {

// `bytes` of zeroed memory, 64-byte aligned; freed when the last copy of the
// pointer goes. Throws Error(kOutOfMemory) when the system has none.
std::shared_ptr<uint8_t> allocate_weight_memory(size_t bytes);

// Whether allocate_weight_memory asks for huge pages (UDACI_HUGE_PAGES, the
// platform), and the system's transparent_hugepage mode ("always", "madvise",
// "never", or "unknown"): what a benchmark reports.
bool weight_huge_pages();
std::string transparent_huge_page_mode();

}  // namespace udaci
