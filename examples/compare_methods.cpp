// The comparison of Lau et al. 2024 in miniature, on synthetic logistic regression: minibatch SGD, Local SGD
// and Local SHB with constant batches, the local and global norm tests, QSR and post-local SGD, all with the
// same sample budget. Prints one table row per variant (the demo until lgm-sim lands).
#include <cstdio>
#include <lgm/lgm.hpp>
#include <string>

namespace {

using namespace lgm;

const Logistic problem = Logistic::synthetic({.N = 20000, .d = 50, .lambda = 1e-4, .seed = 3});
constexpr Index kWorkers = 8;
Index kSamples = 2'000'000;  // --smoke: 200'000

AlphaBetaCost network(NetworkLink link) {
  return AlphaBetaCost({.network = link, .element_bytes = 4.0, .seconds_per_sample = 2e-6, .seconds_per_step = 1e-4});
}

template <class Method>
void row(const char* name, Method method) {
  const Vector x0 = Vector::Zero(problem.dim());
  method.options() = {.workers = kWorkers, .max_samples = kSamples, .threads = 2};
  method.sampler() = IidSampler(7);
  method.cost_model() = network(NetworkLink::ethernet_10g());
  const RunResult slow = method.run(problem, x0);
  method.cost_model() = network(NetworkLink::infiniband_100g());
  const RunResult fast = method.run(problem, x0);
  Index bmax = 0;
  for (Index m = 0; m < kWorkers; ++m) bmax = std::max(bmax, method.batch_rule().batch_size(m));
  std::printf("| %-28s | %9.3e | %6lld | %6lld | %8lld | %5lld | %9.2f | %8.3f | %8.3f |\n", name,
              full_loss(problem, slow.x) - problem.optimal_value(), (long long)slow.metrics.steps,
              (long long)slow.metrics.comm_rounds, (long long)slow.metrics.samples, (long long)bmax,
              slow.metrics.bytes / 1e6, slow.metrics.sim_time_s, fast.metrics.sim_time_s);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--smoke") kSamples = 200'000;
  std::printf("logistic regression, N = %lld, d = %lld, M = %lld workers, budget %lld samples\n\n",
              (long long)problem.num_samples(), (long long)problem.dim(), (long long)kWorkers, (long long)kSamples);
  std::printf("| %-28s | %-9s | %-6s | %-6s | %-8s | %-5s | %-9s | %-8s | %-8s |\n", "variant", "F(x)-F*", "steps",
              "rounds", "samples", "b_end", "MB/worker", "t 10G s", "t 100G s");
  std::printf("|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(30, '-').c_str(), std::string(11, '-').c_str(),
              std::string(8, '-').c_str(), std::string(8, '-').c_str(), std::string(10, '-').c_str(),
              std::string(7, '-').c_str(), std::string(11, '-').c_str(), std::string(10, '-').c_str(),
              std::string(10, '-').c_str());
  const double lr = 0.5;
  const AdaptiveBatchOptions adaptive{.b_min = 8, .b_max = 1024};
  row("minibatch SGD (H=1), b=32", MinibatchSGD({}, SGD{}, EveryStepSync{}, ConstantBatch{32}, ConstantLr{.lr = lr}));
  row("Local SGD H=16, b=8", LocalSGD({}, SGD{}, ConstantSync{16}, ConstantBatch{8}, ConstantLr{.lr = lr}));
  row("Local SGD H=16, b=256", LocalSGD({}, SGD{}, ConstantSync{16}, ConstantBatch{256}, ConstantLr{.lr = lr}));
  row("Local SHB H=16, b=8",
      LocalSHB({}, HeavyBall{.momentum = 0.9}, ConstantSync{16}, ConstantBatch{8}, ConstantLr{.lr = lr / 10}));
  row("Local SGD H=16, norm η=0.5",
      LocalSGDNormTest({}, SGD{}, ConstantSync{16}, NormTestRule(adaptive, NormTest{.eta = 0.5}),
                       ConstantLr{.lr = lr}));
  row("Local SGD H=16, norm η=1.0",
      LocalSGDNormTest({}, SGD{}, ConstantSync{16}, NormTestRule(adaptive, NormTest{.eta = 1.0}),
                       ConstantLr{.lr = lr}));
  row("Local SHB H=16, norm η=0.5",
      LocalSHBNormTest({}, HeavyBall{.momentum = 0.9}, ConstantSync{16}, NormTestRule(adaptive, NormTest{.eta = 0.5}),
                       ConstantLr{.lr = lr / 10}));
  AdaptiveBatchOptions global = adaptive;
  global.scope = TestScope::global;
  row("Local SGD H=16, global norm",
      LocalSGDNormTest({}, SGD{}, ConstantSync{16}, NormTestRule(global, NormTest{.eta = 0.5}), ConstantLr{.lr = lr}));
  // QSR counts warm-up in steps: the schedule is by steps here (8 workers × 32 samples a step)
  const Index steps = kSamples / (kWorkers * 32);
  row("Local SGD + QSR, b=32",
      LocalMethod<SGD, QuadraticSyncRule, ConstantBatch, WarmupCosineLr>(
          {}, SGD{}, QuadraticSyncRule{.alpha = 1.0, .H_base = 4, .warmup_steps = steps / 10}, ConstantBatch{32},
          WarmupCosineLr{.peak = lr, .min_lr = 1e-3, .warmup = steps / 10, .total = steps}));
  row("post-local SGD, b=32",
      LocalMethod<SGD, PostLocalSync>({}, SGD{}, PostLocalSync{.switch_step = kSamples / (kWorkers * 32) / 4, .H = 16},
                                      ConstantBatch{32}, ConstantLr{.lr = lr}));
}
