// The suite itself: CTest runs each test case as its own process, by name (catch_discover_tests
// in tests/CMakeLists.txt). A ';' in a name is a list separator to CMake, so such a test was
// registered under a broken name and never ran (three did, unnoticed, until the emulated
// build's kernel-coverage test, which counts the tests that ran, reported them missing).
#include <catch2/catch.hpp>

#include <string>

TEST_CASE("suite: no test name holds a semicolon (ctest would never run the test)", "[suite]") {
  const Catch::IConfig& config = *Catch::getCurrentContext().getConfig();
  int names = 0;
  for (const Catch::TestCase& test : Catch::getAllTestCasesSorted(config)) {
    INFO(test.name);
    CHECK(test.name.find(';') == std::string::npos);
    ++names;
  }
  REQUIRE(names > 100);  // the registry was read, not an empty list
}
