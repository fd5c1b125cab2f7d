// The one OpenMP loop of lgm's host code. An exception that leaves an OpenMP region ends the process
// (std::terminate), so an allocation failure or an objective's error in one worker would lose the run's
// outputs; here it is caught in its thread and rethrown after the loop, where the caller can handle it.
#pragma once

#include <exception>

#include "lgm/core/types.hpp"

namespace lgm::detail {

/// body(i), with the first exception of the loop kept in `error` (an exception must not leave an OpenMP region).
template <class Body>
void run_caught(Body& body, Index i, std::exception_ptr& error) {
  try {
    body(i);
  } catch (...) {
#pragma omp critical(lgm_parallel_for_error)
    {
      if (!error) error = std::current_exception();
    }
  }
}

/// Runs body(i) for i = 0 … n−1 on `threads` OpenMP threads (static schedule: the same i → thread map for a
/// given thread count; results must not depend on it). The first exception caught is rethrown once every
/// iteration has finished or thrown.
template <class Body>
void parallel_for(int threads, Index n, Body&& body) {
  std::exception_ptr error;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (Index i = 0; i < n; ++i) run_caught(body, i, error);
  if (error) std::rethrow_exception(error);
}

/// parallel_for with a dynamic schedule: an iteration goes to the first free thread, which balances iterations of
/// equal work on cores that are not equally fast (a shared VM). Results must not depend on the thread.
template <class Body>
void parallel_for_dynamic(int threads, Index n, Body&& body) {
  std::exception_ptr error;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (Index i = 0; i < n; ++i) run_caught(body, i, error);
  if (error) std::rethrow_exception(error);
}

}  // namespace lgm::detail
