// upfirdn2d on the CPU, polyphase: an output sample only ever meets the filter taps that
// land on real (not inserted-zero) input samples, at most ceil(k / up) of them per dim. So
// each dim gets a tap table computed once per call: for output o, the first input index
// start[o] and T weights for the inputs start[o] .. start[o] + T - 1 (zero where a tap
// meets an inserted zero or the padding). A separable (1-D) filter runs as a row pass into
// a per-plane buffer, then a column pass: O(taps) per output, not O(taps^2); so does a 2-D
// filter that is an outer product. Any other 2-D filter runs, for each output row, one row
// pass per filter row that hits a real input row.
// NCHW vectorises the column pass along W and, for the usual factors, the row pass over the
// whole plane (FlatRows); channels_last vectorises both passes along C.
// Work is split over (N, C) planes (NCHW) or (N, channel blocks) (channels_last).
#include "upfirdn2d.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace gankernels {
namespace {

const char* kFn = "upfirdn2d (cpu)";
constexpr int64_t kChannelBlock = 64;  // channels_last: channels per task (vector length)

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// One dim's polyphase tap table. Output o reads inputs start[o] .. start[o] + T - 1 with
// weights w[o * T + t]; `row[o * T + t]` is the filter tap index (or -1) for 2-D filters.
template <typename acc_t>
struct Taps {
  int64_t T = 0;
  std::vector<int64_t> start;
  std::vector<acc_t> w;
  std::vector<int64_t> tap;
};

// g: the filter along this dim already oriented for correlation (g[a] meets padded index
// o * down + a), scaled. L input samples, O outputs.
template <typename acc_t>
Taps<acc_t> make_taps(const acc_t* g, int64_t k, int64_t L, int64_t O, int64_t up,
                      int64_t down, int64_t pad0) {
  Taps<acc_t> tab;
  tab.T = std::min((k + up - 1) / up, L);
  const int64_t T = tab.T;
  tab.start.assign(O, 0);
  tab.w.assign(O * T, acc_t(0));
  tab.tap.assign(O * T, -1);
  for (int64_t o = 0; o < O; ++o) {
    const int64_t first = -floor_div(-(o * down - pad0), up);  // ceil
    const int64_t s = std::max<int64_t>(0, std::min(first, L - T));
    tab.start[o] = s;
    for (int64_t a = 0; a < k; ++a) {
      const int64_t u = o * down + a - pad0;  // index in the upsampled image
      if (u - floor_div(u, up) * up != 0) continue;  // an inserted zero
      const int64_t i = floor_div(u, up);
      if (i < 0 || i >= L) continue;  // padding
      const int64_t t = i - s;
      TORCH_CHECK(t >= 0 && t < T, kFn, ": internal tap table error");
      tab.w[o * T + t] += g[a];
      tab.tap[o * T + t] = a;
    }
  }
  return tab;
}

// out[o] (+)= sum_t w[o*T + t] * in[start[o] + t], one row of a plane (stride 1).
template <int T_, typename acc_t, typename scalar_t>
void row_pass_fixed(const scalar_t* in, acc_t* out, const Taps<acc_t>& tab, const acc_t* w,
                    int64_t O, bool accumulate) {
  const int64_t* start = tab.start.data();
  for (int64_t o = 0; o < O; ++o) {
    const scalar_t* src = in + start[o];
    const acc_t* wo = w + o * T_;
    acc_t s = accumulate ? out[o] : acc_t(0);
    for (int t = 0; t < T_; ++t) s += wo[t] * acc_t(src[t]);
    out[o] = s;
  }
}

template <typename acc_t, typename scalar_t>
void row_pass(const scalar_t* in, acc_t* out, const Taps<acc_t>& tab, const acc_t* w,
              int64_t O, bool accumulate) {
  switch (tab.T) {
    case 1: return row_pass_fixed<1>(in, out, tab, w, O, accumulate);
    case 2: return row_pass_fixed<2>(in, out, tab, w, O, accumulate);
    case 3: return row_pass_fixed<3>(in, out, tab, w, O, accumulate);
    case 4: return row_pass_fixed<4>(in, out, tab, w, O, accumulate);
    default: break;
  }
  const int64_t T = tab.T;
  for (int64_t o = 0; o < O; ++o) {
    const scalar_t* src = in + tab.start[o];
    const acc_t* wo = w + o * T;
    acc_t s = accumulate ? out[o] : acc_t(0);
    for (int64_t t = 0; t < T; ++t) s += wo[t] * acc_t(src[t]);
    out[o] = s;
  }
}

struct Geometry {
  int64_t H, W, OH, OW, C;
};

// NCHW, separable, up 1 with down 1 or 2, or up 2 with down 1 (StyleGAN's resampling and
// its gradients): the row pass runs over a whole plane as one long loop. Each row is copied
// into a zero-margined buffer of stride Wp; every output of every row is then the same dot
// product of a per-phase filter with that buffer at a fixed offset, so the plane vectorises
// as one array instead of H short rows (rows of 7-64 samples leave most of a vector loop in
// its remainder) and the borders need no tap table. Outputs past OW in a row land in the
// row's slack and are never read.
template <typename acc_t>
struct FlatRows {
  int64_t up = 1, down = 1;
  int64_t margin = 0;  // zeros left of each row in the buffer
  int64_t Wp = 0;      // buffer row stride
  int64_t S = 0;       // row stride of the result: Wp / down, or 2 * Wp for up 2
  int64_t n = 0;       // flat loop length over the plane
  int64_t T = 0;       // taps per phase
  int64_t off[2] = {0, 0};
  std::vector<acc_t> w[2];  // per phase (up 2), T taps each
};

constexpr int64_t kMaxFlatTaps = 8;

int64_t floor_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }

// g as in make_taps (k taps, oriented for correlation). False: factors or filter length
// this path does not take.
template <typename acc_t>
bool make_flat_rows(const acc_t* g, int64_t k, int64_t H, int64_t W, int64_t OW, int64_t up,
                    int64_t down, int64_t pad0, FlatRows<acc_t>& fr) {
  fr.up = up;
  fr.down = down;
  if (up == 1 && (down == 1 || down == 2) && k <= kMaxFlatTaps) {
    // out[o] = sum_a g[a] x[o * down + a - pad0]; the buffer holds x at margin.
    fr.T = k;
    fr.w[0].assign(g, g + k);
    fr.margin = std::max<int64_t>(pad0, 0);
    fr.off[0] = fr.margin - pad0;
    fr.Wp = std::max((OW - 1) * down + k + fr.off[0], fr.margin + W);
    fr.Wp += fr.Wp % down;  // the result's stride Wp / down must be exact
    fr.S = fr.Wp / down;
    fr.n = (H - 1) * fr.S + OW;
    return true;
  }
  if (up == 2 && down == 1 && (k + 1) / 2 <= kMaxFlatTaps) {
    // out[2m + p] = sum_b g[2b + c_p] x[m + b + delta_p], c_p = (pad0 - p) mod 2: the taps
    // that meet real (not inserted-zero) samples in phase p.
    fr.T = (k + 1) / 2;
    int64_t delta[2];
    for (int p = 0; p < 2; ++p) {
      const int64_t c = floor_mod(pad0 - p, 2);
      fr.w[p].assign(fr.T, acc_t(0));
      for (int64_t b = 0; 2 * b + c < k; ++b) fr.w[p][b] = g[2 * b + c];
      delta[p] = (p + c - pad0) / 2;  // exact: p + c - pad0 is even
    }
    fr.margin = std::max<int64_t>({0, -delta[0], -delta[1]});
    for (int p = 0; p < 2; ++p) fr.off[p] = delta[p] + fr.margin;
    const int64_t half = (OW + 1) / 2;
    fr.Wp = std::max(half + fr.T + std::max(fr.off[0], fr.off[1]), fr.margin + W);
    fr.S = 2 * fr.Wp;
    fr.n = (H - 1) * fr.Wp + half;
    return true;
  }
  return false;
}

template <int T, typename acc_t>
void flat_row_pass_fixed(const acc_t* buf, acc_t* mid, const FlatRows<acc_t>& fr) {
  const int64_t n = fr.n;
  acc_t w0[T], w1[T];  // in registers: the loop below then vectorises along j
  for (int t = 0; t < T; ++t) {
    w0[t] = fr.w[0][t];
    w1[t] = fr.up == 2 ? fr.w[1][t] : acc_t(0);
  }
  if (fr.up == 2) {
    const acc_t *s0 = buf + fr.off[0], *s1 = buf + fr.off[1];
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      acc_t a0 = 0, a1 = 0;
      for (int t = 0; t < T; ++t) {
        a0 += w0[t] * s0[j + t];
        a1 += w1[t] * s1[j + t];
      }
      mid[2 * j] = a0;
      mid[2 * j + 1] = a1;
    }
    return;
  }
  const acc_t* src = buf + fr.off[0];
  if (fr.down == 1) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      acc_t a = 0;
      for (int t = 0; t < T; ++t) a += w0[t] * src[j + t];
      mid[j] = a;
    }
    return;
  }
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    acc_t a = 0;
    for (int t = 0; t < T; ++t) a += w0[t] * src[2 * j + t];
    mid[j] = a;
  }
}

template <typename acc_t>
void flat_row_pass(const acc_t* buf, acc_t* mid, const FlatRows<acc_t>& fr) {
  switch (fr.T) {
    case 1: return flat_row_pass_fixed<1>(buf, mid, fr);
    case 2: return flat_row_pass_fixed<2>(buf, mid, fr);
    case 3: return flat_row_pass_fixed<3>(buf, mid, fr);
    case 4: return flat_row_pass_fixed<4>(buf, mid, fr);
    case 5: return flat_row_pass_fixed<5>(buf, mid, fr);
    case 6: return flat_row_pass_fixed<6>(buf, mid, fr);
    case 7: return flat_row_pass_fixed<7>(buf, mid, fr);
    case 8: return flat_row_pass_fixed<8>(buf, mid, fr);
    default: TORCH_CHECK(false, kFn, ": internal: flat row pass of ", fr.T, " taps");
  }
}

// y rows from the row pass's result (stride S) through the column tap table.
template <int T, typename scalar_t, typename acc_t>
void column_pass_fixed(const acc_t* mid, scalar_t* y, int64_t OH, int64_t OW, int64_t S,
                       const Taps<acc_t>& yt) {
  for (int64_t oy = 0; oy < OH; ++oy) {
    acc_t w[T];
    for (int t = 0; t < T; ++t) w[t] = yt.w[oy * T + t];
    const acc_t* rows = mid + yt.start[oy] * S;
    scalar_t* dst = y + oy * OW;
#pragma omp simd
    for (int64_t ox = 0; ox < OW; ++ox) {
      acc_t a = 0;
      for (int t = 0; t < T; ++t) a += w[t] * rows[t * S + ox];
      dst[ox] = scalar_t(a);
    }
  }
}

template <typename scalar_t, typename acc_t>
void column_pass(const acc_t* mid, scalar_t* y, int64_t OH, int64_t OW, int64_t S,
                 const Taps<acc_t>& yt) {
  switch (yt.T) {
    case 1: return column_pass_fixed<1>(mid, y, OH, OW, S, yt);
    case 2: return column_pass_fixed<2>(mid, y, OH, OW, S, yt);
    case 3: return column_pass_fixed<3>(mid, y, OH, OW, S, yt);
    case 4: return column_pass_fixed<4>(mid, y, OH, OW, S, yt);
    default: break;
  }
  const int64_t Ty = yt.T;
  for (int64_t oy = 0; oy < OH; ++oy) {
    const acc_t* w = yt.w.data() + oy * Ty;
    const acc_t* rows = mid + yt.start[oy] * S;
    scalar_t* dst = y + oy * OW;
    for (int64_t ox = 0; ox < OW; ++ox) {
      acc_t a = 0;
      for (int64_t t = 0; t < Ty; ++t) a += w[t] * rows[t * S + ox];
      dst[ox] = scalar_t(a);
    }
  }
}

// One NCHW plane: rows into the margined buffer, the flat row pass, the column pass.
template <typename scalar_t, typename acc_t>
void plane_nchw_flat(const scalar_t* x, scalar_t* y, const Geometry& g,
                     const FlatRows<acc_t>& fr, const Taps<acc_t>& yt, std::vector<acc_t>& buf,
                     std::vector<acc_t>& mid) {
  for (int64_t iy = 0; iy < g.H; ++iy) {
    const scalar_t* src = x + iy * g.W;
    acc_t* dst = buf.data() + iy * fr.Wp + fr.margin;
#pragma omp simd
    for (int64_t c = 0; c < g.W; ++c) dst[c] = acc_t(src[c]);
  }
  flat_row_pass(buf.data(), mid.data(), fr);
  column_pass(mid.data(), y, g.OH, g.OW, fr.S, yt);
}

// One (n, c) plane of an NCHW tensor. sep: xt (row) and yt (column) tables of the 1-D
// filter; 2-D: xrows[a] is the row table of filter row a, yt.tap names the filter rows.
template <typename scalar_t, typename acc_t>
void plane_nchw(const scalar_t* x, scalar_t* y, const Geometry& g, bool separable,
                const Taps<acc_t>& xt, const std::vector<acc_t>& xrow_w, const Taps<acc_t>& yt,
                std::vector<acc_t>& mid, std::vector<acc_t>& acc) {
  const int64_t W = g.W, OW = g.OW, Ty = yt.T, Tx = xt.T;
  if (separable) {
    // Rows first (on the H real rows only: inserted zero rows filter to zero).
    for (int64_t iy = 0; iy < g.H; ++iy) {
      row_pass(x + iy * W, mid.data() + iy * OW, xt, xt.w.data(), OW, false);
    }
    column_pass(mid.data(), y, g.OH, OW, OW, yt);
    return;
  }
  for (int64_t oy = 0; oy < g.OH; ++oy) {
    acc_t* a = acc.data();
    std::fill(a, a + OW, acc_t(0));
    for (int64_t t = 0; t < Ty; ++t) {
      const int64_t r = yt.tap[oy * Ty + t];
      if (r < 0) continue;
      row_pass(x + (yt.start[oy] + t) * W, a, xt, xrow_w.data() + r * OW * Tx, OW, true);
    }
    scalar_t* dst = y + oy * OW;
#pragma omp simd
    for (int64_t ox = 0; ox < OW; ++ox) dst[ox] = scalar_t(a[ox]);
  }
}

// dst[0..cb) (+)= sum_t w[t] * src_t[0..cb): the channels_last row pass of one pixel.
template <typename scalar_t, typename acc_t>
void pixel_pass(const scalar_t* in, acc_t* dst, const Taps<acc_t>& tab, const acc_t* w,
                int64_t o, int64_t C, int64_t cb) {
  const int64_t T = tab.T;
  for (int64_t t = 0; t < T; ++t) {
    const acc_t wt = w[o * T + t];
    if (wt == acc_t(0)) continue;
    const scalar_t* src = in + (tab.start[o] + t) * C;
#pragma omp simd
    for (int64_t c = 0; c < cb; ++c) dst[c] += wt * acc_t(src[c]);
  }
}

// Channels c0 .. c0 + cb of one image of a channels_last tensor (x, y at the image start).
template <typename scalar_t, typename acc_t>
void block_nhwc(const scalar_t* x, scalar_t* y, const Geometry& g, int64_t c0, int64_t cb,
                bool separable, const Taps<acc_t>& xt, const std::vector<acc_t>& xrow_w,
                const Taps<acc_t>& yt, std::vector<acc_t>& mid, std::vector<acc_t>& acc) {
  const int64_t W = g.W, OW = g.OW, C = g.C, Ty = yt.T, Tx = xt.T;
  const int64_t row = OW * cb;
  auto store = [&](int64_t oy) {
    for (int64_t ox = 0; ox < OW; ++ox) {
      scalar_t* dst = y + (oy * OW + ox) * C + c0;
      const acc_t* a = acc.data() + ox * cb;
#pragma omp simd
      for (int64_t c = 0; c < cb; ++c) dst[c] = scalar_t(a[c]);
    }
  };
  if (separable) {
    std::fill(mid.begin(), mid.begin() + g.H * row, acc_t(0));
    for (int64_t iy = 0; iy < g.H; ++iy) {
      for (int64_t ox = 0; ox < OW; ++ox) {
        pixel_pass(x + iy * W * C + c0, mid.data() + iy * row + ox * cb, xt, xt.w.data(), ox, C,
                   cb);
      }
    }
    for (int64_t oy = 0; oy < g.OH; ++oy) {
      acc_t* a = acc.data();
      std::fill(a, a + row, acc_t(0));
      for (int64_t t = 0; t < Ty; ++t) {
        const acc_t wt = yt.w[oy * Ty + t];
        if (wt == acc_t(0)) continue;
        const acc_t* m = mid.data() + (yt.start[oy] + t) * row;
#pragma omp simd
        for (int64_t i = 0; i < row; ++i) a[i] += wt * m[i];
      }
      store(oy);
    }
    return;
  }
  for (int64_t oy = 0; oy < g.OH; ++oy) {
    std::fill(acc.begin(), acc.begin() + row, acc_t(0));
    for (int64_t t = 0; t < Ty; ++t) {
      const int64_t r = yt.tap[oy * Ty + t];
      if (r < 0) continue;
      const scalar_t* in = x + (yt.start[oy] + t) * W * C + c0;
      for (int64_t ox = 0; ox < OW; ++ox) {
        pixel_pass(in, acc.data() + ox * cb, xt, xrow_w.data() + r * OW * Tx, ox, C, cb);
      }
    }
    store(oy);
  }
}

// A 2-D filter that is an outer product col[a] * row[b] (the usual case: 2-D filters are
// mostly made from 1-D taps) runs separably, O(fh + fw) per output instead of O(fh * fw).
// Accepted when the product matches every tap to within rounding of the accumulator type.
template <typename acc_t>
bool rank_one(const std::vector<acc_t>& g, int64_t fh, int64_t fw, std::vector<acc_t>& col,
              std::vector<acc_t>& row) {
  int64_t best = 0;
  for (int64_t i = 1; i < fh * fw; ++i) {
    if (std::abs(g[i]) > std::abs(g[best])) best = i;
  }
  const acc_t pivot = g[best];
  if (pivot == acc_t(0)) return false;
  const int64_t r = best / fw, c = best % fw;
  col.resize(fh);
  row.resize(fw);
  for (int64_t a = 0; a < fh; ++a) col[a] = g[a * fw + c] / pivot;
  for (int64_t b = 0; b < fw; ++b) row[b] = g[r * fw + b];
  const acc_t tol = std::abs(pivot) * std::numeric_limits<acc_t>::epsilon() * acc_t(8);
  for (int64_t a = 0; a < fh; ++a) {
    for (int64_t b = 0; b < fw; ++b) {
      if (std::abs(col[a] * row[b] - g[a * fw + b]) > tol) return false;
    }
  }
  return true;
}

template <typename scalar_t>
void forward_impl(const at::Tensor& x, const at::Tensor& f, at::Tensor& y, int64_t upx,
                  int64_t upy, int64_t downx, int64_t downy, int64_t px0, int64_t py0,
                  bool flip, double gain, bool channels_last) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = x.size(0), C = x.size(1);
  const Geometry g{x.size(2), x.size(3), y.size(2), y.size(3), C};
  bool separable = f.dim() == 1;
  const int64_t fh = f.size(0), fw = separable ? f.size(0) : f.size(1);
  // Oriented for correlation (flipped unless flip), the gain folded into the row taps.
  std::vector<acc_t> g2(fh * fw);
  const acc_t* fp = f.const_data_ptr<acc_t>();
  for (int64_t a = 0; a < fh; ++a) {
    for (int64_t b = 0; b < fw; ++b) {
      const int64_t src = separable ? (flip ? b : fw - 1 - b)
                                    : (flip ? a * fw + b : (fh - 1 - a) * fw + (fw - 1 - b));
      g2[a * fw + b] = separable ? fp[src] : fp[src] * acc_t(gain);
    }
  }
  Taps<acc_t> xt, yt;
  std::vector<acc_t> xrow_w;  // 2-D: the row tables' weights, one block per filter row
  std::vector<acc_t> gx, gy;
  if (separable) {
    gx.assign(g2.begin(), g2.begin() + fw);
    for (auto& v : gx) v *= acc_t(gain);
    gy.assign(g2.begin(), g2.begin() + fw);
  } else {
    separable = rank_one(g2, fh, fw, gy, gx);
  }
  if (separable) {
    xt = make_taps(gx.data(), fw, g.W, g.OW, upx, downx, px0);
    yt = make_taps(gy.data(), fh, g.H, g.OH, upy, downy, py0);
  } else {
    std::vector<acc_t> index(fh);
    for (int64_t a = 0; a < fh; ++a) index[a] = acc_t(1);
    yt = make_taps(index.data(), fh, g.H, g.OH, upy, downy, py0);
    for (int64_t a = 0; a < fh; ++a) {
      Taps<acc_t> r = make_taps(g2.data() + a * fw, fw, g.W, g.OW, upx, downx, px0);
      if (a == 0) xt = r;
      xrow_w.insert(xrow_w.end(), r.w.begin(), r.w.end());
    }
  }
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();
  FlatRows<acc_t> fr;
  if (!channels_last && separable &&
      make_flat_rows(gx.data(), fw, g.H, g.W, g.OW, upx, downx, px0, fr)) {
    const int64_t plane_in = g.H * g.W, plane_out = g.OH * g.OW;
    at::parallel_for(0, N * C, 1, [&](int64_t p0, int64_t p1) {
      // Zeroed once: the margins stay zero, only the rows' interiors are rewritten.
      std::vector<acc_t> buf(g.H * fr.Wp, acc_t(0)), mid(g.H * fr.S);
      for (int64_t p = p0; p < p1; ++p) {
        plane_nchw_flat(xp + p * plane_in, yp + p * plane_out, g, fr, yt, buf, mid);
      }
    });
    return;
  }
  if (!channels_last) {
    const int64_t plane_in = g.H * g.W, plane_out = g.OH * g.OW;
    at::parallel_for(0, N * C, 1, [&](int64_t p0, int64_t p1) {
      std::vector<acc_t> mid(separable ? g.H * g.OW : 0), acc(g.OW);
      for (int64_t p = p0; p < p1; ++p) {
        plane_nchw(xp + p * plane_in, yp + p * plane_out, g, separable, xt, xrow_w, yt, mid, acc);
      }
    });
    return;
  }
  const int64_t cb = std::min(C, kChannelBlock), blocks = (C + cb - 1) / cb;
  at::parallel_for(0, N * blocks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<acc_t> mid(separable ? g.H * g.OW * cb : 0), acc(g.OW * cb);
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t n = task / blocks, c0 = (task % blocks) * cb;
      block_nhwc(xp + n * g.H * g.W * C, yp + n * g.OH * g.OW * C, g, c0,
                 std::min(cb, C - c0), separable, xt, xrow_w, yt, mid, acc);
    }
  });
}

}  // namespace

at::Tensor upfirdn2d_forward_cpu(at::Tensor x, at::Tensor f, int64_t upx, int64_t upy,
                                 int64_t downx, int64_t downy, int64_t px0, int64_t px1,
                                 int64_t py0, int64_t py1, bool flip, double gain) {
  TORCH_CHECK(x.device().is_cpu() && f.device().is_cpu(), kFn, ": x and f must be on the CPU");
  TORCH_CHECK(x.dim() == 4, kFn, ": x must be 4-D (N, C, H, W), got ", x.dim(), " dims");
  const bool contiguous = x.is_contiguous();
  const bool channels_last = !contiguous && x.is_contiguous(at::MemoryFormat::ChannelsLast);
  TORCH_CHECK(contiguous || channels_last, kFn, ": x must be contiguous or channels_last");
  TORCH_CHECK((f.dim() == 1 || f.dim() == 2) && f.numel() > 0 && f.is_contiguous(), kFn,
              ": f must be a contiguous non-empty 1-D or 2-D tensor");
  const auto acc_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(f.scalar_type() == acc_type, kFn, ": f must be ", acc_type, " for ",
              x.scalar_type(), " x, got ", f.scalar_type());
  TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, kFn,
              ": up and down factors must be >= 1");
  const int64_t fh = f.size(0), fw = f.dim() == 1 ? f.size(0) : f.size(1);
  const int64_t OH = floor_div(x.size(2) * upy + py0 + py1 - fh, downy) + 1;
  const int64_t OW = floor_div(x.size(3) * upx + px0 + px1 - fw, downx) + 1;
  TORCH_CHECK(OH >= 1 && OW >= 1, kFn, ": the padding leaves no output (", OH, "x", OW, ")");
  at::Tensor y = at::empty({x.size(0), x.size(1), OH, OW}, x.options(),
                           channels_last ? at::MemoryFormat::ChannelsLast
                                         : at::MemoryFormat::Contiguous);
  if (y.numel() == 0) return y;
  if (x.numel() == 0) return y.zero_();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "upfirdn2d_forward_cpu", [&] {
                                    forward_impl<scalar_t>(x, f, y, upx, upy, downx, downy, px0,
                                                           py0, flip, gain, channels_last);
                                  });
  return y;
}

}  // namespace gankernels
