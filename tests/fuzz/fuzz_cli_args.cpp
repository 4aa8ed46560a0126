// Command-line arguments of `nextvit train`: the input is split at NUL bytes into argv.
#include <vector>

#include "cli/train_options.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz::run([&] {
    std::vector<std::string> words{"nextvit", "train"};
    std::string current;
    for (size_t i = 0; i < size; ++i) {
      if (data[i] == 0) {
        words.push_back(current);
        current.clear();
      } else {
        current.push_back(static_cast<char>(data[i]));
      }
    }
    if (!current.empty()) words.push_back(current);
    std::vector<char*> argv;
    for (auto& w : words) argv.push_back(w.data());
    int threads = 0;
    (void)nextvit::cli::parse_train_options(static_cast<int>(argv.size()), argv.data(), &threads);
  });
}
