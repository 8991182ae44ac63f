#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/smooth_l1_loss_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/test/test_roi_layers_util.hpp"

namespace caffe {

using roi_test::SetBlob;
using roi_test::Shape;

template <typename TypeParam>
class SmoothL1LossLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  SmoothL1LossLayerTest() {
    for (int i = 0; i < 4; ++i) bottoms_[i] = new Blob<Dtype>();
    blob_top_ = new Blob<Dtype>();
  }
  virtual void SetUp() {
    for (int i = 0; i < 4; ++i) blob_bottom_vec_.push_back(bottoms_[i]);
    blob_top_vec_.push_back(blob_top_);
  }
  virtual ~SmoothL1LossLayerTest() {
    for (int i = 0; i < 4; ++i) delete bottoms_[i];
    delete blob_top_;
  }
  // Random predictions and targets (N x 4 x 2 x 3), inside weights in {0, 1, 2}, positive
  // outside weights; no in * (pred - target) within 0.05 of the kink at +-1 / sigma^2, so
  // central differences with step 1e-2 never straddle it.
  void FillRandom(float sigma) {
    std::vector<int> shape = Shape(2, 4, 2, 3);
    for (int i = 0; i < 4; ++i) bottoms_[i]->Reshape(shape);
    FillerParameter fp;
    fp.set_std(1);
    GaussianFiller<Dtype> gauss(fp);
    gauss.Fill(bottoms_[0]);
    gauss.Fill(bottoms_[1]);
    const int count = bottoms_[0]->count();
    Dtype* pred = bottoms_[0]->mutable_cpu_data();
    const Dtype* target = bottoms_[1]->cpu_data();
    Dtype* in = bottoms_[2]->mutable_cpu_data();
    Dtype* out = bottoms_[3]->mutable_cpu_data();
    const double kink = 1.0 / (sigma * sigma);
    for (int i = 0; i < count; ++i) {
      in[i] = Dtype(i % 3);
      out[i] = Dtype(0.25 + 0.1 * (i % 5));
      const double x = in[i] * (pred[i] - target[i]);
      if (std::fabs(std::fabs(x) - kink) < 0.05) {  // |x| += 0.15: at least 0.1 past the kink
        pred[i] += Dtype((x > 0 ? 0.15 : -0.15) / in[i]);
      }
    }
  }
  // The loss written out from its definition.
  double Expected(float sigma, bool with_outside) const {
    const double s2 = double(sigma) * sigma;
    double sum = 0;
    for (int i = 0; i < bottoms_[0]->count(); ++i) {
      const double x = double(bottoms_[2]->cpu_data()[i]) *
          (double(bottoms_[0]->cpu_data()[i]) - double(bottoms_[1]->cpu_data()[i]));
      const double f = std::fabs(x) < 1 / s2 ? 0.5 * s2 * x * x : std::fabs(x) - 0.5 / s2;
      sum += (with_outside ? double(bottoms_[3]->cpu_data()[i]) : 1.0) * f;
    }
    const int n = bottoms_[0]->shape(0);
    return sum / (n > 1 ? n : 1);
  }
  LayerParameter Param(float sigma) const {
    LayerParameter p;
    p.mutable_smooth_l1_loss_param()->set_sigma(sigma);
    return p;
  }

  Blob<Dtype>* bottoms_[4];
  Blob<Dtype>* blob_top_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(SmoothL1LossLayerTest, TestDtypesAndDevices);

TYPED_TEST(SmoothL1LossLayerTest, TestForwardHand) {
  typedef typename TypeParam::Dtype Dtype;
  // N = 2 rows of 2; sigma = 2: kink at 0.25.
  SetBlob(this->bottoms_[0], Shape(2, 2), std::vector<double>{0.1, 1.0, -0.5, 3.0});
  SetBlob(this->bottoms_[1], Shape(2, 2), std::vector<double>{0.0, 0.0, 0.0, 3.0});
  SetBlob(this->bottoms_[2], Shape(2, 2), std::vector<double>{1, 1, 2, 1});
  SetBlob(this->bottoms_[3], Shape(2, 2), std::vector<double>{1, 0.5, 2, 1});
  SmoothL1LossLayer<Dtype> layer(this->Param(2));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->num_axes(), 0);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  // 0.1: 0.5 * 4 * 0.01 = 0.02; 1.0 * 0.5: (1 - 0.125) / 2; -1.0 (in 2) * 2: 0.875 * 2; 0.
  const double expected = (0.02 + 0.4375 + 1.75 + 0) / 2;
  EXPECT_NEAR(this->blob_top_->cpu_data()[0], expected, 1e-6);
  EXPECT_NEAR(this->blob_top_->cpu_data()[0], this->Expected(2, true), 1e-6);
  // Without outside weights (3 bottoms): weight 1.
  this->blob_bottom_vec_.pop_back();
  SmoothL1LossLayer<Dtype> layer3(this->Param(2));
  layer3.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer3.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_NEAR(this->blob_top_->cpu_data()[0], (0.02 + 0.875 + 0.875) / 2, 1e-6);
}

TYPED_TEST(SmoothL1LossLayerTest, TestForwardRandom) {
  typedef typename TypeParam::Dtype Dtype;
  for (float sigma : {1.0f, 3.0f}) {
    this->FillRandom(sigma);
    SmoothL1LossLayer<Dtype> layer(this->Param(sigma));
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    EXPECT_NEAR(this->blob_top_->cpu_data()[0], this->Expected(sigma, true), 1e-5);
    roi_test::ExpectCpuGpuParity(&layer, this->blob_bottom_vec_, this->blob_top_vec_, true, 1e-5);
  }
}

TYPED_TEST(SmoothL1LossLayerTest, TestDefaultSigmaAndLossWeight) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRandom(1);
  LayerParameter p;  // sigma 1, loss_weight 1 (a LossLayer)
  SmoothL1LossLayer<Dtype> layer(p);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  const Dtype value = layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_NEAR(value, this->Expected(1, true), 1e-5);  // the weighted loss, weight 1
  EXPECT_EQ(layer.layer_param().loss_weight(0), 1);
}

TYPED_TEST(SmoothL1LossLayerTest, TestEmpty) {
  typedef typename TypeParam::Dtype Dtype;
  for (int i = 0; i < 4; ++i) this->bottoms_[i]->Reshape(Shape(0, 4));
  SmoothL1LossLayer<Dtype> layer(this->Param(3));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->cpu_data()[0], Dtype(0));
  std::vector<bool> prop(4, false);
  prop[0] = true;
  this->blob_top_->mutable_cpu_diff()[0] = 1;
  layer.Backward(this->blob_top_vec_, prop, this->blob_bottom_vec_);  // nothing to write
}

TYPED_TEST(SmoothL1LossLayerTest, TestGradient) {
  typedef typename TypeParam::Dtype Dtype;
  for (float sigma : {1.0f, 3.0f}) {
    for (int bottoms : {3, 4}) {
      this->FillRandom(sigma);
      std::vector<Blob<Dtype>*> bottom(this->blob_bottom_vec_.begin(),
                                       this->blob_bottom_vec_.begin() + bottoms);
      LayerParameter p = this->Param(sigma);
      p.add_loss_weight(3);
      SmoothL1LossLayer<Dtype> layer(p);
      GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
      checker.CheckGradientExhaustive(&layer, bottom, this->blob_top_vec_, 0);
      checker.CheckGradientExhaustive(&layer, bottom, this->blob_top_vec_, 1);
    }
  }
}

class SmoothL1LossLayerDeathTest : public roi_test::DeathTest {};

TEST_F(SmoothL1LossLayerDeathTest, TestBadInputs) {
  Caffe::set_mode(Caffe::CPU);
  Blob<float> a(Shape(2, 4)), b(Shape(2, 4)), c(Shape(2, 5)), top;
  vector<Blob<float>*> bottom, tops;
  bottom.push_back(&a); bottom.push_back(&b); bottom.push_back(&c);
  tops.push_back(&top);
  LayerParameter p;
  p.set_name("sl1");
  SmoothL1LossLayer<float> layer(p);
  EXPECT_DEATH(layer.SetUp(bottom, tops),
               "layer sl1: bottom shapes differ: inside weights 2 5 \\(10\\)");
  c.Reshape(Shape(2, 4));
  p.mutable_smooth_l1_loss_param()->set_sigma(0);
  SmoothL1LossLayer<float> layer2(p);
  EXPECT_DEATH(layer2.SetUp(bottom, tops), "sigma must be finite and > 0, got 0");
  p.mutable_smooth_l1_loss_param()->set_sigma(1);
  SmoothL1LossLayer<float> layer3(p);
  layer3.SetUp(bottom, tops);
  layer3.Forward(bottom, tops);
  std::vector<bool> prop(3, false);
  prop[2] = true;
  EXPECT_DEATH(layer3.Backward(tops, prop, bottom),
               "cannot backpropagate to the inside weights");
}

}  // namespace caffe
