// Batch-size rules: constant and adaptive (norm, inner-product, augmented inner-product tests).
#pragma once

#include "lgm/batch/adaptive.hpp"
#include "lgm/batch/constant.hpp"
#include "lgm/batch/statistics.hpp"
#include "lgm/batch/tests.hpp"
