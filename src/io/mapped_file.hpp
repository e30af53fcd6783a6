// A read-only memory map of a whole file. Tensors built over it keep it alive
// through a shared_ptr, so weights are never copied when their dtype is the
// compute dtype. from_bytes gives the same interface over a heap copy of
// bytes already in memory (the fuzz targets in fuzz/: no file per input, and
// an allocation of exactly the input's size, so that AddressSanitizer sees a
// read past its end).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace udaci {

class MappedFile {
 public:
  // Throws Error(kNotFound) when the file cannot be opened, kBadModelFile when
  // it cannot be mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  // A copy of `size` bytes at `data`; `name` stands for the path in messages.
  static std::shared_ptr<MappedFile> from_bytes(const void* data, size_t size,
                                                std::string name);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Drops the pages wholly inside [p, p + n) from this process's memory
  // (madvise MADV_DONTNEED) once a kernel has copied what it needs out of
  // them (repacked weights). Safe: the map is private and read-only, so a
  // later read faults the bytes back in from the file. A no-op for heap
  // copies and for ranges outside the map.
  void drop_pages(const void* p, size_t n) const;

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;  // munmap on destruction; else data_ is a heap copy
};

}  // namespace udaci
