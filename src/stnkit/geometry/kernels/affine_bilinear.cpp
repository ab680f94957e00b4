// Fused 2-D affine warp with bilinear sampling, forward and backward, for contiguous CPU tensors.
//
// The grid is never stored, nor any other array the size of the output plane: the output pixels'
// positions come from per-axis vectors built per call. Each output point's sampling position is
// computed from theta, composed with torch's normalisation and unnormalisation into one
// pixel-to-pixel map per sample (PixelMap below; it makes the identity exact). The backward pass
// accumulates d loss / d theta per sample, in double, instead of writing d loss / d grid. The padding
// rules (clipping, reflection, the gradient masks at clipped coordinates, NaN clamped to 0) are those
// of torch's vectorised CPU grid sampler (aten/src/ATen/native/cpu/GridSamplerKernel.cpp), so results
// agree with F.affine_grid + F.grid_sample to rounding.
//
// No input is undefined behaviour: every float -> int conversion sees a value clamped to a small
// range first (NaN included), tap offsets stay within int32 for inputs the loader accepts, and the
// double -> T conversion of a sample's pixel map only happens where the map is finite and moderate.
// A sample whose map is not (theta huge, inf or NaN) computes its points in torch's two steps instead
// (grid value in T, then unnormalised in T), so that overflow to inf and NaN happen where they happen
// in torch.
//
// Determinism: values follow from IEEE rules alone, whatever -march the library is built for and
// however many threads run it. -ffp-contract=off (no fused multiply-adds), no -ffast-math, no OpenMP
// reductions (whose order depends on the vector width): the theta gradient sums products in kLanes
// fixed lanes, lane l taking points l, l + kLanes, ..., and adds the lanes in a fixed order.
//
// Speed comes from layout, not intrinsics: each sample's plane is cut into chunks of kChunk points, and
// every pass over a chunk is a branch-free loop over arrays that the compiler vectorises (the reads
// through tap indices become SIMD gathers, or the compiler's emulation of them where -mtune says
// gathers are slow, as it does for AMD Zen). Only the scatter of the input
// gradient is scalar (see scatter_chunk). Three-channel images take their channels inside one loop
// over points; other counts go one plane at a time.
//
// stnkit/geometry/kernel.py compiles this file with the system C++ compiler (-fopenmp, so the library
// uses the OpenMP runtime torch has loaded) and calls it through ctypes. The batch is split between
// OpenMP threads, one sample per iteration, so threads never write the same memory and results do not
// depend on the thread count.
//
// Layouts: input (N, C, IH, IW); output, grad_output (N, C, H, W); theta (N, 2, 3).
// padding: 0 zeros, 1 border, 2 reflection.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t kChunk = 512;
// Below this many output values a call runs on one thread: waking the pool would cost more.
constexpr int64_t kParallelWork = 32768;
// Fixed lanes of the theta-gradient sums (see the header).
constexpr int kLanes = 8;
// A sample's composed pixel map is used while every |coordinate| it can produce stays below this.
constexpr double kComposedLimit = 1099511627776.0;  // 2^40

enum Padding { kZeros = 0, kBorder = 1, kReflection = 2 };

// The output's pixels along both axes, per call: positions u = w + 1/2 (w with align_corners) and
// torch's normalised coordinates x (the numbers stnkit.geometry.normalized_coordinates returns).
template <typename T>
struct Axes {
  std::vector<T> u, x;  // (W)
  std::vector<T> v, y;  // (H)
};

// torch's normalised coordinate of pixel i of num, in T and in torch's order of operations.
template <typename T>
T normalized(int64_t i, int64_t num, bool align_corners) {
  if (num == 1) return T(0);
  if (align_corners) return T(i) * T(2.0 / double(num - 1)) - T(1);
  return (T(2) * T(i) + T(1)) / T(num) - T(1);
}

template <typename T>
void axis(int64_t num, bool align_corners, std::vector<T>* positions, std::vector<T>* coordinates) {
  const T offset = align_corners ? T(0) : T(0.5);
  positions->resize(num);
  coordinates->resize(num);
  for (int64_t i = 0; i < num; ++i) {
    (*positions)[i] = T(i) + offset;
    (*coordinates)[i] = normalized<T>(i, num, align_corners);
  }
}

template <typename T>
Axes<T> make_axes(int64_t out_h, int64_t out_w, bool align_corners) {
  Axes<T> axes;
  axis(out_w, align_corners, &axes.u, &axes.x);
  axis(out_h, align_corners, &axes.v, &axes.y);
  return axes;
}

// One sample's map from output pixels to input pixel coordinates.
//
// Composed (the usual case): x_in = ax * U + bx * V + cx, y_in = ay * U + by * V + cy, U, V being the
// output positions. Composing torch's normalisation, theta and unnormalisation this way makes the
// identity exact: for equal sizes ax = by = 1, the rest 0 and -1/2, so x_in = (w + 1/2) - 1/2 = w with
// no rounding, and the warp returns its input bit for bit.
//
// Otherwise (theta huge, inf or NaN: see the header) the plain path's two steps: the grid value
// g = theta . (x, y, 1) as stnkit.geometry.affine_grid_2d computes it, then torch's unnormalisation
// x_in = (g + 1) * scale - 1/2 (align_corners: (g + 1) * scale).
template <typename T>
struct SampleMap {
  bool composed;
  T ax, bx, cx, ay, by, cy;  // the composed map (composed only)
  T theta[6];                // theta as given (otherwise)
  T scale_x, scale_y;        // d pixel / d normalised coordinate: torch's unnormalisation factors
};

template <typename T>
SampleMap<T> sample_map(const T* th, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                        bool align_corners) {
  // Normalised output coordinate = U * 2 / span_out - 1 (span_out = size or size - 1); a single pixel
  // with align_corners sits at 0 (span_out = 0).
  const double span_out_w = align_corners ? double(out_w - 1) : double(out_w);
  const double span_out_h = align_corners ? double(out_h - 1) : double(out_h);
  const double offset = align_corners ? 0.0 : 0.5;
  const double u_max = double(out_w - 1) + offset, v_max = double(out_h - 1) + offset;
  double coefficients[6];
  bool moderate = true;
  auto row = [&](double t_x, double t_y, double t_t, int64_t in_size, double* abc) {
    const double span_in = align_corners ? double(in_size - 1) : double(in_size);
    abc[0] = span_out_w > 0 ? (span_in * t_x) / span_out_w : 0.0;
    abc[1] = span_out_h > 0 ? (span_in * t_y) / span_out_h : 0.0;
    double shift = t_t + 1.0;
    if (span_out_w > 0) shift -= t_x;
    if (span_out_h > 0) shift -= t_y;
    abc[2] = span_in / 2 * shift - offset;
    // NaN fails the comparison too.
    const double reach = std::fabs(abc[0]) * u_max + std::fabs(abc[1]) * v_max + std::fabs(abc[2]);
    moderate = moderate && reach < kComposedLimit;
  };
  row(th[0], th[1], th[2], in_w, coefficients);
  row(th[3], th[4], th[5], in_h, coefficients + 3);
  SampleMap<T> m;
  m.composed = moderate;
  // Casts only where the value fits (a double out of T's range is undefined behaviour to convert).
  m.ax = moderate ? T(coefficients[0]) : T(0);
  m.bx = moderate ? T(coefficients[1]) : T(0);
  m.cx = moderate ? T(coefficients[2]) : T(0);
  m.ay = moderate ? T(coefficients[3]) : T(0);
  m.by = moderate ? T(coefficients[4]) : T(0);
  m.cy = moderate ? T(coefficients[5]) : T(0);
  for (int j = 0; j < 6; ++j) m.theta[j] = th[j];
  // torch: static_cast<scalar_t>(size) / 2, or (size - 1) / 2 with align_corners.
  m.scale_x = (align_corners ? T(in_w - 1) : T(in_w)) / 2;
  m.scale_y = (align_corners ? T(in_h - 1) : T(in_h)) / 2;
  return m;
}

// Sampling taps of up to kChunk points, as arrays. Taps outside the input get weight 0, inside 0 and
// index 0, so every loop over them is branch-free and reads only valid memory: the loops read every
// tap unconditionally (which the compiler can vectorise, a masked read it could not) and then select
// on `inside` rather than multiply by 0, so an inf or NaN in a tap that torch would skip cannot leak
// into the result.
template <typename T>
struct Chunk {
  T u[kChunk], v[kChunk];              // output positions of the points
  T x[kChunk], y[kChunk];              // their normalised coordinates
  T ix[kChunk], iy[kChunk];            // input pixel coordinates, after padding
  T scale_x[kChunk], scale_y[kChunk];  // d pixel / d normalised (0 where clipped)
  T dx[kChunk], dy[kChunk];            // offsets from the north-west tap
  T weight[4][kChunk];                 // bilinear weights of taps nw, ne, sw, se (0 outside)
  int32_t inside[4][kChunk];           // 1 where the tap lies inside the input, else 0
  int32_t index[4][kChunk];            // offset of each tap in an input plane (0 outside)
  int32_t x0[kChunk], y0[kChunk];      // the north-west tap's column and row (clamped near the input)
};

// k.u, k.v (and k.x, k.y where wanted) of the points [start, start + count) of the output plane, copied
// from the per-axis vectors one row segment at a time.
template <typename T>
void chunk_positions(const Axes<T>& axes, int64_t start, int64_t count, bool normalized_too, Chunk<T>& k) {
  const int64_t width = static_cast<int64_t>(axes.u.size());
  int64_t h = start / width, w = start % width;
  for (int64_t p = 0; p < count; w = 0, ++h) {
    const int64_t n = std::min(count - p, width - w);
    std::copy(axes.u.begin() + w, axes.u.begin() + w + n, k.u + p);
    std::fill(k.v + p, k.v + p + n, axes.v[h]);
    if (normalized_too) {
      std::copy(axes.x.begin() + w, axes.x.begin() + w + n, k.x + p);
      std::fill(k.y + p, k.y + p + n, axes.y[h]);
    }
    p += n;
  }
}

// Unpadded input pixel coordinates of points [0, count) into k.ix, k.iy.
template <typename T>
void chunk_raw_coordinates(const SampleMap<T>& m, int64_t count, bool align_corners, Chunk<T>& k) {
  if (m.composed) {
    const T ax = m.ax, bx = m.bx, cx = m.cx, ay = m.ay, by = m.by, cy = m.cy;
#pragma omp simd
    for (int64_t p = 0; p < count; ++p) {
      k.ix[p] = (ax * k.u[p] + bx * k.v[p]) + cx;
      k.iy[p] = (ay * k.u[p] + by * k.v[p]) + cy;
    }
    return;
  }
  const T* t = m.theta;
  const T half = align_corners ? T(0) : T(0.5);
  for (int64_t p = 0; p < count; ++p) {
    // stnkit.geometry.affine_grid_2d's order: (theta[1] * y + theta[2]) + theta[0] * x.
    const T gx = (t[1] * k.y[p] + t[2]) + t[0] * k.x[p];
    const T gy = (t[4] * k.y[p] + t[5]) + t[3] * k.x[p];
    k.ix[p] = (gx + 1) * m.scale_x - half;
    k.iy[p] = (gy + 1) * m.scale_y - half;
  }
}

// torch's clip to [0, size - 1], NaN to 0; the gradient factor is 0 at and beyond either edge.
template <typename T>
inline T clip(T coord, T upper, T* inside) {
  *inside = T(coord > 0) * T(coord < upper);
  return coord > 0 ? (coord < upper ? coord : upper) : T(0);
}

// Padding of one axis of points [0, count): coord (pixel coordinates) in place, grad = d padded pixel
// / d normalised coordinate. torch's rules, reflection included: |c - low| folded by truncation into
// [0, twice_span), reflected once more where past the span, then clipped.
template <typename T>
void pad_axis(T* coord, T* grad, int64_t count, int64_t size, T scale, int padding, bool align_corners) {
  const T upper = T(size - 1);
  if (padding == kZeros) {
    std::fill(grad, grad + count, scale);
    return;
  }
  if (padding == kBorder) {
#pragma omp simd
    for (int64_t p = 0; p < count; ++p) {
      T inside;
      coord[p] = clip(coord[p], upper, &inside);
      grad[p] = inside * scale;
    }
    return;
  }
  if (align_corners && size <= 1) {  // nothing to reflect across: every point is pixel 0
    std::fill(coord, coord + count, T(0));
    std::fill(grad, grad + count, T(0));
    return;
  }
  const T low = align_corners ? T(0) : T(-0.5);
  const T twice_span = align_corners ? T(size - 1) * 2 : T(size) * 2;
#pragma omp simd
  for (int64_t p = 0; p < count; ++p) {
    const T shifted = coord[p] - low;
    const T magnitude = std::fabs(shifted);
    const T extra = magnitude - std::trunc(magnitude / twice_span) * twice_span;
    const T reflected_extra = twice_span - extra;
    const bool one_more_flip = extra > reflected_extra;
    const T reflected = (one_more_flip ? reflected_extra : extra) + low;
    const T sign = (one_more_flip != (shifted < 0)) ? T(-1) : T(1);
    T inside;
    coord[p] = clip(reflected, upper, &inside);
    grad[p] = inside * (sign * scale);
  }
}

// Taps, weights and masks of points [0, count) from their pixel coordinates k.ix, k.iy.
template <typename T>
void chunk_taps(int64_t count, int64_t in_h, int64_t in_w, Chunk<T>& k) {
  const int32_t width = static_cast<int32_t>(in_w), height = static_cast<int32_t>(in_h);
  // Taps of columns below -1 or beyond width are all outside, like those of -2 and width + 1: the
  // conversion to int sees a value clamped to [-2, size + 1] (NaN to -2), never an out-of-range one.
  const T far_w = T(in_w + 1), far_h = T(in_h + 1);
#pragma omp simd
  for (int64_t p = 0; p < count; ++p) {
    const T fx = std::floor(k.ix[p]), fy = std::floor(k.iy[p]);
    const T cfx = fx > T(-2) ? fx : T(-2), cfy = fy > T(-2) ? fy : T(-2);
    const int32_t x0 = static_cast<int32_t>(cfx < far_w ? cfx : far_w);
    const int32_t y0 = static_cast<int32_t>(cfy < far_h ? cfy : far_h);
    // As in torch, inf or NaN coordinates make NaN offsets and so NaN weights (zeros padding only:
    // the other paddings have clipped them).
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
    // |offset| < (height + 4) * (width + 4) < 2^31, which the loader checks.
    const int32_t at = y0 * width + x0;
    const int32_t offset[4] = {at, at + 1, at + width, at + width + 1};
    for (int t = 0; t < 4; ++t) {
      k.inside[t][p] = in_tap[t];
      k.weight[t][p] = T(in_tap[t]) * bilinear[t];
      k.index[t][p] = in_tap[t] * offset[t];
    }
  }
}

// Coordinates, padding and taps of the points [start, start + count) of one sample.
template <typename T>
void prepare_chunk(const SampleMap<T>& m, const Axes<T>& axes, int64_t start, int64_t count, int64_t in_h,
                   int64_t in_w, int padding, bool align_corners, bool normalized_too, Chunk<T>& k) {
  chunk_positions(axes, start, count, normalized_too || !m.composed, k);
  chunk_raw_coordinates(m, count, align_corners, k);
  pad_axis(k.ix, k.scale_x, count, in_w, m.scale_x, padding, align_corners);
  pad_axis(k.iy, k.scale_y, count, in_h, m.scale_y, padding, align_corners);
  chunk_taps(count, in_h, in_w, k);
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
      // Unconditional reads (a tap outside has index 0, a valid address), then a select: gathers.
      const T r_nw = plane[i0[p]], r_ne = plane[i1[p]], r_sw = plane[i2[p]], r_se = plane[i3[p]];
      const T v_nw = m0[p] ? r_nw : T(0), v_ne = m1[p] ? r_ne : T(0);
      const T v_sw = m2[p] ? r_sw : T(0), v_se = m3[p] ? r_se : T(0);
      output[c * out_plane + p] = w0[p] * v_nw + w1[p] * v_ne + w2[p] * v_sw + w3[p] * v_se;
    }
  }
}

template <typename T>
void forward(const T* input, const T* theta, T* output, int64_t batch, int64_t channels, int64_t in_h,
             int64_t in_w, int64_t out_h, int64_t out_w, int padding, bool align_corners) {
  const int64_t in_plane = in_h * in_w, out_plane = out_h * out_w;
  const Axes<T> axes = make_axes<T>(out_h, out_w, align_corners);
#pragma omp parallel if (batch * channels * out_plane >= kParallelWork)
  {
  Chunk<T> k;
#pragma omp for schedule(static)
  for (int64_t n = 0; n < batch; ++n) {
    const SampleMap<T> map = sample_map(theta + 6 * n, in_h, in_w, out_h, out_w, align_corners);
    for (int64_t start = 0; start < out_plane; start += kChunk) {
      const int64_t count = std::min(kChunk, out_plane - start);
      prepare_chunk(map, axes, start, count, in_h, in_w, padding, align_corners, false, k);
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
      const T r_nw = plane[i0[p]], r_ne = plane[i1[p]], r_sw = plane[i2[p]], r_se = plane[i3[p]];
      const T v_nw = m0[p] ? r_nw : T(0), v_ne = m1[p] ? r_ne : T(0);
      const T v_sw = m2[p] ? r_sw : T(0), v_se = m3[p] ? r_se : T(0);
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

// lanes[j][l] += the j-th product of d loss / d grid and (x, y, 1) at points l, l + kLanes, ... of the
// chunk: d theta[r][j'] = sum over points of d loss / d grid[r] times (x, y, 1)[j']. Each lane is its
// own sum in a fixed order, so vectorising the loop over lanes (any width) cannot change a bit.
template <typename T>
void add_theta_products(const T* g_ix, const T* g_iy, int64_t count, const Chunk<T>& k,
                        double lanes[6][kLanes]) {
  auto add = [&](int64_t p, int l) {
    const T d_gx = g_ix[p] * k.scale_x[p], d_gy = g_iy[p] * k.scale_y[p];  // d loss / d grid
    lanes[0][l] += double(d_gx * k.x[p]);
    lanes[1][l] += double(d_gx * k.y[p]);
    lanes[2][l] += double(d_gx);
    lanes[3][l] += double(d_gy * k.x[p]);
    lanes[4][l] += double(d_gy * k.y[p]);
    lanes[5][l] += double(d_gy);
  };
  int64_t base = 0;
  for (; base + kLanes <= count; base += kLanes) {
    for (int l = 0; l < kLanes; ++l) add(base + l, l);
  }
  for (int l = 0; base + l < count; ++l) add(base + l, l);
}

// grad_input or grad_theta may be null when not wanted.
template <typename T>
void backward(const T* grad_output, const T* input, const T* theta, T* grad_input, T* grad_theta,
              int64_t batch, int64_t channels, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
              int padding, bool align_corners) {
  const int64_t in_plane = in_h * in_w, out_plane = out_h * out_w;
  const Axes<T> axes = make_axes<T>(out_h, out_w, align_corners);
#pragma omp parallel if (batch * channels * out_plane >= kParallelWork)
  {
  Chunk<T> k;
  T g_ix[kChunk], g_iy[kChunk];
#pragma omp for schedule(static)
  for (int64_t n = 0; n < batch; ++n) {
    const T* in_n = input + n * channels * in_plane;
    const SampleMap<T> map = sample_map(theta + 6 * n, in_h, in_w, out_h, out_w, align_corners);
    T* grad_input_n = grad_input ? grad_input + n * channels * in_plane : nullptr;
    if (grad_input_n) std::fill(grad_input_n, grad_input_n + channels * in_plane, T(0));
    double lanes[6][kLanes] = {};
    for (int64_t start = 0; start < out_plane; start += kChunk) {
      const int64_t count = std::min(kChunk, out_plane - start);
      const T* go_n = grad_output + n * channels * out_plane + start;
      prepare_chunk(map, axes, start, count, in_h, in_w, padding, align_corners, grad_theta != nullptr, k);
      if (grad_input_n) scatter_input_gradient(go_n, grad_input_n, channels, in_plane, out_plane, count, k);
      if (!grad_theta) continue;
      position_gradient(go_n, in_n, channels, in_plane, out_plane, count, k, g_ix, g_iy);
      add_theta_products(g_ix, g_iy, count, k, lanes);
    }
    if (grad_theta) {
      for (int j = 0; j < 6; ++j) {
        double sum = 0;
        for (int l = 0; l < kLanes; ++l) sum += lanes[j][l];
        grad_theta[6 * n + j] = T(sum);
      }
    }
  }
}  // omp parallel
}

}  // namespace

extern "C" {

// Bump when the signatures below change; the loader checks it.
int stnkit_affine_bilinear_abi(void) { return 5; }

// forward: output = warp(input); backward: grad_input and/or grad_theta (either may be null).
#define STNKIT_AFFINE_BILINEAR(T, SUFFIX)                                                               \
  void stnkit_affine_bilinear_forward_##SUFFIX(const T* input, const T* theta, T* output, int64_t batch, \
                                               int64_t channels, int64_t in_h, int64_t in_w,             \
                                               int64_t out_h, int64_t out_w, int padding,                \
                                               int align_corners) {                                      \
    forward<T>(input, theta, output, batch, channels, in_h, in_w, out_h, out_w, padding,                 \
               align_corners != 0);                                                                      \
  }                                                                                                      \
  void stnkit_affine_bilinear_backward_##SUFFIX(                                                         \
      const T* grad_output, const T* input, const T* theta, T* grad_input, T* grad_theta, int64_t batch, \
      int64_t channels, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w, int padding,           \
      int align_corners) {                                                                               \
    backward<T>(grad_output, input, theta, grad_input, grad_theta, batch, channels, in_h, in_w, out_h,   \
                out_w, padding, align_corners != 0);                                                     \
  }

STNKIT_AFFINE_BILINEAR(float, f32)
STNKIT_AFFINE_BILINEAR(double, f64)

}  // extern "C"
