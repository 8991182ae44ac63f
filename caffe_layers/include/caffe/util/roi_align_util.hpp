// Shared geometry and sampling for the GPSNet RoI layers (RoIAlign, AdjustedRoIAlign,
// AdjustBack, FaceMajoritySelect). Every function here is the one implementation used by
// both the CPU (.cpp) and the CUDA (.cu) code of those layers.
//
// Coordinates: RoIs are (batch_index, x1, y1, x2, y2) in input-image coordinates. RoIAlign
// follows Detectron / torchvision exactly (average of bilinear samples, adaptive sampling
// ratio, optional half-pixel offset, same out-of-range rules).
#ifndef CAFFE_UTIL_ROI_ALIGN_UTIL_HPP_
#define CAFFE_UTIL_ROI_ALIGN_UTIL_HPP_

#include <cmath>

#include "caffe/util/host_device.hpp"

namespace caffe {
namespace roi_util {

// At most this many adaptive samples per bin and axis (sampling_ratio <= 0): torchvision's
// ceil(roi_size / pooled_size) without a bound makes a huge RoI (1e5 image pixels) take
// minutes. Bins up to kMaxAdaptiveGrid feature pixels match torchvision exactly; larger bins
// average kMaxAdaptiveGrid x kMaxAdaptiveGrid evenly spaced samples.
const int kMaxAdaptiveGrid = 64;

// True for a finite value (false for +-inf and NaN); usable in host and device code.
template <typename Dtype>
GPSNET_HOST_DEVICE inline bool is_finite(const Dtype x) {
  return x - x == Dtype(0);
}

// True when the four coordinates (x1, y1, x2, y2) of box are finite.
template <typename Dtype>
GPSNET_HOST_DEVICE inline bool box_is_finite(const Dtype* box) {
  return is_finite(box[0]) && is_finite(box[1]) && is_finite(box[2]) && is_finite(box[3]);
}

// Adaptive samples along one axis of a bin of `extent` feature pixels: ceil(extent), at
// least 0 and at most kMaxAdaptiveGrid (computed in floating point, so that a huge or
// non-finite extent never overflows the int conversion).
template <typename Dtype>
GPSNET_HOST_DEVICE inline int adaptive_grid(const Dtype extent) {
  if (!(extent > Dtype(0))) return 0;  // also NaN
  if (!(extent < Dtype(kMaxAdaptiveGrid))) return kMaxAdaptiveGrid;
  return static_cast<int>(ceil(extent));
}

// The four taps of a bilinear sample at (y, x) of an height x width map.
template <typename Dtype>
struct BilinearTaps {
  int y_low, y_high, x_low, x_high;
  Dtype w_ll, w_lh, w_hl, w_hh;  // weights of (y_low,x_low) (y_low,x_high) (y_high,x_low) (y_high,x_high)
};

// Bilinear weights with torchvision's rules: a sample with y < -1, y > height, x < -1 or
// x > width lies outside (returns false, contributes nothing); otherwise the position is
// clamped to [0, height - 1] x [0, width - 1]. A NaN position lies outside too (the
// comparisons are written so that NaN fails them: never a NaN-to-int index).
template <typename Dtype>
GPSNET_HOST_DEVICE inline bool bilinear_taps(const int height, const int width,
    Dtype y, Dtype x, BilinearTaps<Dtype>* t) {
  if (!(y >= Dtype(-1) && y <= Dtype(height) && x >= Dtype(-1) && x <= Dtype(width))) {
    return false;
  }
  if (y <= Dtype(0)) y = Dtype(0);
  if (x <= Dtype(0)) x = Dtype(0);
  t->y_low = static_cast<int>(y);
  t->x_low = static_cast<int>(x);
  if (t->y_low >= height - 1) {
    t->y_low = t->y_high = height - 1;
    y = static_cast<Dtype>(t->y_low);
  } else {
    t->y_high = t->y_low + 1;
  }
  if (t->x_low >= width - 1) {
    t->x_low = t->x_high = width - 1;
    x = static_cast<Dtype>(t->x_low);
  } else {
    t->x_high = t->x_low + 1;
  }
  const Dtype ly = y - t->y_low, lx = x - t->x_low;
  const Dtype hy = Dtype(1) - ly, hx = Dtype(1) - lx;
  t->w_ll = hy * hx;
  t->w_lh = hy * lx;
  t->w_hl = ly * hx;
  t->w_hh = ly * lx;
  return true;
}

// The value of a sample's taps on a map of the given width.
template <typename Dtype>
GPSNET_HOST_DEVICE inline Dtype tap_sum(const Dtype* data, const int width,
    const BilinearTaps<Dtype>& t) {
  return t.w_ll * data[t.y_low * width + t.x_low] + t.w_lh * data[t.y_low * width + t.x_high]
       + t.w_hl * data[t.y_high * width + t.x_low] + t.w_hh * data[t.y_high * width + t.x_high];
}

// Scatters g times a sample's tap weights into diff with `add(value, address)` (plain += on
// the CPU, an atomic add on the GPU).
template <typename Dtype, typename Adder>
GPSNET_HOST_DEVICE inline void tap_scatter(Dtype* diff, const int width,
    const BilinearTaps<Dtype>& t, const Dtype g, Adder add) {
  add(g * t.w_ll, diff + t.y_low * width + t.x_low);
  add(g * t.w_lh, diff + t.y_low * width + t.x_high);
  add(g * t.w_hl, diff + t.y_high * width + t.x_low);
  add(g * t.w_hh, diff + t.y_high * width + t.x_high);
}

// Bilinear sample of one height x width map; `outside` where bilinear_taps says outside.
template <typename Dtype>
GPSNET_HOST_DEVICE inline Dtype bilinear_sample(const Dtype* data, const int height,
    const int width, const Dtype y, const Dtype x, const Dtype outside) {
  BilinearTaps<Dtype> t;
  if (!bilinear_taps(height, width, y, x, &t)) return outside;
  return tap_sum(data, width, t);
}

// Scatters g times the bilinear weights of (y, x) into diff (tap_scatter); nothing outside.
template <typename Dtype, typename Adder>
GPSNET_HOST_DEVICE inline void bilinear_scatter(Dtype* diff, const int height, const int width,
    const Dtype y, const Dtype x, const Dtype g, Adder add) {
  BilinearTaps<Dtype> t;
  if (!bilinear_taps(height, width, y, x, &t)) return;
  tap_scatter(diff, width, t, g, add);
}

struct HostAdder {
  template <typename Dtype>
  inline void operator()(const Dtype v, Dtype* address) const { *address += v; }
};

#ifdef __CUDACC__
// Atomic add for GPU scatters (include caffe/util/gpu_util.cuh before this header).
struct AtomicAdder {
  template <typename Dtype>
  __host__ __device__ inline void operator()(const Dtype v, Dtype* address) const {
#ifdef __CUDA_ARCH__
    caffe_gpu_atomic_add(v, address);
#else
    *address += v;
#endif
  }
};
#endif

// Sampling grid of one RoI on the feature map (torchvision's roi_align).
template <typename Dtype>
struct RoIGrid {
  Dtype start_h, start_w;  // feature coordinates of the RoI's top-left corner
  Dtype bin_h, bin_w;      // bin size in feature pixels
  int grid_h, grid_w;      // samples per bin and axis
  Dtype count;             // max(grid_h * grid_w, 1)
};

// box = (x1, y1, x2, y2) in image coordinates.
template <typename Dtype>
GPSNET_HOST_DEVICE inline RoIGrid<Dtype> roi_grid(const Dtype* box, const Dtype spatial_scale,
    const int pooled_h, const int pooled_w, const int sampling_ratio, const bool aligned) {
  RoIGrid<Dtype> g;
  const Dtype offset = aligned ? Dtype(0.5) : Dtype(0);
  g.start_w = box[0] * spatial_scale - offset;
  g.start_h = box[1] * spatial_scale - offset;
  Dtype roi_w = box[2] * spatial_scale - offset - g.start_w;
  Dtype roi_h = box[3] * spatial_scale - offset - g.start_h;
  if (!aligned) {  // legacy Detectron: force malformed RoIs to 1 x 1
    roi_w = roi_w > Dtype(1) ? roi_w : Dtype(1);
    roi_h = roi_h > Dtype(1) ? roi_h : Dtype(1);
  }
  g.bin_h = roi_h / static_cast<Dtype>(pooled_h);
  g.bin_w = roi_w / static_cast<Dtype>(pooled_w);
  g.grid_h = sampling_ratio > 0 ? sampling_ratio : adaptive_grid(g.bin_h);
  g.grid_w = sampling_ratio > 0 ? sampling_ratio : adaptive_grid(g.bin_w);
  const int n = g.grid_h * g.grid_w;
  g.count = static_cast<Dtype>(n > 1 ? n : 1);
  return g;
}

// y coordinate (feature pixels) of sample iy of bin ph; same for x.
template <typename Dtype>
GPSNET_HOST_DEVICE inline Dtype sample_y(const RoIGrid<Dtype>& g, const int ph, const int iy) {
  return g.start_h + ph * g.bin_h + (iy + Dtype(0.5)) * g.bin_h / static_cast<Dtype>(g.grid_h);
}
template <typename Dtype>
GPSNET_HOST_DEVICE inline Dtype sample_x(const RoIGrid<Dtype>& g, const int pw, const int ix) {
  return g.start_w + pw * g.bin_w + (ix + Dtype(0.5)) * g.bin_w / static_cast<Dtype>(g.grid_w);
}

// Output of bin (ph, pw): the average of its bilinear samples on one channel.
template <typename Dtype>
GPSNET_HOST_DEVICE inline Dtype roi_align_bin(const Dtype* channel, const int height,
    const int width, const RoIGrid<Dtype>& g, const int ph, const int pw) {
  Dtype sum = 0;
  for (int iy = 0; iy < g.grid_h; ++iy) {
    const Dtype y = sample_y(g, ph, iy);
    for (int ix = 0; ix < g.grid_w; ++ix) {
      sum += bilinear_sample(channel, height, width, y, sample_x(g, pw, ix), Dtype(0));
    }
  }
  return sum / g.count;
}

// Gradient of roi_align_bin: scatters top_diff / count to every sample's taps.
template <typename Dtype, typename Adder>
GPSNET_HOST_DEVICE inline void roi_align_bin_backward(Dtype* channel_diff, const int height,
    const int width, const RoIGrid<Dtype>& g, const int ph, const int pw, const Dtype top_diff,
    Adder add) {
  const Dtype gr = top_diff / g.count;
  for (int iy = 0; iy < g.grid_h; ++iy) {
    const Dtype y = sample_y(g, ph, iy);
    for (int ix = 0; ix < g.grid_w; ++ix) {
      bilinear_scatter(channel_diff, height, width, y, sample_x(g, pw, ix), gr, add);
    }
  }
}

// The CPU layers' loops compute the taps of a bin's samples once for all the channels
// (roi_align_bin recomputes them for each channel, as the GPU's one thread per output does).
// A sample outside the map has valid = false and adds nothing, as in roi_align_bin.
template <typename Dtype>
struct SampleTaps {
  BilinearTaps<Dtype> t;
  bool valid;
};

// Samples of a tap table (a bin with more, of a large fixed sampling_ratio, is a table alone).
const int kTapTable = 4 * kMaxAdaptiveGrid * kMaxAdaptiveGrid;

// Bins of grid g whose taps one table holds: those that fit in kTapTable samples, at least one.
template <typename Dtype>
inline int bins_per_table(const RoIGrid<Dtype>& g) {
  const int per_bin = g.grid_h * g.grid_w;
  if (per_bin <= 0) return kTapTable;  // bins without samples: nothing to hold
  return per_bin < kTapTable ? kTapTable / per_bin : 1;
}

// The taps of bins [first, last) of grid g (bin b = ph * pooled_w + pw), grid_h * grid_w
// samples per bin in roi_align_bin's order, into out.
template <typename Dtype>
inline void bin_taps(const int height, const int width, const RoIGrid<Dtype>& g,
    const int pooled_w, const int first, const int last, SampleTaps<Dtype>* out) {
  for (int b = first; b < last; ++b) {
    const int ph = b / pooled_w, pw = b % pooled_w;
    for (int iy = 0; iy < g.grid_h; ++iy) {
      const Dtype y = sample_y(g, ph, iy);
      for (int ix = 0; ix < g.grid_w; ++ix, ++out) {
        out->valid = bilinear_taps(height, width, y, sample_x(g, pw, ix), &out->t);
      }
    }
  }
}

// roi_align_bin on one channel from the bin's `samples` precomputed taps s.
template <typename Dtype>
inline Dtype roi_align_bin_taps(const Dtype* channel, const int width,
    const SampleTaps<Dtype>* s, const int samples, const Dtype count) {
  Dtype sum = 0;
  for (int i = 0; i < samples; ++i) {
    if (s[i].valid) sum += tap_sum(channel, width, s[i].t);
  }
  return sum / count;
}

// roi_align_bin_backward on one channel from the bin's precomputed taps s.
template <typename Dtype, typename Adder>
inline void roi_align_bin_taps_backward(Dtype* channel_diff, const int width,
    const SampleTaps<Dtype>* s, const int samples, const Dtype top_diff, const Dtype count,
    Adder add) {
  const Dtype gr = top_diff / count;
  for (int i = 0; i < samples; ++i) {
    if (s[i].valid) tap_scatter(channel_diff, width, s[i].t, gr, add);
  }
}

// The face adjustment (only ever enlarges): pads roi = (x1, y1, x2, y2) so that the face
// centre (cx, cy) lands at the relative position (fx, fy) of the result, fx, fy in (0, 1):
//   W = max((cx - x1) / fx, (x2 - cx) / (1 - fx)),  X1 = cx - fx * W,  X2 = X1 + W
// and the same for y. out may alias roi.
template <typename Dtype>
GPSNET_HOST_DEVICE inline void adjust_roi(const Dtype* roi, const Dtype cx, const Dtype cy,
    const Dtype fx, const Dtype fy, Dtype* out) {
  const Dtype x1 = roi[0], y1 = roi[1], x2 = roi[2], y2 = roi[3];
  const Dtype wa = (cx - x1) / fx, wb = (x2 - cx) / (Dtype(1) - fx);
  const Dtype ha = (cy - y1) / fy, hb = (y2 - cy) / (Dtype(1) - fy);
  const Dtype w = wa > wb ? wa : wb;
  const Dtype h = ha > hb ? ha : hb;
  out[0] = cx - fx * w;
  out[1] = cy - fy * h;
  out[2] = out[0] + w;
  out[3] = out[1] + h;
}

// Adjusted RoI of one person: roi5 = (b, x1, y1, x2, y2), face6 = (b, x1, y1, x2, y2, valid).
// Without a valid face the RoI is copied unchanged.
template <typename Dtype>
GPSNET_HOST_DEVICE inline void adjusted_roi5(const Dtype* roi5, const Dtype* face6,
    const Dtype fx, const Dtype fy, Dtype* out5) {
  out5[0] = roi5[0];
  if (face6[5] != Dtype(0)) {
    const Dtype cx = Dtype(0.5) * (face6[1] + face6[3]);
    const Dtype cy = Dtype(0.5) * (face6[2] + face6[4]);
    adjust_roi(roi5 + 1, cx, cy, fx, fy, out5 + 1);
  } else {
    for (int k = 1; k < 5; ++k) out5[k] = roi5[k];
  }
}

// Position in the adjusted map (of size map_h x map_w, pixel centres at i + 0.5 of the
// adjusted box's P bins) of the centre of output pixel (i, j) of the original box.
// Returns false when the adjusted box is empty or either box has a non-finite coordinate
// (every output pixel is then outside).
template <typename Dtype>
GPSNET_HOST_DEVICE inline bool adjust_back_position(const Dtype* adj5, const Dtype* orig5,
    const int out_h, const int out_w, const int map_h, const int map_w, const int i,
    const int j, Dtype* v, Dtype* u) {
  if (!box_is_finite(adj5 + 1) || !box_is_finite(orig5 + 1)) return false;
  const Dtype aw = adj5[3] - adj5[1], ah = adj5[4] - adj5[2];
  if (!(aw > Dtype(0)) || !(ah > Dtype(0))) return false;
  const Dtype ow = orig5[3] - orig5[1], oh = orig5[4] - orig5[2];
  const Dtype x = orig5[1] + (j + Dtype(0.5)) * ow / static_cast<Dtype>(out_w);
  const Dtype y = orig5[2] + (i + Dtype(0.5)) * oh / static_cast<Dtype>(out_h);
  *u = (x - adj5[1]) / aw * static_cast<Dtype>(map_w) - Dtype(0.5);
  *v = (y - adj5[2]) / ah * static_cast<Dtype>(map_h) - Dtype(0.5);
  return true;
}

// The major face of one person RoI: among the faces of the same image whose centre lies
// inside the RoI (borders included) and whose area inside the RoI is at least
// min_overlap * face area, the one with the largest area inside the RoI; ties: the lowest
// face index. With scores (NULL: none), a face scoring below score_threshold never beats one
// at or above it (the high-score faces rank first, then the area inside). Writes
// (b, x1, y1, x2, y2, valid) into out6; no face: (b, 0, 0, 0, 0, 0).
template <typename Dtype>
GPSNET_HOST_DEVICE inline void select_major_face(const Dtype* roi5, const Dtype* faces,
    const Dtype* scores, const int num_faces, const Dtype min_overlap,
    const Dtype score_threshold, Dtype* out6) {
  int best = -1;
  bool best_high = false;
  Dtype best_area = Dtype(0);
  for (int f = 0; f < num_faces; ++f) {
    const Dtype* face = faces + 5 * f;
    if (face[0] != roi5[0]) continue;
    const Dtype cx = Dtype(0.5) * (face[1] + face[3]);
    const Dtype cy = Dtype(0.5) * (face[2] + face[4]);
    if (cx < roi5[1] || cx > roi5[3] || cy < roi5[2] || cy > roi5[4]) continue;
    const Dtype iw = (face[3] < roi5[3] ? face[3] : roi5[3]) - (face[1] > roi5[1] ? face[1] : roi5[1]);
    const Dtype ih = (face[4] < roi5[4] ? face[4] : roi5[4]) - (face[2] > roi5[2] ? face[2] : roi5[2]);
    const Dtype inter = (iw > Dtype(0) && ih > Dtype(0)) ? iw * ih : Dtype(0);
    const Dtype area = (face[3] - face[1]) * (face[4] - face[2]);
    if (inter < min_overlap * area) continue;
    const bool high = scores == NULL || scores[f] >= score_threshold;
    if (best < 0 || (high && !best_high) || (high == best_high && inter > best_area)) {
      best = f;
      best_high = high;
      best_area = inter;
    }
  }
  out6[0] = roi5[0];
  if (best >= 0) {
    for (int k = 1; k < 5; ++k) out6[k] = faces[5 * best + k];
    out6[5] = Dtype(1);
  } else {
    for (int k = 1; k < 6; ++k) out6[k] = Dtype(0);
  }
}

}  // namespace roi_util
}  // namespace caffe

#endif  // CAFFE_UTIL_ROI_ALIGN_UTIL_HPP_
