// Network problems of lgm-sim (network.hpp, docs/simulator.md §Networks).
#include "network.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "device_policies.hpp"
#include "lgm/data/cifar.hpp"
#include "lgm/data/fashion_mnist.hpp"
#include "lgm/data/tokens.hpp"
#include "lgm/gpu/gpu.hpp"
#include "lgm/gpu/nn/image_classifier.hpp"
#include "lgm/gpu/nn/language_model.hpp"
#include "memory_plan.hpp"
#include "run_variant.hpp"

namespace lgm::sim {

namespace nn = lgm::gpu::nn;
using Real = float;  // the networks train in fp32 (docs/nn.md)

namespace {

/// A ResNet on images: the objective, a training subset for the training loss, and the test set.
struct ImageTask {
  std::unique_ptr<nn::ImageClassifier<Real>> objective;
  nn::DeviceImages<Real> train_eval, test;
};

/// A GPT on a token stream: the objective, the training stream (its loss) and the validation stream.
struct TextTask {
  std::unique_ptr<nn::LanguageModel<Real>> objective;
  nn::DeviceTokens train_eval, validation;
};

}  // namespace

class NetworkProblem {
 public:
  std::unique_ptr<gpu::DeviceStorage<Real>> storage = std::make_unique<gpu::DeviceStorage<Real>>();
  std::variant<ImageTask, TextTask> task;
  Vector decay_mask;  ///< AdamW's (docs/optimizers.md §Decay mask and clipping)

  template <class F>
  decltype(auto) with_objective(F&& f) const {
    return std::visit([&](const auto& t) -> decltype(auto) { return f(*t.objective); }, task);
  }
};

namespace {

/// What the network may use: on the OpenMP system the host's memory (LGM_MEMORY_LIMIT lowers it); 0 (unknown
/// here) on a CUDA device, where the objective checks its plan against cudaMemGetInfo's free memory.
double memory_limit() {
  if constexpr (LGM_GPU_CUDA) {
    return 0.0;
  } else {
    const auto budget = available_memory();
    return budget ? budget->bytes : 0.0;
  }
}

/// problem.device must name this executable's system, and a CUDA device must be usable, before anything loads.
void require_device(const RunConfig& cfg) {
  const std::string device = cfg.text("problem.device");
  if (device != network_device())
    throw ConfigError(
        "problem.device", "\"" + device + "\"",
        "\"" + std::string(network_device()) +
            "\" in this executable (lgm-sim runs problem.device = "
            "\"cpu\", lgm-sim-cuda \"cuda\"; each hands the other's runs over: docs/simulator.md §Networks)");
  if (const std::string why = gpu::device_unavailable_reason(); !why.empty())
    throw ConfigError("problem.device", "\"cuda\"", "\"cpu\": " + why);
}

/// `count` samples of `data`, evenly spaced (all of them when count ≥ N).
ClassificationData evenly_spaced(const ClassificationData& data, Index count) {
  const Index n = data.features.cols(), k = std::min(count, n);
  ClassificationData out{Matrix(data.features.rows(), k), std::vector<Index>(static_cast<std::size_t>(k)),
                         data.classes};
  for (Index j = 0; j < k; ++j) {
    const Index i = j * n / k;
    out.features.col(j) = data.features.col(i);
    out.labels[static_cast<std::size_t>(j)] = data.labels[static_cast<std::size_t>(i)];
  }
  return out;
}

ClassificationData to_classification(const ImageData& images) {
  ClassificationData out{Matrix(images.image_size(), images.count), images.labels, images.classes};
  for (Index i = 0; i < images.count; ++i)
    for (Index p = 0; p < images.image_size(); ++p) out.features(p, i) = images.image(i)[p];
  return out;
}

struct ImageSets {
  TrainTestData data;
  Index channels = 1, side = 28;
  std::string source;
};

/// Fashion-MNIST or CIFAR-10, normalized per channel with the training set's statistics.
ImageSets load_images(const RunConfig& cfg) {
  const Index train_limit = cfg.integer("problem.train_limit"), test_limit = cfg.integer("problem.test_limit");
  ImageSets s;
  if (cfg.text("problem.data") == "fashion_mnist") {
    FashionMnistOptions o;
    if (!cfg.text("problem.path").empty()) o.dir = cfg.text("problem.path");
    o.train_limit = train_limit;
    o.test_limit = test_limit;
    s.data = load_fashion_mnist(o);
    s.source = "Fashion-MNIST";
  } else {
    const std::filesystem::path dir = cfg.text("problem.path");
    ImageData train = read_cifar10_train(dir, train_limit), test = read_cifar10_test(dir, test_limit);
    const ChannelStats stats = channel_stats(train);
    normalize_channels(train, stats);
    normalize_channels(test, stats);
    s.data = TrainTestData{to_classification(train), to_classification(test)};
    s.channels = cifar10_channels;
    s.side = cifar10_side;
    s.source = "CIFAR-10";
    return s;
  }
  const Index plane = s.side * s.side;
  const ChannelStats stats = channel_stats(s.data.train.features, s.channels, plane);
  normalize_channels(s.data.train.features, s.channels, plane, stats);
  normalize_channels(s.data.test.features, s.channels, plane, stats);
  return s;
}

nn::BatchNormSync bn_sync_of(const std::string& v) {
  if (v == "averaged") return nn::BatchNormSync::averaged;
  if (v == "recomputed") return nn::BatchNormSync::recomputed;
  return nn::BatchNormSync::not_averaged;
}

void build_resnet(const RunConfig& cfg, Problem& problem, NetworkProblem& net) {
  ImageSets sets = load_images(cfg);
  const Index depth = cfg.integer("problem.depth"), classes = 10;
  const Index width = cfg.integer("problem.width") > 0 ? cfg.integer("problem.width") : depth == 18 ? 64 : 16;
  const nn::ResNetSpec spec = depth == 18 ? nn::ResNetSpec::resnet18(width, sets.channels, sets.side, classes)
                                          : nn::ResNetSpec::cifar(depth, width, sets.channels, sets.side, classes);
  nn::ImageClassifierOptions o;
  o.bn_sync = bn_sync_of(cfg.text("problem.bn_sync"));
  o.augment = cfg.flag("problem.augment");
  o.seed = static_cast<std::uint64_t>(cfg.integer("problem.seed"));
  o.memory_limit_bytes = memory_limit();
  ImageTask task;
  task.objective = std::make_unique<nn::ImageClassifier<Real>>(nn::ResNet(spec), sets.data.train, *net.storage, o);
  const gpu::StreamHandle stream = net.storage->stream();
  task.train_eval = nn::DeviceImages<Real>::upload(evenly_spaced(sets.data.train, cfg.integer("problem.eval_samples")),
                                                   sets.channels, sets.side, sets.side, stream);
  task.test = nn::DeviceImages<Real>::upload(sets.data.test, sets.channels, sets.side, sets.side, stream);
  const nn::ResNet& resnet = task.objective->network();
  net.decay_mask = nn::decay_mask(resnet.table(), cfg.flag("problem.decay_all"));
  problem.x0 = task.objective->initial_point(static_cast<std::uint64_t>(cfg.integer("problem.seed")));
  problem.labels.assign(sets.data.train.labels.begin(), sets.data.train.labels.end());
  problem.description = (depth == 18 ? std::string("ResNet-18") : "ResNet-" + lgm::detail::to_text(depth)) +
                        " (width " + lgm::detail::to_text(width) + ") on " + sets.source +
                        ", N = " + lgm::detail::to_text(task.objective->num_samples()) +
                        ", d = " + lgm::detail::to_text(resnet.dim()) + ", " +
                        lgm::detail::to_text(sets.data.test.features.cols()) + " test images";
  net.task = std::move(task);
}

void build_gpt(const RunConfig& cfg, Problem& problem, NetworkProblem& net) {
  const std::string data = cfg.text("problem.data");
  const TokenData tokens =
      data == "fortunes"
          ? (cfg.text("problem.path").empty() ? read_fortunes() : read_fortunes(cfg.text("problem.path")))
          : read_text_tokens({std::filesystem::path(cfg.text("problem.path"))});
  const Index context = cfg.integer("problem.context");
  const TokenSplit split = split_tokens(tokens, cfg.number("problem.val_fraction"), context + 1);
  nn::GptSpec spec;
  spec.layers = cfg.integer("problem.layers");
  spec.heads = cfg.integer("problem.heads");
  spec.width = cfg.integer("problem.width") > 0 ? cfg.integer("problem.width") : 64;
  spec.context = context;
  spec.vocab = 256;
  nn::LanguageModelOptions o;
  o.eval_windows = cfg.integer("problem.eval_samples");
  o.memory_limit_bytes = memory_limit();
  TextTask task;
  task.objective = std::make_unique<nn::LanguageModel<Real>>(nn::Gpt(spec), split.train, *net.storage, o);
  task.train_eval = task.objective->upload(split.train, "training tokens");
  task.validation = task.objective->upload(split.validation);
  const nn::Gpt& gpt = task.objective->network();
  net.decay_mask = nn::decay_mask(gpt.table(), cfg.flag("problem.decay_all"));
  problem.x0 = task.objective->initial_point(static_cast<std::uint64_t>(cfg.integer("problem.seed")));
  problem.description =
      "GPT (" + lgm::detail::to_text(spec.layers) + " layers, " + lgm::detail::to_text(spec.heads) + " heads, width " +
      lgm::detail::to_text(spec.width) + ", context " + lgm::detail::to_text(context) + ") on " + split.train.source +
      ", " + lgm::detail::to_text(split.train.count()) + " training and " +
      lgm::detail::to_text(split.validation.count()) + " validation bytes, d = " + lgm::detail::to_text(gpt.dim());
  net.task = std::move(task);
}

/// The device driver of a configured method: its policies, the device twin of its optimizer.
DeviceMethod device_method(ConfiguredMethod& m, const NetworkProblem& net) {
  return DeviceMethod(m.options(), AnyDeviceOptimizer<Real>(m.optimizer(), net.decay_mask), m.sync_rule(),
                      m.batch_rule(), m.schedule(), m.sampler(), m.outer_optimizer(), m.cost_model());
}

/// The network's evaluation at the shared point: the loss on the training subset (RoundRecord::loss), and the
/// test (validation) set's loss and accuracy; no gradient norm (a pass over the training set per point).
template <class Obj, class Set>
class NetworkEvaluation {
 public:
  NetworkEvaluation(const Obj& obj, const Set& train, const Set& test) : m_obj(&obj), m_train(&train), m_test(&test) {}

  double loss(ConstVectorRef x) { return m_obj->evaluate(x, *m_train).loss; }

  void evaluate(RoundRecord& r, ConstVectorRef x) {
    r.loss = m_obj->evaluate(x, *m_train).loss;
    const auto t = m_obj->evaluate(x, *m_test);
    r.test_loss = t.loss;
    r.test_accuracy = t.accuracy;
  }

 private:
  const Obj* m_obj;
  const Set* m_train;
  const Set* m_test;
};

const NetworkProblem& network_of(const Problem& problem) {
  if (!problem.network) throw std::logic_error("network_of: the problem is not a network");
  return *problem.network;
}

/// OpenMP threads of the backend's kernels (results do not depend on them: docs/design.md §Determinism).
void set_threads(int threads) {
#ifdef _OPENMP
  if (threads > 0) omp_set_num_threads(threads);
#else
  (void)threads;
#endif
}

}  // namespace

const char* network_device() { return LGM_GPU_CUDA ? "cuda" : "cpu"; }

void build_network_problem(const RunConfig& cfg, Problem& problem) {
  require_device(cfg);
  auto net = std::make_shared<NetworkProblem>();
  if (cfg.text("problem.type") == "resnet")
    build_resnet(cfg, problem, *net);
  else
    build_gpt(cfg, problem, *net);
  problem.network = std::move(net);
}

void validate_network_method(const RunConfig& cfg, ConfiguredMethod& method, const Problem& problem) {
  if (cfg.text("batch.type") != "constant" && cfg.text("batch.estimator") == "per_sample")
    throw ConfigError("batch.estimator", "\"per_sample\"",
                      "micro_batch_means or cross_worker for problem.type = " + cfg.text("problem.type") +
                          " (per-sample gradients of a network are not computed)");
  const NetworkProblem& net = network_of(problem);
  DeviceMethod dm = device_method(method, net);
  net.with_objective([&](const auto& obj) { dm.validate(obj, problem.x0); });
}

double measure_network_seconds_per_sample(const Problem& problem) {
  const NetworkProblem& net = network_of(problem);
  return net.with_objective([&](const auto& obj) {
    constexpr Index b = 32;
    gpu::DeviceStorage<Real>& st = *net.storage;
    auto X = st.matrix(obj.dim(), 1), G = st.matrix(obj.dim(), 1);
    st.upload(problem.x0, X.col(0));
    auto ws = obj.make_workspace();
    std::vector<Index> batch(b);
    std::vector<double> per_sample;
    double loss = 0.0;
    for (int rep = 0; rep < 5; ++rep) {
      for (Index i = 0; i < b; ++i) batch[static_cast<size_t>(i)] = (rep * b + i * 7919) % obj.num_samples();
      const IndexSpan span(batch.data(), batch.size());
      const auto start = std::chrono::steady_clock::now();
      obj.gradients(X.view(), std::span<const IndexSpan>(&span, 1), G.view(), std::span<double>(&loss, 1), ws);
      st.synchronize();
      per_sample.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
                           static_cast<double>(b));
    }
    std::nth_element(per_sample.begin(), per_sample.begin() + 2, per_sample.end());
    return per_sample[2];
  });
}

VariantSummary run_network_variant(const Problem& problem, const RunConfig& cfg, ConfiguredMethod& method,
                                   RunEnv& env) {
  if (env.mpi)
    throw ConfigError("--engine", "mpi",
                      "in_process for problem.type = " + cfg.text("problem.type") +
                          " (network runs keep their M replicas in one process)");
  const NetworkProblem& net = network_of(problem);
  set_threads(method.options().threads);
  DeviceMethod dm = device_method(method, net);
  gpu::DeviceCommunicator<Real> comm(dm.options().workers, *net.storage);
  return std::visit(
      [&](const auto& task) {
        using Obj = std::remove_cvref_t<decltype(*task.objective)>;
        using Set = std::remove_cvref_t<decltype(task.train_eval)>;
        const Set* test = nullptr;
        if constexpr (std::is_same_v<Set, nn::DeviceTokens>)
          test = &task.validation;
        else
          test = &task.test;
        RoundObserver<NetworkEvaluation<Obj, Set>> observer(
            cfg, NetworkEvaluation<Obj, Set>(*task.objective, task.train_eval, *test), problem.x0, dm.cost_model(),
            env);
        return observe_run(cfg, dm.cost_model(), env, observer, [&] {
          if (env.resume) {
            observer.restore(env.resume->observer);
            return dm.resume_with(comm, *task.objective, problem.x0, env.resume->snapshot, observer);
          }
          return dm.run_with(comm, *task.objective, problem.x0, observer);
        });
      },
      net.task);
}

}  // namespace lgm::sim
