// Builds the Fashion-MNIST Next-ViT from the installed package and runs one forward pass:
// proof that the headers, libraries and CMake package of `cmake --install` work on their own.
#include <cmath>
#include <cstdio>

#include "autograd/variable.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "models/nextvit.h"

int main() {
  using namespace nextvit;
  NextViT model(NextViTConfig::fmnist(), 1);
  model.eval();
  Generator g(2);
  Tensor x = Tensor::empty({2, 3, 28, 28});
  fill_uniform(x, g, -0.5f, 0.5f);
  NoGradGuard no_grad;
  const Tensor y = model.forward(Variable(x)).data();
  bool finite = y.dim() == 2 && y.shape()[0] == 2 && y.shape()[1] == 10;
  for (float v : y.to_vector()) finite = finite && std::isfinite(v);
  std::printf("consumer: logits (%lld, %lld), %s\n", (long long)y.shape()[0],
              (long long)y.shape()[1], finite ? "finite" : "NOT FINITE");
  return finite ? 0 : 1;
}
