// The GPU backend's umbrella header (docs/gpu.md). NcclCommunicator exists in the CUDA build only.
#pragma once

#include "lgm/gpu/backend.hpp"
#include "lgm/gpu/blas.hpp"
#include "lgm/gpu/communicator.hpp"
#include "lgm/gpu/kernels.hpp"
#include "lgm/gpu/memory_pool.hpp"
#include "lgm/gpu/nccl_communicator.hpp"
#include "lgm/gpu/objectives.hpp"
#include "lgm/gpu/optimizers.hpp"
#include "lgm/gpu/storage.hpp"
