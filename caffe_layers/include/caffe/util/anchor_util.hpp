// RPN anchors, the one implementation of python/gpsnet/detection/anchors.py in C++ (used by
// the AnchorTarget layer; host and device).
//
// Anchor a of feature cell (y, x) is centred on input pixel (stride * y, stride * x); its area
// is size^2 and ratio = h / w. Base anchors are ratio-major (for r in ratios: for s in sizes);
// anchor order on a feature map is (y, x, a), a fastest. Computed in double, as NumPy does.
#ifndef CAFFE_UTIL_ANCHOR_UTIL_HPP_
#define CAFFE_UTIL_ANCHOR_UTIL_HPP_

#include <cmath>
#include <vector>

#include "caffe/util/bbox_util.hpp"  // GPSNET_HOST_DEVICE

namespace caffe {
namespace anchor_util {

// A x 4 base anchors (x1, y1, x2, y2) centred on the origin, A = sizes x ratios, ratio-major
// (anchors.base_anchors).
inline std::vector<double> BaseAnchors(const std::vector<double>& sizes,
                                       const std::vector<double>& ratios) {
  std::vector<double> out;
  out.reserve(4 * sizes.size() * ratios.size());
  for (size_t r = 0; r < ratios.size(); ++r) {
    for (size_t s = 0; s < sizes.size(); ++s) {
      const double w = sizes[s] / std::sqrt(ratios[r]);
      const double h = sizes[s] * std::sqrt(ratios[r]);
      out.push_back(-0.5 * w);
      out.push_back(-0.5 * h);
      out.push_back(0.5 * w);
      out.push_back(0.5 * h);
    }
  }
  return out;
}

// The base anchor `base` (4 values) moved to feature cell (y, x) (anchors.shifted_anchors).
GPSNET_HOST_DEVICE inline void ShiftedAnchor(const double* base, const int y, const int x,
                                             const int feat_stride, double* out) {
  const double cx = static_cast<double>(x) * static_cast<double>(feat_stride);
  const double cy = static_cast<double>(y) * static_cast<double>(feat_stride);
  out[0] = cx + base[0];
  out[1] = cy + base[1];
  out[2] = cx + base[2];
  out[3] = cy + base[3];
}

}  // namespace anchor_util
}  // namespace caffe

#endif  // CAFFE_UTIL_ANCHOR_UTIL_HPP_
