// Data augmentation of CHW float images: a random crop with zero padding and a random horizontal flip (the
// standard CIFAR-10 augmentation), drawn from the counter-based Philox generator keyed by (seed, worker, step,
// slot), so that an augmented batch is a pure function of the source images and the keys: the same for any
// thread count and on any backend (docs/data.md §Augmentation). The per-image functions are plain loops over raw
// pointers, with no allocation, no exceptions and no global state, and are callable from CUDA device code
// (a Thrust functor); augment_batch is the checked host loop over a batch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "lgm/core/error.hpp"
#include "lgm/sampling/philox.hpp"  // CounterRng and LGM_HOST_DEVICE (__host__ __device__ under nvcc)

namespace lgm {

/// What an augmentation draw is keyed by: the run's seed, the worker, the step and the slot (the position of
/// the image in the worker's batch of that step).
struct AugmentKey {
  std::uint64_t seed = 0;
  std::uint64_t worker = 0;
  std::uint64_t step = 0;
  std::uint64_t slot = 0;
};

/// The augmentation: a crop offset drawn uniformly in [−pad, pad]² (zero padding), and a horizontal flip with
/// probability 1/2 when `flip` is set.
struct AugmentParams {
  int pad = 4;       ///< >= 0; 0: no crop
  bool flip = true;  ///< false: never flip
};

/// One draw: out(c, y, x) = src(c, y + dy, x' + dx) with x' = W − 1 − x when flipped, else x; 0 outside src.
struct CropFlip {
  int dx = 0;
  int dy = 0;
  bool flip = false;

  friend LGM_HOST_DEVICE constexpr bool operator==(const CropFlip& a, const CropFlip& b) {
    return a.dx == b.dx && a.dy == b.dy && a.flip == b.flip;
  }
};

/// The Philox purpose tag of augmentation draws ("AUG"), so that they never share random numbers with a
/// sampler's draws for the same (seed, worker, step) (purpose 0).
inline constexpr std::uint32_t augment_purpose = 0x41554700u;

/// The draw of `key`: the block (step, slot) of CounterRng(seed, worker, augment_purpose); its word 0 gives dx,
/// word 1 dy (each ⌊w · (2·pad + 1) / 2^32⌋ − pad) and the top bit of word 2 the flip. A pad < 0 is taken as 0.
LGM_HOST_DEVICE constexpr CropFlip draw_crop_flip(const AugmentKey& key, const AugmentParams& params = {}) {
  const PhiloxBlock b = CounterRng(key.seed, key.worker, augment_purpose).block(key.step, key.slot);
  const int pad = params.pad > 0 ? params.pad : 0;
  const auto n = static_cast<std::uint64_t>(2 * pad + 1);
  CropFlip t;
  t.dx = static_cast<int>((std::uint64_t{b.v[0]} * n) >> 32) - pad;
  t.dy = static_cast<int>((std::uint64_t{b.v[1]} * n) >> 32) - pad;
  t.flip = params.flip && (b.v[2] >> 31) != 0;
  return t;
}

/// Writes the crop-and-flip `t` of the channels × height × width image `src` to `dst` (same shape; the two must
/// not overlap): dst(c, y, x) = src(c, y + dy, x' + dx), x' = flip ? width − 1 − x : x, and 0 where that pixel
/// lies outside src (the zero padding).
LGM_HOST_DEVICE inline void apply_crop_flip(const float* src, float* dst, int channels, int height, int width,
                                            const CropFlip& t) {
  for (int c = 0; c < channels; ++c) {
    const float* s = src + static_cast<std::ptrdiff_t>(c) * height * width;
    float* d = dst + static_cast<std::ptrdiff_t>(c) * height * width;
    for (int y = 0; y < height; ++y) {
      const int sy = y + t.dy;
      float* row = d + static_cast<std::ptrdiff_t>(y) * width;
      if (sy < 0 || sy >= height) {
        for (int x = 0; x < width; ++x) row[x] = 0.0f;
        continue;
      }
      const float* srow = s + static_cast<std::ptrdiff_t>(sy) * width;
      for (int x = 0; x < width; ++x) {
        const int sx = (t.flip ? width - 1 - x : x) + t.dx;
        row[x] = sx >= 0 && sx < width ? srow[sx] : 0.0f;
      }
    }
  }
}

/// Augments one image: draw_crop_flip(key, params), applied from `src` to `dst`; returns the draw.
LGM_HOST_DEVICE inline CropFlip augment_image(const float* src, float* dst, int channels, int height, int width,
                                              const AugmentKey& key, const AugmentParams& params = {}) {
  const CropFlip t = draw_crop_flip(key, params);
  apply_crop_flip(src, dst, channels, height, width, t);
  return t;
}

/// Augments a batch on the host: image k of `out` (k < indices.size()) is images[indices[k]] augmented with the
/// key (first.seed, first.worker, first.step, first.slot + k). `images` holds `count` CHW images of
/// channels × height × width floats, `out` indices.size() of them. Bitwise the same for any `threads` (OpenMP).
/// Throws ConfigError for a shape < 1, a pad < 0, an index outside [0, count) or threads < 1.
inline void augment_batch(const float* images, std::int64_t count, int channels, int height, int width,
                          std::span<const std::int64_t> indices, float* out, const AugmentKey& first,
                          const AugmentParams& params = {}, int threads = 1) {
  detail::require_at_least("channels", channels, 1);
  detail::require_at_least("height", height, 1);
  detail::require_at_least("width", width, 1);
  detail::require_at_least("pad", params.pad, 0);
  detail::require_at_least("threads", threads, 1);
  const auto n = static_cast<std::int64_t>(indices.size());
  for (std::int64_t k = 0; k < n; ++k)
    if (indices[static_cast<std::size_t>(k)] < 0 || indices[static_cast<std::size_t>(k)] >= count)
      throw ConfigError("indices[" + detail::to_text(k) + "]", detail::to_text(indices[static_cast<std::size_t>(k)]),
                        "an integer in [0, " + detail::to_text(count) + "), an image of the set");
  const std::int64_t size = std::int64_t{channels} * height * width;
#if defined(_OPENMP)
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
  for (std::int64_t k = 0; k < n; ++k) {
    AugmentKey key = first;
    key.slot = first.slot + static_cast<std::uint64_t>(k);
    augment_image(images + indices[static_cast<std::size_t>(k)] * size, out + k * size, channels, height, width, key,
                  params);
  }
}

}  // namespace lgm
