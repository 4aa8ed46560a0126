#pragma once
// The subcommands of build/nextvit; each is one file in train/cli/.
namespace nextvit::cli {

int run_info(int argc, char** argv);
int run_forward(int argc, char** argv);
int run_train(int argc, char** argv);
int run_eval(int argc, char** argv);
int run_profile(int argc, char** argv);

}  // namespace nextvit::cli
