// `udaci convert --output x.gguf`: the GGUF writer. Dense weights survive the
// trip bit for bit (the rotary row permutation written and undone again),
// int4 group 32 becomes Q4_1 without a changed bit, int8 becomes Q8_0 within
// one rounding step, formats GGUF lacks are refused, and the default model
// written back out equals the file it came from.
#include "udaci_catch.hpp"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.hpp"
#include "engine/model_lookup.hpp"
#include "cache/cache_strategy.hpp"
#include "engine/registry.hpp"
#include "engine/convert.hpp"
#include "io/gguf_reader.hpp"
#include "io/gguf_writer.hpp"
#include "model/model_loader.hpp"
#include "model/llama_model.hpp"
#include "model/rope.hpp"
#include "quant/quantizer.hpp"
#include "test_util.hpp"
#include "model/gguf_llama.hpp"
#include "model/gguf_llama_writer.hpp"

using namespace udaci;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("udaci_gguf_out_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d / name;
}

ConvertReport to_gguf(const std::string& in, const fs::path& out, const std::string& quantizer,
                      std::map<std::string, std::string> qopts = {}) {
  ConvertOptions o;
  o.quantizer = quantizer;
  o.quantizer_options = std::move(qopts);
  return convert_model(in, out.string(), o);
}

// The int4 affine parts of `stem` in `store`, dequantised by the stored
// formula w = q * s + m (quant/quant_formats.hpp), [rows, cols].
at::Tensor dequantize_int4(const WeightStore& store, const std::string& stem) {
  const TensorEntry& p = store.entry(stem + "_packed");
  const at::Tensor s = store.tensor(stem + "_scales", at::kFloat);
  const at::Tensor m = store.tensor(stem + "_mins", at::kFloat);
  const int64_t rows = p.shape[0], cols = p.shape[1] * 2, group = cols / s.size(1);
  at::Tensor w = at::empty({rows, cols}, at::kFloat);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t block = c / 32, k = c % 32;
      const uint8_t byte = p.data[r * cols / 2 + block * 16 + k % 16];
      const int q = k < 16 ? (byte & 0xF) : (byte >> 4);
      w[r][c] = q * s[r][c / group].item<float>() + m[r][c / group].item<float>();
    }
  }
  return w;
}

at::Tensor first_logits(const ModelFiles& f, const std::string& quantizer,
                        const std::map<std::string, std::string>& qopts = {}) {
  auto q = builtin_strategies().quantizers.create(quantizer, StrategyOptions(qopts));
  ModelOptions o;
  o.linear_factory = [&q](const LinearSpec& s, const WeightStore& w, const ModelOptions& opt) {
    return q->make_kernel(s, w, opt);
  };
  LlamaModel m(f.config, f.weights, o);
  auto cache = make_contiguous_cache(m.cache_shape());
  cache->add_sequence(0, 64);
  ForwardBatch b;
  b.add(0, {1, 5, 9, 2, 7, 3}, /*all_logits=*/true);
  return m.forward(b, *cache);
}

Status convert_error(const std::string& in, const fs::path& out, const std::string& quantizer,
                     std::map<std::string, std::string> qopts, const std::string& pruner,
                     std::string* message) {
  ConvertOptions o;
  o.quantizer = quantizer;
  o.quantizer_options = std::move(qopts);
  o.pruner = pruner;
  try {
    convert_model(in, out.string(), o);
  } catch (const Error& e) {
    *message = e.what();
    return e.status();
  }
  return Status::kOk;
}

}  // namespace

TEST_CASE("gguf writer: hf_to_gguf_tensor_name inverts gguf_to_hf_tensor_name", "[gguf-writer]") {
  for (const std::string g :
       {"token_embd.weight", "output_norm.weight", "output.weight", "blk.0.attn_norm.weight",
        "blk.7.attn_q.weight", "blk.7.attn_q.bias", "blk.12.attn_k.weight", "blk.3.attn_v.weight",
        "blk.3.attn_output.weight", "blk.3.ffn_norm.weight", "blk.3.ffn_gate.weight",
        "blk.3.ffn_up.weight", "blk.31.ffn_down.weight"}) {
    INFO(g);
    CHECK(hf_to_gguf_tensor_name(gguf_to_hf_tensor_name(g)) == g);
  }
  CHECK(hf_to_gguf_tensor_name("model.layers.1.mlp.gate_proj.weight") == "blk.1.ffn_gate.weight");
  CHECK(hf_to_gguf_tensor_name("model.layers.1.self_attn.rotary_emb.inv_freq").empty());
  CHECK(hf_to_gguf_tensor_name("vision_tower.weight").empty());
}

TEST_CASE("gguf writer: dense models round-trip bit for bit", "[gguf-writer][convert]") {
  for (const std::string model : {"tiny-gqa-tied", "tiny-llama3-rope", "tiny-bf16"}) {
    INFO(model);
    const std::string in = udaci_test::fixture("golden/" + model);
    const fs::path out = scratch(model + ".gguf");
    const ConvertReport r = to_gguf(in, out, "none");
    CHECK(r.file_bytes == static_cast<int64_t>(fs::file_size(out)));
    ModelFiles a = open_model(in), b = open_model(out.string());
    CHECK(b.format == "gguf");
    const ModelConfig &ca = a.config, &cb = b.config;
    CHECK(cb.hidden_size == ca.hidden_size);
    CHECK(cb.num_layers == ca.num_layers);
    CHECK(cb.num_heads == ca.num_heads);
    CHECK(cb.num_kv_heads == ca.num_kv_heads);
    CHECK(cb.head_dim == ca.head_dim);
    CHECK(cb.intermediate_size == ca.intermediate_size);
    CHECK(cb.vocab_size == ca.vocab_size);
    CHECK(cb.tie_word_embeddings == ca.tie_word_embeddings);
    CHECK(cb.rope_theta == Approx(ca.rope_theta));
    CHECK(cb.rms_norm_eps == Approx(ca.rms_norm_eps));
    // Llama 3 rope scaling travels as rope_freqs.weight: the same frequencies.
    CHECK(at::allclose(Rope(cb).inv_freq(), Rope(ca).inv_freq(), 1e-6, 0));
    for (const std::string& name : a.weights.names()) {
      INFO(name);
      REQUIRE(b.weights.has(name));
      // 1-D tensors (norms) are written F32, as llama.cpp needs them
      // (issue #22): the same values, since bf16 / f16 -> f32 is exact.
      const TensorEntry& ea = a.weights.entry(name);
      const bool widened = ea.shape.size() == 1 && (ea.type == WeightType::kBF16 || ea.type == WeightType::kF16);
      CHECK(b.weights.entry(name).type == (widened ? WeightType::kF32 : ea.type));
      CHECK(at::equal(b.weights.tensor(name, at::kFloat), a.weights.tensor(name, at::kFloat)));
    }
    const at::Tensor la = first_logits(a, "none"), lb = first_logits(b, "none");
    CHECK((la - lb).abs().max().item<double>() <= 1e-5);
  }
}

TEST_CASE("gguf writer: int4 group 32 becomes Q4_1 bit for bit, int8 Q8_0 within a step",
          "[gguf-writer][convert]") {
  const std::string in = udaci_test::fixture("golden/tiny-gqa-tied");
  const auto& reg = builtin_strategies();

  SECTION("int4 (head and embedding int4 too)") {
    const std::map<std::string, std::string> qo = {{"group", "32"}, {"head", "int4"}, {"embed", "int4"}};
    const fs::path out = scratch("tiny_int4.gguf");
    const ConvertReport r = to_gguf(in, out, "int4", qo);
    CHECK(r.file_type == "Q4_1");
    ModelFiles mem = open_model(in);
    reg.quantizers.create("int4", StrategyOptions(qo))->quantize(mem.weights);
    ModelFiles back = open_model(out.string());
    int q4 = 0;
    for (const std::string& name : back.weights.names()) {
      INFO(name);
      const TensorEntry& e = back.weights.entry(name);
      if (e.type != WeightType::kQ4_1) {
        // Kept float: norms, and down_proj (176 inputs are no multiple of 32).
        CHECK(at::equal(back.weights.tensor(name, at::kFloat), mem.weights.tensor(name, at::kFloat)));
        continue;
      }
      ++q4;
      CHECK(at::equal(back.weights.tensor(name, at::kFloat), dequantize_int4(mem.weights, name)));
    }
    CHECK(q4 == 1 + 2 * 6);  // tied embedding + q, k, v, o, gate, up per layer
    // GGUF's blocks run through the gguf-native kernels like the int4 ones.
    const at::Tensor a = first_logits(mem, "int4", qo), b = first_logits(back, "gguf-native");
    CHECK((a - b).abs().max().item<double>() < 0.05 * a.abs().max().item<double>());
  }

  SECTION("int8 (the default head/embed int8 with int4 projections)") {
    const fs::path out = scratch("tiny_int8.gguf");
    to_gguf(in, out, "int8");
    ModelFiles mem = open_model(in);
    reg.quantizers.create("int8", StrategyOptions{})->quantize(mem.weights);
    ModelFiles back = open_model(out.string());
    int q8 = 0;
    for (const std::string& name : back.weights.names()) {
      INFO(name);
      if (back.weights.entry(name).type != WeightType::kQ8_0) continue;
      ++q8;
      const at::Tensor w = mem.weights.tensor(name, at::kFloat) *
                           mem.weights.tensor(name + "_scale", at::kFloat).unsqueeze(1);
      // A Q8_0 block's step d is at most the row's int8 step; rounding to it
      // errs by d/2, and d stored as f16 (relative 2^-11) by up to 127 d 2^-11.
      const at::Tensor step = w.abs().amax(1, true) / 127.0;
      CHECK(((back.weights.tensor(name, at::kFloat) - w).abs() <= step * 0.57 + 1e-7).all().item<bool>());
    }
    CHECK(q8 == 1 + 2 * 6);
  }
}

TEST_CASE("gguf writer: formats GGUF has no type for are refused by name", "[gguf-writer][convert]") {
  const std::string in = udaci_test::fixture("golden/tiny-gqa-tied");
  std::string msg;
  CHECK(convert_error(in, scratch("nf4.gguf"), "nf4", {}, "none", &msg) == Status::kUnsupported);
  CHECK_THAT(msg, Catch::Matchers::Contains("NF4"));
  CHECK(convert_error(in, scratch("g64.gguf"), "int4", {{"group", "64"}}, "none", &msg) ==
        Status::kUnsupported);
  CHECK_THAT(msg, Catch::Matchers::Contains("group 64"));
  CHECK(convert_error(in, scratch("24.gguf"), "none", {}, "2:4", &msg) == Status::kUnsupported);
  CHECK_THAT(msg, Catch::Matchers::Contains("2:4"));
  CHECK_FALSE(fs::exists(scratch("nf4.gguf")));
}

TEST_CASE("gguf writer: the default model written back equals its file", "[gguf-writer][smollm2]") {
  const std::string gguf = udaci_test::default_model_gguf();
  if (gguf.empty()) {
    WARN("default GGUF model not installed; skipping");
    return;
  }
  const fs::path out = scratch("smollm2_copy.gguf");
  const ConvertReport r = to_gguf(gguf, out, "none");
  CHECK(r.tokenizer);
  CHECK(r.file_type == "Q4_1");
  auto a = GgufFile::open(gguf), b = GgufFile::open(out.string());
  REQUIRE(a->tensors().size() == b->tensors().size());
  for (const GgufTensorInfo& t : a->tensors()) {
    INFO(t.name);
    REQUIRE(b->has_tensor(t.name));
    const GgufTensorInfo& u = b->tensor(t.name);
    CHECK(u.ggml_type == t.ggml_type);
    CHECK(u.dims == t.dims);
    REQUIRE(u.nbytes == t.nbytes);
    CHECK(std::memcmp(u.data, t.data, t.nbytes) == 0);
  }
  const TokenizerSpec sa = tokenizer_spec_from_gguf(*a), sb = tokenizer_spec_from_gguf(*b);
  CHECK(sb.tokens == sa.tokens);
  CHECK(sb.merges == sa.merges);
  CHECK((sb.token_types == sa.token_types));
  CHECK(sb.pre_tokenizer == sa.pre_tokenizer);
  CHECK(sb.bos_id == sa.bos_id);
  CHECK(sb.eos_ids == sa.eos_ids);
  CHECK(sb.pad_id == sa.pad_id);
  CHECK(sb.add_bos == sa.add_bos);
  CHECK(sb.chat_template == sa.chat_template);
  const ModelConfig ca = model_config_from_gguf(*a), cb = model_config_from_gguf(*b);
  CHECK(config_to_json(ca) == config_to_json(cb));
  const std::string text = "Scientists say the Voyager probe's signal <|im_end|> 2026!";
  CHECK(load_tokenizer(out.string()).encode(text) == load_tokenizer(gguf).encode(text));
}

TEST_CASE("gguf writer: udaci convert --output x.gguf on the command line", "[gguf-writer][cli]") {
  const fs::path out = scratch("cli.gguf"), log = scratch("cli_gguf.txt");
  const std::string base = std::string(UDACI_CLI_PATH) + " convert --model " +
                           udaci_test::fixture("golden/tiny-gqa-tied") + " --output ";
  int raw = std::system((base + out.string() + " --quantizer int4 > " + log.string()).c_str());
  REQUIRE(WIFEXITED(raw));
  CHECK(WEXITSTATUS(raw) == 0);
  std::stringstream s;
  s << std::ifstream(log).rdbuf();
  CHECK_THAT(s.str(), Catch::Matchers::Contains("\"gguf_file_type\":\"Q4_1\""));
  CHECK(open_model(out.string()).format == "gguf");
  raw = std::system((base + scratch("cli_nf4.gguf").string() + " --quantizer nf4 2> " + log.string()).c_str());
  REQUIRE(WIFEXITED(raw));
  CHECK(WEXITSTATUS(raw) != 0);
  std::stringstream e;
  e << std::ifstream(log).rdbuf();
  CHECK_THAT(e.str(), Catch::Matchers::Contains("NF4"));
}

namespace {

// Last-position logits of `ids` and the next `steps` greedy ids.
std::pair<at::Tensor, std::vector<int64_t>> greedy_from(const ModelFiles& f, const std::string& quantizer,
                                                        const std::vector<int64_t>& ids, int steps) {
  auto q = builtin_strategies().quantizers.create(quantizer, StrategyOptions());
  ModelOptions o;
  o.linear_factory = [&q](const LinearSpec& s, const WeightStore& w, const ModelOptions& opt) {
    return q->make_kernel(s, w, opt);
  };
  LlamaModel m(f.config, f.weights, o);
  auto cache = make_contiguous_cache(m.cache_shape());
  cache->add_sequence(0, static_cast<int64_t>(ids.size()) + steps);
  ForwardBatch b;
  b.add(0, ids);
  at::Tensor logits = m.forward(b, *cache)[0].clone();
  at::Tensor row = logits;
  std::vector<int64_t> out;
  for (int s = 0; s < steps; ++s) {
    const int64_t tok = row.argmax().item<int64_t>();
    out.push_back(tok);
    if (s + 1 == steps) break;
    ForwardBatch next;
    next.add(0, {tok});
    row = m.forward(next, *cache)[0];
  }
  return {logits, out};
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

TEST_CASE("gguf writer: llama.cpp loads every kind of GGUF udaci writes, and computes what udaci does",
          "[gguf-writer][smollm2][llamacpp]") {
  // Fixture: tools/reference/make_llamacpp_written_fixtures.py wrote these
  // files with udaci, loaded each in llama.cpp (llama-cpp-python 0.3.36) and
  // recorded the layout it accepted and its logits. Here udaci writes them
  // again: the layout must be the one llama.cpp loaded (a tensor type or
  // metadata type llama.cpp refuses, e.g. 1-D tensors in F16, fails here),
  // and udaci's logits on its own files must be llama.cpp's.
  const std::string def = udaci_test::default_model_gguf();
  if (def.empty()) {
    WARN("default GGUF model not installed; skipping");
    return;
  }
  std::ifstream in(udaci_test::fixture("llamacpp/written_gguf.json"));
  const nlohmann::json fx = nlohmann::json::parse(in);
  const std::vector<std::vector<int64_t>> prompts = fx["prompts"].get<std::vector<std::vector<int64_t>>>();
  REQUIRE(fx["files"].size() == 5);
  for (const auto& [kind, f] : fx["files"].items()) {
    INFO("kind " << kind);
    const fs::path out = scratch(kind + ".gguf");
    ConvertOptions o;
    std::string src = def;
    if (f["how"].contains("hf")) {
      const fs::path hf = scratch(kind + "-hf");
      ConvertOptions d;
      d.dequantize = f["how"]["hf"].get<std::string>();
      convert_model(def, hf.string(), d);
      src = hf.string();
      o.tokenizer = def;
    }
    const auto& extra = f["how"]["convert"];
    if (!extra.empty()) {
      REQUIRE(extra.size() == 2);
      REQUIRE(extra[0] == "--quantizer");
      o.quantizer = extra[1].get<std::string>();
    }
    convert_model(src, out.string(), o);

    // The layout llama.cpp loaded: every tensor's type and shape, every
    // metadata key's value type.
    auto g = GgufFile::open(out.string());
    REQUIRE(g->tensors().size() == f["tensors"].size());
    for (const GgufTensorInfo& t : g->tensors()) {
      INFO("tensor " << t.name);
      REQUIRE(f["tensors"].contains(t.name));
      REQUIRE(t.type_info != nullptr);
      CHECK(std::string(t.type_info->name) == f["tensors"][t.name]["type"].get<std::string>());
      CHECK(t.dims == f["tensors"][t.name]["shape"].get<std::vector<int64_t>>());
    }
    CHECK(g->keys().size() == f["metadata"].size());
    for (const std::string& key : g->keys()) {
      INFO("metadata key " << key);
      REQUIRE(f["metadata"].contains(key));
      const GgufValue& v = g->value(key);
      std::string type = upper(gguf_value_type_name(v.type));
      if (v.type == GgufValueType::kArray) type += "/" + upper(gguf_value_type_name(v.array_type));
      CHECK(type == f["metadata"][key].get<std::string>());
    }

    // udaci on the file it wrote vs llama.cpp on the same file: the float
    // files as fp32 (llama.cpp's F16/BF16 matmuls round activations to 16
    // bits), the block files as stored (both engines round activations to
    // 8 bits, differently).
    const bool blocks = kind == "as_stored" || kind == "q8_0";
    const ModelFiles mf = open_model(out.string());
    for (size_t p = 0; p < prompts.size(); ++p) {
      INFO("prompt " << p);
      const nlohmann::json& run = f["runs"][p];
      auto [logits, greedy] = greedy_from(mf, blocks ? "gguf-native" : "none", prompts[p], 8);
      const double range = run["max"].get<double>() - run["min"].get<double>();
      double worst = 0.0;
      for (const auto& tv : run["top"]) {
        worst = std::max(worst, std::fabs(logits[tv[0].get<int64_t>()].item<double>() - tv[1].get<double>()));
      }
      const std::vector<int64_t> ref = run["greedy_ids"].get<std::vector<int64_t>>();
      int same = 0;
      while (same < static_cast<int>(ref.size()) && greedy[static_cast<size_t>(same)] == ref[static_cast<size_t>(same)]) ++same;
      // Measured 2026-12-03 (logit range ~35): f32 <= 2e-5, f16 0.010-0.012,
      // bf16 0.064-0.090, Q4_1 / Q8_0 blocks 0.40-0.70.
      const double tol = kind == "f32" ? 2e-4 * range : blocks ? 0.03 * range : 0.01 * range;
      INFO("max |udaci - llama.cpp| over llama.cpp's top 50: " << worst << " (range " << range
                                                               << "); greedy prefix equal " << same << "/8");
      CHECK(worst <= tol);
      CHECK(greedy[0] == ref[0]);
      if (kind == "f32") CHECK(same == 8);
      if (kind == "f16" || kind == "bf16") {
        // gguf-native keeps the 16-bit projections as stored (half the
        // bytes) and widens them in registers: the same values as "none"'s
        // fp32 copy, so the same logits up to summation order.
        auto [native_logits, native_greedy] = greedy_from(mf, "gguf-native", prompts[p], 8);
        const double diff = (native_logits - logits).abs().max().item<double>();
        INFO("max |gguf-native - none| " << diff);
        CHECK(diff <= 1e-4 * range);
        CHECK(native_greedy == greedy);
        if (p == 0) {
          auto q = builtin_strategies().quantizers.create("gguf-native", StrategyOptions());
          ModelOptions o;
          o.linear_factory = [&q](const LinearSpec& s, const WeightStore& w, const ModelOptions& opt) {
            return q->make_kernel(s, w, opt);
          };
          const LlamaModel native(mf.config, mf.weights, o), dense(mf.config, mf.weights, ModelOptions{});
          INFO("weight bytes: gguf-native " << native.weight_bytes() << ", none " << dense.weight_bytes());
          CHECK(native.weight_bytes() * 10 < dense.weight_bytes() * 6);  // ~half: the norms stay fp32
        }
      }
    }
    fs::remove(out);
    if (f["how"].contains("hf")) fs::remove_all(scratch(kind + "-hf"));
  }
}
