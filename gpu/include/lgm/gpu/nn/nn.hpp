// The network library of the GPU backend (docs/nn.md): the ResNet's and the transformer's layers with explicit forward
// and backward passes over M replicas at once, one source for Thrust's CUDA and OpenMP systems.
#pragma once

#include "lgm/gpu/nn/attention.hpp"
#include "lgm/gpu/nn/common.hpp"
#include "lgm/gpu/nn/conv.hpp"
#include "lgm/gpu/nn/elementwise.hpp"
#include "lgm/gpu/nn/embedding.hpp"
#include "lgm/gpu/nn/layer_norm.hpp"
#include "lgm/gpu/nn/loss.hpp"
#include "lgm/gpu/nn/norm.hpp"
#include "lgm/gpu/nn/tensor_table.hpp"
#include "lgm/gpu/nn/token.hpp"
#include "lgm/gpu/nn/token_loss.hpp"
