// `udaci headline`: a headline for one summary text, or one JSONL result per
// news record of --input, decoded --batch at a time through the engine's
// scheduler. Exit status 1 when any record failed (the others are written).
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <unistd.h>

#include "core/error.hpp"
#include "engine/headline_engine.hpp"
#include "eval/news_dataset.hpp"
#include "tools/cli/common.hpp"

namespace udaci::cli {

namespace {

using nlohmann::json;

struct HeadlineArgs : RunArgs {
  EngineFlags engine;
  std::string summary;
  std::string input;
  std::string output;
  size_t batch = 1;
  CLI::Option* batch_opt = nullptr;
  size_t limit = 0;
  int64_t repetition_stop = HeadlineOptions::kEngineDefault;
};

// A progress line on stderr when it is a terminal: count, rate, ETA.
class Progress {
 public:
  explicit Progress(size_t total) : total_(total), enabled_(::isatty(2) != 0), start_(Clock::now()) {}
  void update(size_t done) {
    if (!enabled_) return;
    const double s = std::chrono::duration<double>(Clock::now() - start_).count();
    const double rate = s > 0 ? done / s : 0;
    const double eta = rate > 0 ? (total_ - done) / rate : 0;
    std::fprintf(stderr, "\r%zu/%zu headlines  %.2f/s  ETA %02d:%02d ", done, total_, rate,
                 static_cast<int>(eta) / 60, static_cast<int>(eta) % 60);
    std::fflush(stderr);
  }
  void finish() {
    if (enabled_) std::fprintf(stderr, "\n");
  }

 private:
  using Clock = std::chrono::steady_clock;
  size_t total_;
  bool enabled_;
  Clock::time_point start_;
};

int cmd_headline(const HeadlineArgs& a, const GlobalOptions& global) {
  UDACI_CHECK(a.summary.empty() != a.input.empty(), "give either a summary text or --input FILE.jsonl");
  UDACI_CHECK(a.batch >= 1, "--batch must be at least 1");
  EngineConfig ec = engine_config_from(a.engine, global);
  // --batch is the scheduler's max_sequences unless a config file or
  // --scheduler-opt max_sequences says otherwise.
  bool sched_max = a.engine.config.empty() ? false : true;
  for (const std::string& o : a.engine.scheduler_opts) sched_max = sched_max || o.rfind("max_sequences=", 0) == 0;
  if (a.batch_opt->count() > 0 || !sched_max) ec.scheduler.max_sequences = static_cast<int64_t>(a.batch);
  const size_t batch = static_cast<size_t>(ec.scheduler.max_sequences);
  HeadlineEngine engine(ec);
  if (!engine.leader()) {  // another rank of a parallel plan: rank 0 reads and writes
    engine.serve();
    return 0;
  }
  HeadlineOptions ho;
  ho.max_new_tokens = a.max_new_tokens;
  ho.sampling = a.sampling;
  ho.sampling.validate();
  ho.repetition_stop = a.repetition_stop;
  if (!a.summary.empty()) {
    std::cout << engine.generate({a.summary}, ho).at(0).headline << "\n";
    return 0;
  }
  NewsDataset ds = read_news_dataset(a.input);
  for (const RecordError& e : ds.errors) std::fprintf(stderr, "udaci: skipped %s\n", e.message.c_str());
  std::vector<NewsRecord> records = ds.records;
  if (a.limit > 0 && records.size() > a.limit) records.resize(a.limit);
  std::ofstream file;
  if (!a.output.empty()) {
    file.open(a.output, std::ios::binary | std::ios::trunc);
    UDACI_CHECK_S(Status::kNotFound, file.good(), "cannot write '{}'", a.output);
  }
  std::ostream& out = a.output.empty() ? std::cout : file;
  Progress progress(records.size());
  size_t failed = 0;
  // Every record is its own request; up to --batch of them decode together
  // and a few more wait queued, so the batch refills as headlines finish.
  // Output stays in input order; a bad record fails alone.
  std::deque<std::pair<size_t, PendingHeadlines>> in_flight;
  auto write_front = [&] {
    const size_t k = in_flight.front().first;
    const NewsRecord& r = records[k];
    json line = {{"link", r.link}, {"reference", r.headline}};
    try {
      const HeadlineResult h = in_flight.front().second.get().at(0);
      line["generated"] = h.headline;
      line["prompt_tokens"] = h.prompt_ids.size();
      line["new_tokens"] = h.new_ids.size();
      line["finish_reason"] = finish_reason_name(h.finish);
      line["latency_ms"] = h.latency_ms;
    } catch (const Error& e) {
      std::fprintf(stderr, "udaci: line %lld: %s\n", static_cast<long long>(r.line), e.what());
      line["generated"] = "";
      line["error"] = std::string("error: ") + e.what();
      ++failed;
    }
    in_flight.pop_front();
    out << line.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    out.flush();
    progress.update(k + 1);
  };
  for (size_t i = 0; i < records.size(); ++i) {
    in_flight.emplace_back(i, engine.submit({records[i].short_description}, ho));
    if (in_flight.size() >= 2 * batch) write_front();
  }
  while (!in_flight.empty()) write_front();
  progress.finish();
  return failed == 0 ? 0 : 1;
}

}  // namespace

CommandRun setup_headline(CLI::App& sub) {
  auto a = std::make_shared<HeadlineArgs>();
  sub.add_option("summary", a->summary, "article summary text");
  sub.add_option("--input", a->input, "JSON Lines of News Category Dataset records (short_description is read)");
  sub.add_option("--output", a->output, "write JSONL results here instead of stdout");
  add_engine_flags(sub, a->engine, true);
  add_run_options(sub, *a);
  a->batch_opt = sub.add_option("--batch", a->batch, "summaries decoded together (the scheduler's max_sequences)")
                     ->check(CLI::Range(size_t{1}, size_t{1024}));
  sub.add_option("--limit", a->limit, "only the first N records of --input");
  sub.add_option("--repetition-stop", a->repetition_stop, "stop a headline when its last N tokens repeat a run it already produced, cut before the repeat (finish reason repetition); 0 = off; default: the config's generation.repetition_stop, 8 unless a --config file sets it")
      ->check(CLI::Range(int64_t{0}, HeadlineOptions::kMaxRepetitionStop));
  return [a](const GlobalOptions& global) { return cmd_headline(*a, global); };
}

}  // namespace udaci::cli
