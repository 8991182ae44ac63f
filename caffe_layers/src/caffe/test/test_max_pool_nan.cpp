// Max pooling on windows where no value beats -FLT_MAX (caffe_layers/patches/0010-max-pool-nan.patch):
// upstream kept index -1 for them, and Backward_cpu added that output's gradient before its plane
// (into the previous plane, or before the buffer: a corrupted heap after a NaN). With the patch a
// NaN wins (the output is NaN), and index -1 (a window of -inf) sends no gradient, as the GPU's
// backward; ordinary windows are upstream's.
#include <cfloat>
#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/pooling_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

template <typename TypeParam>
class MaxPoolNanTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  enum { kH = 4, kW = 5, kPlane = kH * kW };
  MaxPoolNanTest() : bottom_(new Blob<Dtype>(1, 3, kH, kW)), top_(new Blob<Dtype>()),
                     mask_(new Blob<Dtype>()) {}
  virtual ~MaxPoolNanTest() { delete bottom_; delete top_; delete mask_; }
  // Plane 0 Gaussian, plane 1 NaN, plane 2 -inf.
  virtual void SetUp() {
    FillerParameter fp;
    GaussianFiller<Dtype> filler(fp);
    filler.Fill(bottom_);
    Dtype* x = bottom_->mutable_cpu_data();
    for (int i = 0; i < kPlane; ++i) {
      x[kPlane + i] = std::numeric_limits<Dtype>::quiet_NaN();
      x[2 * kPlane + i] = -std::numeric_limits<Dtype>::infinity();
    }
  }
  void Run(bool mask_top) {
    LayerParameter param;
    PoolingParameter* p = param.mutable_pooling_param();
    p->set_pool(PoolingParameter_PoolMethod_MAX);
    p->set_kernel_size(3);
    p->set_stride(1);
    p->set_pad(1);
    PoolingLayer<Dtype> layer(param);
    vector<Blob<Dtype>*> bottom(1, bottom_), top(1, top_);
    if (mask_top) top.push_back(mask_);
    layer.SetUp(bottom, top);
    layer.Forward(bottom, top);
    const Dtype* x = bottom_->cpu_data();
    const Dtype* y = top_->cpu_data();
    for (int i = 0; i < kH; ++i) {
      for (int j = 0; j < kW; ++j) {
        Dtype best = -FLT_MAX;
        for (int u = std::max(i - 1, 0); u < std::min(i + 2, int(kH)); ++u) {
          for (int v = std::max(j - 1, 0); v < std::min(j + 2, int(kW)); ++v) {
            best = std::max(best, x[u * kW + v]);
          }
        }
        EXPECT_EQ(best, y[i * kW + j]);
        EXPECT_TRUE(std::isnan(y[kPlane + i * kW + j]));
        EXPECT_EQ(Dtype(-FLT_MAX), y[2 * kPlane + i * kW + j]);   // -inf gives upstream's -FLT_MAX
      }
    }
    if (mask_top) {   // planes 0 and 1: an index in the plane; plane 2 (-inf): -1
      for (int k = 0; k < 2 * kPlane; ++k) {
        EXPECT_GE(mask_->cpu_data()[k], 0);
        EXPECT_LT(mask_->cpu_data()[k], Dtype(kPlane));
      }
      for (int k = 2 * kPlane; k < 3 * kPlane; ++k) EXPECT_EQ(Dtype(-1), mask_->cpu_data()[k]);
    }
    caffe_set(top_->count(), Dtype(1), top_->mutable_cpu_diff());
    layer.Backward(top, vector<bool>(1, true), bottom);
    const Dtype* dx = bottom_->cpu_diff();
    for (int c = 0; c < 3; ++c) {   // planes 0 and 1 get their 20 outputs' gradient, plane 2 none
      Dtype sum = 0;
      for (int i = 0; i < kPlane; ++i) sum += dx[c * kPlane + i];
      EXPECT_EQ(Dtype(c < 2 ? kPlane : 0), sum) << "plane " << c;
    }
  }
  Blob<Dtype>* const bottom_;
  Blob<Dtype>* const top_;
  Blob<Dtype>* const mask_;
};

TYPED_TEST_CASE(MaxPoolNanTest, TestDtypesAndDevices);

TYPED_TEST(MaxPoolNanTest, TestNanAndInfWindows) {
  this->Run(false);
}

TYPED_TEST(MaxPoolNanTest, TestNanAndInfWindowsTopMask) {
  this->Run(true);
}

}  // namespace caffe
