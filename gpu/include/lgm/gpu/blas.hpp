// A small BLAS shim for the GPU backend (docs/gpu.md "Objectives"): the strided-batched GEMM that evaluates the
// linear models of all M worker replicas in one call (batch = worker). Column-major with cuBLAS's conventions.
// The CUDA build calls cuBLAS on the run's stream. The OpenMP build calls Eigen's blocked GEMM on fixed tiles of
// the output spread over OpenMP threads, so that the CPU build is a usable backend; the tiles depend on the shape
// only, so the result is bitwise the same for any thread count. `reference_gemm_strided_batched` (one output entry
// per element, an inner loop over k) is the definition both are tested against.
#pragma once

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/gpu/backend.hpp"

#if LGM_GPU_CUDA
#include <cublas_v2.h>
#else
#include <Eigen/Core>

#include "lgm/core/parallel.hpp"
#ifdef _OPENMP
#include <omp.h>
#endif
#endif

namespace lgm::gpu {

/// The scalar types the shim supports (cuBLAS's S and D routines).
template <class T>
concept BlasScalar = std::same_as<T, float> || std::same_as<T, double>;

/// op(A) of a GEMM operand: A itself (cuBLAS's N) or its transpose (cuBLAS's T).
enum class Op { none, transpose };

namespace detail {

/// C_b(i, j) = α Σ_l op(A_b)(i, l) op(B_b)(l, j) + β C_b(i, j) for one output entry e of batch × m × n (entries of
/// one batch member are consecutive, column-major). β = 0 does not read C (cuBLAS semantics: C may hold garbage).
template <class T>
struct GemmEntry {
  Op ta, tb;
  Index m, n, k;
  T alpha;
  const T* a;
  Index lda, stride_a;
  const T* b;
  Index ldb, stride_b;
  T beta;
  T* c;
  Index ldc, stride_c;

  LGM_HD void operator()(Index e) const {
    const Index mn = m * n;
    const Index batch = e / mn;
    const Index r = e - batch * mn;
    const Index i = r % m;
    const Index j = r / m;
    const T* ab = a + batch * stride_a;
    const T* bb = b + batch * stride_b;
    T sum = T(0);
    for (Index l = 0; l < k; ++l) {
      const T x = ta == Op::none ? ab[i + l * lda] : ab[l + i * lda];
      const T y = tb == Op::none ? bb[l + j * ldb] : bb[j + l * ldb];
      sum += x * y;
    }
    T& out = c[batch * stride_c + i + j * ldc];
    out = beta == T(0) ? alpha * sum : alpha * sum + beta * out;
  }
};

/// The definition of the strided-batched GEMM, run by Thrust (one thread an output entry): the reference that the
/// cuBLAS and Eigen paths are tested against.
template <class T>
void reference_gemm_strided_batched(StreamHandle stream, const GemmEntry<T>& entry, Index batch) {
  thrust::for_each(policy(stream), thrust::counting_iterator<Index>(0),
                   thrust::counting_iterator<Index>(batch * entry.m * entry.n), entry);
}

#if !LGM_GPU_CUDA
/// Rows (or columns) of C in one tile of the host GEMM: small enough to spread a large product over threads,
/// large enough that Eigen's blocking stays efficient. A constant, so tiles depend on the shape only.
inline constexpr Index kGemmTile = 256;

/// One tile of C_b: rows [r0, r0 + rm) and columns [c0, c0 + cn), by Eigen's blocked product (called inside an
/// OpenMP region, where Eigen runs single-threaded).
template <class T>
void eigen_gemm_tile(const GemmEntry<T>& g, Index batch, Index r0, Index rm, Index c0, Index cn) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
  using ConstMap = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
  using MutMap = Eigen::Map<Mat, 0, Eigen::OuterStride<>>;
  const T* a = g.a + batch * g.stride_a;
  const T* b = g.b + batch * g.stride_b;
  MutMap c(g.c + batch * g.stride_c + r0 + c0 * g.ldc, rm, cn, Eigen::OuterStride<>(g.ldc));
  // op(A) rows [r0, r0 + rm): columns of A when A is transposed; op(B) columns [c0, c0 + cn) likewise
  const Index ar = g.ta == Op::none ? rm : g.k, ac = g.ta == Op::none ? g.k : rm;
  const T* a0 = g.ta == Op::none ? a + r0 : a + r0 * g.lda;
  const Index br = g.tb == Op::none ? g.k : cn, bc = g.tb == Op::none ? cn : g.k;
  const T* b0 = g.tb == Op::none ? b + c0 * g.ldb : b + c0;
  const ConstMap A(a0, ar, ac, Eigen::OuterStride<>(g.lda));
  const ConstMap B(b0, br, bc, Eigen::OuterStride<>(g.ldb));
  if (g.beta == T(0))
    c.setZero();  // β = 0 never reads C (cuBLAS semantics: it may hold NaN)
  else if (g.beta != T(1))
    c *= g.beta;
  if (g.k == 0) return;
  if (g.ta == Op::none && g.tb == Op::none)
    c.noalias() += g.alpha * A * B;
  else if (g.ta == Op::none)
    c.noalias() += g.alpha * A * B.transpose();
  else if (g.tb == Op::none)
    c.noalias() += g.alpha * A.transpose() * B;
  else
    c.noalias() += g.alpha * A.transpose() * B.transpose();
}

/// C ← α op(A) op(B) + β C on the calling thread: for host code that spreads its own tiles over threads (the
/// convolution's image tiles, docs/nn.md §Convolution).
template <class T>
void host_gemm(Op ta, Op tb, Index m, Index n, Index k, T alpha, const T* a, Index lda, const T* b, Index ldb, T beta,
               T* c, Index ldc) {
  if (m == 0 || n == 0) return;
  const GemmEntry<T> g{ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0};
  eigen_gemm_tile(g, 0, 0, m, 0, n);
}

/// The threads of Thrust's OpenMP system (OMP_NUM_THREADS or the machine's cores).
inline int omp_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Every tile of every batch member, over OpenMP threads (static schedule; each tile is written by one thread).
template <class T>
void eigen_gemm_strided_batched(const GemmEntry<T>& g, Index batch) {
  const bool split_rows = g.m >= g.n;  // tile the longer side of C
  const Index len = split_rows ? g.m : g.n;
  const Index tiles = (len + kGemmTile - 1) / kGemmTile;
  lgm::detail::parallel_for(omp_threads(), batch * tiles, [&](Index t) {
    const Index q = t / tiles, first = (t % tiles) * kGemmTile;
    const Index count = std::min(kGemmTile, len - first);
    if (split_rows)
      eigen_gemm_tile(g, q, first, count, 0, g.n);
    else
      eigen_gemm_tile(g, q, 0, g.m, first, count);
  });
}
#endif

#if LGM_GPU_CUDA
inline void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw DeviceError(std::string(what) + " failed: " + cublasGetStatusString(s));
}

inline cublasOperation_t to_cublas(Op op) { return op == Op::none ? CUBLAS_OP_N : CUBLAS_OP_T; }

/// cuBLAS takes 32-bit sizes: a larger problem is rejected rather than silently truncated.
inline int to_int(Index v, const char* name) {
  lgm::detail::require(v >= 0 && v <= std::numeric_limits<int>::max(), name, v, "a size that fits cuBLAS's int");
  return static_cast<int>(v);
}
#endif

}  // namespace detail

/// A BLAS handle bound to one stream: every call runs in that stream's order. Move-only (it owns the handle).
class Blas {
 public:
  explicit Blas(StreamHandle stream) : m_stream(stream) {
#if LGM_GPU_CUDA
    detail::check_cublas(cublasCreate(&m_handle), "cublasCreate");
    try {
      detail::check_cublas(cublasSetStream(m_handle, stream), "cublasSetStream");
    } catch (...) {
      cublasDestroy(m_handle);
      throw;
    }
#endif
  }
  ~Blas() { release(); }
  Blas(Blas&& o) noexcept : m_stream(o.m_stream) {
#if LGM_GPU_CUDA
    m_handle = std::exchange(o.m_handle, nullptr);
#endif
  }
  Blas& operator=(Blas&& o) noexcept {
    if (this != &o) {
      release();
      m_stream = o.m_stream;
#if LGM_GPU_CUDA
      m_handle = std::exchange(o.m_handle, nullptr);
#endif
    }
    return *this;
  }
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;

  StreamHandle stream() const noexcept { return m_stream; }

  /// For b = 0 … batch−1: C_b ← α op(A_b) op(B_b) + β C_b, with op(A_b) m × k, op(B_b) k × n, C_b m × n, all
  /// column-major with leading dimensions lda, ldb, ldc, and X_b = X + b·strideX. Device pointers; α, β on the host.
  template <class T>
  void gemm_strided_batched(Op trans_a, Op trans_b, Index m, Index n, Index k, T alpha, const T* a, Index lda,
                            Index stride_a, const T* b, Index ldb, Index stride_b, T beta, T* c, Index ldc,
                            Index stride_c, Index batch) const {
    static_assert(BlasScalar<T>, "Blas::gemm_strided_batched: T must be float or double (cuBLAS S/D routines)");
    if (m == 0 || n == 0 || batch == 0) return;
#if LGM_GPU_CUDA
    const int mi = detail::to_int(m, "gemm m"), ni = detail::to_int(n, "gemm n"), ki = detail::to_int(k, "gemm k");
    const int ldai = detail::to_int(lda, "gemm lda"), ldbi = detail::to_int(ldb, "gemm ldb");
    const int ldci = detail::to_int(ldc, "gemm ldc"), bi = detail::to_int(batch, "gemm batch");
    if constexpr (std::same_as<T, float>)
      detail::check_cublas(
          cublasSgemmStridedBatched(m_handle, detail::to_cublas(trans_a), detail::to_cublas(trans_b), mi, ni, ki,
                                    &alpha, a, ldai, stride_a, b, ldbi, stride_b, &beta, c, ldci, stride_c, bi),
          "cublasSgemmStridedBatched");
    else
      detail::check_cublas(
          cublasDgemmStridedBatched(m_handle, detail::to_cublas(trans_a), detail::to_cublas(trans_b), mi, ni, ki,
                                    &alpha, a, ldai, stride_a, b, ldbi, stride_b, &beta, c, ldci, stride_c, bi),
          "cublasDgemmStridedBatched");
#else
    const detail::GemmEntry<T> entry{trans_a,  trans_b, m,   n,        k,    alpha, a,   lda,
                                     stride_a, b,       ldb, stride_b, beta, c,     ldc, stride_c};
    detail::eigen_gemm_strided_batched(entry, batch);
#endif
  }

 private:
  void release() noexcept {
#if LGM_GPU_CUDA
    if (m_handle != nullptr) cublasDestroy(m_handle);
    m_handle = nullptr;
#endif
  }

  StreamHandle m_stream = nullptr;
#if LGM_GPU_CUDA
  cublasHandle_t m_handle = nullptr;
#endif
};

}  // namespace lgm::gpu
