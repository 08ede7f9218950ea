// Sparse-weight x dense-activation kernels of sparseift.inference.
//
// One kernel covers Conv2d (any kernel, stride, padding, dilation, groups) and Linear.
// The input of one image is first rewritten into a "phase" layout
//     xt[c, p, a, b] = xpad[c, a * sh + rh, b * sw + rw],  p = rh * sw + rw,
// a zero-padded, stride-split copy with Hq x Wq planes. In it every weight tap
// (c, kh, kw) of output position (oh, ow) reads xt at a fixed offset from q = oh * Wq + ow:
//     offset = ((c * P + p) * Hq + (kh * dh) / sh) * Wq + (kw * dw) / sw.
// A conv is then a sparse matrix (CSR over output channels; column = offset) times
// contiguous runs of q:  y[co, q] = sum_j val_j * xt[off_j + q].
// Each task keeps a tile of TILE = NV * VW consecutive q in vector registers, broadcasts
// one non-zero at a time and FMAs a contiguous load: zeros are never touched. Columns
// q with (q mod Wq) >= Wo are computed and dropped. The epilogue adds bias and an
// optional residual, applies ReLU and stores into any output strides.
// A Linear layer is the same kernel on a 1 x M "image" with Din channels.
//
// Vector width follows the compiler's target (-march=native): 16 floats with AVX-512,
// 8 with AVX/AVX2, 4 otherwise. Threads: at::parallel_for over (image, q tile, row chunk).

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

namespace {

#if defined(__AVX512F__)
constexpr int VW = 16;
#elif defined(__AVX__)
constexpr int VW = 8;
#else
constexpr int VW = 4;
#endif
constexpr int MAX_NV = (VW == 16) ? 8 : 4;  // accumulator vectors per tile (register budget)
constexpr int64_t TILE = MAX_NV * VW;
constexpr int64_t ROWS = 32;  // output rows per task: their partial sums stay in L1

typedef float vec __attribute__((vector_size(VW * sizeof(float))));
typedef float vec_u __attribute__((vector_size(VW * sizeof(float)), aligned(sizeof(float))));

struct Geometry {
  int64_t sh, sw, ph, pw, dh, dw;  // stride, padding, dilation
  int64_t ho, wo;                  // output size
  int64_t hq, wq, phases;          // phase-layout plane size and number of planes per channel
};

// y[q0 .. q0 + NV*VW) of one output row: sum over the row's non-zeros.
template <int NV>
void row_tile(const float* __restrict xt, const int32_t* __restrict off, const float* __restrict val,
              int64_t begin, int64_t end, float* __restrict out, bool accumulate) {
  if (accumulate && begin == end) return;
  vec acc[NV];
  for (int k = 0; k < NV; ++k) acc[k] = accumulate ? *reinterpret_cast<const vec_u*>(out + k * VW) : vec{};
  for (int64_t j = begin; j < end; ++j) {
    const float* p = xt + off[j];
    const vec w = vec{} + val[j];
    for (int k = 0; k < NV; ++k) acc[k] += w * *reinterpret_cast<const vec_u*>(p + k * VW);
  }
  for (int k = 0; k < NV; ++k) *reinterpret_cast<vec_u*>(out + k * VW) = acc[k];
}

using TileFn = void (*)(const float*, const int32_t*, const float*, int64_t, int64_t, float*, bool);

template <int... NV>
constexpr std::array<TileFn, sizeof...(NV)> make_tiles(std::integer_sequence<int, NV...>) {
  return {&row_tile<NV + 1>...};
}
const auto TILES = make_tiles(std::make_integer_sequence<int, MAX_NV>{});

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

// Copy image n of x (any strides) into the zero-padded phase layout.
void to_phase_layout(const float* x, const int64_t* xs, int64_t channels, int64_t h, int64_t w,
                     const Geometry& g, float* xt) {
  const int64_t plane = g.hq * g.wq;
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t rh = 0; rh < g.sh; ++rh) {
      for (int64_t rw = 0; rw < g.sw; ++rw) {
        float* dst = xt + (c * g.phases + rh * g.sw + rw) * plane;
        for (int64_t a = 0; a < g.hq; ++a) {
          const int64_t ih = a * g.sh + rh - g.ph;
          float* row = dst + a * g.wq;
          if (ih < 0 || ih >= h) {
            std::memset(row, 0, sizeof(float) * g.wq);
            continue;
          }
          const float* src = x + c * xs[0] + ih * xs[1];
          // Columns b with 0 <= b * sw + rw - pw < w are copied, the rest are zero.
          const int64_t lo = std::min(g.wq, std::max<int64_t>(0, (g.pw - rw + g.sw - 1) / g.sw));
          const int64_t last = w - 1 + g.pw - rw;  // b * sw <= last
          const int64_t hi = last < 0 ? lo : std::max(lo, std::min(g.wq, last / g.sw + 1));
          std::fill(row, row + lo, 0.0f);
          std::fill(row + hi, row + g.wq, 0.0f);
          const float* first = src + (lo * g.sw + rw - g.pw) * xs[2];
          if (g.sw == 1 && xs[2] == 1) {
            std::memcpy(row + lo, first, sizeof(float) * (hi - lo));
          } else {
            const int64_t step = g.sw * xs[2];
            for (int64_t b = lo; b < hi; ++b) row[b] = first[(b - lo) * step];
          }
        }
      }
    }
  }
}

}  // namespace

// y = act(sparse_conv(x) + bias + residual), written into `out`.
//   x: [N, C, H, W] float32, any strides.  block_ptr: [Cout, B + 1] int64, the non-zeros of
//   row co and input-channel block b are [block_ptr[co, b], block_ptr[co, b + 1]) (CSR
//   split by channel blocks).  offsets: [nnz] int32 (phase-layout offsets, see top).  values: [nnz] float32.  bias: [Cout] or empty.
//   residual: same shape as out or empty.  out: [N, Cout, Ho, Wo] float32, any strides.
void sparse_conv_out(const torch::Tensor& x, const torch::Tensor& block_ptr, const torch::Tensor& offsets,
                     const torch::Tensor& values, const torch::Tensor& bias, const torch::Tensor& residual,
                     torch::Tensor& out, std::vector<int64_t> geometry, bool relu) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == torch::kFloat, "x must be a float32 4-D tensor");
  TORCH_CHECK(out.dim() == 4 && out.scalar_type() == torch::kFloat, "out must be a float32 4-D tensor");
  TORCH_CHECK(block_ptr.dim() == 2 && block_ptr.scalar_type() == torch::kLong &&
                  offsets.scalar_type() == torch::kInt && values.scalar_type() == torch::kFloat &&
                  block_ptr.is_contiguous() && offsets.is_contiguous() && values.is_contiguous(),
              "block_ptr (int64 [Cout, blocks + 1]), offsets (int32) and values (float32) must be contiguous");
  TORCH_CHECK(geometry.size() == 11, "geometry must hold sh, sw, ph, pw, dh, dw, ho, wo, hq, wq, phases");
  const Geometry g{geometry[0], geometry[1], geometry[2], geometry[3], geometry[4], geometry[5],
                   geometry[6],  geometry[7], geometry[8], geometry[9], geometry[10]};
  const int64_t n_img = x.size(0), channels = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t cout = block_ptr.size(0);
  TORCH_CHECK(out.size(0) == n_img && out.size(1) == cout && out.size(2) == g.ho && out.size(3) == g.wo,
              "out has the wrong shape");
  const bool has_bias = bias.numel() > 0, has_res = residual.numel() > 0;
  if (has_res) TORCH_CHECK(residual.sizes() == out.sizes() && residual.scalar_type() == torch::kFloat,
                           "residual must match out");

  const int64_t plane_elems = channels * g.phases * g.hq * g.wq;
  const int64_t q_total = g.ho * g.wq;
  const int64_t xt_elems = plane_elems + g.wq + TILE;  // slack: tiles may read past the last plane
  auto xt = torch::empty({n_img, xt_elems}, x.options().memory_format(torch::MemoryFormat::Contiguous));
  float* xt_base = xt.data_ptr<float>();
  const float* x_base = x.data_ptr<float>();
  const int64_t xs[3] = {x.stride(1), x.stride(2), x.stride(3)};
  at::parallel_for(0, n_img * channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t n = i / channels, c = i % channels;
      float* dst = xt_base + n * xt_elems + c * g.phases * g.hq * g.wq;
      to_phase_layout(x_base + n * x.stride(0) + c * xs[0], xs, 1, h, w, g, dst);
      if (c == channels - 1) std::memset(xt_base + n * xt_elems + plane_elems, 0, sizeof(float) * (g.wq + TILE));
    }
  });

  const int32_t* off = offsets.data_ptr<int32_t>();
  const float* val = values.data_ptr<float>();
  const float* b = has_bias ? bias.data_ptr<float>() : nullptr;
  const float* res = has_res ? residual.data_ptr<float>() : nullptr;
  float* y = out.data_ptr<float>();
  const int64_t os[4] = {out.stride(0), out.stride(1), out.stride(2), out.stride(3)};
  int64_t rs[4] = {0, 0, 0, 0};
  if (has_res) for (int d = 0; d < 4; ++d) rs[d] = residual.stride(d);

  const int64_t n_qt = (q_total + TILE - 1) / TILE;
  const int64_t outer = n_img * n_qt;
  const int64_t n_chunks = (cout + ROWS - 1) / ROWS;
  const int64_t n_blocks = block_ptr.size(1) - 1;
  const int64_t* bp = block_ptr.data_ptr<int64_t>();

  at::parallel_for(0, outer * n_chunks, 1, [&](int64_t begin, int64_t end) {
    alignas(64) float acc[ROWS * TILE];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t chunk = task % n_chunks, nq = task / n_chunks;
      const int64_t n = nq / n_qt, q0 = (nq % n_qt) * TILE;
      const int64_t q_len = std::min(TILE, q_total - q0);
      const TileFn fn = TILES[(q_len + VW - 1) / VW - 1];
      const float* xt_img = xt_base + n * xt_elems + q0;
      const int64_t co0 = chunk * ROWS, co1 = std::min(cout, co0 + ROWS);
      // Channel blocks outermost: one block's slice of xt stays in L1 while every row of the
      // chunk uses it; partial sums live in `acc`.
      for (int64_t blk = 0; blk < n_blocks; ++blk) {
        for (int64_t co = co0; co < co1; ++co) {
          const int64_t* ptr = bp + co * (n_blocks + 1) + blk;
          fn(xt_img, off, val, ptr[0], ptr[1], acc + (co - co0) * TILE, blk > 0);
        }
      }
      for (int64_t co = co0; co < co1; ++co) {
        const float* tile = acc + (co - co0) * TILE;
        const float bias_co = b ? b[co] : 0.0f;
        float* y_co = y + n * os[0] + co * os[1];
        const float* r_co = res ? res + n * rs[0] + co * rs[1] : nullptr;
        // Epilogue, one output row segment at a time (drop columns ow >= wo).
        for (int64_t q = q0; q < q0 + q_len;) {
          const int64_t oh = q / g.wq, ow = q - oh * g.wq;
          const int64_t len = std::min(q0 + q_len, oh * g.wq + g.wo) - q;
          if (len > 0) {
            epilogue(tile + (q - q0), bias_co, r_co ? r_co + oh * rs[2] + ow * rs[3] : nullptr, rs[3],
                     y_co + oh * os[2] + ow * os[3], os[3], len, relu);
          }
          q = (oh + 1) * g.wq;
        }
      }
    }
  });
}

// The vector width in floats this build uses (16: AVX-512, 8: AVX/AVX2, 4: other).
int64_t vector_width() { return VW; }

// The number of output positions one task keeps in registers.
int64_t tile_width() { return TILE; }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("sparse_conv_out", &sparse_conv_out, "sparse conv/linear with fused bias, residual and ReLU");
  m.def("vector_width", &vector_width, "floats per SIMD vector of this build");
  m.def("tile_width", &tile_width, "output positions per register tile");
}
