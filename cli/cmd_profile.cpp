// nextvit profile: where the time of a step goes, per layer and per op kind (models/profile.h),
// as a table or, with --json, one JSON object with the environment.
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "common_options.h"
#include "core/threads.h"
#include "models/memory_estimate.h"
#include "models/profile.h"

namespace nextvit::cli {
namespace {

// Achieved rates; 0 when there is nothing to divide.
double gflops(int64_t macs, double ms) {
  return macs > 0 && ms > 0 ? 2.0 * macs / (ms * 1e6) : 0;
}
double gbytes(int64_t bytes, double ms) {
  return bytes > 0 && ms > 0 ? bytes / (ms * 1e6) : 0;
}
// A backward computes the input and the weight gradient, each costing the forward's MACs.
constexpr int kBackwardMacFactor = 2;

std::string first_line_of(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (key.empty()) return line;
    if (line.rfind(key, 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

nlohmann::json environment(const ProfileReport& r) {
  char date[32];
  const std::time_t t = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return {{"date", date},
          {"device", r.options.device.str()},
          {"cpu", first_line_of("/proc/cpuinfo", "model name")},
          {"threads", r.threads},
          {"load_average", first_line_of("/proc/loadavg", "")},
          {"omp_wait_policy", std::getenv("OMP_WAIT_POLICY") ? std::getenv("OMP_WAIT_POLICY") : ""},
          {"compiler", __VERSION__},
#ifdef NDEBUG
          {"build", "release"},
#else
          {"build", "debug"},
#endif
          {"clock", r.clock}};
}

nlohmann::json row_json(const ProfileRow& row) {
  return {{"name", row.name},
          {"depth", row.depth},
          {"forward_ms", row.forward_ms},
          {"backward_ms", row.backward_ms},
          {"forward_calls", row.forward_calls},
          {"backward_calls", row.backward_calls},
          {"macs", row.macs},
          {"forward_bytes", row.forward_bytes},
          {"backward_bytes", row.backward_bytes}};
}

nlohmann::json report_json(const ProfileReport& r) {
  nlohmann::json layers = nlohmann::json::array(), kinds = nlohmann::json::array();
  for (const ProfileRow& row : r.layers) layers.push_back(row_json(row));
  for (const ProfileRow& row : r.kinds) kinds.push_back(row_json(row));
  const ProfileOptions& o = r.options;
  return {
      {"model", r.model},
      {"image", {o.height, o.width}},
      {"batch", o.batch},
      {"mode", o.train ? "train" : "eval"},
      {"warmup", o.warmup},
      {"iterations", o.iterations},
      {"environment", environment(r)},
      {"step_ms", {{"mean", r.step_ms}, {"median", r.step_median_ms}}},
      {"profiled_step_ms", {{"mean", r.profiled_step_ms}, {"median", r.profiled_step_median_ms}}},
      {"op_ms", {{"mean", r.op_ms}, {"median", r.op_median_ms}}},
      {"op_share_of_step",
       {{"mean", r.op_ms / r.step_ms},
        {"median", r.op_median_ms / r.step_median_ms},
        {"paired", r.op_share_paired}}},
      {"profiler",
       {{"marks_per_step", r.marks_per_step},
        {"mark_cost_ns", r.mark_cost_ns},
        {"overhead_ms", r.overhead_ms()}}},
      {"macs", r.macs},
      {"backward_mac_factor", kBackwardMacFactor},
      {"layers", layers},
      {"kinds", kinds}};
}

void print_header(const ProfileReport& r) {
  const ProfileOptions& o = r.options;
  std::printf("%s at %lldx%lld, batch %lld, %s, %s, %d threads; %d timed steps after %d warm-up\n",
              r.model.c_str(), (long long)o.height, (long long)o.width, (long long)o.batch,
              o.device.str().c_str(),
              o.train ? "train step (forward + cross-entropy + backward)" : "eval forward",
              r.threads, o.iterations, o.warmup);
  std::printf("timed with %s; %.3f GMACs forward per step\n\n", r.clock.c_str(), r.macs / 1e9);
  std::printf("                          mean ms  median ms\n");
  std::printf("step without profiler  %9.2f  %9.2f\n", r.step_ms, r.step_median_ms);
  std::printf(
      "step with profiler     %9.2f  %9.2f   its own cost: %lld marks x %.0f ns = %.3f ms\n",
      r.profiled_step_ms, r.profiled_step_median_ms, (long long)r.marks_per_step, r.mark_cost_ns,
      r.overhead_ms());
  std::printf(
      "time inside ops        %9.2f  %9.2f   = %.1f%% (mean), %.1f%% (median) of the step "
      "without profiler\n",
      r.op_ms, r.op_median_ms, 100.0 * r.op_ms / r.step_ms,
      100.0 * r.op_median_ms / r.step_median_ms);
  std::printf("%25s paired with the plain step before it: %.1f%% (median of %d pairs)\n\n", "",
              100.0 * r.op_share_paired, r.options.iterations);
}

void print_rows(const char* title, const std::vector<ProfileRow>& rows, const ProfileReport& r,
                bool kinds) {
  const bool train = r.options.train;
  std::printf("%-26s %9s %9s %6s %7s %9s %8s %8s%s\n", title, "fwd ms", train ? "bwd ms" : "",
              "share", kinds ? "calls" : "", "GMACs", "fwd GF/s", train ? "bwd GF/s" : "",
              kinds ? "     GB/s" : "");
  double fwd = 0, bwd = 0;
  for (const ProfileRow& row : rows) {
    if (row.depth == 0) fwd += row.forward_ms, bwd += row.backward_ms;
    const std::string name = std::string(row.depth * 2, ' ') + row.name;
    char bwd_ms[16] = "", bwd_rate[16] = "", calls[16] = "", rate[24] = "";
    if (train) {
      std::snprintf(bwd_ms, sizeof bwd_ms, "%9.2f", row.backward_ms);
      std::snprintf(bwd_rate, sizeof bwd_rate, "%8.1f",
                    gflops(kBackwardMacFactor * row.macs, row.backward_ms));
    }
    if (kinds) {
      std::snprintf(calls, sizeof calls, "%7lld",
                    (long long)(row.forward_calls + row.backward_calls));
      std::snprintf(rate, sizeof rate, " %8.2f",
                    gbytes(row.forward_bytes + row.backward_bytes, row.total_ms()));
    }
    std::printf("%-26s %9.2f %9s %5.1f%% %7s %9.3f %8.1f %8s%s\n", name.c_str(), row.forward_ms,
                bwd_ms, 100.0 * row.total_ms() / r.profiled_step_ms, calls, row.macs / 1e9,
                gflops(row.macs, row.forward_ms), bwd_rate, rate);
  }
  char bwd_total[16] = "";
  if (train) std::snprintf(bwd_total, sizeof bwd_total, "%9.2f", bwd);
  std::printf("%-26s %9.2f %9s %5.1f%%\n\n", "total", fwd, bwd_total,
              100.0 * (fwd + bwd) / r.profiled_step_ms);
}

void print_table(const ProfileReport& r) {
  print_header(r);
  print_rows("per layer", r.layers, r, false);
  print_rows("per op kind", r.kinds, r, true);
  std::printf(
      "share: of the profiled step. GMACs: forward, whole batch (convs, linears, attention "
      "products);\nbackward GF/s counts %dx the forward MACs. GB/s: the bytes ops read and write "
      "at least\n(inputs + outputs) over their time. \"other\": time inside no op (module glue, "
      "autograd).\n",
      kBackwardMacFactor);
}

struct ProfileValues {
  std::string model = "nextvit_small";
  int64_t height = 224, width = 224;
  int64_t batch = 1;
  Device device;
  bool train = false, json = false;
  std::string out;
  int threads = 0;  // 0: OpenMP's default
  int warmup = 2, iterations = 5;
  int64_t num_classes = 0;  // 0: the model's own
};

void declare(Options& o, ProfileValues& v) {
  model_option(o, &v.model);
  image_option(o, &v.height, &v.width);
  o.integer("batch", &v.batch, "B", 1, 1 << 20, "images per step");
  device_option(o, &v.device);
  o.flag("train", &v.train,
         "profile a training step (forward, cross-entropy, backward) instead of an eval forward");
  o.flag("json", &v.json, "print one JSON object (the numbers and the environment), no table");
  o.text("out", &v.out, "FILE.json", "also write the JSON to this file").shown_default("none");
  o.integer("threads", &v.threads, "N", 1, 4096, "CPU threads of the kernels")
      .shown_default("OMP_NUM_THREADS, else one per core");
  o.integer("warmup", &v.warmup, "N", 0, 1000, "untimed steps first");
  o.integer("iterations", &v.iterations, "N", 1, 10000,
            "timed pairs of steps (one without, one with the profiler)");
  num_classes_option(o, &v.num_classes);
}

int run(const ProfileValues& v) {
  NextViTConfig config = NextViTConfig::from_name(v.model);
  if (v.num_classes > 0) config.num_classes = v.num_classes;
  config.validate();
  ProfileOptions o;
  o.height = v.height;
  o.width = v.width;
  o.batch = v.batch;
  o.device = v.device;
  o.train = v.train;
  o.warmup = v.warmup;
  o.iterations = v.iterations;
  set_num_threads(v.threads);
  config.validate_input(o.height, o.width);
  check_memory_fits(config, o.batch, o.height, o.width, o.train, "profile");

  NextViT model(config);
  const ProfileReport r = profile_model(model, o);
  const nlohmann::json j = report_json(r);
  if (!v.out.empty()) {
    std::ofstream out(v.out);
    NV_CHECK(out << j.dump(2) << "\n", "profile: cannot write {}", v.out);
  }
  if (v.json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    print_table(r);
  }
  return 0;
}

}  // namespace

Command profile_command() {
  return make_command<ProfileValues>(
      "profile", "time of a step per layer and per op kind, with MACs and achieved rates", declare,
      run);
}

}  // namespace nextvit::cli
