#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/util/bbox_util.hpp"
#include "caffe/util/nms.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

// caffe/util/nms.hpp on the device of the test case (NmsSorted's gpu flag), float and double.
template <typename TypeParam>
class NmsTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  // NMS of boxes (n x 4, already by decreasing score).
  std::vector<int> Nms(const std::vector<double>& boxes, double thresh, int max_keep) {
    const int n = static_cast<int>(boxes.size() / 4);
    Blob<Dtype> blob(std::vector<int>{n, 4});
    for (int i = 0; i < 4 * n; ++i) blob.mutable_cpu_data()[i] = static_cast<Dtype>(boxes[i]);
    std::vector<int> keep;
    NmsSorted(blob, n, Dtype(thresh), max_keep, Caffe::mode() == Caffe::GPU, &buffers_, &keep);
    return keep;
  }
  // The rule written out plainly: box j is kept when no kept box before it overlaps it with
  // IoU > thresh.
  std::vector<int> Reference(const std::vector<double>& boxes, double thresh, int max_keep) {
    std::vector<int> keep;
    const int n = static_cast<int>(boxes.size() / 4);
    std::vector<Dtype> b(boxes.begin(), boxes.end());
    for (int j = 0; j < n; ++j) {
      bool suppressed = false;
      for (size_t k = 0; k < keep.size(); ++k) {
        suppressed |= bbox_util::BoxIoU(&b[4 * keep[k]], &b[4 * j]) > Dtype(thresh);
      }
      if (!suppressed) keep.push_back(j);
    }
    if (max_keep > 0 && static_cast<int>(keep.size()) > max_keep) keep.resize(max_keep);
    return keep;
  }
  std::vector<double> RandomBoxes(int n, double extent, double max_side) {
    std::vector<double> boxes;
    for (int i = 0; i < n; ++i) {
      const double x = extent * rand() / RAND_MAX, y = extent * rand() / RAND_MAX;  // NOLINT
      const double w = max_side * rand() / RAND_MAX, h = max_side * rand() / RAND_MAX;  // NOLINT
      boxes.push_back(x);
      boxes.push_back(y);
      boxes.push_back(x + w);
      boxes.push_back(y + h);
    }
    return boxes;
  }

  NmsBuffers buffers_;
};

TYPED_TEST_CASE(NmsTest, TestDtypesAndDevices);

TYPED_TEST(NmsTest, TestHand) {
  const double boxes[] = {0, 0, 10, 10,     // kept
                          1, 1, 11, 11,     // IoU 81 / 119 = 0.68 with box 0: suppressed
                          20, 20, 30, 30,   // kept
                          0, 0, 10, 9,      // IoU 0.9 with box 0: suppressed
                          5, 0, 15, 10};    // IoU 1/3 with box 0, 0.38 with box 1 (gone): kept
  std::vector<double> b(boxes, boxes + 20);
  const int want[] = {0, 2, 4};
  EXPECT_EQ(this->Nms(b, 0.5, 0), std::vector<int>(want, want + 3));
  EXPECT_EQ(this->Nms(b, 0.3, 0), std::vector<int>(want, want + 2));
  EXPECT_EQ(this->Nms(b, 1.0, 0).size(), 5);
}

// Suppressed only when the IoU is strictly above the threshold.
TYPED_TEST(NmsTest, TestStrictlyAbove) {
  const double boxes[] = {0, 0, 2, 1, 0, 0, 1, 1};  // IoU exactly 0.5
  std::vector<double> b(boxes, boxes + 8);
  EXPECT_EQ(this->Nms(b, 0.5, 0).size(), 2);
  EXPECT_EQ(this->Nms(b, 0.49, 0).size(), 1);
}

// max_keep stops the NMS: the first max_keep boxes of the full NMS.
TYPED_TEST(NmsTest, TestMaxKeep) {
  std::vector<double> b = this->RandomBoxes(300, 100, 30);
  const std::vector<int> all = this->Nms(b, 0.5, 0);
  ASSERT_GT(all.size(), 20);
  for (int m = 1; m < 20; m += 6) {
    EXPECT_EQ(this->Nms(b, 0.5, m), std::vector<int>(all.begin(), all.begin() + m));
  }
  EXPECT_EQ(this->Nms(b, 0.5, all.size() + 5), all);
}

// Many boxes (the GPU mask has several words per box) against the plain rule.
TYPED_TEST(NmsTest, TestRandomMatchesRule) {
  for (int n : {1, 63, 64, 65, 700}) {
    for (double thresh : {0.0, 0.3, 0.7}) {
      std::vector<double> b = this->RandomBoxes(n, 200, 40);
      EXPECT_EQ(this->Nms(b, thresh, 0), this->Reference(b, thresh, 0))
          << n << " boxes, thresh " << thresh;
      EXPECT_EQ(this->Nms(b, thresh, 7), this->Reference(b, thresh, 7));
    }
  }
}

TYPED_TEST(NmsTest, TestDegenerate) {
  EXPECT_TRUE(this->Nms(std::vector<double>(), 0.5, 0).empty());
  // 150 equal boxes: the first only.
  std::vector<double> same;
  for (int i = 0; i < 150; ++i) {
    const double box[] = {3, 4, 20, 30};
    same.insert(same.end(), box, box + 4);
  }
  EXPECT_EQ(this->Nms(same, 0.7, 0), std::vector<int>(1, 0));
  // Zero-area boxes overlap nothing (IoU 0), even when equal; so do NaN boxes.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double boxes[] = {5, 5, 5, 9,  5, 5, 5, 9,  nan, 0, 10, 10,  0, 0, 10, 10,
                          0, 0, 10, 10,  0, nan, nan, nan};
  std::vector<double> b(boxes, boxes + 24);
  const int want[] = {0, 1, 2, 3, 5};
  EXPECT_EQ(this->Nms(b, 0.5, 0), std::vector<int>(want, want + 5));
  // Huge boxes (areas within float range): 0.67 overlap suppresses, a tiny box is kept.
  const double huge[] = {-1e15, -1e15, 1e15, 1e15,  -1e15, -1e15, 1e15, 2e15,  0, 0, 1, 1};
  std::vector<double> h(huge, huge + 12);
  const int want_h[] = {0, 2};
  EXPECT_EQ(this->Nms(h, 0.5, 0), std::vector<int>(want_h, want_h + 2));
}

// The NaN rules of bbox_util that the NMS relies on (boxes.py): a NaN delta decodes to a NaN
// box (np.minimum keeps NaN; `delta < clip ? delta : clip` made it the clip), and a NaN box
// overlaps nothing (the ternary min/max dropped the NaN: IoU 1 with any box).
TEST(NmsBoxTest, TestNaN) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double anchor[] = {0, 0, 10, 10};
  for (int c = 0; c < 4; ++c) {
    double delta[] = {0, 0, 0, 0}, box[4];
    delta[c] = nan;
    bbox_util::BoxDecode(anchor, delta, box);
    EXPECT_TRUE(bbox_util::BoxHasNaN(box)) << "NaN delta " << c;
    EXPECT_FALSE(bbox_util::BoxAtLeast(box, 0.0));
  }
  const double a[] = {nan, 0, 10, 10}, b[] = {0, 0, 10, 10};
  EXPECT_EQ(bbox_util::BoxIoU(a, b), 0);
  EXPECT_EQ(bbox_util::BoxIoU(b, a), 0);
  EXPECT_EQ(bbox_util::BoxIoU(b, b), 1);
}

TEST(NmsOrderTest, TestStableDecreasingNaNLast) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const double s[] = {0.5, nan, 0.9, 0.5, -inf, inf, nan, 0.9};
  std::vector<int> order;
  NmsOrderByScore(8, s, 0, &order);
  const int want[] = {5, 2, 7, 0, 3, 4, 1, 6};
  EXPECT_EQ(order, std::vector<int>(want, want + 8));
  for (int top = 1; top <= 9; ++top) {   // partial sort: the same prefix
    NmsOrderByScore(8, s, top, &order);
    EXPECT_EQ(order, std::vector<int>(want, want + std::min(top, 8)));
  }
  const float f[] = {1, 1, 1};
  std::vector<int> order_f;
  NmsOrderByScore(3, f, 2, &order_f);
  EXPECT_EQ(order_f, std::vector<int>({0, 1}));
  NmsOrderByScore(0, f, 0, &order_f);
  EXPECT_TRUE(order_f.empty());
}

}  // namespace caffe
