// All synchronization rules (DESIGN §2, SyncRule concept).
#pragma once

#include "lgm/sync/constant.hpp"
#include "lgm/sync/hierarchical.hpp"
#include "lgm/sync/post_local.hpp"
#include "lgm/sync/quadratic.hpp"
