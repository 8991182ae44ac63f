// Box geometry shared by the GPSNet detection layers (anchor targets, proposals, the test
// nets' detection output). Every function here is the one implementation used by both the
// CPU (.cpp) and the CUDA (.cu) code of those layers; the NumPy reference is
// python/gpsnet/detection/boxes.py, and the conventions are the same:
//
//   * boxes are (x1, y1, x2, y2) in continuous coordinates, width = x2 - x1 (no "+ 1");
//   * the regression deltas are R-CNN's (dx, dy, dw, dh), with dw and dh clipped at
//     log(1000 / 16) when decoding (Detectron's BBOX_XFORM_CLIP);
//   * an IoU is 0 where the union is empty.
#ifndef CAFFE_UTIL_BBOX_UTIL_HPP_
#define CAFFE_UTIL_BBOX_UTIL_HPP_

#include <cmath>
#include <vector>

#include "caffe/util/host_device.hpp"

namespace caffe {
namespace bbox_util {

// Largest log-scale change that BoxDecode applies: log(1000 / 16) (boxes.BBOX_XFORM_CLIP).
const double kBBoxXformClip = 4.1351665567423561;
// Smallest width/height used as a denominator by BoxEncode (boxes.bbox_transform).
const double kMinEncodeSize = 1e-6;
// Smallest union that BoxIoU divides by (boxes.bbox_overlaps).
const double kMinUnion = 1e-12;
// Net coordinate - image coordinate (gpsnet.geometry.NET_OFFSET): BoxClip's offset.
const double kNetOffset = -0.5;

// Area of (x1, y1, x2, y2); 0 for a degenerate box.
template <typename Dtype>
GPSNET_HOST_DEVICE inline Dtype BoxArea(const Dtype* b) {
  const Dtype w = b[2] - b[0];
  const Dtype h = b[3] - b[1];
  return (w > Dtype(0) && h > Dtype(0)) ? w * h : Dtype(0);
}

// Whether some coordinate of (x1, y1, x2, y2) is NaN.
template <typename Dtype>
GPSNET_HOST_DEVICE inline bool BoxHasNaN(const Dtype* b) {
  return b[0] != b[0] || b[1] != b[1] || b[2] != b[2] || b[3] != b[3];
}

// Length of the overlap of [a_lo, a_hi] and [b_lo, b_hi]; negative where they are apart.
template <typename Dtype>
GPSNET_HOST_DEVICE inline Dtype OverlapExtent(Dtype a_lo, Dtype a_hi, Dtype b_lo, Dtype b_hi) {
  return (a_hi < b_hi ? a_hi : b_hi) - (a_lo > b_lo ? a_lo : b_lo);
}

// IoU of two boxes from their overlap extents iw, ih (OverlapExtent) and their areas
// (BoxArea): 0 where the union is empty or not a number. Written without early returns, so that
// a loop over boxes held as columns vectorises.
template <typename Dtype>
GPSNET_HOST_DEVICE inline Dtype IoUOfExtents(Dtype iw, Dtype ih, Dtype area_a, Dtype area_b) {
  const Dtype inter = (iw > Dtype(0) && ih > Dtype(0)) ? iw * ih : Dtype(0);
  const Dtype uni = area_a + area_b - inter;
  const Dtype den = uni > Dtype(kMinUnion) ? uni : Dtype(kMinUnion);
  return uni > Dtype(0) ? inter / den : Dtype(0);
}

// Intersection over union of two boxes; 0 where the union is empty or not a number (as
// boxes.bbox_overlaps and boxes.nms, whose NaN union fails `union > 0`): a box with a NaN
// coordinate overlaps nothing.
//
// Its arithmetic is IoUOfExtents on the boxes' overlap extents and areas: code that holds boxes
// as columns (AnchorTarget's IoU loop) calls that directly and gets the same values, bit for bit.
template <typename Dtype>
GPSNET_HOST_DEVICE inline Dtype BoxIoU(const Dtype* a, const Dtype* b) {
  if (BoxHasNaN(a) || BoxHasNaN(b)) return Dtype(0);
  return IoUOfExtents(OverlapExtent(a[0], a[2], b[0], b[2]), OverlapExtent(a[1], a[3], b[1], b[3]),
                      BoxArea(a), BoxArea(b));
}

// Regression targets (dx, dy, dw, dh) that map box `ex` onto box `gt` (boxes.bbox_transform).
template <typename Dtype>
GPSNET_HOST_DEVICE inline void BoxEncode(const Dtype* ex, const Dtype* gt, Dtype* delta) {
  const Dtype lo = Dtype(kMinEncodeSize);
  Dtype ex_w = ex[2] - ex[0];
  Dtype ex_h = ex[3] - ex[1];
  Dtype gt_w = gt[2] - gt[0];
  Dtype gt_h = gt[3] - gt[1];
  ex_w = ex_w > lo ? ex_w : lo;
  ex_h = ex_h > lo ? ex_h : lo;
  gt_w = gt_w > lo ? gt_w : lo;
  gt_h = gt_h > lo ? gt_h : lo;
  const Dtype ex_cx = ex[0] + Dtype(0.5) * ex_w;
  const Dtype ex_cy = ex[1] + Dtype(0.5) * ex_h;
  const Dtype gt_cx = gt[0] + Dtype(0.5) * gt_w;
  const Dtype gt_cy = gt[1] + Dtype(0.5) * gt_h;
  delta[0] = (gt_cx - ex_cx) / ex_w;
  delta[1] = (gt_cy - ex_cy) / ex_h;
  delta[2] = log(gt_w / ex_w);
  delta[3] = log(gt_h / ex_h);
}

// The box that deltas (dx, dy, dw, dh) make of `box` (boxes.bbox_transform_inv); dw and dh
// are clipped at kBBoxXformClip. A NaN delta stays NaN (np.minimum), so its box is NaN.
// `out` may alias neither input.
template <typename Dtype>
GPSNET_HOST_DEVICE inline void BoxDecode(const Dtype* box, const Dtype* delta, Dtype* out) {
  const Dtype w = box[2] - box[0];
  const Dtype h = box[3] - box[1];
  const Dtype cx = box[0] + Dtype(0.5) * w;
  const Dtype cy = box[1] + Dtype(0.5) * h;
  const Dtype clip = Dtype(kBBoxXformClip);
  const Dtype dw = delta[2] > clip ? clip : delta[2];
  const Dtype dh = delta[3] > clip ? clip : delta[3];
  const Dtype pcx = delta[0] * w + cx;
  const Dtype pcy = delta[1] * h + cy;
  const Dtype pw = exp(dw) * w;
  const Dtype ph = exp(dh) * h;
  out[0] = pcx - Dtype(0.5) * pw;
  out[1] = pcy - Dtype(0.5) * ph;
  out[2] = pcx + Dtype(0.5) * pw;
  out[3] = pcy + Dtype(0.5) * ph;
}

// Clips a box in net coordinates to the image [0, width] x [0, height] given in image
// coordinates (boxes.clip_boxes): every coordinate into [offset, size + offset], where
// offset is gpsnet.geometry.NET_OFFSET (-0.5). A NaN coordinate stays NaN.
template <typename Dtype>
GPSNET_HOST_DEVICE inline void BoxClip(Dtype* box, const Dtype height, const Dtype width,
                                       const Dtype offset) {
  const Dtype hi[4] = {width + offset, height + offset, width + offset, height + offset};
  for (int i = 0; i < 4; ++i) {
    if (box[i] < offset) box[i] = offset;
    if (box[i] > hi[i]) box[i] = hi[i];
  }
}

// Whether both sides of a box are at least min_size (boxes.filter_small_boxes); false for a
// box with a NaN coordinate.
template <typename Dtype>
GPSNET_HOST_DEVICE inline bool BoxAtLeast(const Dtype* b, const Dtype min_size) {
  return b[2] - b[0] >= min_size && b[3] - b[1] >= min_size;
}

// The A = ratios x sizes anchors (x1, y1, x2, y2) centred on the origin, ratio-major, each of
// area size^2 and h / w = ratio (anchors.base_anchors); `anchors` gets 4 A values.
inline void BaseAnchors(const std::vector<double>& sizes, const std::vector<double>& ratios,
                        std::vector<double>* anchors) {
  anchors->clear();
  for (size_t r = 0; r < ratios.size(); ++r) {
    for (size_t s = 0; s < sizes.size(); ++s) {
      const double w = sizes[s] / std::sqrt(ratios[r]);
      const double h = sizes[s] * std::sqrt(ratios[r]);
      anchors->push_back(-0.5 * w);
      anchors->push_back(-0.5 * h);
      anchors->push_back(0.5 * w);
      anchors->push_back(0.5 * h);
    }
  }
}

// The anchors' sizes and ratios (h / w) when a layer's parameters give none (py-faster-rcnn's;
// AnchorTarget and Proposal alike).
const double kDefaultAnchorSizes[] = {16, 32, 64, 128, 256, 512};
const double kDefaultAnchorRatios[] = {1, 2, 3};
const int kNumDefaultAnchorSizes = 6;
const int kNumDefaultAnchorRatios = 3;

// Anchor `a` (of the A base anchors) at feature cell (y, x) of a stride-`stride` map
// (anchors.shifted_anchors): the base anchor shifted by (stride x, stride y).
inline void ShiftedAnchor(const double* base, const int a, const int y, const int x,
                          const double stride, double* out) {
  const double cx = x * stride, cy = y * stride;
  out[0] = base[4 * a] + cx;
  out[1] = base[4 * a + 1] + cy;
  out[2] = base[4 * a + 2] + cx;
  out[3] = base[4 * a + 3] + cy;
}

}  // namespace bbox_util
}  // namespace caffe

#endif  // CAFFE_UTIL_BBOX_UTIL_HPP_
