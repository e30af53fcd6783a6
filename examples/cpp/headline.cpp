// The C++ API (udaci.hpp) in one page: load the default model (or -m MODEL),
// read news summaries, one per line, from the arguments (one summary) or
// stdin (a batch), print each headline as it streams in.
//
//   headline_cpp "The city council approved a plan to plant 10,000 trees."
//   headline_cpp -m path/to/model.gguf < summaries.txt
#include <udaci/udaci.hpp>

#include <iostream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  udaci::EngineParams params = udaci::default_engine_params();
  std::string model;
  if (args.size() >= 2 && args[0] == "-m") {
    model = args[1];
    params.model_path = model.c_str();
    args.erase(args.begin(), args.begin() + 2);
  }
  std::vector<std::string> summaries;
  if (!args.empty()) {
    std::string joined;
    for (const std::string& a : args) joined += (joined.empty() ? "" : " ") + a;
    summaries.push_back(joined);
  } else {
    for (std::string line; std::getline(std::cin, line);)
      if (line.find_first_not_of(" \t\r") != std::string::npos) summaries.push_back(line);
  }
  if (summaries.empty()) {
    std::cerr << "usage: headline_cpp [-m MODEL] [SUMMARY...]  (or summaries on stdin, one per line)\n";
    return 1;
  }
  try {
    const udaci::Engine engine(params);
    // Raw text streams to stderr as it is generated; the clean headlines go
    // to stdout once the batch is done.
    const std::vector<udaci::Result> results = engine.generate_stream(summaries, [](size_t i, std::string_view piece) {
      std::cerr << "[" << i << "] " << piece << "\n";
      return true;
    });
    for (const udaci::Result& r : results) std::cout << r.headline() << "\n";
  } catch (const udaci::Exception& e) {
    std::cerr << "headline_cpp: " << e.status_name() << ": " << e.what() << "\n";
    return static_cast<int>(e.status());
  }
  return 0;
}
