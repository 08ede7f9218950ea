// Dense 3 x 3 stride-1 convolution by Winograd's minimal filtering F(M x M, 3 x 3), M = 4 or 2
// (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016, eq. 8):
//     Y = A^T [ U (.) V ] A,   U = G g G^T (the weights, transformed once),   V = B^T d B
// for every (M + 2)^2 input tile d (tiles M apart) and M x M output tile Y. Summed over input
// channels, the POINTS = (M + 2)^2 element-wise products become matrix products, one per point xi:
//     M[xi] (tiles x Cout) = V[xi] (tiles x Cin) . U[xi] (Cin x Cout).
// A direct 3 x 3 conv does 9 multiply-adds per output position, input and output channel;
// F(4, 3) does 36 / 16 = 2.25, F(2, 3) 16 / 4 = 4 but has 16 / 36 of the transformed weights
// (for layers bound by reading them: few tiles, many channels). Two layouts, one vector each way:
//  - channels-last (channel stride 1): a vector holds VW channels of one pixel; a tile is one
//    image's patch, V[xi][t][c] is a float;
//  - batch-blocked [G, C, Hp, Wp, VW] (blocked.h): a vector holds one value of VW images; a
//    tile is the same patch of a group of VW images, V[xi][t][c] is a vector, so a chain of
//    sparse and Winograd convs keeps the layout (no conversion between them).
// Each task takes a chunk of tiles (and one range of output channels) through all three steps
// in its thread's scratch (V and M stay in that core's caches; no synchronisation between them):
//  1. input transform into V[xi][t][c],
//  2. the products, in register blocks of tiles x output channels,
//  3. output transform Y = A^T M A, + bias, + residual, ReLU, stored into the output's strides.

#include <torch/extension.h>

#include "blocked.h"
#include "simd.h"

#include <array>
#include <utility>

namespace {

using namespace sparseift;

template <class T>
inline T load(const float* p);
template <>
inline float load<float>(const float* p) { return *p; }
template <>
inline vec load<vec>(const float* p) { return *reinterpret_cast<const vec_u*>(p); }

inline void store(float* p, float v) { *p = v; }
inline void store(float* p, vec v) { *reinterpret_cast<vec_u*>(p) = v; }

inline float relu0(float v) { return v > 0.0f ? v : 0.0f; }
inline vec relu0(vec v) { return v > 0.0f ? v : vec{}; }

// F(M x M, 3 x 3), M = 4 or 2: input tiles of ALPHA = M + 2 pixels a side, POINTS = ALPHA^2 products.
template <int M>
constexpr int ALPHA = M + 2;
template <int M>
constexpr int POINTS = ALPHA<M> * ALPHA<M>;

// o = B^T d for one column (or row) of an input tile.
// F(4, 3): B^T has rows [4 0 -5 0 1 0], [0 -4 -4 1 1 0], [0 4 -4 -1 1 0], [0 -2 -1 2 1 0],
// [0 2 -1 -2 1 0], [0 4 0 -5 0 1]; F(2, 3): [1 0 -1 0], [0 1 1 0], [0 -1 1 0], [0 1 0 -1].
template <int M, class T>
inline void input_1d(const T* d, T* o) {
  if constexpr (M == 4) {
    const T a = d[4] - 4.0f * d[2], b = d[3] - 4.0f * d[1];
    const T c = d[4] - d[2], e = 2.0f * (d[3] - d[1]);
    o[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
    o[1] = a + b;
    o[2] = a - b;
    o[3] = c + e;
    o[4] = c - e;
    o[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
  } else {
    static_assert(M == 2, "F(4, 3) or F(2, 3)");
    o[0] = d[0] - d[2];
    o[1] = d[1] + d[2];
    o[2] = d[2] - d[1];
    o[3] = d[1] - d[3];
  }
}

// y = A^T m for one column (or row). F(4, 3): A^T has rows [1 1 1 1 1 0], [0 1 -1 2 -2 0],
// [0 1 1 4 4 0], [0 1 -1 8 -8 1]; F(2, 3): [1 1 1 0], [0 1 -1 -1].
template <int M, class T>
inline void output_1d(const T* m, T* y) {
  if constexpr (M == 4) {
    const T s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
    y[0] = m[0] + s12 + s34;
    y[1] = d12 + 2.0f * d34;
    y[2] = s12 + 4.0f * s34;
    y[3] = d12 + 8.0f * d34 + m[5];
  } else {
    y[0] = m[0] + m[1] + m[2];
    y[1] = m[1] - m[2] - m[3];
  }
}

// V[xi] = (B^T d B)[xi] of the tile whose top-left input is (iy0, ix0) (may lie in the
// padding: reads outside [0, h) x [0, w) are zeros); x is the channel's (image's) origin,
// element (iy, ix) at x[iy * sy + ix * sx]; V[xi] is stored at v[xi * vs].
template <int M, class T>
void input_tile(const float* x, int64_t sy, int64_t sx, int64_t iy0, int64_t ix0, int64_t h, int64_t w, float* v,
                int64_t vs) {
  constexpr int A = ALPHA<M>;
  T cols[A][A];  // cols[j] = B^T d[:, j]
  for (int j = 0; j < A; ++j) {
    const int64_t ix = ix0 + j;
    T d[A];
    for (int i = 0; i < A; ++i) {
      const int64_t iy = iy0 + i;
      d[i] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? load<T>(x + iy * sy + ix * sx) : T{};
    }
    input_1d<M>(d, cols[j]);
  }
  for (int i = 0; i < A; ++i) {
    T row[A], o[A];
    for (int j = 0; j < A; ++j) row[j] = cols[j][i];
    input_1d<M>(row, o);
    for (int j = 0; j < A; ++j) store(v + (i * A + j) * vs, o[j]);
  }
}

// The M x M output tile A^T M A (point xi at m[xi * ms]) + bias (+ residual), ReLU, of which the
// first rows x cols positions are stored: position (k, l) at y[k * yy + l * yx], its residual at
// res[k * ry + l * rx].
template <int M, class T>
void output_tile(const float* m, int64_t ms, T bias, const float* res, int64_t ry, int64_t rx, float* y, int64_t yy,
                 int64_t yx, int64_t rows, int64_t cols, bool relu) {
  constexpr int A = ALPHA<M>;
  T part[A][M];  // part[j] = A^T M[:, j]
  for (int j = 0; j < A; ++j) {
    T col[A];
    for (int i = 0; i < A; ++i) col[i] = load<T>(m + (i * A + j) * ms);
    output_1d<M>(col, part[j]);
  }
  for (int k = 0; k < rows; ++k) {
    T row[A], o[M];
    for (int j = 0; j < A; ++j) row[j] = part[j][k];
    output_1d<M>(row, o);
    for (int l = 0; l < cols; ++l) {
      T value = o[l] + bias;
      if (res) value += load<T>(res + k * ry + l * rx);
      store(y + k * yy + l * yx, relu ? relu0(value) : value);
    }
  }
}

// Tiles per register block: R x 2 accumulators + 2 weight vectors + 1 broadcast. AVX-512's 32
// registers hold 14 x 2 (the Winograd layers of a dense ResNet-18 on a 2-core Sapphire Rapids, two
// FMA pipes: 83-89 -> 71-77 ms at batch 16, 312-326 -> 288-299 ms at batch 64 against 6 x 2;
// 12 x 2 ran level with 6 x 2 on a Zen 4, one pipe); AVX2's 16 hold 6 x 2.
constexpr int GEMM_ROWS = (VW == 16) ? 14 : 6;

// Row k of the strip `next` of 2 VW output channels (one or two lines) requested into L1, if given.
// Each product block below requests, as it streams its own strip, the strip that the block after
// it reads: the hardware prefetchers do not follow the jump between strips (measured on a
// Sapphire Rapids, one process, two builds alternating: the Winograd layers of a dense ResNet-18
// 4-12% faster at 256 x 14 x 14 and 512 x 7 x 7, batch 16, level at 64 and 128 channels; the
// whole model 116.9-120.2 -> 108.5-111.7 ms at batch 16; the blocked product 5-10% faster on the
// 128-512-channel layers of the s = 0.75 Sparse Wide ResNet-18).
inline void request_strip_row(const float* next, int64_t k) {
  if (next == nullptr) return;
  __builtin_prefetch(next + k * 2 * VW, 0, 3);
  if constexpr (2 * VW * sizeof(float) > 64) __builtin_prefetch(next + k * 2 * VW + VW, 0, 3);
}

// m[r * up + 0 .. 2 VW) = sum_k v[r * k_len + k] * u[k * 2 VW + 0 .. 2 VW) for r < R: R tiles
// of one product M[xi] = V[xi] . U[xi], one block of 2 VW output channels (u: its contiguous
// strip); requests strip `next` (see above).
template <int R>
void gemm_block(const float* __restrict v, int64_t k_len, const float* __restrict u, int64_t up, float* __restrict m,
                const float* next) {
  vec acc[R][2];
  UNROLL for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = vec{};
  for (int64_t k = 0; k < k_len; ++k) {
    const vec u0 = load<vec>(u + k * 2 * VW), u1 = load<vec>(u + k * 2 * VW + VW);
    request_strip_row(next, k);
    UNROLL for (int r = 0; r < R; ++r) {
      const vec b = broadcast(v[r * k_len + k]);
      acc[r][0] += b * u0;
      acc[r][1] += b * u1;
    }
  }
  UNROLL for (int r = 0; r < R; ++r) {
    store(m + r * up, acc[r][0]);
    store(m + r * up + VW, acc[r][1]);
  }
}

using GemmFn = void (*)(const float*, int64_t, const float*, int64_t, float*, const float*);
template <int... R>
constexpr std::array<GemmFn, sizeof...(R)> make_gemm_blocks(std::integer_sequence<int, R...>) {
  return {&gemm_block<R + 1>...};
}
constexpr std::array<GemmFn, GEMM_ROWS> GEMM_BLOCKS = make_gemm_blocks(std::make_integer_sequence<int, GEMM_ROWS>{});

constexpr int LANE_TILES = 3;                     // blocked layout: tiles per register block
constexpr int LANE_CHANNELS = (VW == 16) ? 8 : 4;  // and output channels: 3 x 8 accumulators + 3 inputs + 1
                                                   // broadcast of 32 zmm (3 x 4 of 16 ymm)

// m[(r * up + q) * VW ..] = sum_k v[(r * k_len + k) * VW ..] * u[k * 2 VW + q] for r < R,
// q < LANE_CHANNELS: the blocked layout's product, vectors over images, u: LANE_CHANNELS
// columns of a strip of 2 VW output channels; requests strip `next` (see request_strip_row).
template <int R>
void gemm_lanes(const float* __restrict v, int64_t k_len, const float* __restrict u, int64_t up, float* __restrict m,
                const float* next) {
  vec acc[R][LANE_CHANNELS];
  UNROLL for (int r = 0; r < R; ++r) UNROLL for (int q = 0; q < LANE_CHANNELS; ++q) acc[r][q] = vec{};
  for (int64_t k = 0; k < k_len; ++k) {
    request_strip_row(next, k);
    vec in[R];
    UNROLL for (int r = 0; r < R; ++r) in[r] = load<vec>(v + (r * k_len + k) * VW);
    UNROLL for (int q = 0; q < LANE_CHANNELS; ++q) {
      const vec w = broadcast(u[k * 2 * VW + q]);
      UNROLL for (int r = 0; r < R; ++r) acc[r][q] += in[r] * w;
    }
  }
  UNROLL for (int r = 0; r < R; ++r) UNROLL for (int q = 0; q < LANE_CHANNELS; ++q) store(m + (r * up + q) * VW, acc[r][q]);
}

using LaneFn = void (*)(const float*, int64_t, const float*, int64_t, float*, const float*);
constexpr LaneFn LANE_BLOCKS[LANE_TILES] = {gemm_lanes<1>, gemm_lanes<2>, gemm_lanes<3>};

// The tasks of one conv: `chunk` tiles x one of `parts` ranges of the `blocks` strips of 2 VW
// output channels each; every worker has `scratch` floats for V and M. Per task:
// input(v, t0, count), gemm(v, count, c_begin, c_end), output(t0, count, c_begin, c_end).
template <class Input, class Gemm, class Output>
void run_tasks(torch::Tensor& buffer, int64_t tiles, int64_t chunk, int64_t parts, int64_t blocks, int64_t scratch,
               int64_t threads, const Input& input, const Gemm& gemm, const Output& output) {
  parts = std::min(parts, blocks);
  const int64_t tasks = (tiles + chunk - 1) / chunk * parts, workers = std::max<int64_t>(1, std::min(threads, tasks));
  buffer = torch::empty({workers * scratch}, torch::kFloat);
  float* buffers = buffer.data_ptr<float>();
  parallel_workers(workers, tasks, [&](int64_t worker, int64_t first, int64_t last) {
    float* v = buffers + worker * scratch;
    for (int64_t task = first; task < last; ++task) {
      const int64_t t0 = task / parts * chunk, count = std::min(chunk, tiles - t0), part = task % parts;
      const int64_t c_begin = blocks * part / parts * 2 * VW, c_end = blocks * (part + 1) / parts * 2 * VW;
      input(v, t0, count);
      gemm(v, count, c_begin, c_end);
      output(v, t0, count, c_begin, c_end);
    }
  });
}

void check_weight(const torch::Tensor& u, int64_t cin, int64_t cout) {
  TORCH_CHECK(u.dim() == 4 && u.size(2) == cin && u.size(3) == 2 * VW && u.size(1) * 2 * VW >= cout &&
                  u.is_contiguous() && u.scalar_type() == torch::kFloat,
              "u must be a contiguous float32 [points, Cout' / ", 2 * VW, ", Cin, ", 2 * VW, "] tensor, Cout' >= Cout");
}

void check_common(const c10::optional<torch::Tensor>& bias, int64_t cout, int64_t chunk, int64_t parts) {
  TORCH_CHECK(!bias || (bias->is_contiguous() && bias->numel() == cout && bias->scalar_type() == torch::kFloat),
              "bias must be a contiguous float32 tensor of Cout values");
  TORCH_CHECK(chunk >= 1 && parts >= 1, "chunk and parts must be >= 1");
}

void check_channels_last(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 4 && t.scalar_type() == torch::kFloat && t.stride(1) == 1,
              name, " must be a 4-d float32 tensor with channel stride 1 (channels-last)");
}

// The operands of a channels-last conv (x, out and residual [N, C, H, W] with channel stride 1; a
// residual of the output's shape), checked, as pointers and image / row / column strides.
struct ChannelsLast {
  const float *x, *u, *bias, *res;
  float* y;
  int64_t xn, xy, xx, yn, yy, yx, rn, ry, rx;

  ChannelsLast(const torch::Tensor& x_, const torch::Tensor& u_, const c10::optional<torch::Tensor>& bias_,
               const c10::optional<torch::Tensor>& residual, torch::Tensor& out)
      : x(x_.data_ptr<float>()), u(u_.data_ptr<float>()), bias(bias_ ? bias_->data_ptr<float>() : nullptr),
        res(residual ? residual->data_ptr<float>() : nullptr), y(out.data_ptr<float>()), xn(x_.stride(0)),
        xy(x_.stride(2)), xx(x_.stride(3)), yn(out.stride(0)), yy(out.stride(2)), yx(out.stride(3)),
        rn(residual ? residual->stride(0) : 0), ry(residual ? residual->stride(2) : 0),
        rx(residual ? residual->stride(3) : 0) {
    if (residual) {
      check_channels_last(*residual, "residual");
      TORCH_CHECK(residual->sizes() == out.sizes(), "residual must have the output's shape");
    }
  }
};

// out = relu?(conv3x3(x, g, padding=(ph, pw)) + bias + residual) by F(M x M, 3 x 3), u = G g G^T packed as
// [POINTS, Cout' / (2 VW), Cin, 2 VW] (Cout' = Cout rounded up to 2 VW, zeros past Cout: each
// point's weights in contiguous strips of 2 VW output channels); x, residual and
// out have channel stride 1. A task takes `chunk` tiles and one of `parts` ranges of output
// channels (parts > 1 gives threads work where there are few tiles, at the cost of
// transforming the tiles' inputs once per part).
template <int M>
void conv_channels_last(const torch::Tensor& x, const torch::Tensor& u, const c10::optional<torch::Tensor>& bias,
                        const c10::optional<torch::Tensor>& residual, torch::Tensor& out, int64_t ph, int64_t pw,
                        bool relu, int64_t chunk, int64_t parts, int64_t threads) {
  check_channels_last(x, "x");
  check_channels_last(out, "out");
  const int64_t n = x.size(0), cin = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t cout = out.size(1), ho = out.size(2), wo = out.size(3);
  check_weight(u, cin, cout);
  TORCH_CHECK(out.size(0) == n && ho == h + 2 * ph - 2 && wo == w + 2 * pw - 2,
              "out must be [N, Cout, H + 2 ph - 2, W + 2 pw - 2]");
  check_common(bias, cout, chunk, parts);
  const ChannelsLast io(x, u, bias, residual, out);
  const int64_t th = (ho + M - 1) / M, tw = (wo + M - 1) / M, tiles = n * th * tw, up = u.size(1) * 2 * VW;
  if (tiles == 0) return;
  chunk = std::min(chunk, tiles);
  const int64_t cin_v = cin / VW * VW;
  constexpr int64_t P = POINTS<M>;
  auto m_of = [&](float* v, int64_t count) { return v + P * count * cin; };
  auto input = [&](float* v, int64_t t0, int64_t count) {
    const int64_t vs = count * cin;  // floats between the planes xi of V
    for (int64_t t = 0; t < count; ++t) {
      const int64_t tile = t0 + t, img = tile / (th * tw), ty = tile / tw % th, tx = tile % tw;
      const float* xi = io.x + img * io.xn;
      const int64_t iy0 = ty * M - ph, ix0 = tx * M - pw;
      int64_t c = 0;
      for (; c < cin_v; c += VW) input_tile<M, vec>(xi + c, io.xy, io.xx, iy0, ix0, h, w, v + t * cin + c, vs);
      for (; c < cin; ++c) input_tile<M, float>(xi + c, io.xy, io.xx, iy0, ix0, h, w, v + t * cin + c, vs);
    }
  };
  auto gemm = [&](float* v, int64_t count, int64_t c_begin, int64_t c_end) {
    float* m = m_of(v, count);
    for (int64_t xi = 0; xi < P; ++xi) {
      const float* vx = v + xi * count * cin;
      const float* ux = io.u + xi * cin * up;  // strip cb / (2 VW) at ux + cb * cin
      float* mx = m + xi * count * up;
      for (int64_t cb = c_begin; cb < c_end; cb += 2 * VW)
        for (int64_t r = 0; r < count; r += GEMM_ROWS) {
          // A strip's last row block requests the next strip: this point's next, else the next point's first.
          const float* next = r + GEMM_ROWS < count ? nullptr
                              : cb + 2 * VW < c_end ? ux + (cb + 2 * VW) * cin
                              : xi + 1 < P          ? ux + cin * up + c_begin * cin
                                                    : nullptr;
          GEMM_BLOCKS[std::min<int64_t>(GEMM_ROWS, count - r) - 1](vx + r * cin, cin, ux + cb * cin, up, mx + r * up + cb, next);
        }
    }
  };
  auto output = [&](float* v, int64_t t0, int64_t count, int64_t c_begin, int64_t c_end) {
    const float* m = m_of(v, count);
    const int64_t ms = count * up, c_stop = std::min(c_end, cout), c_vec = c_begin + (c_stop - c_begin) / VW * VW;
    for (int64_t t = 0; t < count; ++t) {
      const int64_t tile = t0 + t, img = tile / (th * tw), ty = tile / tw % th, tx = tile % tw;
      const int64_t rows = std::min<int64_t>(M, ho - ty * M), cols = std::min<int64_t>(M, wo - tx * M);
      float* y = io.y + img * io.yn + ty * M * io.yy + tx * M * io.yx;
      const float* r = io.res ? io.res + img * io.rn + ty * M * io.ry + tx * M * io.rx : nullptr;
      const float* mt = m + t * up;
      int64_t c = c_begin;
      for (; c < c_vec; c += VW)
        output_tile<M, vec>(mt + c, ms, io.bias ? load<vec>(io.bias + c) : vec{}, r ? r + c : nullptr, io.ry, io.rx, y + c,
                            io.yy, io.yx, rows, cols, relu);
      for (; c < c_stop; ++c)
        output_tile<M, float>(mt + c, ms, io.bias ? io.bias[c] : 0.0f, r ? r + c : nullptr, io.ry, io.rx, y + c, io.yy,
                              io.yx, rows, cols, relu);
    }
  };
  torch::Tensor buffer;
  run_tasks(buffer, tiles, chunk, parts, up / (2 * VW), P * chunk * (cin + up), threads, input, gemm, output);
}

// The same conv on batch-blocked activations: x [G, Cin, H + 2 hh, W + 2 hw, VW] (halo
// (hh, hw) = x_halo, any: reads outside the image are zeros), out [G, Cout, Ho + 2 oh, Wo + 2 ow, VW]
// (its halo (oh, ow) zeroed here), residual blocked with halo res_halo.
template <int M>
void conv_blocked(const torch::Tensor& x, const torch::Tensor& u, const c10::optional<torch::Tensor>& bias,
                  const c10::optional<torch::Tensor>& residual, torch::Tensor& out, const std::vector<int64_t>& geometry,
                  bool relu, int64_t chunk, int64_t parts, int64_t threads) {
  check_blocked(x, "x");
  check_blocked(out, "out");
  TORCH_CHECK(geometry.size() == 8, "geometry must be [ph, pw, x halo h, x halo w, out halo h, out halo w, residual halo h, residual halo w]");
  const int64_t ph = geometry[0], pw = geometry[1], hh = geometry[2], hw = geometry[3], oh = geometry[4],
                ow = geometry[5], rh = geometry[6], rw = geometry[7];
  const int64_t groups = x.size(0), cin = x.size(1), h = x.size(2) - 2 * hh, w = x.size(3) - 2 * hw;
  const int64_t cout = out.size(1), ho = out.size(2) - 2 * oh, wo = out.size(3) - 2 * ow;
  check_weight(u, cin, cout);
  TORCH_CHECK(out.size(0) == groups && ho == h + 2 * ph - 2 && wo == w + 2 * pw - 2,
              "out must be blocked [G, Cout, H + 2 ph - 2 + 2 oh, W + 2 pw - 2 + 2 ow, VW]");
  check_common(bias, cout, chunk, parts);
  if (residual) {
    check_blocked(*residual, "residual");
    TORCH_CHECK(residual->size(0) == groups && residual->size(1) == cout && residual->size(2) == ho + 2 * rh &&
                    residual->size(3) == wo + 2 * rw,
                "residual must be blocked with the output's shape and halo (", rh, ", ", rw, ")");
  }
  constexpr int64_t P = POINTS<M>;
  const int64_t th = (ho + M - 1) / M, tw = (wo + M - 1) / M, tiles = groups * th * tw, up = u.size(1) * 2 * VW;
  chunk = std::min(chunk, tiles);
  const float* xp = x.data_ptr<float>();
  const float* uw = u.data_ptr<float>();
  const float* bp = bias ? bias->data_ptr<float>() : nullptr;
  const float* rp = residual ? residual->data_ptr<float>() : nullptr;
  float* yp = out.data_ptr<float>();
  const int64_t xpitch = x.stride(1), xy = x.size(3) * VW;
  const int64_t ypitch = out.stride(1), yy = out.size(3) * VW;
  const int64_t rpitch = residual ? residual->stride(1) : 0, ry = residual ? residual->size(3) * VW : 0;
  zero_halo(yp, groups * cout, ypitch, out.size(2), out.size(3), oh, ow, ho, wo, threads);
  auto m_of = [&](float* v, int64_t count) { return v + P * count * cin * VW; };
  auto input = [&](float* v, int64_t t0, int64_t count) {
    const int64_t vs = count * cin * VW;
    for (int64_t t = 0; t < count; ++t) {
      const int64_t tile = t0 + t, g = tile / (th * tw), ty = tile / tw % th, tx = tile % tw;
      const float* xg = xp + g * cin * xpitch + (hh * x.size(3) + hw) * VW;  // pixel (0, 0) of channel 0
      for (int64_t c = 0; c < cin; ++c)
        input_tile<M, vec>(xg + c * xpitch, xy, VW, ty * M - ph, tx * M - pw, h, w, v + (t * cin + c) * VW, vs);
    }
  };
  auto gemm = [&](float* v, int64_t count, int64_t c_begin, int64_t c_end) {
    float* m = m_of(v, count);
    for (int64_t xi = 0; xi < P; ++xi) {
      const float* vx = v + xi * count * cin * VW;
      const float* ux = uw + xi * cin * up;
      float* mx = m + xi * count * up * VW;
      for (int64_t co = c_begin; co < c_end; co += LANE_CHANNELS) {
        const float* strip = ux + co / (2 * VW) * 2 * VW * cin + co % (2 * VW);
        const int64_t co_next = co + LANE_CHANNELS;  // a strip's last columns request the next strip
        const float* next = co_next % (2 * VW) != 0 ? nullptr
                            : co_next < c_end       ? ux + co_next * cin
                            : xi + 1 < P            ? ux + cin * up + c_begin * cin
                                                    : nullptr;
        for (int64_t r = 0; r < count; r += LANE_TILES)
          LANE_BLOCKS[std::min<int64_t>(LANE_TILES, count - r) - 1](vx + r * cin * VW, cin, strip, up,
                                                                      mx + (r * up + co) * VW,
                                                                      r + LANE_TILES < count ? nullptr : next);
      }
    }
  };
  auto output = [&](float* v, int64_t t0, int64_t count, int64_t c_begin, int64_t c_end) {
    const float* m = m_of(v, count);
    const int64_t ms = count * up * VW, c_stop = std::min(c_end, cout);
    for (int64_t t = 0; t < count; ++t) {
      const int64_t tile = t0 + t, g = tile / (th * tw), ty = tile / tw % th, tx = tile % tw;
      const int64_t rows = std::min<int64_t>(M, ho - ty * M), cols = std::min<int64_t>(M, wo - tx * M);
      float* y = yp + g * cout * ypitch + ((oh + ty * M) * out.size(3) + ow + tx * M) * VW;
      const float* r = rp ? rp + g * cout * rpitch + ((rh + ty * M) * residual->size(3) + rw + tx * M) * VW : nullptr;
      for (int64_t c = c_begin; c < c_stop; ++c)
        output_tile<M, vec>(m + (t * up + c) * VW, ms, broadcast(bp ? bp[c] : 0.0f), r ? r + c * rpitch : nullptr, ry, VW,
                         y + c * ypitch, yy, VW, rows, cols, relu);
    }
  };
  torch::Tensor buffer;
  run_tasks(buffer, tiles, chunk, parts, up / (2 * VW), P * chunk * (cin + up) * VW, threads, input, gemm, output);
}

// ---- Direct convolution through the same strip product ----
// out[p, co] = relu?(bias[co] + residual[p, co] + sum over taps t and input channels ci of
// x[input pixel of p under t, ci] * w[t][ci][co]) for a conv of any kernel, stride, dilation and
// zero padding (groups 1) on channels-last tensors. Each task gathers the inputs of `chunk`
// output pixels (any images and rows) into V[pixel][t Cin + ci] (zeros where a tap falls in the
// padding: an im2col of the chunk only), multiplies V by the weight as one K = taps x Cin matrix
// in the Winograd product's register blocks into M[pixel][co], and stores M + bias (+ residual),
// ReLU. u = the weight packed as [1, Cout' / (2 VW), taps Cin, 2 VW] (winograd_weight's packing
// with one point of K rows). Unlike a Winograd conv it reads the weight itself (9 / 16 of F(2x2,
// 3x3)'s transformed one, 9 / 36 of F(4x4)'s) and takes strides.
//   geometry: sh, sw, ph, pw, dh, dw, kh, kw.
void direct_conv_out(const torch::Tensor& x, const torch::Tensor& u, const c10::optional<torch::Tensor>& bias,
                     const c10::optional<torch::Tensor>& residual, torch::Tensor& out, std::vector<int64_t> geometry,
                     bool relu, int64_t chunk, int64_t parts, int64_t threads) {
  check_channels_last(x, "x");
  check_channels_last(out, "out");
  TORCH_CHECK(geometry.size() == 8, "geometry must be [sh, sw, ph, pw, dh, dw, kh, kw]");
  const int64_t sh = geometry[0], sw = geometry[1], ph = geometry[2], pw = geometry[3], dh = geometry[4],
                dw = geometry[5], kh = geometry[6], kw = geometry[7];
  TORCH_CHECK(sh >= 1 && sw >= 1 && dh >= 1 && dw >= 1 && kh >= 1 && kw >= 1 && ph >= 0 && pw >= 0,
              "stride, dilation and kernel size must be >= 1, padding >= 0");
  const int64_t n = x.size(0), cin = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t cout = out.size(1), ho = out.size(2), wo = out.size(3), taps = kh * kw;
  const int64_t k_len = taps * cin;
  TORCH_CHECK(u.dim() == 4 && u.size(0) == 1, "u must be one matrix of kh * kw * Cin = ", k_len, " rows");
  check_weight(u, k_len, cout);
  TORCH_CHECK(out.size(0) == n && ho == (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1 &&
                  wo == (w + 2 * pw - dw * (kw - 1) - 1) / sw + 1,
              "out must be [N, Cout, Ho, Wo] of the conv's geometry");
  check_common(bias, cout, chunk, parts);
  const ChannelsLast io(x, u, bias, residual, out);
  const int64_t pixels = n * ho * wo, up = u.size(1) * 2 * VW;
  if (pixels == 0) return;
  chunk = std::min(chunk, pixels);
  auto m_of = [&](float* v, int64_t count) { return v + count * k_len; };
  auto input = [&](float* v, int64_t p0, int64_t count) {
    for (int64_t i = 0; i < count; ++i) {
      const int64_t p = p0 + i, img = p / (ho * wo), oy = p / wo % ho, ox = p % wo;
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t iy = oy * sh - ph + t / kw * dh, ix = ox * sw - pw + t % kw * dw;
        float* dst = v + i * k_len + t * cin;
        if (iy >= 0 && iy < h && ix >= 0 && ix < w)
          std::copy_n(io.x + img * io.xn + iy * io.xy + ix * io.xx, cin, dst);
        else
          std::fill_n(dst, cin, 0.0f);
      }
    }
  };
  auto gemm = [&](float* v, int64_t count, int64_t c_begin, int64_t c_end) {
    float* m = m_of(v, count);
    for (int64_t cb = c_begin; cb < c_end; cb += 2 * VW)  // strip cb / (2 VW) at io.u + cb * k_len
      for (int64_t r = 0; r < count; r += GEMM_ROWS) {
        const float* next = r + GEMM_ROWS < count || cb + 2 * VW >= c_end ? nullptr : io.u + (cb + 2 * VW) * k_len;
        GEMM_BLOCKS[std::min<int64_t>(GEMM_ROWS, count - r) - 1](v + r * k_len, k_len, io.u + cb * k_len, up,
                                                                 m + r * up + cb, next);
      }
  };
  auto output = [&](float* v, int64_t p0, int64_t count, int64_t c_begin, int64_t c_end) {
    const float* m = m_of(v, count);
    const int64_t c_stop = std::min(c_end, cout);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t p = p0 + i, img = p / (ho * wo), oy = p / wo % ho, ox = p % wo;
      float* y = io.y + img * io.yn + oy * io.yy + ox * io.yx;
      const float* r = io.res ? io.res + img * io.rn + oy * io.ry + ox * io.rx : nullptr;
      const float* mp = m + i * up;
      int64_t c = c_begin;
      for (; c + VW <= c_stop; c += VW) {
        vec value = load<vec>(mp + c) + (io.bias ? load<vec>(io.bias + c) : vec{});
        if (r) value += load<vec>(r + c);
        store(y + c, relu ? relu0(value) : value);
      }
      for (; c < c_stop; ++c) {
        float value = mp[c] + (io.bias ? io.bias[c] : 0.0f) + (r ? r[c] : 0.0f);
        y[c] = relu ? relu0(value) : value;
      }
    }
  };
  torch::Tensor buffer;
  run_tasks(buffer, pixels, chunk, parts, up / (2 * VW), chunk * (k_len + up), threads, input, gemm, output);
}

// F(4 x 4, 3 x 3) for u of 36 points, F(2 x 2, 3 x 3) for 16.
template <class F4, class F2>
void by_points(const torch::Tensor& u, const F4& f4, const F2& f2) {
  TORCH_CHECK(u.dim() == 4 && (u.size(0) == 36 || u.size(0) == 16), "u must have 36 (F(4x4, 3x3)) or 16 (F(2x2, 3x3)) points");
  if (u.size(0) == 36) f4(); else f2();
}

void winograd_conv_out(const torch::Tensor& x, const torch::Tensor& u, const c10::optional<torch::Tensor>& bias,
                       const c10::optional<torch::Tensor>& residual, torch::Tensor& out, int64_t ph, int64_t pw,
                       bool relu, int64_t chunk, int64_t parts, int64_t threads) {
  by_points(u, [&] { conv_channels_last<4>(x, u, bias, residual, out, ph, pw, relu, chunk, parts, threads); },
            [&] { conv_channels_last<2>(x, u, bias, residual, out, ph, pw, relu, chunk, parts, threads); });
}

void winograd_conv_blocked_out(const torch::Tensor& x, const torch::Tensor& u, const c10::optional<torch::Tensor>& bias,
                               const c10::optional<torch::Tensor>& residual, torch::Tensor& out,
                               std::vector<int64_t> geometry, bool relu, int64_t chunk, int64_t parts, int64_t threads) {
  by_points(u, [&] { conv_blocked<4>(x, u, bias, residual, out, geometry, relu, chunk, parts, threads); },
            [&] { conv_blocked<2>(x, u, bias, residual, out, geometry, relu, chunk, parts, threads); });
}

}  // namespace

void register_winograd(pybind11::module_& m) {
  m.def("winograd_conv_out", &winograd_conv_out,
        "dense 3x3 stride-1 conv by Winograd F(4x4, 3x3) on channels-last tensors, with fused bias, residual and ReLU");
  m.def("winograd_conv_blocked_out", &winograd_conv_blocked_out,
        "dense 3x3 stride-1 conv by Winograd F(4x4, 3x3) on batch-blocked activations, with fused bias, residual and ReLU");
  m.def("winograd_gemm_rows", [] { return GEMM_ROWS; }, "tiles per register block of the channels-last Winograd product");
  m.def("direct_conv_out", &direct_conv_out,
        "dense conv (any kernel, stride, dilation, zero padding) on channels-last tensors through the Winograd strip "
        "product, with fused bias, residual and ReLU");
}
