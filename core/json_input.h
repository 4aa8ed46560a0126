#pragma once
// Reading JSON that came from outside (a model configuration, a safetensors header, a
// checkpoint's metadata) without trusting it:
//   - nesting deeper than kMaxJsonDepth is refused before parsing, so a megabyte of '[' cannot
//     exhaust the stack in the parser, in dump() or in a recursive copy;
//   - the whole text must be one JSON value: trailing garbage is an error, not ignored;
//   - numbers meant as integers must be integers in range: 3.7 or 1e300 is refused instead of
//     being truncated or sent through an undefined float-to-int cast.
// Every error names `what` (the file and the key) and is a nextvit::Error.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace nextvit {

constexpr int kMaxJsonDepth = 64;

// Throws when arrays/objects nest deeper than max_depth (strings are skipped correctly).
void check_json_depth(const std::string& text, const std::string& what,
                      int max_depth = kMaxJsonDepth);

// Depth check, then a strict parse of the whole text.
nlohmann::json parse_json_text(const std::string& text, const std::string& what);
// The same for a whole file; `path` names it in errors.
nlohmann::json read_json_file(const std::string& path);

// An integer in [lo, hi]. A float is accepted only when it is a whole number in range (10.0),
// never truncated.
int64_t json_to_int(const nlohmann::json& v, const std::string& what, int64_t lo, int64_t hi);
// A finite number in [lo, hi].
double json_to_number(const nlohmann::json& v, const std::string& what, double lo, double hi);

}  // namespace nextvit
