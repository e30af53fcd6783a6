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

}  // namespace udaci
