#include <algorithm>
#include <vector>

#include "caffe/util/bbox_util.hpp"
#include "caffe/util/nms.hpp"

namespace caffe {

namespace {

// Strict total order: higher score first, NaN after every number, then lower index first.
// (The index tie-break makes an unstable sort give the stable order.)
template <typename T>
struct ByDecreasingScore {
  const T* s;
  bool operator()(const int i, const int j) const {
    const bool ni = s[i] != s[i], nj = s[j] != s[j];
    if (ni != nj) return nj;
    if (!ni && s[i] != s[j]) return s[i] > s[j];
    return i < j;
  }
};

}  // namespace

template <typename T>
void NmsOrderByScore(const int n, const T* scores, const int top_n, std::vector<int>* order) {
  order->resize(n);
  for (int i = 0; i < n; ++i) (*order)[i] = i;
  const ByDecreasingScore<T> cmp = {scores};
  if (top_n > 0 && top_n < n) {  // a strict total order: the same as a full sort's first top_n
    std::nth_element(order->begin(), order->begin() + top_n, order->end(), cmp);
    order->resize(top_n);
    std::sort(order->begin(), order->end(), cmp);
  } else {
    std::sort(order->begin(), order->end(), cmp);
  }
}

// Each box is compared with the boxes kept before it only (not every kept box with every later
// box): the same result, and with max_keep the work is at most (boxes visited) x max_keep.
template <typename T>
void NmsSortedCpu(const int n, const T* boxes, const T thresh, const int max_keep,
                  std::vector<int>* keep) {
  keep->clear();
  for (int i = 0; i < n; ++i) {
    const T* b = boxes + 4 * i;
    bool suppressed = false;
    for (size_t k = 0; k < keep->size() && !suppressed; ++k) {
      suppressed = bbox_util::BoxIoU(boxes + 4 * (*keep)[k], b) > thresh;
    }
    if (suppressed) continue;
    keep->push_back(i);
    if (max_keep > 0 && static_cast<int>(keep->size()) >= max_keep) return;
  }
}

template void NmsOrderByScore(const int, const float*, const int, std::vector<int>*);
template void NmsOrderByScore(const int, const double*, const int, std::vector<int>*);
template void NmsSortedCpu(const int, const float*, const float, const int, std::vector<int>*);
template void NmsSortedCpu(const int, const double*, const double, const int,
                           std::vector<int>*);

}  // namespace caffe
