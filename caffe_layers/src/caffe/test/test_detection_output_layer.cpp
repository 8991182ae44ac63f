#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layers/detection_output_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_roi_layers_util.hpp"

namespace caffe {

using roi_test::SetBlob;
using roi_test::Shape;

// Two 20 x 30 (h x w) images. Image 0: rois 0 and 1 overlap (IoU 0.62), roi 2 lies apart;
// image 1: roi 3, all of whose class scores are below the threshold.
template <typename TypeParam>
class DetectionOutputLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  DetectionOutputLayerTest() {
    for (int i = 0; i < 4; ++i) bottom_.push_back(new Blob<Dtype>());
    for (int i = 0; i < 4; ++i) top_.push_back(new Blob<Dtype>());
  }
  virtual void SetUp() {
    const double rois[] = {0, 2, 2, 10, 10,
                           0, 3, 3, 11, 11,
                           0, 15, 5, 25, 15,
                           1, 0, 0, 5, 5};
    const double prob[] = {0.1, 0.8, 0.1,
                           0.06, 0.9, 0.04,
                           0.3, 0.1, 0.6,
                           0.98, 0.01, 0.01};
    const double info[] = {20, 30, 1, 20, 30, 1};
    SetBlob(bottom_[0], Shape(4, 5), std::vector<double>(rois, rois + 20));
    SetBlob(bottom_[1], Shape(4, 3), std::vector<double>(prob, prob + 12));
    SetBlob(bottom_[2], Shape(4, 12), std::vector<double>(48, 0));
    SetBlob(bottom_[3], Shape(2, 3), std::vector<double>(info, info + 6));
  }
  virtual ~DetectionOutputLayerTest() {
    for (int i = 0; i < 4; ++i) { delete bottom_[i]; delete top_[i]; }
  }
  // parity: also the same tops on the CPU and the GPU (not with NaN outputs).
  void Forward(bool parity = true) {
    DetectionOutputLayer<Dtype> layer(param_);
    layer.SetUp(bottom_, top_);
    layer.Forward(bottom_, top_);
    if (parity) roi_test::ExpectCpuGpuParity(&layer, bottom_, top_, false, 0);
  }
  // Expects the rows of top pair (t, t + 1): 5 values and a score each.
  void Expect(int t, const std::vector<double>& rows) {
    const int n = static_cast<int>(rows.size() / 6);
    ASSERT_EQ(top_[t]->shape(), Shape(n, 5));
    ASSERT_EQ(top_[t + 1]->shape(), std::vector<int>(1, n));
    for (int i = 0; i < n; ++i) {
      for (int k = 0; k < 5; ++k) {
        EXPECT_NEAR(top_[t]->cpu_data()[5 * i + k], rows[6 * i + k], 1e-5)
            << "top " << t << " row " << i << " col " << k;
      }
      EXPECT_NEAR(top_[t + 1]->cpu_data()[i], rows[6 * i + 5], 1e-6) << "score " << i;
    }
  }
  void SetDelta(int roi, int cls, int c, double v) {
    bottom_[2]->mutable_cpu_data()[roi * 12 + cls * 4 + c] = static_cast<Dtype>(v);
  }

  vector<Blob<Dtype>*> bottom_;
  vector<Blob<Dtype>*> top_;
  LayerParameter param_;
};

TYPED_TEST_CASE(DetectionOutputLayerTest, TestDtypesAndDevices);

TYPED_TEST(DetectionOutputLayerTest, TestForwardHand) {
  this->Forward();
  // persons of image 0: roi 1 suppresses roi 0; image 1: its best person under the threshold
  const double persons[] = {0, 3, 3, 11, 11, 0.9,
                            0, 15, 5, 25, 15, 0.1,
                            1, 0, 0, 5, 5, 0.01};
  const double faces[] = {0, 15, 5, 25, 15, 0.6,
                          0, 2, 2, 10, 10, 0.1};
  this->Expect(0, std::vector<double>(persons, persons + 18));
  this->Expect(2, std::vector<double>(faces, faces + 12));
}

TYPED_TEST(DetectionOutputLayerTest, TestLimitsAndThreshold) {
  this->param_.mutable_detection_output_param()->set_max_persons(1);
  this->param_.mutable_detection_output_param()->set_max_faces(0);
  this->Forward();
  const double persons[] = {0, 3, 3, 11, 11, 0.9,  1, 0, 0, 5, 5, 0.01};
  this->Expect(0, std::vector<double>(persons, persons + 12));
  this->Expect(2, std::vector<double>());
  this->param_.mutable_detection_output_param()->set_score_thresh(0.5);
  this->param_.mutable_detection_output_param()->set_max_persons(0);   // the fallback only
  this->param_.mutable_detection_output_param()->set_max_faces(5);
  this->Forward();
  const double persons2[] = {0, 3, 3, 11, 11, 0.9,  1, 0, 0, 5, 5, 0.01};
  const double faces2[] = {0, 15, 5, 25, 15, 0.6};
  this->Expect(0, std::vector<double>(persons2, persons2 + 12));
  this->Expect(2, std::vector<double>(faces2, faces2 + 6));
}

// Deltas are scaled by bbox_stds (default 0.1 0.1 0.2 0.2) and decoded per class; boxes are
// clipped to [-0.5, w - 0.5] x [-0.5, h - 0.5].
TYPED_TEST(DetectionOutputLayerTest, TestDecodeAndClip) {
  this->SetDelta(2, 1, 0, 1);     // person of roi 2: dx 0.1 of 10 -> [16, 26]
  this->SetDelta(2, 2, 2, 5);     // face of roi 2: dw 1.0: width 10 e -> clipped to 29.5
  this->Forward();
  const double e = std::exp(1.0);
  const double persons[] = {0, 3, 3, 11, 11, 0.9,  0, 16, 5, 26, 15, 0.1,  1, 0, 0, 5, 5, 0.01};
  const double faces[] = {0, 20 - 5 * e, 5, 29.5, 15, 0.6,  0, 2, 2, 10, 10, 0.1};
  this->Expect(0, std::vector<double>(persons, persons + 18));
  this->Expect(2, std::vector<double>(faces, faces + 12));
  this->param_.mutable_detection_output_param()->add_bbox_stds(1);
  this->param_.mutable_detection_output_param()->add_bbox_stds(1);
  this->param_.mutable_detection_output_param()->add_bbox_stds(1);
  this->param_.mutable_detection_output_param()->add_bbox_stds(1);
  this->SetDelta(2, 2, 2, 0);
  this->Forward();
  const double persons2[] = {0, 3, 3, 11, 11, 0.9,  0, 25, 5, 29.5, 15, 0.1,  1, 0, 0, 5, 5, 0.01};
  this->Expect(0, std::vector<double>(persons2, persons2 + 18));
}

// An image without rois gets (b, 0, 0, width, height) with score 0; the fallback person of an
// image is its first NaN score, else its first maximum (np.argmax).
TYPED_TEST(DetectionOutputLayerTest, TestFallbacks) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double rois[] = {1, 0, 0, 5, 5,  1, 1, 1, 6, 6,  1, 2, 2, 7, 7,  1, 3, 3, 8, 8};
  const double prob[] = {0, 0.01, 0,  0, 0.02, 0,  0, 0.02, 0,  0, 0.01, 0};
  SetBlob(this->bottom_[0], Shape(4, 5), std::vector<double>(rois, rois + 20));
  SetBlob(this->bottom_[1], Shape(4, 3), std::vector<double>(prob, prob + 12));
  const double info[] = {20, 30, 1, 20, 30, 1, 40, 50, 1};
  SetBlob(this->bottom_[3], Shape(3, 3), std::vector<double>(info, info + 9));
  this->Forward();
  const double persons[] = {0, 0, 0, 30, 20, 0,  1, 1, 1, 6, 6, 0.02,  2, 0, 0, 50, 40, 0};
  this->Expect(0, std::vector<double>(persons, persons + 18));
  this->Expect(2, std::vector<double>());
  this->bottom_[1]->mutable_cpu_data()[3 * 2 + 1] = nan;
  this->bottom_[1]->mutable_cpu_data()[3 * 3 + 1] = nan;
  this->Forward(false);
  EXPECT_EQ(this->top_[0]->shape(), Shape(3, 5));
  EXPECT_EQ(this->top_[0]->cpu_data()[5 + 1], 2);   // roi 2: the first NaN
  EXPECT_TRUE(std::isnan(this->top_[1]->cpu_data()[1]));
}

// No rois at all (the NumPy reference cannot reshape an empty cls_prob): every image gets the
// whole-image person; three tops (no face scores).
TYPED_TEST(DetectionOutputLayerTest, TestNoRoisAndThreeTops) {
  typedef typename TypeParam::Dtype Dtype;
  SetBlob(this->bottom_[0], Shape(0, 5), std::vector<double>());
  SetBlob(this->bottom_[1], Shape(0, 3), std::vector<double>());
  SetBlob(this->bottom_[2], Shape(0, 12), std::vector<double>());
  vector<Blob<Dtype>*> three(this->top_.begin(), this->top_.begin() + 3);
  DetectionOutputLayer<Dtype> layer(this->param_);
  layer.SetUp(this->bottom_, three);
  layer.Forward(this->bottom_, three);
  const double persons[] = {0, 0, 0, 30, 20, 0,  1, 0, 0, 30, 20, 0};
  this->Expect(0, std::vector<double>(persons, persons + 12));
  EXPECT_EQ(three[2]->shape(), Shape(0, 5));
}

class DetectionOutputLayerDeathTest : public roi_test::DeathTest {};

TEST_F(DetectionOutputLayerDeathTest, TestBadShapesAndParams) {
  Blob<float> rois(Shape(4, 5)), prob(Shape(4, 2)), pred(Shape(4, 12)), info(Shape(1, 3));
  Blob<float> t0, t1, t2;
  vector<Blob<float>*> bottom, top;
  bottom.push_back(&rois);
  bottom.push_back(&prob);
  bottom.push_back(&pred);
  bottom.push_back(&info);
  top.push_back(&t0);
  top.push_back(&t1);
  top.push_back(&t2);
  LayerParameter p;
  DetectionOutputLayer<float> layer(p);
  EXPECT_DEATH(layer.SetUp(bottom, top), "class probabilities must be 4 x C");
  prob.Reshape(Shape(4, 3));
  pred.Reshape(Shape(4, 8));
  DetectionOutputLayer<float> layer2(p);
  EXPECT_DEATH(layer2.SetUp(bottom, top), "deltas must be 4 x 12");
  LayerParameter bad = p;
  bad.mutable_detection_output_param()->add_bbox_stds(0.1);
  DetectionOutputLayer<float> layer3(bad);
  EXPECT_DEATH(layer3.SetUp(bottom, top), "bbox_stds must hold 4 values");
  bad = p;
  bad.mutable_detection_output_param()->set_max_persons(-1);
  DetectionOutputLayer<float> layer4(bad);
  EXPECT_DEATH(layer4.SetUp(bottom, top), "max_persons must be >= 0");
}

}  // namespace caffe
