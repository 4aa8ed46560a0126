#pragma once
// Block: what the model's `features` list holds (an NCB or an NTB): maps NCHW to NCHW.
#include "layers/module.h"

namespace nextvit {

class Block : public Module {
 public:
  virtual Variable forward(const Variable& x) = 0;
};

}  // namespace nextvit
