/* The C API in one page: load the default model (or -m MODEL), read a news
 * summary from the arguments or from stdin, print its headline.
 *
 *   headline_c "The city council approved a plan to plant 10,000 trees."
 *   echo "..." | headline_c -m path/to/model.gguf
 *
 * On failure it prints udaci_last_error() and exits with the status code. */
#include <udaci/udaci.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends the text of args (joined by spaces) or, without args, of stdin to a
 * new heap string; NULL when out of memory. */
static char *read_summary(int argc, char **argv) {
  size_t len = 0, cap = 4096;
  char *s = (char *)malloc(cap);
  int i;
  if (s == NULL) return NULL;
  s[0] = '\0';
  if (argc > 0) {
    for (i = 0; i < argc; ++i) {
      size_t n = strlen(argv[i]);
      while (len + n + 2 > cap) {
        char *t = (char *)realloc(s, cap *= 2);
        if (t == NULL) return free(s), (char *)NULL;
        s = t;
      }
      if (i > 0) s[len++] = ' ';
      memcpy(s + len, argv[i], n + 1);
      len += n;
    }
    return s;
  }
  for (;;) {
    size_t n;
    if (len + 1 >= cap) {
      char *t = (char *)realloc(s, cap *= 2);
      if (t == NULL) return free(s), (char *)NULL;
      s = t;
    }
    n = fread(s + len, 1, cap - len - 1, stdin);
    len += n;
    s[len] = '\0';
    if (n == 0) return s;
  }
}

static int fail(udaci_status status, const char *what) {
  fprintf(stderr, "headline: %s failed (%s): %s\n", what, udaci_status_name(status),
          udaci_last_error());
  return (int)status;
}

int main(int argc, char **argv) {
  udaci_engine_params ep = udaci_engine_default_params();
  udaci_generate_params gp = udaci_generate_default_params();
  udaci_engine *engine = NULL;
  udaci_result *result = NULL;
  udaci_status status;
  char *summary, *headline;
  size_t len = 0;
  int first = 1;

  if (argc > 2 && strcmp(argv[1], "-m") == 0) {
    ep.model_path = argv[2];
    first = 3;
  }
  summary = read_summary(argc - first, argv + first);
  if (summary == NULL) {
    fprintf(stderr, "headline: out of memory\n");
    return (int)UDACI_ERR_OUT_OF_MEMORY;
  }

  status = udaci_engine_create(&ep, &engine);
  if (status != UDACI_OK) {
    free(summary);
    return fail(status, "loading the model");
  }
  status = udaci_generate(engine, summary, &gp, &result);
  free(summary);
  if (status != UDACI_OK) {
    udaci_engine_destroy(engine);
    return fail(status, "generating");
  }
  /* Ask for the size, then copy. */
  status = udaci_result_get_headline(result, NULL, &len);
  headline = status == UDACI_ERR_BUFFER_TOO_SMALL ? (char *)malloc(len) : NULL;
  if (headline != NULL) status = udaci_result_get_headline(result, headline, &len);
  if (headline != NULL && status == UDACI_OK) printf("%s\n", headline);
  free(headline);
  udaci_result_destroy(result);
  udaci_engine_destroy(engine);
  return status == UDACI_OK ? 0 : fail(status, "reading the headline");
}
