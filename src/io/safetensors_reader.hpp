// Reads safetensors files (https://github.com/huggingface/safetensors, format:
// 8-byte little-endian header length N, N bytes of JSON, then the data buffer)
// into a WeightStore without copying tensor data. Every offset, size and dtype
// is validated against the file before any tensor is exposed.
#pragma once

#include <memory>
#include <string>

#include "io/mapped_file.hpp"
#include "io/weight_store.hpp"

namespace udaci {

// Upper bound on the JSON header: real headers are a few hundred KiB; a huge
// value is a corrupt or hostile file, not a model.
inline constexpr uint64_t kMaxSafetensorsHeader = 100ull << 20;

// Adds every tensor of one .safetensors file to `store`.
void read_safetensors_file(const std::string& path, WeightStore& store);
// The same over a mapping already made (MappedFile::from_bytes for bytes in
// memory); its path() names it in messages and in TensorEntry::source.
void read_safetensors_file(const std::shared_ptr<MappedFile>& file, WeightStore& store);

// Reads a sharded checkpoint from its index (model.safetensors.index.json):
// every shard named in "weight_map" is opened once, and each tensor must be in
// the shard the index names.
void read_safetensors_index(const std::string& index_path, WeightStore& store);

}  // namespace udaci
