// The list of commands and build/nextvit's dispatch: `nextvit CMD [options]`, `nextvit CMD
// --help`, `nextvit help [CMD]`, `nextvit --help`, `nextvit --version`.
#include "commands.h"

#include <cstring>
#include <exception>

namespace nextvit::cli {

const std::vector<Command>& all_commands() {
  // A new command: one line here (cli/command.h has the whole recipe).
  static const std::vector<Command> commands = {info_command(),    forward_command(),
                                                train_command(),   eval_command(),
                                                predict_command(), export_command()};
  return commands;
}

namespace {

const Command* find_command(const std::string& name) {
  for (const Command& c : all_commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string unknown_command(const std::string& name) {
  std::vector<std::string> names;
  for (const Command& c : all_commands()) names.push_back(c.name);
  const std::string guess = nearest(name, names);
  return "nextvit: unknown command '" + name + "'" +
         (guess.empty() ? "" : "; did you mean '" + guess + "'?") + "\n";
}

// The commands, one line each.
std::string overview() {
  std::string s =
      "usage: nextvit <command> [options]\n"
      "       nextvit help <command>   every option of a command (= nextvit <command> --help)\n"
      "       nextvit --help           this, then every command's options\n"
      "       nextvit --version        version, build type, CPU ISA path, CUDA and cuDNN\n"
      "\ncommands:\n";
  for (const Command& c : all_commands()) {
    s += "  " + c.name + std::string(c.name.size() < 10 ? 10 - c.name.size() : 1, ' ') + c.summary +
         "\n";
  }
  s += "\nmodels: nextvit_fmnist, nextvit_small, nextvit_base, nextvit_large, or a JSON "
       "configuration file\n";
  return s;
}

std::string full_help() {
  std::string s = overview();
  for (const Command& c : all_commands()) {
    s += "\n" + std::string(80, '-') + "\n" + c.make()->options.help();
  }
  return s;
}

bool is_help(const char* a) {
  return !std::strcmp(a, "--help") || !std::strcmp(a, "-h");
}

}  // namespace

int run_main(int argc, char** argv, std::FILE* out, std::FILE* err) {
  if (argc < 2) {
    std::fputs(overview().c_str(), err);
    return 2;
  }
  const std::string first = argv[1];
  if (is_help(argv[1]) || (first == "help" && argc == 2)) {
    std::fputs(full_help().c_str(), out);
    return 0;
  }
  if (first == "--version" || first == "-V") {
    std::fputs(version_text().c_str(), out);
    return 0;
  }
  if (first == "help") {
    const Command* c = find_command(argv[2]);
    if (c == nullptr) {
      std::fputs(unknown_command(argv[2]).c_str(), err);
      return 2;
    }
    std::fputs(c->make()->options.help().c_str(), out);
    return 0;
  }
  const Command* c = find_command(first);
  if (c == nullptr) {
    std::fputs((unknown_command(first) + "\n" + overview()).c_str(), err);
    return 2;
  }
  try {
    std::unique_ptr<CommandInstance> instance = c->make();
    if (!instance->options.parse(argc, argv, 2)) {
      std::fputs(instance->options.help().c_str(), out);
      return 0;
    }
    std::fflush(out);
    return instance->run();
  } catch (const std::exception& e) {
    // Option errors already start with "nextvit CMD: "; say it once.
    const std::string program = "nextvit " + first + ": ";
    std::string message = e.what();
    if (message.rfind(program, 0) == 0) message = message.substr(program.size());
    std::fprintf(err, "nextvit %s: error: %s\n", first.c_str(), message.c_str());
    return 1;
  }
}

}  // namespace nextvit::cli
