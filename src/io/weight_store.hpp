// Named weight tensors of a model file, as stored: dtype or quantised block
// format, shape, and a pointer into a memory-mapped file. Readers
// (safetensors, GGUF) fill a WeightStore; the model asks it for ATen tensors in
// its compute dtype.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/mapped_file.hpp"

namespace udaci {

// Storage format of one tensor. Plain dtypes and the GGUF block formats share
// one enum so that a WeightStore can hold a mix (GGUF files do).
enum class WeightType {
  kF32,
  kF16,
  kBF16,
  kF64,
  kI8,
  kI16,
  kI32,
  kI64,
  kU8,
  kBool,
  kQ4_0,
  kQ4_1,
  kQ5_0,
  kQ5_1,
  kQ8_0,
  kQ2_K,
  kQ3_K,
  kQ4_K,
  kQ5_K,
  kQ6_K,
};

// The one vocabulary of storage names: "F32", "F16", "BF16", "F64", "I8",
// "I16", "I32", "I64", "U8", "BOOL" (safetensors' dtype strings) and the GGUF
// block formats "Q4_0" ... "Q6_K" (ggml's type names).
const char* weight_type_name(WeightType t);
// The type of a name above; nullopt for any other string.
std::optional<WeightType> weight_type_from_name(std::string_view name);
// True for the block formats (more than one element per block).
bool weight_type_is_block(WeightType t);

// Elements per block and bytes per block (1 and sizeof(element) for plain
// dtypes).
int64_t weight_type_block_elems(WeightType t);
int64_t weight_type_block_bytes(WeightType t);

// Bytes needed for `n_elements` of type t; throws when n is not a multiple of
// the block size.
uint64_t weight_type_nbytes(WeightType t, uint64_t n_elements);

struct TensorEntry {
  std::string name;
  WeightType type = WeightType::kF32;
  std::vector<int64_t> shape;  // row-major, outermost first (HF order)
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;
  std::shared_ptr<const void> owner;  // keeps the mapping alive
  // The file map `data` lies in, when it lies in one (GGUF, safetensors):
  // lets a kernel that copied the bytes drop them from memory.
  std::shared_ptr<const MappedFile> file;
  std::string source;                 // file the tensor came from, for messages
  // GGUF converters permute the rows of Q and K for llama.cpp's interleaved
  // rotary layout; when > 0, tensor() undoes that permutation for this many
  // heads so the weights match the HF (rotate-half) layout.
  int64_t unpermute_heads = 0;

  int64_t numel() const;
};

// The ATen dtype of a plain storage type; Undefined for the block formats.
at::ScalarType weight_type_scalar_type(WeightType t);
// The storage type of an ATen dtype; nullopt for one no file stores.
std::optional<WeightType> weight_type_of(at::ScalarType t);
// An entry that holds the tensor itself (made contiguous; a plain dtype):
// what a quantizer, pruner or plan puts back into a store.
TensorEntry tensor_entry(const std::string& name, at::Tensor t, const std::string& source);

// For each row of the tensor in Hugging Face order, the index of the row as
// stored (the identity unless unpermute_heads > 0). Kernels that run stored
// blocks as they are (GGUF-native) read rows through this order.
std::vector<int64_t> stored_row_order(const TensorEntry& e);

class WeightStore {
 public:
  void add(TensorEntry entry);
  // Adds or replaces (a quantizer or pruner rewriting a tensor).
  void put(TensorEntry entry);
  // Removes the tensor; no-op when absent.
  void remove(const std::string& name);
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws Error(kBadModelFile) naming the tensor when it is absent.
  const TensorEntry& entry(const std::string& name) const;
  std::vector<std::string> names() const;
  size_t size() const { return tensors_.size(); }

  // The tensor as an ATen tensor of `dtype`. Zero-copy (a view of the mapping)
  // when the stored dtype equals `dtype`; converted or dequantised otherwise.
  // The result must be treated as read-only.
  at::Tensor tensor(const std::string& name, at::ScalarType dtype) const;

  // Bytes held per storage type, for `udaci info`.
  std::map<WeightType, uint64_t> bytes_by_type() const;
  uint64_t total_elements() const;

 private:
  std::map<std::string, TensorEntry> tensors_;
};

}  // namespace udaci
