// The ResNet family (He et al. 2016) on the layer library (docs/nn.md §ResNet): a 3×3 stem convolution, stages
// of basic blocks (two 3×3 convolutions with batch norm, identity or projection shortcut), global average
// pooling and a linear classifier; forward and backward for M replicas at once. The CIFAR networks have depth
// 6n + 2 (three stages of n blocks at w, 2w, 4w channels, ResNet-20/32/56 for n = 3/5/9, w = 16); ResNet-18 has
// four stages of two blocks at 64, 128, 256, 512 channels (the common CIFAR layout).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/gpu/nn/conv.hpp"
#include "lgm/gpu/nn/elementwise.hpp"
#include "lgm/gpu/nn/loss.hpp"
#include "lgm/gpu/nn/norm.hpp"
#include "lgm/gpu/nn/tensor_table.hpp"
#include "lgm/problems/dataset.hpp"

namespace lgm::gpu::nn {

/// The shortcut of a block that changes shape: option B of He et al. (1×1 convolution + batch norm, the
/// default, as in Lin et al.'s code) or option A (stride-2 subsampling and zero-padded channels, no parameters).
enum class Shortcut { projection, padding };

/// A stage: `blocks` basic blocks at `channels`; the first has `stride`.
struct Stage {
  Index channels = 16;
  Index blocks = 3;
  Index stride = 1;
};

/// The architecture: input shape, stem, stages, classes.
struct ResNetSpec {
  Index in_channels = 3;
  Index height = 32;
  Index width = 32;
  Index classes = 10;
  Index stem_channels = 16;
  std::vector<Stage> stages;
  Shortcut shortcut = Shortcut::projection;
  double bn_eps = 1e-5;
  double bn_momentum = 0.1;

  /// The CIFAR ResNets of depth 6n + 2 with first-stage width w (ResNet-20: depth 20, w = 16).
  static ResNetSpec cifar(Index depth, Index w = 16, Index in_channels = 3, Index side = 32, Index classes = 10) {
    lgm::detail::require(depth >= 8 && (depth - 2) % 6 == 0, "resnet depth", depth,
                         "6n + 2 for n >= 1: 8, 14, 20 (ResNet-20), 32, 44, 56, …");
    lgm::detail::require(w >= 1, "resnet width", w, "an integer >= 1");
    const Index n = (depth - 2) / 6;
    return {in_channels, side, side, classes, w, {{w, n, 1}, {2 * w, n, 2}, {4 * w, n, 2}}};
  }
  /// ResNet-18 for CIFAR-size inputs: stem 3×3 to w channels, stages of two blocks at w, 2w, 4w, 8w (w = 64).
  static ResNetSpec resnet18(Index w = 64, Index in_channels = 3, Index side = 32, Index classes = 10) {
    lgm::detail::require(w >= 1, "resnet width", w, "an integer >= 1");
    return {in_channels, side, side, classes, w, {{w, 2, 1}, {2 * w, 2, 2}, {4 * w, 2, 2}, {8 * w, 2, 2}}};
  }
};

namespace detail {

/// Option A: y[c][n][y][x] = x[c][n][s·y][s·x] for c < C_in, 0 for the padded channels.
template <class T>
struct PadShortcutFn {
  const T* x;
  T* y;
  Index in_c, out_c, batch, h, w, oh, ow, s;
  LGM_HD void operator()(Index e) const {
    const Index per = out_c * batch * oh * ow;
    const Index m = e / per, c = (e / (batch * oh * ow)) % out_c, n = (e / (oh * ow)) % batch;
    const Index oy = (e / ow) % oh, ox = e % ow;
    y[e] = c < in_c ? x[m * in_c * batch * h * w + ((c * batch + n) * h + oy * s) * w + ox * s] : T(0);
  }
};

/// Its adjoint, accumulated: dx[c][n][iy][ix] += dy[c][n][iy/s][ix/s] where s divides iy and ix.
template <class T>
struct PadShortcutGradFn {
  const T* dy;
  T* dx;
  Index in_c, out_c, batch, h, w, oh, ow, s;
  LGM_HD void operator()(Index e) const {
    const Index per = in_c * batch * h * w;
    const Index m = e / per, c = (e / (batch * h * w)) % in_c, n = (e / (h * w)) % batch;
    const Index iy = (e / w) % h, ix = e % w;
    if (iy % s != 0 || ix % s != 0 || iy / s >= oh || ix / s >= ow) return;
    dx[e] += dy[m * out_c * batch * oh * ow + ((c * batch + n) * oh + iy / s) * ow + ix / s];
  }
};

}  // namespace detail

/// A convolution followed by its batch norm (index `norm` among the network's batch norms).
struct ConvNorm {
  Conv2d conv;
  BatchNorm bn;
  Index norm = 0;
};

/// A basic block: relu(bn2(conv2(relu(bn1(conv1(a))))) + shortcut(a)).
struct BasicBlock {
  ConvNorm c1, c2;
  bool changes_shape = false;
  ConvNorm proj;  ///< used when changes_shape and the shortcut is a projection
};

/// Where one pass's activations live for a given (replicas, batch): offsets into the T arena and the double arena.
struct ResNetPlan {
  Index replicas = 0, batch = 0, groups = 1;
  Index t_values = 0;  ///< T values of the arena
  Index d_values = 0;  ///< doubles of the statistics arena
  Index input = 0;     ///< the gathered images
  Index stem_conv = 0, stem_out = 0;
  struct BlockActs {
    Index c1, r1, c2, out, proj;
  };
  std::vector<BlockActs> blocks;
  Index pooled = 0, logits = 0, dlogits = 0;
  Index col = 0, grad[3] = {0, 0, 0}, scratch = 0;  ///< im2col workspace, backward ping-pong, shortcut output
  std::vector<Index> stats;                         ///< NormStats of each batch norm (double arena)
  Index sample_loss = 0, correct = 0, losses = 0;   ///< double arena
  Index labels = 0;                                 ///< Index arena (labels of the batch)
  Index index = 0;                                  ///< Index arena (sample indices of the batch)
  Index i_values = 0;                               ///< Index values
};

/// The network: its tensor table, layers and shapes, and the forward / backward passes over a plan's arena.
class ResNet {
 public:
  explicit ResNet(ResNetSpec spec) : m_spec(std::move(spec)) {
    lgm::detail::require(m_spec.in_channels >= 1, "resnet in_channels", m_spec.in_channels, "an integer >= 1");
    lgm::detail::require(m_spec.height >= 1 && m_spec.width >= 1, "resnet input height", m_spec.height,
                         "images of at least 1 × 1 pixels");
    lgm::detail::require(m_spec.classes >= 2, "resnet classes", m_spec.classes, "an integer >= 2");
    lgm::detail::require(!m_spec.stages.empty(), "resnet stages", 0, "at least one stage");
    build();
  }

  const ResNetSpec& spec() const noexcept { return m_spec; }
  const TensorTable& table() const noexcept { return m_table; }
  Index dim() const noexcept { return m_table.dim(); }
  /// Channels of each batch norm, in order (the running statistics are [replica][Σ channels]).
  Index norm_channels() const noexcept { return m_norm_channels; }
  Index norm_offset(Index norm) const { return m_norm_offsets[static_cast<std::size_t>(norm)]; }
  Index norms() const noexcept { return static_cast<Index>(m_norm_offsets.size()); }
  Index sample_values() const noexcept { return m_spec.in_channels * m_spec.height * m_spec.width; }

  /// Multiply-adds of one image's forward pass (the convolutions and the classifier).
  double forward_macs() const {
    double macs = 0.0;
    ActShape s = input_shape(1, 1);
    const auto conv_macs = [&](const Conv2d& c, const ActShape& in) {
      const ActShape o = c.output(in);
      macs += static_cast<double>(o.per_replica()) * static_cast<double>(c.fan_in());
      return o;
    };
    s = conv_macs(m_stem.conv, s);
    for (const BasicBlock& b : m_blocks) {
      const ActShape in = s;
      s = conv_macs(b.c1.conv, in);
      s = conv_macs(b.c2.conv, s);
      if (b.changes_shape && m_spec.shortcut == Shortcut::projection) conv_macs(b.proj.conv, in);
    }
    macs += static_cast<double>(m_fc.in_features * m_fc.out_features);
    return macs;
  }

  ActShape input_shape(Index replicas, Index batch) const {
    return {replicas, m_spec.in_channels, batch, m_spec.height, m_spec.width};
  }

  /// Offsets of every activation for `replicas` × `batch` (batch a multiple of `groups`, the batch-norm groups).
  ResNetPlan plan(Index replicas, Index batch, Index groups = 1) const {
    lgm::detail::require(batch >= 1, "resnet batch", batch, "an integer >= 1");
    lgm::detail::require(groups >= 1 && batch % groups == 0, "resnet batch-norm groups", groups,
                         "a divisor of the batch " + lgm::detail::to_text(batch));
    ResNetPlan p;
    p.replicas = replicas;
    p.batch = batch;
    p.groups = groups;
    const auto take = [](Index& top, Index n) {
      const Index at = top;
      top += (n + 15) / 16 * 16;  // 64-byte aligned for floats
      return at;
    };
    ActShape s = input_shape(replicas, batch);
    Index largest = s.size(), col = 0;
    p.input = take(p.t_values, s.size());
    const auto conv_step = [&](const Conv2d& c, const ActShape& in) {
      col = std::max(col, c.col_size(in));
      const ActShape o = c.output(in);
      largest = std::max(largest, o.size());
      return o;
    };
    const auto stats = [&](const ActShape& a) { p.stats.push_back(take(p.d_values, NormStats::size(a, groups))); };
    s = conv_step(m_stem.conv, s);
    p.stem_conv = take(p.t_values, s.size());
    p.stem_out = take(p.t_values, s.size());
    stats(s);
    for (const BasicBlock& b : m_blocks) {
      const ActShape in = s;
      ResNetPlan::BlockActs a{};
      s = conv_step(b.c1.conv, in);
      a.c1 = take(p.t_values, s.size());
      a.r1 = take(p.t_values, s.size());
      stats(s);
      s = conv_step(b.c2.conv, s);
      a.c2 = take(p.t_values, s.size());
      a.out = take(p.t_values, s.size());
      stats(s);
      a.proj = 0;
      if (b.changes_shape && m_spec.shortcut == Shortcut::projection) {
        const ActShape ps = conv_step(b.proj.conv, in);
        a.proj = take(p.t_values, ps.size());
        stats(ps);
      }
      p.blocks.push_back(a);
    }
    const ActShape pooled = avg_pool_output(s);
    p.pooled = take(p.t_values, pooled.size());
    const ActShape logits = m_fc.output(pooled);
    p.logits = take(p.t_values, logits.size());
    p.dlogits = take(p.t_values, logits.size());
    p.col = take(p.t_values, std::max<Index>(col, 1));
    for (Index& g : p.grad) g = take(p.t_values, largest);
    p.scratch = take(p.t_values, largest);
    p.sample_loss = take(p.d_values, replicas * batch);
    p.correct = take(p.d_values, replicas * batch);
    p.losses = take(p.d_values, replicas);
    p.labels = take(p.i_values, replicas * batch);
    p.index = take(p.i_values, replicas * batch);
    return p;
  }

  /// He-normal weights (variance 2 / fan_in), PyTorch's uniform(±1/√fan_in) for the classifier, γ = 1, β = 0.
  lgm::Vector initial_point(std::uint64_t seed) const {
    lgm::Vector x = lgm::Vector::Zero(dim());
    lgm::detail::DataRng rng(seed);
    for (const TensorInfo& t : m_table.tensors()) {
      auto v = x.segment(t.offset, t.size);
      const double fan = static_cast<double>(t.fan_in);
      if (t.kind == TensorKind::scale)
        v.setOnes();
      else if (t.kind == TensorKind::weight && t.name == "fc.weight")
        for (Index i = 0; i < t.size; ++i) v[i] = (2.0 * rng.uniform() - 1.0) / std::sqrt(fan);
      else if (t.kind == TensorKind::bias && t.name == "fc.bias")
        for (Index i = 0; i < t.size; ++i) v[i] = (2.0 * rng.uniform() - 1.0) / std::sqrt(fan);
      else if (t.kind == TensorKind::weight)
        for (Index i = 0; i < t.size; ++i) v[i] = rng.normal() * std::sqrt(2.0 / fan);
    }
    return x;
  }

  /// The per-replica buffers a pass reads and writes: the arenas of a plan, and the running statistics.
  template <class T>
  struct Buffers {
    T* t = nullptr;             ///< plan.t_values
    double* d = nullptr;        ///< plan.d_values
    Index* i = nullptr;         ///< plan.i_values (labels at plan.labels must be filled)
    T* running_mean = nullptr;  ///< [replica][norm_channels()], may be null (not updated)
    T* running_var = nullptr;
    double running_momentum = -1.0;  ///< in [0, 1]: replaces the layers' momentum (1/k: the mean of k batches)
  };

  /// Training pass: forward with batch statistics (and running-statistics update), loss, and the backward pass.
  /// Reads the images at plan.input and the labels; writes G (all of it: gaps 0) and the per-replica mean loss at
  /// plan.losses.
  template <class T>
  void forward_backward(const Exec& exec, const ResNetPlan& p, Params<const T> x, Params<T> g,
                        const Buffers<T>& b) const {
    forward<T>(exec, p, x, b, true);
    backward<T>(exec, p, x, g, b);
  }

  /// Forward pass only: batch statistics when `train`, else the running statistics. Loss and hits per sample.
  template <class T>
  void forward(const Exec& exec, const ResNetPlan& p, Params<const T> x, const Buffers<T>& b, bool train) const {
    T* t = b.t;
    ActShape s = input_shape(p.replicas, p.batch);
    s = conv_norm_forward<T>(exec, p, m_stem, s, t + p.input, x, t + p.stem_conv, t + p.stem_out, b, train);
    relu_forward<T>(exec, s.size(), t + p.stem_out, t + p.stem_out);
    const T* a = t + p.stem_out;
    for (std::size_t k = 0; k < m_blocks.size(); ++k) {
      const BasicBlock& blk = m_blocks[k];
      const ResNetPlan::BlockActs& acts = p.blocks[k];
      const ActShape in = s;
      s = conv_norm_forward<T>(exec, p, blk.c1, in, a, x, t + acts.c1, t + acts.r1, b, train);
      relu_forward<T>(exec, s.size(), t + acts.r1, t + acts.r1);
      s = conv_norm_forward<T>(exec, p, blk.c2, s, t + acts.r1, x, t + acts.c2, t + acts.out, b, train);
      const T* shortcut = a;
      if (blk.changes_shape) {
        if (m_spec.shortcut == Shortcut::projection) {
          conv_norm_forward<T>(exec, p, blk.proj, in, a, x, t + acts.proj, t + p.scratch, b, train);
        } else {
          detail::for_each_index(exec, s.size(),
                                 detail::PadShortcutFn<T>{a, t + p.scratch, in.channels, s.channels, s.batch, in.height,
                                                          in.width, s.height, s.width, blk.c1.conv.stride});
        }
        shortcut = t + p.scratch;
      }
      add_relu_forward<T>(exec, s.size(), t + acts.out, shortcut, t + acts.out);
      a = t + acts.out;
    }
    avg_pool_forward<T>(exec, s, a, t + p.pooled);
    const ActShape pooled = avg_pool_output(s);
    linear_forward<T>(exec, m_fc, pooled, t + p.pooled, x, t + p.logits);
    softmax_xent<T>(exec, m_spec.classes, m_fc.output(pooled), t + p.logits, b.i + p.labels,
                    train ? t + p.dlogits : nullptr, b.d + p.sample_loss, b.d + p.correct);
    replica_means(exec, p.replicas, p.batch, b.d + p.sample_loss, b.d + p.losses);
  }

 private:
  template <class T>
  ActShape conv_norm_forward(const Exec& exec, const ResNetPlan& p, const ConvNorm& cn, const ActShape& in, const T* a,
                             Params<const T> x, T* conv_out, T* norm_out, const Buffers<T>& b, bool train) const {
    const ActShape s = cn.conv.output(in);
    conv2d_forward<T>(exec, cn.conv, in, a, x, conv_out, b.t + p.col);
    const NormStats st = NormStats::at(b.d + p.stats[static_cast<std::size_t>(cn.norm)], s, p.groups);
    const Index off = m_norm_offsets[static_cast<std::size_t>(cn.norm)];
    if (train) {
      BatchNorm bn = cn.bn;
      if (b.running_momentum >= 0.0) bn.momentum = b.running_momentum;
      batchnorm_forward_train<T>(exec, bn, s, p.groups, conv_out, x, norm_out, st,
                                 b.running_mean == nullptr ? nullptr : b.running_mean + off,
                                 b.running_var == nullptr ? nullptr : b.running_var + off, m_norm_channels);
    } else {
      batchnorm_forward_eval<T>(exec, cn.bn, s, conv_out, x, b.running_mean + off, b.running_var + off, norm_out, st,
                                m_norm_channels);
    }
    return s;
  }

  /// Backward of a conv + batch norm: dy (the norm's output gradient, overwritten) → dx (null: the input).
  template <class T>
  void conv_norm_backward(const Exec& exec, const ResNetPlan& p, const ConvNorm& cn, const ActShape& in, const T* a,
                          const T* conv_out, T* dy, Params<const T> x, Params<T> g, T* dx, const Buffers<T>& b) const {
    const ActShape s = cn.conv.output(in);
    const NormStats st = NormStats::at(b.d + p.stats[static_cast<std::size_t>(cn.norm)], s, p.groups);
    batchnorm_backward<T>(exec, cn.bn, s, p.groups, conv_out, dy, x, g, dy, st);
    conv2d_backward<T>(exec, cn.conv, in, a, dy, x, g, dx, b.t + p.col);
  }

  template <class T>
  void backward(const Exec& exec, const ResNetPlan& p, Params<const T> x, Params<T> g, const Buffers<T>& b) const {
    T* t = b.t;
    zero_gaps<T>(exec, m_table, p.replicas, g);
    // head: logits → pooled → the last block's output
    std::vector<ActShape> shapes = block_input_shapes(p.replicas, p.batch);
    const ActShape last = m_blocks.empty() ? shapes.front() : block_output_shape(shapes.back(), m_blocks.back());
    const ActShape pooled = avg_pool_output(last);
    T* d_out = t + p.grad[0];
    T* d_b = t + p.grad[1];
    T* d_c = t + p.grad[2];
    linear_backward<T>(exec, m_fc, pooled, t + p.pooled, t + p.dlogits, x, g, t + p.scratch);
    avg_pool_backward<T>(exec, last, t + p.scratch, d_out);
    for (std::size_t k = m_blocks.size(); k-- > 0;) {
      const BasicBlock& blk = m_blocks[k];
      const ResNetPlan::BlockActs& acts = p.blocks[k];
      const ActShape in = shapes[k];
      const ActShape mid = blk.c1.conv.output(in);
      const T* a = k == 0 ? t + p.stem_out : t + p.blocks[k - 1].out;
      const ActShape out_shape = blk.c2.conv.output(mid);
      relu_backward<T>(exec, out_shape.size(), t + acts.out, d_out, d_out);
      // main path: d_out (= d of the sum) → bn2/conv2 → d_c (d r1) → relu → bn1/conv1 → d_b (d a)
      detail::for_each_index(exec, out_shape.size(), detail::CopyFn<T>{d_out, d_b});
      conv_norm_backward<T>(exec, p, blk.c2, mid, t + acts.r1, t + acts.c2, d_b, x, g, d_c, b);
      relu_backward<T>(exec, mid.size(), t + acts.r1, d_c, d_c);
      conv_norm_backward<T>(exec, p, blk.c1, in, a, t + acts.c1, d_c, x, g, d_b, b);
      // shortcut: d_out → d a, added into d_b
      if (!blk.changes_shape) {
        detail::for_each_index(exec, in.size(), detail::AccumulateFn<T>{d_out, d_b});
      } else if (m_spec.shortcut == Shortcut::projection) {
        conv_norm_backward<T>(exec, p, blk.proj, in, a, t + acts.proj, d_out, x, g, d_c, b);
        detail::for_each_index(exec, in.size(), detail::AccumulateFn<T>{d_c, d_b});
      } else {
        detail::for_each_index(
            exec, in.size(),
            detail::PadShortcutGradFn<T>{d_out, d_b, in.channels, out_shape.channels, in.batch, in.height, in.width,
                                         out_shape.height, out_shape.width, blk.c1.conv.stride});
      }
      std::swap(d_out, d_b);  // the block input's gradient is the next (earlier) block's output gradient
    }
    const ActShape stem_in = input_shape(p.replicas, p.batch);
    relu_backward<T>(exec, shapes.front().size(), t + p.stem_out, d_out, d_out);
    conv_norm_backward<T>(exec, p, m_stem, stem_in, t + p.input, t + p.stem_conv, d_out, x, g, nullptr, b);
  }

  std::vector<ActShape> block_input_shapes(Index replicas, Index batch) const {
    std::vector<ActShape> shapes;
    ActShape s = m_stem.conv.output(input_shape(replicas, batch));
    for (const BasicBlock& b : m_blocks) {
      shapes.push_back(s);
      s = block_output_shape(s, b);
    }
    if (shapes.empty()) shapes.push_back(s);
    return shapes;
  }
  static ActShape block_output_shape(const ActShape& in, const BasicBlock& b) {
    return b.c2.conv.output(b.c1.conv.output(in));
  }

  ConvNorm conv_norm(const std::string& name, Index in_c, Index out_c, Index k, Index stride, Index pad) {
    ConvNorm cn;
    cn.conv = {in_c, out_c, k, stride, pad, 0};
    cn.conv.weight = m_table.add(name + ".weight", {out_c, in_c, k, k}, TensorKind::weight, in_c * k * k);
    cn.bn.channels = out_c;
    cn.bn.scale = m_table.add(name + ".bn.scale", {out_c}, TensorKind::scale, 1);
    cn.bn.shift = m_table.add(name + ".bn.shift", {out_c}, TensorKind::shift, 1);
    cn.bn.eps = m_spec.bn_eps;
    cn.bn.momentum = m_spec.bn_momentum;
    cn.norm = static_cast<Index>(m_norm_offsets.size());
    m_norm_offsets.push_back(m_norm_channels);
    m_norm_channels += out_c;
    return cn;
  }

  void build() {
    m_stem = conv_norm("stem", m_spec.in_channels, m_spec.stem_channels, 3, 1, 1);
    Index c = m_spec.stem_channels;
    for (std::size_t si = 0; si < m_spec.stages.size(); ++si) {
      const Stage& st = m_spec.stages[si];
      lgm::detail::require(st.channels >= 1 && st.blocks >= 1 && st.stride >= 1, "resnet stage", st.channels,
                           "channels, blocks and stride >= 1");
      for (Index bi = 0; bi < st.blocks; ++bi) {
        const std::string name = "stage" + std::to_string(si + 1) + ".block" + std::to_string(bi + 1);
        const Index stride = bi == 0 ? st.stride : 1;
        BasicBlock b;
        b.c1 = conv_norm(name + ".conv1", c, st.channels, 3, stride, 1);
        b.c2 = conv_norm(name + ".conv2", st.channels, st.channels, 3, 1, 1);
        b.changes_shape = stride != 1 || c != st.channels;
        if (b.changes_shape && m_spec.shortcut == Shortcut::projection)
          b.proj = conv_norm(name + ".shortcut", c, st.channels, 1, stride, 0);
        lgm::detail::require(!b.changes_shape || m_spec.shortcut == Shortcut::projection || st.channels >= c,
                             "resnet shortcut", "padding", "projection when a stage has fewer channels than the last");
        m_blocks.push_back(b);
        c = st.channels;
      }
    }
    m_fc.in_features = c;
    m_fc.out_features = m_spec.classes;
    m_fc.weight = m_table.add("fc.weight", {m_spec.classes, c}, TensorKind::weight, c);
    m_fc.bias = m_table.add("fc.bias", {m_spec.classes}, TensorKind::bias, c);
  }

  ResNetSpec m_spec;
  TensorTable m_table;
  ConvNorm m_stem;
  std::vector<BasicBlock> m_blocks;
  Linear m_fc;
  std::vector<Index> m_norm_offsets;
  Index m_norm_channels = 0;
};

}  // namespace lgm::gpu::nn
