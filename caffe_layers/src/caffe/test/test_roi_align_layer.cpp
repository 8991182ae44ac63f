#include <limits>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/roi_align_layer.hpp"
#include "caffe/util/roi_align_util.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/test/test_roi_layers_util.hpp"

namespace caffe {

using roi_test::SetBlob;
using roi_test::Shape;

template <typename TypeParam>
class RoIAlignLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  RoIAlignLayerTest()
      : blob_features_(new Blob<Dtype>()), blob_rois_(new Blob<Dtype>()),
        blob_top_(new Blob<Dtype>()) {}
  virtual void SetUp() {
    blob_bottom_vec_.push_back(blob_features_);
    blob_bottom_vec_.push_back(blob_rois_);
    blob_top_vec_.push_back(blob_top_);
  }
  virtual ~RoIAlignLayerTest() {
    delete blob_features_; delete blob_rois_; delete blob_top_;
  }
  // 1 x 1 x 4 x 4 features with value 4 * y + x.
  void FillRamp() {
    std::vector<double> v(16);
    for (int i = 0; i < 16; ++i) v[i] = i;
    SetBlob(blob_features_, Shape(1, 1, 4, 4), v);
  }
  // 2 x 3 x 6 x 6 random features; 3 rois, one per kind: inside, partly outside, image 1.
  void FillRandom() {
    blob_features_->Reshape(Shape(2, 3, 6, 6));
    FillerParameter fp;
    GaussianFiller<Dtype> filler(fp);
    filler.Fill(blob_features_);
    const double rois[] = {0, 0.3, 0.6, 4.2, 5.1,
                           0, -1.7, 2.2, 3.1, 8.4,
                           1, 1.1, 0.4, 5.6, 3.3};
    SetBlob(blob_rois_, Shape(3, 5), std::vector<double>(rois, rois + 15));
  }
  LayerParameter Param(int pooled, int sampling_ratio, bool aligned, float scale = 1) {
    LayerParameter p;
    p.set_name("roi_align_test");
    RoIAlignParameter* r = p.mutable_roi_align_param();
    r->set_pooled_h(pooled);
    r->set_pooled_w(pooled);
    r->set_sampling_ratio(sampling_ratio);
    r->set_aligned(aligned);
    r->set_spatial_scale(scale);
    return p;
  }
  void ExpectTop(const double* expected, int n) {
    ASSERT_EQ(blob_top_->count(), n);
    for (int i = 0; i < n; ++i) {
      EXPECT_NEAR(blob_top_->cpu_data()[i], expected[i], 1e-5) << "element " << i;
    }
  }

  Blob<Dtype>* const blob_features_;
  Blob<Dtype>* const blob_rois_;
  Blob<Dtype>* const blob_top_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(RoIAlignLayerTest, TestDtypesAndDevices);

TYPED_TEST(RoIAlignLayerTest, TestSetup) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRandom();
  LayerParameter p = this->Param(2, 2, true);
  p.mutable_roi_align_param()->set_pooled_w(3);
  RoIAlignLayer<Dtype> layer(p);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape(), Shape(3, 3, 2, 3));
}

TYPED_TEST(RoIAlignLayerTest, TestDefaults) {
  RoIAlignParameter p;
  EXPECT_EQ(p.pooled_h(), 7u);
  EXPECT_EQ(p.pooled_w(), 7u);
  EXPECT_EQ(p.spatial_scale(), 1.f);
  EXPECT_EQ(p.sampling_ratio(), 0);
  EXPECT_FALSE(p.aligned());
}

// aligned: the 2 x 2 samples of each 2 x 2 bin sit on pixel centres.
TYPED_TEST(RoIAlignLayerTest, TestForwardAlignedHand) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRamp();
  const double roi[] = {0, 0, 0, 4, 4};
  SetBlob(this->blob_rois_, Shape(1, 5), std::vector<double>(roi, roi + 5));
  RoIAlignLayer<Dtype> layer(this->Param(2, 2, true));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const double expected[] = {2.5, 4.5, 10.5, 12.5};
  this->ExpectTop(expected, 4);
}

// Legacy (aligned = false): samples at half pixels; those beyond H - 1 are clamped.
TYPED_TEST(RoIAlignLayerTest, TestForwardLegacyHandClamp) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRamp();
  const double roi[] = {0, 0, 0, 4, 4};
  SetBlob(this->blob_rois_, Shape(1, 5), std::vector<double>(roi, roi + 5));
  RoIAlignLayer<Dtype> layer(this->Param(2, 0, false));  // adaptive: ceil(4 / 2) = 2
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  // samples at 0.5, 1.5, 2.5, 3.5 -> 3 (clamped): bin means 1 and 2.75 per axis
  const double expected[] = {5, 6.75, 12, 13.75};
  this->ExpectTop(expected, 4);
}

// spatial_scale maps image coordinates to the features.
TYPED_TEST(RoIAlignLayerTest, TestForwardSpatialScale) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRamp();
  const double roi[] = {0, 0, 0, 32, 32};
  SetBlob(this->blob_rois_, Shape(1, 5), std::vector<double>(roi, roi + 5));
  RoIAlignLayer<Dtype> layer(this->Param(2, 2, true, 0.125));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const double expected[] = {2.5, 4.5, 10.5, 12.5};
  this->ExpectTop(expected, 4);
}

// Samples with x < -1 contribute 0; those in [-1, 0] are clamped to x = 0; a RoI wholly
// outside gives zeros.
TYPED_TEST(RoIAlignLayerTest, TestForwardOutside) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRamp();
  const double rois[] = {0, -4, 0, 0, 4,
                         0, 10, 10, 14, 14};
  SetBlob(this->blob_rois_, Shape(2, 5), std::vector<double>(rois, rois + 10));
  RoIAlignLayer<Dtype> layer(this->Param(2, 2, true));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const double expected[] = {0, 1, 0, 5, 0, 0, 0, 0};
  this->ExpectTop(expected, 8);
}

// Zero-size RoIs: aligned adaptive takes no sample (0); legacy clamps the size to 1.
TYPED_TEST(RoIAlignLayerTest, TestForwardZeroSizeRoI) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRamp();
  const double roi[] = {0, 1, 1, 1, 1};
  SetBlob(this->blob_rois_, Shape(1, 5), std::vector<double>(roi, roi + 5));
  {
    RoIAlignLayer<Dtype> layer(this->Param(2, 0, true));
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    const double expected[] = {0, 0, 0, 0};
    this->ExpectTop(expected, 4);
  }
  {
    RoIAlignLayer<Dtype> layer(this->Param(2, 0, false));
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    // bins of 0.5 x 0.5 from (1, 1), one sample at each bin centre.
    const double expected[] = {6.25, 6.75, 8.25, 8.75};
    this->ExpectTop(expected, 4);
  }
}

TYPED_TEST(RoIAlignLayerTest, TestZeroRoIs) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRandom();
  this->blob_rois_->Reshape(Shape(0, 5));
  RoIAlignLayer<Dtype> layer(this->Param(2, 2, true));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape(), Shape(0, 3, 2, 2));
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  std::vector<bool> prop(2, false);
  prop[0] = true;
  caffe_set(this->blob_features_->count(), Dtype(5), this->blob_features_->mutable_cpu_diff());
  layer.Backward(this->blob_top_vec_, prop, this->blob_bottom_vec_);
  for (int i = 0; i < this->blob_features_->count(); ++i) {
    EXPECT_EQ(this->blob_features_->cpu_diff()[i], Dtype(0));
  }
}

// Adaptive sampling (sampling_ratio <= 0) takes at most kMaxAdaptiveGrid samples per bin and
// axis: a huge RoI answers at once, with exactly the output of sampling_ratio =
// kMaxAdaptiveGrid (200: some samples on the map; 1e5 and more: every sample off the map).
TYPED_TEST(RoIAlignLayerTest, TestHugeRoIAdaptiveIsCapped) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRamp();
  const double sizes[] = {200, 1e5, 1e9, 1e11};
  for (int s = 0; s < 4; ++s) {
    const double roi[] = {0, -0.5, -0.5, sizes[s], sizes[s]};
    SetBlob(this->blob_rois_, Shape(1, 5), std::vector<double>(roi, roi + 5));
    RoIAlignLayer<Dtype> adaptive(this->Param(1, 0, false));
    adaptive.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    EXPECT_LT(roi_test::ForwardBackwardSeconds(&adaptive, this->blob_bottom_vec_,
              this->blob_top_vec_), roi_test::kHugeRoIMaxSeconds) << "size " << sizes[s];
    Blob<Dtype> expected;
    vector<Blob<Dtype>*> expected_top(1, &expected);
    RoIAlignLayer<Dtype> capped(this->Param(1, roi_util::kMaxAdaptiveGrid, false));
    capped.SetUp(this->blob_bottom_vec_, expected_top);
    capped.Forward(this->blob_bottom_vec_, expected_top);
    roi_test::ExpectSameData(*this->blob_top_, expected);
    if (s == 0) {
      EXPECT_GT(expected.cpu_data()[0], Dtype(0));
    }
  }
}

TYPED_TEST(RoIAlignLayerTest, TestGradientAligned) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRandom();
  RoIAlignLayer<Dtype> layer(this->Param(2, 2, true));
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_, this->blob_top_vec_, 0);
}

TYPED_TEST(RoIAlignLayerTest, TestGradientLegacyAdaptive) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRandom();
  RoIAlignLayer<Dtype> layer(this->Param(2, 0, false));
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_, this->blob_top_vec_, 0);
}

TYPED_TEST(RoIAlignLayerTest, TestCpuGpuParity) {
  typedef typename TypeParam::Dtype Dtype;
  if (Caffe::mode() != Caffe::GPU) return;
  this->FillRandom();
  RoIAlignLayer<Dtype> layer(this->Param(3, 0, true));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  roi_test::ExpectCpuGpuParity(&layer, this->blob_bottom_vec_, this->blob_top_vec_, true, 1e-5);
}

// Bad parameters and shapes stop with a clear message.
class RoIAlignLayerDeathTest : public roi_test::DeathTest {
 protected:
  void Run(const LayerParameter& p, const Blob<float>& rois) {
    Caffe::set_mode(Caffe::CPU);
    Blob<float> features(Shape(2, 1, 4, 4)), r, top;
    r.CopyFrom(rois, false, true);
    vector<Blob<float>*> bottom, tops;
    bottom.push_back(&features);
    bottom.push_back(&r);
    tops.push_back(&top);
    RoIAlignLayer<float> layer(p);
    layer.SetUp(bottom, tops);
    layer.Forward(bottom, tops);
  }
};

TEST_F(RoIAlignLayerDeathTest, TestBadParams) {
  Blob<float> rois(Shape(1, 5));
  caffe_set(5, 1.f, rois.mutable_cpu_data());
  rois.mutable_cpu_data()[0] = 0;
  LayerParameter p;
  p.mutable_roi_align_param()->set_pooled_h(0);
  EXPECT_DEATH(Run(p, rois), "pooled_h must be > 0");
  p.mutable_roi_align_param()->set_pooled_h(2);
  p.mutable_roi_align_param()->set_pooled_w(0);
  EXPECT_DEATH(Run(p, rois), "pooled_w must be > 0");
  p.mutable_roi_align_param()->set_pooled_w(2);
  p.mutable_roi_align_param()->set_spatial_scale(0);
  EXPECT_DEATH(Run(p, rois), "spatial_scale must be > 0");
  // An infinite scale would put every sample off the features (a silent all-zero output).
  p.mutable_roi_align_param()->set_spatial_scale(std::numeric_limits<float>::infinity());
  EXPECT_DEATH(Run(p, rois), "spatial_scale must be > 0 and finite, got inf");
}

TEST_F(RoIAlignLayerDeathTest, TestBadRoIs) {
  LayerParameter p;
  Blob<float> rois4(Shape(3, 4));
  EXPECT_DEATH(Run(p, rois4), "rois must be R x 5");
  Blob<float> rois(Shape(1, 5));
  caffe_set(5, 1.f, rois.mutable_cpu_data());
  rois.mutable_cpu_data()[0] = 2;  // the features have 2 images
  EXPECT_DEATH(Run(p, rois), "batch index 2, outside \\[0, 2\\)");
  rois.mutable_cpu_data()[0] = -1;
  EXPECT_DEATH(Run(p, rois), "batch index -1");
  rois.mutable_cpu_data()[0] = 0;
  rois.mutable_cpu_data()[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_DEATH(Run(p, rois), "roi 0 has a non-finite coordinate");
}

}  // namespace caffe
