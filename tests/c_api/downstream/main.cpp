// Uses the installed udaci.hpp: the RAII layer compiles and maps errors.
#include <udaci/udaci.hpp>

#include <iostream>

int main() {
  try {
    udaci::Engine engine("/nonexistent/udaci-downstream/model.gguf");
  } catch (const udaci::Exception& e) {
    if (e.status() != UDACI_ERR_NOT_FOUND) {
      std::cerr << "unexpected status " << e.status_name() << ": " << e.what() << "\n";
      return 1;
    }
    std::cout << "downstream C++: udaci " << udaci::version() << ": ok\n";
    return 0;
  }
  std::cerr << "no exception for a missing model\n";
  return 1;
}
