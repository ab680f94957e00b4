// Fused 2-D affine warp with bilinear sampling, forward and backward, for contiguous CPU tensors.
//
// The grid is never stored. Each output point's sampling position is computed from theta, composed
// with torch's normalisation and unnormalisation into one pixel-to-pixel map per sample (PixelMap
// below; it makes the identity exact). The backward pass accumulates d loss / d theta per sample, in
// double, instead of writing d loss / d grid. Every rule (unnormalisation, padding, reflection, the
// gradient masks at clipped coordinates) follows torch's CPU grid_sampler_2d
// (aten/src/ATen/native/GridSampler.h), so results agree with F.affine_grid + F.grid_sample to
// rounding.
//
// Speed comes from layout, not intrinsics: each sample's plane is cut into chunks of kChunk points, and
// every pass over a chunk is a branch-free loop over arrays that the compiler vectorises (the reads
// through tap indices become SIMD gathers where the CPU has them). Only the scatter of the input
// gradient is scalar (see scatter_chunk). Three-channel images take their channels inside one loop
// over points; other counts go one plane at a time.
//
// stnkit/geometry/kernel.py compiles this file with the system C++ compiler (-fopenmp, so the library
// uses the OpenMP runtime torch has loaded) and calls it through ctypes. The batch is split between
// OpenMP threads, one sample per iteration, so threads never write the same memory and results do not
// depend on the thread count.
//
// Layouts: input (N, C, IH, IW); output, grad_output (N, C, H, W); theta (N, 2, 3); X, Y, U, V (H * W):
// the output pixels' normalised coordinates (X, Y, for the gradient) and pixel positions (U, V).
// padding: 0 zeros, 1 border, 2 reflection.

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace {

constexpr int64_t kChunk = 512;
// Below this many output values a call runs on one thread: waking the pool would cost more.
constexpr int64_t kParallelWork = 32768;

enum Padding { kZeros = 0, kBorder = 1, kReflection = 2 };

// Clamp to [0, size - 1]; the gradient is 0 where the coordinate was clipped (torch: in <= 0 or >= max).
template <typename T>
inline T clip(T coord, int64_t size, T* grad) {
  const T upper = T(size - 1);
  if (coord <= 0) {
    *grad = 0;
    return 0;
  }
  if (coord >= upper) {
    *grad = 0;
    return upper;
  }
  *grad = 1;
  return coord;
}

// Reflect into [twice_low / 2, twice_high / 2]; *grad receives +1 or -1.
template <typename T>
inline T reflect(T coord, int64_t twice_low, int64_t twice_high, T* grad) {
  if (twice_low == twice_high) {
    *grad = 0;
    return 0;
  }
  const T low = T(twice_low) / 2;
  const T span = T(twice_high - twice_low) / 2;
  T sign = 1;
  coord -= low;
  if (coord < 0) {
    sign = -1;
    coord = -coord;
  }
  const T extra = std::fmod(coord, span);
  const int64_t flips = static_cast<int64_t>(std::floor(coord / span));
  if (flips % 2 == 0) {
    *grad = sign;
    return extra + low;
  }
  *grad = -sign;
  return span - extra + low;
}

// A pixel coordinate under reflection padding; *grad receives d reflected / d coordinate.
template <typename T>
inline T reflect_pixel(T coord, int64_t size, bool align_corners, T* grad) {
  T reflect_grad, clip_grad;
  if (align_corners) {
    coord = reflect(coord, 0, 2 * (size - 1), &reflect_grad);
  } else {
    coord = reflect(coord, -1, 2 * size - 1, &reflect_grad);
  }
  coord = clip(coord, size, &clip_grad);
  *grad = reflect_grad * clip_grad;
  return coord;
}

// theta as a map from output pixel positions to input pixel coordinates:
//   x_in = ax * U + bx * V + cx,   y_in = ay * U + by * V + cy,
// U, V being w + 1/2, h + 1/2 (w, h with align_corners). Composing torch's normalisation, theta and
// unnormalisation this way makes the identity exact: for equal sizes ax = by = 1, the rest 0 and -1/2,
// so x_in = (w + 1/2) - 1/2 = w with no rounding, and the warp returns its input bit for bit.
template <typename T>
struct PixelMap {
  T ax, bx, cx, ay, by, cy;
  T scale_x, scale_y;  // d pixel / d normalised coordinate
};

template <typename T>
PixelMap<T> pixel_map(const T* th, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                      bool align_corners) {
  // Normalised output coordinate = U * 2 / span_out - 1 (span_out = size or size - 1); a single pixel
  // with align_corners sits at 0 (span_out = 0).
  const double span_out_w = align_corners ? double(out_w - 1) : double(out_w);
  const double span_out_h = align_corners ? double(out_h - 1) : double(out_h);
  const double offset = align_corners ? 0.0 : 0.5;
  auto row = [&](double t_x, double t_y, double t_t, int64_t in_size, T* a, T* b, T* c, T* scale) {
    const double span_in = align_corners ? double(in_size - 1) : double(in_size);
    *a = T(span_out_w > 0 ? (span_in * t_x) / span_out_w : 0.0);
    *b = T(span_out_h > 0 ? (span_in * t_y) / span_out_h : 0.0);
    double shift = t_t + 1.0;
    if (span_out_w > 0) shift -= t_x;
    if (span_out_h > 0) shift -= t_y;
    *c = T(span_in / 2 * shift - offset);
    *scale = T(span_in / 2);
  };
  PixelMap<T> m;
  row(th[0], th[1], th[2], in_w, &m.ax, &m.bx, &m.cx, &m.scale_x);
  row(th[3], th[4], th[5], in_h, &m.ay, &m.by, &m.cy, &m.scale_y);
  return m;
}

// Sampling taps of up to kChunk points, as arrays. Taps outside the input get weight 0, inside 0 and
// index 0, so every loop over them is branch-free and reads only valid memory. Reads and writes still
// select on `inside` rather than multiply by 0, so an inf or NaN in a tap that torch would skip cannot
// leak into the result.
template <typename T>
struct Chunk {
  T ix[kChunk], iy[kChunk];            // pixel coordinates after padding
  T scale_x[kChunk], scale_y[kChunk];  // d pixel / d normalised (0 where clipped)
  T dx[kChunk], dy[kChunk];            // offsets from the north-west tap
  T weight[4][kChunk];                 // bilinear weights of taps nw, ne, sw, se (0 outside)
  int32_t inside[4][kChunk];           // 1 where the tap lies inside the input, else 0
  int32_t index[4][kChunk];            // offset of each tap in an input plane (0 outside)
  int32_t x0[kChunk], y0[kChunk];      // the north-west tap's column and row (maybe outside)
};

// Pixel coordinates of points [0, count) of a chunk whose output positions are U, V.
template <typename T>
void chunk_coordinates(const PixelMap<T>& m, const T* U, const T* V, int64_t count, int64_t in_h,
                       int64_t in_w, int padding, bool align_corners, Chunk<T>& k) {
  const T ax = m.ax, bx = m.bx, cx = m.cx, ay = m.ay, by = m.by, cy = m.cy;
  const T scale_x = m.scale_x, scale_y = m.scale_y;
  T *ix = k.ix, *iy = k.iy, *sx = k.scale_x, *sy = k.scale_y;
  if (padding == kReflection) {  // fmod and floor per point: kept scalar
    for (int64_t p = 0; p < count; ++p) {
      T grad_x, grad_y;
      ix[p] = reflect_pixel((ax * U[p] + bx * V[p]) + cx, in_w, align_corners, &grad_x);
      iy[p] = reflect_pixel((ay * U[p] + by * V[p]) + cy, in_h, align_corners, &grad_y);
      sx[p] = scale_x * grad_x;
      sy[p] = scale_y * grad_y;
    }
    return;
  }
  if (padding == kBorder) {
    const T upper_w = T(in_w - 1), upper_h = T(in_h - 1);
#pragma omp simd
    for (int64_t p = 0; p < count; ++p) {
      const T px = (ax * U[p] + bx * V[p]) + cx, py = (ay * U[p] + by * V[p]) + cy;
      // torch's clip: the gradient is 0 at and beyond either edge.
      const T below_x = px < upper_w ? px : upper_w, below_y = py < upper_h ? py : upper_h;
      ix[p] = below_x > 0 ? below_x : T(0);
      iy[p] = below_y > 0 ? below_y : T(0);
      sx[p] = T(px > 0) * T(px < upper_w) * scale_x;
      sy[p] = T(py > 0) * T(py < upper_h) * scale_y;
    }
    return;
  }
  // Zeros: points far outside meet only zero taps; clamping them to just outside the image changes
  // nothing but keeps the integer conversion in range (NaN also lands at -2: output 0).
  const T far_w = T(in_w + 1), far_h = T(in_h + 1);
#pragma omp simd
  for (int64_t p = 0; p < count; ++p) {
    const T px = (ax * U[p] + bx * V[p]) + cx, py = (ay * U[p] + by * V[p]) + cy;
    sx[p] = scale_x;
    sy[p] = scale_y;
    ix[p] = px > T(-2) ? (px < far_w ? px : far_w) : T(-2);
    iy[p] = py > T(-2) ? (py < far_h ? py : far_h) : T(-2);
  }
}

// Taps, weights and masks of points [0, count) from their pixel coordinates k.ix, k.iy.
template <typename T>
void chunk_taps(int64_t count, int64_t in_h, int64_t in_w, Chunk<T>& k) {
  const int32_t width = static_cast<int32_t>(in_w), height = static_cast<int32_t>(in_h);
#pragma omp simd
  for (int64_t p = 0; p < count; ++p) {
    const T fx = std::floor(k.ix[p]), fy = std::floor(k.iy[p]);
    const int32_t x0 = static_cast<int32_t>(fx), y0 = static_cast<int32_t>(fy);
    const T dx = k.ix[p] - fx, dy = k.iy[p] - fy;
    k.dx[p] = dx;
    k.dy[p] = dy;
    k.x0[p] = x0;
    k.y0[p] = y0;
    // In-bounds flags as 0/1 integers (bools do not vectorise); unsigned compare: 0 <= v < size.
    const int32_t x0_in = static_cast<uint32_t>(x0) < static_cast<uint32_t>(width);
    const int32_t x1_in = static_cast<uint32_t>(x0 + 1) < static_cast<uint32_t>(width);
    const int32_t y0_in = static_cast<uint32_t>(y0) < static_cast<uint32_t>(height);
    const int32_t y1_in = static_cast<uint32_t>(y0 + 1) < static_cast<uint32_t>(height);
    const int32_t in_tap[4] = {x0_in & y0_in, x1_in & y0_in, x0_in & y1_in, x1_in & y1_in};
    const T bilinear[4] = {(1 - dx) * (1 - dy), dx * (1 - dy), (1 - dx) * dy, dx * dy};
    const int32_t at = y0 * width + x0;
    const int32_t offset[4] = {at, at + 1, at + width, at + width + 1};
    for (int t = 0; t < 4; ++t) {
      k.inside[t][p] = in_tap[t];
      k.weight[t][p] = T(in_tap[t]) * bilinear[t];
      k.index[t][p] = in_tap[t] * offset[t];
    }
  }
}

// output[c][p] = bilinear sample of input plane c at chunk point p, for CHANNELS planes at once (a
// compile-time count, so the loop over channels unrolls inside the vectorised loop over points).
template <typename T, int CHANNELS>
void sample_chunk(const T* input, T* output, int64_t in_plane, int64_t out_plane, int64_t count,
                  const Chunk<T>& k) {
  const T *w0 = k.weight[0], *w1 = k.weight[1], *w2 = k.weight[2], *w3 = k.weight[3];
  const int32_t *m0 = k.inside[0], *m1 = k.inside[1], *m2 = k.inside[2], *m3 = k.inside[3];
  const int32_t *i0 = k.index[0], *i1 = k.index[1], *i2 = k.index[2], *i3 = k.index[3];
#pragma omp simd
  for (int64_t p = 0; p < count; ++p) {
    for (int c = 0; c < CHANNELS; ++c) {
      const T* plane = input + c * in_plane;
      const T v_nw = m0[p] ? plane[i0[p]] : T(0), v_ne = m1[p] ? plane[i1[p]] : T(0);
      const T v_sw = m2[p] ? plane[i2[p]] : T(0), v_se = m3[p] ? plane[i3[p]] : T(0);
      output[c * out_plane + p] = w0[p] * v_nw + w1[p] * v_ne + w2[p] * v_sw + w3[p] * v_se;
    }
  }
}

template <typename T>
void forward(const T* input, const T* theta, const T* U, const T* V, T* output, int64_t batch,
             int64_t channels, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
             int padding, bool align_corners) {
  const int64_t in_plane = in_h * in_w, out_plane = out_h * out_w;
#pragma omp parallel if (batch * channels * out_plane >= kParallelWork)
  {
  Chunk<T> k;
#pragma omp for schedule(static)
  for (int64_t n = 0; n < batch; ++n) {
    const PixelMap<T> map = pixel_map(theta + 6 * n, in_h, in_w, out_h, out_w, align_corners);
    for (int64_t start = 0; start < out_plane; start += kChunk) {
      const int64_t count = std::min(kChunk, out_plane - start);
      chunk_coordinates(map, U + start, V + start, count, in_h, in_w, padding, align_corners, k);
      chunk_taps(count, in_h, in_w, k);
      const T* in_n = input + n * channels * in_plane;
      T* out_n = output + n * channels * out_plane + start;
      if (channels == 3) {
        sample_chunk<T, 3>(in_n, out_n, in_plane, out_plane, count, k);
      } else {
        for (int64_t c = 0; c < channels; ++c) {
          sample_chunk<T, 1>(in_n + c * in_plane, out_n + c * out_plane, in_plane, out_plane, count, k);
        }
      }
    }
  }
}  // omp parallel
}

// d loss / d position (g_ix, g_iy, in pixels) of points [0, count), summed over CHANNELS planes (a
// compile-time count, unrolled inside the vectorised loop over points), added to g_ix, g_iy.
template <typename T, int CHANNELS>
void add_position_gradient(const T* grad_output, const T* input, int64_t in_plane, int64_t out_plane,
                           int64_t count, const Chunk<T>& k, T* g_ix, T* g_iy) {
  const int32_t *m0 = k.inside[0], *m1 = k.inside[1], *m2 = k.inside[2], *m3 = k.inside[3];
  const int32_t *i0 = k.index[0], *i1 = k.index[1], *i2 = k.index[2], *i3 = k.index[3];
#pragma omp simd
  for (int64_t p = 0; p < count; ++p) {
    T sum_x = 0, sum_y = 0;
    for (int c = 0; c < CHANNELS; ++c) {
      const T* plane = input + c * in_plane;
      const T go = grad_output[c * out_plane + p];
      const T v_nw = m0[p] ? plane[i0[p]] : T(0), v_ne = m1[p] ? plane[i1[p]] : T(0);
      const T v_sw = m2[p] ? plane[i2[p]] : T(0), v_se = m3[p] ? plane[i3[p]] : T(0);
      sum_x += go * ((v_ne - v_nw) * (1 - k.dy[p]) + (v_se - v_sw) * k.dy[p]);
      sum_y += go * ((v_sw - v_nw) * (1 - k.dx[p]) + (v_se - v_ne) * k.dx[p]);
    }
    g_ix[p] += sum_x;
    g_iy[p] += sum_y;
  }
}

template <typename T>
void position_gradient(const T* grad_output, const T* input, int64_t channels, int64_t in_plane,
                       int64_t out_plane, int64_t count, const Chunk<T>& k, T* g_ix, T* g_iy) {
  std::fill(g_ix, g_ix + count, T(0));
  std::fill(g_iy, g_iy + count, T(0));
  if (channels == 3) {
    add_position_gradient<T, 3>(grad_output, input, in_plane, out_plane, count, k, g_ix, g_iy);
    return;
  }
  for (int64_t c = 0; c < channels; ++c) {
    add_position_gradient<T, 1>(grad_output + c * out_plane, input + c * in_plane, in_plane, out_plane, count,
                                k, g_ix, g_iy);
  }
}

// grad_input += the adjoint of sampling, for points [0, count) of every channel.
//
// A scatter: neighbouring points share taps, so it is scalar. Along a row of the output the 2x2
// footprint usually stays put or moves one column right; the sums of the current footprint are held in
// registers and written only when it moves (two of them when it moves one column, the other two carried
// over), which halves the read-modify-writes of near-identity warps and breaks their store-to-load
// chains. A tap's `inside` flag depends only on its position, so carried sums keep the right flag.
// CHANNELS planes at once (a compile-time count): one decision per point serves them all.
template <typename T, int CHANNELS>
void scatter_chunk(const T* grad_output, T* grad_input, int64_t in_plane, int64_t out_plane, int64_t count,
                   const Chunk<T>& k) {
  const T *w0 = k.weight[0], *w1 = k.weight[1], *w2 = k.weight[2], *w3 = k.weight[3];
  const int32_t *m0 = k.inside[0], *m1 = k.inside[1], *m2 = k.inside[2], *m3 = k.inside[3];
  const int32_t *i0 = k.index[0], *i1 = k.index[1], *i2 = k.index[2], *i3 = k.index[3];
  int32_t at_x = 0, at_y = 0;                      // footprint position (meaningful once sums exist)
  int32_t a_nw = 0, a_ne = 0, a_sw = 0, a_se = 0;  // its taps' offsets
  T s_nw[CHANNELS] = {}, s_ne[CHANNELS] = {}, s_sw[CHANNELS] = {}, s_se[CHANNELS] = {};  // pending sums
  for (int64_t p = 0; p < count; ++p) {
    // Contributions of this point to its four taps, per channel (0 for taps outside).
    T c_nw[CHANNELS], c_ne[CHANNELS], c_sw[CHANNELS], c_se[CHANNELS];
    for (int c = 0; c < CHANNELS; ++c) {
      const T g = grad_output[c * out_plane + p];
      c_nw[c] = m0[p] ? w0[p] * g : T(0), c_ne[c] = m1[p] ? w1[p] * g : T(0);
      c_sw[c] = m2[p] ? w2[p] * g : T(0), c_se[c] = m3[p] ? w3[p] * g : T(0);
    }
    const int32_t x = k.x0[p], y = k.y0[p];
    if (p > 0 && y == at_y && x == at_x) {
      for (int c = 0; c < CHANNELS; ++c) {
        s_nw[c] += c_nw[c], s_ne[c] += c_ne[c], s_sw[c] += c_sw[c], s_se[c] += c_se[c];
      }
    } else if (p > 0 && y == at_y && x == at_x + 1) {
      for (int c = 0; c < CHANNELS; ++c) {
        T* plane = grad_input + c * in_plane;
        plane[a_nw] += s_nw[c], plane[a_sw] += s_sw[c];
        s_nw[c] = s_ne[c] + c_nw[c], s_sw[c] = s_se[c] + c_sw[c], s_ne[c] = c_ne[c], s_se[c] = c_se[c];
      }
      a_nw = a_ne, a_sw = a_se, a_ne = i1[p], a_se = i3[p];
    } else {
      for (int c = 0; c < CHANNELS; ++c) {
        T* plane = grad_input + c * in_plane;
        plane[a_nw] += s_nw[c], plane[a_ne] += s_ne[c], plane[a_sw] += s_sw[c], plane[a_se] += s_se[c];
        s_nw[c] = c_nw[c], s_ne[c] = c_ne[c], s_sw[c] = c_sw[c], s_se[c] = c_se[c];
      }
      a_nw = i0[p], a_ne = i1[p], a_sw = i2[p], a_se = i3[p];
    }
    at_x = x, at_y = y;
  }
  for (int c = 0; c < CHANNELS; ++c) {
    T* plane = grad_input + c * in_plane;
    plane[a_nw] += s_nw[c], plane[a_ne] += s_ne[c], plane[a_sw] += s_sw[c], plane[a_se] += s_se[c];
  }
}

template <typename T>
void scatter_input_gradient(const T* grad_output, T* grad_input, int64_t channels, int64_t in_plane,
                            int64_t out_plane, int64_t count, const Chunk<T>& k) {
  if (channels == 3) {
    scatter_chunk<T, 3>(grad_output, grad_input, in_plane, out_plane, count, k);
    return;
  }
  for (int64_t c = 0; c < channels; ++c) {
    scatter_chunk<T, 1>(grad_output + c * out_plane, grad_input + c * in_plane, in_plane, out_plane, count,
                        k);
  }
}

// grad_input or grad_theta may be null when not wanted.
template <typename T>
void backward(const T* grad_output, const T* input, const T* theta, const T* X, const T* Y, const T* U,
              const T* V, T* grad_input, T* grad_theta, int64_t batch, int64_t channels, int64_t in_h,
              int64_t in_w, int64_t out_h, int64_t out_w, int padding, bool align_corners) {
  const int64_t in_plane = in_h * in_w, out_plane = out_h * out_w;
#pragma omp parallel if (batch * channels * out_plane >= kParallelWork)
  {
  Chunk<T> k;
  T g_ix[kChunk], g_iy[kChunk];
#pragma omp for schedule(static)
  for (int64_t n = 0; n < batch; ++n) {
    const T* in_n = input + n * channels * in_plane;
    const PixelMap<T> map = pixel_map(theta + 6 * n, in_h, in_w, out_h, out_w, align_corners);
    T* grad_input_n = grad_input ? grad_input + n * channels * in_plane : nullptr;
    if (grad_input_n) std::fill(grad_input_n, grad_input_n + channels * in_plane, T(0));
    // d theta sums H * W terms: chunk sums in T, chunks summed in double.
    double acc[6] = {0, 0, 0, 0, 0, 0};
    for (int64_t start = 0; start < out_plane; start += kChunk) {
      const int64_t count = std::min(kChunk, out_plane - start);
      const T* go_n = grad_output + n * channels * out_plane + start;
      chunk_coordinates(map, U + start, V + start, count, in_h, in_w, padding, align_corners, k);
      chunk_taps(count, in_h, in_w, k);
      if (grad_input_n) scatter_input_gradient(go_n, grad_input_n, channels, in_plane, out_plane, count, k);
      if (!grad_theta) continue;
      position_gradient(go_n, in_n, channels, in_plane, out_plane, count, k, g_ix, g_iy);
      const T* x = X + start;
      const T* y = Y + start;
      // d theta[r][j] = sum over points of d loss / d grid[r] times (x, y, 1)[j]
      T s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3, s4, s5)
      for (int64_t p = 0; p < count; ++p) {
        const T d_gx = g_ix[p] * k.scale_x[p], d_gy = g_iy[p] * k.scale_y[p];  // d loss / d grid
        s0 += d_gx * x[p];
        s1 += d_gx * y[p];
        s2 += d_gx;
        s3 += d_gy * x[p];
        s4 += d_gy * y[p];
        s5 += d_gy;
      }
      const T chunk_sums[6] = {s0, s1, s2, s3, s4, s5};
      for (int j = 0; j < 6; ++j) acc[j] += double(chunk_sums[j]);
    }
    if (grad_theta) {
      for (int j = 0; j < 6; ++j) grad_theta[6 * n + j] = T(acc[j]);
    }
  }
}  // omp parallel
}

}  // namespace

extern "C" {

// Bump when the signatures below change; the loader checks it.
int stnkit_affine_bilinear_abi(void) { return 4; }

// forward: output = warp(input); backward: grad_input and/or grad_theta (either may be null).
#define STNKIT_AFFINE_BILINEAR(T, SUFFIX)                                                               \
  void stnkit_affine_bilinear_forward_##SUFFIX(const T* input, const T* theta, const T* U, const T* V,   \
                                               T* output, int64_t batch, int64_t channels, int64_t in_h, \
                                               int64_t in_w, int64_t out_h, int64_t out_w, int padding,  \
                                               int align_corners) {                                      \
    forward<T>(input, theta, U, V, output, batch, channels, in_h, in_w, out_h, out_w, padding,           \
               align_corners != 0);                                                                      \
  }                                                                                                      \
  void stnkit_affine_bilinear_backward_##SUFFIX(                                                         \
      const T* grad_output, const T* input, const T* theta, const T* X, const T* Y, const T* U,          \
      const T* V, T* grad_input, T* grad_theta, int64_t batch, int64_t channels, int64_t in_h,           \
      int64_t in_w, int64_t out_h, int64_t out_w, int padding, int align_corners) {                      \
    backward<T>(grad_output, input, theta, X, Y, U, V, grad_input, grad_theta, batch, channels, in_h,    \
                in_w, out_h, out_w, padding, align_corners != 0);                                        \
  }

STNKIT_AFFINE_BILINEAR(float, f32)
STNKIT_AFFINE_BILINEAR(double, f64)

}  // extern "C"
