// Data readers: IDX (MNIST format, gzip via zlib: link with -lz), Fashion-MNIST, CIFAR-10 (with per-channel
// normalization and crop/flip augmentation), LIBSVM text, and the binary accuracy metric. Not part of
// lgm/lgm.hpp, so that programs without data files need no zlib.
#pragma once

#include "lgm/data/augment.hpp"
#include "lgm/data/cifar.hpp"
#include "lgm/data/fashion_mnist.hpp"
#include "lgm/data/idx.hpp"
#include "lgm/data/libsvm.hpp"
#include "lgm/data/metrics.hpp"
#include "lgm/data/tokens.hpp"
