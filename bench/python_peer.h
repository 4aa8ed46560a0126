#pragma once
// A PyTorch baseline that runs beside the benchmark instead of after it, so that both sides can
// be timed in alternating rounds. On a shared machine the other tenants' load comes and goes in
// bursts of seconds; timing all of ours and then all of PyTorch's puts a burst on one side only
// (two sequential runs of bench_cpu_forward gave ratios of 0.99 and 0.72 on the same build).
// Alternating short rounds, ours then PyTorch's then ours..., spreads every burst over both.
//
// The peer is `python3 FILE` with its standard input and output on two pipes. The script (made
// by python_peer_script from a setup part and a step part) builds its model, runs its warm-up
// steps, prints one JSON line {"ready": true, "version": ...}, and then answers commands, one
// per line:
//   "run N"  -> runs N timed steps and prints {"ms": [N step times in milliseconds]}
//   "quit"   -> prints {"rss_base_mib": ..., "rss_peak_mib": ...} and exits.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "bench_util.h"

namespace nextvit::bench {

// The peer's Python program. `imports` runs first (the modules the setup needs; their memory is
// not the model's), then rss_base is taken, then `setup` runs once: it must define `step()`, a
// function doing one step, and may read sys.argv. Uses vm() of kPythonProcStatus.
inline std::string python_peer_script(const std::string& imports, const std::string& setup,
                                      int warmup) {
  return std::string(kPythonProcStatus) + "import json, sys, time\n" + imports +
         "import torch\n"
         "rss_base = vm('VmRSS')\n" +
         setup + "for _ in range(" + std::to_string(warmup) + "):\n" +
         "    step()\n"
         "print(json.dumps(dict(ready=True, version=torch.__version__)), flush=True)\n"
         "for line in sys.stdin:\n"
         "    cmd = line.split()\n"
         "    if cmd and cmd[0] == 'run':\n"
         "        ms = []\n"
         "        for _ in range(int(cmd[1])):\n"
         "            t0 = time.perf_counter(); step(); t1 = time.perf_counter()\n"
         "            ms.append((t1 - t0) * 1e3)\n"
         "        print(json.dumps(dict(ms=ms)), flush=True)\n"
         "    else:\n"
         "        break\n"
         "print(json.dumps(dict(rss_base_mib=rss_base, rss_peak_mib=vm('VmHWM'))), flush=True)\n";
}

class PythonPeer {
 public:
  // Starts `python3 SCRIPT ARGS...` and waits for its ready line; ok() says whether it came.
  PythonPeer(const std::string& script, const std::vector<std::string>& args) {
    char path[] = "/tmp/nextvit_peer_XXXXXX";
    const int fd = mkstemp(path);
    if (fd < 0) return;
    close(fd);
    path_ = path;
    std::ofstream(path_) << script;
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0) return;
    if (pipe(from_child) != 0) {
      close(to_child[0]);
      close(to_child[1]);
      return;
    }
    pid_ = fork();
    if (pid_ == 0) {  // the child: stdin from to_child, stdout to from_child, stderr dropped
      dup2(to_child[0], 0);
      dup2(from_child[1], 1);
      if (std::FILE* null = std::fopen("/dev/null", "w")) dup2(fileno(null), 2);
      close(to_child[0]);
      close(to_child[1]);
      close(from_child[0]);
      close(from_child[1]);
      std::vector<std::string> argv_s = {"python3", path_};
      argv_s.insert(argv_s.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : argv_s) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp("python3", argv.data());
      _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    if (pid_ < 0) {
      close(to_child[1]);
      close(from_child[0]);
      return;
    }
    // A peer that dies makes our next write fail with EPIPE (then run() says so), not kill us.
    signal(SIGPIPE, SIG_IGN);
    in_ = fdopen(to_child[1], "w");
    out_ = fdopen(from_child[0], "r");
    const nlohmann::json ready = read_line();
    if (ready.is_object() && ready.value("ready", false)) {
      version_ = ready.value("version", "");
      ok_ = true;
    }
  }

  ~PythonPeer() {
    if (in_ != nullptr) std::fclose(in_);
    if (out_ != nullptr) std::fclose(out_);
    if (pid_ > 0) {
      if (!finished_) kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (!path_.empty()) std::remove(path_.c_str());
  }
  PythonPeer(const PythonPeer&) = delete;
  PythonPeer& operator=(const PythonPeer&) = delete;

  bool ok() const { return ok_; }
  const std::string& torch_version() const { return version_; }

  // Times n steps; appends their milliseconds to ms. False (and the peer unusable) on failure.
  bool run(int n, std::vector<double>& ms) {
    if (!ok_) return false;
    std::fprintf(in_, "run %d\n", n);
    std::fflush(in_);
    const nlohmann::json j = read_line();
    if (!j.is_object() || !j.contains("ms") || j["ms"].size() != size_t(n)) return ok_ = false;
    for (const auto& v : j["ms"]) ms.push_back(v.get<double>());
    return true;
  }

  // Ends the peer and reads its memory figures.
  bool quit(Memory& memory) {
    if (!ok_) return false;
    std::fputs("quit\n", in_);
    std::fflush(in_);
    const nlohmann::json j = read_line();
    ok_ = false;
    if (!j.is_object() || !j.contains("rss_peak_mib")) return false;
    memory.base_mib = j["rss_base_mib"].get<double>();
    memory.peak_mib = j["rss_peak_mib"].get<double>();
    finished_ = true;
    return true;
  }

 private:
  // The next line of the peer's output that parses as JSON (others, e.g. warnings printed to
  // stdout by a library, are skipped); null at end of output.
  nlohmann::json read_line() {
    if (out_ == nullptr) return nullptr;
    std::string line;
    int c;
    while ((c = std::fgetc(out_)) != EOF) {
      if (c != '\n') {
        line.push_back(char(c));
        continue;
      }
      if (!line.empty() && line[0] == '{') {
        try {
          return nlohmann::json::parse(line);
        } catch (...) {
        }
      }
      line.clear();
    }
    return nullptr;
  }

  std::string path_, version_;
  pid_t pid_ = -1;
  std::FILE* in_ = nullptr;
  std::FILE* out_ = nullptr;
  bool ok_ = false, finished_ = false;
};

// Ours and the peer's step times from alternating rounds, and each round's time ratio.
struct Alternation {
  std::vector<double> ours_ms, peer_ms;
  std::vector<double> round_ratios;  // median of ours / median of the peer's, per round
  int rounds = 0, steps_per_round = 0;
};

inline double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// `rounds` rounds of `steps` timed steps of ours (f) and of the peer; who goes first alternates
// from round to round. Each side's turn starts with one untimed step: it refills the caches the
// other side's turn evicted and lets the other side's idle OpenMP threads stop spinning. False
// when the peer fails; what ran is kept.
inline bool alternate(const std::function<void()>& f, PythonPeer& peer, int rounds, int steps,
                      Alternation& out) {
  out.rounds = rounds;
  out.steps_per_round = steps;
  for (int r = 0; r < rounds; ++r) {
    std::vector<double> ours, theirs, untimed;
    auto our_turn = [&] {
      f();
      time_runs(f, steps, ours);
    };
    auto peer_turn = [&] { return peer.run(1, untimed) && peer.run(steps, theirs); };
    if (r % 2 == 0) {
      our_turn();
      if (!peer_turn()) return false;
    } else {
      if (!peer_turn()) return false;
      our_turn();
    }
    out.round_ratios.push_back(median_of(ours) / median_of(theirs));
    out.ours_ms.insert(out.ours_ms.end(), ours.begin(), ours.end());
    out.peer_ms.insert(out.peer_ms.end(), theirs.begin(), theirs.end());
  }
  return true;
}

// A benchmark's timed part: `step` against the peer made of `imports` and `setup` (started with
// `args`) in `rounds` alternating rounds of `per_round` steps. When the peer does not start or
// fails (no python3, torch or model; `missing` names what is needed, said on stderr), ours is
// timed alone for as many steps. Returns whether alt.peer_ms and peer_memory hold the peer's
// figures.
inline bool time_against_peer(const std::function<void()>& step, bool use_peer,
                              const std::string& imports, const std::string& setup,
                              const std::vector<std::string>& args, int rounds, int per_round,
                              const char* missing, Alternation& alt, Memory& peer_memory) {
  if (use_peer) {
    PythonPeer peer(python_peer_script(imports, setup, 2), args);
    if (peer.ok() && alternate(step, peer, rounds, per_round, alt) && peer.quit(peer_memory)) {
      return true;
    }
    std::fprintf(stderr, "PyTorch baseline unavailable (needs %s): timing nextvit alone\n",
                 missing);
  }
  alt = Alternation{};
  time_runs(step, rounds * per_round, alt.ours_ms);
  return false;
}

}  // namespace nextvit::bench
