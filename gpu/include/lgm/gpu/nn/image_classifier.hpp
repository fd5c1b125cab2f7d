// A network on an image data set as a BatchedObjective of the unchanged driver (docs/nn.md §Image classifier):
// every worker's mean cross-entropy gradient at its replica, all workers in one pass of the network. The data set
// lives on the device; each call uploads the batch indices once, gathers the images (optionally cropped and
// flipped by draws keyed by (seed, worker, call, slot)) and runs forward and backward over all replicas.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/hooks.hpp"
#include "lgm/core/types.hpp"
#include "lgm/data/augment.hpp"
#include "lgm/gpu/nn/objective_support.hpp"
#include "lgm/gpu/nn/resnet.hpp"
#include "lgm/gpu/storage.hpp"
#include "lgm/problems/dataset.hpp"
#include "lgm/run/metrics.hpp"

namespace lgm::gpu::nn {

/// What a sync does with the workers' batch-norm running statistics (docs/nn.md §Batch-norm statistics at a sync).
enum class BatchNormSync {
  not_averaged,  ///< each worker keeps its own; the shared model is evaluated with worker 0's (PyTorch's averager)
  averaged,      ///< averaged with the parameters at every sync (over the same group)
  recomputed,    ///< recomputed on the shared model from training batches before each evaluation (the QSR code)
};

inline const char* to_string(BatchNormSync s) {
  switch (s) {
    case BatchNormSync::not_averaged:
      return "not_averaged";
    case BatchNormSync::averaged:
      return "averaged";
    case BatchNormSync::recomputed:
      return "recomputed";
  }
  return "?";
}

/// What the objective does besides the network.
struct ImageClassifierOptions {
  Index bn_groups = 1;  ///< batch-norm groups a worker's batch ("ghost" batch norm); must divide the batch
  BatchNormSync bn_sync = BatchNormSync::not_averaged;
  Index recompute_samples = 2048;  ///< training samples (evenly spaced) whose statistics a recompute averages
  Index eval_batch = 256;          ///< samples a forward pass of evaluation (and of a recompute)
  bool augment = false;            ///< random crop (zero padding `pad`) and horizontal flip of every training image
  int pad = 4;                     ///< crop padding when augmenting
  std::uint64_t seed = 0;          ///< seed of the augmentation draws
  double memory_limit_bytes = 0;   ///< what a run may use; 0: the device's free memory (host: MemAvailable)
};

namespace detail {

/// Each worker's batch-norm running statistics, [worker][Σ channels], and the evaluation's own copy.
template <class T>
struct RunningStatistics {
  DeviceBuffer<T> mean, var;            ///< workers × channels
  DeviceBuffer<T> eval_mean, eval_var;  ///< channels: what the last evaluation used
  DeviceBuffer<T> reduce;               ///< channels: a mean across workers
  Index workers = 0;
};

}  // namespace detail

/// A labelled image set on the device: sample i is pixels[i·C·H·W …] (channel-major), label labels[i].
template <class T>
struct DeviceImages {
  DeviceBuffer<T> pixels;
  DeviceBuffer<Index> labels;
  Index count = 0;
  Index channels = 0, height = 0, width = 0;
  Index classes = 0;

  /// Uploads a host set whose features are C·H·W values a sample (column), labels in [0, classes).
  static DeviceImages upload(const lgm::ClassificationData& data, Index channels, Index height, Index width,
                             StreamHandle stream) {
    const Index values = channels * height * width;
    lgm::detail::require(data.features.rows() == values, "image data (values a sample)", data.features.rows(),
                         "channels × height × width = " + lgm::detail::to_text(values) + " of the network's input");
    lgm::detail::require(static_cast<Index>(data.labels.size()) == data.features.cols(), "image data (labels)",
                         data.labels.size(), "one label a sample");
    for (Index y : data.labels)
      lgm::detail::require(y >= 0 && y < data.classes, "image data (label)", y,
                           "a class in [0, " + lgm::detail::to_text(data.classes) + ")");
    DeviceImages d;
    d.count = data.features.cols();
    d.channels = channels;
    d.height = height;
    d.width = width;
    d.classes = data.classes;
    d.pixels = DeviceBuffer<T>(values * d.count, stream);
    d.labels = DeviceBuffer<Index>(d.count, stream);
    std::vector<T> staged(static_cast<std::size_t>(values * d.count));
    for (std::size_t k = 0; k < staged.size(); ++k) staged[k] = static_cast<T>(data.features.data()[k]);
    copy_to_device(d.pixels.data(), staged.data(), staged.size() * sizeof(T), stream);
    copy_to_device(d.labels.data(), data.labels.data(), data.labels.size() * sizeof(Index), stream);
    return d;
  }
};

namespace detail {

/// out[k] = labels[index[k]].
struct GatherLabelsFn {
  const Index* labels;
  const Index* index;
  Index* out;
  LGM_HD void operator()(Index k) const { out[k] = labels[index[k]]; }
};

/// The gather of GatherImagesFn with each sample cropped and flipped by the draw of (seed, worker, call, slot):
/// x(c, y, x) = src(c, y + dy, x' + dx), x' = W − 1 − x when flipped, 0 outside (lgm/data/augment.hpp).
template <class T>
struct GatherAugmentedFn {
  const T* images;
  const Index* index;
  T* x;
  Index channels, batch, h, w;
  std::uint64_t seed, first_worker, call;
  Index slot_offset;  // the pass's first sample's position in the worker's batch (a micro-batch's begin)
  int pad;
  LGM_HD void operator()(Index e) const {
    const Index plane = h * w, per_replica = channels * batch * plane;
    const Index m = e / per_replica, c = (e / (batch * plane)) % channels, n = (e / plane) % batch;
    const Index py = (e / w) % h, px = e % w;
    const lgm::CropFlip t = lgm::draw_crop_flip(
        {seed, first_worker + static_cast<std::uint64_t>(m), call, static_cast<std::uint64_t>(slot_offset + n)},
        {pad, true});
    const Index sy = py + t.dy, sx = (t.flip ? w - 1 - px : px) + t.dx;
    const bool inside = sy >= 0 && sy < h && sx >= 0 && sx < w;
    x[e] = inside ? images[index[m * batch + n] * channels * plane + c * plane + sy * w + sx] : T(0);
  }
};

template <class T>
struct FillFn {
  T* x;
  T value;
  LGM_HD void operator()(Index e) const { x[e] = value; }
};

}  // namespace detail

/// Cross-entropy of a ResNet on an image set: models lgm::BatchedObjective (docs/design.md §Backends), with the
/// optional hooks require_memory (docs/nn.md §Memory plan) and synchronize_state (the batch-norm running
/// statistics, docs/nn.md §Batch-norm statistics at a sync). The running statistics belong to the run of the
/// last make_workspace(): one run at a time per objective.
template <class T = float>
class ImageClassifier {
 public:
  using value_type = T;
  using Storage = DeviceStorage<T>;

  /// Per-run scratch: the arenas of the last (replicas, batch, groups) plan and the count of gradient calls
  /// (the augmentation draws' step).
  class Workspace {
   public:
    Index calls() const noexcept { return m_calls; }

   private:
    friend class ImageClassifier;
    ResNetPlan m_plan;
    DeviceBuffer<T> m_t;
    DeviceBuffer<double> m_d;
    DeviceBuffer<Index> m_i;
    std::vector<Index> m_staged;
    Index m_calls = 0;
  };

  struct Evaluation {
    double loss = 0.0;
    double accuracy = 0.0;
  };

  ImageClassifier(ResNet net, const lgm::ClassificationData& train, const Storage& storage,
                  ImageClassifierOptions opt = {})
      : m_net(std::move(net)),
        m_opt(opt),
        m_stream(storage.stream()),
        m_blas(storage.stream()),
        m_running(std::make_shared<detail::RunningStatistics<T>>()) {
    const ResNetSpec& s = m_net.spec();
    lgm::detail::require(train.classes <= s.classes, "image data (classes)", train.classes,
                         "at most the network's classes = " + lgm::detail::to_text(s.classes));
    lgm::detail::require(opt.bn_groups >= 1, "bn_groups", opt.bn_groups, "an integer >= 1");
    lgm::detail::require(opt.pad >= 0 && opt.pad < std::min(s.height, s.width), "augment pad", opt.pad,
                         "an integer in [0, image side)");
    lgm::detail::require(opt.recompute_samples >= 1, "recompute_samples", opt.recompute_samples, "an integer >= 1");
    lgm::detail::require(opt.eval_batch >= 2, "eval_batch", opt.eval_batch,
                         "an integer >= 2 (a recompute takes batch statistics)");
    lgm::detail::require(opt.memory_limit_bytes >= 0.0, "memory_limit_bytes", opt.memory_limit_bytes,
                         "0 (the device's free memory) or a number of bytes > 0");
    m_train = DeviceImages<T>::upload(train, s.in_channels, s.height, s.width, m_stream);
    const Index nc = m_net.norm_channels();
    m_running->eval_mean = DeviceBuffer<T>(nc, m_stream);
    m_running->eval_var = DeviceBuffer<T>(nc, m_stream);
    m_running->reduce = DeviceBuffer<T>(nc, m_stream);
  }

  Index dim() const noexcept { return m_net.dim(); }
  Index num_samples() const noexcept { return m_train.count; }
  const ResNet& network() const noexcept { return m_net; }
  const ImageClassifierOptions& options() const noexcept { return m_opt; }
  lgm::Vector initial_point(std::uint64_t seed) const { return m_net.initial_point(seed); }

  /// A fresh run: new arenas, and the running statistics start again (means 0, variances 1).
  Workspace make_workspace() const {
    m_running->workers = 0;
    return Workspace{};
  }

  /// What a run keeps besides the parameters (docs/driver.md §Checkpoint and resume): every worker's running
  /// statistics, and the count of gradient calls that keys the augmentation draws.
  template <class Ar>
  void checkpoint(Workspace& ws, Ar& ar) const {
    detail::RunningStatistics<T>& r = *m_running;
    Index workers = r.workers;
    ar("bn.workers", workers);
    if constexpr (!Ar::saving) {
      lgm::detail::require(workers >= 0, "snapshot bn.workers", workers, "an integer >= 0");
      if (workers > 0) prepare_running(workers);
    }
    if (workers > 0) {
      const Index nc = m_net.norm_channels();
      checkpoint_device_matrix(ar, "bn.running_mean", DeviceMatrixView<T>(r.mean.data(), nc, workers), m_stream);
      checkpoint_device_matrix(ar, "bn.running_var", DeviceMatrixView<T>(r.var.data(), nc, workers), m_stream);
    }
    ar("bn.calls", ws.m_calls);
  }

  /// Running statistics of every worker of the current run, [worker][Σ batch-norm channels].
  const DeviceBuffer<T>& running_mean() const noexcept { return m_running->mean; }
  const DeviceBuffer<T>& running_var() const noexcept { return m_running->var; }

  /// Worker m's mean cross-entropy gradient over batches[m] at column m of X into G, its mean loss into
  /// losses[m]; updates the workers' running statistics. Equal batch sizes run as one pass over all replicas;
  /// otherwise one pass a worker.
  void gradients(DeviceMatrixView<const T> X, std::span<const IndexSpan> batches, DeviceMatrixView<T> G,
                 std::span<double> losses, Workspace& ws) const {
    detail::require_gradient_shapes<T>(X, batches, G, dim());
    lgm::detail::require(static_cast<Index>(losses.size()) == X.cols(), "gradients (losses)", losses.size(),
                         "one loss a worker");
    prepare_running(X.cols());
    detail::for_each_pass(batches, 0, 1, m_parts, [&](Index first, Index count, std::span<const IndexSpan> part) {
      pass(X, G, first, count, part, losses.subspan(static_cast<std::size_t>(first), static_cast<std::size_t>(count)),
           ws, {.update_running = true, .call = ws.m_calls, .slot_offset = 0, .groups = m_opt.bn_groups});
    });
    ++ws.m_calls;
  }

  /// Micro-batch `part` of `parts` of every worker's batch (samples ⌊j·b/n_a⌋ … ⌊(j+1)·b/n_a⌋ − 1, as
  /// docs/batch_rules.md §micro_batch_means) at X into G: the same images (augmentation draws) as the last
  /// gradients() call, batch statistics of the micro-batch alone, no running-statistics update.
  void micro_batch_gradients(DeviceMatrixView<const T> X, std::span<const IndexSpan> batches, Index part, Index parts,
                             DeviceMatrixView<T> G, Workspace& ws) const {
    detail::require_gradient_shapes<T>(X, batches, G, dim());
    lgm::detail::require(parts >= 2 && part >= 0 && part < parts, "micro_batches", parts,
                         "an integer >= 2, with 0 <= part < micro_batches");
    lgm::detail::require(ws.m_calls > 0, "micro_batch_gradients", "before any gradients() call",
                         "after the step's gradients() (it reuses that step's images)");
    m_part_losses.resize(static_cast<std::size_t>(X.cols()));
    detail::for_each_pass(batches, part, parts, m_parts, [&](Index first, Index count, std::span<const IndexSpan> sub) {
      const Index b = static_cast<Index>(batches[static_cast<std::size_t>(first)].size());
      pass(X, G, first, count, sub, std::span<double>(m_part_losses).subspan(static_cast<std::size_t>(first)), ws,
           {.update_running = false, .call = ws.m_calls - 1, .slot_offset = part * b / parts, .groups = 1});
    });
  }

  /// At a sync (the driver's synchronize_state hook): with bn_sync = averaged the running statistics of each
  /// group of `group` consecutive workers (all M at a global sync) are replaced by their mean. Returns the
  /// numbers a worker sent (2 × Σ channels, or 0).
  template <class Comm>
  Index synchronize_state(Workspace& /*ws*/, Comm& comm, Index group) const {
    detail::RunningStatistics<T>& r = *m_running;
    if (m_opt.bn_sync != BatchNormSync::averaged || r.workers == 0) return 0;
    const Index nc = m_net.norm_channels();
    for (DeviceBuffer<T>* b : {&r.mean, &r.var}) {
      const DeviceMatrixView<T> F(b->data(), nc, r.workers);
      if (group == comm.size()) {
        const DeviceVectorView<T> mean(r.reduce.data(), nc);
        comm.mean(F, mean);
        comm.broadcast(mean, F);
      } else {
        comm.group_average(F, group);
      }
    }
    return 2 * nc;
  }

  /// Rejects, before the first step, a run whose plan exceeds the memory it may use (the driver's
  /// require_memory hook; docs/nn.md §Memory plan).
  void require_memory(const lgm::hooks::RunFootprint& f) const {
    require_memory_fits(memory_plan(f), f, m_opt.memory_limit_bytes, "ImageClassifierOptions::memory_limit_bytes",
                        "lower M, b_max or the network's width");
  }

  /// What a run of footprint f allocates: the driver's d-vectors, activations and workspace at the largest
  /// batch, the data set and the running statistics.
  MemoryPlan memory_plan(const lgm::hooks::RunFootprint& f) const {
    const ResNetPlan p = m_net.plan(f.local_workers, f.max_batch, m_opt.bn_groups);
    const double d = static_cast<double>(dim());
    MemoryPlan plan;
    plan.items.push_back({"parameters, gradients and optimizer state (" + lgm::detail::to_text(f.replica_columns) +
                              " vectors of d = " + lgm::detail::to_text(dim()) + ")",
                          static_cast<double>(f.replica_columns) * d * sizeof(T)});
    plan.items.push_back({"activations and workspace (M_local × b = " + lgm::detail::to_text(f.local_workers) + " × " +
                              lgm::detail::to_text(f.max_batch) + ")",
                          static_cast<double>(p.t_values) * sizeof(T) +
                              static_cast<double>(p.d_values) * sizeof(double) +
                              static_cast<double>(p.i_values) * sizeof(Index)});
    plan.items.push_back(
        {"training set on the device", static_cast<double>(m_train.pixels.bytes() + m_train.labels.bytes())});
    plan.items.push_back({"batch-norm running statistics", (2.0 * static_cast<double>(f.local_workers) + 3.0) *
                                                               static_cast<double>(m_net.norm_channels()) * sizeof(T)});
    return plan;
  }

  /// Mean loss and accuracy of the model x on `set` in evaluation mode, with the running statistics that
  /// bn_sync gives the shared model: worker 0's (not_averaged; averaged: the mean at the last sync), or
  /// statistics recomputed at x (recomputed). Before any training step: means 0, variances 1.
  Evaluation evaluate(DeviceVectorView<const T> x, const DeviceImages<T>& set) const {
    lgm::detail::require(x.size() == dim(), "evaluate (x size)", x.size(), "the network's d");
    detail::RunningStatistics<T>& r = *m_running;
    const Index nc = m_net.norm_channels();
    Workspace ws;
    if (m_opt.bn_sync == BatchNormSync::recomputed) {
      recompute_statistics(x, ws);
    } else if (r.workers > 0) {
      copy_on_device(r.eval_mean.data(), r.mean.data(), static_cast<std::size_t>(nc) * sizeof(T), m_stream);
      copy_on_device(r.eval_var.data(), r.var.data(), static_cast<std::size_t>(nc) * sizeof(T), m_stream);
    } else {
      fill(r.eval_mean.data(), nc, T(0));
      fill(r.eval_var.data(), nc, T(1));
    }
    double loss = 0.0, hits = 0.0;
    const Index batch = m_opt.eval_batch;
    std::vector<double> sample(static_cast<std::size_t>(2 * batch));
    for (Index first = 0; first < set.count; first += batch) {
      const Index b = std::min(batch, set.count - first);
      ensure_plan(ws, 1, b, 1);
      for (Index k = 0; k < b; ++k) ws.m_staged[static_cast<std::size_t>(k)] = first + k;
      upload_batch(ws, set, 0, false, {});
      m_net.forward<T>(exec(), ws.m_plan, Params<const T>{x.data(), dim()},
                       buffers(ws, r.eval_mean.data(), r.eval_var.data()), false);
      copy_to_host(sample.data(), ws.m_d.data() + ws.m_plan.sample_loss, static_cast<std::size_t>(b) * sizeof(double),
                   m_stream);
      copy_to_host(sample.data() + b, ws.m_d.data() + ws.m_plan.correct, static_cast<std::size_t>(b) * sizeof(double),
                   m_stream);
      for (Index k = 0; k < b; ++k) {
        loss += sample[static_cast<std::size_t>(k)];
        hits += sample[static_cast<std::size_t>(b + k)];
      }
    }
    const double n = static_cast<double>(std::max<Index>(set.count, 1));
    return {loss / n, hits / n};
  }

  /// evaluate() of a host vector (the driver's shared point).
  Evaluation evaluate(lgm::ConstVectorRef x, const DeviceImages<T>& set) const {
    const DeviceBuffer<T> dx = detail::device_copy<T>(x, dim(), m_stream);
    return evaluate(DeviceVectorView<const T>(dx.data(), dim()), set);
  }

  /// The running statistics the last evaluate() used (Σ channels each).
  const DeviceBuffer<T>& evaluation_mean() const noexcept { return m_running->eval_mean; }
  const DeviceBuffer<T>& evaluation_var() const noexcept { return m_running->eval_var; }

 private:
  /// What a pass does besides forward and backward.
  struct PassKind {
    bool update_running = true;
    Index call = 0;         ///< the augmentation draws' step
    Index slot_offset = 0;  ///< position of the pass's first sample in the worker's batch (micro-batches)
    Index groups = 1;       ///< batch-norm groups of a worker's samples in this pass
  };

  Exec exec() const noexcept { return Exec{m_stream, &m_blas}; }

  typename ResNet::Buffers<T> buffers(Workspace& ws, T* running_mean, T* running_var) const {
    return {ws.m_t.data(), ws.m_d.data(), ws.m_i.data(), running_mean, running_var};
  }

  void fill(T* x, Index n, T value) const { detail::for_each_index(exec(), n, detail::FillFn<T>{x, value}); }

  void prepare_running(Index workers) const {
    detail::RunningStatistics<T>& r = *m_running;
    if (r.workers == workers) return;
    const Index n = workers * m_net.norm_channels();
    r.mean = DeviceBuffer<T>(n, m_stream);
    r.var = DeviceBuffer<T>(n, m_stream);
    fill(r.mean.data(), n, T(0));
    fill(r.var.data(), n, T(1));
    r.workers = workers;
  }

  /// The arenas for (replicas, batch, groups); reallocated only when a larger plan is needed.
  void ensure_plan(Workspace& ws, Index replicas, Index batch, Index groups) const {
    if (ws.m_plan.replicas == replicas && ws.m_plan.batch == batch && ws.m_plan.groups == groups) return;
    ws.m_plan = m_net.plan(replicas, batch, groups);
    if (ws.m_t.count() < ws.m_plan.t_values) ws.m_t = DeviceBuffer<T>(ws.m_plan.t_values, m_stream);
    if (ws.m_d.count() < ws.m_plan.d_values) ws.m_d = DeviceBuffer<double>(ws.m_plan.d_values, m_stream);
    if (ws.m_i.count() < ws.m_plan.i_values) ws.m_i = DeviceBuffer<Index>(ws.m_plan.i_values, m_stream);
    ws.m_staged.resize(static_cast<std::size_t>(replicas * batch));
  }

  /// Uploads ws.m_staged (the plan's replicas × batch indices into `set`), gathers the images (cropped and
  /// flipped by the draws of (seed, worker, kind.call, slot) when `augment`) and the labels.
  void upload_batch(Workspace& ws, const DeviceImages<T>& set, Index first_worker, bool augment,
                    const PassKind& kind) const {
    const ResNetPlan& p = ws.m_plan;
    Index* index = ws.m_i.data() + p.index;
    copy_to_device(index, ws.m_staged.data(), static_cast<std::size_t>(p.replicas * p.batch) * sizeof(Index), m_stream);
    const ActShape shape = m_net.input_shape(p.replicas, p.batch);
    if (augment)
      detail::for_each_index(
          exec(), shape.size(),
          detail::GatherAugmentedFn<T>{set.pixels.data(), index, ws.m_t.data() + p.input, shape.channels, p.batch,
                                       shape.height, shape.width, m_opt.seed, static_cast<std::uint64_t>(first_worker),
                                       static_cast<std::uint64_t>(kind.call), kind.slot_offset, m_opt.pad});
    else
      gather_images<T, T>(exec(), shape, set.pixels.data(), index, ws.m_t.data() + p.input);
    detail::for_each_index(exec(), p.replicas * p.batch,
                           detail::GatherLabelsFn{set.labels.data(), index, ws.m_i.data() + p.labels});
  }

  /// Forward and backward of `count` consecutive workers from `first` (their columns of X and G).
  void pass(DeviceMatrixView<const T> X, DeviceMatrixView<T> G, Index first, Index count,
            std::span<const IndexSpan> batches, std::span<double> losses, Workspace& ws, const PassKind& kind) const {
    const auto batch = static_cast<Index>(batches[0].size());
    lgm::detail::require(batch % kind.groups == 0, "batch size", batch,
                         "a multiple of bn_groups = " + lgm::detail::to_text(kind.groups));
    ensure_plan(ws, count, batch, kind.groups);
    for (Index m = 0; m < count; ++m)
      for (Index k = 0; k < batch; ++k) {
        const Index i = batches[static_cast<std::size_t>(m)][static_cast<std::size_t>(k)];
        lgm::detail::require(i >= 0 && i < m_train.count, "batch index", i, "a sample of the training set");
        ws.m_staged[static_cast<std::size_t>(m * batch + k)] = i;
      }
    upload_batch(ws, m_train, first, m_opt.augment, kind);
    const Index nc = m_net.norm_channels();
    detail::RunningStatistics<T>& r = *m_running;
    // running statistics of these workers: [worker][Σ channels], consecutive workers are consecutive rows
    const auto buf = kind.update_running ? buffers(ws, r.mean.data() + first * nc, r.var.data() + first * nc)
                                         : buffers(ws, nullptr, nullptr);
    m_net.forward_backward<T>(exec(), ws.m_plan, Params<const T>{X.data() + first * dim(), dim()},
                              Params<T>{G.data() + first * dim(), dim()}, buf);
    copy_to_host(losses.data(), ws.m_d.data() + ws.m_plan.losses, static_cast<std::size_t>(count) * sizeof(double),
                 m_stream);
  }

  /// Running statistics of x into eval_mean/eval_var: the mean over forward passes (training mode) of
  /// recompute_samples evenly spaced training samples, eval_batch a pass (PyTorch's momentum = None).
  void recompute_statistics(DeviceVectorView<const T> x, Workspace& ws) const {
    detail::RunningStatistics<T>& r = *m_running;
    const Index n = std::min(m_opt.recompute_samples, m_train.count);
    const Index batch = m_opt.eval_batch;
    Index k = 0;
    for (Index first = 0; first < n; first += batch, ++k) {
      const Index b = std::min(batch, n - first);
      if (b < 2) break;  // a batch statistic needs two samples
      ensure_plan(ws, 1, b, 1);
      for (Index j = 0; j < b; ++j) ws.m_staged[static_cast<std::size_t>(j)] = (first + j) * m_train.count / n;
      upload_batch(ws, m_train, 0, false, {});
      auto buf = buffers(ws, r.eval_mean.data(), r.eval_var.data());
      buf.running_momentum = 1.0 / static_cast<double>(k + 1);  // the k-th batch's weight in a running mean
      m_net.forward<T>(exec(), ws.m_plan, Params<const T>{x.data(), dim()}, buf, true);
    }
  }

  ResNet m_net;
  ImageClassifierOptions m_opt;
  StreamHandle m_stream;
  Blas m_blas;
  DeviceImages<T> m_train;
  std::shared_ptr<detail::RunningStatistics<T>> m_running;
  mutable std::vector<IndexSpan> m_parts;     // the sub-batches of a pass (no allocation after the first)
  mutable std::vector<double> m_part_losses;  // micro-batch losses (not reported)
};

}  // namespace lgm::gpu::nn
