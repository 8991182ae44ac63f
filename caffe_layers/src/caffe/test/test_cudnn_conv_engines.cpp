// The cuDNN convolution engine against the Caffe engine (GPSNet patch 0004, docs/fork.md
// "cuDNN"): dilated, strided and grouped convolutions, one and two bottoms, a shape change
// between forwards (a new search, then a cached one), batches sharing a search and layers
// sharing one (the process-wide cache; its rules on the host: test_cudnn_conv_search.cpp).
// Forward outputs, bottom, weight and bias gradients must agree. GPU only; compiled into test.testbin when USE_CUDNN.
#ifdef USE_CUDNN
#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layer_factory.hpp"
#include "caffe/layers/conv_layer.hpp"
#include "caffe/layers/cudnn_conv_layer.hpp"
#include "caffe/util/cudnn_conv_search.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/math_mode.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

template <typename Dtype>
class CuDNNConvEnginesTest : public GPUDeviceTest<Dtype> {
 protected:
  typedef vector<int> Shape;

  static Shape MakeShape(int n, int c, int h, int w) {
    Shape s(4);
    s[0] = n; s[1] = c; s[2] = h; s[3] = w;
    return s;
  }

  static LayerParameter Param(int num_output, int kernel, int stride, int pad,
                              int dilation, int group, bool bias) {
    LayerParameter p;
    p.set_name("conv");
    p.set_type("Convolution");
    ConvolutionParameter* c = p.mutable_convolution_param();
    c->set_num_output(num_output);
    c->add_kernel_size(kernel);
    c->add_stride(stride);
    c->add_pad(pad);
    c->add_dilation(dilation);
    c->set_group(group);
    c->set_bias_term(bias);
    return p;
  }

  // Relative to max(1, |reference|): FP32 (cuDNN's FFT and Winograd algorithms round
  // differently from im2col + GEMM), TF32 (GPSNET_TF32=1: 10-bit mantissas), FP64.
  static double Tolerance() {
    if (sizeof(Dtype) == sizeof(double)) return 1e-7;
    return TF32Enabled() ? 2e-2 : 1e-3;
  }

  static void Gaussian(Blob<Dtype>* b, Dtype std) {
    FillerParameter fp;
    fp.set_std(std);
    GaussianFiller<Dtype> filler(fp);
    filler.Fill(b);
  }

  static void ExpectNear(const Blob<Dtype>& ref, const Blob<Dtype>& got, bool diff,
                         const std::string& what) {
    ASSERT_TRUE(ref.shape() == got.shape()) << what << ": " << ref.shape_string()
                                            << " vs " << got.shape_string();
    const Dtype* r = diff ? ref.cpu_diff() : ref.cpu_data();
    const Dtype* g = diff ? got.cpu_diff() : got.cpu_data();
    double worst = 0;
    int at = -1;
    for (int i = 0; i < ref.count(); ++i) {
      const double err = std::fabs(static_cast<double>(r[i]) - g[i]) /
          std::max(1.0, std::fabs(static_cast<double>(r[i])));
      if (!(err <= worst)) { worst = err; at = i; }  // (a NaN is the worst)
    }
    EXPECT_LE(worst, Tolerance()) << what << ": worst at " << at << " of "
        << ref.count() << ": Caffe " << (at >= 0 ? r[at] : 0) << ", cuDNN "
        << (at >= 0 ? g[at] : 0);
  }

  // A CAFFE-engine and a CUDNN-engine layer with the same parameters and weights run on the
  // same bottoms, once per shape in turn (the same two layers: a new shape is a Reshape).
  void Compare(LayerParameter param, const vector<Shape>& shapes, int num_bottoms) {
    param.mutable_convolution_param()->set_engine(ConvolutionParameter_Engine_CAFFE);
    ConvolutionLayer<Dtype> caffe_layer(param);
    param.mutable_convolution_param()->set_engine(ConvolutionParameter_Engine_CUDNN);
    CuDNNConvolutionLayer<Dtype> cudnn_layer(param);
    vector<shared_ptr<Blob<Dtype> > > blobs;
    vector<Blob<Dtype>*> bottom_ref, bottom, top_ref, top;
    for (int b = 0; b < num_bottoms; ++b) {
      for (int k = 0; k < 4; ++k) blobs.push_back(shared_ptr<Blob<Dtype> >(new Blob<Dtype>()));
      bottom_ref.push_back(blobs[4 * b].get());
      bottom.push_back(blobs[4 * b + 1].get());
      top_ref.push_back(blobs[4 * b + 2].get());
      top.push_back(blobs[4 * b + 3].get());
    }
    Blob<Dtype> noise;
    for (int s = 0; s < shapes.size(); ++s) {
      std::ostringstream step;
      step << "shape " << s << " (" << Blob<Dtype>(shapes[s]).shape_string() << ")";
      for (int b = 0; b < num_bottoms; ++b) {
        bottom_ref[b]->Reshape(shapes[s]);
        Gaussian(bottom_ref[b], 1);
        bottom[b]->CopyFrom(*bottom_ref[b], false, true);
      }
      if (s == 0) {
        caffe_layer.SetUp(bottom_ref, top_ref);
        cudnn_layer.SetUp(bottom, top);
        ASSERT_EQ(caffe_layer.blobs().size(), cudnn_layer.blobs().size());
        for (int k = 0; k < caffe_layer.blobs().size(); ++k) {
          Gaussian(caffe_layer.blobs()[k].get(), 0.1);
          cudnn_layer.blobs()[k]->CopyFrom(*caffe_layer.blobs()[k]);
        }
      }
      caffe_layer.Forward(bottom_ref, top_ref);  // (Forward reshapes first)
      cudnn_layer.Forward(bottom, top);
      for (int b = 0; b < num_bottoms; ++b) {
        ExpectNear(*top_ref[b], *top[b], false, step.str() + ": top");
        noise.ReshapeLike(*top_ref[b]);
        Gaussian(&noise, 1);
        caffe_copy(noise.count(), noise.cpu_data(), top_ref[b]->mutable_cpu_diff());
        caffe_copy(noise.count(), noise.cpu_data(), top[b]->mutable_cpu_diff());
      }
      for (int k = 0; k < caffe_layer.blobs().size(); ++k) {
        caffe_gpu_set(caffe_layer.blobs()[k]->count(), Dtype(0),
                      caffe_layer.blobs()[k]->mutable_gpu_diff());
        caffe_gpu_set(cudnn_layer.blobs()[k]->count(), Dtype(0),
                      cudnn_layer.blobs()[k]->mutable_gpu_diff());
      }
      const vector<bool> propagate_down(num_bottoms, true);
      caffe_layer.Backward(top_ref, propagate_down, bottom_ref);
      cudnn_layer.Backward(top, propagate_down, bottom);
      for (int b = 0; b < num_bottoms; ++b) {
        ExpectNear(*bottom_ref[b], *bottom[b], true, step.str() + ": bottom diff");
      }
      ExpectNear(*caffe_layer.blobs()[0], *cudnn_layer.blobs()[0], true,
                 step.str() + ": weight diff");
      if (caffe_layer.blobs().size() > 1) {
        ExpectNear(*caffe_layer.blobs()[1], *cudnn_layer.blobs()[1], true,
                   step.str() + ": bias diff");
      }
    }
  }
};

TYPED_TEST_CASE(CuDNNConvEnginesTest, TestDtypes);

TYPED_TEST(CuDNNConvEnginesTest, TestDilated) {
  vector<vector<int> > shapes(1, this->MakeShape(2, 4, 9, 10));
  this->Compare(this->Param(6, 3, 1, 2, 2, 1, true), shapes, 1);
}

TYPED_TEST(CuDNNConvEnginesTest, TestDilatedStridedNoBias) {
  vector<vector<int> > shapes(1, this->MakeShape(2, 4, 11, 8));
  this->Compare(this->Param(5, 3, 2, 1, 3, 1, false), shapes, 1);
}

TYPED_TEST(CuDNNConvEnginesTest, TestGroupedTwoBottoms) {
  vector<vector<int> > shapes(1, this->MakeShape(2, 4, 8, 9));
  this->Compare(this->Param(6, 3, 2, 1, 1, 2, true), shapes, 2);
}

TYPED_TEST(CuDNNConvEnginesTest, TestGroupedDilated) {
  vector<vector<int> > shapes(1, this->MakeShape(2, 4, 10, 9));
  this->Compare(this->Param(6, 3, 1, 2, 2, 2, true), shapes, 1);
}

// A new shape (batch and spatial size) between two forwards: searched again; then the
// first shape once more: its algorithms come from the layer's cache.
TYPED_TEST(CuDNNConvEnginesTest, TestShapeChange) {
  vector<vector<int> > shapes;
  shapes.push_back(this->MakeShape(2, 4, 9, 10));
  shapes.push_back(this->MakeShape(3, 4, 13, 7));
  shapes.push_back(this->MakeShape(2, 4, 9, 10));
  this->Compare(this->Param(6, 3, 1, 2, 2, 2, true), shapes, 1);
}

// The process-wide cache (util/cudnn_conv_search.hpp): batches of one power-of-two bucket take
// the bucket's algorithms (after cuDNN reports their workspace for each shape) and stay right; the
// next bucket is searched. (A geometry of its own, new at each run of the test in the process
// (--gtest_repeat), so that no earlier entry counts.)
TYPED_TEST(CuDNNConvEnginesTest, TestBatchesOfOneBucketShareOneSearch) {
  static int run = 0;
  const int w = 13 + run++;
  cudnn::ConvAlgoCache& cache = cudnn::ConvAlgoCache::Global();
  const int searches = cache.searches(), hits = cache.hits();
  vector<vector<int> > shapes;
  shapes.push_back(this->MakeShape(5, 3, 11, w));  // bucket 8: searched
  shapes.push_back(this->MakeShape(7, 3, 11, w));  // bucket 8: the cache's
  shapes.push_back(this->MakeShape(8, 3, 11, w));  // bucket 8: the cache's
  shapes.push_back(this->MakeShape(9, 3, 11, w));  // bucket 16: searched
  this->Compare(this->Param(5, 3, 1, 3, 3, 1, true), shapes, 1);
  EXPECT_EQ(searches + 2, cache.searches());
  EXPECT_EQ(hits + 2, cache.hits());
}

// Two layers of one geometry share one search; a TEST layer searches its forward only (its
// backward, with the algorithms that need no workspace, is still right), and a TRAIN layer of
// the same geometry then searches all three operations.
TYPED_TEST(CuDNNConvEnginesTest, TestLayersOfOneGeometryShareOneSearch) {
  static int run = 0;
  const int w = 11 + run++;
  cudnn::ConvAlgoCache& cache = cudnn::ConvAlgoCache::Global();
  const int searches = cache.searches();
  vector<vector<int> > shapes(1, this->MakeShape(2, 3, 12, w));
  LayerParameter test_param = this->Param(7, 3, 1, 2, 2, 1, true);
  test_param.set_phase(TEST);
  this->Compare(test_param, shapes, 1);
  EXPECT_EQ(searches + 1, cache.searches());
  this->Compare(test_param, shapes, 1);  // another TEST layer: the cache's
  EXPECT_EQ(searches + 1, cache.searches());
  this->Compare(this->Param(7, 3, 1, 2, 2, 1, true), shapes, 1);  // TRAIN: searched again
  EXPECT_EQ(searches + 2, cache.searches());
  this->Compare(test_param, shapes, 1);  // TEST again: the wider entry serves it
  this->Compare(this->Param(7, 3, 1, 2, 2, 1, true), shapes, 1);
  EXPECT_EQ(searches + 2, cache.searches());
}

// layer_factory.cpp: the DEFAULT engine of a dilated convolution is cuDNN now.
TYPED_TEST(CuDNNConvEnginesTest, TestFactoryGivesDilatedToCuDNN) {
  LayerParameter p = this->Param(6, 3, 1, 2, 2, 1, true);
  shared_ptr<Layer<TypeParam> > layer = LayerRegistry<TypeParam>::CreateLayer(p);
  EXPECT_TRUE(dynamic_cast<CuDNNConvolutionLayer<TypeParam>*>(layer.get()) != NULL);
  p.mutable_convolution_param()->set_engine(ConvolutionParameter_Engine_CAFFE);
  layer = LayerRegistry<TypeParam>::CreateLayer(p);
  EXPECT_TRUE(dynamic_cast<CuDNNConvolutionLayer<TypeParam>*>(layer.get()) == NULL);
}

}  // namespace caffe
#endif  // USE_CUDNN
