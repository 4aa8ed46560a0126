#pragma once
// A small command-line parser: `--name value`, `--flag`, and `--name v1 v2` for options that take
// several values. Unknown options and missing values are errors that say which option.
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
  int64_t integer(const std::string& name, int64_t fallback, size_t index = 0) const {
    return has(name) ? parse_int(name, values_.at(name).at(index)) : fallback;
  }
  double number(const std::string& name, double fallback) const {
    if (!has(name)) return fallback;
    const std::string& v = values_.at(name).at(0);
    try {
      size_t used = 0;
      double d = std::stod(v, &used);
      NV_CHECK(used == v.size(), "");
      return d;
    } catch (...) {
      NV_FAIL("{}: --{} expects a number, got '{}'", command_, name, v);
    }
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
