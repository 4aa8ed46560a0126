#pragma once
// The subcommands of build/nextvit. Each is one file cli/cmd_<name>.cpp with
//
//   1. a struct of its option values, whose member initialisers are the defaults;
//   2. declare(Options&, Values&): one line per option (name, values, range, meaning), the single
//      table from which both parsing and `nextvit <name> --help` come (core/args.h);
//   3. run(const Values&): what the command does, returning the exit status;
//   4. Command <name>_command() { return make_command<Values>("<name>", "summary", declare, run); }
//
// and one line in cli/commands.cpp (the list) and cli/commands.h (the declaration). Nothing else:
// help, `nextvit help <name>`, unknown-option suggestions and the test that help lists every
// option (tests/test_cli.cpp) follow from the table. Options meaning the same thing in several
// commands are declared by the shared helpers in cli/common_options.h (--img, --model, --device).
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/args.h"

namespace nextvit::cli {

// A command's values with its options declared on them, ready to parse into and run.
class CommandInstance {
 public:
  CommandInstance(const std::string& program, const std::string& summary)
      : options(program, summary) {}
  virtual ~CommandInstance() = default;
  virtual int run() = 0;
  Options options;
};

struct Command {
  std::string name;
  std::string summary;  // one line
  // A fresh set of default values with the option table bound to them.
  std::function<std::unique_ptr<CommandInstance>()> make;
};

template <class Values>
Command make_command(const std::string& name, const std::string& summary,
                     void (*declare)(Options&, Values&), int (*run)(const Values&)) {
  struct Instance : CommandInstance {
    Instance(const std::string& program, const std::string& summary, int (*run)(const Values&))
        : CommandInstance(program, summary), run_(run) {}
    int run() override { return run_(values); }
    Values values;
    int (*run_)(const Values&);
  };
  Command c{name, summary, nullptr};
  c.make = [name, summary, declare, run]() -> std::unique_ptr<CommandInstance> {
    auto instance = std::make_unique<Instance>("nextvit " + name, summary, run);
    declare(instance->options, instance->values);
    return instance;
  };
  return c;
}

}  // namespace nextvit::cli
