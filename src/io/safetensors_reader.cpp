#include "io/safetensors_reader.hpp"

#include "core/limits.hpp"

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>

#include "core/error.hpp"
#include "io/mapped_file.hpp"

namespace udaci {

namespace {

using nlohmann::json;

// A safetensors dtype: the plain storage names of weight_store.hpp.
WeightType parse_dtype(const std::string& path, const std::string& name, const std::string& s) {
  const std::optional<WeightType> t = weight_type_from_name(s);
  if (!t || weight_type_is_block(*t))
    fail(Status::kBadModelFile, "{}: tensor '{}' has unknown or unsupported dtype '{}'", path, name, s);
  return *t;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

void read_safetensors_file(const std::string& path, WeightStore& store) {
  read_safetensors_file(MappedFile::open(path), store);
}

void read_safetensors_file(const std::shared_ptr<MappedFile>& file, WeightStore& store) {
  UDACI_CHECK(file != nullptr, "read_safetensors_file: null mapping");
  const std::string& path = file->path();
  const uint64_t size = file->size();
  UDACI_CHECK_S(Status::kBadModelFile, size >= 8,
                "{}: truncated safetensors file ({} bytes, the header length alone needs 8)", path,
                size);
  UDACI_CHECK_S(Status::kBadModelFile, size <= kMaxModelFileBytes,
                "{}: {} bytes, over the limit of {} bytes for one model file", path, size,
                kMaxModelFileBytes);
  const uint64_t header_len = read_u64_le(file->data());
  UDACI_CHECK_S(Status::kBadModelFile, header_len <= size - 8,
                "{}: header length {} runs past the end of the file ({} bytes)", path, header_len,
                size);
  UDACI_CHECK_S(Status::kBadModelFile, header_len <= kMaxSafetensorsHeader,
                "{}: header length {} exceeds the limit of {} bytes", path, header_len,
                kMaxSafetensorsHeader);
  json header;
  try {
    header = json::parse(file->data() + 8, file->data() + 8 + header_len);
  } catch (const json::exception& e) {
    fail(Status::kBadModelFile, "{}: header is not valid JSON: {}", path, e.what());
  }
  UDACI_CHECK_S(Status::kBadModelFile, header.is_object(), "{}: header is not a JSON object",
                path);
  const size_t tensors = header.size() - (header.contains("__metadata__") ? 1 : 0);
  UDACI_CHECK_S(Status::kBadModelFile, tensors <= kMaxSafetensorsTensors,
                "{}: header lists {} tensors, over the limit of {} tensors", path, tensors,
                kMaxSafetensorsTensors);

  const uint8_t* base = file->data() + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  std::shared_ptr<const void> owner = file;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const json& t = it.value();
    UDACI_CHECK_S(Status::kBadModelFile, t.is_object(), "{}: entry '{}' is not an object", path,
                  name);
    UDACI_CHECK_S(Status::kBadModelFile,
                  t.contains("dtype") && t["dtype"].is_string() && t.contains("shape") &&
                      t["shape"].is_array() && t.contains("data_offsets") &&
                      t["data_offsets"].is_array() && t["data_offsets"].size() == 2,
                  "{}: tensor '{}' needs \"dtype\" (string), \"shape\" (array) and "
                  "\"data_offsets\" ([begin, end])",
                  path, name);
    TensorEntry e;
    e.name = name;
    e.source = path;
    e.type = parse_dtype(path, name, t["dtype"].get<std::string>());
    UDACI_CHECK_S(Status::kBadModelFile, t["shape"].size() <= kMaxTensorRank,
                  "{}: tensor '{}' has {} dimensions, over the limit of {}", path, name,
                  t["shape"].size(), kMaxTensorRank);
    uint64_t numel = 1;
    for (const json& d : t["shape"]) {
      UDACI_CHECK_S(Status::kBadModelFile, d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0),
                    "{}: tensor '{}' has a shape entry that is not a non-negative integer", path,
                    name);
      const uint64_t dim = d.get<uint64_t>();
      UDACI_CHECK_S(Status::kBadModelFile,
                    dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
                        (dim == 0 || numel <= (uint64_t{1} << 62) / dim),
                    "{}: tensor '{}' has a shape too large to address", path, name);
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    const json& offs = t["data_offsets"];
    UDACI_CHECK_S(Status::kBadModelFile, offs[0].is_number_unsigned() && offs[1].is_number_unsigned(),
                  "{}: tensor '{}' has data_offsets that are not non-negative integers", path, name);
    const uint64_t begin = offs[0].get<uint64_t>();
    const uint64_t end = offs[1].get<uint64_t>();
    UDACI_CHECK_S(Status::kBadModelFile, begin <= end && end <= data_size,
                  "{}: tensor '{}' has data_offsets [{}, {}] outside the data buffer of {} bytes",
                  path, name, begin, end, data_size);
    const uint64_t expect = weight_type_nbytes(e.type, numel);
    UDACI_CHECK_S(Status::kBadModelFile, end - begin == expect,
                  "{}: tensor '{}' holds {} bytes but shape {} x {} needs {}", path, name,
                  end - begin, numel, weight_type_name(e.type), expect);
    e.data = base + begin;
    e.nbytes = expect;
    e.owner = owner;
    e.file = file;
    store.add(std::move(e));
  }
}

void read_safetensors_index(const std::string& index_path, WeightStore& store) {
  const std::string text = read_file_capped(index_path, kMaxConfigFileBytes, "the shard index");
  json index;
  try {
    index = json::parse(text);
  } catch (const json::exception& e) {
    fail(Status::kBadModelFile, "{}: not valid JSON: {}", index_path, e.what());
  }
  UDACI_CHECK_S(Status::kBadModelFile, index.is_object() && index.contains("weight_map") &&
                                           index["weight_map"].is_object(),
                "{}: expected an object with a \"weight_map\" object", index_path);
  const std::filesystem::path dir = std::filesystem::path(index_path).parent_path();
  std::map<std::string, std::string> where;  // tensor -> shard
  std::set<std::string> shards;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    UDACI_CHECK_S(Status::kBadModelFile, it.value().is_string(),
                  "{}: weight_map entry '{}' is not a file name", index_path, it.key());
    const std::string shard = it.value().get<std::string>();
    UDACI_CHECK_S(Status::kBadModelFile,
                  !shard.empty() && shard.find('/') == std::string::npos && shard != "..",
                  "{}: weight_map entry '{}' names '{}', not a file beside the index", index_path,
                  it.key(), shard);
    where[it.key()] = shard;
    shards.insert(shard);
  }
  WeightStore all;
  for (const std::string& shard : shards) read_safetensors_file((dir / shard).string(), all);
  for (const auto& kv : where) {
    const TensorEntry& e = all.entry(kv.first);
    const std::string expected = (dir / kv.second).string();
    UDACI_CHECK_S(Status::kBadModelFile, e.source == expected,
                  "{}: tensor '{}' is listed in '{}' but found in '{}'", index_path, kv.first,
                  kv.second, e.source);
    store.add(e);
  }
}

}  // namespace udaci
