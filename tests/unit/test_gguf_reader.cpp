// GgufFile: metadata of every value type, tensor infos, alignment, the llama
// config / weights / tokenizer built from it (fixtures made by
// tools/reference/make_gguf_fixtures.py with gguf-py's GGUFWriter), a
// hand-built GGUF v2 file, and malformed files that must fail with
// Error(kBadModelFile) naming the problem.
#include "test_gguf_util.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include "io/gguf_quants.hpp"
#include "io/safetensors_reader.hpp"
#include "test_util.hpp"
#include "model/gguf_llama.hpp"

using namespace udaci;
using udaci_test::expect_error;
using udaci_gguf_test::expect_open_fails;
using udaci_gguf_test::GgufBytes;
using udaci_gguf_test::TempFile;

namespace {

std::shared_ptr<GgufFile> tiny() { return GgufFile::open(udaci_test::fixture("gguf/tiny_llama.gguf")); }


}  // namespace

TEST_CASE("gguf: header, alignment and tensor infos of a GGUFWriter file", "[unit][gguf]") {
  auto g = tiny();
  CHECK(g->version() == 3);
  CHECK(g->alignment() == 32);
  CHECK(g->data_offset() % 32 == 0);
  CHECK(g->get_string("general.architecture") == "llama");
  CHECK(g->tensors().size() == 1u + 9u * 2u + 3u);  // embd, 9 per layer, norm, output, rope_freqs

  const GgufTensorInfo& q = g->tensor("blk.0.attn_q.weight");
  CHECK(q.dims == std::vector<int64_t>{64, 64});
  CHECK(q.type_info->name == std::string("Q4_0"));
  CHECK(q.nbytes == 64u * 64u / 32u * 18u);
  CHECK(q.offset % 32 == 0);
  CHECK(q.data == g->mapping()->data() + g->data_offset() + q.offset);
  const GgufTensorInfo& e = g->tensor("token_embd.weight");
  CHECK(e.dims == std::vector<int64_t>{64, 96});  // innermost first
  CHECK(e.shape() == std::vector<int64_t>{96, 64});
  CHECK(e.numel() == 96 * 64);
  CHECK(g->tensor("blk.1.ffn_down.weight").type_info->name == std::string("Q4_K"));
  CHECK_FALSE(g->has_tensor("nope.weight"));
  expect_error([&] { g->tensor("nope.weight"); }, Status::kBadModelFile, "missing tensor 'nope.weight'");

  // Non-default alignment (general.alignment = 64).
  auto qg = GgufFile::open(udaci_test::fixture("gguf/quants.gguf"));
  CHECK(qg->alignment() == 64);
  CHECK(qg->data_offset() % 64 == 0);
  for (const GgufTensorInfo& t : qg->tensors()) CHECK(t.offset % 64 == 0);
}

TEST_CASE("gguf: metadata of every value type", "[unit][gguf]") {
  auto g = tiny();
  CHECK(g->get_u8("udaci.test.u8") == 200);
  CHECK(g->get_i8("udaci.test.i8") == -100);
  CHECK(g->get_u16("udaci.test.u16") == 60000);
  CHECK(g->get_i16("udaci.test.i16") == -30000);
  CHECK(g->get_u32("udaci.test.u32") == 4000000000u);
  CHECK(g->get_i32("udaci.test.i32") == -2000000000);
  CHECK(g->get_f32("udaci.test.f32") == 1.5f);
  CHECK(g->get_u64("udaci.test.u64") == 18000000000000000000ull);
  CHECK(g->get_i64("udaci.test.i64") == -9000000000000000000ll);
  CHECK(g->get_f64("udaci.test.f64") == 3.141592653589793);
  CHECK(g->get_bool("udaci.test.bool"));
  CHECK(g->get_string("udaci.test.string") == "h\xc3\xa9llo\nworld");
  CHECK(g->get_string("udaci.test.empty_string").empty());

  CHECK(g->get_i32_array("udaci.test.i32_array") == std::vector<int32_t>{1, -2, 3});
  CHECK(g->get_f32_array("udaci.test.f32_array") == std::vector<float>{0.5f, -1.25f});
  CHECK(g->get_string_array("udaci.test.string_array") == std::vector<std::string>{"a", "bc", ""});
  CHECK(g->array_type("udaci.test.bool_array") == GgufValueType::kBool);
  CHECK(g->get_int_array("udaci.test.u8_array") == std::vector<int64_t>{7, 255});
  CHECK(g->get_int_array("udaci.test.i64_array") == std::vector<int64_t>{-5, 1ll << 40});
  CHECK(g->get_float_array("udaci.test.f64_array") == std::vector<double>{0.25, -2.5});
  CHECK(g->get_float_array("udaci.test.f32_array") == std::vector<double>{0.5, -1.25});
  CHECK(g->array_type("udaci.test.nested_array") == GgufValueType::kArray);
  CHECK(g->array_length("udaci.test.nested_array") == 2);
  CHECK(g->array_length("tokenizer.ggml.tokens") == 96);

  // Lenient getters widen integers and floats.
  CHECK(g->get_int("udaci.test.u8") == 200);
  CHECK(g->get_int("udaci.test.i16") == -30000);
  CHECK(g->get_int("udaci.test.u32") == 4000000000ll);
  CHECK(g->get_float("udaci.test.f32") == 1.5);
  CHECK(g->get_float("udaci.test.i8") == -100.0);
  CHECK(g->get_int_or("absent.key", 7) == 7);
  CHECK(g->get_string_or("absent.key", "x") == "x");
  CHECK(g->get_bool_or("absent.key", true));
  CHECK(g->get_float_or("absent.key", 0.5) == 0.5);

  // Keys in file order, all reachable.
  const auto& keys = g->keys();
  REQUIRE_FALSE(keys.empty());
  CHECK(keys.front() == "general.architecture");
  for (const std::string& k : keys) CHECK(g->has(k));
  CHECK(g->value_to_string("udaci.test.i32_array") == "[3 x int32: 1, -2, 3]");
  CHECK(g->value_to_string("udaci.test.bool") == "true");
  CHECK(g->value_to_string("udaci.test.string_array", 2) == "[3 x string: \"a\", \"bc\", ...]");
}

TEST_CASE("gguf: typed getters name the key and the expected type", "[unit][gguf]") {
  auto g = tiny();
  expect_error([&] { g->get_u32("general.architecture"); }, Status::kBadModelFile,
               "'general.architecture' must be uint32, got string");
  expect_error([&] { g->get_string("udaci.test.u32"); }, Status::kBadModelFile,
               "'udaci.test.u32' must be string, got uint32");
  expect_error([&] { g->get_i32("udaci.test.u32"); }, Status::kBadModelFile, "must be int32");
  expect_error([&] { g->get_f32("udaci.test.f64"); }, Status::kBadModelFile, "must be float32, got float64");
  expect_error([&] { g->get_u32("no.such.key"); }, Status::kBadModelFile, "missing metadata key 'no.such.key'");
  expect_error([&] { g->get_int("udaci.test.string"); }, Status::kBadModelFile, "must be an integer");
  expect_error([&] { g->get_int("udaci.test.u64"); }, Status::kBadModelFile, "too large");
  expect_error([&] { g->get_int("udaci.test.i32_array"); }, Status::kBadModelFile,
               "got array of int32");
  expect_error([&] { g->get_string_array("udaci.test.i32_array"); }, Status::kBadModelFile,
               "must be an array of string, got array of int32");
  expect_error([&] { g->get_i32_array("udaci.test.u32"); }, Status::kBadModelFile, "must be an array");
  expect_error([&] { g->get_f32_array("udaci.test.f64_array"); }, Status::kBadModelFile,
               "array of float32, got array of float64");
  expect_error([&] { g->get_int_array("udaci.test.nested_array"); }, Status::kBadModelFile,
               "array of integers, got array of array");
  expect_error([&] { g->get_int_or("udaci.test.string", 0); }, Status::kBadModelFile,
               "'udaci.test.string' must be an integer");
}

TEST_CASE("gguf: llama model config", "[unit][gguf]") {
  const ModelConfig c = model_config_from_gguf(*tiny());
  CHECK(c.hidden_size == 64);
  CHECK(c.num_layers == 2);
  CHECK(c.intermediate_size == 256);
  CHECK(c.num_heads == 4);
  CHECK(c.num_kv_heads == 2);
  CHECK(c.head_dim == 16);
  CHECK(c.vocab_size == 96);  // no llama.vocab_size: from the token list
  CHECK(c.max_position_embeddings == 512);
  CHECK(c.rope_theta == 50000.0);
  CHECK(c.rms_norm_eps == Approx(1e-5).epsilon(1e-6));
  CHECK(c.rope_scaling.type == "linear");
  CHECK(c.rope_scaling.factor == 2.0);
  CHECK_FALSE(c.tie_word_embeddings);  // output.weight present
  CHECK_FALSE(c.attention_bias);
  CHECK(c.bos_token_id == 1);
  CHECK(c.eos_token_ids == std::vector<int64_t>{2, 0});  // eos, then eot
  CHECK(c.torch_dtype == "Q8_0");                        // general.file_type 7

  CHECK(gguf_rope_freq_factors(*tiny()) == std::vector<float>{1, 1, 1, 1.5f, 2, 4, 8, 8});
  CHECK(gguf_rope_freq_factors(*GgufFile::open(udaci_test::fixture("gguf/quants.gguf"))).empty());
}

TEST_CASE("gguf: config errors are clear", "[unit][gguf]") {
  auto base = [](const std::string& arch, bool with_heads) {
    GgufBytes b;
    b.header(3, 0, with_heads ? 7 : 6)
        .kv_string("general.architecture", arch)
        .kv_u32(arch + ".embedding_length", 64)
        .kv_u32(arch + ".block_count", 2)
        .kv_u32(arch + ".feed_forward_length", 128)
        .kv_f32(arch + ".attention.layer_norm_rms_epsilon", 1e-5f)
        .kv_u32(arch + ".vocab_size", 100);
    if (with_heads) b.kv_u32(arch + ".attention.head_count", 3);  // 64 / 3: odd head_dim 21
    return b.b;
  };
  {
    TempFile f(base("gemma", true));
    expect_error([&] { model_config_from_gguf(*GgufFile::open(f.path())); }, Status::kUnsupported,
                 "general.architecture must be \"llama\"");
  }
  {
    TempFile f(base("llama", false));
    expect_error([&] { model_config_from_gguf(*GgufFile::open(f.path())); },
                 Status::kBadModelFile, "missing required metadata key 'llama.attention.head_count'");
  }
  {
    TempFile f(base("llama", true));
    expect_error([&] { model_config_from_gguf(*GgufFile::open(f.path())); },
                 Status::kBadModelFile, "head_dim must be even");
  }
}

TEST_CASE("gguf: weights under HF names, dequantised and unpermuted", "[unit][gguf]") {
  auto g = tiny();
  WeightStore store;
  gguf_weights_to_store(g, store);
  WeightStore expected;
  read_safetensors_file(udaci_test::fixture("gguf/tiny_llama_expected.safetensors"), expected);
  CHECK(store.names() == expected.names());

  for (const std::string& name : expected.names()) {
    INFO("tensor " << name);
    const at::Tensor want = expected.tensor(name, at::kFloat);
    const at::Tensor got = store.tensor(name, at::kFloat);
    REQUIRE(got.sizes() == want.sizes());
    CHECK(store.entry(name).shape == expected.entry(name).shape);
    // gguf-py and udaci compute each value with the same float32 operations;
    // a fused multiply-add on some targets may change the last bit.
    CHECK(at::allclose(got, want, /*rtol=*/1e-6, /*atol=*/1e-7));
    CHECK(at::isfinite(got).all().item<bool>());
    // Other compute dtypes go through the same path.
    CHECK(at::equal(store.tensor(name, at::kBFloat16), want.to(at::kBFloat16)));
  }
  CHECK(store.entry("model.layers.0.self_attn.q_proj.weight").unpermute_heads == 4);
  CHECK(store.entry("model.layers.1.self_attn.k_proj.weight").unpermute_heads == 2);
  CHECK(store.entry("model.layers.0.self_attn.v_proj.weight").unpermute_heads == 0);
  CHECK(store.entry("model.layers.0.self_attn.q_proj.weight").type == WeightType::kQ4_0);
  CHECK(store.entry("model.layers.1.self_attn.k_proj.weight").type == WeightType::kF16);
  CHECK(store.entry("lm_head.weight").shape == std::vector<int64_t>{96, 64});

  // Without the unpermutation the stored rows differ: the fixture really
  // exercises it (q in a block format, k1 on the zero-copy F16 path).
  for (const char* name : {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight"}) {
    TensorEntry raw = store.entry(name);
    raw.unpermute_heads = 0;
    WeightStore s2;
    s2.add(raw);
    CHECK_FALSE(at::allclose(s2.tensor(name, at::kFloat), expected.tensor(name, at::kFloat)));
  }
}

TEST_CASE("gguf: tensor name mapping", "[unit][gguf]") {
  CHECK(gguf_to_hf_tensor_name("token_embd.weight") == "model.embed_tokens.weight");
  CHECK(gguf_to_hf_tensor_name("blk.12.attn_q.weight") == "model.layers.12.self_attn.q_proj.weight");
  CHECK(gguf_to_hf_tensor_name("blk.3.attn_k.bias") == "model.layers.3.self_attn.k_proj.bias");
  CHECK(gguf_to_hf_tensor_name("blk.0.attn_output.weight") == "model.layers.0.self_attn.o_proj.weight");
  CHECK(gguf_to_hf_tensor_name("blk.0.ffn_norm.weight") == "model.layers.0.post_attention_layernorm.weight");
  CHECK(gguf_to_hf_tensor_name("blk.0.attn_norm.weight") == "model.layers.0.input_layernorm.weight");
  CHECK(gguf_to_hf_tensor_name("blk.0.ffn_down.weight") == "model.layers.0.mlp.down_proj.weight");
  CHECK(gguf_to_hf_tensor_name("output_norm.weight") == "model.norm.weight");
  CHECK(gguf_to_hf_tensor_name("output.weight") == "lm_head.weight");
  CHECK(gguf_to_hf_tensor_name("rope_freqs.weight") == "rope_freqs.weight");
  CHECK(gguf_to_hf_tensor_name("blk.x.attn_q.weight") == "blk.x.attn_q.weight");
}

TEST_CASE("gguf: tokenizer spec", "[unit][gguf]") {
  const TokenizerSpec s = tokenizer_spec_from_gguf(*tiny());
  REQUIRE(s.tokens.size() == 96);
  CHECK(s.tokens[1] == "<|im_start|>");
  CHECK(s.tokens[95] == "t95");
  REQUIRE(s.token_types.size() == 96);
  CHECK(s.token_types[0] == TokenType::kControl);
  CHECK(s.token_types[3] == TokenType::kNormal);
  CHECK(s.merges == std::vector<std::string>{"t 1", "t 2", "t1 0"});
  CHECK(s.pre_tokenizer == "smollm");
  CHECK(s.bos_id == 1);
  CHECK(s.eos_id == 2);
  CHECK(s.pad_id == 2);
  CHECK(s.unk_id == -1);
  CHECK(s.eos_ids == std::vector<int64_t>{2, 0});
  CHECK(s.add_bos);
  CHECK_FALSE(s.add_eos);
  CHECK(s.chat_template == "{% for m in messages %}{{ m['content'] }}{% endfor %}");

  GgufBytes b;
  b.header(3, 0, 2).kv_string("tokenizer.ggml.model", "llama").str("tokenizer.ggml.tokens").u32(9).u32(8).u64(1).str("a");
  TempFile f(b.b);
  expect_error([&] { tokenizer_spec_from_gguf(*GgufFile::open(f.path())); }, Status::kUnsupported,
               "tokenizer.ggml.model \"llama\" is not supported");

  GgufBytes c;
  c.header(3, 0, 3).kv_string("tokenizer.ggml.model", "gpt2").str("tokenizer.ggml.tokens").u32(9).u32(8).u64(1).str("a")
      .kv_u32("tokenizer.ggml.eos_token_id", 5);
  TempFile f2(c.b);
  expect_error([&] { tokenizer_spec_from_gguf(*GgufFile::open(f2.path())); }, Status::kBadModelFile,
               "tokenizer.ggml.eos_token_id is 5, outside the vocabulary of 1 tokens");
}

TEST_CASE("gguf: llama.cpp's Llama 3 vocabulary file", "[unit][gguf]") {
  if (!udaci_test::shared_available()) {
    WARN("shared/ assets not found beside the checkout; skipping the Llama 3 vocab GGUF test");
    return;
  }
  auto g = GgufFile::open(udaci_test::shared_path("assets/tokenizers/llama3/ggml-vocab-llama-bpe.gguf"));
  CHECK(g->tensors().empty());
  const ModelConfig c = model_config_from_gguf(*g);
  CHECK(c.vocab_size == 128256);
  CHECK(c.head_dim == 128);
  CHECK(c.num_kv_heads == 8);
  CHECK(c.rope_theta == 500000.0);
  CHECK(c.tie_word_embeddings);  // no output.weight: only meaningful with tensors
  const TokenizerSpec s = tokenizer_spec_from_gguf(*g);
  CHECK(s.pre_tokenizer == "llama-bpe");
  CHECK(s.tokens.size() == 128256);
  CHECK(s.merges.size() == 280147);
  CHECK(s.bos_id == 128000);
  CHECK(s.eos_ids == std::vector<int64_t>{128001});
}

// ---- hand-built files ---------------------------------------------------------

namespace {

// A small valid file: metadata of several types, one F32 tensor [2, 3] and one
// Q8_0 tensor [32].
GgufBytes valid_file(uint32_t version) {
  GgufBytes b;
  b.header(version, 2, 4)
      .kv_string("general.architecture", "llama")
      .kv_u32("test.u32", 7)
      .str("test.i64").u32(11).u64(static_cast<uint64_t>(-3ll))
      .str("test.strings").u32(9).u32(8).u64(2).str("x").str("yz");
  b.tensor_info("a", {3, 2}, 0, 0).tensor_info("b", {32}, 8, 32);
  b.pad(32);
  for (int i = 0; i < 6; ++i) b.f32(static_cast<float>(i) + 0.5f);
  b.pad(32);
  b.u8(0x00).u8(0x3c);  // f16 1.0
  for (int i = 0; i < 32; ++i) b.u8(static_cast<uint8_t>(i - 16));
  return b;
}

}  // namespace

TEST_CASE("gguf: version 2 and 3 files built by hand", "[unit][gguf]") {
  for (uint32_t version : {2u, 3u}) {
    TempFile f(valid_file(version).b);
    auto g = GgufFile::open(f.path());
    CHECK(g->version() == version);
    CHECK(g->get_u32("test.u32") == 7);
    CHECK(g->get_i64("test.i64") == -3);
    CHECK(g->get_string_array("test.strings") == std::vector<std::string>{"x", "yz"});
    REQUIRE(g->tensors().size() == 2);
    const GgufTensorInfo& a = g->tensor("a");
    CHECK(a.shape() == std::vector<int64_t>{2, 3});
    const float* v = reinterpret_cast<const float*>(a.data);
    CHECK(v[0] == 0.5f);
    CHECK(v[5] == 5.5f);
    WeightStore store;
    gguf_weights_to_store(g, store);
    const at::Tensor b = store.tensor("b", at::kFloat);
    CHECK(b[0].item<float>() == -16.0f);
    CHECK(b[31].item<float>() == 15.0f);
  }
}

TEST_CASE("gguf: malformed files fail with kBadModelFile naming the problem", "[unit][gguf]") {
  const std::string good = valid_file(3).b;
  {
    TempFile f(good);
    REQUIRE_NOTHROW(GgufFile::open(f.path()));
  }
  std::string bad = good;
  bad[0] = 'X';
  expect_open_fails(bad, "bad magic");
  expect_open_fails("GGU", "not a GGUF file");
  expect_open_fails(GgufBytes().header(1, 0, 0).b, "unsupported GGUF version 1");
  expect_open_fails(GgufBytes().header(4, 0, 0).b, "unsupported GGUF version 4");
  {
    GgufBytes b;
    b.b = "GGUF";
    b.u32(0x03000000).u64(0).u64(0);
    expect_open_fails(b.b, "big-endian");
  }
  expect_open_fails(good.substr(0, 10), "truncated");
  expect_open_fails(good.substr(0, 20), "truncated");
  // A key whose length runs past the end.
  expect_open_fails(GgufBytes().header(3, 0, 1).u64(1000).b.append(std::string(20, 'a')), "past the end");
  // A string value over the limit.
  expect_open_fails(GgufBytes().header(3, 0, 1).str("k").u32(8).u64(kGgufMaxStringBytes + 1).b,
                    "limit");
  // Absurd array lengths: over the limit, and within it but past the end.
  expect_open_fails(GgufBytes().header(3, 0, 1).str("k").u32(9).u32(4).u64(1ull << 40).b,
                    "declares an array of 1099511627776 elements (limit");
  expect_open_fails(GgufBytes().header(3, 0, 1).str("k").u32(9).u32(4).u64(1000).u32(1).b,
                    "past the end of the file");
  expect_open_fails(GgufBytes().header(3, 0, 1).str("k").u32(9).u32(8).u64(1000000).u64(1).b,
                    "past the end of the file");
  // Absurd tensor and metadata counts.
  expect_open_fails(GgufBytes().header(3, 1ull << 40, 0).b, "tensor count 1099511627776 exceeds");
  expect_open_fails(GgufBytes().header(3, 1000, 0).b, "tensor count 1000 cannot fit");
  expect_open_fails(GgufBytes().header(3, 0, 1ull << 62).b, "metadata count");
  // Unknown value type, bad bool, duplicate key, bad alignment.
  expect_open_fails(GgufBytes().header(3, 0, 1).str("k").u32(13).u32(0).b, "unknown value type 13");
  expect_open_fails(GgufBytes().header(3, 0, 1).str("k").u32(7).u8(2).b, "byte value 2");
  expect_open_fails(GgufBytes().header(3, 0, 2).kv_u32("k", 1).kv_u32("k", 2).b, "'k' appears twice");
  expect_open_fails(GgufBytes().header(3, 0, 1).kv_u32("general.alignment", 24).b,
                    "general.alignment must be a power of two");
  expect_open_fails(GgufBytes().header(3, 0, 1).kv_string("general.alignment", "32").b,
                    "'general.alignment' must be uint32");
  expect_open_fails(
      GgufBytes().header(3, 0, 1).str("k").u32(9).u32(9).u64(1).u32(9).u64(1).u32(9).u64(1).u32(9)
          .u64(1).u32(9).u64(1).u32(4).u64(0).b,
      "nests arrays deeper");

  auto one_tensor = [](const std::vector<uint64_t>& dims, uint32_t type, uint64_t offset,
                       size_t data_bytes) {
    GgufBytes b;
    b.header(3, 1, 0).tensor_info("w", dims, type, offset).pad(32).zeros(data_bytes);
    return b.b;
  };
  {
    TempFile f(one_tensor({8}, 0, 0, 32));
    REQUIRE_NOTHROW(GgufFile::open(f.path()));
  }
  expect_open_fails(one_tensor({8}, 0, 0, 31), "'w' (32 bytes at data offset 0) extends past the end");
  expect_open_fails(one_tensor({8}, 0, 64, 64), "extends past the end");
  expect_open_fails(one_tensor({8}, 0, ~0ull - 31, 32), "extends past the end");
  expect_open_fails(one_tensor({8}, 99, 0, 32), "tensor 'w' has unknown ggml type 99");
  expect_open_fails(one_tensor({8}, 4, 0, 32), "unknown ggml type 4");
  expect_open_fails(one_tensor({8}, 0, 16, 64), "offset 16, not a multiple of the alignment 32");
  expect_open_fails(one_tensor({33}, 2, 0, 64), "not a multiple of the block size 32");
  expect_open_fails(one_tensor({1ull << 20, 1ull << 20}, 0, 0, 32), "larger than the file");
  expect_open_fails(one_tensor({1ull << 62, 1ull << 62}, 0, 0, 32), "overflows");
  expect_open_fails(one_tensor({0}, 0, 0, 32), "invalid dimension 0");
  expect_open_fails(one_tensor({1, 1, 1, 1, 1}, 0, 0, 32), "5 dimensions");
  {
    GgufBytes b;
    b.header(3, 2, 0).tensor_info("w", {8}, 0, 0).tensor_info("w", {8}, 0, 32).pad(32).zeros(64);
    expect_open_fails(b.b, "tensor 'w' appears twice");
  }
  // A known ggml type without a dequantiser opens (for inspection) but cannot
  // become a weight.
  {
    TempFile f(one_tensor({256}, 16, 0, 66));
    auto g = GgufFile::open(f.path());
    CHECK(g->tensor("w").type_info->name == std::string("IQ2_XXS"));
    WeightStore store;
    expect_error([&] { gguf_weights_to_store(g, store); }, Status::kUnsupported,
                 "ggml type IQ2_XXS, which udaci cannot dequantise");
  }
}

TEST_CASE("gguf: every truncation and random corruption fails cleanly", "[unit][gguf]") {
  const std::string full = udaci_gguf_test::read_all(udaci_test::fixture("gguf/tiny_llama.gguf"));
  REQUIRE(full.size() > 4096);
  auto g = tiny();
  const size_t header_end = static_cast<size_t>(g->data_offset());
  uint64_t data_end = 0;
  for (const GgufTensorInfo& t : g->tensors()) {
    data_end = std::max<uint64_t>(data_end, g->data_offset() + t.offset + t.nbytes);
  }
  // Every cut inside the header and tensor infos, then a stride through the
  // data, up to the end of the last tensor (padding after it may go).
  for (size_t len = 0; len < data_end; len += (len < header_end + 64 ? 1 : 997)) {
    TempFile f(full.substr(0, len));
    try {
      GgufFile::open(f.path());
      FAIL("a file cut at " << len << " of " << full.size() << " bytes opened");
    } catch (const Error& e) {
      if (e.status() != Status::kBadModelFile) FAIL("cut at " << len << ": " << e.what());
    }
  }
  // Random byte corruption of the header: either opens or throws
  // kBadModelFile; never crashes or throws anything else.
  std::mt19937 rng(1234);
  int failures = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::string bytes = full;
    for (int k = 0; k < 4; ++k) {
      bytes[rng() % header_end] = static_cast<char>(rng() & 0xff);
    }
    TempFile f(bytes);
    try {
      auto h = GgufFile::open(f.path());
      (void)h->keys();
    } catch (const Error& e) {
      ++failures;
      CHECK(e.status() == Status::kBadModelFile);
    }
  }
  CHECK(failures > 0);
}

TEST_CASE("gguf: bytes in memory read as the file does", "[unit][gguf]") {
  const std::string full = udaci_gguf_test::read_all(udaci_test::fixture("gguf/tiny_llama.gguf"));
  auto from_file = tiny();
  auto in_memory = GgufFile::open(MappedFile::from_bytes(full.data(), full.size(), "memory.gguf"));
  CHECK(in_memory->path() == "memory.gguf");
  CHECK(in_memory->keys() == from_file->keys());
  REQUIRE(in_memory->tensors().size() == from_file->tensors().size());
  WeightStore a, b;
  gguf_weights_to_store(from_file, a);
  gguf_weights_to_store(in_memory, b);
  for (const std::string& name : a.names())
    CHECK(at::equal(a.tensor(name, at::kFloat), b.tensor(name, at::kFloat)));
  // The copy is owned by the mapping: a tensor outlives the GgufFile.
  const at::Tensor q = b.tensor("model.layers.0.self_attn.q_proj.weight", at::kFloat);
  in_memory.reset();
  b = WeightStore();
  CHECK(at::equal(q, a.tensor("model.layers.0.self_attn.q_proj.weight", at::kFloat)));
  // Errors name the mapping's name.
  expect_error([&] { GgufFile::open(MappedFile::from_bytes(full.data(), 100, "cut.gguf")); },
               Status::kBadModelFile, "cut.gguf: ");
}
