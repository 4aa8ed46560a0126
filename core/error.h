#pragma once
// Errors. Every failure the user can cause (a bad shape, a missing weight, a file that cannot be
// read, a CUDA call that fails) becomes a nextvit::Error whose message says what was expected and
// what was found. NV_CHECK is the one way code states such a precondition.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>
#include <string>

namespace nextvit {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace nextvit

// NV_CHECK(cond, "fmt", args...): throw nextvit::Error with the formatted message when cond fails.
#define NV_CHECK(cond, ...)                                          \
  do {                                                               \
    if (!(cond)) throw ::nextvit::Error(::fmt::format(__VA_ARGS__)); \
  } while (0)

// NV_FAIL("fmt", args...): throw unconditionally.
#define NV_FAIL(...) throw ::nextvit::Error(::fmt::format(__VA_ARGS__))
