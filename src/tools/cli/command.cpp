// The command table: name, the line `udaci --help` shows, setup. Rows in help order.
#include "tools/cli/command.hpp"

namespace udaci::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"random-model", "write a GGUF of a preset shape with random weights", setup_random_model},
      {"info", "print a model's config, parameter count and bytes by dtype", setup_info},
      {"convert", "save a pruned / quantised udaci artefact, or --dequantize to an HF folder", setup_convert},
      {"headline", "write headlines for a summary or a JSONL file of news records", setup_headline},
      {"tokenize", "JSONL {\"text\"} on stdin or --input -> {\"ids\"} per line", setup_tokenize},
      {"detokenize", "JSONL {\"ids\"} on stdin or --input -> {\"text\"} per line", setup_detokenize},
      {"generate", "continue a prompt (text or token ids)", setup_generate},
      {"bench-forward", "prefill and decode tokens/s of a random-weight model of a known shape",
       setup_bench_forward},
      {"rouge", "ROUGE-1/2/L/Lsum F-measures of JSONL {\"reference\", \"generated\"} pairs, as rouge-score",
       setup_rouge},
      {"bench", "latency, throughput, memory and ROUGE of technique configurations on news articles",
       setup_bench},
      {"techniques", "list the recipe's techniques and whether this build can run them", setup_techniques},
      {"perplexity", "perplexity on news records (headline. summary) after a quantizer / pruner",
       setup_perplexity},
      {"tune",
       "search recipes, batch and threads for the configuration to deploy under memory, latency, throughput and "
       "quality budgets, measured here; writes the Pareto front and a config file",
       setup_tune},
      {"serve", "the HTTP service: /v1/headlines, OpenAI-compatible completions, /health, /metrics, an editor's page",
       setup_serve},
      {"launch",
       "run a udaci command as the N ranks of one parallel job on this machine, e.g. "
       "`udaci launch --nproc 2 -- headline --parallel tensor-parallel ...` (sets RANK, WORLD_SIZE, "
       "LOCAL_RANK, MASTER_ADDR, MASTER_PORT as torchrun does)",
       setup_launch, /*sets_threads=*/false},
      // Hidden from --help (its setup puts it in no group).
      {"bench-worker", "one configuration of `udaci bench` (internal)", setup_bench_worker},
  };
  return table;
}

}  // namespace udaci::cli
