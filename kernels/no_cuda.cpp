// The CUDA side of NV_DISPATCH in a build without CUDA.
#include "core/error.h"
#include "kernels/dispatch.h"

namespace nextvit::kernels {

void no_cuda(const char* kernel) {
  NV_FAIL(
      "{}: the tensor is on a CUDA device but nextvit was built without CUDA (configure "
      "with -DNEXTVIT_CUDA=ON on a machine with the CUDA toolkit)",
      kernel);
}

}  // namespace nextvit::kernels
