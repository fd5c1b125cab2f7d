// All local optimizers (SGD, HeavyBall, Nesterov, AdamW) and outer optimizers (Averaging, OuterSGD,
// DiLoCoOuter).
#pragma once

#include "lgm/optim/adamw.hpp"
#include "lgm/optim/heavy_ball.hpp"
#include "lgm/optim/nesterov.hpp"
#include "lgm/optim/outer.hpp"
#include "lgm/optim/sgd.hpp"
