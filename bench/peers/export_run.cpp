// Exports one Local SGD run for the PyTorch peer comparison (issue 5, bench/peers/compare.sh): the data, the
// sample indices of every worker and step (lgm::IidSampler, as the driver draws them), lgm's loss curve (the
// mean over workers of each step's minibatch loss) and lgm's speed in worker-steps per second.
//
//   lgm_export_run OUT_DIR [--M 16] [--b 32] [--d 1000] [--N 8192] [--H 16] [--steps 256] [--lr 0.1]
//                          [--lambda 1e-3] [--seed 1] [--repeats 5]
//
// Files in OUT_DIR (little-endian, no header): features.f64 (N × d, row i = sample i), labels.f64 (N, ±1),
// indices.i64 (steps × M × b), loss.f64 (steps), loss_f32.f64 (steps: the same run with use_float_features());
// meta.txt (key = value lines: the settings, and lgm_ws_per_s_1t / lgm_ws_per_s_2t and, for float32 features,
// lgm_f32_ws_per_s_1t / lgm_f32_ws_per_s_2t: the best of `repeats` timed runs with 1 and 2 threads).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "lgm/lgm.hpp"

namespace {

using namespace lgm;

struct Settings {
  Index M = 16, b = 32, d = 1000, N = 8192, H = 16, steps = 256;
  double lr = 0.1, lambda = 1e-3;
  Index seed = 1, repeats = 5;
};

template <class T>
void write_binary(const std::filesystem::path& path, const T* data, std::size_t count) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(count * sizeof(T)));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

/// Records the minibatch loss of every step; the buffer is reserved so the hook does not allocate.
struct LossCurve {
  std::vector<double> values;
  void on_step(const RunState& s) { values.push_back(s.batch_loss); }
};

Settings parse(int argc, char** argv) {
  Settings s;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    Index* integer = key == "--M"         ? &s.M
                     : key == "--b"       ? &s.b
                     : key == "--d"       ? &s.d
                     : key == "--N"       ? &s.N
                     : key == "--H"       ? &s.H
                     : key == "--steps"   ? &s.steps
                     : key == "--seed"    ? &s.seed
                     : key == "--repeats" ? &s.repeats
                                          : nullptr;
    if (integer) {
      *integer = std::stoll(value);
    } else if (key == "--lr") {
      s.lr = std::stod(value);
    } else if (key == "--lambda") {
      s.lambda = std::stod(value);
    } else {
      throw ConfigError(key, value, "--M, --b, --d, --N, --H, --steps, --lr, --lambda, --seed, --repeats");
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2 || argc % 2 != 0) {
      std::cerr << "usage: lgm_export_run OUT_DIR [--M 16] [--b 32] [--d 1000] [--N 8192] [--H 16] [--steps 256] "
                   "[--lr 0.1] [--lambda 1e-3] [--seed 1] [--repeats 5]\n";
      return 2;
    }
    const std::filesystem::path dir = argv[1];
    const Settings s = parse(argc, argv);
    std::filesystem::create_directories(dir);

    const Logistic p = Logistic::synthetic(
        {.N = s.N, .d = s.d, .lambda = s.lambda, .compute_optimum = false, .seed = static_cast<std::uint64_t>(s.seed)});
    const Matrix& A = p.features();  // d × N column-major: sample i is contiguous, i.e. row i of an N × d array
    write_binary(dir / "features.f64", A.data(), static_cast<std::size_t>(A.size()));
    write_binary(dir / "labels.f64", p.labels().data(), static_cast<std::size_t>(p.labels().size()));

    // The indices the driver draws: worker m at step k gets IidSampler::draw(m, k, ·).
    const std::uint64_t sampler_seed = 42;
    IidSampler sampler(sampler_seed);
    sampler.reset(s.M, s.N);
    std::vector<Index> indices(static_cast<std::size_t>(s.steps * s.M * s.b));
    for (Index k = 0; k < s.steps; ++k)
      for (Index m = 0; m < s.M; ++m)
        sampler.draw(m, k, std::span<Index>(indices.data() + (k * s.M + m) * s.b, static_cast<std::size_t>(s.b)));
    write_binary(dir / "indices.i64", indices.data(), indices.size());

    auto make = [&](int threads) {
      return LocalSGD({.workers = s.M, .max_steps = s.steps, .threads = threads}, SGD{}, ConstantSync{s.H},
                      ConstantBatch{.b = s.b}, ConstantLr{.lr = s.lr}, IidSampler(sampler_seed));
    };
    Logistic p32 = p;  // the same problem reading float32 features (opt-in)
    p32.use_float_features();
    const Logistic* problems[2] = {&p, &p32};
    const char* curve_files[2] = {"loss.f64", "loss_f32.f64"};
    double final_loss[2] = {0.0, 0.0};
    for (int f = 0; f < 2; ++f) {
      LossCurve curve;
      curve.values.reserve(static_cast<std::size_t>(s.steps));
      auto method = make(1);
      method.run(*problems[f], Vector::Zero(s.d), curve);
      write_binary(dir / curve_files[f], curve.values.data(), curve.values.size());
      final_loss[f] = curve.values.back();
    }

    // Speed: the best of `repeats` runs of the same configuration (with the same observer), 1 and 2 threads,
    // double and float32 features alternating so that both see the same machine load.
    double best[2][2] = {{0.0, 0.0}, {0.0, 0.0}};  // [features][threads - 1]
    for (int threads = 1; threads <= 2; ++threads)
      for (Index r = 0; r < s.repeats; ++r)
        for (int f = 0; f < 2; ++f) {
          LossCurve c;
          c.values.reserve(static_cast<std::size_t>(s.steps));
          auto timed = make(threads);
          const auto t0 = std::chrono::steady_clock::now();
          timed.run(*problems[f], Vector::Zero(s.d), c);
          const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          best[f][threads - 1] = std::max(best[f][threads - 1], static_cast<double>(s.M * s.steps) / t);
        }

    std::ofstream meta(dir / "meta.txt");
    meta << "M = " << s.M << "\nb = " << s.b << "\nd = " << s.d << "\nN = " << s.N << "\nH = " << s.H
         << "\nsteps = " << s.steps << "\nlr = " << s.lr << "\nlambda = " << s.lambda << "\nseed = " << s.seed
         << "\nlgm_ws_per_s_1t = " << best[0][0] << "\nlgm_ws_per_s_2t = " << best[0][1]
         << "\nlgm_f32_ws_per_s_1t = " << best[1][0] << "\nlgm_f32_ws_per_s_2t = " << best[1][1] << "\n";
    if (!meta) throw std::runtime_error("cannot write " + (dir / "meta.txt").string());
    std::printf("lgm: %.0f worker-steps/s (1 thread), %.0f (2 threads); final loss %.6f\n", best[0][0], best[0][1],
                final_loss[0]);
    std::printf("lgm, float32 features: %.0f worker-steps/s (1 thread), %.0f (2 threads); final loss %.6f\n",
                best[1][0], best[1][1], final_loss[1]);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "lgm_export_run: " << e.what() << "\n";
    return 1;
  }
}
