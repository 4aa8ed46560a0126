#pragma once
// Shared by the benchmark programs: robust timing statistics, the machine's description, and
// running a Python baseline (PyTorch) in the same run.
#include <omp.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace nextvit::bench {

struct Timing {
  double median_ms = 0, p90_ms = 0, min_ms = 0;
  int runs = 0;
};

// Resident memory of a process, in MiB: `base` before the model was built, `peak` the high-water
// mark after the timed steps (VmHWM), so peak - base is what the model, its gradients, the
// optimizer's state and the steps' activations and workspaces took at most.
struct Memory {
  double base_mib = 0, peak_mib = 0;
  double step_mib() const { return peak_mib - base_mib; }
};

// A field of /proc/self/status in MiB ("VmRSS": resident now, "VmHWM": its peak), 0 if absent.
// VmHWM belongs to the address space, so a child started with exec (the PyTorch baseline)
// starts its own; getrusage's ru_maxrss would carry the parent's peak across exec.
inline double proc_status_mib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::atof(line.c_str() + key.size() + 1) / 1024.0;
  }
  return 0.0;
}

// The same measurement in the Python baseline: defines vm(key); the script sets
// rss_base = vm('VmRSS') before building its model and reports rss_base_mib and rss_peak_mib.
constexpr const char* kPythonProcStatus =
    "def vm(key):\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith(key + ':'): return int(line.split()[1]) / 1024.0\n"
    "    return 0.0\n";

// Summary of a list of step times in milliseconds.
inline Timing summarize(std::vector<double> ms) {
  Timing t;
  if (ms.empty()) return t;
  std::sort(ms.begin(), ms.end());
  t.runs = static_cast<int>(ms.size());
  t.min_ms = ms.front();
  t.median_ms = ms[ms.size() / 2];
  t.p90_ms = ms[std::min(ms.size() - 1, static_cast<size_t>(0.9 * ms.size()))];
  return t;
}

// Times f `runs` times and appends the wall times (ms) to ms.
inline void time_runs(const std::function<void()>& f, int runs, std::vector<double>& ms) {
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
}

// Runs f `warmup` times untimed, then `runs` times, and summarises the wall times.
inline Timing time_it(const std::function<void()>& f, int warmup, int runs) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> ms;
  time_runs(f, runs, ms);
  return summarize(std::move(ms));
}

inline std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

// Runs a shell command and returns its standard output ("" when it fails).
inline std::string run_command(const std::string& cmd, int* status = nullptr) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int st = pclose(p);
  if (status) *status = st;
  return out;
}

// A Python baseline: writes `script` (Python that prints one JSON object last) to a temporary
// file, runs it as `python3 FILE ARGS` from the current directory, and returns that object, or
// null when python3 or the script fails (its stderr is dropped; the caller says what is missing).
inline nlohmann::json run_python_json(const std::string& script, const std::string& args) {
  char path[] = "/tmp/nextvit_bench_XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return nullptr;
  close(fd);
  std::ofstream(path) << script;
  const std::string result =
      run_command(std::string("python3 ") + path + " " + args + " 2>/dev/null");
  std::remove(path);
  const size_t start =
      result.rfind("\n{") == std::string::npos ? result.find('{') : result.rfind("\n{") + 1;
  try {
    return nlohmann::json::parse(result.substr(start));
  } catch (...) {
    return nullptr;
  }
}

inline std::string today() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", std::gmtime(&t));
  return buf;
}

}  // namespace nextvit::bench
