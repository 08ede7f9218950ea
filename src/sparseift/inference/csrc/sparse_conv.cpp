// Sparse-weight x dense-activation kernels of sparseift.inference.
//
// One kernel covers Conv2d (any kernel, stride, padding, dilation, groups) and Linear.
// The input is first rewritten into a "phase" layout, one buffer per group of L images:
//     xt[k][c, p, a, b, l] = xpad[n0 + l, c, a * sh + rh, (b + k) * sw + rw],  p = rh * sw + rw,
// a zero-padded, stride-split copy with Hq x Wq planes (row pitch Wq), L image lanes
// (L = 1, or L = the vector width when the batch is large) and S shifted copies k
// (S = 1, or 1 + the largest horizontal tap offset, so that every load is aligned).
// In it, weight tap (c, kh, kw) of output position (oh, ow), lane l, is read at a fixed
// offset from q = (oh * Wq + ow) * L + l:
//     offset = k * copy + (((c * P + p) * Hq + ah) * Wq + aw - k) * L,
//     ah = (kh * dh) / sh,  aw = (kw * dw) / sw,  k = aw if S > 1 else 0.
// A conv is then a sparse matrix (column = offset; non-zeros stored input-channel block by
// block, and row by row within a block) times contiguous runs of q:
//     y[co, q] = sum_j val_j * xt[off_j + q].
// Each task keeps a tile of TILE = NV * VW consecutive q in vector registers, broadcasts
// one non-zero at a time and FMAs a contiguous load: zeros are never touched. (On batch-
// blocked activations with AVX-512, taps of one input channel and kernel row that lie one or
// two column steps apart form runs that load each input vector once for all their weights:
// see block_rows.) Input
// channels are processed in blocks whose slice of xt stays in L1 (partial sums of the task's
// rows stay in an L1 buffer). Columns with ow >= Wo and lanes past the batch are computed
// and dropped. The epilogue adds bias and an optional residual, applies ReLU and stores into
// any output strides (with image lanes and AVX-512: one image's row segment at a time, gathered
// from the tile, so that the stores are contiguous). A Linear layer is the same kernel on a 1 x M "image" with Din channels.
//
// Vector width follows the compiler's target (-march=native): 16 floats with AVX-512,
// 8 with AVX/AVX2, 4 otherwise. Threads: torch.get_num_threads() std::threads share the
// (lane group, q tile, row chunk) tasks dynamically.

#include <torch/extension.h>

#include "blocked.h"
#include "buffer_pool.h"
#include "simd.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>
#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace {

using namespace sparseift;

constexpr int64_t LINE_FLOATS = 64 / sizeof(float);  // floats per cache line
constexpr int MAX_NV = (VW == 16) ? 16 : 14;  // accumulator vectors per tile (of 32 zmm / 16 ymm: 14 + the broadcast)
constexpr int64_t TILE = MAX_NV * VW;

struct Geometry {
  int64_t sh, sw, ph, pw, dh, dw;  // stride, padding, dilation
  int64_t ho, wo;                  // output size
  int64_t hq, wq, phases;          // phase-layout plane size and number of planes per channel
  int64_t lanes, shifts, copy;     // images per buffer, shifted copies, floats per copy
  int64_t rows;                    // output channels per task (their partial sums stay in cache)
  int64_t tile;                    // output positions per task, a multiple of VW, at most TILE
  int64_t threads;                 // worker threads (torch.get_num_threads())
};

// Classes of one row's non-zeros in one channel block, in this order (TAP_CLASSES runs per
// row in block_ptr): single taps; then runs of taps of one input channel and kernel row whose
// column offsets lie m = 0, 1, 2 column steps (STEP vectors) apart, so that each input vector
// loaded once feeds every tap of the run: pairs m = {0, 1}, pairs m = {0, 2}, triples {0, 1, 2}.
// A run takes one slot per tap in `off` / `val` (its weights in m order; the offset of its
// first slot is that of m = 0, the others are not read). Tap masks of the classes:
constexpr int TAP_CLASSES = 4;
constexpr int CLASS_TAPS[TAP_CLASSES] = {0b001, 0b011, 0b101, 0b111};

// acc[k] += sum over the taps t of MASK (bit m set) of w[t] * x[k + m], x[i] the vector at
// p + i * STEP * VW: each of the NV + (highest m) input vectors is loaded once.
template <int NV, int STEP, int MASK>
inline void add_run(vec (&acc)[NV], const float* __restrict p, const float* __restrict w) {
  constexpr int SPAN = 32 - __builtin_clz(MASK);  // 1 + the highest m
  vec weight[3];
  int t = 0;
  UNROLL for (int m = 0; m < 3; ++m) if (MASK >> m & 1) weight[m] = broadcast(w[t++]);
#pragma GCC unroll 32
  for (int i = 0; i < NV + SPAN - 1; ++i) {
    vec x = *reinterpret_cast<const vec_u*>(p + i * STEP * VW);
    if constexpr (MASK != 1) asm("" : "+v"(x));  // one load in a register, not one memory operand per tap
    UNROLL for (int m = 0; m < 3; ++m)
      if ((MASK >> m & 1) && i - m >= 0 && i - m < NV) acc[i - m] += weight[m] * x;
  }
}

// One channel block of a task: for each of its `rows` output rows r, NV output vectors
//     acc_r[k] (+)= sum over the row's non-zeros j in the block of val[j] * xt[off[j] + k * STEP * VW]
// (non-zeros bp[c] .. bp[c + 1] for the row's classes c = TAP_CLASSES r ... (see above), so the
// block's rows read one contiguous run of weights; STEP = 1: consecutive vectors; 2: a stride-2
// conv reading batch-blocked activations). acc_r = out + r * out_pitch is VW-aligned (the task's
// partial-sum buffer); `accumulate` = false starts from zero. The accumulators stay in
// registers from the first load to the last store; one call covers all rows, so the loop over
// them costs no call per row.
template <int NV, int STEP>
void block_rows(const float* __restrict xt, const int32_t* __restrict off, const float* __restrict val,
                const int64_t* __restrict bp, int64_t rows, float* __restrict out, int64_t out_pitch, bool accumulate,
                const float* const* prefetch, int64_t n_prefetch) {
  const int64_t per_row = (n_prefetch + rows - 1) / rows;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = r * per_row, last = std::min(n_prefetch, i + per_row); i < last; ++i)
      __builtin_prefetch(prefetch[i], 0, 2);  // into L2: the lines come back in the next block
    const int64_t* run = bp + r * TAP_CLASSES;
    if (accumulate && run[0] == run[TAP_CLASSES]) continue;
    vec* __restrict o = reinterpret_cast<vec*>(out + r * out_pitch);
    vec acc[NV];
    if (accumulate) {
      UNROLL for (int k = 0; k < NV; ++k) acc[k] = o[k];
    } else {
      UNROLL for (int k = 0; k < NV; ++k) acc[k] = broadcast(0.0f);
    }
    for (int64_t j = run[0]; j < run[1]; ++j) add_run<NV, STEP, CLASS_TAPS[0]>(acc, xt + off[j], val + j);
    for (int64_t j = run[1]; j < run[2]; j += 2) add_run<NV, STEP, CLASS_TAPS[1]>(acc, xt + off[j], val + j);
    for (int64_t j = run[2]; j < run[3]; j += 2) add_run<NV, STEP, CLASS_TAPS[2]>(acc, xt + off[j], val + j);
    for (int64_t j = run[3]; j < run[4]; j += 3) add_run<NV, STEP, CLASS_TAPS[3]>(acc, xt + off[j], val + j);
    UNROLL for (int k = 0; k < NV; ++k) o[k] = acc[k];
  }
}

using TileFn = void (*)(const float*, const int32_t*, const float*, const int64_t*, int64_t, float*, int64_t, bool,
                       const float* const*, int64_t);
constexpr int MAX_STEP = 2;

template <int STEP, int... NV>
constexpr std::array<TileFn, sizeof...(NV)> make_tiles(std::integer_sequence<int, NV...>) {
  return {&block_rows<NV + 1, STEP>...};
}
// TILES[step - 1][nv - 1]
const std::array<std::array<TileFn, MAX_NV>, MAX_STEP> TILES = {
    make_tiles<1>(std::make_integer_sequence<int, MAX_NV>{}),
    make_tiles<2>(std::make_integer_sequence<int, MAX_NV>{})};

// out[i * os] = relu?(tile[i] + bias + res[i * rs]) for i < len.
inline void epilogue(const float* __restrict tile, float bias, const float* __restrict res, int64_t rs,
                     float* __restrict out, int64_t os, int64_t len, bool relu) {
  const float floor = relu ? 0.0f : -std::numeric_limits<float>::infinity();
  if (os == 1 && (res == nullptr || rs == 1)) {
    if (res) {
      for (int64_t i = 0; i < len; ++i) out[i] = std::max(tile[i] + bias + res[i], floor);
    } else {
      for (int64_t i = 0; i < len; ++i) out[i] = std::max(tile[i] + bias, floor);
    }
    return;
  }
  for (int64_t i = 0; i < len; ++i) out[i * os] = std::max(tile[i] + bias + (res ? res[i * rs] : 0.0f), floor);
}

#if defined(__AVX512F__)
// out[i] = relu?(tile[i * VW] + bias + res[i]) for i < len <= VW: one lane (image) of a
// lane-interleaved tile gathered into a contiguous output row segment.
inline void epilogue_lane(const float* __restrict tile, float bias, const float* __restrict res,
                          float* __restrict out, int64_t len, bool relu) {
  const __mmask16 mask = static_cast<__mmask16>((1u << len) - 1);
  const __m512i index = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(VW));
  __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, index, tile, 4);
  v = _mm512_add_ps(v, _mm512_set1_ps(bias));
  if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, res));
  if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
  _mm512_mask_storeu_ps(out, mask, v);
}
#endif

// Write channel c of images n0 .. n0 + L (any strides; zeros past the batch) into copy 0 of
// the phase layout at `dst` (the channel's P planes).
void to_phase_layout(const float* x, const int64_t* xs, int64_t n_img, int64_t n0, int64_t c, int64_t h,
                     int64_t w, const Geometry& g, float* dst) {
  const int64_t plane = g.hq * g.wq * g.lanes;
  for (int64_t lane = 0; lane < g.lanes; ++lane) {
    const bool valid = n0 + lane < n_img;
    const float* img = x + (n0 + lane) * xs[0] + c * xs[1];
    for (int64_t rh = 0; rh < g.sh; ++rh) {
      for (int64_t rw = 0; rw < g.sw; ++rw) {
        float* phase = dst + (rh * g.sw + rw) * plane + lane;
        // Columns b with 0 <= b * sw + rw - pw < w hold input values, the rest are zero.
        const int64_t lo = std::min(g.wq, std::max<int64_t>(0, (g.pw - rw + g.sw - 1) / g.sw));
        const int64_t last = w - 1 + g.pw - rw;  // b * sw <= last
        const int64_t hi = last < 0 ? lo : std::max(lo, std::min(g.wq, last / g.sw + 1));
        for (int64_t a = 0; a < g.hq; ++a) {
          const int64_t ih = a * g.sh + rh - g.ph;
          float* row = phase + a * g.wq * g.lanes;
          if (!valid || ih < 0 || ih >= h) {
            for (int64_t b = 0; b < g.wq; ++b) row[b * g.lanes] = 0.0f;
            continue;
          }
          const float* first = img + ih * xs[2] + (lo * g.sw + rw - g.pw) * xs[3];
          for (int64_t b = 0; b < lo; ++b) row[b * g.lanes] = 0.0f;
          for (int64_t b = hi; b < g.wq; ++b) row[b * g.lanes] = 0.0f;
          if (g.lanes == 1 && g.sw == 1 && xs[3] == 1) {
            std::memcpy(row + lo, first, sizeof(float) * (hi - lo));
          } else {
            const int64_t step = g.sw * xs[3];
            for (int64_t b = lo; b < hi; ++b) row[b * g.lanes] = first[(b - lo) * step];
          }
        }
      }
    }
  }
}

}  // namespace

// y = act(sparse_conv(x) + bias + residual), written into `out`.
//   x: [N, C, H, W] float32, any strides.  block_ptr: [B, TAP_CLASSES Cout + 1] int64, the
//   non-zeros of input-channel block b, row co and class c are [block_ptr[b, i], block_ptr[b, i + 1]),
//   i = TAP_CLASSES co + c (stored block-major; see block_rows).  offsets: [nnz] int32
//   (phase-layout offsets, see top).
//   values: [nnz] float32.  bias: [Cout] or empty.  residual: out's shape or empty.
//   out: [N, Cout, Ho, Wo] float32, any strides.  geometry: sh, sw, ph, pw, dh, dw, ho, wo,
//   hq, wq, phases, lanes, shifts, copy, rows, tile, threads (see top and Geometry; computed by
//   sparseift/inference/kernels.py).
void sparse_conv_out(const torch::Tensor& x, const torch::Tensor& block_ptr, const torch::Tensor& offsets,
                     const torch::Tensor& values, const torch::Tensor& bias, const torch::Tensor& residual,
                     torch::Tensor& out, std::vector<int64_t> geometry, bool relu) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == torch::kFloat, "x must be a float32 4-D tensor");
  TORCH_CHECK(out.dim() == 4 && out.scalar_type() == torch::kFloat, "out must be a float32 4-D tensor");
  TORCH_CHECK(block_ptr.dim() == 2 && block_ptr.scalar_type() == torch::kLong &&
                  offsets.scalar_type() == torch::kInt && values.scalar_type() == torch::kFloat &&
                  block_ptr.is_contiguous() && offsets.is_contiguous() && values.is_contiguous(),
              "block_ptr (int64 [blocks, TAP_CLASSES Cout + 1]), offsets (int32) and values (float32) must be contiguous");
  TORCH_CHECK((block_ptr.size(1) - 1) % TAP_CLASSES == 0, "block_ptr must hold TAP_CLASSES runs per row");
  TORCH_CHECK(geometry.size() == 17, "geometry must hold 17 values (see sparse_conv.cpp)");
  const Geometry g{geometry[0],  geometry[1],  geometry[2],  geometry[3],  geometry[4],  geometry[5],
                   geometry[6],  geometry[7],  geometry[8],  geometry[9],  geometry[10], geometry[11],
                   geometry[12], geometry[13], geometry[14], geometry[15], geometry[16]};
  TORCH_CHECK(g.rows >= 1, "rows per task must be >= 1");
  TORCH_CHECK(g.tile >= VW && g.tile <= TILE && g.tile % VW == 0 && g.tile % g.lanes == 0,
              "tile must be a multiple of the vector width and of lanes, at most tile_width()");
  const int64_t tile_len = g.tile;
  const int64_t n_img = x.size(0), channels = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t cout = (block_ptr.size(1) - 1) / TAP_CLASSES;
  TORCH_CHECK(out.size(0) == n_img && out.size(1) == cout && out.size(2) == g.ho && out.size(3) == g.wo,
              "out has the wrong shape");
  TORCH_CHECK(g.lanes >= 1 && g.shifts >= 1, "lanes and shifts must be >= 1");
  const int64_t channel_elems = g.phases * g.hq * g.wq * g.lanes;
  const int64_t used = channels * channel_elems;
  // Taps read at most (wq - wo) columns right of their output: that, plus a tile, is the slack.
  TORCH_CHECK(g.copy >= used + (g.wq - g.wo + 1) * g.lanes + TILE && g.copy % VW == 0,
              "copy stride too small for the slack reads");
  const bool has_bias = bias.numel() > 0, has_res = residual.numel() > 0;
  if (has_res) TORCH_CHECK(residual.sizes() == out.sizes() && residual.scalar_type() == torch::kFloat,
                           "residual must match out");

  const int64_t n_groups = (n_img + g.lanes - 1) / g.lanes;
  const int64_t group_elems = g.shifts * g.copy;
  auto xt = torch::empty({n_groups, group_elems}, x.options().memory_format(torch::MemoryFormat::Contiguous));
  float* xt_base = xt.data_ptr<float>();
  const float* x_base = x.data_ptr<float>();
  const int64_t xs[4] = {x.stride(0), x.stride(1), x.stride(2), x.stride(3)};
  parallel_tasks(g.threads, n_groups * channels, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t grp = i / channels, c = i % channels;
      float* copy0 = xt_base + grp * group_elems;
      to_phase_layout(x_base, xs, n_img, grp * g.lanes, c, h, w, g, copy0 + c * channel_elems);
      if (c == channels - 1) std::fill(copy0 + used, copy0 + g.copy, 0.0f);
    }
  });
  if (g.shifts > 1) {  // copy k = copy 0 shifted left by k floats
    parallel_tasks(g.threads, n_groups * (g.shifts - 1), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t grp = i / (g.shifts - 1), k = i % (g.shifts - 1) + 1;
        float* copy0 = xt_base + grp * group_elems;
        std::memcpy(copy0 + k * g.copy, copy0 + k, sizeof(float) * (g.copy - k));
        std::fill(copy0 + (k + 1) * g.copy - k, copy0 + (k + 1) * g.copy, 0.0f);
      }
    });
  }

  const int32_t* off = offsets.data_ptr<int32_t>();
  const float* val = values.data_ptr<float>();
  const float* b = has_bias ? bias.data_ptr<float>() : nullptr;
  const float* res = has_res ? residual.data_ptr<float>() : nullptr;
  float* y = out.data_ptr<float>();
  const int64_t os[4] = {out.stride(0), out.stride(1), out.stride(2), out.stride(3)};
  int64_t rs[4] = {0, 0, 0, 0};
  if (has_res) for (int d = 0; d < 4; ++d) rs[d] = residual.stride(d);

  const int64_t q_total = g.ho * g.wq * g.lanes;
  const int64_t n_qt = (q_total + tile_len - 1) / tile_len;
  const int64_t outer = n_groups * n_qt;
  const int64_t rows = std::min(g.rows, cout);
  const int64_t n_chunks = (cout + rows - 1) / rows;
  const int64_t n_blocks = block_ptr.size(0);
  const int64_t* bp = block_ptr.data_ptr<int64_t>();

  parallel_tasks(g.threads, outer * n_chunks, [&](int64_t begin, int64_t end) {
    std::vector<float> acc_buffer(rows * tile_len + VW);
    float* acc = acc_buffer.data() + (VW - reinterpret_cast<uintptr_t>(acc_buffer.data()) / sizeof(float) % VW) % VW;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t chunk = task % n_chunks, gq = task / n_chunks;
      const int64_t grp = gq / n_qt, q0 = (gq % n_qt) * tile_len;
      const int64_t q_len = std::min(tile_len, q_total - q0);
      const TileFn fn = TILES[0][(q_len + VW - 1) / VW - 1];
      const float* xt_tile = xt_base + grp * group_elems + q0;
      const int64_t co0 = chunk * rows, co1 = std::min(cout, co0 + rows);
      // Channel blocks outermost: one block's slice of xt stays in L1 while every row of the
      // chunk uses it; partial sums live in `acc`.
      for (int64_t blk = 0; blk < n_blocks; ++blk)
        fn(xt_tile, off, val, bp + blk * (TAP_CLASSES * cout + 1) + TAP_CLASSES * co0, co1 - co0, acc, tile_len,
           blk > 0, nullptr, 0);
      const int64_t n0 = grp * g.lanes, valid_lanes = std::min(g.lanes, n_img - n0);
      for (int64_t co = co0; co < co1; ++co) {
        const float* tile = acc + (co - co0) * tile_len;
        const float bias_co = b ? b[co] : 0.0f;
        float* y_co = y + n0 * os[0] + co * os[1];
        const float* r_co = res ? res + n0 * rs[0] + co * rs[1] : nullptr;
        if (g.lanes == 1) {
          // One output row segment at a time (drop columns ow >= wo).
          for (int64_t q = q0; q < q0 + q_len;) {
            const int64_t oh = q / g.wq, ow = q - oh * g.wq;
            const int64_t len = std::min(q0 + q_len, oh * g.wq + g.wo) - q;
            if (len > 0) {
              epilogue(tile + (q - q0), bias_co, r_co ? r_co + oh * rs[2] + ow * rs[3] : nullptr, rs[3],
                       y_co + oh * os[2] + ow * os[3], os[3], len, relu);
            }
            q = (oh + 1) * g.wq;
          }
          continue;
        }
#if defined(__AVX512F__)
        // Lanes are images: one image at a time, each output row segment gathered from the
        // tile and stored contiguously.
        if (g.lanes == VW && os[3] == 1 && (!res || rs[3] == 1)) {
          const int64_t p_begin = q0 / VW, p_end = (q0 + q_len) / VW;
          for (int64_t lane = 0; lane < valid_lanes; ++lane) {
            for (int64_t pos = p_begin; pos < p_end;) {
              const int64_t oh = pos / g.wq, ow = pos - oh * g.wq;
              const int64_t len = std::min<int64_t>({p_end - pos, g.wo - ow, VW});
              if (len <= 0) {  // past the row's last output column: next row
                pos = (oh + 1) * g.wq;
                continue;
              }
              epilogue_lane(tile + pos * VW - q0 + lane, bias_co, r_co ? r_co + lane * rs[0] + oh * rs[2] + ow : nullptr,
                            y_co + lane * os[0] + oh * os[2] + ow, len, relu);
              pos += len;
            }
          }
          continue;
        }
#endif
        // One output position (all lanes = images) at a time.
        for (int64_t pos = q0 / g.lanes; pos < (q0 + q_len) / g.lanes; ++pos) {
          const int64_t oh = pos / g.wq, ow = pos - oh * g.wq;
          if (ow >= g.wo) continue;
          epilogue(tile + pos * g.lanes - q0, bias_co, r_co ? r_co + oh * rs[2] + ow * rs[3] : nullptr, rs[0],
                   y_co + oh * os[2] + ow * os[3], os[0], valid_lanes, relu);
        }
      }
    }
  });
}

// ---- Batch-blocked activations -------------------------------------------------------
// A batch of N images with C channels of H x W is held as xb[G, C, H + 2 hh, W + 2 hw, VW]:
// image n is lane n % VW of group n / VW, planes are zero-padded by a halo (hh, hw) and
// lanes past the batch hold finite junk that never reaches a real image. A conv reads it
// in place: output (oh, ow), tap (c, kh, kw) of group g is the vector at
//     xb[g, c, oh * sh + kh * dh + oy, ow * sw + kw * dw + ox],  (oy, ox) = halo - padding,
// so a task (g, oh, a run of NV output columns) adds val_j times NV vectors, STEP = sw
// vectors apart, from offset off_j = ((c * Hp + kh * dh) * Wp + kw * dw) * VW. The
// epilogue writes the NV vectors (bias, residual, ReLU applied) straight into the output's
// interior: no input rewrite, no output scatter between consecutive sparse layers. Max
// pooling (blocked in, blocked out) and the global mean (blocked in, [N, C] out) read the
// layout in place too, so a ResNet keeps it from the stem to the classifier.

namespace {

// Floats from one plane of a blocked tensor to the next: the plane rounded up to an odd number
// of 64-byte lines, so that the same position of consecutive channels falls in different L1
// sets (a 14 x 14 plane with a one-pixel halo is 8 KiB with AVX2, and the channels' slices of
// one task would otherwise all compete for the same few sets).
int64_t plane_pitch(int64_t hp, int64_t wp) {
  int64_t lines = (hp * wp * VW + LINE_FLOATS - 1) / LINE_FLOATS;
  if (lines % 2 == 0) ++lines;
  return lines * LINE_FLOATS;
}

// max(m, v) that propagates NaN (as PyTorch's max pooling): v where v > m or v is NaN.
inline vec nan_max(vec m, vec v) { return (v > m) | (v != v) ? v : m; }
inline float nan_max(float m, float v) { return (v > m) || (v != v) ? v : m; }

// relu?(v) that keeps NaN (as torch.relu): zero where v < 0.
inline vec rectify(vec v, bool relu) { return relu ? (v < broadcast(0.0f) ? broadcast(0.0f) : v) : v; }
inline float rectify(float v, bool relu) { return relu && v < 0.0f ? 0.0f : v; }

// A max pool's window (kernel, stride, padding, dilation) from geometry[0 .. 8), checked.
struct PoolWindow {
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;

  explicit PoolWindow(const std::vector<int64_t>& g)
      : kh(g[0]), kw(g[1]), sh(g[2]), sw(g[3]), ph(g[4]), pw(g[5]), dh(g[6]), dw(g[7]) {
    TORCH_CHECK(kh >= 1 && kw >= 1 && sh >= 1 && sw >= 1 && dh >= 1 && dw >= 1 && ph >= 0 && pw >= 0,
                "kernel, stride and dilation must be >= 1, padding >= 0");
  }

  // Every window of an ho x wo output overlaps the h x w image (its padding never wins).
  void check_overlap(int64_t h, int64_t w, int64_t ho, int64_t wo) const {
    TORCH_CHECK((ho - 1) * sh - ph < h && (wo - 1) * sw - pw < w && ph <= (kh - 1) * dh && pw <= (kw - 1) * dw,
                "every pooling window must overlap the image");
  }

  // The maximum (NaN propagating) of `lowest` and output (oh, ow)'s window clipped to the h x w
  // image; load(r, col) reads input (r, col) (a float or a vector).
  template <class T, class Load>
  T max_at(int64_t oh, int64_t ow, int64_t h, int64_t w, T lowest, const Load& load) const {
    T m = lowest;
    for (int64_t i = 0; i < kh; ++i) {
      const int64_t r = oh * sh - ph + i * dh;
      for (int64_t j = 0; j < kw && r >= 0 && r < h; ++j) {
        const int64_t col = ow * sw - pw + j * dw;
        if (col >= 0 && col < w) m = nan_max(m, load(r, col));
      }
    }
    return m;
  }
};

}  // namespace

// An uninitialised blocked tensor [G, C, Hp, Wp, VW] with planes plane_pitch(Hp, Wp) floats apart.
torch::Tensor blocked_empty(int64_t groups, int64_t c, int64_t hp, int64_t wp) {
  TORCH_CHECK(groups >= 1 && c >= 1 && hp >= 1 && wp >= 1, "blocked_empty: every size must be >= 1");
  const int64_t pitch = plane_pitch(hp, wp);  // strides set explicitly: a view would give a size-1 C any stride
  return torch::empty({groups * c * pitch}, torch::kFloat).as_strided({groups, c, hp, wp, VW}, {c * pitch, pitch, wp * VW, VW, 1});
}

namespace {

// Writes VW-float vectors dst[k * dst_step] = (src[l * lane_step + k * k_step] for the first
// `lanes` lanes l, zero for the others), k < run <= VW: a run of values of VW images gathered
// through a VW x VW block, so that each image's run is read contiguously where k_step == 1 and
// each output vector is written whole, once.
inline void gather_lanes(const float* src, int64_t lane_step, int64_t k_step, int64_t lanes, int64_t run, float* dst,
                         int64_t dst_step) {
  alignas(64) float block[VW][VW];  // block[k][lane]
  for (int64_t lane = 0; lane < VW; ++lane)
    for (int64_t k = 0; k < run; ++k) block[k][lane] = lane < lanes ? src[lane * lane_step + k * k_step] : 0.0f;
  for (int64_t k = 0; k < run; ++k) *reinterpret_cast<vec*>(dst + k * dst_step) = *reinterpret_cast<const vec*>(block[k]);
}

}  // namespace

// x [N, C, H, W] (any strides) -> [ceil(N / VW), C, H + 2 hh, W + 2 hw, VW], zero halo and
// zero lanes past N. Values move in VW x VW blocks (gather_lanes): channels-last inputs per
// pixel, runs of VW channels; other inputs per channel row, runs of VW columns. Either way no
// output line is written once per image (a 16-image batch of 224 x 224 RGB images: 3.9 ms
// per lane -> ~1 ms per block on a Sapphire Rapids).
torch::Tensor to_blocked(const torch::Tensor& x, int64_t hh, int64_t hw, int64_t threads) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == torch::kFloat, "x must be a float32 4-D tensor");
  TORCH_CHECK(hh >= 0 && hw >= 0, "halo must be >= 0");
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t groups = (n + VW - 1) / VW, hp = h + 2 * hh, wp = w + 2 * hw;
  auto out = blocked_empty(groups, c, hp, wp);
  float* base = out.data_ptr<float>();
  const int64_t pitch = out.stride(1);
  const float* src = x.data_ptr<float>();
  const int64_t xs[4] = {x.stride(0), x.stride(1), x.stride(2), x.stride(3)};
  zero_halo(base, groups * c, pitch, hp, wp, hh, hw, h, w, threads);
  if (xs[1] == 1 && c > 1) {  // channels-last: per (group, row, pixel), runs of channels
    parallel_tasks(threads, groups * h, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t g = i / h, r = i % h, lanes = std::min<int64_t>(VW, n - g * VW);
        for (int64_t col = 0; col < w; ++col) {
          const float* pixel = src + g * VW * xs[0] + r * xs[2] + col * xs[3];
          float* dst = base + g * c * pitch + ((r + hh) * wp + hw + col) * VW;
          for (int64_t c0 = 0; c0 < c; c0 += VW)
            gather_lanes(pixel + c0, xs[0], 1, lanes, std::min<int64_t>(VW, c - c0), dst + c0 * pitch, pitch);
        }
      }
    });
    return out;
  }
  parallel_tasks(threads, groups * c * h, [&](int64_t begin, int64_t end) {  // per (group, channel, row), runs of columns
    for (int64_t i = begin; i < end; ++i) {
      const int64_t g = i / (c * h), ch = i / h % c, r = i % h, lanes = std::min<int64_t>(VW, n - g * VW);
      const float* row = src + g * VW * xs[0] + ch * xs[1] + r * xs[2];
      float* dst = base + (g * c + ch) * pitch + ((r + hh) * wp + hw) * VW;
      for (int64_t col0 = 0; col0 < w; col0 += VW)
        gather_lanes(row + col0 * xs[3], xs[0], xs[3], lanes, std::min<int64_t>(VW, w - col0), dst + col0 * VW, VW);
    }
  });
  return out;
}

// The first n images of blocked xb (halo hh, hw) as a contiguous [n, C, H, W] tensor. Per
// (group, channel, row), runs of VW column vectors are transposed through a VW x VW block
// (the inverse of gather_lanes), so that each image's row segment is written contiguously and
// each input line is read once.
torch::Tensor from_blocked(const torch::Tensor& xb, int64_t n, int64_t hh, int64_t hw, int64_t threads) {
  check_blocked(xb, "xb");
  const int64_t c = xb.size(1), hp = xb.size(2), wp = xb.size(3), h = hp - 2 * hh, w = wp - 2 * hw;
  TORCH_CHECK(n >= 1 && n <= xb.size(0) * VW && h >= 0 && w >= 0, "n or halo out of range for xb");
  auto out = torch::empty({n, c, h, w}, xb.options());
  float* dst = out.data_ptr<float>();
  const float* base = xb.data_ptr<float>();
  const int64_t pitch = xb.stride(1);
  parallel_tasks(threads, xb.size(0) * c * h, [&](int64_t begin, int64_t end) {
    alignas(64) float block[VW][VW];  // block[lane][column]
    for (int64_t i = begin; i < end; ++i) {
      const int64_t g = i / (c * h), ch = i / h % c, r = i % h, lanes = std::min<int64_t>(VW, n - g * VW);
      const float* row = base + (g * c + ch) * pitch + ((r + hh) * wp + hw) * VW;
      float* img_row = dst + ((g * VW * c + ch) * h + r) * w;  // lane 0's row; lane l is l * c * h * w further
      for (int64_t col0 = 0; col0 < w; col0 += VW) {
        const int64_t run = std::min<int64_t>(VW, w - col0);
        for (int64_t k = 0; k < run; ++k)
          for (int64_t lane = 0; lane < VW; ++lane) block[lane][k] = row[(col0 + k) * VW + lane];
        for (int64_t lane = 0; lane < lanes; ++lane)
          std::copy(block[lane], block[lane] + run, img_row + lane * c * h * w + col0);
      }
    }
  });
  return out;
}

// out = relu?(max_pool2d(x)) on batch-blocked tensors. Windows are clipped to the h x w image (a
// window's padding never wins, as in PyTorch), so the input's halo is never read; NaN
// propagates. out: [G, C, Ho + 2 out_hh, Wo + 2 out_hw, VW], its halo zeroed here. (ReLU after
// the pool equals the pool after ReLU: the maximum commutes with any non-decreasing map.)
//   geometry: kh, kw, sh, sw, ph, pw, dh, dw, in_hh, in_hw, out_hh, out_hw, threads.
void max_pool_blocked_out(const torch::Tensor& x, torch::Tensor& out, std::vector<int64_t> geometry, bool relu) {
  check_blocked(x, "x");
  check_blocked(out, "out");
  TORCH_CHECK(geometry.size() == 13, "geometry must hold 13 values (see sparse_conv.cpp)");
  const PoolWindow win(geometry);
  const int64_t in_hh = geometry[8], in_hw = geometry[9], out_hh = geometry[10], out_hw = geometry[11], threads = geometry[12];
  const int64_t planes = x.size(0) * x.size(1), hp = x.size(2), wp = x.size(3);
  const int64_t h = hp - 2 * in_hh, w = wp - 2 * in_hw, hop = out.size(2), wop = out.size(3);
  const int64_t ho = hop - 2 * out_hh, wo = wop - 2 * out_hw;
  TORCH_CHECK(h >= 1 && w >= 1 && ho >= 1 && wo >= 1 && out.size(0) * out.size(1) == planes,
              "x and out do not match the halos given");
  win.check_overlap(h, w, ho, wo);
  float* y = out.data_ptr<float>();
  const int64_t in_pitch = x.stride(1), out_pitch = out.stride(1);
  zero_halo(y, planes, out_pitch, hop, wop, out_hh, out_hw, ho, wo, threads);
  const float* xb = x.data_ptr<float>();
  parallel_tasks(threads, planes * ho, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t plane = task / ho, oh = task % ho;
      const vec* src = reinterpret_cast<const vec*>(xb + plane * in_pitch + in_hh * wp * VW) + in_hw;
      vec* dst = reinterpret_cast<vec*>(y + plane * out_pitch + ((oh + out_hh) * wop + out_hw) * VW);
      for (int64_t ow = 0; ow < wo; ++ow)
        dst[ow] = rectify(win.max_at(oh, ow, h, w, broadcast(-std::numeric_limits<float>::infinity()),
                                     [&](int64_t r, int64_t col) { return src[r * wp + col]; }),
                          relu);
    }
  });
}

// out = relu?(max_pool2d(x)) on plain tensors whose rows are contiguous (NCHW: PyTorch's own pooling of
// NCHW tensors was 16x slower than of channels-last ones, ~10 ms for the 202 x 112 x 112 stem
// output of a batch-1 Sparse Wide ResNet-18). Per output row: the element-wise maximum of its
// window's input rows (contiguous, vectorised), then the maximum over each window's columns.
// Windows are clipped to the image; NaN propagates. out: contiguous [N, C, Ho, Wo].
//   geometry: kh, kw, sh, sw, ph, pw, dh, dw, threads.
void max_pool_plain_out(const torch::Tensor& x, torch::Tensor& out, std::vector<int64_t> geometry, bool relu) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == torch::kFloat && x.stride(3) == 1,
              "x must be a float32 [N, C, H, W] tensor with contiguous rows");
  TORCH_CHECK(out.dim() == 4 && out.scalar_type() == torch::kFloat && out.is_contiguous(),
              "out must be a contiguous float32 [N, C, Ho, Wo] tensor");
  TORCH_CHECK(geometry.size() == 9, "geometry must hold 9 values (see sparse_conv.cpp)");
  const PoolWindow win(geometry);
  const int64_t kh = win.kh, kw = win.kw, sh = win.sh, sw = win.sw, ph = win.ph, pw = win.pw, dh = win.dh, dw = win.dw;
  const int64_t threads = geometry[8];
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), ho = out.size(2), wo = out.size(3);
  TORCH_CHECK(out.size(0) == n && out.size(1) == c && h >= 1 && w >= 1 && ho >= 1 && wo >= 1,
              "x and out do not match");
  win.check_overlap(h, w, ho, wo);
  const float* src = x.data_ptr<float>();
  float* y = out.data_ptr<float>();
  const int64_t xn = x.stride(0), xc = x.stride(1), xh = x.stride(2);
  const float lowest = -std::numeric_limits<float>::infinity();
  parallel_tasks(threads, n * c, [&](int64_t begin, int64_t end) {
    std::vector<float> buffer(w + VW);
    float* rows = buffer.data();
    for (int64_t plane = begin; plane < end; ++plane) {
      const float* in = src + plane / c * xn + plane % c * xc;
      float* dst = y + plane * ho * wo;
      for (int64_t oh = 0; oh < ho; ++oh) {
        std::fill(rows, rows + w, lowest);
        for (int64_t i = 0; i < kh; ++i) {  // rows[col] = max over the window's input rows
          const int64_t r = oh * sh - ph + i * dh;
          if (r < 0 || r >= h) continue;
          const float* row = in + r * xh;
          int64_t col = 0;
          for (; col + VW <= w; col += VW) {
            vec_u* m = reinterpret_cast<vec_u*>(rows + col);
            *m = nan_max(*m, *reinterpret_cast<const vec_u*>(row + col));
          }
          for (; col < w; ++col) rows[col] = nan_max(rows[col], row[col]);
        }
        float* out_row = dst + oh * wo;
        std::fill(out_row, out_row + wo, lowest);
        for (int64_t j = 0; j < kw; ++j) {  // then over the window's columns: ow * sw - pw + j * dw in [0, w)
          const int64_t shift = j * dw - pw;
          const int64_t lo = shift >= 0 ? 0 : (-shift + sw - 1) / sw;
          const int64_t hi = shift > w - 1 ? 0 : std::min(wo, (w - 1 - shift) / sw + 1);
          for (int64_t ow = lo; ow < hi; ++ow) out_row[ow] = nan_max(out_row[ow], rows[ow * sw + shift]);
        }
        if (relu)
          for (int64_t ow = 0; ow < wo; ++ow) out_row[ow] = rectify(out_row[ow], true);
      }
    }
  });
}

// out = relu?(max_pool2d(x)) on channels-last tensors (x and out [N, C, H, W] with a pixel's C
// channels contiguous; PyTorch's pooling computes the argmax too: 4.8 ms for the 16-image
// 64 x 112 x 112 stem output of a dense ResNet-18 on a Sapphire Rapids). Per output pixel, the
// element-wise maximum of its window's pixels, VW channels at a time. Windows are clipped to
// the image; NaN propagates.  geometry: kh, kw, sh, sw, ph, pw, dh, dw, threads.
void max_pool_channels_last_out(const torch::Tensor& x, torch::Tensor& out, std::vector<int64_t> geometry, bool relu) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == torch::kFloat && x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "x must be a channels-last float32 [N, C, H, W] tensor");
  TORCH_CHECK(out.dim() == 4 && out.scalar_type() == torch::kFloat && out.is_contiguous(at::MemoryFormat::ChannelsLast),
              "out must be a channels-last float32 [N, C, Ho, Wo] tensor");
  TORCH_CHECK(geometry.size() == 9, "geometry must hold 9 values (see sparse_conv.cpp)");
  const PoolWindow win(geometry);
  const int64_t threads = geometry[8];
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), ho = out.size(2), wo = out.size(3);
  TORCH_CHECK(out.size(0) == n && out.size(1) == c && h >= 1 && w >= 1 && ho >= 1 && wo >= 1, "x and out do not match");
  win.check_overlap(h, w, ho, wo);
  const float* src = x.data_ptr<float>();
  float* y = out.data_ptr<float>();
  const float lowest = -std::numeric_limits<float>::infinity();
  parallel_tasks(threads, n * ho, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t img = task / ho, oh = task % ho;
      const float* in = src + img * h * w * c;
      for (int64_t ow = 0; ow < wo; ++ow) {
        float* dst = y + ((img * ho + oh) * wo + ow) * c;
        int64_t c0 = 0;
        for (; c0 + VW <= c; c0 += VW)  // VW channels at a time, then the rest one by one
          *reinterpret_cast<vec_u*>(dst + c0) = rectify(win.max_at(oh, ow, h, w, broadcast(lowest), [&](int64_t r, int64_t col) -> vec {
            return *reinterpret_cast<const vec_u*>(in + (r * w + col) * c + c0);
          }), relu);
        for (; c0 < c; ++c0)
          dst[c0] = rectify(win.max_at(oh, ow, h, w, lowest, [&](int64_t r, int64_t col) { return in[(r * w + col) * c + c0]; }), relu);
      }
    }
  });
}

// The mean of every image plane's h x w interior: blocked xb (halo hh, hw) -> [n, C].
torch::Tensor mean_blocked(const torch::Tensor& xb, int64_t n, int64_t hh, int64_t hw, int64_t threads) {
  check_blocked(xb, "xb");
  const int64_t c = xb.size(1), hp = xb.size(2), wp = xb.size(3), h = hp - 2 * hh, w = wp - 2 * hw;
  TORCH_CHECK(n >= 1 && n <= xb.size(0) * VW && h >= 1 && w >= 1, "n or halo out of range for xb");
  auto out = torch::empty({n, c}, xb.options());
  float* dst = out.data_ptr<float>();
  const float* base = xb.data_ptr<float>();
  const float scale = 1.0f / static_cast<float>(h * w);
  const int64_t pitch = xb.stride(1);
  parallel_tasks(threads, xb.size(0) * c, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t g = i / c, ch = i % c;
      const vec* plane = reinterpret_cast<const vec*>(base + i * pitch);
      vec sum{};
      for (int64_t r = hh; r < hh + h; ++r)
        for (int64_t col = hw; col < hw + w; ++col) sum += plane[r * wp + col];
      for (int64_t lane = 0; lane < VW && g * VW + lane < n; ++lane) dst[(g * VW + lane) * c + ch] = sum[lane] * scale;
    }
  });
  return out;
}

// The outputs [first, last) of a pooling window axis (kernel k, stride s, padding p) that
// input position i feeds, clipped to the n outputs: s o - p <= i <= s o - p + k - 1.
inline std::pair<int64_t, int64_t> pooled_span(int64_t i, int64_t k, int64_t s, int64_t p, int64_t n) {
  const int64_t low = i + p - k + 1;
  return {low <= 0 ? 0 : (low + s - 1) / s, std::min(n, (i + p) / s + 1)};
}

// out = act(sparse_conv(x) + bias + residual), max pooled where a pool window is given, on
// batch-blocked tensors (see above).
//   x: [G, C, Hp, Wp, VW]; out: [G, Cout, Ho' + 2 out_hh, Wo' + 2 out_hw, VW] (its halo is
//   zeroed here), Ho' x Wo' the conv's output Ho x Wo or, pooled, the pooled size; residual:
//   [G, Cout, Ho + 2 res_hh, Wo + 2 res_hw, VW] or empty.
//   block_ptr, offsets, values, bias: as sparse_conv_out (offsets as above).
//   geometry: sh, sw, oy, ox, ho, wo, out_hh, out_hw, res_hh, res_hw, tile (output columns per
//   task, <= tile_width() / VW), rows (output channels per task), band (output rows per task),
//   threads, then what the prefetches need: input channels per channel block (as the weight's
//   blocks), kernel height and width, dilation (rows, columns), conv groups; then the max pool
//   that follows (kernel, stride, padding, dilation per axis as max_pool_blocked_out; all 0 for
//   none).
// Pooled, each task max-reduces its activated outputs into the pooled outputs of the windows
// they fall in, which start at zero (ReLU) or -inf: the conv's output is never stored. Tasks of
// neighbouring bands or column runs share pooled outputs, so they run in four passes by the
// parity of their band and column run (tasks of one pass lie at least a band and a column run
// apart, more than a window: band >= kernel rows - 1 and tile >= kernel columns - 1).
void sparse_conv_blocked_out(const torch::Tensor& x, const torch::Tensor& block_ptr, const torch::Tensor& offsets,
                             const torch::Tensor& values, const torch::Tensor& bias, const torch::Tensor& residual,
                             torch::Tensor& out, std::vector<int64_t> geometry, bool relu) {
  check_blocked(x, "x");
  check_blocked(out, "out");
  TORCH_CHECK(geometry.size() == 28, "geometry must hold 28 values (see sparse_conv.cpp)");
  const int64_t sh = geometry[0], sw = geometry[1], oy = geometry[2], ox = geometry[3], ho = geometry[4],
                wo = geometry[5], out_hh = geometry[6], out_hw = geometry[7], res_hh = geometry[8],
                res_hw = geometry[9], tile = geometry[10], rows_wanted = geometry[11], band = geometry[12],
                threads = geometry[13], block_channels = geometry[14], kh = geometry[15], kw = geometry[16],
                dh = geometry[17], dw = geometry[18], conv_groups = geometry[19];
  TORCH_CHECK(block_channels >= 1 && kh >= 1 && kw >= 1 && dh >= 1 && dw >= 1 && conv_groups >= 1,
              "block channels, kernel size, dilation and conv groups must be >= 1");
  TORCH_CHECK(sw >= 1 && sw <= MAX_STEP && sh >= 1, "blocked convs take a column stride of 1 or 2");
  TORCH_CHECK(tile >= 1 && tile <= MAX_NV && rows_wanted >= 1 && band >= 1,
              "tile must be in [1, tile_width() / VW], rows and band >= 1");
  TORCH_CHECK(block_ptr.dim() == 2 && block_ptr.scalar_type() == torch::kLong &&
                  offsets.scalar_type() == torch::kInt && values.scalar_type() == torch::kFloat &&
                  block_ptr.is_contiguous() && offsets.is_contiguous() && values.is_contiguous(),
              "block_ptr (int64 [blocks, TAP_CLASSES Cout + 1]), offsets (int32) and values (float32) must be contiguous");
  TORCH_CHECK((block_ptr.size(1) - 1) % TAP_CLASSES == 0, "block_ptr must hold TAP_CLASSES runs per row");
  const int64_t groups = x.size(0), channels = x.size(1), hp = x.size(2), wp = x.size(3);
  const int64_t cout = (block_ptr.size(1) - 1) / TAP_CLASSES, hop = out.size(2), wop = out.size(3);
  const int64_t pho = hop - 2 * out_hh, pwo = wop - 2 * out_hw;  // the (pooled) output's size
  const bool pooled = geometry[20] != 0;
  const PoolWindow pool(pooled ? std::vector<int64_t>(geometry.begin() + 20, geometry.end()) : std::vector<int64_t>(8, 1));
  TORCH_CHECK(pool.dh == 1 && pool.dw == 1, "a pool fused into a blocked conv takes dilation 1");
  TORCH_CHECK(out.size(0) == groups && out.size(1) == cout && pho >= 1 && pwo >= 1 && (pooled || (pho == ho && pwo == wo)),
              "out has the wrong shape");
  if (pooled) pool.check_overlap(ho, wo, pho, pwo);
  TORCH_CHECK(oy >= 0 && ox >= 0 && (ho - 1) * sh + oy < hp && (wo - 1) * sw + ox < wp, "input halo too small");
  const bool has_res = residual.numel() > 0;
  const int64_t hrp = ho + 2 * res_hh, wrp = wo + 2 * res_hw;
  if (has_res) {
    check_blocked(residual, "residual");
    TORCH_CHECK(residual.size(0) == groups && residual.size(1) == cout && residual.size(2) == hrp &&
                    residual.size(3) == wrp, "residual must match the conv's output");
  }
  float* y = out.data_ptr<float>();
  const int64_t out_pitch = out.stride(1), res_pitch = has_res ? residual.stride(1) : 0;
  const float floor_value = relu ? 0.0f : -std::numeric_limits<float>::infinity();
  if (pooled) {  // zero halo, interior at the floor that every window's first output beats
    parallel_tasks(threads, groups * cout, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        float* plane = y + i * out_pitch;
        std::fill(plane, plane + hop * wop * VW, 0.0f);
        if (!relu)
          for (int64_t r = out_hh; r < out_hh + pho; ++r)
            std::fill(plane + (r * wop + out_hw) * VW, plane + (r * wop + out_hw + pwo) * VW, floor_value);
      }
    });
  } else {
    zero_halo(y, groups * cout, out_pitch, hop, wop, out_hh, out_hw, ho, wo, threads);
  }

  const float* xb = x.data_ptr<float>();
  const int32_t* off = offsets.data_ptr<int32_t>();
  const float* val = values.data_ptr<float>();
  const float* b = bias.numel() > 0 ? bias.data_ptr<float>() : nullptr;
  const float* res = has_res ? residual.data_ptr<float>() : nullptr;
  const int64_t* bp = block_ptr.data_ptr<int64_t>();
  const int64_t n_blocks = block_ptr.size(0);
  const int64_t n_wt = (wo + tile - 1) / tile, nv = (wo + n_wt - 1) / n_wt;  // balanced column runs
  const int64_t rows = std::min(rows_wanted, cout), n_chunks = (cout + rows - 1) / rows;
  const int64_t group_in = x.stride(0);
  const std::array<TileFn, MAX_NV>& tiles = TILES[sw - 1];

  const int64_t n_bands = (ho + band - 1) / band, in_pitch = x.stride(1);
  TORCH_CHECK(channels % conv_groups == 0 && cout % conv_groups == 0, "conv groups must divide the input and output channels");
  const int64_t cin_g = channels / conv_groups, cout_g = cout / conv_groups;
  const int64_t band_passes = pooled && n_bands > 1 ? 2 : 1, column_passes = pooled && n_wt > 1 ? 2 : 1;
  TORCH_CHECK(band_passes == 1 || band >= pool.kh - 1, "pooled tasks need bands of at least the pool's kernel rows - 1");
  TORCH_CHECK(column_passes == 1 || nv >= pool.kw - 1, "pooled tasks need column runs of at least the pool's kernel columns - 1");
  // Task i of the pass (band parity pb, column-run parity pc): its origin in x, image group,
  // output channels [co0, co1), rows [oh0, oh1) and columns [ow0, ow0 + len). One pass (no
  // pool): every task.
  struct Task {
    const float* xt;
    int64_t g, co0, co1, oh0, oh1, ow0, len;
  };
  auto pass_bands = [&](int64_t pb) { return (n_bands - pb + band_passes - 1) / band_passes; };
  auto pass_runs = [&](int64_t pc) { return (n_wt - pc + column_passes - 1) / column_passes; };
  auto task_at = [&](int64_t pb, int64_t pc, int64_t i) {
    const int64_t nr = pass_runs(pc), nb = pass_bands(pb);
    const int64_t co0 = i % n_chunks * rows, wt = pc + i / n_chunks % nr * column_passes,
                  oh0 = (pb + i / (n_chunks * nr) % nb * band_passes) * band, g = i / (n_chunks * nr * nb), ow0 = wt * nv;
    return Task{xb + g * group_in + ((oh0 * sh + oy) * wp + ow0 * sw + ox) * VW, g, co0, std::min(cout, co0 + rows), oh0,
                std::min(ho, oh0 + band), ow0, std::min(nv, wo - ow0)};
  };
  // Appends the input lines that channel block blk of task t reads: the block's channels (of
  // the conv groups of t's output channels), their rows under t's band, each over the columns
  // its taps span.
  auto append_block_lines = [&](const Task& t, int64_t blk, std::vector<const float*>& lines) {
    const int64_t c0 = blk * block_channels, c1 = std::min(cin_g, c0 + block_channels);
    const int64_t in_rows = (t.oh1 - 1 - t.oh0) * sh + (kh - 1) * dh + 1;
    const int64_t floats = ((t.len - 1) * sw + (kw - 1) * dw + 1) * VW;
    for (int64_t grp = t.co0 / cout_g; grp <= (t.co1 - 1) / cout_g; ++grp)
      for (int64_t c = grp * cin_g + c0; c < grp * cin_g + c1; ++c)
        for (int64_t r = 0; r < in_rows; ++r)
          for (int64_t at = 0; at < floats; at += LINE_FLOATS) lines.push_back(t.xt + c * in_pitch + r * wp * VW + at);
  };
  // The (pooled) output rows [first, last) and columns that output row oh and columns
  // [ow0, ow0 + len) of the conv write.
  auto out_rows = [&](int64_t oh) {
    return pooled ? pooled_span(oh, pool.kh, pool.sh, pool.ph, pho) : std::pair<int64_t, int64_t>{oh, oh + 1};
  };
  auto out_columns = [&](int64_t ow) {
    return pooled ? pooled_span(ow, pool.kw, pool.sw, pool.pw, pwo) : std::pair<int64_t, int64_t>{ow, ow + 1};
  };
  auto run_tasks = [&](int64_t pb, int64_t pc, int64_t begin, int64_t end) {
    std::vector<float> acc_buffer(band * rows * nv * VW + VW);
    float* acc = acc_buffer.data() + (VW - reinterpret_cast<uintptr_t>(acc_buffer.data()) / sizeof(float) % VW) % VW;
    std::vector<const float*> next_lines;
    std::array<std::pair<int64_t, int64_t>, MAX_NV> column_spans;
    for (int64_t task = begin; task < end; ++task) {
      const Task t = task_at(pb, pc, task);
      const int64_t g = t.g, co0 = t.co0, co1 = t.co1, oh0 = t.oh0, oh1 = t.oh1, ow0 = t.ow0, len = t.len;
      const float* xt = t.xt;
      const TileFn fn = tiles[len - 1];
      const int64_t band_acc = (co1 - co0) * nv * VW;
      for (int64_t k = 0; k < len; ++k) column_spans[k] = out_columns(ow0 + k);
      auto out_row = [&](int64_t row, int64_t co) { return y + (g * cout + co) * out_pitch + ((row + out_hh) * wop + out_hw) * VW; };
      auto res_at = [&](int64_t oh, int64_t co) {
        return res + (g * cout + co) * res_pitch + ((oh + res_hh) * wrp + ow0 + res_hw) * VW;
      };
      // Channel blocks outermost: a block's input rows for the whole band stay in L1 and its
      // weights are read once per block for every output row of the band. Each block requests
      // (into L2, spread over its rows) the lines that come next: the next block's input, and in
      // the last block the epilogue's output and residual lines and the next task's first input
      // block. (Requested earlier, e.g. spread over the whole task, the epilogue's lines were
      // evicted before use: 8.8% slower at s = 0.9, batch 16, on a Sapphire Rapids.)
      for (int64_t blk = 0; blk < n_blocks; ++blk) {
        next_lines.clear();
        if (blk + 1 < n_blocks) {
          append_block_lines(t, blk + 1, next_lines);
        } else {
          const int64_t first_col = column_spans[0].first, last_col = column_spans[len - 1].second;
          for (int64_t row = out_rows(oh0).first; row < out_rows(oh1 - 1).second; ++row)
            for (int64_t co = co0; co < co1; ++co)
              for (int64_t k = first_col * VW; k < last_col * VW; k += LINE_FLOATS) next_lines.push_back(out_row(row, co) + k);
          if (res)
            for (int64_t oh = oh0; oh < oh1; ++oh)
              for (int64_t co = co0; co < co1; ++co)
                for (int64_t k = 0; k < len * VW; k += LINE_FLOATS) next_lines.push_back(res_at(oh, co) + k);
          if (task + 1 < end) append_block_lines(task_at(pb, pc, task + 1), 0, next_lines);
        }
        const int64_t share = (static_cast<int64_t>(next_lines.size()) + (oh1 - oh0) - 1) / (oh1 - oh0);
        for (int64_t oh = oh0; oh < oh1; ++oh) {
          const int64_t first = std::min<int64_t>(next_lines.size(), (oh - oh0) * share);
          fn(xt + (oh - oh0) * sh * wp * VW, off, val, bp + blk * (TAP_CLASSES * cout + 1) + TAP_CLASSES * co0, co1 - co0,
             acc + (oh - oh0) * band_acc, nv * VW, blk > 0, next_lines.data() + first,
             std::min<int64_t>(share, next_lines.size() - first));
        }
      }
      const vec floor = broadcast(floor_value);
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        const auto [row0, row1] = out_rows(oh);
        for (int64_t co = co0; co < co1; ++co) {
          const float* tile_co = acc + (oh - oh0) * band_acc + (co - co0) * nv * VW;
          const vec bias_co = broadcast(b ? b[co] : 0.0f);
          const vec* r = res ? reinterpret_cast<const vec*>(res_at(oh, co)) : nullptr;
          auto activated = [&](int64_t k) {
            vec v = *reinterpret_cast<const vec*>(tile_co + k * VW) + bias_co;
            if (r) v += r[k];
            return v > floor ? v : floor;
          };
          if (!pooled) {
            vec* dst = reinterpret_cast<vec*>(out_row(oh, co)) + ow0;
            for (int64_t k = 0; k < len; ++k) dst[k] = activated(k);
            continue;
          }
          for (int64_t k = 0; k < len; ++k) {
            const vec v = activated(k);
            for (int64_t row = row0; row < row1; ++row) {
              vec* dst = reinterpret_cast<vec*>(out_row(row, co));
              for (int64_t col = column_spans[k].first; col < column_spans[k].second; ++col) dst[col] = nan_max(dst[col], v);
            }
          }
        }
      }
    }
  };
  for (int64_t pb = 0; pb < band_passes; ++pb)
    for (int64_t pc = 0; pc < column_passes; ++pc)
      parallel_tasks(threads, groups * pass_bands(pb) * pass_runs(pc) * n_chunks,
                     [&](int64_t begin, int64_t end) { run_tasks(pb, pc, begin, end); });
}

// The vector width in floats this build uses (16: AVX-512, 8: AVX/AVX2, 4: other).
int64_t vector_width() { return VW; }

// The most output positions one task keeps in registers.
int64_t tile_width() { return TILE; }

void register_winograd(pybind11::module_& m);  // winograd.cpp

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  register_winograd(m);
  m.def("sparse_conv_out", &sparse_conv_out, "sparse conv/linear with fused bias, residual and ReLU");
  m.def("sparse_conv_blocked_out", &sparse_conv_blocked_out,
        "sparse conv with fused bias, residual and ReLU on batch-blocked activations");
  m.def("blocked_empty", &blocked_empty, "uninitialised batch-blocked [G, C, Hp, Wp, VW] with padded plane pitch");
  m.def("to_blocked", &to_blocked, "[N, C, H, W] -> batch-blocked [G, C, Hp, Wp, VW] with a zero halo");
  m.def("from_blocked", &from_blocked, "batch-blocked -> contiguous [N, C, H, W]");
  m.def("max_pool_blocked_out", &max_pool_blocked_out, "max_pool2d (then ReLU if asked) on batch-blocked tensors");
  m.def("max_pool_plain_out", &max_pool_plain_out, "max_pool2d (then ReLU if asked) on [N, C, H, W] tensors with contiguous rows");
  m.def("max_pool_channels_last_out", &max_pool_channels_last_out, "max_pool2d (then ReLU if asked) on channels-last tensors");
  m.def("mean_blocked", &mean_blocked, "batch-blocked [G, C, Hp, Wp, VW] -> per-plane means [N, C]");
  m.def("vector_width", &vector_width, "floats per SIMD vector of this build");
  m.def("tile_width", &tile_width, "output positions per register tile");
  m.def("pool_install", [] { return sparseift::BufferPool::instance().install(); },
        "make the caching buffer pool PyTorch's CPU allocator (nested calls count)");
  m.def("pool_uninstall", [] { sparseift::BufferPool::instance().uninstall(); }, "undo one pool_install");
  m.def("pool_release", [] { return sparseift::BufferPool::instance().release(); },
        "free the pool's cached blocks; returns the bytes freed");
  m.def("pool_cached_bytes", [] { return sparseift::BufferPool::instance().cached_bytes(); },
        "bytes held in the pool's free lists");
}
