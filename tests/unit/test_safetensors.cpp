// Malformed safetensors files and model folders: each must fail with a clear
// udaci::Error naming the problem, never crash.
#include "udaci_catch.hpp"
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.hpp"
#include "model/model_loader.hpp"
#include "io/safetensors_reader.hpp"
#include "model/llama_model.hpp"
#include "test_util.hpp"

using namespace udaci;
using nlohmann::json;
namespace fs = std::filesystem;

using udaci_test::expect_error;

namespace {

fs::path temp_dir() {
  static std::mt19937_64 rng(std::random_device{}());
  fs::path p = fs::temp_directory_path() / ("udaci_test_" + std::to_string(rng()));
  fs::create_directories(p);
  return p;
}

std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

void write(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string floats(int n) { return std::string(static_cast<size_t>(n) * 4, '\0'); }

}  // namespace

TEST_CASE("safetensors: a valid file is read without copying", "[unit][safetensors]") {
  fs::path d = temp_dir();
  std::vector<float> vals = {1.5f, -2.0f, 3.25f, 4.0f, 0.5f, 6.0f};
  std::string data(reinterpret_cast<const char*>(vals.data()), vals.size() * 4);
  json h = {{"w", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}},
            {"__metadata__", {{"format", "pt"}}}};
  write(d / "a.safetensors", safetensors_bytes(h.dump(), data));
  WeightStore store;
  read_safetensors_file((d / "a.safetensors").string(), store);
  REQUIRE(store.size() == 1);
  at::Tensor t = store.tensor("w", at::kFloat);
  CHECK(t.sizes() == at::IntArrayRef({2, 3}));
  CHECK(t[1][2].item<float>() == 6.0f);
  CHECK(t.data_ptr<float>() == reinterpret_cast<const float*>(store.entry("w").data));
  at::Tensor b = store.tensor("w", at::kBFloat16);
  CHECK(b.scalar_type() == at::kBFloat16);
  CHECK(b[0][2].item<float>() == 3.25f);
  fs::remove_all(d);
}

TEST_CASE("safetensors: missing file", "[unit][safetensors]") {
  WeightStore s;
  expect_error([&] { read_safetensors_file("/nonexistent/model.safetensors", s); },
               Status::kNotFound, "/nonexistent/model.safetensors");
}

TEST_CASE("safetensors: truncated file shorter than the length field", "[unit][safetensors]") {
  fs::path d = temp_dir();
  write(d / "t.safetensors", std::string("\x10\x00\x00", 3));
  WeightStore s;
  expect_error([&] { read_safetensors_file((d / "t.safetensors").string(), s); },
               Status::kBadModelFile, "truncated");
  fs::remove_all(d);
}

TEST_CASE("safetensors: header length past the end", "[unit][safetensors]") {
  fs::path d = temp_dir();
  std::string bytes = safetensors_bytes("{}", "");
  bytes[0] = '\xff';
  bytes[1] = '\xff';
  write(d / "h.safetensors", bytes);
  WeightStore s;
  expect_error([&] { read_safetensors_file((d / "h.safetensors").string(), s); },
               Status::kBadModelFile, "runs past the end");
  fs::remove_all(d);
}

TEST_CASE("safetensors: header that is not JSON, or JSON that is not an object", "[unit][safetensors]") {
  fs::path d = temp_dir();
  WeightStore s;
  write(d / "a.safetensors", safetensors_bytes("{not json", ""));
  expect_error([&] { read_safetensors_file((d / "a.safetensors").string(), s); },
               Status::kBadModelFile, "not valid JSON");
  write(d / "b.safetensors", safetensors_bytes("[1, 2, 3]", ""));
  expect_error([&] { read_safetensors_file((d / "b.safetensors").string(), s); },
               Status::kBadModelFile, "not a JSON object");
  fs::remove_all(d);
}

TEST_CASE("safetensors: byte size disagrees with shape x dtype", "[unit][safetensors]") {
  fs::path d = temp_dir();
  json h = {{"w", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 20}}}}};
  write(d / "a.safetensors", safetensors_bytes(h.dump(), floats(6)));
  WeightStore s;
  expect_error([&] { read_safetensors_file((d / "a.safetensors").string(), s); },
               Status::kBadModelFile, "holds 20 bytes");
  fs::remove_all(d);
}

TEST_CASE("safetensors: data offsets outside the buffer", "[unit][safetensors]") {
  fs::path d = temp_dir();
  json h = {{"w", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {8, 24}}}}};
  write(d / "a.safetensors", safetensors_bytes(h.dump(), floats(4)));
  WeightStore s;
  expect_error([&] { read_safetensors_file((d / "a.safetensors").string(), s); },
               Status::kBadModelFile, "outside the data buffer");
  fs::remove_all(d);
}

TEST_CASE("safetensors: unknown dtype", "[unit][safetensors]") {
  fs::path d = temp_dir();
  json h = {{"w", {{"dtype", "F8_E9M9"}, {"shape", {4}}, {"data_offsets", {0, 4}}}}};
  write(d / "a.safetensors", safetensors_bytes(h.dump(), floats(1)));
  WeightStore s;
  expect_error([&] { read_safetensors_file((d / "a.safetensors").string(), s); },
               Status::kBadModelFile, "unknown or unsupported dtype 'F8_E9M9'");
  fs::remove_all(d);
}

TEST_CASE("safetensors: entry without required fields, negative shape", "[unit][safetensors]") {
  fs::path d = temp_dir();
  WeightStore s;
  json h1 = {{"w", {{"dtype", "F32"}, {"shape", {4}}}}};
  write(d / "a.safetensors", safetensors_bytes(h1.dump(), floats(4)));
  expect_error([&] { read_safetensors_file((d / "a.safetensors").string(), s); },
               Status::kBadModelFile, "data_offsets");
  json h2 = {{"w", {{"dtype", "F32"}, {"shape", {-4}}, {"data_offsets", {0, 16}}}}};
  write(d / "b.safetensors", safetensors_bytes(h2.dump(), floats(4)));
  expect_error([&] { read_safetensors_file((d / "b.safetensors").string(), s); },
               Status::kBadModelFile, "non-negative");
  fs::remove_all(d);
}

namespace {

// A tiny valid HF folder: config + every tensor, all zeros. Returns its path.
fs::path tiny_model(const json& config_patch = json::object(), const std::string& drop = "",
                    const std::string& reshape = "") {
  json cfg = {{"model_type", "llama"},     {"hidden_size", 8},       {"intermediate_size", 12},
              {"num_hidden_layers", 1},    {"num_attention_heads", 2}, {"num_key_value_heads", 1},
              {"vocab_size", 16},          {"rms_norm_eps", 1e-5},   {"tie_word_embeddings", true},
              {"max_position_embeddings", 64}};
  cfg.update(config_patch);
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"model.embed_tokens.weight", {16, 8}},
      {"model.layers.0.input_layernorm.weight", {8}},
      {"model.layers.0.post_attention_layernorm.weight", {8}},
      {"model.layers.0.self_attn.q_proj.weight", {8, 8}},
      {"model.layers.0.self_attn.k_proj.weight", {4, 8}},
      {"model.layers.0.self_attn.v_proj.weight", {4, 8}},
      {"model.layers.0.self_attn.o_proj.weight", {8, 8}},
      {"model.layers.0.mlp.gate_proj.weight", {12, 8}},
      {"model.layers.0.mlp.up_proj.weight", {12, 8}},
      {"model.layers.0.mlp.down_proj.weight", {8, 12}},
      {"model.norm.weight", {8}}};
  json h = json::object();
  uint64_t off = 0;
  for (auto& [name, shape] : shapes) {
    if (name == drop) continue;
    if (name == reshape) shape[0] += 1;
    uint64_t n = 4;
    for (int64_t x : shape) n *= static_cast<uint64_t>(x);
    h[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {off, off + n}}};
    off += n;
  }
  fs::path d = temp_dir();
  write(d / "model.safetensors", safetensors_bytes(h.dump(), std::string(off, '\0')));
  std::ofstream(d / "config.json") << cfg.dump();
  return d;
}

}  // namespace

TEST_CASE("model folder: valid tiny model loads and runs", "[unit][safetensors]") {
  fs::path d = tiny_model();
  ModelFiles m = open_model(d.string());
  CHECK(m.format == "safetensors");
  CHECK(m.config.num_kv_heads == 1);
  CHECK(m.weights.size() == 11);
  fs::remove_all(d);
}

TEST_CASE("model folder: missing tensors and wrong shapes are named", "[unit][safetensors]") {
  auto bind = [](const fs::path& d) {
    ModelFiles m = open_model(d.string());
    LlamaModel model(m.config, m.weights, ModelOptions{});
  };
  fs::path d1 = tiny_model(json::object(), "model.layers.0.mlp.up_proj.weight");
  expect_error([&] { bind(d1); }, Status::kBadModelFile,
               "missing tensor 'model.layers.0.mlp.up_proj.weight'");
  fs::path d2 = tiny_model(json::object(), "", "model.layers.0.self_attn.k_proj.weight");
  expect_error([&] { bind(d2); }, Status::kBadModelFile,
               "'model.layers.0.self_attn.k_proj.weight' in");
  expect_error([&] { bind(d2); }, Status::kBadModelFile, "has shape [5, 8], but the model config implies [4, 8]");
  fs::path d3 = tiny_model({{"tie_word_embeddings", false}});
  expect_error([&] { bind(d3); }, Status::kBadModelFile, "lm_head.weight");
  for (const auto& d : {d1, d2, d3}) fs::remove_all(d);
}

TEST_CASE("model folder: config.json errors name the key", "[unit][safetensors]") {
  fs::path d = tiny_model();
  auto with_config = [&](const std::string& text) {
    std::ofstream(d / "config.json") << text;
    return [&] { open_model(d.string()); };
  };
  expect_error(with_config("[1, 2]"), Status::kBadModelFile, "expected a JSON object");
  expect_error(with_config("{\"model_type\": \"llama\""), Status::kBadModelFile, "not valid JSON");
  expect_error(with_config(R"({"model_type": "gpt2"})"), Status::kUnsupported, "model_type");
  expect_error(with_config(R"({"model_type": "llama", "hidden_size": 8})"), Status::kBadModelFile,
               "missing required key \"vocab_size\"");
  expect_error(with_config(R"({"model_type": "llama", "hidden_size": "8", "vocab_size": 16})"),
               Status::kBadModelFile, "\"hidden_size\" must be an integer");
  expect_error(with_config(R"({"model_type":"llama","hidden_size":8,"intermediate_size":12,"num_hidden_layers":1,
      "num_attention_heads":3,"num_key_value_heads":2,"vocab_size":16})"),
               Status::kBadModelFile, "multiple of num_key_value_heads");
  expect_error(with_config(R"({"model_type":"llama","hidden_size":8,"intermediate_size":12,"num_hidden_layers":1,
      "num_attention_heads":2,"vocab_size":16,"rope_scaling":{"rope_type":"yarn","factor":2}})"),
               Status::kUnsupported, "yarn");
  fs::remove(d / "config.json");
  expect_error([&] { open_model(d.string()); }, Status::kNotFound, "without config.json");
  fs::remove_all(d);
}

TEST_CASE("model folder: nothing at the path, or no weights", "[unit][safetensors]") {
  expect_error([] { open_model("/nonexistent/model"); }, Status::kNotFound, "does not exist");
  fs::path d = tiny_model();
  fs::remove(d / "model.safetensors");
  expect_error([&] { open_model(d.string()); }, Status::kNotFound, "neither model.safetensors");
  fs::remove_all(d);
}

TEST_CASE("model folder: sharded checkpoint through its index", "[unit][safetensors]") {
  fs::path d = temp_dir();
  std::vector<float> a = {1, 2}, b = {3, 4, 5};
  json h1 = {{"x", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}}};
  json h2 = {{"y", {{"dtype", "F32"}, {"shape", {3}}, {"data_offsets", {0, 12}}}}};
  write(d / "s1.safetensors", safetensors_bytes(h1.dump(), std::string(reinterpret_cast<char*>(a.data()), 8)));
  write(d / "s2.safetensors", safetensors_bytes(h2.dump(), std::string(reinterpret_cast<char*>(b.data()), 12)));
  std::ofstream(d / "index.json") << json({{"weight_map", {{"x", "s1.safetensors"}, {"y", "s2.safetensors"}}}}).dump();
  WeightStore s;
  read_safetensors_index((d / "index.json").string(), s);
  CHECK(s.tensor("y", at::kFloat)[2].item<float>() == 5.0f);
  std::ofstream(d / "bad.json") << json({{"weight_map", {{"x", "s2.safetensors"}}}}).dump();
  WeightStore s2;
  expect_error([&] { read_safetensors_index((d / "bad.json").string(), s2); }, Status::kBadModelFile,
               "missing tensor 'x'");
  std::ofstream(d / "evil.json") << json({{"weight_map", {{"x", "../etc/passwd"}}}}).dump();
  WeightStore s3;
  expect_error([&] { read_safetensors_index((d / "evil.json").string(), s3); }, Status::kBadModelFile,
               "not a file beside the index");
  fs::remove_all(d);
}
