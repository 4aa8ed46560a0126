// The command line: every command's help is generated from its option table and lists every
// option with its default; `nextvit help CMD` = `nextvit CMD --help`; unknown options and
// commands suggest the nearest; --img means the same everywhere; --version has its fields; the
// progress line redraws in place only on a terminal.
#include <catch2/catch.hpp>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"
#include "train/progress_line.h"
#include "train_options.h"

using namespace nextvit;
using namespace nextvit::cli;

namespace {

std::string read_all(std::FILE* f) {
  std::string s;
  std::rewind(f);
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, f)) > 0;) s.append(buffer, n);
  return s;
}

struct MainResult {
  int status;
  std::string out, err;
};

// build/nextvit with these arguments (without the program name), its output captured.
MainResult run_nextvit(std::vector<std::string> args) {
  args.insert(args.begin(), "nextvit");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  REQUIRE(out != nullptr);
  REQUIRE(err != nullptr);
  MainResult r{run_main(static_cast<int>(argv.size()), argv.data(), out, err), "", ""};
  r.out = read_all(out);
  r.err = read_all(err);
  std::fclose(out);
  std::fclose(err);
  return r;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The help entry of --name: its first line (starting "  --name") and the indented lines after it,
// joined with single spaces.
std::string help_entry(const std::string& help, const std::string& name) {
  const std::vector<std::string> lines = lines_of(help);
  std::string entry;
  bool inside = false;
  for (const std::string& line : lines) {
    const bool starts_option = line.rfind("  --", 0) == 0;
    if (starts_option)
      inside = line.rfind("  --" + name + " ", 0) == 0 || line == "  --" + name;
    else if (line.rfind("    ", 0) != 0)
      inside = false;
    if (inside) entry += " " + line.substr(line.find_first_not_of(' '));
  }
  return entry;
}

// The option names help lists, in order ("--help" included).
std::vector<std::string> listed_options(const std::string& help) {
  std::vector<std::string> names;
  for (const std::string& line : lines_of(help)) {
    if (line.rfind("  --", 0) != 0) continue;
    const size_t end = line.find(' ', 4);
    names.push_back(line.substr(4, end == std::string::npos ? std::string::npos : end - 4));
  }
  return names;
}

}  // namespace

TEST_CASE("cli: every command's --help lists each option of its table with default and meaning",
          "[cli]") {
  REQUIRE(all_commands().size() >= 4);
  for (const Command& command : all_commands()) {
    INFO("command " << command.name);
    const std::unique_ptr<CommandInstance> instance = command.make();
    const std::string help = instance->options.help();
    CHECK(help.rfind("usage: nextvit " + command.name, 0) == 0);

    // The help lists exactly the table's options, in its order, then --help.
    std::vector<std::string> expected = instance->options.names();
    expected.push_back("help");
    CHECK(listed_options(help) == expected);

    for (const Option& o : instance->options.options()) {
      INFO("option --" << o.name);
      const std::string entry = help_entry(help, o.name);
      CHECK_THAT(entry,
                 Catch::StartsWith(" --" + o.name + (o.metavar.empty() ? "" : " " + o.metavar)));
      // The meaning, re-flowed, is there word for word.
      std::istringstream words(o.meaning);
      std::string flowed;
      for (std::string w; words >> w;) flowed += (flowed.empty() ? "" : " ") + w;
      CHECK_THAT(entry, Catch::Contains(flowed));
      if (!o.default_text.empty()) {
        CHECK_THAT(entry, Catch::Contains("(default: " + o.default_text + ")"));
      }
      if (o.required) {
        CHECK_THAT(entry, Catch::Contains("(required)"));
        CHECK_THAT(instance->options.usage(), Catch::Contains("--" + o.name));
      } else {
        // Every optional non-flag option shows a default (a value, or what an absent one means).
        CHECK((o.max_values == 0 || !o.default_text.empty()));
      }
      CHECK(o.store);
    }

    // `nextvit CMD --help`, `nextvit CMD -h` and `nextvit help CMD` print the same text.
    const MainResult dashed = run_nextvit({command.name, "--help"});
    CHECK(dashed.status == 0);
    CHECK(dashed.out == help);
    CHECK(run_nextvit({command.name, "--epochs", "3", "-h"}).out == help);
    const MainResult word = run_nextvit({"help", command.name});
    CHECK(word.status == 0);
    CHECK(word.out == help);
  }
}

TEST_CASE("cli: nextvit --help lists the commands and every option of each", "[cli]") {
  const MainResult r = run_nextvit({"--help"});
  CHECK(r.status == 0);
  CHECK(run_nextvit({"help"}).out == r.out);
  for (const Command& command : all_commands()) {
    CHECK_THAT(r.out, Catch::Contains("  " + command.name + " "));
    CHECK_THAT(r.out, Catch::Contains(command.make()->options.help()));
  }
  const MainResult bare = run_nextvit({});
  CHECK(bare.status == 2);
  CHECK_THAT(bare.err, Catch::Contains("usage: nextvit <command>"));
}

TEST_CASE("cli: an unknown option or command suggests the nearest", "[cli]") {
  MainResult r = run_nextvit({"train", "--epoch", "3"});
  CHECK(r.status == 1);
  CHECK_THAT(r.err, Catch::Contains("unknown option --epoch; did you mean --epochs?"));
  CHECK_THAT(r.err, Catch::Contains("nextvit train --help"));
  r = run_nextvit({"info", "--num-clases", "10"});
  CHECK_THAT(r.err, Catch::Contains("did you mean --num-classes?"));
  r = run_nextvit({"forward", "--wieghts", "w.safetensors"});
  CHECK_THAT(r.err, Catch::Contains("did you mean --weights?"));
  // Nothing near: no guess, still the pointer to --help.
  r = run_nextvit({"eval", "--completely-different"});
  CHECK_THAT(r.err, Catch::Contains("unknown option --completely-different ("));
  CHECK_THAT(r.err, !Catch::Contains("did you mean"));

  r = run_nextvit({"trian"});
  CHECK(r.status == 2);
  CHECK_THAT(r.err, Catch::Contains("unknown command 'trian'; did you mean 'train'?"));
  r = run_nextvit({"help", "inof"});
  CHECK(r.status == 2);
  CHECK_THAT(r.err, Catch::Contains("did you mean 'info'?"));
}

TEST_CASE("cli: --img means the same in every command that has it", "[cli]") {
  int with_img = 0;
  for (const Command& command : all_commands()) {
    const std::unique_ptr<CommandInstance> instance = command.make();
    for (const Option& o : instance->options.options()) {
      if (o.name != "img") continue;
      ++with_img;
      INFO("command " << command.name);
      CHECK(o.metavar == "S|H W");
      CHECK(o.min_values == 1);
      CHECK(o.max_values == 2);
      CHECK_THAT(o.meaning, Catch::StartsWith("image size: S for S x S pixels"));
      // Both forms parse (one value, two equal values), followed by another option or not.
      for (const std::vector<std::string>& form : {std::vector<std::string>{"32"}, {"32", "32"}}) {
        const std::unique_ptr<CommandInstance> fresh = command.make();
        std::vector<std::string> args{"nextvit", command.name, "--img"};
        args.insert(args.end(), form.begin(), form.end());
        std::vector<char*> argv;
        for (std::string& a : args) argv.push_back(a.data());
        // Required options of the command are missing: parse stops there, after --img.
        try {
          fresh->options.parse(static_cast<int>(argv.size()), argv.data(), 2);
        } catch (const Error& e) {
          CHECK_THAT(e.what(), Catch::Contains("is required"));
        }
      }
    }
  }
  CHECK(with_img >= 3);  // info, train, eval

  // info takes any H W; train's pipelines crop squares and say so.
  int64_t h = 224, w = 224;
  Options o("nextvit x", "");
  o.image("img", &h, &w, 1 << 15);
  std::vector<std::string> args{"x", "x", "--img", "256", "320"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  REQUIRE(o.parse(5, argv.data(), 2));
  CHECK((h == 256 && w == 320));
  const MainResult r = run_nextvit({"train", "--img", "32", "48"});
  CHECK(r.status == 1);
  CHECK_THAT(r.err, Catch::Contains("--img 32 48: this command uses square images"));
  int threads = 0;
  std::vector<std::string> targs{"nextvit", "train", "--img", "32", "32", "--epochs", "2"};
  std::vector<char*> targv;
  for (std::string& a : targs) targv.push_back(a.data());
  const TrainOptions t =
      parse_train_options(static_cast<int>(targv.size()), targv.data(), &threads);
  CHECK(t.img == 32);
  CHECK(t.epochs == 2);
}

TEST_CASE("cli: options parse from the table: ranges, forms, repeats, required", "[cli]") {
  struct V {
    int64_t n = 5;
    double x = 0.5;
    std::string name = "a", mode = "fast";
    bool flag = false, on = true;
  } v;
  Options o("prog", "a test program");
  o.integer("n", &v.n, "N", 1, 10, "a count")
      .number("x", &v.x, "X", 0, 1, "a fraction")
      .text("name", &v.name, "NAME", "a name")
      .required()
      .choice("mode", &v.mode, {"fast", "slow"}, "how")
      .flag("flag", &v.flag, "turn it on")
      .flag("no-on", &v.on, "turn it off", false);
  auto parse = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "prog");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    return o.parse(static_cast<int>(argv.size()), argv.data(), 1);
  };
  const std::string help = o.help();
  CHECK_THAT(help, Catch::StartsWith("usage: prog --name NAME [options]\n\na test program\n"));
  CHECK_THAT(help_entry(help, "n"), Catch::Contains("a count (default: 5)"));
  CHECK_THAT(help_entry(help, "x"), Catch::Contains("(default: 0.5)"));
  CHECK_THAT(help_entry(help, "mode"), Catch::StartsWith(" --mode fast|slow  how (default: fast)"));

  REQUIRE(parse({"--name", "b", "--n=7", "--x", "0.25", "--mode", "slow", "--flag", "--no-on"}));
  CHECK(v.n == 7);
  CHECK(v.x == 0.25);
  CHECK(v.name == "b");
  CHECK(v.mode == "slow");
  CHECK(v.flag);
  CHECK(!v.on);
  CHECK(o.given("x"));
  CHECK(!parse({"--n", "oops", "--help"}));  // help wins over any error

  CHECK_THROWS_WITH(parse({"--n", "3"}), Catch::Contains("prog: --name is required"));
  CHECK_THROWS_WITH(parse({"--name", "b", "--n", "11"}),
                    Catch::Contains("--n must be in [1, 10], got 11"));
  CHECK_THROWS_WITH(parse({"--name", "b", "--n", "3x"}),
                    Catch::Contains("--n expects an integer, got '3x'"));
  CHECK_THROWS_WITH(parse({"--name", "b", "--x", "nan"}), Catch::Contains("--x must be in"));
  CHECK_THROWS_WITH(parse({"--name", "b", "--mode", "medium"}),
                    Catch::Contains("--mode takes fast|slow, got 'medium'"));
  CHECK_THROWS_WITH(parse({"--name", "--n", "3"}), Catch::Contains("--name needs NAME"));
  CHECK_THROWS_WITH(parse({"--name", "b", "--n", "3", "--n", "4"}),
                    Catch::Contains("--n given twice"));
  CHECK_THROWS_WITH(parse({"--name", "b", "--flag=1"}), Catch::Contains("--flag takes no value"));
  CHECK_THROWS_WITH(parse({"--name", "b", "stray"}),
                    Catch::Contains("unexpected argument 'stray'"));
  CHECK_THROWS_WITH(o.flag("n", &v.flag, "again"), Catch::Contains("--n declared twice"));
}

TEST_CASE("cli: train's table reads every option into TrainOptions", "[cli]") {
  int threads = -1;
  std::vector<std::string> none{"nextvit", "train"};
  std::vector<char*> argv;
  for (std::string& a : none) argv.push_back(a.data());
  const TrainOptions defaults = parse_train_options(2, argv.data(), &threads);
  CHECK(defaults.to_json() == TrainOptions{}.to_json());
  CHECK(threads == 0);

  std::vector<std::string> args{
      "nextvit", "train",       "--model",   "m.json",      "--lr",   "0.01",   "--optimizer",
      "sgd",     "--no-flip",   "--threads", "3",           "--seed", "7",      "--ema",
      "0.99",    "--drop-path", "0.2",       "--log-every", "0",      "--quiet"};
  argv.clear();
  for (std::string& a : args) argv.push_back(a.data());
  const TrainOptions t = parse_train_options(static_cast<int>(argv.size()), argv.data(), &threads);
  CHECK(t.model == "m.json");
  CHECK(t.lr == 0.01);
  CHECK(t.optimizer == "sgd");
  CHECK(!t.flip);
  CHECK(threads == 3);
  CHECK(t.seed == 7);
  CHECK(t.ema_decay == 0.99);
  CHECK(t.drop_path == 0.2);
  CHECK(t.log_every == 0);
  CHECK(t.quiet);
}

TEST_CASE("cli: --version names the version, build type, CPU ISA path, 3x3 convolutions and CUDA",
          "[cli]") {
  const MainResult r = run_nextvit({"--version"});
  CHECK(r.status == 0);
  const std::vector<std::string> lines = lines_of(r.out);
  REQUIRE(lines.size() == 5);
  CHECK_THAT(lines[0], Catch::Matches("nextvit [0-9]+\\.[0-9]+\\.[0-9]+"));
  CHECK_THAT(lines[1], Catch::Matches("build type: [A-Za-z]+ \\(.+\\)"));
  CHECK_THAT(lines[2], Catch::Matches("CPU ISA: (avx2|avx512|portable) GEMM micro-kernels .*"));
  CHECK_THAT(lines[3],
             Catch::Matches("CPU 3x3 convolutions: (Winograd F\\(2x2, 3x3\\)|direct) .*"));
#ifdef NEXTVIT_WITH_CUDA
  CHECK_THAT(lines[4], Catch::Matches("CUDA: .*runtime [0-9]+\\.[0-9]+, driver .*, cuDNN .*"));
#else
  CHECK(lines[4] == "CUDA: no CUDA (this build has no CUDA backend)");
#endif
}

TEST_CASE("cli: the progress line redraws in place on a terminal, one line each in a file",
          "[cli]") {
  for (const bool terminal : {true, false}) {
    std::FILE* f = std::tmpfile();
    REQUIRE(f != nullptr);
    {
      ProgressLine p(f, terminal, 20);
      p.progress("step 1");
      p.progress("step 2 of a long line that is cut");
      p.line("epoch done");
      p.progress("step 3");
    }  // the destructor ends the open line
    const std::string s = read_all(f);
    std::fclose(f);
    if (terminal) {
      CHECK(s == "\rstep 1\033[K\rstep 2 of a long li\033[K\nepoch done\n\rstep 3\033[K\n");
    } else {
      CHECK(s == "step 1\nstep 2 of a long line that is cut\nepoch done\nstep 3\n");
    }
  }
}
