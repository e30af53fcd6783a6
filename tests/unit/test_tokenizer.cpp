// udaci::Tokenizer: byte-level BPE with ids identical to Hugging Face
// `tokenizers` (fixtures: tools/reference/make_tokenizer_fixtures.py).
#include "udaci_catch.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.hpp"
#include "test_tokenizer_util.hpp"
#include "test_util.hpp"
#include "text/pretokenizer.hpp"
#include "text/tokenizer.hpp"

using udaci::Error;
using udaci::Status;
using udaci::Tokenizer;
using udaci::TokenizerSpec;
using udaci::TokenType;

namespace {

// GPT-2's byte-to-unicode alphabet, written independently of the library.
std::string byte_char(int b) {
  int cp = b;
  if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) {
    int n = 0;
    for (int k = 0; k < b; ++k)
      if (!((k >= 0x21 && k <= 0x7E) || (k >= 0xA1 && k <= 0xAC) || k >= 0xAE)) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// 256 byte tokens, then `extra` tokens, merges as given, gpt2 pre-tokenizer.
TokenizerSpec byte_spec(const std::vector<std::string>& extra = {}, const std::vector<std::string>& merges = {}) {
  TokenizerSpec s;
  for (int b = 0; b < 256; ++b) s.tokens.push_back(byte_char(b));
  for (const auto& e : extra) s.tokens.push_back(e);
  s.merges = merges;
  s.pre_tokenizer = "gpt2";
  return s;
}

const Tokenizer* llama3() {
  static std::unique_ptr<Tokenizer> tok;
  if (!tok && udaci_test::shared_available())
    tok = std::make_unique<Tokenizer>(
        Tokenizer::from_tokenizer_json(udaci_test::shared_path("assets/tokenizers/llama3/tokenizer.json")));
  return tok.get();
}

std::string write_temp(const std::string& name, const std::string& content) {
  const auto dir = std::filesystem::temp_directory_path() / "udaci_tokenizer_test";
  std::filesystem::create_directories(dir);
  const auto path = (dir / name).string();
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

template <typename F>
void require_error(F&& f, Status status, const std::vector<std::string>& needles) {
  try {
    f();
    FAIL("expected udaci::Error");
  } catch (const Error& e) {
    INFO("message: " << e.what());
    CHECK(e.status() == status);
    for (const auto& n : needles) CHECK(std::string(e.what()).find(n) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("utf8: maximal subparts become U+FFFD", "[tokenizer]") {
  auto lossy = [](const std::string& in) {
    std::string out;
    udaci::append_utf8_lossy(in, out, true);
    return out;
  };
  const std::string R = "\xEF\xBF\xBD";
  CHECK(lossy("abc") == "abc");
  CHECK(lossy("\xff") == R);
  CHECK(lossy("a\x80" "b") == "a" + R + "b");
  CHECK(lossy("\xe2\x82") == R);                // one truncated sequence, one U+FFFD
  CHECK(lossy("\xe2\x82" "x") == R + "x");
  CHECK(lossy("\xed\xa0\x80") == R + R + R);    // surrogate: E0..9F only after ED
  CHECK(lossy("\xc0\xaf") == R + R);            // overlong
  CHECK(lossy("\xf4\x90\x80\x80") == R + R + R + R);
  CHECK(lossy("\xf0\x9f\x98\x80") == "\xf0\x9f\x98\x80");
  CHECK(udaci::is_valid_utf8("\xf0\x9f\x98\x80"));
  CHECK_FALSE(udaci::is_valid_utf8("\xf0\x9f\x98"));
  CHECK_FALSE(udaci::is_valid_utf8("abcdefgh\xc3"));
  // Not final: the valid-so-far tail is held back.
  std::string out;
  CHECK(udaci::append_utf8_lossy("ok\xf0\x9f", out, false) == 2);
  CHECK(out == "ok");
}

TEST_CASE("pretokenizer: whitespace classes are rewritten to White_Space", "[tokenizer]") {
  const std::string t = udaci::translate_whitespace_classes(R"(\s+(?!\S)|[^\s\p{L}]|\\s)");
  CHECK(t.find("\\s") == t.rfind("\\s"));  // only the escaped backslash + s is left
  CHECK(t.find("\\x{1680}") != std::string::npos);
  CHECK(t.find("\\x{180E}") == std::string::npos);
  udaci::PreTokenizer pre({{udaci::kGpt2Pattern}});
  std::vector<udaci::Piece> pieces;
  const std::string text = "Hello  world's 123\xe1\xa0\x8e!";  // U+180E is not a space for HF
  pre.split(text, pieces);
  std::vector<std::string> got;
  for (auto [b, e] : pieces) got.push_back(text.substr(b, e - b));
  CHECK(got == std::vector<std::string>{"Hello", " ", " world", "'s", " 123", "\xe1\xa0\x8e!"});
}

TEST_CASE("tokenizer: BPE merges by rank, leftmost first", "[tokenizer]") {
  // Ranks: "a a" (0), "b c" (1), "aa a" (2), "a bc" (3).
  auto tok = Tokenizer::from_spec(byte_spec({"aa", "bc", "aaa", "abc"}, {"a a", "b c", "aa a", "a bc"}));
  const int32_t aa = 256, bc = 257, aaa = 258, abc = 259;
  const int32_t a = tok.token_to_id("a");
  CHECK(tok.encode("aa") == std::vector<int32_t>{aa});
  CHECK(tok.encode("aaaa") == std::vector<int32_t>{aa, aa});   // leftmost pairs merge first
  CHECK(tok.encode("aaa") == std::vector<int32_t>{aaa});       // "a a" at 0, then "aa a"
  CHECK(tok.encode("abc") == std::vector<int32_t>{abc});       // "b c" (rank 1), then "a bc"
  // "a a" twice (leftmost first: aa aa a), then "aa a" on the right pair.
  CHECK(tok.encode("aaaaa") == std::vector<int32_t>{aa, aaa});
  CHECK(tok.encode("ab") == std::vector<int32_t>{a, tok.token_to_id("b")});
  (void)bc;
  CHECK(tok.decode(tok.encode("aaaaa bc")) == "aaaaa bc");
  CHECK(tok.vocab_size() == 260);
}

TEST_CASE("tokenizer: special tokens split out, leftmost longest", "[tokenizer]") {
  auto spec = byte_spec({"<|a|>", "<|a|><|b|>", "<|b|>"});
  spec.token_types.assign(spec.tokens.size(), TokenType::kNormal);
  spec.token_types[256] = spec.token_types[257] = spec.token_types[258] = TokenType::kControl;
  spec.bos_id = 256;
  spec.add_bos = true;
  auto tok = Tokenizer::from_spec(spec);
  const auto ids = tok.encode("x<|a|><|b|>y<|b|>");
  CHECK(ids == std::vector<int32_t>{tok.token_to_id("x"), 257, tok.token_to_id("y"), 258});
  CHECK(tok.encode("x", true) == std::vector<int32_t>{256, tok.token_to_id("x")});
  const auto plain = tok.encode("<|b|>", false, false);
  CHECK(plain.size() == 5);  // parse_special=false: as text, byte by byte here
  CHECK(tok.is_special(258));
  CHECK_FALSE(tok.is_special(tok.token_to_id("x")));
  CHECK(tok.decode(ids, true) == "xy");
  CHECK(tok.decode(ids, false) == "x<|a|><|b|>y<|b|>");
}

TEST_CASE("tokenizer: incremental decoder never emits broken UTF-8", "[tokenizer]") {
  auto tok = Tokenizer::from_spec(byte_spec());
  const std::string text = "a\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9 \xE6\x97\xA5!";  // 👨‍👩 日!
  const auto ids = tok.encode(text);
  REQUIRE(ids.size() == text.size());  // one token per byte: every emoji is split
  auto dec = tok.incremental_decoder();
  std::vector<std::string> chunks;
  for (int32_t id : ids) chunks.push_back(dec.feed(id));
  CHECK(dec.flush().empty());
  std::string joined;
  for (const auto& c : chunks) {
    CHECK(udaci::is_valid_utf8(c));
    joined += c;
  }
  CHECK(joined == text);
  CHECK(chunks[1].empty());  // first byte of the emoji is held back
  CHECK(chunks[4] == "\xF0\x9F\x91\xA8");
  // A cut sequence followed by ASCII becomes U+FFFD, as decode() does.
  auto dec2 = tok.incremental_decoder();
  std::string s = dec2.feed(ids[1]) + dec2.feed(ids[2]) + dec2.feed(tok.token_to_id("a")) + dec2.flush();
  CHECK(s == tok.decode({ids[1], ids[2], tok.token_to_id("a")}));
  CHECK(s == "\xEF\xBF\xBD" "a");
  auto dec3 = tok.incremental_decoder();
  CHECK(dec3.feed(ids[1]).empty());
  CHECK(dec3.flush() == "\xEF\xBF\xBD");
  CHECK_THROWS_AS(tok.decode({-1}), Error);
  CHECK_THROWS_AS(dec3.feed(100000), Error);
}

TEST_CASE("tokenizer: invalid UTF-8 input is replaced with U+FFFD", "[tokenizer]") {
  auto tok = Tokenizer::from_spec(byte_spec());
  CHECK(tok.encode("a\xff" "b") == tok.encode("a\xEF\xBF\xBD" "b"));
  CHECK(tok.decode(tok.encode("\xe2\x82")) == "\xEF\xBF\xBD");
}

TEST_CASE("tokenizer: spec validation", "[tokenizer]") {
  auto bad = byte_spec({"ab"}, {"a b", "a zz"});
  require_error([&] { Tokenizer::from_spec(bad); }, Status::kBadModelFile, {"merge 1", "'zz'"});
  bad = byte_spec({}, {"a b"});
  require_error([&] { Tokenizer::from_spec(bad); }, Status::kBadModelFile, {"makes 'ab'"});
  bad = byte_spec({"ab"}, {"ab"});
  require_error([&] { Tokenizer::from_spec(bad); }, Status::kBadModelFile, {"two tokens"});
  bad = byte_spec();
  bad.pre_tokenizer = "bloom";
  require_error([&] { Tokenizer::from_spec(bad); }, Status::kUnsupported, {"bloom"});
  bad = byte_spec();
  bad.bos_id = 999;
  require_error([&] { Tokenizer::from_spec(bad); }, Status::kBadModelFile, {"bos id 999"});
  bad = byte_spec();
  bad.tokens.erase(bad.tokens.begin() + 'x');
  require_error([&] { Tokenizer::from_spec(bad); }, Status::kBadModelFile, {"byte 0x"});
  bad = byte_spec();
  bad.token_types.assign(3, TokenType::kNormal);
  require_error([&] { Tokenizer::from_spec(bad); }, Status::kBadModelFile, {"token types"});
}

TEST_CASE("tokenizer.json: malformed files give clear errors", "[tokenizer]") {
  require_error([] { Tokenizer::from_tokenizer_json("/nonexistent/tokenizer.json"); }, Status::kNotFound,
                {"/nonexistent/tokenizer.json"});
  auto p = write_temp("not_json.json", "{\"model\": [1, 2");
  require_error([&] { Tokenizer::from_tokenizer_json(p); }, Status::kBadModelFile, {p, "not valid JSON"});
  p = write_temp("no_model.json", "{}");
  require_error([&] { Tokenizer::from_tokenizer_json(p); }, Status::kBadModelFile, {p, "'model'"});
  const std::string pre = R"("pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true})";
  p = write_temp("no_vocab.json", "{" + pre + R"(, "model": {"type": "BPE", "merges": []}})");
  require_error([&] { Tokenizer::from_tokenizer_json(p); }, Status::kBadModelFile, {p, "model.vocab"});
  p = write_temp("wordpiece.json", "{" + pre + R"(, "model": {"type": "WordPiece", "vocab": {"a": 0}}})");
  require_error([&] { Tokenizer::from_tokenizer_json(p); }, Status::kUnsupported, {p, "WordPiece"});
  p = write_temp("normalizer.json", R"({"normalizer": {"type": "NFC"}, )" + pre +
                                        R"(, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})");
  require_error([&] { Tokenizer::from_tokenizer_json(p); }, Status::kUnsupported, {p, "NFC"});
  p = write_temp("not_bytelevel.json",
                 R"({"pre_tokenizer": {"type": "Whitespace"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})");
  require_error([&] { Tokenizer::from_tokenizer_json(p); }, Status::kUnsupported, {p, "Whitespace"});
  // A full byte vocabulary with a merge that names an unknown token.
  nlohmann::json vocab;
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  nlohmann::json j = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b", "Ġ qq"}}}},
                      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}}};
  p = write_temp("bad_merge.json", j.dump());
  require_error([&] { Tokenizer::from_tokenizer_json(p); }, Status::kBadModelFile, {p, "merge 0", "'ab'"});
  j["model"]["vocab"]["ab"] = 256;
  p = write_temp("bad_merge2.json", j.dump());
  require_error([&] { Tokenizer::from_tokenizer_json(p); }, Status::kBadModelFile, {p, "merge 1", "'qq'"});
  // Fixed: loads, with pair-form merges too.
  j["model"]["merges"] = nlohmann::json::array({nlohmann::json::array({"a", "b"})});
  p = write_temp("good.json", j.dump());
  auto tok = Tokenizer::from_tokenizer_json(p);
  CHECK(tok.encode("ab ab") == std::vector<int32_t>{256, tok.token_to_id("Ġ"), 256});
}

// Found while writing fuzz/fuzz_tokenizer_json (issue #12; seeds
// fuzz/corpus/tokenizer_json/regress_*): each used to crash.
TEST_CASE("tokenizer.json: hostile files give errors, not crashes", "[tokenizer]") {
  const std::string pre = R"("pre_tokenizer": {"type": "ByteLevel"})";
  // No token at all (an empty map was read from its end).
  auto p = write_temp("empty_vocab.json", "{" + pre + R"(, "model": {"vocab": {}, "merges": []}})");
  require_error([&] { Tokenizer::from_tokenizer_json(p); }, Status::kBadModelFile, {p, "vocabulary is empty"});
  // Values of the wrong JSON type (nlohmann::json's type_error escaped).
  for (const std::string& model : {std::string(R"({"type": 5})"),
                                   std::string(R"({"vocab": {"a": 0}, "merges": [], "byte_fallback": "no"})")}) {
    p = write_temp("wrong_type.json", "{" + pre + R"(, "model": )" + model + "}");
    require_error([&] { Tokenizer::from_tokenizer_json(p); }, Status::kBadModelFile, {p, "wrong JSON type"});
  }
  // Nesting deep enough to overflow the stack of the recursive readers.
  const int depth = 100000;
  p = write_temp("deep.json", R"({"model": {"vocab": {"a": 0}, "merges": []}, "pre_tokenizer": )" +
                                  std::string(depth, '[') + std::string(depth, ']') + "}");
  require_error([&] { Tokenizer::from_tokenizer_json(p); }, Status::kBadModelFile, {p, "nested deeper"});
}

TEST_CASE("tokenizer: Llama 3 tokenizer.json matches HF tokenizers", "[tokenizer]") {
  if (!llama3()) {
    WARN("shared/ not found at " << udaci_test::shared_path("") << ": skipping Llama 3 tokenizer parity");
    return;
  }
  const Tokenizer& tok = *llama3();
  CHECK(tok.vocab_size() == 128256);
  CHECK(tok.bos_id() == 128000);
  CHECK(tok.eos_id() == 128009);  // tokenizer_config.json eos_token <|eot_id|>
  CHECK(tok.add_bos());
  CHECK_FALSE(tok.add_eos());
  CHECK(tok.spec().pre_tokenizer == "llama3");
  CHECK(tok.chat_template().find("start_header_id") != std::string::npos);
  CHECK(tok.is_special(128000));
  CHECK_FALSE(tok.is_special(9906));
  CHECK(tok.token_to_id("<|eot_id|>") == 128009);
  CHECK(tok.id_to_token(9906) == "Hello");
  CHECK(tok.encode("Hello", true) == std::vector<int32_t>{128000, 9906});
  udaci_tok_test::check_all(tok, "llama3");
}

TEST_CASE("tokenizer: SmolLM2 tokenizer.json (UDACI_SMOLLM2_TOKENIZER_JSON) matches HF", "[tokenizer]") {
  const char* path = std::getenv("UDACI_SMOLLM2_TOKENIZER_JSON");
  if (!path) {
    WARN("UDACI_SMOLLM2_TOKENIZER_JSON not set: skipping (the GGUF test covers SmolLM2; the fixture script's "
         "--dump-smollm2-json writes this file)");
    return;
  }
  auto tok = Tokenizer::from_tokenizer_json(path);
  CHECK(tok.spec().pre_tokenizer == "smollm");
  udaci_tok_test::check_all(tok, "smollm2");
}

TEST_CASE("tokenizer: concurrent encode gives the same ids", "[tokenizer]") {
  const auto texts = udaci_tok_test::read_lines(udaci_test::fixture("tokenizer/adversarial.jsonl"));
  std::unique_ptr<Tokenizer> own;
  const Tokenizer* tok = llama3();
  if (!tok) {
    own = std::make_unique<Tokenizer>(Tokenizer::from_spec(byte_spec({"Ġt", "Ġth"}, {"Ġ t", "Ġt h"})));
    tok = own.get();
  }
  std::vector<std::string> strs;
  for (const auto& l : texts) strs.push_back(nlohmann::json::parse(l)["text"].get<std::string>());
  std::vector<std::vector<int32_t>> want;
  for (const auto& s : strs) want.push_back(tok->encode(s));
  std::vector<int> bad(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep)
        for (size_t i = 0; i < strs.size(); ++i) {
          const size_t k = (i * 7 + t * 13 + rep) % strs.size();
          if (tok->encode(strs[k]) != want[k]) ++bad[t];
        }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(bad == std::vector<int>(4, 0));
}
