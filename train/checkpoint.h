#pragma once
// Training checkpoints: everything a run needs to continue exactly where it stopped.
//
// DIR/checkpoint.safetensors holds the tensors -- "model.<name>" (parameters and buffers),
// "optim.<state name>", "ema.<name>" when an EMA is kept, "rng.drop_path" (the drop-path
// generator's four state words) -- and, in its __metadata__ under "nextvit", a JSON document with
// the epoch, the optimizer step, the data loader's position, the model configuration and the
// training options. DIR/checkpoint.json is a readable copy of that JSON. DIR/model.safetensors
// holds the weights alone, in the official layout, for `nextvit forward` and `nextvit eval`.
//
// Every file is written to a temporary name and renamed over the old one, so a crash while
// saving leaves the previous checkpoint intact.
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "models/nextvit.h"
#include "train/data/loader.h"
#include "train/optim/ema.h"
#include "train/optim/optimizer.h"

namespace nextvit {

struct CheckpointInfo {
  int64_t epoch = 0;  // epochs completed
  int64_t step = 0;   // optimizer steps taken
  data::LoaderPosition loader;
  nlohmann::json config;   // NextViTConfig::to_json()
  nlohmann::json options;  // the trainer's options, for the record and for resume checks
  nlohmann::json history = nlohmann::json::array();  // one object per finished epoch
  // The __metadata__ of model.safetensors (models/model_metadata.h: configuration, eval
  // transform, class names), so that the weights file describes itself. Not read back.
  std::map<std::string, std::string> model_metadata;
};

void save_checkpoint(const std::string& dir, const NextViT& model, const Optimizer& optimizer,
                     const ModelEma* ema, const CheckpointInfo& info);

// Reads DIR/checkpoint.safetensors into the model, optimizer and EMA (which must be built with
// the same configuration) and returns its info. Throws if anything is missing or mismatched.
CheckpointInfo load_checkpoint(const std::string& dir, NextViT& model, Optimizer& optimizer,
                               ModelEma* ema);

// Just the info (to rebuild the model before loading).
CheckpointInfo read_checkpoint_info(const std::string& dir);

bool checkpoint_exists(const std::string& dir);

}  // namespace nextvit
