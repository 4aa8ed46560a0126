// train/optim/: SGD and AdamW against the textbook formulas (in double) and torch.optim, weight
// decay groups, schedules, gradient clipping, model EMA and optimizer checkpointing.
//
// The torch reference values were produced on the development machine (torch 2.x, CPU) by a
// script of this shape, printing with "{:.9g}":
//   p = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0, 0.0]))
//   opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=...)
//      or torch.optim.AdamW([p], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
//   for g in kGrads: p.grad = torch.tensor(g); opt.step(); print(p)
//   torch.nn.utils.clip_grad_norm_([a, b], max_norm=1.0)   # a, b as in the clipping test
//   torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=100, pct_start=0.3[,
//       three_phase=True]), reading param_groups[0]['lr'] before each step
#include <cmath>
#include <memory>

#include "autograd/ops.h"
#include "autograd/tensor_ops.h"
#include "layers/module.h"
#include "test_util.h"
#include "train/optim/adamw.h"
#include "train/optim/ema.h"
#include "train/optim/grad_clip.h"
#include "train/optim/schedule.h"
#include "train/optim/sgd.h"

#ifdef NEXTVIT_CUDA_EMULATED
#include <nvemu.h>
#endif

using namespace nextvit;

namespace {

using Vec = std::vector<double>;

const std::vector<float> kP0 = {0.5f, -1.0f, 2.0f, 0.0f};
const std::vector<std::vector<float>> kGrads = {
    {0.1f, -0.2f, 0.3f, 0.0f}, {-0.05f, 0.4f, 0.25f, 1.0f}, {0.2f, 0.1f, -0.3f, -0.5f}};

std::vector<ParamGroup> one_group(const Variable& p, double weight_decay) {
  return {ParamGroup{"all", {{"w", p}}, weight_decay, 1.0}};
}

// Runs kGrads through `opt`, returning the parameter after every step.
std::vector<std::vector<float>> run_steps(Optimizer& opt, const Variable& p) {
  std::vector<std::vector<float>> out;
  for (const auto& g : kGrads) {
    p.set_grad(Tensor::from_vector(g, {4}));
    opt.step();
    out.push_back(p.data().to_vector());
  }
  return out;
}

void require_near(const std::vector<float>& actual, const Vec& expected, double tol) {
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    INFO("element " << i << ": got " << actual[i] << " expected " << expected[i]);
    REQUIRE(std::fabs(double(actual[i]) - expected[i]) <= tol * (1.0 + std::fabs(expected[i])));
  }
}

// A small network with the parameter kinds of Next-ViT: conv weight (4-D), linear weight (2-D),
// biases and BatchNorm affine parameters (1-D), BatchNorm buffers including an i64 counter.
struct TinyConv : Module {
  TinyConv() {
    weight = register_parameter("weight", Tensor::full({2, 1, 3, 3}, 0.5f));
    bias = register_parameter("bias", Tensor::full({2}, 0.25f));
  }
  Variable weight, bias;
};
struct TinyBn : Module {
  TinyBn() {
    weight = register_parameter("weight", Tensor::ones({2}));
    bias = register_parameter("bias", Tensor::zeros({2}));
    running_mean = Tensor::zeros({2});
    running_var = Tensor::ones({2});
    num_batches_tracked = Tensor::zeros({}, DType::I64);
    register_buffer("running_mean", &running_mean);
    register_buffer("running_var", &running_var);
    register_buffer("num_batches_tracked", &num_batches_tracked);
  }
  Variable weight, bias;
  Tensor running_mean, running_var, num_batches_tracked;
};
struct TinyLinear : Module {
  TinyLinear() {
    weight = register_parameter("weight", Tensor::full({3, 2}, -1.0f));
    bias = register_parameter("bias", Tensor::full({3}, 2.0f));
  }
  Variable weight, bias;
};
struct TinyNet : Module {
  TinyNet() {
    conv = register_module("conv", std::make_shared<TinyConv>());
    norm = register_module("norm", std::make_shared<TinyBn>());
    head = register_module("head", std::make_shared<TinyLinear>());
  }
  std::shared_ptr<TinyConv> conv;
  std::shared_ptr<TinyBn> norm;
  std::shared_ptr<TinyLinear> head;
};

std::vector<std::string> names_of(const ParamGroup& g) {
  std::vector<std::string> out;
  for (const auto& [name, p] : g.params) out.push_back(name);
  return out;
}

}  // namespace

TEST_CASE("sgd: momentum steps match the textbook formula and torch.optim.SGD", "[optim]") {
  const double lr = 0.1, momentum = 0.9, wd = 0.01;
  for (bool nesterov : {false, true}) {
    INFO("nesterov " << nesterov);
    Variable p(Tensor::from_vector(kP0, {4}), true);
    Sgd opt(one_group(p, wd), SgdOptions{lr, momentum, 0.0, nesterov});
    const auto got = run_steps(opt, p);

    // torch.optim.SGD's algorithm, in double.
    Vec x(kP0.begin(), kP0.end()), buf(4);
    for (size_t s = 0; s < kGrads.size(); ++s) {
      for (size_t i = 0; i < 4; ++i) {
        double d = kGrads[s][i] + wd * x[i];
        buf[i] = s == 0 ? d : momentum * buf[i] + d;
        d = nesterov ? d + momentum * buf[i] : buf[i];
        x[i] -= lr * d;
      }
      require_near(got[s], x, 1e-6);
    }
    // torch.optim.SGD after steps 1 and 3.
    if (!nesterov) {
      require_near(got[0], {0.489499986, -0.978999972, 1.96800005, 0}, 1e-6);
      require_near(got[2], {0.45963037, -1.02623069, 1.89012861, -0.139899999}, 1e-6);
    } else {
      require_near(got[0], {0.480049998, -0.960099995, 1.93920004, 0}, 1e-6);
      require_near(got[2], {0.437227309, -1.05064631, 1.87040889, -0.175638989}, 1e-6);
    }
    const auto state = opt.state_dict();
    REQUIRE(state.size() == 1);
    REQUIRE(state[0].first == "sgd.w.momentum_buffer");
    require_near(state[0].second.to_vector(), buf, 1e-6);
  }
}

TEST_CASE("sgd: without momentum it keeps no state and dampening scales the buffer", "[optim]") {
  Variable p(Tensor::from_vector(kP0, {4}), true);
  Sgd plain(one_group(p, 0.0), SgdOptions{0.5, 0.0, 0.0, false});
  const auto got = run_steps(plain, p);
  Vec x(kP0.begin(), kP0.end());
  for (size_t s = 0; s < kGrads.size(); ++s) {
    for (size_t i = 0; i < 4; ++i) x[i] -= 0.5 * kGrads[s][i];
  }
  require_near(got.back(), x, 1e-6);
  REQUIRE(plain.state_dict().empty());

  // Dampening applies from the second step on (the buffer starts as the raw gradient).
  Variable q(Tensor::from_vector(kP0, {4}), true);
  Sgd damped(one_group(q, 0.0), SgdOptions{0.1, 0.9, 0.5, false});
  const auto got_d = run_steps(damped, q);
  Vec y(kP0.begin(), kP0.end()), buf(4);
  for (size_t s = 0; s < kGrads.size(); ++s) {
    for (size_t i = 0; i < 4; ++i) {
      buf[i] = s == 0 ? kGrads[s][i] : 0.9 * buf[i] + 0.5 * kGrads[s][i];
      y[i] -= 0.1 * buf[i];
    }
  }
  require_near(got_d.back(), y, 1e-6);
}

TEST_CASE("adamw: steps match the textbook formula and torch.optim.AdamW", "[optim]") {
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.05;
  Variable p(Tensor::from_vector(kP0, {4}), true);
  AdamW opt(one_group(p, wd), AdamWOptions{lr, b1, b2, eps});
  const auto got = run_steps(opt, p);

  // Decoupled weight decay, then Adam with bias correction and eps outside the sqrt, in double.
  Vec x(kP0.begin(), kP0.end()), m(4), v(4);
  for (size_t s = 0; s < kGrads.size(); ++s) {
    const double t = double(s + 1);
    for (size_t i = 0; i < 4; ++i) {
      const double g = kGrads[s][i];
      x[i] *= 1.0 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      const double m_hat = m[i] / (1 - std::pow(b1, t)), v_hat = v[i] / (1 - std::pow(b2, t));
      x[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
    }
    // AdamW's update divides by sqrt(v) + eps: with g = 0 on the first step that is 0 / 1e-8,
    // so element 3 must stay exactly 0 there.
    require_near(got[s], x, 2e-6);
  }
  REQUIRE(got[0][3] == 0.0f);
  // torch.optim.AdamW after steps 1, 2 and 3, and its state after step 3.
  require_near(got[0], {0.489749998, -0.989499986, 1.98899996, 0}, 1e-6);
  require_near(got[1], {0.486841738, -0.992666245, 1.97809362, -0.00744136795}, 1e-6);
  require_near(got[2], {0.480017185, -0.996326447, 1.97492409, -0.00972405076}, 1e-6);
  const auto state = opt.state_dict();
  REQUIRE(state.size() == 3);
  REQUIRE(state[0].first == "adamw.w.exp_avg");
  REQUIRE(state[1].first == "adamw.w.exp_avg_sq");
  REQUIRE(state[2].first == "adamw.w.step");
  require_near(state[0].second.to_vector(),
               {0.0236000009, 0.0298000015, 0.0168000013, 0.0399999991}, 1e-6);
  require_near(state[1].second.to_vector(),
               {5.24775132e-05, 0.000209760052, 0.000242257607, 0.00124900008}, 1e-6);
  REQUIRE(state[2].second.to_vector_i64() == std::vector<int64_t>{3});
}

TEST_CASE("adamw: a large eps sits outside the sqrt and betas are honoured", "[optim]") {
  // eps = 0.05 is comparable to sqrt(v_hat), so moving it inside the sqrt (or dropping the bias
  // correction of v) changes the result at the 1e-3 level.
  const double lr = 0.01, b1 = 0.8, b2 = 0.99, eps = 0.05, wd = 0.5;
  Variable p(Tensor::from_vector(kP0, {4}), true);
  AdamW opt(one_group(p, wd), AdamWOptions{lr, b1, b2, eps});
  const auto got = run_steps(opt, p);
  Vec x(kP0.begin(), kP0.end()), m(4), v(4);
  for (size_t s = 0; s < kGrads.size(); ++s) {
    const double t = double(s + 1);
    for (size_t i = 0; i < 4; ++i) {
      const double g = kGrads[s][i];
      x[i] *= 1.0 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      x[i] -= lr / (1 - std::pow(b1, t)) * m[i] / (std::sqrt(v[i] / (1 - std::pow(b2, t))) + eps);
    }
  }
  require_near(got.back(), x, 1e-6);
  // torch.optim.AdamW(lr=0.01, betas=(0.8, 0.99), eps=0.05, weight_decay=0.5) after 3 steps.
  require_near(got.back(), {0.479625463, -0.984579086, 1.95222771, -0.00905029848}, 1e-6);
}

TEST_CASE("optim: parameters without a gradient are skipped and zero_grad drops gradients",
          "[optim]") {
  Variable a(Tensor::from_vector({1, 2}, {2}), true), b(Tensor::from_vector({3, 4}, {2}), true);
  AdamW opt({ParamGroup{"all", {{"a", a}, {"b", b}}, 0.1, 1.0}}, AdamWOptions{0.1});
  a.set_grad(Tensor::from_vector({1, 1}, {2}));
  opt.step();
  REQUIRE(b.data().to_vector() == std::vector<float>{3, 4});  // not even weight decay
  REQUIRE(a.data().to_vector() != std::vector<float>{1, 2});
  const auto state = opt.state_dict();
  REQUIRE(state.size() == 3);  // a's buffers only
  REQUIRE(state[0].first == "adamw.a.exp_avg");
  opt.zero_grad();
  REQUIRE_FALSE(a.grad().defined());
  opt.step();  // nothing has a gradient: nothing moves, but the step is counted
  REQUIRE(opt.step_count() == 2);
  REQUIRE(opt.state_dict()[2].second.to_vector_i64() == std::vector<int64_t>{1});
}

TEST_CASE("optim: weight decay groups exclude BatchNorm parameters and biases", "[optim]") {
  TinyNet net;
  auto groups = weight_decay_groups(net, 0.05);
  REQUIRE(groups.size() == 2);
  REQUIRE(groups[0].name == "no_decay");
  REQUIRE(groups[0].weight_decay == 0.0);
  REQUIRE(names_of(groups[0]) ==
          std::vector<std::string>{"conv.bias", "norm.weight", "norm.bias", "head.bias"});
  REQUIRE(groups[1].name == "decay");
  REQUIRE(groups[1].weight_decay == 0.05);
  REQUIRE(names_of(groups[1]) == std::vector<std::string>{"conv.weight", "head.weight"});

  // An explicit skip list and frozen parameters (timm's no_weight_decay, requires_grad False).
  net.head->bias.set_requires_grad(false);
  auto skipped = weight_decay_groups(net, 0.05, {"head.weight"});
  REQUIRE(names_of(skipped[0]) ==
          std::vector<std::string>{"conv.bias", "norm.weight", "norm.bias", "head.weight"});
  REQUIRE(names_of(skipped[1]) == std::vector<std::string>{"conv.weight"});
  net.head->bias.set_requires_grad(true);

  // With zero gradients AdamW's Adam part is 0 / (0 + eps) = 0, so only the decoupled decay
  // moves anything: decay-group weights shrink by 1 - lr * wd, the rest stay put.
  AdamW opt(groups, AdamWOptions{0.1});
  for (const auto& [name, p] : net.named_parameters()) p.set_grad(Tensor::zeros(p.shape()));
  opt.step();
  for (float w : net.conv->weight.data().to_vector()) REQUIRE(w == Approx(0.5 * (1 - 0.1 * 0.05)));
  for (float w : net.head->weight.data().to_vector()) REQUIRE(w == Approx(-1 * (1 - 0.1 * 0.05)));
  REQUIRE(net.conv->bias.data().to_vector() == std::vector<float>{0.25f, 0.25f});
  REQUIRE(net.norm->weight.data().to_vector() == std::vector<float>{1, 1});
  REQUIRE(net.head->bias.data().to_vector() == std::vector<float>{2, 2, 2});
}

TEST_CASE("optim: a group's lr_scale multiplies the base learning rate", "[optim]") {
  Variable a(Tensor::from_vector({1}, {1}), true), b(Tensor::from_vector({1}, {1}), true);
  Sgd opt({ParamGroup{"full", {{"a", a}}, 0.0, 1.0}, ParamGroup{"half", {{"b", b}}, 0.0, 0.5}},
          SgdOptions{1.0, 0.0, 0.0, false});
  opt.set_lr(0.2);
  a.set_grad(Tensor::from_vector({1}, {1}));
  b.set_grad(Tensor::from_vector({1}, {1}));
  opt.step();
  REQUIRE(a.data().item() == Approx(0.8f));
  REQUIRE(b.data().item() == Approx(0.9f));
}

TEST_CASE("optim: bad options and inputs throw errors that name the optimizer", "[optim]") {
  Variable p(Tensor::from_vector(kP0, {4}), true);
  REQUIRE_THROWS_WITH(Sgd(one_group(p, 0.0), SgdOptions{0.1, 0.9, 0.5, true}),
                      Catch::Contains("sgd: nesterov needs momentum > 0 and dampening 0"));
  REQUIRE_THROWS_WITH(AdamW(one_group(p, 0.0), AdamWOptions{1e-3, 0.9, 1.0, 1e-8}),
                      Catch::Contains("adamw: betas must lie in [0, 1)"));
  REQUIRE_THROWS_WITH(AdamW({ParamGroup{"g", {{"w", p}, {"w", p}}, 0.0, 1.0}}),
                      Catch::Contains("adamw: parameter 'w' appears twice"));
  AdamW opt(one_group(p, 0.0));
  REQUIRE_THROWS_WITH(opt.set_lr(-1.0), Catch::Contains("adamw: learning rate must be"));
  p.set_grad(Tensor::zeros({3}));
  REQUIRE_THROWS_WITH(
      opt.step(), Catch::Contains("adamw: parameter 'w' (4,) has gradient f32 with shape (3,)"));
  REQUIRE(p.data().to_vector() == kP0);
  REQUIRE(opt.step_count() == 0);
}

TEST_CASE("optim: state_dict round trip gives identical subsequent steps", "[optim]") {
  Generator gen(11);
  auto check = [&](auto make) {
    // Two parameters, the second without a gradient on the first step, so their step counts
    // differ and the per-parameter counter matters.
    Variable a(test::random_tensor({3, 4}, gen), true), b(test::random_tensor({5}, gen), true);
    auto opt = make(std::vector<ParamGroup>{ParamGroup{"decay", {{"layer.weight", a}}, 0.05, 1.0},
                                            ParamGroup{"no_decay", {{"layer.bias", b}}, 0.0, 1.0}});
    std::vector<Tensor> grads_a, grads_b;
    for (int s = 0; s < 5; ++s) {
      grads_a.push_back(test::random_tensor({3, 4}, gen));
      grads_b.push_back(test::random_tensor({5}, gen));
    }
    for (int s = 0; s < 3; ++s) {
      a.set_grad(grads_a[s].clone());
      if (s > 0) b.set_grad(grads_b[s].clone());
      opt->step();
    }
    // "Save": copies of the state, as a checkpoint file would hold, and of the parameters.
    Optimizer::NamedTensors saved;
    for (const auto& [name, t] : opt->state_dict()) saved.emplace_back(name, t.clone());
    const int64_t saved_step = opt->step_count();
    Variable a2(a.data().clone(), true), b2(b.data().clone(), true);
    auto resumed =
        make(std::vector<ParamGroup>{ParamGroup{"decay", {{"layer.weight", a2}}, 0.05, 1.0},
                                     ParamGroup{"no_decay", {{"layer.bias", b2}}, 0.0, 1.0}});
    // Reversed order: loading matches by name, not position.
    resumed->load_state_dict(Optimizer::NamedTensors(saved.rbegin(), saved.rend()), saved_step);
    REQUIRE(resumed->step_count() == 3);
    for (int s = 3; s < 5; ++s) {
      a.set_grad(grads_a[s].clone());
      b.set_grad(grads_b[s].clone());
      a2.set_grad(grads_a[s].clone());
      b2.set_grad(grads_b[s].clone());
      opt->step();
      resumed->step();
    }
    // Bitwise identical: the loaded state is the same numbers, not an approximation.
    REQUIRE(a.data().to_vector() == a2.data().to_vector());
    REQUIRE(b.data().to_vector() == b2.data().to_vector());
    const auto s1 = opt->state_dict(), s2 = resumed->state_dict();
    REQUIRE(s1.size() == s2.size());
    for (size_t i = 0; i < s1.size(); ++i) {
      REQUIRE(s1[i].first == s2[i].first);
      if (s1[i].second.dtype() == DType::I64) {
        REQUIRE(s1[i].second.to_vector_i64() == s2[i].second.to_vector_i64());
      } else {
        REQUIRE(s1[i].second.to_vector() == s2[i].second.to_vector());
      }
    }
    // The loaded optimizer holds copies: the caller's tensors are untouched by its steps.
    REQUIRE_FALSE(saved[0].second.shares_storage(s2[0].second));
    return saved;
  };
  const auto adam_state = check([](std::vector<ParamGroup> g) {
    return std::make_unique<AdamW>(std::move(g), AdamWOptions{0.01});
  });
  REQUIRE(adam_state.size() == 6);
  REQUIRE(adam_state[0].first == "adamw.layer.weight.exp_avg");
  REQUIRE(adam_state[5].first == "adamw.layer.bias.step");
  REQUIRE(adam_state[2].second.to_vector_i64() == std::vector<int64_t>{3});
  REQUIRE(adam_state[5].second.to_vector_i64() == std::vector<int64_t>{2});
  const auto sgd_state = check([](std::vector<ParamGroup> g) {
    return std::make_unique<Sgd>(std::move(g), SgdOptions{0.1, 0.9, 0.0, true});
  });
  REQUIRE(sgd_state.size() == 2);
  REQUIRE(sgd_state[0].first == "sgd.layer.weight.momentum_buffer");
}

TEST_CASE("optim: load_state_dict rejects state that does not fit", "[optim]") {
  Variable w(Tensor::zeros({2, 3}), true);
  AdamW opt({ParamGroup{"g", {{"fc.weight", w}}, 0.0, 1.0}});
  const Tensor m = Tensor::zeros({2, 3}), step = Tensor::from_vector_i64({4}, {1});
  REQUIRE_THROWS_WITH(opt.load_state_dict({{"sgd.fc.weight.momentum_buffer", m}}, 0),
                      Catch::Contains("not state of this optimizer"));
  REQUIRE_THROWS_WITH(opt.load_state_dict({{"adamw.fc.bias.exp_avg", m}}, 0),
                      Catch::Contains("unknown parameter 'fc.bias'"));
  REQUIRE_THROWS_WITH(opt.load_state_dict({{"adamw.fc.weight.momentum", m}}, 0),
                      Catch::Contains("names no known buffer"));
  REQUIRE_THROWS_WITH(
      opt.load_state_dict({{"adamw.fc.weight.exp_avg", Tensor::zeros({3, 2})}}, 0),
      Catch::Contains("'adamw.fc.weight.exp_avg' is f32 (3, 2), expected f32 (2, 3)"));
  REQUIRE_THROWS_WITH(
      opt.load_state_dict({{"adamw.fc.weight.exp_avg", m}, {"adamw.fc.weight.step", step}}, 0),
      Catch::Contains("has state but no 'adamw.fc.weight.exp_avg_sq'"));
  // A complete state loads; its step counter continues from 4.
  opt.load_state_dict({{"adamw.fc.weight.exp_avg", m},
                       {"adamw.fc.weight.exp_avg_sq", m},
                       {"adamw.fc.weight.step", step}},
                      7);
  REQUIRE(opt.step_count() == 7);
  w.set_grad(Tensor::ones({2, 3}));
  opt.step();
  REQUIRE(opt.state_dict()[2].second.to_vector_i64() == std::vector<int64_t>{5});
}

TEST_CASE("schedule: cosine with linear warm-up at key steps", "[optim]") {
  CosineScheduleOptions o;
  o.base_lr = 1e-3;
  o.min_lr = 1e-5;
  o.warmup_lr = 1e-6;
  o.warmup_steps = 10;
  o.total_steps = 110;
  CosineSchedule s(o);
  REQUIRE(s.lr_at(0) == 1e-6);  // start of warm-up
  REQUIRE(s.lr_at(5) == Approx(1e-6 + (1e-3 - 1e-6) * 0.5).epsilon(1e-12));
  REQUIRE(s.lr_at(10) == Approx(1e-3).epsilon(1e-12));               // end of warm-up: base
  REQUIRE(s.lr_at(60) == Approx((1e-3 + 1e-5) / 2).epsilon(1e-12));  // middle of the cosine
  const double quarter = 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + std::cos(std::acos(-1.0) * 0.25));
  REQUIRE(s.lr_at(35) == Approx(quarter).epsilon(1e-12));
  REQUIRE(s.lr_at(110) == 1e-5);  // end: min_lr
  REQUIRE(s.lr_at(1000) == 1e-5);
  REQUIRE(s.lr_at(109) > 1e-5);
  for (int64_t t = 10; t < 110; ++t) REQUIRE(s.lr_at(t + 1) <= s.lr_at(t));
  // Pure function of the step: asking again (a resumed run) gives the same bits.
  CosineSchedule again(o);
  REQUIRE(again.lr_at(37) == s.lr_at(37));

  o.warmup_steps = 0;
  REQUIRE(CosineSchedule(o).lr_at(0) == 1e-3);
  o.warmup_steps = 200;
  REQUIRE_THROWS_WITH(CosineSchedule(o), Catch::Contains("warmup_steps 200 total_steps 110"));
  o.warmup_steps = 10;
  REQUIRE_THROWS_WITH(s.lr_at(-1), Catch::Contains("step -1 is negative"));
}

TEST_CASE("schedule: one-cycle matches torch OneCycleLR", "[optim]") {
  OneCycleOptions o;
  o.max_lr = 0.1;
  o.total_steps = 100;
  OneCycleSchedule s(o);
  REQUIRE(s.lr_at(0) == Approx(0.004).epsilon(1e-12));
  REQUIRE(s.lr_at(10) == Approx(0.0295163948464).epsilon(1e-10));
  REQUIRE(s.lr_at(29) == Approx(0.1).epsilon(1e-12));
  REQUIRE(s.lr_at(50) == Approx(0.0793893450576).epsilon(1e-10));
  REQUIRE(s.lr_at(99) == Approx(4e-7).epsilon(1e-9));
  REQUIRE(s.lr_at(150) == Approx(4e-7).epsilon(1e-9));
  o.three_phase = true;
  OneCycleSchedule t(o);
  REQUIRE(t.lr_at(29) == Approx(0.1).epsilon(1e-12));
  REQUIRE(t.lr_at(45) == Approx(0.0442344641655).epsilon(1e-10));
  REQUIRE(t.lr_at(58) == Approx(0.004).epsilon(1e-12));
  REQUIRE(t.lr_at(80) == Approx(0.00177085608589).epsilon(1e-10));
  REQUIRE(t.lr_at(99) == Approx(4e-7).epsilon(1e-9));
  o.total_steps = 2;
  o.three_phase = false;
  REQUIRE_THROWS_WITH(OneCycleSchedule(o), Catch::Contains("leaves phase 1 empty"));
}

TEST_CASE("clip_grad_norm: matches a hand computation and torch", "[optim]") {
  Variable a(Tensor::zeros({2, 2}), true), b(Tensor::zeros({3}), true), c(Tensor::zeros({2}), true);
  a.set_grad(Tensor::from_vector({1.0f, -2.0f, 0.5f, 3.0f}, {2, 2}));
  b.set_grad(Tensor::from_vector({0.25f, -1.5f, 2.0f}, {3}));
  // c has no gradient: it neither counts nor gets one.
  const double sq = 1 + 4 + 0.25 + 9 + 0.0625 + 2.25 + 4, norm = std::sqrt(sq);  // 4.534589...
  REQUIRE(grad_norm({a, b, c}) == Approx(norm).epsilon(1e-7));
  const float got = clip_grad_norm({a, b, c}, 1.0f);
  REQUIRE(got == Approx(4.53458929).epsilon(1e-7));  // torch's total_norm
  REQUIRE(got == Approx(norm).epsilon(1e-7));
  const double coef = 1.0 / (norm + 1e-6);
  require_near(a.grad().to_vector(), {1 * coef, -2 * coef, 0.5 * coef, 3 * coef}, 1e-6);
  require_near(b.grad().to_vector(), {0.25 * coef, -1.5 * coef, 2 * coef}, 1e-6);
  // torch's clipped gradients.
  require_near(a.grad().to_vector(), {0.220527098, -0.441054195, 0.110263549, 0.661581278}, 1e-6);
  require_near(b.grad().to_vector(), {0.0551317744, -0.330790639, 0.441054195}, 1e-6);
  REQUIRE_FALSE(c.grad().defined());
  REQUIRE(grad_norm({a, b}) == Approx(1.0).epsilon(1e-5));

  // Below max_norm nothing changes.
  const std::vector<float> before = a.grad().to_vector();
  REQUIRE(clip_grad_norm({a, b}, 10.0f) == Approx(1.0).epsilon(1e-5));
  REQUIRE(a.grad().to_vector() == before);
  REQUIRE(grad_norm({c}) == 0.0f);
  REQUIRE_THROWS_WITH(clip_grad_norm({a}, 0.0f),
                      Catch::Contains("max_norm must be finite and > 0"));
}

TEST_CASE("clip_grad_norm: a non-finite norm is reported so training can stop", "[optim]") {
  Variable a(Tensor::zeros({3}), true);
  a.set_grad(Tensor::from_vector({1.0f, NAN, 2.0f}, {3}));
  const float n = clip_grad_norm({a}, 1.0f);
  REQUIRE(std::isnan(n));
  REQUIRE_THROWS_WITH(check_grad_norm_finite(n, 1234),
                      Catch::Contains("gradient norm is nan at step 1234"));
  a.set_grad(Tensor::from_vector({1.0f, INFINITY, 2.0f}, {3}));
  REQUIRE_THROWS_WITH(check_grad_norm_finite(grad_norm({a}), 7), Catch::Contains("inf at step 7"));
  REQUIRE_NOTHROW(check_grad_norm_finite(3.5f, 8));
}

TEST_CASE("ema: averages float state and copies integer buffers", "[optim]") {
  TinyNet net;
  ModelEma ema(net, 0.9);
  // The EMA starts as a copy, not an alias, of the model's state.
  REQUIRE(ema.state_dict().size() == net.state_dict().size());
  REQUIRE_FALSE(ema.state_dict()[0].second.shares_storage(net.conv->weight.data()));

  // Two updates after the weights move: ema = 0.9 ema + 0.1 value each time.
  net.conv->weight.data().fill_(1.5f);  // from 0.5
  net.norm->running_mean.fill_(2.0f);   // from 0
  net.norm->num_batches_tracked.data<int64_t>()[0] = 5;
  ema.update(net);
  net.conv->weight.data().fill_(-0.5f);
  ema.update(net);
  auto find = [&](const std::string& name) {
    for (const auto& [n, t] : ema.state_dict()) {
      if (n == name) return t;
    }
    FAIL("no EMA entry " << name);
    return Tensor();
  };
  const double w = 0.9 * (0.9 * 0.5 + 0.1 * 1.5) + 0.1 * -0.5;  // 0.49
  for (float v : find("conv.weight").to_vector()) REQUIRE(v == Approx(w).epsilon(1e-6));
  const double rm = 0.9 * (0.1 * 2.0) + 0.1 * 2.0;  // 0.38
  for (float v : find("norm.running_mean").to_vector()) REQUIRE(v == Approx(rm).epsilon(1e-6));
  REQUIRE(find("norm.num_batches_tracked").to_vector_i64() == std::vector<int64_t>{5});
  for (float v : find("head.bias").to_vector()) REQUIRE(v == Approx(2.0f));  // unchanged weights

  // copy_to loads the average into a second instance for evaluation.
  TinyNet eval_net;
  ema.copy_to(eval_net);
  for (float v : eval_net.conv->weight.data().to_vector()) REQUIRE(v == Approx(w).epsilon(1e-6));
  REQUIRE(eval_net.norm->num_batches_tracked.to_vector_i64() == std::vector<int64_t>{5});

  // Checkpoint round trip: a fresh EMA loaded from copies continues identically.
  ModelEma::NamedTensors saved;
  for (const auto& [name, t] : ema.state_dict()) saved.emplace_back(name, t.clone());
  ModelEma resumed(eval_net, 0.9);
  resumed.load_state_dict(ModelEma::NamedTensors(saved.rbegin(), saved.rend()));
  ema.update(net);
  resumed.update(net);
  for (size_t i = 0; i < saved.size(); ++i) {
    const Tensor &x = ema.state_dict()[i].second, &y = resumed.state_dict()[i].second;
    if (x.dtype() == DType::F32) REQUIRE(x.to_vector() == y.to_vector());
  }

  REQUIRE_THROWS_WITH(ModelEma(net, 1.5), Catch::Contains("decay must lie in [0, 1]"));
  saved.pop_back();
  REQUIRE_THROWS_WITH(resumed.load_state_dict(saved), Catch::Contains("got 8 tensors"));
  TinyConv other;
  REQUIRE_THROWS_WITH(ema.update(other), Catch::Contains("model has 2 tensors, the EMA holds 9"));
}

TEST_CASE("cuda: optimizer kernels agree with the CPU", "[optim][cuda]") {
  if (!cuda_available()) {
    WARN("no CUDA device: skipped");
    return;
  }
  Generator gen(5);
  const Tensor p0 = test::random_tensor({1000, 37}, gen);
  std::vector<Tensor> grads;
  for (int s = 0; s < 3; ++s) grads.push_back(test::random_tensor({1000, 37}, gen));
  auto run = [&](Device dev, auto make) {
    Variable p(p0.to(dev).clone(), true);
    auto opt = make(std::vector<ParamGroup>{ParamGroup{"g", {{"w", p}}, 0.05, 1.0}});
    for (const Tensor& g : grads) {
      p.set_grad(g.to(dev).clone());
      const float norm = clip_grad_norm({p}, 5.0f);
      REQUIRE(std::isfinite(norm));
      opt->step();
    }
    return p.data().cpu();
  };
  auto adamw = [](std::vector<ParamGroup> g) {
    return std::make_unique<AdamW>(std::move(g), AdamWOptions{0.01});
  };
  auto sgd = [](std::vector<ParamGroup> g) {
    return std::make_unique<Sgd>(std::move(g), SgdOptions{0.1, 0.9, 0.0, true});
  };
  NV_REQUIRE_CLOSE(run(Device::cuda(), adamw), run(Device::cpu(), adamw), 1e-5, 1e-6);
  NV_REQUIRE_CLOSE(run(Device::cuda(), sgd), run(Device::cpu(), sgd), 1e-5, 1e-6);

  TinyNet net, net_gpu;
  net_gpu.to(Device::cuda());
  ModelEma ema(net, 0.99), ema_gpu(net_gpu, 0.99);
  net.conv->weight.data().fill_(3.0f);
  net_gpu.conv->weight.data().fill_(3.0f);
  ema.update(net);
  ema_gpu.update(net_gpu);
  NV_REQUIRE_CLOSE(ema_gpu.state_dict()[0].second.cpu(), ema.state_dict()[0].second, 1e-6, 1e-7);
}

// ---- multi-tensor apply (issue 10 item 7): one launch per step for all parameters ----------

namespace {

// Parameter shapes of the multi-tensor tests: scalars' size up to one that spans two chunks of
// the CUDA kernels (32768 elements each) and ends inside the second.
const std::vector<Shape> kListShapes = {{1}, {3}, {37}, {8, 125}, {40000}, {2, 3, 5, 7}};

ops::TensorList random_list(Generator& g, Device dev, float lo = -1.0f, float hi = 1.0f) {
  ops::TensorList out;
  for (const Shape& s : kListShapes) out.push_back(test::random_tensor(s, g, lo, hi).to(dev));
  return out;
}
ops::TensorList clones(const ops::TensorList& l) {
  ops::TensorList out;
  for (const Tensor& t : l) out.push_back(t.clone());
  return out;
}
ops::TensorList one(const ops::TensorList& l, size_t k) {
  return {l[k]};
}
void require_same_bits(const ops::TensorList& a, const ops::TensorList& b) {
  for (size_t k = 0; k < a.size(); ++k) {
    INFO("tensor " << k);
    REQUIRE(a[k].cpu().to_vector() == b[k].cpu().to_vector());
  }
}

// Kernel launches made by f() (emulated device; -1 elsewhere, where nobody counts them).
template <typename F>
int64_t launches_of(F&& f) {
#ifdef NEXTVIT_CUDA_EMULATED
  const int64_t before = nvemu::kernel_launches();
  f();
  return nvemu::kernel_launches() - before;
#else
  f();
  return -1;
#endif
}
bool counts_launches() {
#ifdef NEXTVIT_CUDA_EMULATED
  return true;
#else
  return false;
#endif
}

}  // namespace

TEST_CASE("cuda: multi-tensor steps launch once and equal one call per tensor to the bit",
          "[optim][cuda]") {
  if (!cuda_available()) {
    WARN("no CUDA device: skipped");
    return;
  }
  const Device dev = Device::cuda();
  const size_t n = kListShapes.size();
  const int64_t expected = counts_launches() ? 1 : -1;
  Generator gen(21);
  const ops::TensorList p = random_list(gen, dev), g = random_list(gen, dev),
                        m = random_list(gen, dev, -0.1f, 0.1f),
                        v = random_list(gen, dev, 0.0f, 0.01f);
  SECTION("adamw") {
    std::vector<kernels::AdamWHyper> h(n);
    for (size_t k = 0; k < n; ++k) {  // per-tensor scalars, as parameters of different steps
      h[k].decay_factor = 1.0f - 0.001f * float(k);
      h[k].step_size = 0.01f / float(k + 1);
      h[k].one_minus_beta1 = k == 2 ? 0.7f : 0.1f;  // both branches of torch's lerp
    }
    const ops::TensorList p1 = clones(p), m1 = clones(m), v1 = clones(v);
    const ops::TensorList p2 = clones(p), m2 = clones(m), v2 = clones(v);
    REQUIRE(launches_of([&] { ops::adamw_step_(p1, g, m1, v1, h); }) == expected);
    for (size_t k = 0; k < n; ++k) {
      ops::adamw_step_(one(p2, k), one(g, k), one(m2, k), one(v2, k), {h[k]});
    }
    require_same_bits(p1, p2);
    require_same_bits(m1, m2);
    require_same_bits(v1, v2);
  }
  SECTION("sgd") {
    std::vector<kernels::SgdHyper> h(n);
    for (size_t k = 0; k < n; ++k) {
      h[k].lr = 0.1f;
      h[k].momentum = 0.9f;
      h[k].weight_decay = k % 2 ? 0.01f : 0.0f;
      h[k].nesterov = k % 3 == 0;
      h[k].init_buffer = k == 1;
    }
    const ops::TensorList p1 = clones(p), m1 = clones(m), p2 = clones(p), m2 = clones(m);
    REQUIRE(launches_of([&] { ops::sgd_step_(p1, g, m1, h); }) == expected);
    for (size_t k = 0; k < n; ++k) ops::sgd_step_(one(p2, k), one(g, k), one(m2, k), {h[k]});
    require_same_bits(p1, p2);
    require_same_bits(m1, m2);
  }
  SECTION("ema") {
    const ops::TensorList e1 = clones(m), e2 = clones(m);
    REQUIRE(launches_of([&] { ops::ema_update_(e1, p, 0.99f, 0.01f); }) == expected);
    for (size_t k = 0; k < n; ++k) ops::ema_update_(one(e2, k), one(p, k), 0.99f, 0.01f);
    require_same_bits(e1, e2);
  }
  SECTION("clipping: the device's scaling is the host's, the norm the same on every run") {
    const ops::TensorList g1 = clones(g), g2 = clones(g);
    Tensor norm;
    // Partial sums, their total with the coefficient, the scaling: three, whatever the count.
    REQUIRE(launches_of([&] { norm = ops::clip_norm_(g1, 0.5f); }) == (counts_launches() ? 3 : -1));
    const float nrm = norm.item();
    REQUIRE(ops::global_norm(g).item() == nrm);  // fixed-order sums: the same bits
    const float coef = 0.5f / (nrm + 1e-6f);
    REQUIRE(coef < 1.0f);
    for (const Tensor& t : g2) ops::scale_(t, coef);
    require_same_bits(g1, g2);
    double sum = 0.0;
    for (const Tensor& t : g) {
      for (float x : t.cpu().to_vector()) sum += double(x) * x;
    }
    REQUIRE(nrm == Approx(std::sqrt(sum)).epsilon(1e-6));
  }
}

TEST_CASE("cuda: an optimizer step is one launch for all parameters and matches the CPU",
          "[optim][cuda]") {
  if (!cuda_available()) {
    WARN("no CUDA device: skipped");
    return;
  }
  const size_t n = kListShapes.size();
  std::vector<Tensor> inputs;  // parameters, then gradients
  Generator gen(22);
  for (int pass = 0; pass < 2; ++pass) {
    for (const Shape& s : kListShapes) inputs.push_back(test::random_tensor(s, gen));
  }
  // Two groups (with and without weight decay), two steps of clipping, the optimizer and the
  // EMA; the result is every parameter and EMA value, flattened. On the device the second step
  // of AdamW and SGD (whose state exists by then) must be a single launch.
  auto run = [&](const char* kind) {
    return [&, kind](const std::vector<Variable>& in, Device dev) {
      std::vector<Variable> params;
      ParamGroup decay{"decay", {}, 0.05, 1.0}, no_decay{"no_decay", {}, 0.0, 1.0};
      for (size_t k = 0; k < n; ++k) {
        params.emplace_back(in[k].data().clone(), true);
        (k % 2 ? decay : no_decay).params.emplace_back("p" + std::to_string(k), params.back());
      }
      std::unique_ptr<Optimizer> opt;
      if (std::string(kind) == "adamw") {
        opt = std::make_unique<AdamW>(std::vector<ParamGroup>{no_decay, decay}, AdamWOptions{0.01});
      } else {
        opt = std::make_unique<Sgd>(std::vector<ParamGroup>{no_decay, decay},
                                    SgdOptions{0.1, 0.9, 0.0, true});
      }
      TinyLinear ema_source;
      ema_source.to(dev);
      ModelEma ema(ema_source, 0.9);
      for (int step = 0; step < 2; ++step) {
        for (size_t k = 0; k < n; ++k) {
          params[k].set_grad(ops::scale(in[n + k], float(step + 1)).data().clone());
        }
        clip_grad_norm_on_device(params, 1.0f);
        const int64_t launches = launches_of([&] { opt->step(); });
        if (dev.is_cuda() && step == 1 && counts_launches()) REQUIRE(launches == 1);
        ema_source.weight.data().copy_(
            params[3].data().reshape({-1}).narrow(0, 0, 6).reshape({3, 2}));
        const int64_t ema_launches = launches_of([&] { ema.update(ema_source); });
        if (dev.is_cuda() && counts_launches()) REQUIRE(ema_launches == 1);
      }
      std::vector<Variable> flat;
      for (const Variable& p : params) flat.push_back(ops::reshape(p, {-1}));
      for (const auto& [name, t] : ema.state_dict()) {
        flat.push_back(ops::reshape(Variable(t), {-1}));
      }
      return ops::concat(flat, 0);
    };
  };
  test::check_backends("adamw", run("adamw"), inputs, 1e-5, 1e-6, false);
  test::check_backends("sgd", run("sgd"), inputs, 1e-5, 1e-6, false);
}
