// Prediction accuracy of a binary linear model x on labelled data (Softmax::accuracy and Mlp::accuracy do the
// same for the multiclass models).
#pragma once

#include <string>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/problems/dataset.hpp"

namespace lgm {

/// Fraction of samples whose predicted label sign(a_iᵀx) equals y_i (a tie a_iᵀx = 0 predicts +1), for a linear
/// model such as Logistic or NonconvexLogistic (x of size d; with a bias feature, x includes its weight).
/// Throws ConfigError when x.size() != d, DataError for empty data, a label count other than N or a label not ±1.
inline double binary_accuracy(ConstVectorRef x, const BinaryData& data) {
  const Index d = data.features.rows(), n = data.features.cols();
  detail::require(x.size() == d, "x (size)", x.size(), "the number of features d = " + detail::to_text(d));
  if (n < 1) throw detail::data_error("features (columns)", "0", "at least 1 sample");
  detail::check_binary_labels(data.labels, n);
  Index correct = 0;
  for (Index i = 0; i < n; ++i) {
    const double predicted = data.features.col(i).dot(x) >= 0.0 ? 1.0 : -1.0;
    if (predicted == data.labels[i]) ++correct;
  }
  return static_cast<double>(correct) / static_cast<double>(n);
}

}  // namespace lgm
