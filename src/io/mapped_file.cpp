#include "io/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <utility>

#include "core/error.hpp"

namespace udaci {

namespace {
constexpr size_t kHeapAlignment = 64;
}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fail(errno == ENOENT ? Status::kNotFound : Status::kBadModelFile, "cannot open '{}': {}", path,
         std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(Status::kBadModelFile, "'{}' is not a regular file", path);
  }
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void* p = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      fail(Status::kBadModelFile, "cannot map '{}': {}", path, std::strerror(err));
    }
    file->data_ = static_cast<const uint8_t*>(p);
    file->mapped_ = true;
  }
  ::close(fd);
  return file;
}

std::shared_ptr<MappedFile> MappedFile::from_bytes(const void* data, size_t size,
                                                   std::string name) {
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = std::move(name);
  file->size_ = size;
  if (size > 0) {
    // Aligned like the start of a mapping as far as tensor readers care
    // (GGUF data offsets are multiples of general.alignment, default 32).
    auto* p = static_cast<uint8_t*>(::operator new(size, std::align_val_t{kHeapAlignment}));
    std::memcpy(p, data, size);
    file->data_ = p;
  }
  return file;
}

MappedFile::~MappedFile() {
  if (data_ == nullptr) return;
  if (mapped_) {
    ::munmap(const_cast<uint8_t*>(data_), size_);
  } else {
    ::operator delete(const_cast<uint8_t*>(data_), std::align_val_t{kHeapAlignment});
  }
}

void MappedFile::drop_pages(const void* p, size_t n) const {
  if (!mapped_ || p == nullptr || n == 0) return;
  const auto begin = reinterpret_cast<uintptr_t>(data_), end = begin + size_;
  const auto lo = reinterpret_cast<uintptr_t>(p), hi = lo + n;
  if (lo < begin || hi > end) return;
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = (lo + page - 1) / page * page, last = hi / page * page;
  if (first >= last) return;
  // Advice only: a failure leaves the pages where they are.
  (void)::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

}  // namespace udaci
