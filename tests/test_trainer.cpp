// train/: short real training runs on Fashion-MNIST (Debian's dataset-fashion-mnist, installed
// by tools/setup.sh; the tests skip with a warning without it).
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/safetensors.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/data/fashion_mnist.h"
#include "train/trainer.h"

using namespace nextvit;
namespace fs = std::filesystem;

namespace {

bool have_fashion_mnist() {
  if (data::FashionMnist::available(data::Split::Train) &&
      data::FashionMnist::available(data::Split::Test)) {
    return true;
  }
  WARN("skipped: Fashion-MNIST not found (apt-get install dataset-fashion-mnist)");
  return false;
}

// A small, fast run: 384 training images in batches of 64, 6 steps an epoch.
TrainOptions small_run(const std::string& out) {
  TrainOptions o;
  // Per process: test suites of several build folders may run at once on one machine.
  o.out = out + "." + std::to_string(::getpid());
  o.batch = 64;
  o.epochs = 2;
  o.limit_train = 384;
  o.limit_eval = 256;
  o.workers = 0;
  o.quiet = true;
  o.lr = 2e-3;
  o.warmup_epochs = 0;
  o.seed = 7;
  fs::remove_all(o.out);
  return o;
}

// The lines of log.jsonl: per epoch (they have "eval_top1") or, with `steps`, per --log-every step.
std::vector<nlohmann::json> read_log(const std::string& out, bool steps = false) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(fs::path(out) / "log.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("eval_top1") != steps) lines.push_back(j);
  }
  return lines;
}

}  // namespace

TEST_CASE("trainer: a short run lowers the training loss and writes its outputs", "[trainer]") {
  if (!have_fashion_mnist()) return;
  TrainOptions o = small_run("/tmp/nextvit_test_train");
  o.epochs = 3;
  TrainResult r = train(o);
  REQUIRE(r.epochs_done == 3);
  REQUIRE(r.steps == 18);
  auto log = read_log(o.out);
  REQUIRE(log.size() == 3);
  REQUIRE(log[2]["train_loss"].get<double>() < log[0]["train_loss"].get<double>());
  REQUIRE(log[0]["train_loss"].get<double>() < 2.5);  // ln(10) = 2.30 at chance, + smoothing
  // --log-every 50 with 6 steps an epoch: a step line at each epoch's end, before its epoch line.
  auto steps = read_log(o.out, true);
  REQUIRE(steps.size() == 3);
  REQUIRE(steps[1]["step"] == 12);
  REQUIRE(steps[1]["epoch"].get<double>() == 2.0);
  REQUIRE(steps[1]["lr"].get<double>() > 0);
  REQUIRE(fs::exists(fs::path(o.out) / "checkpoint.safetensors"));
  REQUIRE(fs::exists(fs::path(o.out) / "checkpoint.json"));
  REQUIRE(fs::exists(fs::path(o.out) / "model.safetensors"));
  for (auto& e : fs::directory_iterator(o.out)) {
    REQUIRE(e.path().extension() != ".tmp");  // atomic writes leave no temporaries
  }
  // The saved weights score what training reported.
  EvalResult ev = evaluate("", o.out, "fashion-mnist", 28, 128, Device::cpu(), 256);
  REQUIRE(ev.images == 256);
  REQUIRE(ev.accuracy == Approx(r.final_accuracy).margin(1e-9));
}

TEST_CASE("trainer: a run interrupted and resumed ends with the same weights", "[trainer]") {
  if (!have_fashion_mnist()) return;
  TrainOptions full = small_run("/tmp/nextvit_test_full");
  full.drop_path = 0.1;  // so the drop-path generator's state matters too
  train(full);

  TrainOptions part = small_run("/tmp/nextvit_test_part");
  part.drop_path = 0.1;
  part.stop_after_steps = 4;  // mid-epoch 1
  REQUIRE(train(part).interrupted);
  part.stop_after_steps = 0;
  part.resume = true;
  TrainResult r = train(part);
  REQUIRE_FALSE(r.interrupted);
  REQUIRE(r.steps == 12);

  SafeTensors a = read_safetensors(full.out + "/model.safetensors");
  SafeTensors b = read_safetensors(part.out + "/model.safetensors");
  REQUIRE(a.size() == b.size());
  for (auto& [name, t] : a.tensors()) {
    INFO(name);
    const Tensor& u = b.at(name);
    if (t.dtype() == DType::F32) {
      REQUIRE(t.to_vector() == u.to_vector());  // bit for bit
    } else {
      REQUIRE(t.to_vector_i64() == u.to_vector_i64());
    }
  }
}

TEST_CASE("trainer: a diverging loss stops training and keeps the last good checkpoint",
          "[trainer]") {
  if (!have_fashion_mnist()) return;
  TrainOptions o = small_run("/tmp/nextvit_test_nan");
  o.lr = 1e30;  // the first update throws the weights to ~1e30: the next loss overflows
  o.checkpoint_every = 1;
  REQUIRE_THROWS_WITH(train(o), Catch::Contains("training diverged"));
  REQUIRE(checkpoint_exists(o.out));
  CheckpointInfo info = read_checkpoint_info(o.out);
  REQUIRE(info.step >= 1);
}

TEST_CASE("trainer: bad options are refused with clear messages", "[trainer]") {
  TrainOptions o;
  o.epochs = 0;
  REQUIRE_THROWS_WITH(train(o), Catch::Contains("epochs, batch and img must be > 0"));
  o = TrainOptions();
  o.optimizer = "lamb";
  REQUIRE_THROWS_WITH(train(o), Catch::Contains("--optimizer must be adamw or sgd"));
  o = TrainOptions();
  o.data = "/nonexistent";
  REQUIRE_THROWS_WITH(train(o), Catch::Contains("expected 'fashion-mnist' or a folder"));
}

TEST_CASE("trainer: resume compares settings as values, so new fields keep checkpoints usable",
          "[trainer]") {
  if (!have_fashion_mnist()) return;
  TrainOptions o = small_run("/tmp/nextvit_test_resume_fields");
  o.stop_after_steps = 2;
  REQUIRE(train(o).interrupted);
  // A checkpoint written before "ema_decay" and "in_channels" existed: their defaults apply.
  const std::string path = o.out + "/checkpoint.safetensors";
  SafeTensors file = read_safetensors(path);
  nlohmann::json info = nlohmann::json::parse(file.metadata.at("nextvit"));
  REQUIRE(info["options"].erase("ema_decay") == 1);
  REQUIRE(info["config"].erase("in_channels") == 1);
  file.metadata["nextvit"] = info.dump();
  write_safetensors(path, file);
  o.stop_after_steps = 3;
  o.resume = true;
  REQUIRE(train(o).steps == 3);
  // A setting that did change is named, with both values.
  o.lr = 1e-3;
  REQUIRE_THROWS_WITH(train(o), Catch::Contains("lr (0.002 then, 0.001 now)"));
}
