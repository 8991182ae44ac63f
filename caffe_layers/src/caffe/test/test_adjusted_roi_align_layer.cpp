#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/adjust_back_layer.hpp"
#include "caffe/layers/adjusted_roi_align_layer.hpp"
#include "caffe/util/roi_align_util.hpp"
#include "caffe/layers/roi_align_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/test/test_roi_layers_util.hpp"

namespace caffe {

using roi_test::SetBlob;
using roi_test::Shape;

template <typename TypeParam>
class AdjustedRoIAlignLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  AdjustedRoIAlignLayerTest()
      : blob_features_(new Blob<Dtype>()), blob_rois_(new Blob<Dtype>()),
        blob_faces_(new Blob<Dtype>()), blob_top_(new Blob<Dtype>()),
        blob_adjusted_(new Blob<Dtype>()) {}
  virtual void SetUp() {
    blob_bottom_vec_.push_back(blob_features_);
    blob_bottom_vec_.push_back(blob_rois_);
    blob_bottom_vec_.push_back(blob_faces_);
    blob_top_vec_.push_back(blob_top_);
    blob_top_vec_.push_back(blob_adjusted_);
  }
  virtual ~AdjustedRoIAlignLayerTest() {
    delete blob_features_; delete blob_rois_; delete blob_faces_;
    delete blob_top_; delete blob_adjusted_;
  }
  // 2 x 3 x 6 x 6 random features, 3 rois: face at the top, no face, face outside the roi.
  void FillRandom() {
    blob_features_->Reshape(Shape(2, 3, 6, 6));
    FillerParameter fp;
    GaussianFiller<Dtype> filler(fp);
    filler.Fill(blob_features_);
    const double rois[] = {0, 0.3, 0.6, 4.2, 5.1,
                           0, -1.7, 2.2, 3.1, 8.4,
                           1, 1.1, 0.4, 5.6, 3.3};
    const double faces[] = {0, 1.5, 2.0, 2.5, 3.0, 1,
                            0, 0, 0, 0, 0, 0,
                            1, 4.0, 0.0, 5.0, 1.0, 1};
    SetBlob(blob_rois_, Shape(3, 5), std::vector<double>(rois, rois + 15));
    SetBlob(blob_faces_, Shape(3, 6), std::vector<double>(faces, faces + 18));
  }
  LayerParameter Param(int pooled, int sampling_ratio, bool aligned, float fx = 0.5,
                       float fy = 0.2, float scale = 1) {
    LayerParameter p;
    p.set_name("adjusted_roi_align_test");
    AdjustedRoIAlignParameter* r = p.mutable_adjusted_roi_align_param();
    r->set_pooled_h(pooled);
    r->set_pooled_w(pooled);
    r->set_sampling_ratio(sampling_ratio);
    r->set_aligned(aligned);
    r->set_spatial_scale(scale);
    r->set_face_x(fx);
    r->set_face_y(fy);
    return p;
  }

  Blob<Dtype>* const blob_features_;
  Blob<Dtype>* const blob_rois_;
  Blob<Dtype>* const blob_faces_;
  Blob<Dtype>* const blob_top_;
  Blob<Dtype>* const blob_adjusted_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(AdjustedRoIAlignLayerTest, TestDtypesAndDevices);

TYPED_TEST(AdjustedRoIAlignLayerTest, TestSetupAndDefaults) {
  typedef typename TypeParam::Dtype Dtype;
  AdjustedRoIAlignParameter d;
  EXPECT_EQ(d.pooled_h(), 41u);
  EXPECT_EQ(d.pooled_w(), 41u);
  EXPECT_FLOAT_EQ(d.spatial_scale(), 0.125f);
  EXPECT_FLOAT_EQ(d.face_x(), 0.5f);
  EXPECT_FLOAT_EQ(d.face_y(), 0.2f);
  this->FillRandom();
  AdjustedRoIAlignLayer<Dtype> layer(this->Param(2, 2, true));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape(), Shape(3, 3, 2, 2));
  EXPECT_EQ(this->blob_adjusted_->shape(), Shape(3, 5));
}

// The hand-computed adjustment of one box.
TYPED_TEST(AdjustedRoIAlignLayerTest, TestAdjustedRoIHand) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRandom();
  const double roi[] = {1, 0, 0, 10, 20};
  const double face[] = {1, 4, 1, 6, 3, 1};  // centre (5, 2)
  SetBlob(this->blob_rois_, Shape(1, 5), std::vector<double>(roi, roi + 5));
  SetBlob(this->blob_faces_, Shape(1, 6), std::vector<double>(face, face + 6));
  AdjustedRoIAlignLayer<Dtype> layer(this->Param(2, 2, true, 0.5, 0.2));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  // W = max(5 / 0.5, 5 / 0.5) = 10; H = max(2 / 0.2, 18 / 0.8) = 22.5, Y1 = 2 - 0.2 * 22.5.
  const double expected[] = {1, 0, -2.5, 10, 20};
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(this->blob_adjusted_->cpu_data()[i], expected[i], 1e-5) << i;
  }
}

// Properties on random boxes: the face centre lands at (face_x, face_y) of the adjusted
// box, which contains the original one; without a valid face the box is unchanged.
TYPED_TEST(AdjustedRoIAlignLayerTest, TestAdjustmentProperties) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRandom();
  const int n = 50;
  Blob<Dtype> uni(Shape(n, 8));
  FillerParameter fp;
  fp.set_min(0);
  fp.set_max(1);
  UniformFiller<Dtype> filler(fp);
  filler.Fill(&uni);
  const Dtype* u = uni.cpu_data();
  std::vector<double> rois(5 * n), faces(6 * n);
  for (int i = 0; i < n; ++i) {
    const double x1 = 40 * u[8 * i], y1 = 40 * u[8 * i + 1];
    const double x2 = x1 + 1 + 30 * u[8 * i + 2], y2 = y1 + 1 + 30 * u[8 * i + 3];
    const double cx = x1 + (x2 - x1) * u[8 * i + 4], cy = y1 + (y2 - y1) * u[8 * i + 5];
    const double hw = 0.5 + 3 * u[8 * i + 6];
    rois[5 * i] = i % 2; rois[5 * i + 1] = x1; rois[5 * i + 2] = y1;
    rois[5 * i + 3] = x2; rois[5 * i + 4] = y2;
    faces[6 * i] = i % 2; faces[6 * i + 1] = cx - hw; faces[6 * i + 2] = cy - hw;
    faces[6 * i + 3] = cx + hw; faces[6 * i + 4] = cy + hw;
    faces[6 * i + 5] = (i % 5 == 4) ? 0 : 1;
  }
  SetBlob(this->blob_rois_, Shape(n, 5), rois);
  SetBlob(this->blob_faces_, Shape(n, 6), faces);
  const float fx = 0.3f, fy = 0.15f;  // as the float proto fields hold them
  AdjustedRoIAlignLayer<Dtype> layer(this->Param(2, 2, true, fx, fy, 0.125));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const Dtype* a = this->blob_adjusted_->cpu_data();
  const double tol = sizeof(Dtype) == 4 ? 1e-4 : 1e-9;
  for (int i = 0; i < n; ++i) {
    const double* r = &rois[5 * i];
    const double* f = &faces[6 * i];
    EXPECT_EQ(a[5 * i], r[0]);
    if (f[5] == 0) {
      for (int k = 1; k < 5; ++k) EXPECT_NEAR(a[5 * i + k], r[k], tol) << i;
      continue;
    }
    const double cx = 0.5 * (f[1] + f[3]), cy = 0.5 * (f[2] + f[4]);
    const double w = a[5 * i + 3] - a[5 * i + 1], h = a[5 * i + 4] - a[5 * i + 2];
    EXPECT_NEAR((cx - a[5 * i + 1]) / w, fx, tol) << i;
    EXPECT_NEAR((cy - a[5 * i + 2]) / h, fy, tol) << i;
    EXPECT_LE(a[5 * i + 1], r[1] + tol) << i;
    EXPECT_LE(a[5 * i + 2], r[2] + tol) << i;
    EXPECT_GE(a[5 * i + 3], r[3] - tol) << i;
    EXPECT_GE(a[5 * i + 4], r[4] - tol) << i;
  }
}

// The features of a RoI without a valid face equal RoIAlign's; a RoI with a face equals
// RoIAlign of its adjusted box.
TYPED_TEST(AdjustedRoIAlignLayerTest, TestMatchesRoIAlign) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRandom();
  AdjustedRoIAlignLayer<Dtype> layer(this->Param(3, 0, false));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  LayerParameter p;
  p.mutable_roi_align_param()->set_pooled_h(3);
  p.mutable_roi_align_param()->set_pooled_w(3);
  for (int pass = 0; pass < 2; ++pass) {
    Blob<Dtype> top;
    vector<Blob<Dtype>*> bottom(2), tops(1, &top);
    bottom[0] = this->blob_features_;
    bottom[1] = pass == 0 ? this->blob_rois_ : this->blob_adjusted_;
    RoIAlignLayer<Dtype> plain(p);
    plain.SetUp(bottom, tops);
    plain.Forward(bottom, tops);
    const int per_roi = top.count(1);
    for (int r = 0; r < 3; ++r) {
      if (pass == 0 && r != 1) continue;  // roi 1 has no valid face
      for (int i = 0; i < per_roi; ++i) {
        EXPECT_NEAR(this->blob_top_->cpu_data()[r * per_roi + i],
                    top.cpu_data()[r * per_roi + i], 1e-6) << "pass " << pass << " roi " << r;
      }
    }
  }
  for (int k = 0; k < 5; ++k) {
    EXPECT_EQ(this->blob_adjusted_->cpu_data()[5 + k], this->blob_rois_->cpu_data()[5 + k]);
  }
}

TYPED_TEST(AdjustedRoIAlignLayerTest, TestZeroRoIs) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRandom();
  this->blob_rois_->Reshape(Shape(0, 5));
  this->blob_faces_->Reshape(Shape(0, 6));
  AdjustedRoIAlignLayer<Dtype> layer(this->Param(2, 2, true));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape(), Shape(0, 3, 2, 2));
  EXPECT_EQ(this->blob_adjusted_->shape(), Shape(0, 5));
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  std::vector<bool> prop(3, false);
  prop[0] = true;
  caffe_set(this->blob_features_->count(), Dtype(5), this->blob_features_->mutable_cpu_diff());
  layer.Backward(this->blob_top_vec_, prop, this->blob_bottom_vec_);
  for (int i = 0; i < this->blob_features_->count(); ++i) {
    EXPECT_EQ(this->blob_features_->cpu_diff()[i], Dtype(0));
  }
}

// Adaptive sampling on a huge RoI is capped as in RoIAlign: fast, and equal to
// sampling_ratio = kMaxAdaptiveGrid (every RoI has a huge side; a face makes its box larger still).
TYPED_TEST(AdjustedRoIAlignLayerTest, TestHugeRoIAdaptiveIsCapped) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRandom();
  const double sizes[] = {1e5, 1e9, 1e11};
  for (int s = 0; s < 3; ++s) {
    const double big = sizes[s];
    const double rois[] = {0, -1, -1, big, big, 0, 0, 0, big, big / 2, 1, -big, -big, big, big};
    const double faces[] = {0, big / 2, 1, big / 2 + 1, 2, 1,
                            0, 0, 0, 0, 0, 0,
                            1, 0, 0, 1, 1, 1};
    SetBlob(this->blob_rois_, Shape(3, 5), std::vector<double>(rois, rois + 15));
    SetBlob(this->blob_faces_, Shape(3, 6), std::vector<double>(faces, faces + 18));
    AdjustedRoIAlignLayer<Dtype> adaptive(this->Param(2, 0, false));
    adaptive.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    EXPECT_LT(roi_test::ForwardBackwardSeconds(&adaptive, this->blob_bottom_vec_,
              this->blob_top_vec_), roi_test::kHugeRoIMaxSeconds) << "size " << big;
    Blob<Dtype> expected, expected_adjusted;
    vector<Blob<Dtype>*> expected_top;
    expected_top.push_back(&expected);
    expected_top.push_back(&expected_adjusted);
    AdjustedRoIAlignLayer<Dtype> capped(this->Param(2, roi_util::kMaxAdaptiveGrid, false));
    capped.SetUp(this->blob_bottom_vec_, expected_top);
    capped.Forward(this->blob_bottom_vec_, expected_top);
    roi_test::ExpectSameData(*this->blob_top_, expected);
  }
}

TYPED_TEST(AdjustedRoIAlignLayerTest, TestGradient) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRandom();
  AdjustedRoIAlignLayer<Dtype> layer(this->Param(2, 2, true));
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_, this->blob_top_vec_, 0);
}

TYPED_TEST(AdjustedRoIAlignLayerTest, TestGradientLegacyAdaptive) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillRandom();
  AdjustedRoIAlignLayer<Dtype> layer(this->Param(2, 0, false, 0.4, 0.3));
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_, this->blob_top_vec_, 0);
}

TYPED_TEST(AdjustedRoIAlignLayerTest, TestCpuGpuParity) {
  typedef typename TypeParam::Dtype Dtype;
  if (Caffe::mode() != Caffe::GPU) return;
  this->FillRandom();
  AdjustedRoIAlignLayer<Dtype> layer(this->Param(3, 0, true));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  roi_test::ExpectCpuGpuParity(&layer, this->blob_bottom_vec_, this->blob_top_vec_, true, 1e-5);
}

// AdjustBack(AdjustedRoIAlign(F)) reproduces RoIAlign(F) in the original box: exactly
// (up to rounding) for features linear in x and y on the output pixels whose position in
// the adjusted map lies between bin centres; within 2% of the feature range for smooth
// features everywhere.
TYPED_TEST(AdjustedRoIAlignLayerTest, TestAdjustBackInvertsAdjustment) {
  typedef typename TypeParam::Dtype Dtype;
  const int S = 48, P = 16;
  const double rois[] = {0, 12, 10, 30, 36, 0, 6, 8, 26, 30};
  const double faces[] = {0, 19, 14, 25, 20, 1, 0, 8, 10, 12, 14, 1};  // centres (22, 17), (10, 12)
  for (int kind = 0; kind < 2; ++kind) {
    std::vector<double> f(2 * S * S);
    for (int c = 0; c < 2; ++c) {
      for (int y = 0; y < S; ++y) {
        for (int x = 0; x < S; ++x) {
          f[(c * S + y) * S + x] = kind == 0 ? (c + 1) * 0.5 * x - 0.25 * y + c
              : std::sin(0.11 * x + 0.07 * y * (c + 1)) + std::cos(0.05 * y);
        }
      }
    }
    SetBlob(this->blob_features_, Shape(1, 2, S, S), f);
    SetBlob(this->blob_rois_, Shape(2, 5), std::vector<double>(rois, rois + 10));
    SetBlob(this->blob_faces_, Shape(2, 6), std::vector<double>(faces, faces + 12));
    AdjustedRoIAlignLayer<Dtype> adj(this->Param(P, 2, true, 0.5, 0.2, 1));
    adj.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    adj.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    Blob<Dtype> back, plain_top;
    vector<Blob<Dtype>*> bb(3), bt(1, &back);
    bb[0] = this->blob_top_; bb[1] = this->blob_adjusted_; bb[2] = this->blob_rois_;
    LayerParameter pb;
    AdjustBackLayer<Dtype> ab(pb);
    ab.SetUp(bb, bt);
    ab.Forward(bb, bt);
    LayerParameter pr;
    pr.mutable_roi_align_param()->set_pooled_h(P);
    pr.mutable_roi_align_param()->set_pooled_w(P);
    pr.mutable_roi_align_param()->set_sampling_ratio(2);
    pr.mutable_roi_align_param()->set_aligned(true);
    vector<Blob<Dtype>*> rb(2), rt(1, &plain_top);
    rb[0] = this->blob_features_; rb[1] = this->blob_rois_;
    RoIAlignLayer<Dtype> ra(pr);
    ra.SetUp(rb, rt);
    ra.Forward(rb, rt);
    const Dtype* a = this->blob_adjusted_->cpu_data();
    int checked = 0;
    for (int r = 0; r < 2; ++r) {
      for (int c = 0; c < 2; ++c) {
        for (int i = 0; i < P; ++i) {
          for (int j = 0; j < P; ++j) {
            const int idx = ((r * 2 + c) * P + i) * P + j;
            const double got = back.cpu_data()[idx], want = plain_top.cpu_data()[idx];
            if (kind == 1) {
              EXPECT_NEAR(got, want, 0.02 * 4) << "smooth r " << r << " c " << c << " " << i << "," << j;
              ++checked;
              continue;
            }
            const double x = rois[5 * r + 1] + (j + 0.5) * (rois[5 * r + 3] - rois[5 * r + 1]) / P;
            const double y = rois[5 * r + 2] + (i + 0.5) * (rois[5 * r + 4] - rois[5 * r + 2]) / P;
            const double u = (x - a[5 * r + 1]) / (a[5 * r + 3] - a[5 * r + 1]) * P - 0.5;
            const double v = (y - a[5 * r + 2]) / (a[5 * r + 4] - a[5 * r + 2]) * P - 0.5;
            if (u < 0 || v < 0 || u > P - 1 || v > P - 1) continue;
            EXPECT_NEAR(got, want, 1e-4 * (1 + std::fabs(want))) << "linear r " << r << " c " << c
                << " " << i << "," << j;
            ++checked;
          }
        }
      }
    }
    EXPECT_GT(checked, kind == 0 ? P * P : 4 * P * P - 1);
  }
}

class AdjustedRoIAlignLayerDeathTest : public roi_test::DeathTest {
 protected:
  void Run(const LayerParameter& p, int num_faces) {
    Caffe::set_mode(Caffe::CPU);
    Blob<float> features(Shape(1, 1, 4, 4)), rois(Shape(2, 5)), faces(Shape(num_faces, 6));
    Blob<float> top, adjusted;
    caffe_set(rois.count(), 0.f, rois.mutable_cpu_data());
    caffe_set(faces.count(), 0.f, faces.mutable_cpu_data());
    vector<Blob<float>*> bottom, tops;
    bottom.push_back(&features); bottom.push_back(&rois); bottom.push_back(&faces);
    tops.push_back(&top); tops.push_back(&adjusted);
    AdjustedRoIAlignLayer<float> layer(p);
    layer.SetUp(bottom, tops);
    layer.Forward(bottom, tops);
  }
};

TEST_F(AdjustedRoIAlignLayerDeathTest, TestBadParams) {
  LayerParameter p;
  p.mutable_adjusted_roi_align_param()->set_face_x(0);
  EXPECT_DEATH(Run(p, 2), "face_x must lie in \\(0, 1\\)");
  p.mutable_adjusted_roi_align_param()->set_face_x(0.5);
  p.mutable_adjusted_roi_align_param()->set_face_y(1);
  EXPECT_DEATH(Run(p, 2), "face_y must lie in \\(0, 1\\)");
  p.mutable_adjusted_roi_align_param()->set_face_y(0.2);
  p.mutable_adjusted_roi_align_param()->set_pooled_h(0);
  EXPECT_DEATH(Run(p, 2), "pooled_h must be > 0");
  p.mutable_adjusted_roi_align_param()->set_pooled_h(3);
  p.mutable_adjusted_roi_align_param()->set_spatial_scale(-1);
  EXPECT_DEATH(Run(p, 2), "spatial_scale must be > 0");
  p.mutable_adjusted_roi_align_param()->set_spatial_scale(
      std::numeric_limits<float>::infinity());
  EXPECT_DEATH(Run(p, 2), "spatial_scale must be > 0 and finite, got inf");
}

TEST_F(AdjustedRoIAlignLayerDeathTest, TestFacesRowMismatch) {
  LayerParameter p;
  EXPECT_DEATH(Run(p, 3), "one row per roi");
}

TEST_F(AdjustedRoIAlignLayerDeathTest, TestNonFiniteFace) {
  Blob<float> features(Shape(1, 1, 4, 4)), rois(Shape(1, 5)), faces(Shape(1, 6));
  Blob<float> top, adjusted;
  caffe_set(rois.count(), 1.f, rois.mutable_cpu_data());
  rois.mutable_cpu_data()[0] = 0;
  caffe_set(faces.count(), 1.f, faces.mutable_cpu_data());
  faces.mutable_cpu_data()[2] = std::numeric_limits<float>::infinity();
  vector<Blob<float>*> bottom, tops;
  bottom.push_back(&features); bottom.push_back(&rois); bottom.push_back(&faces);
  tops.push_back(&top); tops.push_back(&adjusted);
  LayerParameter p;
  AdjustedRoIAlignLayer<float> layer(p);
  layer.SetUp(bottom, tops);
  EXPECT_DEATH(layer.Forward(bottom, tops), "major face 0 is valid but has a non-finite");
  faces.mutable_cpu_data()[5] = 0;  // an invalid row is never read
  layer.Forward(bottom, tops);
  EXPECT_EQ(adjusted.cpu_data()[2], 1.f);
}

}  // namespace caffe
