// All synchronization rules (docs/sync_rules.md §The SyncRule concept).
#pragma once

#include "lgm/sync/constant.hpp"
#include "lgm/sync/hierarchical.hpp"
#include "lgm/sync/post_local.hpp"
#include "lgm/sync/quadratic.hpp"
