// Reads GGUF model files (versions 2 and 3, little-endian), the format of
// llama.cpp: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
//
// Layout: magic "GGUF", uint32 version, uint64 tensor count, uint64 metadata
// count, the metadata key/value pairs, the tensor infos (name, dims innermost
// first, ggml type, offset into the data section), padding to
// `general.alignment` (default 32), then the data section.
//
// The whole file is memory-mapped; every length, count, offset and size read
// from it is checked against the file and against the limits below before it
// is used, so a corrupt or hostile file gives Error(kBadModelFile) naming the
// problem, never a crash or a huge allocation.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/mapped_file.hpp"
#include "io/weight_store.hpp"

namespace udaci {

// Limits on what a GGUF file may declare. Real files are far below each; a
// larger value is a corrupt or hostile file, not a model.
// Whole file: the largest public checkpoints in F16 are under 1 TiB.
inline constexpr uint64_t kGgufMaxFileBytes = 2ull << 40;
// Tensors: a 405B Llama has ~1.1k; MoE models with split experts ~20k.
inline constexpr uint64_t kGgufMaxTensors = 1ull << 16;
// Metadata entries: real files carry a few dozen.
inline constexpr uint64_t kGgufMaxMetadataEntries = 1ull << 16;
// One string value (chat templates are the longest, ~10-100 KiB).
inline constexpr uint64_t kGgufMaxStringBytes = 16ull << 20;
// Keys are ASCII paths; the GGUF spec caps them at 65535 bytes.
inline constexpr uint64_t kGgufMaxKeyBytes = 65535;
// Elements of one metadata array (vocabularies are ~32k-256k tokens, merge
// lists up to ~500k).
inline constexpr uint64_t kGgufMaxArrayLength = 16ull << 20;
// Arrays of arrays are legal GGUF; deeper nesting than this is rejected.
inline constexpr int kGgufMaxArrayDepth = 4;
// ggml tensors have at most 4 dimensions (GGML_MAX_DIMS).
inline constexpr uint32_t kGgufMaxDims = 4;
// Default and maximum data alignment (general.alignment).
inline constexpr uint32_t kGgufDefaultAlignment = 32;
inline constexpr uint32_t kGgufMaxAlignment = 1u << 16;

// Metadata value types (gguf_metadata_value_type in the spec).
enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

const char* gguf_value_type_name(GgufValueType t);

// One metadata value. Scalars are decoded when the file is opened; arrays
// stay in the mapping (validated at open) and are decoded by the getters.
struct GgufValue {
  GgufValueType type = GgufValueType::kUint8;
  // Scalars: integers and bool in `u` (two's complement bits for signed
  // types), floats in `f`, strings in `str`.
  uint64_t u = 0;
  double f = 0.0;
  std::string str;
  // Arrays: element type, length, and the offset in the file of the first
  // element.
  GgufValueType array_type = GgufValueType::kUint8;
  uint64_t array_length = 0;
  uint64_t array_offset = 0;
};

// ggml tensor types (enum ggml_type in ggml.h), numbered as stored in files.
// Only the ones that map onto WeightType can be loaded as weights; the others
// are still sized correctly so that a file using them opens for inspection.
struct GgmlTypeInfo {
  uint32_t id;
  const char* name;
  int64_t block_elems;
  int64_t block_bytes;
  std::optional<WeightType> weight_type;  // nullopt: no dequantiser in udaci
};
// nullptr for a number that is no ggml type.
const GgmlTypeInfo* ggml_type_info(uint32_t id);

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // ne[]: innermost (row length) first, as stored
  uint32_t ggml_type = 0;
  const GgmlTypeInfo* type_info = nullptr;
  uint64_t offset = 0;        // relative to the data section
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;  // into the mapping

  int64_t numel() const;
  // Shape outermost first (HF/ATen order): dims reversed.
  std::vector<int64_t> shape() const;
};

class GgufFile {
 public:
  // Maps and validates the file. Throws Error(kNotFound) when it cannot be
  // opened and Error(kBadModelFile) naming the problem when it is malformed.
  static std::shared_ptr<GgufFile> open(const std::string& path);
  // The same over a mapping already made (MappedFile::from_bytes for bytes in
  // memory); throws Error(kBadModelFile) when it is malformed.
  static std::shared_ptr<GgufFile> open(std::shared_ptr<MappedFile> file);

  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // start of the data section
  const std::shared_ptr<MappedFile>& mapping() const { return file_; }

  // ---- metadata -------------------------------------------------------------
  bool has(const std::string& key) const { return index_.count(key) != 0; }
  // Keys in file order.
  const std::vector<std::string>& keys() const { return keys_; }
  // Throws Error(kBadModelFile) naming the key when absent.
  const GgufValue& value(const std::string& key) const;
  GgufValueType type(const std::string& key) const { return value(key).type; }

  // Strict getters: the stored type must be exactly the named one, otherwise
  // Error(kBadModelFile) "<file>: metadata key 'k' must be uint32, got string".
  uint8_t get_u8(const std::string& key) const;
  int8_t get_i8(const std::string& key) const;
  uint16_t get_u16(const std::string& key) const;
  int16_t get_i16(const std::string& key) const;
  uint32_t get_u32(const std::string& key) const;
  int32_t get_i32(const std::string& key) const;
  uint64_t get_u64(const std::string& key) const;
  int64_t get_i64(const std::string& key) const;
  float get_f32(const std::string& key) const;
  double get_f64(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;

  // Lenient getters for values whose integer width differs between
  // converters: any integer type (range-checked into int64), any float type.
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;  // also accepts integers
  // With a fallback when the key is absent (a present key of the wrong type
  // still throws).
  int64_t get_int_or(const std::string& key, int64_t fallback) const;
  double get_float_or(const std::string& key, double fallback) const;
  bool get_bool_or(const std::string& key, bool fallback) const;
  std::string get_string_or(const std::string& key, const std::string& fallback) const;

  // Arrays. Strict element type for the typed ones; get_int_array accepts any
  // integer element type, get_float_array float32/float64.
  uint64_t array_length(const std::string& key) const;
  GgufValueType array_type(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<int32_t> get_i32_array(const std::string& key) const;
  std::vector<float> get_f32_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;
  std::vector<double> get_float_array(const std::string& key) const;

  // Human-readable rendering of a value (arrays shortened to `max_items`),
  // for `udaci info` and messages.
  std::string value_to_string(const std::string& key, size_t max_items = 8) const;

  // ---- tensors --------------------------------------------------------------
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  bool has_tensor(const std::string& name) const { return tensor_index_.count(name) != 0; }
  // Throws Error(kBadModelFile) naming the tensor when absent.
  const GgufTensorInfo& tensor(const std::string& name) const;

 private:
  GgufFile() = default;
  void parse();
  [[noreturn]] void wrong_type(const std::string& key, const char* expected) const;
  const GgufValue& scalar(const std::string& key, GgufValueType t, const char* expected) const;
  const GgufValue& array(const std::string& key) const;

  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<std::string> keys_;
  std::map<std::string, GgufValue> index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace udaci
