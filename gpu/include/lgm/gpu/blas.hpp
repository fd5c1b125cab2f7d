// A small BLAS shim for the GPU backend (docs/gpu.md "Objectives"): the strided-batched GEMM that evaluates the
// linear models of all M worker replicas in one call (batch = worker). Column-major with cuBLAS's conventions.
// The CUDA build calls cuBLAS on the run's stream; the OpenMP build runs a plain Thrust reference implementation
// (one output entry per element, an inner loop over k), which is what CI tests.
#pragma once

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

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
    thrust::for_each(policy(m_stream), thrust::counting_iterator<Index>(0),
                     thrust::counting_iterator<Index>(batch * m * n), entry);
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
