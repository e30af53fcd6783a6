// Tensor parallelism in one process (parallel/tensor_parallel.hpp): how the
// weights are split (each rank's slices put together give the model back),
// the uneven head split, errors for models that cannot be split, the
// torchrun variables, and a one-rank plan that must equal no plan. The
// multi-process runs over Gloo are in tests/dist (CTest label `dist`).
#include "udaci_catch.hpp"

#include <cstdlib>
#include <map>
#include <optional>

#include "decode/generate.hpp"
#include "core/strategy_options.hpp"
#include "model/llama_model.hpp"
#include "parallel/communicator.hpp"
#include "parallel/tensor_parallel.hpp"
#include "test_util.hpp"

using namespace udaci;
using udaci_test::Golden;
using udaci_test::load_golden;

namespace {

// Rank `rank` of `world` for shard() only: no compute collectives (the
// leader's command broadcasts go nowhere).
class FakeComm final : public Communicator {
 public:
  FakeComm(int rank, int world) : rank_(rank), world_(world) {}
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  void all_reduce_sum(at::Tensor&) override { FAIL("collective in a shard-only test"); }
  at::Tensor all_gather_cat(const at::Tensor& t, int64_t) override {
    FAIL("collective in a shard-only test");
    return t;
  }
  void broadcast(at::Tensor&, int) override {}  // the leader's heartbeat and shutdown
  void send(const at::Tensor&, int) override {}
  std::function<void()> isend(const at::Tensor&, int) override {
    return [] {};
  }
  void recv(at::Tensor&, int) override {}
  void barrier() override {}
  double seconds() const override { return 0; }
  int64_t calls() const override { return 0; }
  std::chrono::milliseconds timeout() const override { return std::chrono::milliseconds(1000); }

 private:
  int rank_, world_;
};

// Sets environment variables for one scope and restores them after.
class EnvScope {
 public:
  explicit EnvScope(const std::map<std::string, std::string>& vars) {
    for (const char* k : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) {
      const char* v = std::getenv(k);
      saved_[k] = v ? std::optional<std::string>(v) : std::nullopt;
      unsetenv(k);
    }
    for (const auto& kv : vars) setenv(kv.first.c_str(), kv.second.c_str(), 1);
  }
  ~EnvScope() {
    for (const auto& kv : saved_) {
      if (kv.second) {
        setenv(kv.first.c_str(), kv.second->c_str(), 1);
      } else {
        unsetenv(kv.first.c_str());
      }
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

}  // namespace

TEST_CASE("tensor-parallel: split_range spreads the remainder over the first ranks", "[parallel]") {
  CHECK(split_range(3, 2, 0) == std::pair<int64_t, int64_t>{0, 2});
  CHECK(split_range(3, 2, 1) == std::pair<int64_t, int64_t>{2, 3});
  CHECK(split_range(8, 4, 3) == std::pair<int64_t, int64_t>{6, 8});
  int64_t covered = 0;
  for (int r = 0; r < 5; ++r) {
    const auto [b, e] = split_range(17, 5, r);
    CHECK(b == covered);
    CHECK(e - b >= 3);
    covered = e;
  }
  CHECK(covered == 17);
}

TEST_CASE("tensor-parallel: each rank keeps its slices, and the slices make the model", "[parallel]") {
  Golden g = load_golden("tiny-gqa-tied");
  const ModelConfig full = g.files.config;
  const int64_t d = full.head_dim, group = full.num_heads / full.num_kv_heads;
  const std::string q = "model.layers.0.self_attn.q_proj.weight", k = "model.layers.0.self_attn.k_proj.weight";
  const std::string o = "model.layers.0.self_attn.o_proj.weight", down = "model.layers.0.mlp.down_proj.weight";
  const std::string up = "model.layers.0.mlp.up_proj.weight", emb = "model.embed_tokens.weight";
  std::map<std::string, std::vector<at::Tensor>> parts;
  int64_t heads = 0, kv_heads = 0, channels = 0;
  for (int r = 0; r < 2; ++r) {
    udaci::ModelFiles f = udaci::open_model(udaci_test::fixture("golden/tiny-gqa-tied"));
    ModelConfig c = f.config;
    auto plan = make_tensor_parallel_plan(TensorParallelOptions{}, std::make_shared<FakeComm>(r, 2));
    plan->shard(c, f.weights);
    CHECK(c.num_heads == c.num_kv_heads * group);
    CHECK(c.vocab_size == full.vocab_size);
    heads += c.num_heads;
    kv_heads += c.num_kv_heads;
    channels += c.intermediate_size;
    CHECK(f.weights.entry(q).shape == std::vector<int64_t>{c.num_heads * d, full.hidden_size});
    CHECK(f.weights.entry(o).shape == std::vector<int64_t>{full.hidden_size, c.num_heads * d});
    CHECK(f.weights.entry(down).shape == std::vector<int64_t>{full.hidden_size, c.intermediate_size});
    CHECK(f.weights.entry(emb).shape == std::vector<int64_t>{full.vocab_size / 2, full.hidden_size});
    for (const std::string& n : {q, k, o, down, up, emb}) parts[n].push_back(f.weights.tensor(n, at::kFloat));
  }
  CHECK(heads == full.num_heads);
  CHECK(kv_heads == full.num_kv_heads);
  CHECK(channels == full.intermediate_size);
  for (const auto& [name, p] : parts) {
    INFO(name);
    const int64_t dim = (name == o || name == down) ? 1 : 0;
    CHECK(at::equal(at::cat(p, dim), g.files.weights.tensor(name, at::kFloat)));
  }
}

TEST_CASE("tensor-parallel: uneven K/V heads split, too few heads is an error", "[parallel]") {
  // SmolLM2-135M has 3 K/V heads (9 query heads): 2 + 1 over two ranks.
  ModelConfig c;
  c.hidden_size = 8;
  c.num_heads = 9;
  c.num_kv_heads = 3;
  c.head_dim = 2;
  c.intermediate_size = 5;
  c.vocab_size = 6;
  c.num_layers = 0;
  WeightStore empty;
  for (int r = 0; r < 2; ++r) {
    ModelConfig x = c;
    auto plan = make_tensor_parallel_plan(TensorParallelOptions{}, std::make_shared<FakeComm>(r, 2));
    plan->shard(x, empty);
    CHECK(x.num_kv_heads == (r == 0 ? 2 : 1));
    CHECK(x.num_heads == 3 * x.num_kv_heads);
    CHECK(x.intermediate_size == (r == 0 ? 3 : 2));
  }
  using udaci_test::expect_error;
  {
    ModelConfig x = c;
    auto plan = make_tensor_parallel_plan(TensorParallelOptions{}, std::make_shared<FakeComm>(0, 4));
    expect_error([&] { plan->shard(x, empty); }, Status::kUnsupported, "only 3 K/V heads");
  }
  {
    ModelConfig x = c;
    x.vocab_size = 7;
    auto plan = make_tensor_parallel_plan(TensorParallelOptions{}, std::make_shared<FakeComm>(1, 2));
    expect_error([&] { plan->shard(x, empty); }, Status::kUnsupported, "does not divide");
  }
  Golden g = load_golden("tiny-llama3-rope");  // one K/V head
  ModelConfig x = g.files.config;
  auto plan = make_tensor_parallel_plan(TensorParallelOptions{}, std::make_shared<FakeComm>(0, 2));
  expect_error([&] { plan->shard(x, g.files.weights); }, Status::kUnsupported, "K/V heads");
}

TEST_CASE("tensor-parallel: torchrun variables are read and checked", "[parallel]") {
  using udaci_test::expect_error;
  {
    EnvScope e({});
    const DistEnv d = dist_env_from_environment();
    CHECK(d.world_size == 1);
    CHECK(d.rank == 0);
  }
  {
    EnvScope e({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "10.0.0.7"}, {"MASTER_PORT", "29511"}});
    const DistEnv d = dist_env_from_environment();
    CHECK(d.rank == 1);
    CHECK(d.world_size == 2);
    CHECK(d.local_rank == 1);
    CHECK(d.master_addr == "10.0.0.7");
    CHECK(d.master_port == 29511);
  }
  {
    EnvScope e({{"WORLD_SIZE", "2"}, {"MASTER_PORT", "29511"}});
    expect_error([] { dist_env_from_environment(); }, Status::kDistributed, "RANK is not set");
  }
  {
    EnvScope e({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "29511"}});
    expect_error([] { dist_env_from_environment(); }, Status::kDistributed, "outside [0, WORLD_SIZE=2)");
  }
  {
    EnvScope e({{"RANK", "0"}, {"WORLD_SIZE", "2"}});
    expect_error([] { dist_env_from_environment(); }, Status::kDistributed, "MASTER_PORT");
  }
  {
    EnvScope e({{"RANK", "zero"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "1"}});
    expect_error([] { dist_env_from_environment(); }, Status::kDistributed, "RANK=\"zero\"");
  }
  expect_error([] { TensorParallelOptions::from(StrategyOptions(std::map<std::string, std::string>{{"timeout_s", "0"}})); },
               Status::kInvalidArgument, "timeout_s");
  expect_error([] { TensorParallelOptions::from(StrategyOptions(std::map<std::string, std::string>{{"ranks", "2"}})); },
               Status::kInvalidArgument, "ranks");
  expect_error([] { TensorParallelOptions::from(StrategyOptions(std::map<std::string, std::string>{{"backend", "mpi"}})); },
               Status::kInvalidArgument, "backend");
  CHECK(TensorParallelOptions::from(StrategyOptions(std::map<std::string, std::string>{{"backend", "nccl"}})).backend ==
        "nccl");
  // NCCL needs a CUDA LibTorch (issue #10's build); here it is refused by name.
  if (!nccl_available()) {
    DistEnv two;
    two.world_size = 2;
    expect_error([&] { make_nccl_communicator(two, std::chrono::milliseconds(1000)); }, Status::kUnsupported,
                 "backend=nccl");
  }
}

TEST_CASE("tensor-parallel: a plan of one rank computes what no plan computes", "[parallel]") {
  EnvScope env({});
  for (const std::string name : {"tiny-gqa-tied", "tiny-llama3-rope"}) {
    INFO(name);
    Golden g = load_golden(name);
    udaci::ModelFiles f = udaci::open_model(udaci_test::fixture("golden/" + name));
    auto plan = make_tensor_parallel_plan(TensorParallelOptions{});
    CHECK(plan->world_size() == 1);
    ModelConfig c = f.config;
    plan->shard(c, f.weights);
    ModelOptions mo{at::kFloat, at::kCPU};
    mo.linear_factory = plan->wrap(nullptr);
    mo.listener = plan->listener();
    LlamaModel model(c, f.weights, mo);
    auto cache = plan->wrap_cache(make_contiguous_cache(model.cache_shape()));
    GenerationOptions opt;
    opt.max_new_tokens = static_cast<int64_t>(g.greedy.size());
    const auto got = decode_sampled(model, *cache, {g.prompt}, opt);
    CHECK(got[0].tokens == g.greedy);
  }
}
