#include "build.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <sstream>
#include <thread>

#include "lgm/data/data.hpp"
#include "network.hpp"

namespace lgm::sim {

namespace {

/// Rethrows a library ConfigError with the parameter named by its configuration key ("lr" → "optimizer.lr").
template <class F>
void with_section(std::string_view section, F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    const std::string& name = e.parameter();
    const std::string msg = e.what();
    const std::string head = "invalid " + name + " = ";
    const std::string mark = " (accepted: ";
    const auto at = msg.rfind(mark);
    if (name.find('.') != std::string::npos || msg.rfind(head, 0) != 0 || at == std::string::npos || at < head.size())
      throw;
    // "invalid lr = -1 (accepted: ...)" → "invalid optimizer.lr = -1 (accepted: ...)"
    throw ConfigError(std::string(section) + "." + name, msg.substr(head.size(), at - head.size()),
                      msg.substr(at + mark.size(), msg.size() - at - mark.size() - 1));
  }
}

[[noreturn]] void reject(const std::string& key, const std::string& value, const std::string& accepted) {
  throw ConfigError(key, value, accepted);
}

std::vector<int> class_labels(const std::vector<Index>& labels) {
  std::vector<int> out(labels.size());
  std::transform(labels.begin(), labels.end(), out.begin(), [](Index y) { return static_cast<int>(y); });
  return out;
}

std::vector<int> binary_labels(const Vector& labels) {
  std::vector<int> out(static_cast<size_t>(labels.size()));
  for (Index i = 0; i < labels.size(); ++i) out[static_cast<size_t>(i)] = labels[i] > 0 ? 1 : 0;
  return out;
}

std::string dims_text(Index N, Index d) {
  return "N = " + lgm::detail::to_text(N) + ", d = " + lgm::detail::to_text(d);
}

}  // namespace

std::string problem_key(const RunConfig& cfg) {
  std::ostringstream os;
  for (const KeySpec& k : schema()) {
    if (k.key.rfind("problem.", 0) != 0) continue;
    os << k.key << '=';
    switch (k.type) {
      case KeyType::integer:
        os << cfg.integer(k.key);
        break;
      case KeyType::number:
        os << lgm::detail::to_text(cfg.number(k.key));
        break;
      case KeyType::text:
        os << cfg.text(k.key);
        break;
      case KeyType::boolean:
        os << cfg.flag(k.key);
        break;
      case KeyType::numbers:
        for (double v : cfg.numbers(k.key)) os << lgm::detail::to_text(v) << ',';
        break;
    }
    os << '\n';
  }
  return os.str();
}

std::shared_ptr<const Problem> build_problem(const RunConfig& cfg) {
  if (is_network_type(cfg.text("problem.type"))) {
    auto problem = std::make_shared<Problem>();
    build_network_problem(cfg, *problem);
    return problem;
  }
  std::optional<AnyObjective> train, test;
  std::vector<int> labels;
  std::string description;
  const std::string type = cfg.text("problem.type");
  const std::string data = cfg.text("problem.data");
  const Index N = cfg.integer("problem.N"), d = cfg.integer("problem.d");
  const double lambda = cfg.number("problem.lambda");
  const auto seed = static_cast<std::uint64_t>(cfg.integer("problem.seed"));
  const bool classification = type == "softmax" || type == "mlp";
  const bool binary = type == "logistic" || type == "nonconvex_logistic";

  if (data != "synthetic" && !(classification || binary))
    reject("problem.data", data, "synthetic for problem.type = " + type + " (real data need a classification model)");
  if (data == "fashion_mnist" && !classification)
    reject("problem.data", data, "synthetic or libsvm for problem.type = " + type + " (Fashion-MNIST has 10 classes)");

  // ---- real data: training (and test) features and labels
  std::optional<ClassificationData> cls_train, cls_test;
  std::optional<BinaryData> bin_train, bin_test;
  std::string source;
  if (data == "fashion_mnist") {
    FashionMnistOptions o;
    if (!cfg.text("problem.path").empty()) o.dir = cfg.text("problem.path");
    o.train_limit = cfg.integer("problem.train_limit");
    o.test_limit = cfg.integer("problem.test_limit");
    o.bias = cfg.flag("problem.bias");
    TrainTestData tt = load_fashion_mnist(o);
    cls_train = std::move(tt.train);
    cls_test = std::move(tt.test);
    source = "Fashion-MNIST";
  } else if (data == "libsvm") {
    const std::string path = cfg.text("problem.path");
    if (path.empty()) reject("problem.path", "\"\"", "the LIBSVM training file (problem.data = libsvm)");
    LibsvmOptions o;
    o.bias = cfg.flag("problem.bias");
    const std::string test_path = cfg.text("problem.test_path");
    // The test file takes the training file's features and label mapping, so that class c (or ±1) means the
    // same in both, whichever labels the test file happens to hold.
    const std::string training_labels = "labels of the training file " + path;
    if (binary) {
      LibsvmBinaryData tr = read_libsvm_binary(path, o);
      if (!test_path.empty()) {
        o.dim = tr.features.rows() - (o.bias ? 1 : 0);
        bin_test = static_cast<BinaryData>(read_libsvm_binary(test_path, o, tr.label_values, training_labels));
      }
      bin_train = static_cast<BinaryData>(std::move(tr));
    } else {
      LibsvmClassificationData tr = read_libsvm_multiclass(path, o);
      if (!test_path.empty()) {
        o.dim = tr.features.rows() - (o.bias ? 1 : 0);
        cls_test =
            static_cast<ClassificationData>(read_libsvm_multiclass(test_path, o, tr.label_values, training_labels));
      }
      cls_train = static_cast<ClassificationData>(std::move(tr));
    }
    source = "LIBSVM file " + std::filesystem::path(path).filename().string();
    // problem.train_limit and problem.test_limit keep the first samples, as for Fashion-MNIST.
    const auto trim = [&](auto& set, std::string_view key, const std::string& file) {
      const Index limit = cfg.integer(key), count = set.features.cols();
      if (limit > count)
        reject(std::string(key), lgm::detail::to_text(limit),
               "0 (all) or an integer in [1, " + lgm::detail::to_text(count) + "], the samples in " + file);
      if (limit == 0 || limit == count) return;
      set.features.conservativeResize(Eigen::NoChange, limit);
      if constexpr (requires { set.labels.conservativeResize(limit); })
        set.labels.conservativeResize(limit);
      else
        set.labels.resize(static_cast<size_t>(limit));
    };
    if (bin_train) trim(*bin_train, "problem.train_limit", path);
    if (cls_train) trim(*cls_train, "problem.train_limit", path);
    if (bin_test) trim(*bin_test, "problem.test_limit", test_path);
    if (cls_test) trim(*cls_test, "problem.test_limit", test_path);
  }

  const auto sample_count = [](const auto& set) { return static_cast<Index>(set.features.cols()); };

  if (type == "quadratic") {
    train = Quadratic::synthetic({.d = d,
                                  .mu = cfg.number("problem.mu"),
                                  .L = cfg.number("problem.L"),
                                  .N = N,
                                  .noise = cfg.number("problem.noise"),
                                  .seed = seed});
    description = "noisy quadratic, " + dims_text(N, d) + ", mu = " + lgm::detail::to_text(cfg.number("problem.mu")) +
                  ", L = " + lgm::detail::to_text(cfg.number("problem.L"));
  } else if (type == "least_squares") {
    train = LeastSquares::synthetic({.N = N,
                                     .d = d,
                                     .condition = cfg.number("problem.condition"),
                                     .rank = cfg.integer("problem.rank"),
                                     .noise = cfg.number("problem.noise"),
                                     .lambda = lambda,
                                     .seed = seed});
    description = "least squares (synthetic), " + dims_text(N, d);
  } else if (binary) {
    if (!bin_train) {
      bin_train = make_binary_teacher({N, d, cfg.number("problem.signal"), seed});
      source = "synthetic teacher data";
    }
    labels = binary_labels(bin_train->labels);
    const Index n = sample_count(*bin_train), dd = bin_train->features.rows();
    if (type == "logistic") {
      train = Logistic(std::move(bin_train->features), std::move(bin_train->labels), lambda, lambda > 0.0);
      if (bin_test) test = Logistic(std::move(bin_test->features), std::move(bin_test->labels), lambda, false);
      description = "logistic regression on " + source + ", " + dims_text(n, dd);
    } else {
      train = NonconvexLogistic(std::move(bin_train->features), std::move(bin_train->labels), lambda);
      if (bin_test) test = NonconvexLogistic(std::move(bin_test->features), std::move(bin_test->labels), lambda);
      description = "nonconvex logistic regression on " + source + ", " + dims_text(n, dd);
    }
  } else {
    if (!cls_train) {
      const Index clusters = type == "mlp" ? 2 : 1;
      cls_train = make_gaussian_mixture(
          {N, d, cfg.integer("problem.classes"), clusters, cfg.number("problem.separation"), seed});
      source = "a synthetic Gaussian mixture";
    }
    labels = class_labels(cls_train->labels);
    const Index n = sample_count(*cls_train), C = cls_train->classes, f = cls_train->features.rows();
    if (type == "softmax") {
      train = Softmax(std::move(cls_train->features), std::move(cls_train->labels), C, lambda);
      if (cls_test) test = Softmax(std::move(cls_test->features), std::move(cls_test->labels), C, lambda);
      description = "softmax regression on " + source + ", " + dims_text(n, f * C) + " (" + lgm::detail::to_text(f) +
                    " features, " + lgm::detail::to_text(C) + " classes)";
    } else {
      const Index h = cfg.integer("problem.hidden");
      train = Mlp(std::move(cls_train->features), std::move(cls_train->labels), C, h, lambda);
      if (cls_test) test = Mlp(std::move(cls_test->features), std::move(cls_test->labels), C, h, lambda);
      description = "one-hidden-layer MLP (" + lgm::detail::to_text(h) + " tanh units) on " + source + ", " +
                    dims_text(n, std::get<Mlp>(*train).dim());
    }
  }

  // x0: zero for the convex models; Glorot for the MLP (zero is a saddle point of it)
  Vector x0 = with_objective(*train, [&](const auto& obj) -> Vector {
    if constexpr (requires { obj.initial_point(seed); })
      return obj.initial_point(seed);
    else
      return Vector::Zero(obj.dim());
  });
  return std::make_shared<const Problem>(
      Problem{std::move(train), std::move(test), nullptr, std::move(labels), std::move(description), std::move(x0)});
}

Index budget_steps(const RunConfig& cfg) {
  const Index steps = cfg.integer("run.max_steps");
  const Index samples = cfg.integer("run.max_samples");
  const Index per_step = cfg.integer("run.workers") * cfg.integer("batch.b");
  const Index from_samples = samples > 0 ? (samples + per_step - 1) / per_step : 0;
  if (steps > 0 && from_samples > 0) return std::min(steps, from_samples);
  return std::max(steps, from_samples);
}

ConfiguredMethod build_method(const RunConfig& cfg, const Problem& problem) {
  const Index M = cfg.integer("run.workers");
  const Index T = budget_steps(cfg);
  const double lr = cfg.number("optimizer.lr");
  const auto seed = static_cast<std::uint64_t>(cfg.integer("run.seed"));
  const auto fraction_of = [](double f, Index total) {
    return static_cast<Index>(std::llround(f * static_cast<double>(total)));
  };

  RunOptions run;
  run.workers = M;
  run.max_steps = cfg.integer("run.max_steps");
  run.max_samples = cfg.integer("run.max_samples");
  const Index threads = cfg.integer("run.threads");
  run.threads =
      threads > 0 ? static_cast<int>(threads) : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  // ---- local optimizer
  AnyLocalOptimizer opt;
  const std::string opt_type = cfg.text("optimizer.type");
  const double wd = cfg.number("optimizer.weight_decay");
  const bool avg = cfg.flag("optimizer.average_state");
  if (opt_type == "sgd") {
    if (avg) reject("optimizer.average_state", "true", "false for optimizer.type = sgd (SGD keeps no state)");
    opt = SGD{.weight_decay = wd};
  } else if (opt_type == "heavy_ball") {
    opt = HeavyBall{.momentum = cfg.number("optimizer.momentum"), .weight_decay = wd, .average_momentum = avg};
  } else if (opt_type == "nesterov") {
    opt = Nesterov{.momentum = cfg.number("optimizer.momentum"), .weight_decay = wd, .average_momentum = avg};
  } else {
    opt = AdamW{.beta1 = cfg.number("optimizer.beta1"),
                .beta2 = cfg.number("optimizer.beta2"),
                .eps = cfg.number("optimizer.eps"),
                .weight_decay = wd,
                .average_first_moment = avg,
                .average_second_moment = avg};
  }

  // ---- schedule; lengths given as fractions of the budget, in its unit
  const ScheduleAxis axis = cfg.text("schedule.axis") == "samples" ? ScheduleAxis::samples : ScheduleAxis::steps;
  const Index horizon = axis == ScheduleAxis::steps          ? T
                        : cfg.integer("run.max_samples") > 0 ? cfg.integer("run.max_samples")
                                                             : T * M * cfg.integer("batch.b");
  const Index warmup = fraction_of(cfg.number("schedule.warmup"), horizon);
  const double min_lr = cfg.number("schedule.min_lr");
  const std::string sched_type = cfg.text("schedule.type");
  AnySchedule schedule;
  if (sched_type == "constant") {
    schedule = ConstantLr{.lr = lr, .warmup = warmup, .min_lr = min_lr, .axis = axis};
  } else if (sched_type == "warmup_cosine") {
    schedule = WarmupCosineLr{.peak = lr, .min_lr = min_lr, .warmup = warmup, .total = horizon, .axis = axis};
  } else if (sched_type == "warmup_linear") {
    schedule = WarmupLinearDecayLr{.peak = lr, .min_lr = min_lr, .warmup = warmup, .total = horizon, .axis = axis};
  } else {
    std::vector<Index> points;
    const Index every = std::max<Index>(1, fraction_of(cfg.number("schedule.decay_every"), horizon));
    for (Index t = every; t < horizon; t += every) points.push_back(t);
    schedule = StepDecayLr{.peak = lr,
                           .gamma = cfg.number("schedule.decay_factor"),
                           .decay_points = points,
                           .warmup = warmup,
                           .min_lr = min_lr,
                           .axis = axis};
  }

  // ---- synchronization rule
  const std::string sync_type = cfg.text("sync.type");
  const Index H = cfg.integer("sync.H");
  AnySyncRule sync;
  if (sync_type == "constant") {
    sync = ConstantSync{H};
  } else if (sync_type == "every_step") {
    sync = EveryStepSync{};
  } else if (sync_type == "post_local") {
    sync = PostLocalSync{.switch_step = fraction_of(cfg.number("sync.switch_at"), T), .H = H};
  } else if (sync_type == "qsr" || sync_type == "linear") {
    const double alpha = cfg.number("sync.alpha");
    const Index warm = fraction_of(cfg.number("sync.warmup"), T);
    if (sync_type == "qsr")
      sync = QuadraticSyncRule{.alpha = alpha, .H_base = H, .warmup_steps = warm};
    else
      sync = LinearSyncRule{.alpha = alpha, .H_base = H, .warmup_steps = warm};
  } else {
    sync = HierarchicalSync{
        .H = H, .global_every = cfg.integer("sync.global_every"), .group_size = cfg.integer("sync.group_size")};
  }

  // ---- batch-size rule
  const std::string batch_type = cfg.text("batch.type");
  AnyBatchRule batch;
  if (batch_type == "constant") {
    batch = ConstantBatch{cfg.integer("batch.b")};
  } else {
    AdaptiveBatchOptions o;
    o.b0 = cfg.integer("batch.b");
    o.b_min = cfg.integer("batch.b_min");
    o.b_max = cfg.integer("batch.b_max");
    o.scope = cfg.text("batch.scope") == "global" ? TestScope::global : TestScope::local;
    o.variance = cfg.text("batch.variance") == "exact" ? VarianceMode::exact : VarianceMode::approximate;
    const std::string est = cfg.text("batch.estimator");
    o.estimator = est == "per_sample"          ? Estimator::per_sample
                  : est == "micro_batch_means" ? Estimator::micro_batch_means
                                               : Estimator::cross_worker;
    o.micro_batches = cfg.integer("batch.micro_batches");
    o.when = cfg.text("batch.when") == "sync_steps" ? TestWhen::sync_steps : TestWhen::every_step;
    o.test_interval = cfg.integer("batch.test_interval");
    const std::string harm = cfg.text("batch.harmonize");
    o.harmonize = harm == "none" ? Harmonize::none : harm == "max" ? Harmonize::max : Harmonize::mean;
    const std::string apply = cfg.text("batch.apply_at");
    o.apply_at = apply == "next_step"   ? ApplyAt::next_step
                 : apply == "this_step" ? ApplyAt::this_step
                                        : ApplyAt::next_round;
    o.eta_is_global_target = cfg.flag("batch.eta_is_global_target");
    if (batch_type == "norm")
      batch = NormTestRule(o, NormTest{cfg.number("batch.eta")});
    else if (batch_type == "inner_product")
      batch = InnerProductTestRule(o, InnerProductTest{cfg.number("batch.theta")});
    else
      batch = AugmentedInnerProductTestRule(
          o, AugmentedInnerProductTest{cfg.number("batch.theta"), cfg.number("batch.nu")});
  }

  // ---- sampler
  const std::string samp = cfg.text("sampler.type");
  AnySampler sampler;
  if (samp == "iid") {
    sampler = IidSampler(seed);
  } else if (samp == "shuffled") {
    sampler = ShuffledEpochSampler(seed);
  } else if (samp == "sharded") {
    sampler = ShardedSampler(seed);
  } else {
    if (problem.labels.empty())
      reject("sampler.type", "dirichlet", "iid, shuffled or sharded for a problem without class labels");
    sampler = DirichletLabelSampler(seed, problem.labels,
                                    DirichletOptions{.concentration = cfg.number("sampler.concentration")});
  }

  // ---- outer optimizer
  const std::string outer_type = cfg.text("outer.type");
  AnyOuterOptimizer outer;
  if (outer_type == "average")
    outer = Averaging{};
  else
    outer = OuterSGD(OuterSGDOptions{
        .lr = cfg.number("outer.lr"), .momentum = cfg.number("outer.momentum"), .nesterov = outer_type == "nesterov"});

  // ---- simulated time: α–β network, per-sample compute, stragglers
  AlphaBetaCostOptions cost;
  const std::string preset = cfg.text("network.preset");
  if (preset == "10g")
    cost.network = NetworkLink::ethernet_10g();
  else if (preset == "100g")
    cost.network = NetworkLink::infiniband_100g();
  else if (preset == "nvlink")
    cost.network = NetworkLink::nvlink();
  else
    cost.network = NetworkLink{cfg.number("network.latency_s"), cfg.number("network.bandwidth_gbps") * 1e9 / 8.0};
  cost.element_bytes = cfg.number("network.element_bytes");
  cost.seconds_per_sample = cfg.number("compute.seconds_per_sample");
  cost.seconds_per_step = cfg.number("compute.seconds_per_step");
  if (sync_type == "hierarchical") cost.group_size = cfg.integer("sync.group_size");
  const std::vector<double> slowdown = cfg.numbers("compute.slowdown");
  if (!slowdown.empty()) {
    cost.worker_slowdown = slowdown;
  } else if (cfg.integer("compute.stragglers") > 0) {
    cost.worker_slowdown.assign(static_cast<size_t>(M), 1.0);
    for (Index m = M - cfg.integer("compute.stragglers"); m < M; ++m)
      cost.worker_slowdown[static_cast<size_t>(m)] = cfg.number("compute.straggler_factor");
  }

  ConfiguredMethod method(run, opt, sync, batch, schedule, sampler, outer,
                          MultiNetworkCost(cost, {NetworkLink::ethernet_10g(), NetworkLink::infiniband_100g()}));
  with_section("optimizer", [&] { method.optimizer().validate(); });
  with_section("schedule", [&] { method.schedule().validate(); });
  with_section("sync", [&] { method.sync_rule().validate(); });
  with_section("batch", [&] { method.batch_rule().validate(); });
  with_section("sampler", [&] { method.sampler().validate(); });
  with_section("outer", [&] { method.outer_optimizer().validate(); });
  with_section("compute", [&] { method.cost_model().validate(M); });
  if (problem.network) {
    validate_network_method(cfg, method, problem);
  } else {
    with_objective(*problem.train,
                   [&](const auto& obj) { with_section("run", [&] { method.validate(obj, problem.x0); }); });
  }
  return method;
}

double measure_seconds_per_sample(const Problem& problem) {
  if (problem.network) return measure_network_seconds_per_sample(problem);
  return with_objective(*problem.train, [&](const auto& obj) {
    constexpr Index b = 64;
    auto ws = obj.make_workspace();
    std::vector<Index> batch(b);
    Vector g(obj.dim());
    std::vector<double> per_sample;
    for (int rep = 0; rep < 9; ++rep) {
      for (Index i = 0; i < b; ++i) batch[static_cast<size_t>(i)] = (rep * b + i * 7919) % obj.num_samples();
      Index reps = 0;
      const auto start = std::chrono::steady_clock::now();
      double elapsed = 0.0;
      do {
        (void)obj.gradient(problem.x0, batch, g, ws);
        ++reps;
        elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      } while (elapsed < 0.01);
      per_sample.push_back(elapsed / static_cast<double>(reps * b));
    }
    std::nth_element(per_sample.begin(), per_sample.begin() + 4, per_sample.end());
    return per_sample[4];
  });
}

}  // namespace lgm::sim
