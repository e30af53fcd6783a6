#include "io/gguf_reader.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"

namespace udaci {

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as little-endian uint32

// ggml_type numbers and block sizes, as in ggml.h / gguf-py GGML_QUANT_SIZES.
// Gaps (4, 5, 31-33, 36-38) are types removed from ggml; they are rejected.
const GgmlTypeInfo kGgmlTypes[] = {
    {0, "F32", 1, 4, WeightType::kF32},
    {1, "F16", 1, 2, WeightType::kF16},
    {2, "Q4_0", 32, 18, WeightType::kQ4_0},
    {3, "Q4_1", 32, 20, WeightType::kQ4_1},
    {6, "Q5_0", 32, 22, WeightType::kQ5_0},
    {7, "Q5_1", 32, 24, WeightType::kQ5_1},
    {8, "Q8_0", 32, 34, WeightType::kQ8_0},
    {9, "Q8_1", 32, 40, std::nullopt},
    {10, "Q2_K", 256, 84, WeightType::kQ2_K},
    {11, "Q3_K", 256, 110, WeightType::kQ3_K},
    {12, "Q4_K", 256, 144, WeightType::kQ4_K},
    {13, "Q5_K", 256, 176, WeightType::kQ5_K},
    {14, "Q6_K", 256, 210, WeightType::kQ6_K},
    {15, "Q8_K", 256, 292, std::nullopt},
    {16, "IQ2_XXS", 256, 66, std::nullopt},
    {17, "IQ2_XS", 256, 74, std::nullopt},
    {18, "IQ3_XXS", 256, 98, std::nullopt},
    {19, "IQ1_S", 256, 50, std::nullopt},
    {20, "IQ4_NL", 32, 18, std::nullopt},
    {21, "IQ3_S", 256, 110, std::nullopt},
    {22, "IQ2_S", 256, 82, std::nullopt},
    {23, "IQ4_XS", 256, 136, std::nullopt},
    {24, "I8", 1, 1, WeightType::kI8},
    {25, "I16", 1, 2, WeightType::kI16},
    {26, "I32", 1, 4, WeightType::kI32},
    {27, "I64", 1, 8, WeightType::kI64},
    {28, "F64", 1, 8, WeightType::kF64},
    {29, "IQ1_M", 256, 56, std::nullopt},
    {30, "BF16", 1, 2, WeightType::kBF16},
    {34, "TQ1_0", 256, 54, std::nullopt},
    {35, "TQ2_0", 256, 66, std::nullopt},
    {39, "MXFP4", 32, 17, std::nullopt},
};

// Smallest encoding of one tensor info: empty name (8), n_dims (4), one dim
// (8), type (4), offset (8). Bounds the tensor count by the bytes left.
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;
// Smallest metadata entry: empty key (8), type (4), one-byte value.
constexpr uint64_t kMinMetadataBytes = 8 + 4 + 1;

uint64_t scalar_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool: return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16: return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32: return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64: return 8;
    default: return 0;  // string, array: variable
  }
}

bool is_integer(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kUint64:
    case GgufValueType::kInt64: return true;
    default: return false;
  }
}

bool is_signed(GgufValueType t) {
  return t == GgufValueType::kInt8 || t == GgufValueType::kInt16 || t == GgufValueType::kInt32 ||
         t == GgufValueType::kInt64;
}

template <typename T>
T load(const uint8_t* p) {
  // GGUF is little-endian, like every host udaci supports; memcpy avoids
  // unaligned loads.
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Decodes an integer or bool scalar at p into raw 64-bit (sign-extended for
// signed types).
uint64_t load_integer(GgufValueType t, const uint8_t* p) {
  switch (t) {
    case GgufValueType::kUint8: return load<uint8_t>(p);
    case GgufValueType::kInt8: return static_cast<uint64_t>(static_cast<int64_t>(load<int8_t>(p)));
    case GgufValueType::kBool: return load<uint8_t>(p);
    case GgufValueType::kUint16: return load<uint16_t>(p);
    case GgufValueType::kInt16: return static_cast<uint64_t>(static_cast<int64_t>(load<int16_t>(p)));
    case GgufValueType::kUint32: return load<uint32_t>(p);
    case GgufValueType::kInt32: return static_cast<uint64_t>(static_cast<int64_t>(load<int32_t>(p)));
    case GgufValueType::kUint64: return load<uint64_t>(p);
    case GgufValueType::kInt64: return load<uint64_t>(p);
    default: return 0;
  }
}

double load_float(GgufValueType t, const uint8_t* p) {
  return t == GgufValueType::kFloat32 ? static_cast<double>(load<float>(p)) : load<double>(p);
}

// A bounds-checked reader over the mapping; every read names what it was
// reading so that a truncated file says where it ended.
class Cursor {
 public:
  Cursor(const uint8_t* base, uint64_t size, const std::string& path)
      : base_(base), size_(size), path_(path) {}

  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }
  const uint8_t* at(uint64_t off) const { return base_ + off; }

  void need(uint64_t n, const char* what) const {
    UDACI_CHECK_S(Status::kBadModelFile, n <= left(),
                  "{}: truncated GGUF file: {} needs {} bytes at offset {}, only {} left", path_,
                  what, n, pos_, left());
  }
  const uint8_t* take(uint64_t n, const char* what) {
    need(n, what);
    const uint8_t* p = base_ + pos_;
    pos_ += n;
    return p;
  }
  template <typename T>
  T read(const char* what) {
    return load<T>(take(sizeof(T), what));
  }
  // GGUF string: uint64 length + bytes (no terminator).
  std::string read_string(const char* what, uint64_t max_len) {
    const uint64_t n = read<uint64_t>(what);
    UDACI_CHECK_S(Status::kBadModelFile, n <= max_len,
                  "{}: {} at offset {} declares a string of {} bytes (limit {})", path_, what,
                  pos_ - 8, n, max_len);
    UDACI_CHECK_S(Status::kBadModelFile, n <= left(),
                  "{}: {} at offset {} declares a string of {} bytes, past the end of the file "
                  "({} bytes left)",
                  path_, what, pos_ - 8, n, left());
    const uint8_t* p = take(n, what);
    return std::string(reinterpret_cast<const char*>(p), n);
  }
  void skip_string(const char* what, uint64_t max_len) {
    const uint64_t n = read<uint64_t>(what);
    UDACI_CHECK_S(Status::kBadModelFile, n <= max_len && n <= left(),
                  "{}: {} at offset {} declares a string of {} bytes (limit {}, {} bytes left in "
                  "the file)",
                  path_, what, pos_ - 8, n, max_len, left());
    pos_ += n;
  }

 private:
  const uint8_t* base_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& path_;
};

GgufValueType read_value_type(Cursor& c, const std::string& path, const std::string& key) {
  const uint32_t t = c.read<uint32_t>("a metadata value type");
  UDACI_CHECK_S(Status::kBadModelFile, t <= static_cast<uint32_t>(GgufValueType::kFloat64),
                "{}: metadata key '{}' has unknown value type {}", path, key, t);
  return static_cast<GgufValueType>(t);
}

// Walks (validates and skips) an array body; `depth` bounds nesting.
void skip_array(Cursor& c, const std::string& path, const std::string& key, int depth,
                GgufValueType* elem_type_out, uint64_t* length_out, uint64_t* offset_out) {
  UDACI_CHECK_S(Status::kBadModelFile, depth <= kGgufMaxArrayDepth,
                "{}: metadata key '{}' nests arrays deeper than {}", path, key, kGgufMaxArrayDepth);
  const GgufValueType et = read_value_type(c, path, key);
  const uint64_t n = c.read<uint64_t>("an array length");
  UDACI_CHECK_S(Status::kBadModelFile, n <= kGgufMaxArrayLength,
                "{}: metadata key '{}' declares an array of {} elements (limit {})", path, key, n,
                kGgufMaxArrayLength);
  if (elem_type_out != nullptr) *elem_type_out = et;
  if (length_out != nullptr) *length_out = n;
  if (offset_out != nullptr) *offset_out = c.pos();
  const uint64_t fixed = scalar_size(et);
  if (fixed != 0) {
    UDACI_CHECK_S(Status::kBadModelFile, n <= c.left() / fixed,
                  "{}: metadata key '{}' declares an array of {} {} values, past the end of the "
                  "file ({} bytes left)",
                  path, key, n, gguf_value_type_name(et), c.left());
    c.take(n * fixed, "an array");
    return;
  }
  // Each string or nested array takes at least 8 bytes: a cheap bound before
  // walking the elements one by one.
  UDACI_CHECK_S(Status::kBadModelFile, n <= c.left() / 8,
                "{}: metadata key '{}' declares an array of {} elements, past the end of the file "
                "({} bytes left)",
                path, key, n, c.left());
  for (uint64_t i = 0; i < n; ++i) {
    if (et == GgufValueType::kString) {
      c.skip_string("a string array element", kGgufMaxStringBytes);
    } else {
      skip_array(c, path, key, depth + 1, nullptr, nullptr, nullptr);
    }
  }
}

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

}  // namespace

const char* gguf_value_type_name(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8: return "uint8";
    case GgufValueType::kInt8: return "int8";
    case GgufValueType::kUint16: return "uint16";
    case GgufValueType::kInt16: return "int16";
    case GgufValueType::kUint32: return "uint32";
    case GgufValueType::kInt32: return "int32";
    case GgufValueType::kFloat32: return "float32";
    case GgufValueType::kBool: return "bool";
    case GgufValueType::kString: return "string";
    case GgufValueType::kArray: return "array";
    case GgufValueType::kUint64: return "uint64";
    case GgufValueType::kInt64: return "int64";
    case GgufValueType::kFloat64: return "float64";
  }
  return "?";
}

const GgmlTypeInfo* ggml_type_info(uint32_t id) {
  for (const GgmlTypeInfo& t : kGgmlTypes) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

std::vector<int64_t> GgufTensorInfo::shape() const {
  return std::vector<int64_t>(dims.rbegin(), dims.rend());
}

std::shared_ptr<GgufFile> GgufFile::open(const std::string& path) {
  return open(MappedFile::open(path));
}

std::shared_ptr<GgufFile> GgufFile::open(std::shared_ptr<MappedFile> file) {
  UDACI_CHECK(file != nullptr, "GgufFile::open: null mapping");
  std::shared_ptr<GgufFile> g(new GgufFile());
  g->file_ = std::move(file);
  g->parse();
  return g;
}

void GgufFile::parse() {
  const std::string& p = file_->path();
  const uint64_t size = file_->size();
  UDACI_CHECK_S(Status::kBadModelFile, size <= kGgufMaxFileBytes,
                "{}: file of {} bytes exceeds the GGUF size limit of {} bytes", p, size,
                kGgufMaxFileBytes);
  Cursor c(file_->data(), size, p);

  UDACI_CHECK_S(Status::kBadModelFile, size >= 4, "{}: not a GGUF file (only {} bytes)", p, size);
  const uint32_t magic = c.read<uint32_t>("the magic");
  UDACI_CHECK_S(Status::kBadModelFile, magic == kGgufMagic,
                "{}: not a GGUF file (bad magic 0x{:08x}, expected \"GGUF\")", p, magic);
  version_ = c.read<uint32_t>("the version");
  const uint32_t swapped = __builtin_bswap32(version_);
  UDACI_CHECK_S(Status::kBadModelFile, !(swapped == 2 || swapped == 3),
                "{}: big-endian GGUF files are not supported", p);
  UDACI_CHECK_S(Status::kBadModelFile, version_ == 2 || version_ == 3,
                "{}: unsupported GGUF version {} (udaci reads versions 2 and 3)", p, version_);

  const uint64_t n_tensors = c.read<uint64_t>("the tensor count");
  const uint64_t n_kv = c.read<uint64_t>("the metadata count");
  UDACI_CHECK_S(Status::kBadModelFile, n_tensors <= kGgufMaxTensors,
                "{}: tensor count {} exceeds the limit of {}", p, n_tensors, kGgufMaxTensors);
  UDACI_CHECK_S(Status::kBadModelFile, n_tensors <= c.left() / kMinTensorInfoBytes,
                "{}: tensor count {} cannot fit in the {} bytes left in the file", p, n_tensors,
                c.left());
  UDACI_CHECK_S(Status::kBadModelFile, n_kv <= kGgufMaxMetadataEntries,
                "{}: metadata count {} exceeds the limit of {}", p, n_kv, kGgufMaxMetadataEntries);
  UDACI_CHECK_S(Status::kBadModelFile, n_kv <= c.left() / kMinMetadataBytes,
                "{}: metadata count {} cannot fit in the {} bytes left in the file", p, n_kv,
                c.left());

  // ---- metadata
  keys_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string("a metadata key", kGgufMaxKeyBytes);
    UDACI_CHECK_S(Status::kBadModelFile, index_.count(key) == 0,
                  "{}: metadata key '{}' appears twice", p, key);
    GgufValue v;
    v.type = read_value_type(c, p, key);
    const uint64_t fixed = scalar_size(v.type);
    if (v.type == GgufValueType::kString) {
      v.str = c.read_string("a metadata string", kGgufMaxStringBytes);
    } else if (v.type == GgufValueType::kArray) {
      skip_array(c, p, key, 1, &v.array_type, &v.array_length, &v.array_offset);
    } else {
      const uint8_t* b = c.take(fixed, "a metadata value");
      if (v.type == GgufValueType::kFloat32 || v.type == GgufValueType::kFloat64) {
        v.f = load_float(v.type, b);
      } else {
        v.u = load_integer(v.type, b);
        if (v.type == GgufValueType::kBool) {
          UDACI_CHECK_S(Status::kBadModelFile, v.u <= 1,
                        "{}: metadata key '{}' is a bool with byte value {} (expected 0 or 1)", p,
                        key, v.u);
        }
      }
    }
    keys_.push_back(key);
    index_.emplace(std::move(key), std::move(v));
  }
  if (has("general.alignment")) {
    const GgufValue& a = index_.at("general.alignment");
    UDACI_CHECK_S(Status::kBadModelFile, a.type == GgufValueType::kUint32,
                  "{}: metadata key 'general.alignment' must be uint32, got {}", p,
                  gguf_value_type_name(a.type));
    alignment_ = static_cast<uint32_t>(a.u);
    UDACI_CHECK_S(Status::kBadModelFile,
                  alignment_ != 0 && (alignment_ & (alignment_ - 1)) == 0 &&
                      alignment_ <= kGgufMaxAlignment,
                  "{}: general.alignment must be a power of two <= {}, got {}", p,
                  kGgufMaxAlignment, alignment_);
  }

  // ---- tensor infos
  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = c.read_string("a tensor name", kGgufMaxKeyBytes);
    UDACI_CHECK_S(Status::kBadModelFile, tensor_index_.count(t.name) == 0,
                  "{}: tensor '{}' appears twice", p, t.name);
    const uint32_t n_dims = c.read<uint32_t>("a tensor's dimension count");
    UDACI_CHECK_S(Status::kBadModelFile, n_dims >= 1 && n_dims <= kGgufMaxDims,
                  "{}: tensor '{}' has {} dimensions (expected 1 to {})", p, t.name, n_dims,
                  kGgufMaxDims);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>("a tensor dimension");
      UDACI_CHECK_S(Status::kBadModelFile,
                    ne >= 1 && ne <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
                        numel <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / ne,
                    "{}: tensor '{}' has an invalid dimension {} (element count overflows or is "
                    "zero)",
                    p, t.name, ne);
      numel *= ne;
      t.dims.push_back(static_cast<int64_t>(ne));
    }
    t.ggml_type = c.read<uint32_t>("a tensor type");
    t.type_info = ggml_type_info(t.ggml_type);
    UDACI_CHECK_S(Status::kBadModelFile, t.type_info != nullptr,
                  "{}: tensor '{}' has unknown ggml type {}", p, t.name, t.ggml_type);
    UDACI_CHECK_S(Status::kBadModelFile,
                  t.dims[0] % t.type_info->block_elems == 0,
                  "{}: tensor '{}' of type {} has rows of {} elements, not a multiple of the block "
                  "size {}",
                  p, t.name, t.type_info->name, t.dims[0], t.type_info->block_elems);
    const uint64_t blocks = numel / static_cast<uint64_t>(t.type_info->block_elems);
    UDACI_CHECK_S(Status::kBadModelFile,
                  blocks <= size / static_cast<uint64_t>(t.type_info->block_bytes),
                  "{}: tensor '{}' ({} elements of {}) is larger than the file", p, t.name, numel,
                  t.type_info->name);
    t.nbytes = blocks * static_cast<uint64_t>(t.type_info->block_bytes);
    t.offset = c.read<uint64_t>("a tensor offset");
    UDACI_CHECK_S(Status::kBadModelFile, t.offset % alignment_ == 0,
                  "{}: tensor '{}' has offset {}, not a multiple of the alignment {}", p, t.name,
                  t.offset, alignment_);
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  // ---- data section: starts at the next multiple of the alignment.
  data_offset_ = align_up(c.pos(), alignment_);
  UDACI_CHECK_S(Status::kBadModelFile, data_offset_ <= size || n_tensors == 0,
                "{}: the data section (offset {}) starts past the end of the file ({} bytes)", p,
                data_offset_, size);
  const uint64_t data_size = data_offset_ <= size ? size - data_offset_ : 0;
  for (GgufTensorInfo& t : tensors_) {
    UDACI_CHECK_S(Status::kBadModelFile,
                  t.offset <= data_size && t.nbytes <= data_size - t.offset,
                  "{}: tensor '{}' ({} bytes at data offset {}) extends past the end of the file "
                  "(data section holds {} bytes)",
                  p, t.name, t.nbytes, t.offset, data_size);
    t.data = file_->data() + data_offset_ + t.offset;
  }
}

// ---- metadata getters ---------------------------------------------------------

const GgufValue& GgufFile::value(const std::string& key) const {
  auto it = index_.find(key);
  if (it == index_.end()) fail(Status::kBadModelFile, "{}: missing metadata key '{}'", path(), key);
  return it->second;
}

void GgufFile::wrong_type(const std::string& key, const char* expected) const {
  const GgufValue& v = value(key);
  if (v.type == GgufValueType::kArray) {
    fail(Status::kBadModelFile, "{}: metadata key '{}' must be {}, got array of {}", path(), key,
         expected, gguf_value_type_name(v.array_type));
  }
  fail(Status::kBadModelFile, "{}: metadata key '{}' must be {}, got {}", path(), key, expected,
       gguf_value_type_name(v.type));
}

const GgufValue& GgufFile::scalar(const std::string& key, GgufValueType t,
                                  const char* expected) const {
  const GgufValue& v = value(key);
  if (v.type != t) wrong_type(key, expected);
  return v;
}

uint8_t GgufFile::get_u8(const std::string& k) const {
  return static_cast<uint8_t>(scalar(k, GgufValueType::kUint8, "uint8").u);
}
int8_t GgufFile::get_i8(const std::string& k) const {
  return static_cast<int8_t>(scalar(k, GgufValueType::kInt8, "int8").u);
}
uint16_t GgufFile::get_u16(const std::string& k) const {
  return static_cast<uint16_t>(scalar(k, GgufValueType::kUint16, "uint16").u);
}
int16_t GgufFile::get_i16(const std::string& k) const {
  return static_cast<int16_t>(scalar(k, GgufValueType::kInt16, "int16").u);
}
uint32_t GgufFile::get_u32(const std::string& k) const {
  return static_cast<uint32_t>(scalar(k, GgufValueType::kUint32, "uint32").u);
}
int32_t GgufFile::get_i32(const std::string& k) const {
  return static_cast<int32_t>(scalar(k, GgufValueType::kInt32, "int32").u);
}
uint64_t GgufFile::get_u64(const std::string& k) const {
  return scalar(k, GgufValueType::kUint64, "uint64").u;
}
int64_t GgufFile::get_i64(const std::string& k) const {
  return static_cast<int64_t>(scalar(k, GgufValueType::kInt64, "int64").u);
}
float GgufFile::get_f32(const std::string& k) const {
  return static_cast<float>(scalar(k, GgufValueType::kFloat32, "float32").f);
}
double GgufFile::get_f64(const std::string& k) const {
  return scalar(k, GgufValueType::kFloat64, "float64").f;
}
bool GgufFile::get_bool(const std::string& k) const {
  return scalar(k, GgufValueType::kBool, "bool").u != 0;
}
const std::string& GgufFile::get_string(const std::string& k) const {
  return scalar(k, GgufValueType::kString, "string").str;
}

int64_t GgufFile::get_int(const std::string& k) const {
  const GgufValue& v = value(k);
  if (!is_integer(v.type)) wrong_type(k, "an integer");
  if (v.type == GgufValueType::kUint64) {
    UDACI_CHECK_S(Status::kBadModelFile,
                  v.u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                  "{}: metadata key '{}' holds {}, too large for a signed 64-bit integer", path(),
                  k, v.u);
  }
  return static_cast<int64_t>(v.u);
}

double GgufFile::get_float(const std::string& k) const {
  const GgufValue& v = value(k);
  if (v.type == GgufValueType::kFloat32 || v.type == GgufValueType::kFloat64) return v.f;
  if (is_integer(v.type)) return static_cast<double>(get_int(k));
  wrong_type(k, "a number");
}

int64_t GgufFile::get_int_or(const std::string& k, int64_t fallback) const {
  return has(k) ? get_int(k) : fallback;
}
double GgufFile::get_float_or(const std::string& k, double fallback) const {
  return has(k) ? get_float(k) : fallback;
}
bool GgufFile::get_bool_or(const std::string& k, bool fallback) const {
  return has(k) ? get_bool(k) : fallback;
}
std::string GgufFile::get_string_or(const std::string& k, const std::string& fallback) const {
  return has(k) ? get_string(k) : fallback;
}

const GgufValue& GgufFile::array(const std::string& k) const {
  const GgufValue& v = value(k);
  if (v.type != GgufValueType::kArray) wrong_type(k, "an array");
  return v;
}

uint64_t GgufFile::array_length(const std::string& k) const { return array(k).array_length; }
GgufValueType GgufFile::array_type(const std::string& k) const { return array(k).array_type; }

std::vector<std::string> GgufFile::get_string_array(const std::string& k) const {
  const GgufValue& v = array(k);
  if (v.array_type != GgufValueType::kString) {
    fail(Status::kBadModelFile, "{}: metadata key '{}' must be an array of string, got array of {}",
         path(), k, gguf_value_type_name(v.array_type));
  }
  std::vector<std::string> out;
  out.reserve(v.array_length);
  // Lengths were validated against the file when it was opened.
  const uint8_t* q = file_->data() + v.array_offset;
  for (uint64_t i = 0; i < v.array_length; ++i) {
    const uint64_t n = load<uint64_t>(q);
    out.emplace_back(reinterpret_cast<const char*>(q + 8), n);
    q += 8 + n;
  }
  return out;
}

std::vector<int32_t> GgufFile::get_i32_array(const std::string& k) const {
  const GgufValue& v = array(k);
  if (v.array_type != GgufValueType::kInt32) {
    fail(Status::kBadModelFile, "{}: metadata key '{}' must be an array of int32, got array of {}",
         path(), k, gguf_value_type_name(v.array_type));
  }
  std::vector<int32_t> out(v.array_length);
  if (!out.empty()) std::memcpy(out.data(), file_->data() + v.array_offset, out.size() * 4);
  return out;
}

std::vector<float> GgufFile::get_f32_array(const std::string& k) const {
  const GgufValue& v = array(k);
  if (v.array_type != GgufValueType::kFloat32) {
    fail(Status::kBadModelFile,
         "{}: metadata key '{}' must be an array of float32, got array of {}", path(), k,
         gguf_value_type_name(v.array_type));
  }
  std::vector<float> out(v.array_length);
  if (!out.empty()) std::memcpy(out.data(), file_->data() + v.array_offset, out.size() * 4);
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& k) const {
  const GgufValue& v = array(k);
  if (!is_integer(v.array_type)) {
    fail(Status::kBadModelFile,
         "{}: metadata key '{}' must be an array of integers, got array of {}", path(), k,
         gguf_value_type_name(v.array_type));
  }
  const uint64_t es = scalar_size(v.array_type);
  std::vector<int64_t> out(v.array_length);
  const uint8_t* q = file_->data() + v.array_offset;
  for (uint64_t i = 0; i < v.array_length; ++i) {
    const uint64_t raw = load_integer(v.array_type, q + i * es);
    UDACI_CHECK_S(Status::kBadModelFile,
                  v.array_type != GgufValueType::kUint64 ||
                      raw <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                  "{}: metadata key '{}' element {} is too large for a signed 64-bit integer",
                  path(), k, i);
    out[i] = static_cast<int64_t>(raw);
  }
  return out;
}

std::vector<double> GgufFile::get_float_array(const std::string& k) const {
  const GgufValue& v = array(k);
  if (v.array_type != GgufValueType::kFloat32 && v.array_type != GgufValueType::kFloat64) {
    fail(Status::kBadModelFile,
         "{}: metadata key '{}' must be an array of floats, got array of {}", path(), k,
         gguf_value_type_name(v.array_type));
  }
  const uint64_t es = scalar_size(v.array_type);
  std::vector<double> out(v.array_length);
  const uint8_t* q = file_->data() + v.array_offset;
  for (uint64_t i = 0; i < v.array_length; ++i) out[i] = load_float(v.array_type, q + i * es);
  return out;
}

namespace {

std::string scalar_to_string(GgufValueType t, uint64_t u, double f) {
  if (t == GgufValueType::kBool) return u ? "true" : "false";
  if (t == GgufValueType::kFloat32 || t == GgufValueType::kFloat64) return fmt::format("{}", f);
  if (is_signed(t)) return fmt::format("{}", static_cast<int64_t>(u));
  return fmt::format("{}", u);
}

std::string quoted(const std::string& s, size_t max_chars) {
  std::string body = s.size() > max_chars ? s.substr(0, max_chars) + "..." : s;
  std::string out = "\"";
  for (char ch : body) {
    if (ch == '\n') out += "\\n";
    else if (ch == '"') out += "\\\"";
    else out += ch;
  }
  return out + "\"";
}

}  // namespace

std::string GgufFile::value_to_string(const std::string& key, size_t max_items) const {
  const GgufValue& v = value(key);
  if (v.type == GgufValueType::kString) return quoted(v.str, 120);
  if (v.type != GgufValueType::kArray) return scalar_to_string(v.type, v.u, v.f);
  std::string out = fmt::format("[{} x {}: ", v.array_length, gguf_value_type_name(v.array_type));
  const size_t shown = static_cast<size_t>(std::min<uint64_t>(v.array_length, max_items));
  if (v.array_type == GgufValueType::kString) {
    const uint8_t* q = file_->data() + v.array_offset;
    for (size_t i = 0; i < shown; ++i) {
      const uint64_t n = load<uint64_t>(q);
      if (i) out += ", ";
      out += quoted(std::string(reinterpret_cast<const char*>(q + 8), n), 40);
      q += 8 + n;
    }
  } else if (v.array_type == GgufValueType::kArray) {
    out += "nested arrays";
  } else {
    const uint64_t es = scalar_size(v.array_type);
    const uint8_t* q = file_->data() + v.array_offset;
    for (size_t i = 0; i < shown; ++i) {
      if (i) out += ", ";
      const bool fl =
          v.array_type == GgufValueType::kFloat32 || v.array_type == GgufValueType::kFloat64;
      out += scalar_to_string(v.array_type, fl ? 0 : load_integer(v.array_type, q + i * es),
                              fl ? load_float(v.array_type, q + i * es) : 0.0);
    }
  }
  if (shown < v.array_length) out += ", ...";
  return out + "]";
}

const GgufTensorInfo& GgufFile::tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  if (it == tensor_index_.end()) fail(Status::kBadModelFile, "{}: missing tensor '{}'", path(), name);
  return tensors_[it->second];
}

}  // namespace udaci
