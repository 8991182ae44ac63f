#include <limits>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/adjust_back_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/test/test_roi_layers_util.hpp"

namespace caffe {

using roi_test::SetBlob;
using roi_test::Shape;

template <typename TypeParam>
class AdjustBackLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  AdjustBackLayerTest()
      : blob_maps_(new Blob<Dtype>()), blob_adjusted_(new Blob<Dtype>()),
        blob_rois_(new Blob<Dtype>()), blob_top_(new Blob<Dtype>()) {}
  virtual void SetUp() {
    blob_bottom_vec_.push_back(blob_maps_);
    blob_bottom_vec_.push_back(blob_adjusted_);
    blob_bottom_vec_.push_back(blob_rois_);
    blob_top_vec_.push_back(blob_top_);
  }
  virtual ~AdjustBackLayerTest() {
    delete blob_maps_; delete blob_adjusted_; delete blob_rois_; delete blob_top_;
  }
  // 1 x 1 x P x P map with value 10 * v + u.
  void FillRamp(int P) {
    std::vector<double> m(P * P);
    for (int v = 0; v < P; ++v) for (int u = 0; u < P; ++u) m[v * P + u] = 10 * v + u;
    SetBlob(blob_maps_, Shape(1, 1, P, P), m);
  }
  void SetBoxes(const double* adjusted, const double* original, int n) {
    SetBlob(blob_adjusted_, Shape(n, 5), std::vector<double>(adjusted, adjusted + 5 * n));
    SetBlob(blob_rois_, Shape(n, 5), std::vector<double>(original, original + 5 * n));
  }
  // 3 x 2 x 5 x 5 random maps: adjusted box covering, equal to, and smaller than the original.
  void FillRandom() {
    blob_maps_->Reshape(Shape(3, 2, 5, 5));
    FillerParameter fp;
    GaussianFiller<Dtype> filler(fp);
    filler.Fill(blob_maps_);
    const double adjusted[] = {0, -3.2, -6.1, 12.3, 20.4,
                               1, 2, 3, 9, 11,
                               0, 4, 4, 6, 7};
    const double original[] = {0, 1.5, 2.5, 10.1, 19.7,
                               1, 2, 3, 9, 11,
                               0, 1, 2, 9, 9};
    SetBoxes(adjusted, original, 3);
  }

  Blob<Dtype>* const blob_maps_;
  Blob<Dtype>* const blob_adjusted_;
  Blob<Dtype>* const blob_rois_;
  Blob<Dtype>* const blob_top_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(AdjustBackLayerTest, TestDtypesAndDevices);

TYPED_TEST(AdjustBackLayerTest, TestSetup) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRandom();
  LayerParameter p;
  AdjustBackLayer<Dtype> layer(p);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape(), Shape(3, 2, 5, 5));
  EXPECT_EQ(AdjustBackParameter().outside_value(), 0.f);
}

// Equal boxes: every output pixel centre is an input pixel centre.
TYPED_TEST(AdjustBackLayerTest, TestIdentity) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRamp(4);
  const double box[] = {0, 1.5, 2, 7.5, 11};
  this->SetBoxes(box, box, 1);
  LayerParameter p;
  AdjustBackLayer<Dtype> layer(p);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int i = 0; i < 16; ++i) {
    EXPECT_NEAR(this->blob_top_->cpu_data()[i], this->blob_maps_->cpu_data()[i], 1e-5);
  }
}

// Adjusted (0, 0, 4, 4), original (1, 1, 3, 3), P = 4: output (i, j) reads
// (v, u) = (0.75 + 0.5 i, 0.75 + 0.5 j).
TYPED_TEST(AdjustBackLayerTest, TestForwardHand) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRamp(4);
  const double adjusted[] = {0, 0, 0, 4, 4}, original[] = {0, 1, 1, 3, 3};
  this->SetBoxes(adjusted, original, 1);
  LayerParameter p;
  AdjustBackLayer<Dtype> layer(p);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      EXPECT_NEAR(this->blob_top_->cpu_data()[i * 4 + j],
                  10 * (0.75 + 0.5 * i) + 0.75 + 0.5 * j, 1e-5) << i << "," << j;
    }
  }
}

// Output pixels that fall outside the adjusted map (RoIAlign's rule: u > P or u < -1) get
// outside_value; an empty adjusted box gives outside_value everywhere.
TYPED_TEST(AdjustBackLayerTest, TestOutsideValue) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRamp(4);
  // u = v = 2 x - 0.5 for x = 1, 3, 5, 7: 1.5 (inside), 5.5, 9.5, 13.5 (outside)
  const double adjusted[] = {0, 0, 0, 2, 2, 0, 3, 3, 3, 5};
  const double original[] = {0, 0, 0, 8, 8, 0, 0, 0, 8, 8};
  std::vector<double> m(32);
  for (int k = 0; k < 32; ++k) m[k] = 10 * ((k % 16) / 4) + k % 4;
  SetBlob(this->blob_maps_, Shape(2, 1, 4, 4), m);
  this->SetBoxes(adjusted, original, 2);
  LayerParameter p;
  p.mutable_adjust_back_param()->set_outside_value(-7);
  AdjustBackLayer<Dtype> layer(p);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const Dtype* t = this->blob_top_->cpu_data();
  EXPECT_NEAR(t[0], 16.5, 1e-5);
  for (int k = 1; k < 32; ++k) EXPECT_EQ(t[k], Dtype(-7)) << k;
}

// A RoI whose adjusted or original box has a non-finite coordinate (NaN, +-inf) reads as
// outside everywhere: outside_value in the forward pass, a zero gradient in the backward
// pass; the other RoIs are unaffected (no NaN-to-index conversion, no crash).
TYPED_TEST(AdjustBackLayerTest, TestNonFiniteRoIsAreOutside) {
  typedef typename TypeParam::Dtype Dtype;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const double adjusted[] = {0, 0, 0, 4, 4,  0, 0, 0, inf, 4,  0, -inf, 0, 4, 4,
                             0, 0, 0, 4, 4,  0, 0, 0, 4, 4};
  const double original[] = {0, 0, 0, 4, 4,  0, 0, 0, 4, 4,  0, 0, 0, 4, 4,
                             0, nan, 0, 4, 4,  0, 0, 0, 4, inf};
  const int num = 5, P = 4;
  std::vector<double> m(num * P * P);
  for (int k = 0; k < num * P * P; ++k) m[k] = 1 + k % (P * P);
  SetBlob(this->blob_maps_, Shape(num, 1, P, P), m);
  this->SetBoxes(adjusted, original, num);
  LayerParameter p;
  p.mutable_adjust_back_param()->set_outside_value(-3);
  AdjustBackLayer<Dtype> layer(p);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  caffe_set(this->blob_top_->count(), Dtype(1), this->blob_top_->mutable_cpu_diff());
  std::vector<bool> prop(3, false);
  prop[0] = true;
  layer.Backward(this->blob_top_vec_, prop, this->blob_bottom_vec_);
  const Dtype* t = this->blob_top_->cpu_data();
  const Dtype* d = this->blob_maps_->cpu_diff();
  for (int k = 0; k < P * P; ++k) {  // RoI 0: equal boxes, the identity
    EXPECT_NEAR(t[k], 1 + k, 1e-5) << k;
    EXPECT_NEAR(d[k], 1, 1e-5) << k;
  }
  for (int k = P * P; k < num * P * P; ++k) {
    EXPECT_EQ(t[k], Dtype(-3)) << "roi " << k / (P * P);
    EXPECT_EQ(d[k], Dtype(0)) << "roi " << k / (P * P);
  }
}

TYPED_TEST(AdjustBackLayerTest, TestZeroRoIs) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_maps_->Reshape(Shape(0, 3, 4, 4));
  this->blob_adjusted_->Reshape(Shape(0, 5));
  this->blob_rois_->Reshape(Shape(0, 5));
  LayerParameter p;
  AdjustBackLayer<Dtype> layer(p);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape(), Shape(0, 3, 4, 4));
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  std::vector<bool> prop(3, false);
  prop[0] = true;
  layer.Backward(this->blob_top_vec_, prop, this->blob_bottom_vec_);
}

TYPED_TEST(AdjustBackLayerTest, TestGradient) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRandom();
  LayerParameter p;
  p.mutable_adjust_back_param()->set_outside_value(0.5);
  AdjustBackLayer<Dtype> layer(p);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_, this->blob_top_vec_, 0);
}

TYPED_TEST(AdjustBackLayerTest, TestCpuGpuParity) {
  typedef typename TypeParam::Dtype Dtype;
  if (Caffe::mode() != Caffe::GPU) return;
  this->FillRandom();
  LayerParameter p;
  AdjustBackLayer<Dtype> layer(p);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  roi_test::ExpectCpuGpuParity(&layer, this->blob_bottom_vec_, this->blob_top_vec_, true, 1e-5);
}

class AdjustBackLayerDeathTest : public roi_test::DeathTest {};

TEST_F(AdjustBackLayerDeathTest, TestBadShapes) {
  Caffe::set_mode(Caffe::CPU);
  Blob<float> maps(Shape(2, 3, 4, 4)), adjusted(Shape(2, 5)), rois(Shape(3, 5)), top;
  vector<Blob<float>*> bottom, tops;
  bottom.push_back(&maps); bottom.push_back(&adjusted); bottom.push_back(&rois);
  tops.push_back(&top);
  LayerParameter p;
  AdjustBackLayer<float> layer(p);
  EXPECT_DEATH(layer.SetUp(bottom, tops), "original rois must have one row per map");
  adjusted.Reshape(Shape(2, 6));
  AdjustBackLayer<float> layer2(p);
  EXPECT_DEATH(layer2.SetUp(bottom, tops), "adjusted rois must be R x 5");
}

}  // namespace caffe
