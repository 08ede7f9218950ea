// The batch-blocked activation layout [G, C, Hp, Wp, VW] (one vector = one value of VW
// images; see "Batch-blocked activations" in sparse_conv.cpp): its check and halo zeroing,
// shared by the sparse and the Winograd kernels.
#pragma once

#include <torch/extension.h>

#include "simd.h"

#include <algorithm>
#include <cstdint>

namespace sparseift {

// Zero the halo of every [Hp, Wp, VW] plane of `t` (`pitch` floats apart) around its h x w
// interior at (hh, hw).
inline void zero_halo(float* t, int64_t planes, int64_t pitch, int64_t hp, int64_t wp, int64_t hh, int64_t hw, int64_t h,
                      int64_t w, int64_t threads) {
  if (hh == 0 && hw == 0) return;
  parallel_tasks(threads, planes, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float* plane = t + i * pitch;
      std::fill(plane, plane + hh * wp * VW, 0.0f);
      std::fill(plane + (hh + h) * wp * VW, plane + hp * wp * VW, 0.0f);
      for (int64_t r = hh; r < hh + h; ++r) {
        float* row = plane + r * wp * VW;
        std::fill(row, row + hw * VW, 0.0f);
        std::fill(row + (hw + w) * VW, row + wp * VW, 0.0f);
      }
    }
  });
}

// A float32 [G, C, Hp, Wp, VW] tensor of dense [Hp, Wp, VW] planes, stride(1) floats apart
// (plane_pitch() for those made by blocked_empty; a contiguous tensor is fine too).
inline void check_blocked(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 5 && t.scalar_type() == torch::kFloat && t.size(4) == VW && t.stride(4) == 1 &&
                  t.stride(3) == VW && t.stride(2) == t.size(3) * VW && t.stride(1) >= t.size(2) * t.stride(2) &&
                  t.stride(0) == t.size(1) * t.stride(1),
              name, " must be a float32 [G, C, Hp, Wp, vector_width()] tensor with dense planes (blocked_empty)");
}

}  // namespace sparseift
