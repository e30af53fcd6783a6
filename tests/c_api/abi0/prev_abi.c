/* A program compiled against the ABI 0 header (tests/c_api/abi0/include, the
 * header of commit abcd23d) run against the current library: it must work
 * unchanged (issue #21). Besides generating a headline it checks that the
 * library's by-value udaci_engine_default_params() writes no more than the
 * ABI 0 struct: a newer library returning its larger struct would write past
 * this program's. Exit 0 on success; 1 with a message otherwise.
 *   udaci_c_api_previous_abi [MODEL]        (default model lookup without MODEL) */
#include <udaci/udaci.h>

#include <stdio.h>
#include <string.h>

#ifdef UDACI_ENGINE_PARAMS_HAS_RECIPE
#error "compiled against the current header, not the ABI 0 copy"
#endif

#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      printf("FAILED line %d: %s (%s)\n", __LINE__, #cond, udaci_last_error()); \
      return 1;                                                      \
    }                                                                \
  } while (0)

/* The by-value call, with a canary right behind the struct. On x86-64
 * (System V) a struct this size is returned through a buffer whose address
 * the caller passes as a hidden first argument, so calling the function as
 * void f(buffer *) hands it our buffer directly: whatever the library writes
 * past sizeof(udaci_engine_params) lands in the canary. (A plain `g = f()`
 * may go through a temporary and copy it, hiding the overflow.) */
typedef struct {
  udaci_engine_params params;
  unsigned char canary[64];
} guarded_params;

int main(int argc, char **argv) {
  guarded_params g;
  udaci_engine_params ep;
  udaci_generate_params gp;
  udaci_engine *engine = NULL;
  udaci_result *result = NULL;
  udaci_finish_reason reason;
  char headline[512];
  size_t len = sizeof headline;
  size_t i;

  memset(&g, 0xAB, sizeof g);
#if defined(__x86_64__) && !defined(_WIN32)
  {
    void (*with_buffer)(guarded_params *) = (void (*)(guarded_params *))(void (*)(void))udaci_engine_default_params;
    with_buffer(&g);
    for (i = 0; i < sizeof g.canary; ++i) CHECK(g.canary[i] == 0xAB);
    CHECK(g.params.struct_size == sizeof(udaci_engine_params));
  }
#else
  printf("previous ABI: the canary check needs x86-64's return-buffer convention; skipped\n");
#endif

  ep = udaci_engine_default_params();
  CHECK(ep.struct_size == sizeof ep);
  CHECK(ep.use_chat_template == 1 && ep.max_prompt_tokens == 2048 && ep.cache == NULL);
  if (argc > 1) ep.model_path = argv[1];
  ep.n_threads = 2;
  CHECK(udaci_engine_create(&ep, &engine) == UDACI_OK);
  gp = udaci_generate_default_params();
  CHECK(udaci_generate(engine, "The city council approved a plan on Tuesday to plant 10,000 trees.", &gp,
                       &result) == UDACI_OK);
  CHECK(udaci_result_get_headline(result, headline, &len) == UDACI_OK);
  CHECK(strlen(headline) > 0);
  CHECK(udaci_result_get_finish_reason(result, &reason) == UDACI_OK);
  /* The ABI 0 names are still answered. */
  CHECK(strcmp(udaci_finish_reason_name(reason), "unknown") != 0);
  CHECK(udaci_abi_version() == UDACI_ABI_VERSION);
  printf("previous ABI: %s (%s)\n", headline, udaci_finish_reason_name(reason));
  udaci_result_destroy(result);
  udaci_engine_destroy(engine);
  return 0;
}
