/* A CMS back end's use of the C ABI: the deployment is chosen by a recipe
 * (or a config file that `udaci tune` or a colleague wrote), every article
 * summary on stdin (one per line) gets a headline, and the configuration the
 * engine really runs is logged so that it can be reproduced.
 *
 *   cms_headlines -r "gguf-native+paged-prefix" < summaries.txt
 *   cms_headlines -c deploy.json -r "int8+spec-lookup{k_max=6}" < summaries.txt
 *   cms_headlines -c deploy.json --print-config > effective.json
 *
 * Output: one line per summary, "headline<TAB>latency_ms"; a summary that
 * fails prints "!error<TAB>message" and the others go on. The recipe's words
 * are those of the CLI (--recipe), Python (EngineConfig(recipe=...)) and
 * `udaci bench`; docs/config.md lists them. */
#include <udaci/udaci.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(udaci_status status, const char *what) {
  fprintf(stderr, "cms_headlines: %s failed (%s): %s\n", what, udaci_status_name(status),
          udaci_last_error());
  return (int)status;
}

/* The whole file as a NUL-terminated heap string; NULL when unreadable. */
static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  char *s = NULL;
  long n;
  if (f == NULL) return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
    s = (char *)malloc((size_t)n + 1);
    if (s != NULL && fread(s, 1, (size_t)n, f) == (size_t)n) {
      s[n] = '\0';
    } else {
      free(s);
      s = NULL;
    }
  }
  fclose(f);
  return s;
}

/* Prints the effective configuration (udaci_engine_get_config) to `out`. */
static udaci_status print_config(const udaci_engine *engine, FILE *out) {
  size_t len = 0;
  char *buf;
  udaci_status status = udaci_engine_get_config(engine, NULL, &len);
  if (status != UDACI_ERR_BUFFER_TOO_SMALL) return status;
  buf = (char *)malloc(len);
  if (buf == NULL) return UDACI_ERR_OUT_OF_MEMORY;
  status = udaci_engine_get_config(engine, buf, &len);
  if (status == UDACI_OK) fprintf(out, "%s\n", buf);
  free(buf);
  return status;
}

int main(int argc, char **argv) {
  udaci_engine_params ep = udaci_engine_default_params();
  udaci_generate_params gp = udaci_generate_default_params();
  udaci_engine *engine = NULL;
  udaci_status status;
  char *config = NULL;
  char line[16384];
  int i, print_only = 0, failed = 0;

  for (i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
      ep.recipe = argv[++i];
    } else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
      config = read_file(argv[++i]);
      if (config == NULL) {
        fprintf(stderr, "cms_headlines: cannot read config file '%s'\n", argv[i]);
        return (int)UDACI_ERR_NOT_FOUND;
      }
      ep.config_json = config;
    } else if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) {
      ep.model_path = argv[++i];
    } else if (strcmp(argv[i], "--print-config") == 0) {
      print_only = 1;
    } else {
      fprintf(stderr, "usage: cms_headlines [-c CONFIG.json] [-r RECIPE] [-m MODEL] [--print-config] < summaries\n");
      free(config);
      return (int)UDACI_ERR_INVALID_ARGUMENT;
    }
  }
  /* A bad recipe or config fails here, before the model is read. */
  status = udaci_engine_create(&ep, &engine);
  free(config);
  if (status != UDACI_OK) return fail(status, "creating the engine");
  status = print_config(engine, print_only ? stdout : stderr);
  if (status != UDACI_OK || print_only) {
    udaci_engine_destroy(engine);
    return status == UDACI_OK ? 0 : fail(status, "reading the configuration");
  }

  while (fgets(line, sizeof line, stdin) != NULL) {
    udaci_result *result = NULL;
    udaci_timings t;
    char headline[1024];
    size_t len = sizeof headline;
    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '\0') continue;
    status = udaci_generate(engine, line, &gp, &result);
    if (status == UDACI_OK) status = udaci_result_get_headline(result, headline, &len);
    t.struct_size = sizeof t;
    if (status == UDACI_OK) status = udaci_result_get_timings(result, &t);
    if (status == UDACI_OK) {
      printf("%s\t%.0f\n", headline, t.latency_ms);
    } else {
      printf("!error\t%s: %s\n", udaci_status_name(status), udaci_last_error());
      failed = 1;
    }
    fflush(stdout);
    udaci_result_destroy(result);
  }
  udaci_engine_destroy(engine);
  return failed;
}
