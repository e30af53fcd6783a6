/* The C ABI used from C: compiled with -std=c99 -Wall -Wextra -Werror
 * -pedantic (a C++-ism in udaci.h fails the build) and run as a test that
 * calls every function of udaci.h.
 *
 * argv[1]: a model folder without a tokenizer (tests/fixtures/golden/
 * tiny-gqa-tied), which must fail with UDACI_ERR_NOT_FOUND. The generation
 * part uses the default model and is skipped, with a message, when that is
 * not installed. Exit status 0: all checks passed. */
#include <udaci/udaci.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_failures = 0;

#define EXPECT(cond)                                                            \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,  \
              __LINE__, #cond, udaci_last_error());                             \
      ++g_failures;                                                             \
    }                                                                           \
  } while (0)

static int on_text(void *user, size_t index, const char *piece, size_t len) {
  size_t *total = (size_t *)user;
  (void)index;
  EXPECT(piece != NULL && strlen(piece) == len);
  *total += len;
  return 1;
}

static void check_without_model(const char *no_tokenizer_dir) {
  udaci_engine_params ep = udaci_engine_default_params();
  udaci_generate_params gp = udaci_generate_default_params();
  udaci_engine *engine = (udaci_engine *)&ep; /* any non-NULL value: must be reset to NULL */
  udaci_status st;

  EXPECT(strcmp(udaci_version(), UDACI_VERSION_STRING) == 0);
  EXPECT(udaci_abi_version() == UDACI_ABI_VERSION);
  EXPECT(strcmp(udaci_status_name(UDACI_ERR_NOT_FOUND), "not_found") == 0);
  EXPECT(strcmp(udaci_finish_reason_name(UDACI_FINISH_CANCELLED), "cancelled") == 0);
  EXPECT(ep.struct_size == sizeof(udaci_engine_params));
  EXPECT(gp.struct_size == sizeof(udaci_generate_params));
  EXPECT(gp.max_new_tokens > 0 && gp.stop_at_newline != 0);

  st = udaci_engine_create(NULL, &engine);
  EXPECT(st == UDACI_ERR_INVALID_ARGUMENT && engine == NULL);
  EXPECT(strstr(udaci_last_error(), "params") != NULL);

  ep.model_path = no_tokenizer_dir;
  engine = (udaci_engine *)&ep;
  st = udaci_engine_create(&ep, &engine);
  EXPECT(st == UDACI_ERR_NOT_FOUND && engine == NULL);
  EXPECT(udaci_last_error()[0] != '\0');

  udaci_engine_destroy(NULL);
  udaci_result_destroy(NULL);
}

static void check_with_engine(udaci_engine *engine) {
  const char *summaries[2] = {
      "The city council approved a plan on Tuesday to build three new parks and plant "
      "10,000 trees over the next five years.",
      "Scientists found that honeybees can learn to count up to four in a series of "
      "experiments with sugar rewards."};
  udaci_generate_params gp = udaci_generate_default_params();
  udaci_result *result = NULL;
  udaci_result *batch[2] = {NULL, NULL};
  udaci_finish_reason finish = UDACI_FINISH_LENGTH;
  udaci_timings timings;
  char small[2];
  char *text;
  int32_t *ids;
  size_t n = 0, n_ids = 0, streamed = 0;

  n = 0;
  EXPECT(udaci_engine_get_model_path(engine, NULL, &n) == UDACI_ERR_BUFFER_TOO_SMALL && n > 1);
  EXPECT(udaci_engine_rank(engine) == 0);
  EXPECT(udaci_engine_serve(engine) == UDACI_OK); /* rank 0 / no plan: returns at once */

  EXPECT(udaci_generate(engine, summaries[0], &gp, &result) == UDACI_OK && result != NULL);
  n = sizeof small;
  EXPECT(udaci_result_get_headline(result, small, &n) == UDACI_ERR_BUFFER_TOO_SMALL);
  EXPECT(n > sizeof small);
  text = (char *)malloc(n);
  EXPECT(udaci_result_get_headline(result, text, &n) == UDACI_OK && strlen(text) + 1 == n);
  printf("headline: %s\n", text);
  free(text);
  n = 0;
  EXPECT(udaci_result_get_raw_text(result, NULL, &n) == UDACI_ERR_BUFFER_TOO_SMALL);
  n_ids = 0;
  EXPECT(udaci_result_get_token_ids(result, NULL, &n_ids) == UDACI_ERR_BUFFER_TOO_SMALL && n_ids > 0);
  n_ids = 0;
  EXPECT(udaci_result_get_prompt_tokens(result, NULL, &n_ids) == UDACI_ERR_BUFFER_TOO_SMALL);
  ids = (int32_t *)malloc(n_ids * sizeof *ids);
  EXPECT(udaci_result_get_prompt_tokens(result, ids, &n_ids) == UDACI_OK);
  n = 0;
  EXPECT(udaci_detokenize(engine, ids, n_ids, 0, NULL, &n) == UDACI_ERR_BUFFER_TOO_SMALL);
  text = (char *)malloc(n);
  EXPECT(udaci_detokenize(engine, ids, n_ids, 0, text, &n) == UDACI_OK);
  EXPECT(strstr(text, "honeybees") == NULL && strstr(text, "city council") != NULL);
  n_ids = 0;
  EXPECT(udaci_tokenize(engine, text, strlen(text), 0, 1, NULL, &n_ids) == UDACI_ERR_BUFFER_TOO_SMALL);
  free(text);
  free(ids);
  EXPECT(udaci_result_get_finish_reason(result, &finish) == UDACI_OK);
  timings.struct_size = sizeof timings;
  EXPECT(udaci_result_get_timings(result, &timings) == UDACI_OK && timings.latency_ms > 0);
  udaci_result_destroy(result);

  EXPECT(udaci_generate_batch(engine, summaries, 2, &gp, batch) == UDACI_OK);
  EXPECT(batch[0] != NULL && batch[1] != NULL);
  udaci_result_destroy(batch[0]);
  udaci_result_destroy(batch[1]);

  EXPECT(udaci_generate_stream(engine, summaries, 2, &gp, on_text, &streamed, batch) == UDACI_OK);
  EXPECT(streamed > 0);
  udaci_result_destroy(batch[0]);
  udaci_result_destroy(batch[1]);
}

int main(int argc, char **argv) {
  udaci_engine_params ep = udaci_engine_default_params();
  udaci_engine *engine = NULL;
  udaci_status st;

  if (argc != 2) {
    fprintf(stderr, "usage: %s MODEL_DIR_WITHOUT_TOKENIZER\n", argv[0]);
    return 2;
  }
  check_without_model(argv[1]);

  st = udaci_engine_create(&ep, &engine);
  if (st == UDACI_ERR_NOT_FOUND) {
    printf("default model not found, generation checks skipped: %s\n", udaci_last_error());
  } else {
    EXPECT(st == UDACI_OK);
    if (st == UDACI_OK) check_with_engine(engine);
    udaci_engine_destroy(engine);
  }
  if (g_failures != 0) fprintf(stderr, "%d check(s) failed\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}
