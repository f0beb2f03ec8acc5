// remask.h — which masked rows a denoising step reveals (docs §5.8; the TS twin is
// lib/decode/remask.ts). Header-only so the CPU op (csrc/cpu/ops/sample.cpp) and the CUDA
// plugin (csrc/cuda/ops_sample.cu, built without the engine) share one definition.
//
// conf: the n rows' f32 confidences. static: the min(k, n) largest, ties to the lowest row.
// dynamic: every row with conf > threshold (strictly) when at least k qualify, else static.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace dvl {

static inline void remask_select_reveal(const float* conf, int64_t n, int64_t k, bool dynamic, double threshold, int32_t* reveal) {
  std::fill(reveal, reveal + n, 0);
  if (dynamic) {
    int64_t high = 0;
    for (int64_t r = 0; r < n; ++r) high += double(conf[r]) > threshold;
    if (high >= k) {
      for (int64_t r = 0; r < n; ++r) reveal[r] = double(conf[r]) > threshold;
      return;
    }
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) order[r] = r;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return conf[a] > conf[b]; });
  for (int64_t i = 0; i < std::min(k, n); ++i) reveal[order[i]] = 1;
}

}  // namespace dvl
