// The test binary's entry point. Tests run with two OpenMP threads by default (the CI machine
// has two cores); set OMP_NUM_THREADS to change it.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

int main(int argc, char* argv[]) { return Catch::Session().run(argc, argv); }
