// Non-maximum suppression of the GPSNet detection layers (Proposal, DetectionOutput): one
// implementation per device, the rule of python/gpsnet/detection/boxes.py `nms`:
//
//   * boxes are visited by decreasing score, equal scores in index order, NaN scores last
//     (np.argsort(-scores, kind="stable"));
//   * a visited box that no kept box suppresses is kept; it suppresses every later box whose
//     IoU with it (bbox_util::BoxIoU: 0 for an empty union or a NaN coordinate) is strictly
//     greater than thresh;
//   * both devices stop as soon as max_keep boxes are kept (max_keep <= 0: no limit), which
//     gives the first max_keep boxes of the full NMS.
//
// NmsSortedCpu is the greedy loop; NmsSortedGpu computes the classic IoU bitmask on the GPU
// (one 64-bit word per box and block of 64 later boxes) and scans it on the host.
#ifndef CAFFE_UTIL_NMS_HPP_
#define CAFFE_UTIL_NMS_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/common.hpp"

namespace caffe {

// The indices of n scores by decreasing score, ties in index order, NaN last; only the first
// top_n when 0 < top_n < n.
template <typename T>
void NmsOrderByScore(const int n, const T* scores, const int top_n, std::vector<int>* order);

// Greedy NMS of n boxes (n x 4: x1, y1, x2, y2) already in visiting order (by decreasing
// score): `keep` gets the kept positions, increasing, at most max_keep of them (<= 0: all).
template <typename T>
void NmsSortedCpu(const int n, const T* boxes, const T thresh, const int max_keep,
                  std::vector<int>* keep);

// The GPU NMS's work buffers, kept by a layer from call to call and grown to the largest n seen:
// the IoU mask on the device, and the host buffer its n rows are copied into (pinned where Caffe
// runs on the GPU; its data never goes back to the device, so nothing else is copied).
struct NmsBuffers {
  Blob<unsigned int> device;
  Blob<unsigned int> host;
};

#ifndef CPU_ONLY
// The same on the GPU: `gpu_boxes` on the device.
template <typename T>
void NmsSortedGpu(const int n, const T* gpu_boxes, const T thresh, const int max_keep,
                  NmsBuffers* buffers, std::vector<int>* keep);
#endif

// NMS of the first n rows of `boxes` (n x 4, in visiting order) on the GPU when `gpu`, else on
// the CPU.
template <typename T>
inline void NmsSorted(const Blob<T>& boxes, const int n, const T thresh, const int max_keep,
                      const bool gpu, NmsBuffers* buffers, std::vector<int>* keep) {
  keep->clear();
  if (n == 0) return;
  CHECK_GE(boxes.count(), 4 * n) << "NmsSorted: " << n << " boxes but a blob of "
                                 << boxes.shape_string();
  if (gpu) {
#ifndef CPU_ONLY
    NmsSortedGpu(n, boxes.gpu_data(), thresh, max_keep, buffers, keep);
    return;
#else
    NO_GPU;
#endif
  }
  NmsSortedCpu(n, boxes.cpu_data(), thresh, max_keep, keep);
}

// NMS of the boxes order[0], order[1], ... of `boxes` (4 values each), visited in that order
// (NmsOrderByScore's): `keep` gets the kept positions in `order`. `sorted` receives the ordered
// boxes (the GPU reads them there).
template <typename T>
inline void NmsInOrder(const T* boxes, const std::vector<int>& order, const T thresh,
                       const int max_keep, const bool gpu, Blob<T>* sorted,
                       NmsBuffers* buffers, std::vector<int>* keep) {
  const int m = static_cast<int>(order.size());
  if (m > 0) {
    sorted->Reshape(std::vector<int>{m, 4});
    T* s = sorted->mutable_cpu_data();
    for (int j = 0; j < m; ++j) {
      for (int c = 0; c < 4; ++c) s[4 * j + c] = boxes[4 * order[j] + c];
    }
  }
  NmsSorted(*sorted, m, thresh, max_keep, gpu, buffers, keep);
}

}  // namespace caffe

#endif  // CAFFE_UTIL_NMS_HPP_
