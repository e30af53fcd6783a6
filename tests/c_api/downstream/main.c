/* Links the installed libudaci and checks that library and header agree. */
#include <udaci/udaci.h>

#include <stdio.h>
#include <string.h>

int main(void) {
  udaci_engine_params p = udaci_engine_default_params();
  udaci_engine *engine = NULL;
  if (strcmp(udaci_version(), UDACI_VERSION_STRING) != 0 || udaci_abi_version() != UDACI_ABI_VERSION) {
    fprintf(stderr, "header %s / ABI %d but library %s / ABI %d\n", UDACI_VERSION_STRING,
            UDACI_ABI_VERSION, udaci_version(), udaci_abi_version());
    return 1;
  }
  p.model_path = "/nonexistent/udaci-downstream/model.gguf";
  if (udaci_engine_create(&p, &engine) != UDACI_ERR_NOT_FOUND || engine != NULL) {
    fprintf(stderr, "expected UDACI_ERR_NOT_FOUND, got: %s\n", udaci_last_error());
    return 1;
  }
  printf("downstream C: udaci %s, ABI %d: ok\n", udaci_version(), udaci_abi_version());
  return 0;
}
