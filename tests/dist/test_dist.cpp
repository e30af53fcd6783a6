// Tensor and pipeline parallelism over two processes and Gloo on loopback
// (CTest label `dist`): greedy ids equal one process on the golden fixtures
// (through the contiguous and the prefix-sharing paged cache, single
// sequences, ragged batches split into micro-batches, and speculative
// decoding) and on 50 real articles with the default model through `udaci
// launch`; a killed or frozen follower makes the leader fail within the
// plan's timeout instead of hanging.
#include "udaci_catch.hpp"
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "parallel/communicator.hpp"
#include "test_util.hpp"

using nlohmann::json;

namespace {

// Starts `argv` once per rank with torchrun's variables; returns the pids.
std::vector<pid_t> start_ranks(const std::vector<std::string>& args, int world) {
  const int port = udaci::free_local_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      setenv("RANK", std::to_string(r).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      std::vector<char*> argv;
      for (const std::string& s : args) argv.push_back(const_cast<char*>(s.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    pids.push_back(pid);
  }
  return pids;
}

int wait_exit(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string temp_path(const std::string& tag) {
  return "/tmp/udaci-dist-" + std::to_string(getpid()) + "-" + tag;
}

json read_json(const std::string& path) {
  std::ifstream f(path);
  REQUIRE(f.good());
  return json::parse(f);
}

bool wait_for_file(const std::string& path, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (std::ifstream(path).good()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Runs a shell command; returns its exit status.
int sh(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

}  // namespace

TEST_CASE("dist: tensor- and pipeline-parallel over 2 ranks equal one process (golden fixture)", "[dist]") {
  REQUIRE(udaci::distributed_available());
  for (const auto& [plan, cache] : std::vector<std::pair<std::string, std::string>>{
           {"tensor-parallel", "contiguous"},
           {"tensor-parallel", "paged-prefix"},
           {"pipeline-parallel", "contiguous"},
           {"pipeline-parallel", "paged-prefix"}}) {
    INFO(plan << ", cache " << cache);
    const std::string out = temp_path("greedy-" + plan + "-" + cache + ".json");
    std::remove(out.c_str());
    auto pids = start_ranks({UDACI_DIST_WORKER_PATH, "--mode", "greedy", "--fixture",
                             udaci_test::fixture("golden/tiny-gqa-tied"), "--out", out, "--cache", cache,
                             "--plan", plan, "--timeout-s", "60"},
                            2);
    CHECK(wait_exit(pids[0]) == 0);
    CHECK(wait_exit(pids[1]) == 0);  // released by the leader's shutdown
    const json r = read_json(out);
    INFO(r.dump(1));
    CHECK(r.at("equal").get<bool>());
    CHECK(r.at("cases").size() == 6);
    // Rank 0 holds its share of the weights, not all of them: under tensor
    // parallelism half of every matrix (norms are replicated), under
    // pipeline parallelism half of the layers and the embedding.
    const double share = r.at("weight_bytes").get<double>() / r.at("full_weight_bytes").get<double>();
    INFO("rank 0 holds " << share << " of the weight bytes");
    CHECK(share < (plan == "tensor-parallel" ? 0.6 : 0.8));
    std::remove(out.c_str());
  }
}

TEST_CASE("dist: a dead or frozen follower makes the leader fail within the timeout, not hang", "[dist]") {
  REQUIRE(udaci::distributed_available());
  // SIGKILL: the peer's sockets close (noticed at once); SIGSTOP: it stops
  // answering (noticed when the 3 s timeout expires).
  for (const auto& [plan, sig] : std::vector<std::pair<std::string, int>>{
           {"tensor-parallel", SIGKILL}, {"tensor-parallel", SIGSTOP}, {"pipeline-parallel", SIGKILL}}) {
    INFO(plan << ", signal " << sig);
    const std::string out = temp_path("kill-" + plan + "-" + std::to_string(sig) + ".json");
    for (const std::string& f : {out, out + ".ready", out + ".go"}) std::remove(f.c_str());
    auto pids = start_ranks({UDACI_DIST_WORKER_PATH, "--mode", "kill", "--fixture",
                             udaci_test::fixture("golden/tiny-gqa-tied"), "--out", out, "--plan", plan,
                             "--timeout-s", "3"},
                            2);
    REQUIRE(wait_for_file(out + ".ready", 120));
    kill(pids[1], sig);
    std::ofstream(out + ".go") << "go";
    CHECK(wait_exit(pids[0]) == 0);
    if (sig == SIGSTOP) kill(pids[1], SIGKILL);
    CHECK(wait_exit(pids[1]) == 128 + SIGKILL);
    const json r = read_json(out);
    INFO(r.dump(1));
    CHECK(r.at("status") == "distributed");
    CHECK(r.at("seconds").get<double>() < 3 + 5);  // the timeout, plus slack for a loaded machine
    CHECK(r.at("message").get<std::string>().find("rank 0 of 2") != std::string::npos);
    for (const std::string& f : {out, out + ".ready", out + ".go"}) std::remove(f.c_str());
  }
}

TEST_CASE("dist: udaci launch -- headline --parallel tensor-/pipeline-parallel equals one process on 50 articles",
          "[dist][smollm2]") {
  const std::string model = udaci_test::default_model_gguf();
  if (model.empty()) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  REQUIRE(udaci_test::shared_available());
  const std::string news = udaci_test::shared_path("assets/news/news_category_sample.jsonl");
  const std::string in = temp_path("articles.jsonl"), one = temp_path("one.jsonl"), two = temp_path("two.jsonl");
  REQUIRE(sh("head -n 50 '" + news + "' > '" + in + "'") == 0);
  const std::string cli = UDACI_CLI_PATH;
  // Dense weights everywhere: tensor parallelism slices them (as-stored
  // would run the GGUF blocks in the one process and dense ones in the ranks).
  const std::string args = " headline --recipe no-quant --model '" + model + "' --input '" + in +
                           "' --temperature 0 --max-new-tokens 24 --batch 8 --output ";
  REQUIRE(sh("'" + cli + "' --threads 2" + args + "'" + one + "'") == 0);
  for (const std::string plan : {"tensor-parallel", "pipeline-parallel"}) {
    INFO(plan);
    REQUIRE(sh("'" + cli + "' launch --nproc 2 --" + args + "'" + two + "' --parallel " + plan) == 0);
    std::ifstream a(one), b(two);
    std::string la, lb;
    int lines = 0, same = 0;
    while (std::getline(a, la)) {
      REQUIRE(std::getline(b, lb));
      const json ja = json::parse(la), jb = json::parse(lb);
      CHECK(ja.at("link") == jb.at("link"));
      ++lines;
      same += ja.at("generated") == jb.at("generated") ? 1 : 0;
      if (ja.at("generated") != jb.at("generated"))
        WARN("differs: " << ja.at("generated") << " vs " << jb.at("generated"));
    }
    CHECK(!std::getline(b, lb));
    CHECK(lines == 50);
    CHECK(same == lines);
  }
  for (const std::string& f : {in, one, two}) std::remove(f.c_str());
}

TEST_CASE("dist: udaci bench runs tp-2 and pp-2 as two ranks and reports each rank's share", "[dist][smollm2][bench]") {
  const std::string model = udaci_test::default_model_gguf();
  if (model.empty()) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  REQUIRE(udaci_test::shared_available());
  const std::string news = udaci_test::shared_path("assets/news/news_category_sample.jsonl");
  const std::string out = temp_path("bench.json");
  const std::string cli = UDACI_CLI_PATH;
  REQUIRE(sh("'" + cli + "' --threads 2 bench --quiet --techniques kv-cache,tp-2,pp-2 --samples 6 --warmup 1 " +
             "--max-new-tokens 16 --model '" + model + "' --input '" + news + "' --json '" + out + "' > /dev/null") == 0);
  const json doc = read_json(out);
  CHECK(doc.at("failed").empty());
  CHECK(doc.at("unavailable").empty());
  REQUIRE(doc.at("results").size() == 3);
  const json& kv = doc["results"][0];
  const double full = kv.at("weight_bytes").get<double>();
  for (size_t t = 1; t < 3; ++t) {
    const json& r = doc["results"][t];
    INFO(r.at("technique") << ": " << r.at("parallel").dump());
    CHECK(r.at("parallel").at("world_size") == 2);
    REQUIRE(r.at("parallel").at("ranks").size() == 2);
    double sum = 0;
    for (const json& rank : r["parallel"]["ranks"]) {
      const double w = rank.at("weight_bytes").get<double>();
      CHECK(w < 0.7 * full);  // about half each
      CHECK(rank.at("comm_calls").get<int64_t>() > 0);
      CHECK(!rank.at("holds").get<std::string>().empty());
      sum += w;
    }
    CHECK(sum >= 0.95 * full);  // together they hold the model (tied embedding: pp holds it twice)
    for (size_t i = 0; i < kv["items"].size(); ++i) CHECK(r["items"][i]["headline"] == kv["items"][i]["headline"]);
  }
  std::remove(out.c_str());
}
