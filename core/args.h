#pragma once
// A small command-line parser for the programs above the library (cli/, bench/): `--name value`,
// `--flag`, and `--name v1 v2` for options that take several values. Unknown options and
// missing values are errors that say which option. Header-only; nothing in the library uses it.
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace nextvit::cli {

class Args {
 public:
  // spec: option name -> number of values it takes (0 for a flag).
  Args(int argc, char** argv, int first, const std::map<std::string, int>& spec,
       const std::string& command) {
    for (int i = first; i < argc; ++i) {
      std::string a = argv[i];
      NV_CHECK(a.rfind("--", 0) == 0, "{}: unexpected argument '{}'", command, a);
      std::string name = a.substr(2);
      auto it = spec.find(name);
      NV_CHECK(it != spec.end(), "{}: unknown option --{}", command, name);
      std::vector<std::string> values;
      for (int k = 0; k < it->second; ++k) {
        NV_CHECK(i + 1 < argc, "{}: --{} needs {} value(s)", command, name, it->second);
        values.push_back(argv[++i]);
      }
      values_[name] = values;
    }
    command_ = command;
  }

  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::string str(const std::string& name, const std::string& fallback = "") const {
    return has(name) ? values_.at(name).at(0) : fallback;
  }
  std::string required(const std::string& name) const {
    NV_CHECK(has(name), "{}: --{} is required", command_, name);
    return values_.at(name).at(0);
  }
  // An integer option in [lo, hi]; anything else (not a number, trailing characters, out of
  // range) is an error naming the option and the value.
  int64_t integer(const std::string& name, int64_t fallback, int64_t lo, int64_t hi,
                  size_t index = 0) const {
    if (!has(name)) return fallback;
    const std::string& v = values_.at(name).at(index);
    const int64_t x = parse_int(name, v);
    NV_CHECK(x >= lo && x <= hi, "{}: --{} must be in [{}, {}], got {}", command_, name, lo, hi, v);
    return x;
  }
  // Without a range (the benchmarks' options): any int64, still refusing what is not one.
  int64_t integer(const std::string& name, int64_t fallback, size_t index = 0) const {
    return integer(name, fallback, std::numeric_limits<int64_t>::min(),
                   std::numeric_limits<int64_t>::max(), index);
  }
  double number(const std::string& name, double fallback) const {
    return number(name, fallback, -std::numeric_limits<double>::max(),
                  std::numeric_limits<double>::max());
  }
  // A finite number in [lo, hi].
  double number(const std::string& name, double fallback, double lo, double hi) const {
    if (!has(name)) return fallback;
    const std::string& v = values_.at(name).at(0);
    double d = 0;
    try {
      size_t used = 0;
      d = std::stod(v, &used);
      NV_CHECK(used == v.size(), "");
    } catch (...) {
      NV_FAIL("{}: --{} expects a number, got '{}'", command_, name, v);
    }
    NV_CHECK(std::isfinite(d) && d >= lo && d <= hi, "{}: --{} must be in [{}, {}], got {}",
             command_, name, lo, hi, v);
    return d;
  }

 private:
  int64_t parse_int(const std::string& name, const std::string& v) const {
    try {
      size_t used = 0;
      long long x = std::stoll(v, &used);
      NV_CHECK(used == v.size(), "");
      return x;
    } catch (...) {
      NV_FAIL("{}: --{} expects an integer, got '{}'", command_, name, v);
    }
  }

  std::string command_;
  std::map<std::string, std::vector<std::string>> values_;
};

}  // namespace nextvit::cli
