// All test problems with known constants (docs/problems.md): Quadratic, LeastSquares, Logistic, Softmax,
// NonconvexLogistic, Mlp, and the data generators they share.
#pragma once

#include "lgm/problems/dataset.hpp"
#include "lgm/problems/least_squares.hpp"
#include "lgm/problems/logistic.hpp"
#include "lgm/problems/mlp.hpp"
#include "lgm/problems/nonconvex_logistic.hpp"
#include "lgm/problems/quadratic.hpp"
#include "lgm/problems/softmax.hpp"
