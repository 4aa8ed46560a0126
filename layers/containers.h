#pragma once
// ModuleList: children named "0", "1", ... as torch.nn.Sequential names them, so that
// "stem.2.conv.weight" and "features.7.mlp.conv1.bias" come out of the registry unchanged.
#include <memory>
#include <string>
#include <vector>

#include "layers/module.h"

namespace nextvit {

template <typename M>
class ModuleList : public Module {
 public:
  void push_back(std::shared_ptr<M> m) {
    items_.push_back(register_module(std::to_string(items_.size()), std::move(m)));
  }
  size_t size() const { return items_.size(); }
  M& operator[](size_t i) const { return *items_[i]; }
  typename std::vector<std::shared_ptr<M>>::const_iterator begin() const { return items_.begin(); }
  typename std::vector<std::shared_ptr<M>>::const_iterator end() const { return items_.end(); }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

}  // namespace nextvit
