// A GPT-style decoder-only transformer (docs/nn.md §GPT), the GPT-2 layout: token + position embedding, L pre-LN
// blocks
//   a = x + proj(attention(qkv(LN1(x)))),   x' = a + proj2(GELU(fc(LN2(a)))),
// a final layer norm and the output projection tied to the token table (logits = LN_f(x) Eᵀ), trained on the
// next-token loss (the mean over every position of every sequence). All M replicas run in the same launches;
// activations live in one arena planned per (replicas, batch, sequence length), as the ResNet's.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/gpu/nn/attention.hpp"
#include "lgm/gpu/nn/elementwise.hpp"
#include "lgm/gpu/nn/embedding.hpp"
#include "lgm/gpu/nn/layer_norm.hpp"
#include "lgm/gpu/nn/loss.hpp"
#include "lgm/gpu/nn/tensor_table.hpp"
#include "lgm/gpu/nn/token.hpp"
#include "lgm/gpu/nn/token_loss.hpp"
#include "lgm/problems/dataset.hpp"

namespace lgm::gpu::nn {

/// The architecture.
struct GptSpec {
  Index layers = 2;
  Index heads = 2;
  Index width = 64;    ///< C, the residual stream's features
  Index context = 64;  ///< longest sequence
  Index vocab = 256;   ///< 256: bytes
  double ln_eps = 1e-5;

  /// The CI-sized model: 2 layers, 2 heads, width 64, context 64, bytes (~0.1M parameters).
  static GptSpec ci() { return {2, 2, 64, 64, 256}; }
  /// nanoGPT's character-level Shakespeare shape: 6 layers, 6 heads, width 384, context 256 (~10.7M parameters).
  static GptSpec char_model() { return {6, 6, 384, 256, 256}; }
  /// GPT-2 small: 12 layers, 12 heads, width 768, context 1024, GPT-2's 50257 tokens (124M parameters).
  static GptSpec gpt2_124m() { return {12, 12, 768, 1024, 50257}; }
};

/// Where one pass's activations live for (replicas, batch, seq): offsets into the T, double and Index arenas.
struct GptPlan {
  Index replicas = 0, batch = 0, seq = 0;
  Index t_values = 0, d_values = 0, i_values = 0;
  Index tokens = 0, targets = 0, sort_work = 0;  ///< Index arena: inputs, next tokens, embedding backward
  Index encoded = 0;                             ///< the embedding's output (the residual stream entering block 0)
  struct BlockActs {
    Index ln1, qkv, att, atty, res2, ln2, fc, fc_gelu, res3;  ///< T arena
    Index ln1_mean, ln1_rstd, ln2_mean, ln2_rstd;             ///< double arena
  };
  std::vector<BlockActs> blocks;
  Index lnf = 0, lnf_mean = 0, lnf_rstd = 0, logits = 0;
  Index d_res = 0, d_ln = 0, d_tmp = 0, d_fc = 0, d_qkv = 0, att_scratch = 0;  ///< backward workspace
  Index token_loss = 0, correct = 0, losses = 0;                               ///< double arena
};

/// The network: its tensor table, layers, and the forward / backward passes over a plan's arena.
class Gpt {
 public:
  explicit Gpt(GptSpec spec) : m_spec(spec) {
    lgm::detail::require(m_spec.layers >= 1, "gpt layers", m_spec.layers, "an integer >= 1");
    lgm::detail::require(m_spec.width >= 1, "gpt width", m_spec.width, "an integer >= 1");
    lgm::detail::require(m_spec.heads >= 1 && m_spec.width % m_spec.heads == 0, "gpt heads", m_spec.heads,
                         "a divisor of the width " + lgm::detail::to_text(m_spec.width));
    lgm::detail::require(m_spec.context >= 1, "gpt context", m_spec.context, "an integer >= 1");
    lgm::detail::require(m_spec.vocab >= 2, "gpt vocab", m_spec.vocab, "an integer >= 2");
    build();
  }

  const GptSpec& spec() const noexcept { return m_spec; }
  const TensorTable& table() const noexcept { return m_table; }
  Index dim() const noexcept { return m_table.dim(); }

  /// Multiply-adds of one token's forward pass at sequence length `seq`: the matrix products (linear layers, the
  /// output projection) and attention's two products over the causal half (PaLM's model-FLOPs count / 2).
  double forward_macs(Index seq) const {
    const double C = static_cast<double>(m_spec.width), L = static_cast<double>(m_spec.layers);
    const double linear = L * 12.0 * C * C + static_cast<double>(m_spec.vocab) * C;
    return linear + L * C * static_cast<double>(seq);  // QKᵀ and PV: 2 · C · seq/2 a token per layer
  }

  TokenShape shape(Index replicas, Index batch, Index seq, Index features) const {
    return {replicas, batch, seq, features};
  }

  /// Offsets of every activation for `replicas` × `batch` sequences of `seq` tokens.
  GptPlan plan(Index replicas, Index batch, Index seq) const {
    lgm::detail::require(batch >= 1, "gpt batch", batch, "an integer >= 1");
    lgm::detail::require(seq >= 1 && seq <= m_spec.context, "gpt sequence length", seq,
                         "1 … the model's context " + lgm::detail::to_text(m_spec.context));
    GptPlan p;
    p.replicas = replicas;
    p.batch = batch;
    p.seq = seq;
    const auto take = [](Index& top, Index n) {
      const Index at = top;
      top += (n + 15) / 16 * 16;  // 64-byte aligned for floats
      return at;
    };
    const Index C = m_spec.width, MN = replicas * batch * seq;
    const AttentionLayout att(m_attn, shape(replicas, batch, seq, C));
    p.tokens = take(p.i_values, MN);
    p.targets = take(p.i_values, MN);
    p.sort_work = take(p.i_values, embedding_workspace(shape(replicas, batch, seq, C)));
    p.encoded = take(p.t_values, MN * C);
    for (Index l = 0; l < m_spec.layers; ++l) {
      GptPlan::BlockActs a{};
      a.ln1 = take(p.t_values, MN * C);
      a.qkv = take(p.t_values, MN * 3 * C);
      a.att = take(p.t_values, att.saved());
      a.atty = take(p.t_values, MN * C);
      a.res2 = take(p.t_values, MN * C);
      a.ln2 = take(p.t_values, MN * C);
      a.fc = take(p.t_values, MN * 4 * C);
      a.fc_gelu = take(p.t_values, MN * 4 * C);
      a.res3 = take(p.t_values, MN * C);
      a.ln1_mean = take(p.d_values, MN);
      a.ln1_rstd = take(p.d_values, MN);
      a.ln2_mean = take(p.d_values, MN);
      a.ln2_rstd = take(p.d_values, MN);
      p.blocks.push_back(a);
    }
    p.lnf = take(p.t_values, MN * C);
    p.lnf_mean = take(p.d_values, MN);
    p.lnf_rstd = take(p.d_values, MN);
    p.logits = take(p.t_values, MN * m_spec.vocab);
    p.d_res = take(p.t_values, MN * C);
    p.d_ln = take(p.t_values, MN * C);
    p.d_tmp = take(p.t_values, MN * C);
    p.d_fc = take(p.t_values, MN * 4 * C);
    p.d_qkv = take(p.t_values, MN * 3 * C);
    p.att_scratch = take(p.t_values, att.scratch());
    p.token_loss = take(p.d_values, MN);
    p.correct = take(p.d_values, MN);
    p.losses = take(p.d_values, replicas);
    return p;
  }

  /// GPT-2's initialization: weights and tables N(0, 0.02²), the residual projections N(0, (0.02/√(2L))²), biases 0,
  /// layer-norm scales 1 and shifts 0.
  lgm::Vector initial_point(std::uint64_t seed) const {
    lgm::Vector x = lgm::Vector::Zero(dim());
    lgm::detail::DataRng rng(seed);
    const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(m_spec.layers));
    for (const TensorInfo& t : m_table.tensors()) {
      auto v = x.segment(t.offset, t.size);
      if (t.kind == TensorKind::scale) {
        v.setOnes();
      } else if (t.kind == TensorKind::weight || t.kind == TensorKind::embedding) {
        const bool residual = t.name.ends_with(".proj.weight");
        for (Index i = 0; i < t.size; ++i) v[i] = rng.normal() * (residual ? residual_std : 0.02);
      }
    }
    return x;
  }

  /// The arenas of a plan. Tokens and targets at plan.tokens / plan.targets must be filled (ids < vocab).
  template <class T>
  struct Buffers {
    T* t = nullptr;       ///< plan.t_values
    double* d = nullptr;  ///< plan.d_values
    Index* i = nullptr;   ///< plan.i_values
  };

  /// Forward pass: per-token losses (plan.token_loss), arg-max hits (plan.correct) and each replica's mean loss at
  /// plan.losses; with `gradient`, the logits are
  /// replaced by their gradient for the backward pass.
  template <class T>
  void forward(const Exec& exec, const GptPlan& p, Params<const T> x, const Buffers<T>& b, bool gradient) const {
    T* t = b.t;
    const Index C = m_spec.width, M = p.replicas;
    const TokenShape s = shape(M, p.batch, p.seq, C);
    embedding_forward<T>(exec, m_embedding, s, b.i + p.tokens, x, t + p.encoded);
    const T* res = t + p.encoded;
    for (std::size_t l = 0; l < m_blocks.size(); ++l) {
      const Block& blk = m_blocks[l];
      const GptPlan::BlockActs& a = p.blocks[l];
      layer_norm_forward<T>(exec, blk.ln1, s, res, x, t + a.ln1, b.d + a.ln1_mean, b.d + a.ln1_rstd);
      token_linear_forward<T>(exec, blk.qkv, s, t + a.ln1, x, t + a.qkv);
      attention_forward<T>(exec, m_attn, s, t + a.qkv, t + a.att, t + p.att_scratch, t + a.atty);
      token_linear_forward<T>(exec, blk.attn_proj, s, t + a.atty, x, t + p.d_tmp);
      add_forward<T>(exec, s.size(), res, t + p.d_tmp, t + a.res2);
      layer_norm_forward<T>(exec, blk.ln2, s, t + a.res2, x, t + a.ln2, b.d + a.ln2_mean, b.d + a.ln2_rstd);
      token_linear_forward<T>(exec, blk.fc, s, t + a.ln2, x, t + a.fc);
      gelu_forward<T>(exec, s.size() * 4, t + a.fc, t + a.fc_gelu);
      token_linear_forward<T>(exec, blk.fc_proj, s.with_features(4 * C), t + a.fc_gelu, x, t + p.d_tmp);
      add_forward<T>(exec, s.size(), t + a.res2, t + p.d_tmp, t + a.res3);
      res = t + a.res3;
    }
    layer_norm_forward<T>(exec, m_lnf, s, res, x, t + p.lnf, b.d + p.lnf_mean, b.d + p.lnf_rstd);
    token_linear_forward<T>(exec, m_head, s, t + p.lnf, x, t + p.logits);
    token_xent<T>(exec, s.with_features(m_spec.vocab), t + p.logits, b.i + p.targets, b.d + p.token_loss, gradient,
                  b.d + p.correct);
    replica_means(exec, M, p.batch * p.seq, b.d + p.token_loss, b.d + p.losses);
  }

  /// Backward pass after forward(…, gradient = true): writes all of G (gaps 0).
  template <class T>
  void backward(const Exec& exec, const GptPlan& p, Params<const T> x, Params<T> g, const Buffers<T>& b) const {
    T* t = b.t;
    const Index C = m_spec.width, M = p.replicas;
    const TokenShape s = shape(M, p.batch, p.seq, C);
    zero_gaps<T>(exec, m_table, M, g);
    T* d_res = t + p.d_res;
    T* d_ln = t + p.d_ln;
    T* d_tmp = t + p.d_tmp;
    const T* last = m_blocks.empty() ? t + p.encoded : t + p.blocks.back().res3;
    token_linear_backward<T>(exec, m_head, s, t + p.lnf, t + p.logits, x, g, d_ln);  // dE = dlogitsᵀ LN_f (β = 0)
    layer_norm_backward<T>(exec, m_lnf, s, last, d_ln, x, g, b.d + p.lnf_mean, b.d + p.lnf_rstd, d_res);
    for (std::size_t l = m_blocks.size(); l-- > 0;) {
      const Block& blk = m_blocks[l];
      const GptPlan::BlockActs& a = p.blocks[l];
      const T* res_in = l == 0 ? t + p.encoded : t + p.blocks[l - 1].res3;
      // x' = a + proj2(GELU(fc(LN2(a)))): d_res reaches a directly and through the MLP
      token_linear_backward<T>(exec, blk.fc_proj, s.with_features(4 * C), t + a.fc_gelu, d_res, x, g, t + p.d_fc);
      gelu_backward<T>(exec, s.size() * 4, t + a.fc, t + p.d_fc, t + p.d_fc);
      token_linear_backward<T>(exec, blk.fc, s, t + a.ln2, t + p.d_fc, x, g, d_ln);
      layer_norm_backward<T>(exec, blk.ln2, s, t + a.res2, d_ln, x, g, b.d + a.ln2_mean, b.d + a.ln2_rstd, d_tmp);
      detail::for_each_index(exec, s.size(), detail::AccumulateFn<T>{d_tmp, d_res});
      // a = x + proj(attention(qkv(LN1(x))))
      token_linear_backward<T>(exec, blk.attn_proj, s, t + a.atty, d_res, x, g, d_ln);
      attention_backward<T>(exec, m_attn, s, t + a.att, d_ln, t + p.att_scratch, t + p.d_qkv);
      token_linear_backward<T>(exec, blk.qkv, s, t + a.ln1, t + p.d_qkv, x, g, d_ln);
      layer_norm_backward<T>(exec, blk.ln1, s, res_in, d_ln, x, g, b.d + a.ln1_mean, b.d + a.ln1_rstd, d_tmp);
      detail::for_each_index(exec, s.size(), detail::AccumulateFn<T>{d_tmp, d_res});
    }
    // the tied table: the embedding's gradient adds to the output projection's (β_E = 1); positions fresh
    embedding_backward<T>(exec, m_embedding, s, b.i + p.tokens, d_res, g, b.i + p.sort_work, T(1), T(0));
  }

  template <class T>
  void forward_backward(const Exec& exec, const GptPlan& p, Params<const T> x, Params<T> g, const Buffers<T>& b) const {
    forward<T>(exec, p, x, b, true);
    backward<T>(exec, p, x, g, b);
  }

 private:
  struct Block {
    LayerNorm ln1, ln2;
    TokenLinear qkv, attn_proj, fc, fc_proj;
  };

  LayerNorm layer_norm(const std::string& name) {
    const Index C = m_spec.width;
    LayerNorm ln{C, 0, 0, m_spec.ln_eps};
    ln.scale = m_table.add(name + ".weight", {C}, TensorKind::scale, 1);
    ln.shift = m_table.add(name + ".bias", {C}, TensorKind::shift, 1);
    return ln;
  }
  TokenLinear linear(const std::string& name, Index in, Index out) {
    TokenLinear fc{in, out, 0, 0, true};
    fc.weight = m_table.add(name + ".weight", {out, in}, TensorKind::weight, in);
    fc.bias = m_table.add(name + ".bias", {out}, TensorKind::bias, in);
    return fc;
  }

  void build() {
    const Index C = m_spec.width;
    m_embedding = {m_spec.vocab, m_spec.context, C, 0, 0};
    m_embedding.tokens = m_table.add("wte", {m_spec.vocab, C}, TensorKind::embedding, C);
    m_embedding.positions = m_table.add("wpe", {m_spec.context, C}, TensorKind::embedding, C);
    m_attn = {C, m_spec.heads};
    for (Index l = 0; l < m_spec.layers; ++l) {
      const std::string name = std::string("h").append(std::to_string(l));  // not "h" + …: GCC 12 -Wrestrict
      Block b;
      b.ln1 = layer_norm(name + ".ln_1");
      b.qkv = linear(name + ".attn.qkv", C, 3 * C);
      b.attn_proj = linear(name + ".attn.proj", C, C);
      b.ln2 = layer_norm(name + ".ln_2");
      b.fc = linear(name + ".mlp.fc", C, 4 * C);
      b.fc_proj = linear(name + ".mlp.proj", 4 * C, C);
      m_blocks.push_back(b);
    }
    m_lnf = layer_norm("ln_f");
    m_head = {C, m_spec.vocab, m_embedding.tokens, 0, false};  // logits = LN_f(x) Eᵀ
  }

  GptSpec m_spec;
  TensorTable m_table;
  Embedding m_embedding;
  CausalSelfAttention m_attn;
  std::vector<Block> m_blocks;
  LayerNorm m_lnf;
  TokenLinear m_head;
};

}  // namespace lgm::gpu::nn
