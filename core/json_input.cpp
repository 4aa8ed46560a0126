#include "core/json_input.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace nextvit {

void check_json_depth(const std::string& text, const std::string& what, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (in_string) {
      if (ch == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (ch == '"') {
        in_string = false;
      }
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      NV_CHECK(++depth <= max_depth,
               "{}: JSON nested more than {} levels deep (at byte {}); refusing to parse it", what,
               max_depth, i);
    } else if (ch == ']' || ch == '}') {
      --depth;
    }
  }
}

nlohmann::json parse_json_text(const std::string& text, const std::string& what) {
  check_json_depth(text, what);
  try {
    return nlohmann::json::parse(text);  // strict: trailing non-space characters are an error
  } catch (const nlohmann::json::exception& e) {
    NV_FAIL("{}: not valid JSON ({})", what, e.what());
  }
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  NV_CHECK(in.is_open(), "{}: cannot open ({})", path, std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  NV_CHECK(!in.bad(), "{}: cannot read", path);
  return parse_json_text(text.str(), path);
}

int64_t json_to_int(const nlohmann::json& v, const std::string& what, int64_t lo, int64_t hi) {
  if (v.is_number_integer()) {
    // Unsigned values above 2^63 would wrap when read as int64: compare as unsigned first.
    const bool fits = v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(hi)
                                             : v.get<int64_t>() <= hi;
    const int64_t x = fits ? v.get<int64_t>() : hi;
    NV_CHECK(fits && x >= lo, "{} must be an integer in [{}, {}], got {}", what, lo, hi, v.dump());
    return x;
  }
  NV_CHECK(v.is_number_float(), "{} must be an integer, got {}", what, v.dump());
  const double d = v.get<double>();
  // The bounds are compared as doubles before any cast, so the cast below is always defined.
  NV_CHECK(std::isfinite(d) && d == std::floor(d) && d >= static_cast<double>(lo) &&
               d <= static_cast<double>(hi) && std::fabs(d) < 9.2e18,
           "{} must be an integer in [{}, {}], got {}", what, lo, hi, v.dump());
  return static_cast<int64_t>(d);
}

double json_to_number(const nlohmann::json& v, const std::string& what, double lo, double hi) {
  NV_CHECK(v.is_number(), "{} must be a number, got {}", what, v.dump());
  const double d = v.get<double>();
  NV_CHECK(std::isfinite(d) && d >= lo && d <= hi, "{} must be a finite number in [{}, {}], got {}",
           what, lo, hi, v.dump());
  return d;
}

}  // namespace nextvit
