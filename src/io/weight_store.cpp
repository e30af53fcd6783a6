#include "io/weight_store.hpp"

#include <limits>

#include "core/error.hpp"
#include "io/gguf_quants.hpp"

namespace udaci {

namespace {

struct TypeInfo {
  const char* name;
  int64_t block_elems;
  int64_t block_bytes;
};

TypeInfo info(WeightType t) {
  switch (t) {
    case WeightType::kF32: return {"F32", 1, 4};
    case WeightType::kF16: return {"F16", 1, 2};
    case WeightType::kBF16: return {"BF16", 1, 2};
    case WeightType::kF64: return {"F64", 1, 8};
    case WeightType::kI8: return {"I8", 1, 1};
    case WeightType::kI16: return {"I16", 1, 2};
    case WeightType::kI32: return {"I32", 1, 4};
    case WeightType::kI64: return {"I64", 1, 8};
    case WeightType::kU8: return {"U8", 1, 1};
    case WeightType::kBool: return {"BOOL", 1, 1};
    // GGUF block formats: elements per block, bytes per block (ggml-common.h).
    case WeightType::kQ4_0: return {"Q4_0", 32, 18};
    case WeightType::kQ4_1: return {"Q4_1", 32, 20};
    case WeightType::kQ5_0: return {"Q5_0", 32, 22};
    case WeightType::kQ5_1: return {"Q5_1", 32, 24};
    case WeightType::kQ8_0: return {"Q8_0", 32, 34};
    case WeightType::kQ2_K: return {"Q2_K", 256, 84};
    case WeightType::kQ3_K: return {"Q3_K", 256, 110};
    case WeightType::kQ4_K: return {"Q4_K", 256, 144};
    case WeightType::kQ5_K: return {"Q5_K", 256, 176};
    case WeightType::kQ6_K: return {"Q6_K", 256, 210};
  }
  return {"?", 1, 1};
}

}  // namespace

const char* weight_type_name(WeightType t) { return info(t).name; }

std::optional<WeightType> weight_type_from_name(std::string_view name) {
  for (int i = 0; i <= static_cast<int>(WeightType::kQ6_K); ++i) {
    const auto t = static_cast<WeightType>(i);
    if (name == info(t).name) return t;
  }
  return std::nullopt;
}

bool weight_type_is_block(WeightType t) { return info(t).block_elems > 1; }
int64_t weight_type_block_elems(WeightType t) { return info(t).block_elems; }
int64_t weight_type_block_bytes(WeightType t) { return info(t).block_bytes; }

uint64_t weight_type_nbytes(WeightType t, uint64_t n_elements) {
  const TypeInfo ti = info(t);
  UDACI_CHECK_S(Status::kBadModelFile, n_elements % static_cast<uint64_t>(ti.block_elems) == 0,
                "{} tensors hold whole blocks of {} elements, got {} elements", ti.name,
                ti.block_elems, n_elements);
  const uint64_t blocks = n_elements / static_cast<uint64_t>(ti.block_elems);
  UDACI_CHECK_S(Status::kBadModelFile,
                blocks <= std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(ti.block_bytes),
                "tensor size overflows: {} elements of {}", n_elements, ti.name);
  return blocks * static_cast<uint64_t>(ti.block_bytes);
}

int64_t TensorEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void WeightStore::add(TensorEntry entry) {
  UDACI_CHECK_S(Status::kBadModelFile, tensors_.count(entry.name) == 0,
                "tensor '{}' appears twice (second time in '{}')", entry.name, entry.source);
  std::string name = entry.name;
  tensors_.emplace(std::move(name), std::move(entry));
}

void WeightStore::put(TensorEntry entry) {
  std::string name = entry.name;
  tensors_[name] = std::move(entry);
}

void WeightStore::remove(const std::string& name) { tensors_.erase(name); }

std::vector<int64_t> stored_row_order(const TensorEntry& e) {
  const int64_t rows = e.shape.empty() ? 0 : e.shape[0];
  std::vector<int64_t> order(static_cast<size_t>(rows));
  const int64_t n = e.unpermute_heads;
  if (n <= 0) {
    for (int64_t r = 0; r < rows; ++r) order[static_cast<size_t>(r)] = r;
    return order;
  }
  UDACI_CHECK_S(Status::kBadModelFile, rows > 0 && rows % (2 * n) == 0,
                "tensor '{}' in '{}': {} rows cannot be split into {} heads of even size", e.name,
                e.source, rows, n);
  // The inverse of the permutation described in WeightStore::tensor: HF row
  // (head h, half s, index j) is stored at (head h, index j, half s).
  const int64_t per_head = rows / n, half = per_head / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t h = r / per_head, rem = r % per_head, s = rem / half, j = rem % half;
    order[static_cast<size_t>(r)] = h * per_head + j * 2 + s;
  }
  return order;
}

const TensorEntry& WeightStore::entry(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(Status::kBadModelFile, "missing tensor '{}'", name);
  return it->second;
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

at::ScalarType weight_type_scalar_type(WeightType t) {
  switch (t) {
    case WeightType::kF32: return at::kFloat;
    case WeightType::kF16: return at::kHalf;
    case WeightType::kBF16: return at::kBFloat16;
    case WeightType::kF64: return at::kDouble;
    case WeightType::kI8: return at::kChar;
    case WeightType::kI16: return at::kShort;
    case WeightType::kI32: return at::kInt;
    case WeightType::kI64: return at::kLong;
    case WeightType::kU8: return at::kByte;
    case WeightType::kBool: return at::kBool;
    default: return at::ScalarType::Undefined;
  }
}


std::optional<WeightType> weight_type_of(at::ScalarType t) {
  for (int i = 0; i <= static_cast<int>(WeightType::kBool); ++i) {
    const auto w = static_cast<WeightType>(i);
    if (weight_type_scalar_type(w) == t) return w;
  }
  return std::nullopt;
}

TensorEntry tensor_entry(const std::string& name, at::Tensor t, const std::string& source) {
  const std::optional<WeightType> type = weight_type_of(t.scalar_type());
  UDACI_CHECK_S(Status::kInternal, type.has_value(), "tensor '{}': no storage type for {}", name,
                c10::toString(t.scalar_type()));
  auto held = std::make_shared<at::Tensor>(t.contiguous());
  TensorEntry e;
  e.name = name;
  e.type = *type;
  e.shape = held->sizes().vec();
  e.data = static_cast<const uint8_t*>(held->data_ptr());
  e.nbytes = static_cast<uint64_t>(held->nbytes());
  e.owner = std::move(held);
  e.source = source;
  return e;
}

at::Tensor WeightStore::tensor(const std::string& name, at::ScalarType dtype) const {
  const TensorEntry& e = entry(name);
  const at::ScalarType stored = weight_type_scalar_type(e.type);
  at::Tensor t;
  if (stored != at::ScalarType::Undefined) {
    std::shared_ptr<const void> owner = e.owner;
    // The mapping is read-only; the const_cast is safe because the library
    // never writes through a weight tensor.
    t = at::from_blob(
        const_cast<uint8_t*>(e.data), e.shape, [owner](void*) mutable { owner.reset(); },
        at::TensorOptions().dtype(stored));
    if (stored != dtype) t = t.to(dtype);
  } else {
    t = at::empty(e.shape, at::TensorOptions().dtype(at::kFloat));
    dequantize_row(e.type, e.data, t.data_ptr<float>(), e.numel());
    if (dtype != at::kFloat) t = t.to(dtype);
  }
  if (e.unpermute_heads > 0) {
    // convert_hf_to_gguf.py stores W.reshape(n, 2, rows/n/2, cols)
    // .swapaxes(1, 2).reshape(rows, cols), pairing rotary dimensions i and
    // i + head_dim/2 for llama.cpp; the inverse restores the HF row order.
    const int64_t n = e.unpermute_heads;
    const int64_t rows = e.shape.empty() ? 0 : e.shape[0];
    UDACI_CHECK_S(Status::kBadModelFile, rows > 0 && rows % (2 * n) == 0,
                  "tensor '{}' in '{}': {} rows cannot be split into {} heads of even size", name,
                  e.source, rows, n);
    const int64_t cols = e.numel() / rows;
    t = t.reshape({n, rows / n / 2, 2, cols}).transpose(1, 2).contiguous().reshape(e.shape);
  }
  return t;
}

std::map<WeightType, uint64_t> WeightStore::bytes_by_type() const {
  std::map<WeightType, uint64_t> out;
  for (const auto& kv : tensors_) out[kv.second.type] += kv.second.nbytes;
  return out;
}

uint64_t WeightStore::total_elements() const {
  uint64_t n = 0;
  for (const auto& kv : tensors_) n += static_cast<uint64_t>(kv.second.numel());
  return n;
}

}  // namespace udaci
