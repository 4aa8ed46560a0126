#pragma once
// The command-line options of the programs above the library (cli/, bench/), declared once in a
// table that drives both parsing and --help. Header-only; nothing in the library uses it.
//
// Each entry says the option's name, what values it takes, its meaning, and where the parsed
// value goes (a pointer into the caller's own struct or variables). The value a target holds when
// the option is declared is its default: help prints it, so the two cannot drift apart.
//
//   struct Values { std::string model = "nextvit_small"; int64_t batch = 8; bool json = false; };
//   Values v;
//   Options opts("bench_x", "What the program measures, in one line.");
//   opts.text("model", &v.model, "NAME", "model to run")
//       .integer("batch", &v.batch, "B", 1, 1 << 20, "images per batch")
//       .flag("json", &v.json, "print one JSON object");
//   if (!opts.parse(argc, argv, 1)) return std::fputs(opts.help().c_str(), stdout), 0;
//
// Syntax: `--name value`, `--name=value`, `--name v1 v2` (options taking several values), `--flag`;
// `--help` / `-h` anywhere asks for help. An unknown option is an error that names the nearest
// known one; a value out of range or not a number is an error naming the option and the value.
// cli/command.h adds the subcommands of build/nextvit on top of this.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "core/device.h"
#include "core/error.h"

namespace nextvit::cli {

// One option: what help shows and how its values are stored.
struct Option {
  std::string name;          // without the leading "--"
  std::string metavar;       // the values as help shows them ("N", "H W"); empty for a flag
  int min_values = 0;        // how many values follow the name: 0 for a flag
  int max_values = 0;        // more than min_values: the extra ones are optional
  std::string default_text;  // "(default: ...)" in help; empty: none shown
  std::string meaning;       // one or two sentences
  bool required = false;
  std::function<void(const std::vector<std::string>& values)> store;  // checks and stores
};

// Edit distance (insertions, deletions, substitutions), for "did you mean" suggestions.
inline size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The candidate nearest to `word`, or "" when none is plausibly what was meant (more than about
// a third of the letters differ).
inline std::string nearest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const std::string& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_distance) best = c, best_distance = d;
  }
  return best_distance <= std::max<size_t>(2, word.size() / 3) ? best : "";
}

// A number as help shows it: integers without a decimal point, others in the shortest form.
inline std::string format_number(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

class Options {
 public:
  // program: what error messages and help call it ("nextvit train", "bench_cpu_train").
  // summary: what it does, one line for help.
  Options(std::string program, std::string summary)
      : program_(std::move(program)), summary_(std::move(summary)) {}
  Options(const Options&) = delete;
  Options& operator=(const Options&) = delete;

  // ---- declaring options (each returns *this so that declarations chain) ----

  // Any option: the general form the others are made of.
  Options& add(Option o) {
    NV_CHECK(!o.name.empty() && find(o.name) == nullptr, "{}: option --{} declared twice", program_,
             o.name);
    options_.push_back(std::move(o));
    return *this;
  }
  // --name: sets *target to `value_when_given` (true, or false for a --no-... flag).
  Options& flag(const std::string& name, bool* target, const std::string& meaning,
                bool value_when_given = true) {
    return add({name, "", 0, 0, "", meaning, false,
                [target, value_when_given](const std::vector<std::string>&) {
                  *target = value_when_given;
                }});
  }
  // --name N: an integer in [lo, hi].
  template <typename T>
  Options& integer(const std::string& name, T* target, const std::string& metavar, int64_t lo,
                   int64_t hi, const std::string& meaning) {
    static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>, "integer options only");
    return add({name, metavar, 1, 1, std::to_string(*target), meaning, false,
                [program = program_, target, name, lo, hi](const std::vector<std::string>& v) {
                  *target = static_cast<T>(parse_integer(program, name, v[0], lo, hi));
                }});
  }
  // --name X: a finite number in [lo, hi].
  template <typename T>
  Options& number(const std::string& name, T* target, const std::string& metavar, double lo,
                  double hi, const std::string& meaning) {
    static_assert(std::is_floating_point_v<T>, "number options only");
    return add({name, metavar, 1, 1, format_number(*target), meaning, false,
                [program = program_, target, name, lo, hi](const std::vector<std::string>& v) {
                  *target = static_cast<T>(parse_number(program, name, v[0], lo, hi));
                }});
  }
  // --name TEXT: any string (a path, a name).
  Options& text(const std::string& name, std::string* target, const std::string& metavar,
                const std::string& meaning) {
    return add({name, metavar, 1, 1, *target, meaning, false,
                [target](const std::vector<std::string>& v) { *target = v[0]; }});
  }
  // --name A|B|C: one of a fixed set of words.
  Options& choice(const std::string& name, std::string* target,
                  const std::vector<std::string>& choices, const std::string& meaning) {
    std::string metavar;
    for (const std::string& c : choices) metavar += (metavar.empty() ? "" : "|") + c;
    return add(
        {name, metavar, 1, 1, *target, meaning, false,
         [program = program_, target, name, choices, metavar](const std::vector<std::string>& v) {
           NV_CHECK(std::find(choices.begin(), choices.end(), v[0]) != choices.end(),
                    "{}: --{} takes {}, got '{}'", program, name, metavar, v[0]);
           *target = v[0];
         }});
  }
  // --name cpu|cuda|cuda:N
  Options& device(const std::string& name, Device* target, const std::string& meaning) {
    return add({name, "cpu|cuda[:N]", 1, 1, target->str(), meaning, false,
                [target](const std::vector<std::string>& v) { *target = parse_device(v[0]); }});
  }
  // --img S | --img H W: the input image size, the same in every command. With square_only
  // (commands whose data pipelines crop squares) H W is accepted only when H = W.
  Options& image(const std::string& name, int64_t* height, int64_t* width, int64_t max_side,
                 bool square_only = false) {
    const std::string meaning = square_only
                                    ? "image size: S for S x S pixels (H W is accepted when H = W)"
                                    : "image size: S for S x S pixels, or H W";
    const std::string shown = *height == *width
                                  ? std::to_string(*height)
                                  : std::to_string(*height) + " " + std::to_string(*width);
    return add({name, "S|H W", 1, 2, shown, meaning, false,
                [program = program_, name, height, width, max_side,
                 square_only](const std::vector<std::string>& v) {
                  const int64_t h = parse_integer(program, name, v[0], 1, max_side);
                  const int64_t w =
                      v.size() > 1 ? parse_integer(program, name, v[1], 1, max_side) : h;
                  NV_CHECK(!square_only || h == w,
                           "{}: --{} {} {}: this command uses square images; give --{} S", program,
                           name, h, w, name);
                  *height = h, *width = w;
                }});
  }

  // Arguments that are not options (`nextvit predict ... IMAGE...`): collected in order into
  // *target; at least one is required. Without this declaration such an argument is an error.
  Options& positional(const std::string& metavar, std::vector<std::string>* target,
                      const std::string& meaning) {
    positional_metavar_ = metavar;
    positional_meaning_ = meaning;
    positional_ = target;
    return *this;
  }

  // Modifiers of the option declared last.
  Options& required() {
    last().required = true;
    last().default_text.clear();
    return *this;
  }
  // More words for the meaning, when a shared option needs a command-specific remark.
  Options& note(const std::string& text) {
    last().meaning += " " + text;
    return *this;
  }
  // What help shows as the default when the stored value says it poorly (0 meaning "all").
  Options& shown_default(const std::string& text) {
    last().default_text = text;
    return *this;
  }

  // ---- parsing ----

  // Parses argv[first..]. Returns false when --help or -h was given (the caller prints help()
  // and exits 0); throws nextvit::Error on a bad argument or a missing required option.
  bool parse(int argc, char** argv, int first) {
    for (int i = first; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--help" || a == "-h") return false;
    }
    std::set<std::string> given;
    for (int i = first; i < argc; ++i) {
      std::string a = argv[i];
      if (positional_ != nullptr && a.rfind("--", 0) != 0) {
        positional_->push_back(a);
        continue;
      }
      NV_CHECK(a.rfind("--", 0) == 0 && a.size() > 2, "{}: unexpected argument '{}'{}", program_, a,
               help_hint());
      std::string name = a.substr(2);
      std::vector<std::string> values;
      const size_t eq = name.find('=');
      if (eq != std::string::npos) {
        values.push_back(name.substr(eq + 1));
        name = name.substr(0, eq);
      }
      const Option* o = find(name);
      if (o == nullptr) {
        const std::string guess = nearest(name, names());
        NV_FAIL("{}: unknown option --{}{}{}", program_, name,
                guess.empty() ? "" : "; did you mean --" + guess + "?", help_hint());
      }
      NV_CHECK(values.empty() || o->max_values > 0, "{}: --{} takes no value", program_, name);
      while (int(values.size()) < o->max_values && i + 1 < argc &&
             !looks_like_option(argv[i + 1])) {
        values.push_back(argv[++i]);
      }
      NV_CHECK(int(values.size()) >= o->min_values, "{}: --{} needs {}", program_, name,
               o->metavar);
      NV_CHECK(given.insert(name).second, "{}: --{} given twice", program_, name);
      o->store(values);
    }
    for (const Option& o : options_) {
      NV_CHECK(!o.required || given.count(o.name), "{}: --{} is required{}", program_, o.name,
               help_hint());
    }
    NV_CHECK(positional_ == nullptr || !positional_->empty(), "{}: name at least one {}{}",
             program_, positional_metavar_, help_hint());
    given_ = given;
    return true;
  }
  // Whether the last parse() saw --name.
  bool given(const std::string& name) const { return given_.count(name) > 0; }

  // ---- help ----

  // usage line, summary, then every option with its values, meaning and default.
  std::string help() const {
    std::string out = "usage: " + usage() + "\n\n" + summary_ + "\n\n";
    if (positional_ != nullptr) {
      out += wrap("  " + positional_metavar_ + "...", split_words(positional_meaning_),
                  positional_metavar_.size() + 9) +
             "\n";
    }
    out += "options:\n";
    size_t column = 0;
    for (const Option& o : options_) column = std::max(column, left_side(o).size());
    column = std::min<size_t>(column, 34);
    for (const Option& o : options_) {
      std::string left = left_side(o);
      std::vector<std::string> words = split_words(o.meaning);
      if (o.required) words.push_back("(required)");
      if (!o.default_text.empty()) words.push_back("(default: " + o.default_text + ")");
      out += wrap("  " + left, words, column + 4);
    }
    out += wrap("  --help", {"print this help and exit"}, column + 4);
    return out;
  }
  // "nextvit forward --model NAME --weights W [options]": the required options and the rest.
  std::string usage() const {
    std::string line = program_;
    for (const Option& o : options_) {
      if (o.required) line += " --" + o.name + (o.metavar.empty() ? "" : " " + o.metavar);
    }
    return line + " [options]" + (positional_ ? " " + positional_metavar_ + "..." : "");
  }

  const std::string& program() const { return program_; }
  const std::string& summary() const { return summary_; }
  const std::vector<Option>& options() const { return options_; }
  std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (const Option& o : options_) n.push_back(o.name);
    return n;
  }

 private:
  const Option* find(const std::string& name) const {
    for (const Option& o : options_) {
      if (o.name == name) return &o;
    }
    return nullptr;
  }
  Option& last() {
    NV_CHECK(!options_.empty(), "{}: a modifier before any option", program_);
    return options_.back();
  }
  // "--x" starts another option; "-5" (a negative number) is a value.
  static bool looks_like_option(const std::string& a) { return a.rfind("--", 0) == 0 || a == "-h"; }
  std::string positional_metavar_, positional_meaning_;
  std::vector<std::string>* positional_ = nullptr;
  std::string help_hint() const { return " (" + program_ + " --help lists the options)"; }

  static int64_t parse_integer(const std::string& program, const std::string& name,
                               const std::string& v, int64_t lo, int64_t hi) {
    long long x = 0;
    try {
      size_t used = 0;
      x = std::stoll(v, &used);
      NV_CHECK(used == v.size(), "");
    } catch (...) {
      NV_FAIL("{}: --{} expects an integer, got '{}'", program, name, v);
    }
    NV_CHECK(x >= lo && x <= hi, "{}: --{} must be in [{}, {}], got {}", program, name, lo, hi, v);
    return x;
  }
  static double parse_number(const std::string& program, const std::string& name,
                             const std::string& v, double lo, double hi) {
    double d = 0;
    try {
      size_t used = 0;
      d = std::stod(v, &used);
      NV_CHECK(used == v.size(), "");
    } catch (...) {
      NV_FAIL("{}: --{} expects a number, got '{}'", program, name, v);
    }
    NV_CHECK(std::isfinite(d) && d >= lo && d <= hi, "{}: --{} must be in [{}, {}], got {}",
             program, name, lo, hi, v);
    return d;
  }

  static std::string left_side(const Option& o) {
    return "--" + o.name + (o.metavar.empty() ? "" : " " + o.metavar);
  }
  static std::vector<std::string> split_words(const std::string& text) {
    std::vector<std::string> words;
    std::istringstream in(text);
    for (std::string w; in >> w;) words.push_back(w);
    return words;
  }
  // `left` padded to `column`, then the words filled to 100 characters a line; continuation
  // lines start at `column`. A word (a "(default: ...)" is one) is never split.
  static std::string wrap(std::string left, const std::vector<std::string>& words, size_t column) {
    constexpr size_t kWidth = 100;
    std::string out;
    std::string line = left.size() + 1 < column ? left + std::string(column - left.size(), ' ')
                                                : left + "\n" + std::string(column, ' ');
    const size_t line_start = line.rfind('\n') == std::string::npos ? 0 : line.rfind('\n') + 1;
    size_t length = line.size() - line_start;
    bool first = true;
    for (const std::string& w : words) {
      if (!first && length + 1 + w.size() > kWidth) {
        line += "\n" + std::string(column, ' ');
        length = column;
        first = true;
      }
      line += (first ? "" : " ") + w;
      length += (first ? 0 : 1) + w.size();
      first = false;
    }
    out += line + "\n";
    return out;
  }

  std::string program_, summary_;
  std::vector<Option> options_;
  std::set<std::string> given_;
};

}  // namespace nextvit::cli
