// Local SGD with the adaptive local norm test (Lau et al. 2024), headers only.
#include <cstdio>
#include <lgm/lgm.hpp>

int main() {  // ignores arguments (scripts/test.sh passes --smoke)
  using namespace lgm;
  // Binary logistic regression with L2: N = 4000 samples, d = 20 features, known optimum.
  const auto problem = Logistic::synthetic({.N = 4000, .d = 20, .lambda = 1e-3, .seed = 1});

  // 8 workers, H = 16 local steps per round, local norm test with η = 0.5 growing each worker's batch.
  LocalSGDNormTest method({.workers = 8, .max_samples = 400'000, .threads = 2}, SGD{}, ConstantSync{16},
                          NormTestRule({.b_min = 4, .b_max = 512}, NormTest{.eta = 0.5}), ConstantLr{.lr = 0.5},
                          IidSampler(/*seed=*/42));

  SyncHistory history([&](ConstVectorRef x) { return full_loss(problem, x) - problem.optimal_value(); });
  const RunResult result = method.run(problem, Vector::Zero(problem.dim()), history);

  for (const SyncRecord& r : history.records())
    if (r.round % 10 == 0)
      std::printf("round %4lld  samples %7lld  batch %4lld  F(x)-F* %.3e\n", (long long)r.round,
                  (long long)r.metrics.samples, (long long)r.batch_max, r.value);
  std::printf("%s: %lld steps, %lld rounds, %.3g MB sent per worker, F(x)-F* = %.3e\n", result.message.c_str(),
              (long long)result.metrics.steps, (long long)result.metrics.comm_rounds, result.metrics.bytes / 1e6,
              full_loss(problem, result.x) - problem.optimal_value());
}
