// The profiler (core/profiler.h): exclusive attribution of nested scopes, checked exactly with
// the manual clock; the profile of a reduced Next-ViT (models/profile.h) adds up and names every
// counted part; `nextvit profile --json` runs and parses; on a CUDA device (the emulator in the
// EMULATE build) it times with events.
#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <fstream>

#include "core/profiler.h"
#include "models/nextvit_info.h"
#include "models/profile.h"
#include "test_util.h"

using namespace nextvit;
using profiler::OpKind;
using profiler::Phase;

namespace {

double sum_ms(const std::vector<ProfileRow>& rows, bool depth0_only) {
  double ms = 0;
  for (const ProfileRow& r : rows) {
    if (!depth0_only || r.depth == 0) ms += r.total_ms();
  }
  return ms;
}

ProfileOptions small_options(bool train, Device device = Device::cpu()) {
  ProfileOptions o;
  o.batch = 2;
  o.height = o.width = 64;
  o.train = train;
  o.device = device;
  o.warmup = 1;
  o.iterations = 2;
  return o;
}

}  // namespace

TEST_CASE("profiler: nested scopes attribute time exclusively and tile the step", "[profiler]") {
  const int block = profiler::intern("test.block"), part = profiler::intern("test.block.part");
  profiler::Session s(profiler::Session::Clock::Manual);
  REQUIRE_FALSE(profiler::enabled());
  s.begin_step();
  REQUIRE(profiler::enabled());
  s.advance(1000);  // outside any module
  {
    profiler::ModuleScope b(block);
    s.advance(2000);  // the block's own time
    {
      profiler::ModuleScope p(part);
      {
        profiler::OpScope gemm(OpKind::Gemm);
        s.advance(5000);
        {
          profiler::OpScope copy(OpKind::Copies);  // an op inside an op counts for the inner
          s.advance(700);
        }
        s.advance(300);
        profiler::add_bytes(64);
        REQUIRE(profiler::current().module == part);
        REQUIRE(profiler::current().kind == OpKind::Gemm);
      }
      s.advance(400);  // the part, between ops
    }
    {
      profiler::Scope back({part, OpKind::Gemm, Phase::Backward});  // as autograd does
      s.advance(9000);
    }
    s.advance(100);
  }
  const double step = s.end_step();
  REQUIRE_FALSE(profiler::enabled());

  REQUIRE(step == Approx(0.0185));  // 18 500 ns
  REQUIRE(s.cell(-1, OpKind::None, Phase::Forward).ms == Approx(0.001));
  REQUIRE(s.cell(block, OpKind::None, Phase::Forward).ms == Approx(0.0021));
  REQUIRE(s.cell(part, OpKind::None, Phase::Forward).ms == Approx(0.0004));
  REQUIRE(s.cell(part, OpKind::Gemm, Phase::Forward).ms == Approx(0.0053));
  REQUIRE(s.cell(part, OpKind::Copies, Phase::Forward).ms == Approx(0.0007));
  REQUIRE(s.cell(part, OpKind::Gemm, Phase::Backward).ms == Approx(0.009));
  REQUIRE(s.cell(part, OpKind::Gemm, Phase::Forward).bytes == 64);
  REQUIRE(s.cell(part, OpKind::Gemm, Phase::Forward).calls == 1);
  REQUIRE(s.cell(block, OpKind::None, Phase::Forward).calls == 1);
  REQUIRE(s.marks_per_step() == 2 + 2 * 5);
  REQUIRE(s.total_ms() == Approx(step));
}

TEST_CASE("profiler: disabled scopes record nothing, and misuse is an error", "[profiler]") {
  const int id = profiler::intern("test.idle");
  {
    profiler::ModuleScope m(id);  // no session: nothing happens
    profiler::OpScope op(OpKind::Gemm);
    profiler::add_bytes(10);
    REQUIRE_FALSE(profiler::enabled());
  }
  profiler::Session a(profiler::Session::Clock::Manual), b(profiler::Session::Clock::Manual);
  a.begin_step();
  REQUIRE_THROWS_WITH(b.begin_step(), Catch::Contains("already recording"));
  a.end_step();
  REQUIRE(a.cell(id, OpKind::None, Phase::Forward).calls == 0);
  REQUIRE_THROWS_WITH(b.end_step(), Catch::Contains("without begin_step"));
}

TEST_CASE("profile: a reduced Next-ViT's rows add up to the step and name every part",
          "[profiler][model]") {
  const NextViTConfig c = test::reduced_config("nextvit_reduced", 3, 10);
  NextViT model(c, 5);
  const ProfileReport r = profile_model(model, small_options(true));
  REQUIRE(r.profiled_step_ms > 0);
  // The intervals tile the step: layers (top level) and kinds both sum to it.
  REQUIRE(sum_ms(r.kinds, false) == Approx(r.profiled_step_ms).epsilon(1e-6));
  REQUIRE(sum_ms(r.layers, true) == Approx(r.profiled_step_ms).epsilon(1e-6));
  // Every part with counted MACs ran under its own scope, forward and backward.
  const ModelInfo info = analyze(model, 64, 64);
  for (const PartMacs& p : info.parts) {
    INFO(p.path);
    bool found = false;
    for (const ProfileRow& row : r.layers) {
      if (row.name != p.path) continue;
      found = true;
      REQUIRE(row.forward_calls >= 1);
      REQUIRE(row.backward_ms > 0);
      REQUIRE(row.macs >= p.macs * 2);
    }
    REQUIRE(found);
  }
  int64_t layer_macs = 0, kind_macs = 0;
  for (const ProfileRow& row : r.layers) layer_macs += row.depth == 0 ? row.macs : 0;
  for (const ProfileRow& row : r.kinds) kind_macs += row.macs;
  REQUIRE(layer_macs == info.macs * 2);
  REQUIRE(kind_macs == info.macs * 2);
  // Each kind with MACs spent time, and so did the ops the step runs.
  for (const ProfileRow& row : r.kinds) {
    INFO(row.name);
    if (row.macs > 0) REQUIRE(row.forward_ms > 0);
  }
  REQUIRE(r.op_ms > 0);
  REQUIRE(r.op_share_paired > 0);
  REQUIRE(r.op_ms < r.profiled_step_ms);
  REQUIRE(r.marks_per_step > 100);
  REQUIRE(r.mark_cost_ns > 0);
}

TEST_CASE("profile: an eval forward has no backward time", "[profiler][model]") {
  NextViT model(test::reduced_config("nextvit_reduced", 3, 10), 5);
  const ProfileReport r = profile_model(model, small_options(false));
  REQUIRE(sum_ms(r.kinds, false) == Approx(r.profiled_step_ms).epsilon(1e-6));
  for (const ProfileRow& row : r.kinds) REQUIRE(row.backward_ms == 0);
  // In eval on the CPU, E-MHSA's linear layers run (and are counted) as 1x1 convolutions: the
  // GEMM row holds the classifier alone, and the MACs of the kinds still add up to the model's.
  const ModelInfo info = analyze(model, 64, 64);
  int64_t head_macs = 0, kind_macs = 0;
  for (const PartMacs& p : info.parts) head_macs += p.path == "head" ? p.macs : 0;
  for (const ProfileRow& row : r.kinds) {
    kind_macs += row.macs;
    if (row.name != profiler::kind_name(OpKind::Gemm)) continue;
    REQUIRE(row.forward_calls == 1);
    REQUIRE(row.macs == head_macs * 2);
  }
  REQUIRE(kind_macs == info.macs * 2);
  REQUIRE_THROWS_WITH(profile_model(model,
                                    [] {
                                      ProfileOptions o = small_options(false);
                                      o.iterations = 0;
                                      return o;
                                    }()),
                      Catch::Contains("iterations"));
}

TEST_CASE("cuda: profile times a reduced Next-ViT with events", "[cuda][profiler]") {
  if (!cuda_available()) return;
  NextViT model(test::reduced_config("nextvit_reduced", 3, 10), 5);
  // The emulator is slow: an eval forward of one image, one warm-up and one timed pair (the
  // backward's attribution is the same code as on the CPU, tested above).
  ProfileOptions o = small_options(false, Device::cuda());
  o.batch = 1;
  o.iterations = 1;
  const ProfileReport r = profile_model(model, o);
  REQUIRE(r.clock == "CUDA events");
  REQUIRE(r.profiled_step_ms > 0);
  REQUIRE(sum_ms(r.kinds, false) == Approx(r.profiled_step_ms).epsilon(1e-5));
  REQUIRE(sum_ms(r.layers, true) == Approx(r.profiled_step_ms).epsilon(1e-5));
  for (const ProfileRow& row : r.kinds) {
    INFO(row.name);
    if (row.macs > 0) REQUIRE(row.forward_ms > 0);
  }
}

#ifdef NEXTVIT_CLI_BINARY
TEST_CASE("cli: nextvit profile --json on a reduced model parses", "[profiler][cli]") {
  test::TempDir dir("profile");
  const std::string config = dir.file("reduced.json"), out = dir.file("profile.json");
  std::ofstream(config) << test::reduced_config("nextvit_reduced", 3, 10).to_json().dump();
  const std::string cmd = std::string("'") + NEXTVIT_CLI_BINARY + "' profile --model '" + config +
                          "' --img 64 64 --batch 2 --train --warmup 0 --iterations 1 --json"
                          " --out '" +
                          out + "' 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string stdout_text;
  std::array<char, 4096> buf{};
  while (fgets(buf.data(), int(buf.size()), p)) stdout_text += buf.data();
  REQUIRE(pclose(p) == 0);
  const nlohmann::json j = nlohmann::json::parse(stdout_text);
  REQUIRE(j.at("model") == "nextvit_reduced");
  REQUIRE(j.at("mode") == "train");
  REQUIRE(j.at("environment").at("threads").get<int>() >= 1);
  double kinds = 0;
  for (const auto& k : j.at("kinds")) {
    kinds += k.at("forward_ms").get<double>() + k.at("backward_ms").get<double>();
  }
  REQUIRE(kinds == Approx(j.at("profiled_step_ms").at("mean").get<double>()).epsilon(1e-6));
  std::ifstream saved(out);
  REQUIRE(nlohmann::json::parse(saved) == j);  // --out writes the same numbers
}
#endif
