// `using` aliases for the common combinations of policies (ensmallen style).
#pragma once

#include "lgm/batch/batch.hpp"
#include "lgm/optim/optim.hpp"
#include "lgm/run/local_method.hpp"
#include "lgm/schedule/schedules.hpp"
#include "lgm/sync/sync.hpp"

namespace lgm {

using LocalSGD = LocalMethod<SGD>;                            ///< Local SGD, constant H and batch (Lin et al. 2020)
using LocalSHB = LocalMethod<HeavyBall>;                      ///< Local SGD with heavy-ball momentum
using LocalNesterov = LocalMethod<Nesterov>;                  ///< Local SGD with Nesterov momentum
using LocalAdamW = LocalMethod<AdamW>;                        ///< Local AdamW
using MinibatchSGD = LocalMethod<SGD, EveryStepSync>;         ///< H = 1: synchronous data-parallel SGD
using PostLocalSGD = LocalMethod<SGD, PostLocalSync>;         ///< Lin et al. 2020
using LocalSGDWithQSR = LocalMethod<SGD, QuadraticSyncRule>;  ///< Gu et al. 2023
using HierarchicalLocalSGD = LocalMethod<SGD, HierarchicalSync>;
/// Local SGD with the adaptive local norm test of Lau et al. 2024.
using LocalSGDNormTest = LocalMethod<SGD, ConstantSync, NormTestRule>;
using LocalSHBNormTest = LocalMethod<HeavyBall, ConstantSync, NormTestRule>;
/// DiLoCo: Local AdamW with an outer Nesterov step on the pseudo-gradient.
using DiLoCo = LocalMethod<AdamW, ConstantSync, ConstantBatch, ConstantLr, IidSampler, DiLoCoOuter>;

}  // namespace lgm
