// The parameters of a network in one flat buffer (docs/nn.md §Tensor table, the llm.c layout): a table of named
// tensors, each a shape and an offset into the d values of one replica. Replica m's copy is column m of the
// d × M buffer, so an offset is the same in every replica and in the gradient buffer.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/gpu/nn/common.hpp"

namespace lgm::gpu::nn {

/// How a tensor is initialized and treated by the optimizers.
enum class TensorKind {
  weight,     ///< a convolution or linear weight: weight decay applies
  embedding,  ///< a token or position table (2-D): weight decay applies
  bias,       ///< a bias: zero-initialized, no weight decay by default
  scale,      ///< a normalization scale γ: initialized to 1, no weight decay by default
  shift,      ///< a normalization shift β: initialized to 0, no weight decay by default
};

/// One tensor of the table.
struct TensorInfo {
  std::string name;          ///< unique, e.g. "stage1.block0.conv1.weight"
  std::vector<Index> shape;  ///< row-major, e.g. {out_channels, in_channels, k, k}
  Index offset = 0;          ///< first value in the replica's d values
  Index size = 0;            ///< product of the shape
  TensorKind kind = TensorKind::weight;
  Index fan_in = 1;  ///< inputs of one output unit (He initialization: variance 2 / fan_in)

  /// Whether weight decay applies to this tensor (weights and embeddings always; the others only when
  /// `decay_all`).
  bool decays(bool decay_all) const noexcept {
    return kind == TensorKind::weight || kind == TensorKind::embedding || decay_all;
  }
};

/// The ordered table of a network's tensors. Offsets are assigned in insertion order, each tensor aligned to
/// `kAlign` values (16 floats = 64 bytes) so that every tensor starts on a cache line and vectorized loads stay
/// aligned; the gaps are zero parameters that no layer reads (their gradient stays 0).
class TensorTable {
 public:
  static constexpr Index kAlign = 16;

  /// Appends a tensor and returns its offset. Names must be unique and shapes positive.
  Index add(std::string name, std::vector<Index> shape, TensorKind kind, Index fan_in) {
    for (const TensorInfo& t : m_tensors)
      lgm::detail::require(t.name != name, "TensorTable::add (name)", name, "a name not already in the table");
    Index size = 1;
    for (Index s : shape) {
      lgm::detail::require(s > 0, "TensorTable::add (shape of " + name + ")", s, "a positive extent");
      size *= s;
    }
    const Index offset = (m_dim + kAlign - 1) / kAlign * kAlign;
    m_tensors.push_back(TensorInfo{std::move(name), std::move(shape), offset, size, kind, fan_in});
    m_dim = offset + size;
    return offset;
  }

  /// Values of one replica, gaps included (the rows of the d × M buffer).
  Index dim() const noexcept { return m_dim; }
  /// Values that belong to a tensor (the model's parameter count).
  Index parameters() const noexcept {
    Index n = 0;
    for (const TensorInfo& t : m_tensors) n += t.size;
    return n;
  }
  std::span<const TensorInfo> tensors() const noexcept { return m_tensors; }

  const TensorInfo& at(std::string_view name) const {
    for (const TensorInfo& t : m_tensors)
      if (t.name == name) return t;
    throw lgm::ConfigError("TensorTable::at (name)", name, "the name of a tensor in the table");
  }

 private:
  std::vector<TensorInfo> m_tensors;
  Index m_dim = 0;
};

namespace detail {

/// g[m·stride + first + i] = 0 for i < count (e = m·count + i).
template <class T>
struct FillRangeFn {
  T* g;
  Index stride, first, count;
  LGM_HD void operator()(Index e) const { g[(e / count) * stride + first + e % count] = T(0); }
};

}  // namespace detail

/// AdamW's decay_mask for a table (docs/optimizers.md §Decay mask and clipping): 1 on the tensors that decay
/// (TensorInfo::decays(decay_all)), 0 on the others and the gaps.
inline lgm::Vector decay_mask(const TensorTable& table, bool decay_all = false) {
  lgm::Vector mask = lgm::Vector::Zero(table.dim());
  for (const TensorInfo& t : table.tensors())
    if (t.decays(decay_all)) mask.segment(t.offset, t.size).setOnes();
  return mask;
}

/// The gradient's values outside every tensor of the table (the alignment gaps) are set to 0 in every replica.
template <class T>
void zero_gaps(const Exec& exec, const TensorTable& table, Index replicas, Params<T> g) {
  Index prev = 0;
  for (const TensorInfo& info : table.tensors()) {
    if (info.offset > prev)
      detail::for_each_index(exec, replicas * (info.offset - prev),
                             detail::FillRangeFn<T>{g.data, g.stride, prev, info.offset - prev});
    prev = info.offset + info.size;
  }
}

}  // namespace lgm::gpu::nn
