// Helpers shared by the GPSNet RoI layer tests (test_roi_align_layer.cpp and friends).
#ifndef CAFFE_TEST_ROI_LAYERS_UTIL_HPP_
#define CAFFE_TEST_ROI_LAYERS_UTIL_HPP_

#include <ctime>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layer.hpp"

namespace caffe {
namespace roi_test {

// Reshapes blob to shape and fills it with values (row-major).
template <typename Dtype>
void SetBlob(Blob<Dtype>* blob, const std::vector<int>& shape, const std::vector<double>& values) {
  blob->Reshape(shape);
  CHECK_EQ(blob->count(), static_cast<int>(values.size()));
  if (values.empty()) return;  // an empty blob has no memory to write
  Dtype* d = blob->mutable_cpu_data();
  for (int i = 0; i < blob->count(); ++i) d[i] = static_cast<Dtype>(values[i]);
}

inline std::vector<int> Shape(int a, int b) {
  std::vector<int> s(2);
  s[0] = a; s[1] = b;
  return s;
}

inline std::vector<int> Shape(int a, int b, int c, int d) {
  std::vector<int> s(4);
  s[0] = a; s[1] = b; s[2] = c; s[3] = d;
  return s;
}

// Runs Forward and Backward (top diff = a fixed pattern) in CPU mode and in GPU mode and
// expects the same tops and bottom[0] diffs. Does nothing in CPU_ONLY builds.
template <typename Dtype>
void ExpectCpuGpuParity(Layer<Dtype>* layer, const std::vector<Blob<Dtype>*>& bottom,
    const std::vector<Blob<Dtype>*>& top, bool backward, double tol) {
#ifndef CPU_ONLY
  const Caffe::Brew mode = Caffe::mode();
  std::vector<std::vector<Dtype> > tops[2];
  std::vector<Dtype> diffs[2];
  for (int m = 0; m < 2; ++m) {
    Caffe::set_mode(m == 0 ? Caffe::CPU : Caffe::GPU);
    layer->Forward(bottom, top);
    for (size_t t = 0; t < top.size(); ++t) {
      if (top[t]->count() == 0) {  // an empty blob has no memory to read
        tops[m].push_back(std::vector<Dtype>());
        continue;
      }
      tops[m].push_back(std::vector<Dtype>(top[t]->cpu_data(),
                                           top[t]->cpu_data() + top[t]->count()));
    }
    if (backward && bottom[0]->count() > 0 && top[0]->count() > 0) {
      Dtype* td = top[0]->mutable_cpu_diff();
      for (int i = 0; i < top[0]->count(); ++i) td[i] = Dtype((i % 7) - 3) / Dtype(3);
      std::vector<bool> prop(bottom.size(), false);
      prop[0] = true;
      layer->Backward(top, prop, bottom);
      diffs[m].assign(bottom[0]->cpu_diff(), bottom[0]->cpu_diff() + bottom[0]->count());
    }
  }
  for (size_t t = 0; t < top.size(); ++t) {
    for (size_t i = 0; i < tops[0][t].size(); ++i) {
      EXPECT_NEAR(tops[0][t][i], tops[1][t][i], tol) << "top " << t << " element " << i;
    }
  }
  for (size_t i = 0; i < diffs[0].size(); ++i) {
    EXPECT_NEAR(diffs[0][i], diffs[1][i], tol) << "bottom diff element " << i;
  }
  Caffe::set_mode(mode);
#endif
}

// A layer given a huge RoI must answer within this many seconds (CPU time of Forward plus
// Backward): unbounded adaptive sampling took minutes, so a regression fails fast here.
const double kHugeRoIMaxSeconds = 1.0;

// Runs Forward and Backward (top diff = 1) of bottom[0]; returns the CPU seconds they took.
template <typename Dtype>
double ForwardBackwardSeconds(Layer<Dtype>* layer, const std::vector<Blob<Dtype>*>& bottom,
    const std::vector<Blob<Dtype>*>& top) {
  const std::clock_t start = std::clock();
  layer->Forward(bottom, top);
  Dtype* td = top[0]->mutable_cpu_diff();
  for (int i = 0; i < top[0]->count(); ++i) td[i] = Dtype(1);
  std::vector<bool> prop(bottom.size(), false);
  prop[0] = true;
  layer->Backward(top, prop, bottom);
  if (Caffe::mode() == Caffe::GPU) bottom[0]->cpu_diff();  // waits for the kernels
  return static_cast<double>(std::clock() - start) / CLOCKS_PER_SEC;
}

// Expects equal values in two blobs of the same count.
template <typename Dtype>
void ExpectSameData(const Blob<Dtype>& a, const Blob<Dtype>& b) {
  ASSERT_EQ(a.count(), b.count());
  for (int i = 0; i < a.count(); ++i) {
    EXPECT_EQ(a.cpu_data()[i], b.cpu_data()[i]) << "element " << i;
  }
}

// Death tests (bad parameters / shapes stop with a CHECK message) in a re-executed child
// ("threadsafe" style): no fork() of a process holding threads or a CUDA context.
class DeathTest : public ::testing::Test {
 protected:
  virtual void SetUp() {
    ::testing::FLAGS_gtest_death_test_style = "threadsafe";
    Caffe::set_mode(Caffe::CPU);
  }
};

}  // namespace roi_test
}  // namespace caffe

#endif  // CAFFE_TEST_ROI_LAYERS_UTIL_HPP_
