// A GPT on a token stream as a BatchedObjective of the unchanged driver (docs/nn.md §Language model). A sample is
// a context window: sample s is the tokens s … s + T − 1 and its targets s + 1 … s + T, so a worker's batch of b
// samples (drawn by the driver's sampler, keyed by (seed, worker, step)) is b windows, and its loss is the mean
// next-token cross-entropy over its b·T positions. The stream lives on the device as uint16; each call uploads
// the window starts once and gathers tokens and targets on the device.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/hooks.hpp"
#include "lgm/core/types.hpp"
#include "lgm/data/tokens.hpp"
#include "lgm/gpu/nn/gpt.hpp"
#include "lgm/gpu/nn/objective_support.hpp"
#include "lgm/gpu/storage.hpp"

namespace lgm::gpu::nn {

/// What the objective does besides the network.
struct LanguageModelOptions {
  Index seq = 0;                  ///< positions of a window, ≤ the model's context; 0: the context
  Index eval_batch = 16;          ///< windows a forward pass of evaluation
  Index eval_windows = 0;         ///< windows an evaluation reads (evenly spaced, disjoint); 0: every disjoint one
  double memory_limit_bytes = 0;  ///< what a run may use; 0: the device's free memory (host: MemAvailable)
};

/// A token stream on the device.
struct DeviceTokens {
  DeviceBuffer<std::uint16_t> tokens;
  Index count = 0;
  Index vocab = 0;  ///< the stream's largest token + 1

  static DeviceTokens upload(const lgm::TokenData& data, StreamHandle stream) {
    DeviceTokens d;
    d.count = data.count();
    d.vocab = data.used_vocab();
    d.tokens = DeviceBuffer<std::uint16_t>(std::max<Index>(d.count, 1), stream);
    copy_to_device(d.tokens.data(), data.tokens.data(), data.tokens.size() * sizeof(std::uint16_t), stream);
    return d;
  }
};

namespace detail {

/// tokens[(mb, t)] = data[start[mb] + t], targets[(mb, t)] = data[start[mb] + t + 1].
struct GatherWindowsFn {
  const std::uint16_t* data;
  const Index* start;
  Index* tokens;
  Index* targets;
  Index seq;
  LGM_HD void operator()(Index e) const {
    const Index s = start[e / seq] + e % seq;
    tokens[e] = data[s];
    targets[e] = data[s + 1];
  }
};

}  // namespace detail

/// The next-token loss of a GPT on a token stream: models lgm::BatchedObjective (docs/design.md §Backends), with
/// the optional hooks require_memory and micro_batch_gradients (the batch-size tests' micro-batch estimator).
template <class T = float>
class LanguageModel {
 public:
  using value_type = T;
  using Storage = DeviceStorage<T>;

  /// Per-run scratch: the arenas of the last (replicas, batch) plan.
  class Workspace {
   private:
    friend class LanguageModel;
    GptPlan m_plan;
    DeviceBuffer<T> m_t;
    DeviceBuffer<double> m_d;
    DeviceBuffer<Index> m_i, m_start;
    std::vector<Index> m_staged;
    std::vector<double> m_host;
  };

  struct Evaluation {
    double loss = 0.0;                                    ///< mean next-token cross-entropy (nats)
    double accuracy = 0.0;                                ///< next-token top-1 accuracy
    double bits() const { return loss / std::log(2.0); }  ///< bits per token (per byte for byte tokens)
  };

  LanguageModel(Gpt net, const lgm::TokenData& train, const Storage& storage, LanguageModelOptions opt = {})
      : m_net(std::move(net)), m_opt(opt), m_stream(storage.stream()), m_blas(storage.stream()) {
    const GptSpec& s = m_net.spec();
    if (m_opt.seq == 0) m_opt.seq = s.context;
    lgm::detail::require(m_opt.seq >= 1 && m_opt.seq <= s.context, "seq (window length)", m_opt.seq,
                         "1 … the model's context " + lgm::detail::to_text(s.context));
    lgm::detail::require(m_opt.eval_batch >= 1, "eval_batch", m_opt.eval_batch, "an integer >= 1");
    lgm::detail::require(m_opt.eval_windows >= 0, "eval_windows", m_opt.eval_windows, "0 (all) or an integer >= 1");
    lgm::detail::require(opt.memory_limit_bytes >= 0.0, "memory_limit_bytes", opt.memory_limit_bytes,
                         "0 (the device's free memory) or a number of bytes > 0");
    require_tokens(train, "training tokens");
    m_train = DeviceTokens::upload(train, m_stream);
  }

  Index dim() const noexcept { return m_net.dim(); }
  /// Window starts: every s with s + seq < count.
  Index num_samples() const noexcept { return m_train.count - m_opt.seq; }
  Index seq() const noexcept { return m_opt.seq; }
  const Gpt& network() const noexcept { return m_net; }
  const LanguageModelOptions& options() const noexcept { return m_opt; }
  lgm::Vector initial_point(std::uint64_t seed) const { return m_net.initial_point(seed); }
  Workspace make_workspace() const { return Workspace{}; }

  /// A stream the model can read (every token < vocab, at least seq + 1 tokens), uploaded (for evaluate()).
  DeviceTokens upload(const lgm::TokenData& data, const std::string& what = "validation tokens") const {
    require_tokens(data, what);
    return DeviceTokens::upload(data, m_stream);
  }

  /// Worker m's mean next-token gradient over the windows batches[m] at column m of X into G, its mean loss into
  /// losses[m]. Equal batch sizes run as one pass over all replicas; otherwise one pass a worker.
  void gradients(DeviceMatrixView<const T> X, std::span<const IndexSpan> batches, DeviceMatrixView<T> G,
                 std::span<double> losses, Workspace& ws) const {
    detail::require_gradient_shapes<T>(X, batches, G, dim());
    lgm::detail::require(static_cast<Index>(losses.size()) == X.cols(), "gradients (losses)", losses.size(),
                         "one loss a worker");
    detail::for_each_pass(batches, 0, 1, m_parts, [&](Index first, Index count, std::span<const IndexSpan> part) {
      pass(X, G, first, count, part, losses.subspan(static_cast<std::size_t>(first), static_cast<std::size_t>(count)),
           ws);
    });
  }

  /// Micro-batch `part` of `parts` of every worker's windows (⌊j·b/n_a⌋ … ⌊(j+1)·b/n_a⌋ − 1, as
  /// docs/batch_rules.md §micro_batch_means) at X into G.
  void micro_batch_gradients(DeviceMatrixView<const T> X, std::span<const IndexSpan> batches, Index part, Index parts,
                             DeviceMatrixView<T> G, Workspace& ws) const {
    detail::require_gradient_shapes<T>(X, batches, G, dim());
    lgm::detail::require(parts >= 2 && part >= 0 && part < parts, "micro_batches", parts,
                         "an integer >= 2, with 0 <= part < micro_batches");
    m_part_losses.resize(static_cast<std::size_t>(X.cols()));
    detail::for_each_pass(batches, part, parts, m_parts, [&](Index first, Index count, std::span<const IndexSpan> sub) {
      pass(X, G, first, count, sub, std::span<double>(m_part_losses).subspan(static_cast<std::size_t>(first)), ws);
    });
  }

  /// Rejects, before the first step, a run whose plan exceeds the memory it may use (docs/nn.md §Memory plan).
  void require_memory(const lgm::hooks::RunFootprint& f) const {
    require_memory_fits(memory_plan(f), f, m_opt.memory_limit_bytes, "LanguageModelOptions::memory_limit_bytes",
                        "lower M, b_max, seq or the model's width");
  }

  /// What a run of footprint f allocates: the driver's d-vectors, activations and workspace of M_local × b_max
  /// windows of seq tokens, and the training stream.
  MemoryPlan memory_plan(const lgm::hooks::RunFootprint& f) const {
    const GptPlan p = m_net.plan(f.local_workers, f.max_batch, m_opt.seq);
    MemoryPlan plan;
    plan.items.push_back({"parameters, gradients and optimizer state (" + lgm::detail::to_text(f.replica_columns) +
                              " vectors of d = " + lgm::detail::to_text(dim()) + ")",
                          static_cast<double>(f.replica_columns) * static_cast<double>(dim()) * sizeof(T)});
    plan.items.push_back({"activations and workspace (M_local × b × seq = " + lgm::detail::to_text(f.local_workers) +
                              " × " + lgm::detail::to_text(f.max_batch) + " × " + lgm::detail::to_text(m_opt.seq) + ")",
                          static_cast<double>(p.t_values) * sizeof(T) +
                              static_cast<double>(p.d_values) * sizeof(double) +
                              static_cast<double>(p.i_values + f.local_workers * f.max_batch) * sizeof(Index)});
    plan.items.push_back({"training tokens on the device", static_cast<double>(m_train.tokens.bytes())});
    return plan;
  }

  /// Mean loss and next-token accuracy of the model x over disjoint windows of `set` (every one, or
  /// eval_windows of them evenly spaced).
  Evaluation evaluate(DeviceVectorView<const T> x, const DeviceTokens& set) const {
    lgm::detail::require(x.size() == dim(), "evaluate (x size)", x.size(), "the network's d");
    const Index S = m_opt.seq, disjoint = (set.count - 1) / S;
    const Index windows = m_opt.eval_windows == 0 ? disjoint : std::min(m_opt.eval_windows, disjoint);
    Workspace ws;
    double loss = 0.0, hits = 0.0;
    for (Index first = 0; first < windows; first += m_opt.eval_batch) {
      const Index b = std::min(m_opt.eval_batch, windows - first);
      ensure_plan(ws, 1, b);
      for (Index k = 0; k < b; ++k) ws.m_staged[static_cast<std::size_t>(k)] = (first + k) * disjoint / windows * S;
      upload_windows(ws, set);
      m_net.forward<T>(exec(), ws.m_plan, Params<const T>{x.data(), dim()}, buffers(ws), false);
      const Index n = b * S;
      ws.m_host.resize(static_cast<std::size_t>(2 * n));
      copy_to_host(ws.m_host.data(), ws.m_d.data() + ws.m_plan.token_loss, static_cast<std::size_t>(n) * sizeof(double),
                   m_stream);
      copy_to_host(ws.m_host.data() + n, ws.m_d.data() + ws.m_plan.correct,
                   static_cast<std::size_t>(n) * sizeof(double), m_stream);
      for (Index k = 0; k < n; ++k) {
        loss += ws.m_host[static_cast<std::size_t>(k)];
        hits += ws.m_host[static_cast<std::size_t>(n + k)];
      }
    }
    const double tokens = static_cast<double>(std::max<Index>(windows * S, 1));
    return {loss / tokens, hits / tokens};
  }

  /// evaluate() of a host vector (the driver's shared point).
  Evaluation evaluate(lgm::ConstVectorRef x, const DeviceTokens& set) const {
    const DeviceBuffer<T> dx = detail::device_copy<T>(x, dim(), m_stream);
    return evaluate(DeviceVectorView<const T>(dx.data(), dim()), set);
  }

 private:
  Exec exec() const noexcept { return Exec{m_stream, &m_blas}; }
  typename Gpt::Buffers<T> buffers(Workspace& ws) const { return {ws.m_t.data(), ws.m_d.data(), ws.m_i.data()}; }

  void require_tokens(const lgm::TokenData& data, const std::string& what) const {
    const Index vocab = m_net.spec().vocab;
    lgm::detail::require(data.used_vocab() <= vocab, "gpt vocab", vocab,
                         "at least the largest token + 1 = " + lgm::detail::to_text(data.used_vocab()) + " of the " +
                             what + " (" + data.source + ")");
    lgm::detail::require(data.count() > m_opt.seq, what + " (" + data.source + ")", data.count(),
                         "more tokens than the window length " + lgm::detail::to_text(m_opt.seq));
  }

  /// The arenas for (replicas, batch windows); reallocated only when a larger plan is needed.
  void ensure_plan(Workspace& ws, Index replicas, Index batch) const {
    if (ws.m_plan.replicas == replicas && ws.m_plan.batch == batch) return;
    ws.m_plan = m_net.plan(replicas, batch, m_opt.seq);
    if (ws.m_t.count() < ws.m_plan.t_values) ws.m_t = DeviceBuffer<T>(ws.m_plan.t_values, m_stream);
    if (ws.m_d.count() < ws.m_plan.d_values) ws.m_d = DeviceBuffer<double>(ws.m_plan.d_values, m_stream);
    if (ws.m_i.count() < ws.m_plan.i_values) ws.m_i = DeviceBuffer<Index>(ws.m_plan.i_values, m_stream);
    if (ws.m_start.count() < replicas * batch) ws.m_start = DeviceBuffer<Index>(replicas * batch, m_stream);
    ws.m_staged.resize(static_cast<std::size_t>(replicas * batch));
  }

  /// Uploads ws.m_staged (the plan's replicas × batch window starts into `set`) and gathers tokens and targets.
  void upload_windows(Workspace& ws, const DeviceTokens& set) const {
    const GptPlan& p = ws.m_plan;
    const Index windows = p.replicas * p.batch;
    copy_to_device(ws.m_start.data(), ws.m_staged.data(), static_cast<std::size_t>(windows) * sizeof(Index), m_stream);
    detail::for_each_index(exec(), windows * p.seq,
                           detail::GatherWindowsFn{set.tokens.data(), ws.m_start.data(), ws.m_i.data() + p.tokens,
                                                   ws.m_i.data() + p.targets, p.seq});
  }

  /// Forward and backward of `count` consecutive workers from `first` (their columns of X and G).
  void pass(DeviceMatrixView<const T> X, DeviceMatrixView<T> G, Index first, Index count,
            std::span<const IndexSpan> batches, std::span<double> losses, Workspace& ws) const {
    const auto batch = static_cast<Index>(batches[0].size());
    ensure_plan(ws, count, batch);
    for (Index m = 0; m < count; ++m)
      for (Index k = 0; k < batch; ++k) {
        const Index s = batches[static_cast<std::size_t>(m)][static_cast<std::size_t>(k)];
        lgm::detail::require(s >= 0 && s < num_samples(), "batch index", s, "a window start of the training stream");
        ws.m_staged[static_cast<std::size_t>(m * batch + k)] = s;
      }
    upload_windows(ws, m_train);
    m_net.forward_backward<T>(exec(), ws.m_plan, Params<const T>{X.data() + first * dim(), dim()},
                              Params<T>{G.data() + first * dim(), dim()}, buffers(ws));
    copy_to_host(losses.data(), ws.m_d.data() + ws.m_plan.losses, static_cast<std::size_t>(count) * sizeof(double),
                 m_stream);
  }

  Gpt m_net;
  LanguageModelOptions m_opt;
  StreamHandle m_stream;
  Blas m_blas;
  DeviceTokens m_train;
  mutable std::vector<IndexSpan> m_parts;     // the sub-batches of a pass (no allocation after the first)
  mutable std::vector<double> m_part_losses;  // micro-batch losses (not reported)
};

}  // namespace lgm::gpu::nn
