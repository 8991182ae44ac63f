// The oneDNN CPU engine of ConvolutionLayer (caffe/util/dnnl_conv.hpp) against Caffe's own
// im2col + GEMM engine (engine: CAFFE) on the same blobs: forward, the bottom gradient, the
// accumulated weight gradient and the bias gradient, on plain, padded, strided, dilated, grouped,
// rectangular and 1x1 convolutions, across a change of shape; and a gradient check. And that no
// signal is handled while a oneDNN kernel has its stack pointer in the heap.
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <ucontext.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/conv_layer.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/dnnl_conv.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

#ifdef USE_DNNL  // (a build without oneDNN has only Caffe's engine: nothing to compare)

namespace caffe {

namespace {

// kernel_h, kernel_w, stride, pad, dilation, group, bias, num_output
struct Case {
  int kh, kw, stride, pad, dilation, group;
  bool bias;
  int num_output;
};

LayerParameter ConvParam(const Case& c, ConvolutionParameter_Engine engine) {
  LayerParameter p;
  ConvolutionParameter* cp = p.mutable_convolution_param();
  cp->set_kernel_h(c.kh);
  cp->set_kernel_w(c.kw);
  cp->add_stride(c.stride);
  cp->add_pad(c.pad);
  cp->add_dilation(c.dilation);
  cp->set_group(c.group);
  cp->set_bias_term(c.bias);
  cp->set_num_output(c.num_output);
  cp->mutable_weight_filler()->set_type("gaussian");
  cp->mutable_bias_filler()->set_type("gaussian");
  cp->set_engine(engine);
  return p;
}

void Fill(Blob<float>* b, float std) {
  FillerParameter fp;
  fp.set_std(std);
  GaussianFiller<float> f(fp);
  f.Fill(b);
}

// Gaussian values (std 0.5) into b's diff.
void FillDiff(Blob<float>* b) {
  Blob<float> values(b->shape());
  Fill(&values, 0.5);
  caffe_copy(b->count(), values.cpu_data(), b->mutable_cpu_diff());
}

void ExpectNear(const float* a, const float* b, int n, float tol, const char* what) {
  for (int i = 0; i < n; ++i) {
    ASSERT_NEAR(a[i], b[i], tol * (1 + std::fabs(b[i]))) << what << " at " << i;
  }
}

}  // namespace

class DnnlConvolutionTest : public CPUDeviceTest<float> {
 protected:
  // Runs the oneDNN layer and the Caffe-engine layer with the same weights on the same bottom
  // (shapes[0], then shapes[1]: the oneDNN layer must re-plan on the change), and compares.
  void Compare(const Case& c, const std::vector<std::vector<int> >& shapes) {
    ASSERT_TRUE(DnnlConvolution<float>::Handles(ConvParam(c, ConvolutionParameter_Engine_DEFAULT)
                                                .convolution_param(), 2, 1))
        << "this build does not hand float 2-D convolutions to oneDNN";
    ASSERT_FALSE(DnnlConvolution<float>::Handles(ConvParam(c, ConvolutionParameter_Engine_CAFFE)
                                                 .convolution_param(), 2, 1));
    Blob<float> bottom, top_d, top_c;
    vector<Blob<float>*> bv(1, &bottom), tv_d(1, &top_d), tv_c(1, &top_c);
    ConvolutionLayer<float> dnnl(ConvParam(c, ConvolutionParameter_Engine_DEFAULT));
    ConvolutionLayer<float> ref(ConvParam(c, ConvolutionParameter_Engine_CAFFE));
    bottom.Reshape(shapes[0]);
    dnnl.SetUp(bv, tv_d);
    ref.SetUp(bv, tv_c);
    for (int k = 0; k < ref.blobs().size(); ++k) ref.blobs()[k]->CopyFrom(*dnnl.blobs()[k]);
    for (int s = 0; s < shapes.size(); ++s) {
      bottom.Reshape(shapes[s]);
      Fill(&bottom, 1);
      dnnl.Reshape(bv, tv_d);
      ref.Reshape(bv, tv_c);
      ASSERT_EQ(top_d.shape(), top_c.shape());
      dnnl.Forward(bv, tv_d);
      ref.Forward(bv, tv_c);
      ExpectNear(top_d.cpu_data(), top_c.cpu_data(), top_c.count(), 1e-4f, "top");
      // Backward: the same top diff; the weight and bias diffs start from the same non-zero
      // values (both engines add to them).
      FillDiff(&top_c);
      top_d.CopyFrom(top_c, true);
      for (int k = 0; k < ref.blobs().size(); ++k) {
        FillDiff(ref.blobs()[k].get());
        dnnl.blobs()[k]->CopyFrom(*ref.blobs()[k], true);
      }
      Blob<float> bottom_diff_c;
      vector<bool> down(1, true);
      ref.Backward(tv_c, down, bv);
      bottom_diff_c.CopyFrom(bottom, true, true);
      caffe_set(bottom.count(), 7.0f, bottom.mutable_cpu_diff());   // overwritten, not added to
      dnnl.Backward(tv_d, down, bv);
      ExpectNear(bottom.cpu_diff(), bottom_diff_c.cpu_diff(), bottom.count(), 1e-4f,
                 "bottom diff");
      for (int k = 0; k < ref.blobs().size(); ++k) {
        ExpectNear(dnnl.blobs()[k]->cpu_diff(), ref.blobs()[k]->cpu_diff(),
                   ref.blobs()[k]->count(), 1e-4f, k == 0 ? "weight diff" : "bias diff");
      }
    }
  }
};

TEST_F(DnnlConvolutionTest, Plain3x3Padded) {
  Case c = {3, 3, 1, 1, 1, 1, true, 16};
  std::vector<std::vector<int> > shapes;
  shapes.push_back(std::vector<int>{2, 8, 11, 13});
  shapes.push_back(std::vector<int>{3, 8, 7, 9});
  Compare(c, shapes);
}

TEST_F(DnnlConvolutionTest, DilatedLikeDeepLab) {
  Case c = {3, 3, 1, 4, 4, 1, true, 16};   // the ASPP / conv5 kind: pad = dilation
  Compare(c, std::vector<std::vector<int> >(1, std::vector<int>{2, 16, 17, 15}));
}

TEST_F(DnnlConvolutionTest, StridedFloorsItsOutput) {
  Case c = {3, 3, 2, 0, 1, 1, true, 8};   // (12 - 3) / 2 + 1 = 5: the last row is dropped
  Compare(c, std::vector<std::vector<int> >(1, std::vector<int>{2, 4, 12, 12}));
}

TEST_F(DnnlConvolutionTest, GroupedWithoutBias) {
  Case c = {3, 3, 1, 2, 2, 2, false, 8};
  Compare(c, std::vector<std::vector<int> >(1, std::vector<int>{2, 6, 9, 9}));
}

TEST_F(DnnlConvolutionTest, RectangularKernel) {
  Case c = {1, 5, 1, 2, 1, 1, true, 5};
  Compare(c, std::vector<std::vector<int> >(1, std::vector<int>{1, 3, 6, 10}));
}

TEST_F(DnnlConvolutionTest, OneByOneLikeTheClassifier) {
  Case c = {1, 1, 1, 0, 1, 1, true, 7};
  Compare(c, std::vector<std::vector<int> >(1, std::vector<int>{2, 32, 5, 5}));
}

TEST_F(DnnlConvolutionTest, EmptyBatchIsANoOp) {
  // Convolutions over RoIs see batches of 0 (no RoI kept): forward and backward do nothing.
  Case c = {3, 3, 1, 1, 1, 1, true, 4};
  Blob<float> bottom(std::vector<int>{2, 3, 5, 5}), top;
  vector<Blob<float>*> bv(1, &bottom), tv(1, &top);
  ConvolutionLayer<float> layer(ConvParam(c, ConvolutionParameter_Engine_DEFAULT));
  layer.SetUp(bv, tv);
  bottom.Reshape(std::vector<int>{0, 3, 5, 5});
  layer.Reshape(bv, tv);
  EXPECT_EQ(top.count(), 0);
  layer.Forward(bv, tv);
  caffe_set(layer.blobs()[0]->count(), 1.0f, layer.blobs()[0]->mutable_cpu_diff());
  layer.Backward(tv, vector<bool>(1, true), bv);
  for (int i = 0; i < layer.blobs()[0]->count(); ++i) {
    EXPECT_EQ(layer.blobs()[0]->cpu_diff()[i], 1.0f);
  }
}

TEST_F(DnnlConvolutionTest, GradientDilatedGrouped) {
  Case c = {3, 3, 1, 2, 2, 2, true, 4};
  Blob<float> bottom(std::vector<int>{2, 4, 6, 5}), top;
  Fill(&bottom, 1);
  vector<Blob<float>*> bv(1, &bottom), tv(1, &top);
  ConvolutionLayer<float> layer(ConvParam(c, ConvolutionParameter_Engine_DEFAULT));
  GradientChecker<float> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, bv, tv);
}

#if defined(__x86_64__) && defined(__linux__)
namespace {

// Each thread's stack, recorded before the timer runs; the handler compares the interrupted
// stack pointer with its thread's (a thread without a record is not judged).
struct StackBounds {
  uintptr_t lo, hi;
};
thread_local StackBounds tls_stack = {0, 0};
std::atomic<int> signals_seen(0), signals_off_stack(0);

void RecordThisThreadsStack() {
  pthread_attr_t attr;
  void* addr = NULL;
  size_t size = 0;
  ASSERT_EQ(pthread_getattr_np(pthread_self(), &attr), 0);
  pthread_attr_getstack(&attr, &addr, &size);
  pthread_attr_destroy(&attr);
  tls_stack.lo = reinterpret_cast<uintptr_t>(addr);
  tls_stack.hi = tls_stack.lo + size;
}

void OnProfilingTick(int, siginfo_t*, void* context) {
  const uintptr_t sp = static_cast<uintptr_t>(
      static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RSP]);
  ++signals_seen;
  if (tls_stack.hi != 0 && (sp < tls_stack.lo || sp > tls_stack.hi)) ++signals_off_stack;
}

}  // namespace

// oneDNN 2.x's JIT GEMM kernels point rsp into a heap buffer while they run (dnnl_conv.cpp), and
// a signal handled then wrote its frame into the heap: the caffe tool's Ctrl-C test aborted on a
// corrupted heap now and then. A profiling timer (SIGPROF every 100 us of CPU time, with a
// handler) runs while the layer computes the DeepLab ASPP convolution (dilation 8 on a 49 x 49
// map, which oneDNN computes with its GEMM): every signal must find the interrupted thread's stack
// pointer on that thread's stack.
TEST_F(DnnlConvolutionTest, NoSignalLandsWhileAKernelsStackPointerIsInTheHeap) {
  RecordThisThreadsStack();
#ifdef _OPENMP
#pragma omp parallel
  RecordThisThreadsStack();
#endif
  Case c = {3, 3, 1, 8, 8, 1, false, 64};
  Blob<float> bottom(std::vector<int>{2, 64, 49, 49}), top;
  Fill(&bottom, 1);
  vector<Blob<float>*> bv(1, &bottom), tv(1, &top);
  ConvolutionLayer<float> layer(ConvParam(c, ConvolutionParameter_Engine_DEFAULT));
  layer.SetUp(bv, tv);
  struct sigaction on_tick, before;
  on_tick.sa_sigaction = &OnProfilingTick;
  on_tick.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&on_tick.sa_mask);
  ASSERT_EQ(sigaction(SIGPROF, &on_tick, &before), 0);
  signals_seen = 0;
  signals_off_stack = 0;
  const itimerval every_100us = {{0, 100}, {0, 100}}, off = {{0, 0}, {0, 0}};
  ASSERT_EQ(setitimer(ITIMER_PROF, &every_100us, NULL), 0);
  for (int i = 0; i < 30; ++i) {
    layer.Forward(bv, tv);
    FillDiff(&top);
    layer.Backward(tv, vector<bool>(1, true), bv);
  }
  setitimer(ITIMER_PROF, &off, NULL);
  sigaction(SIGPROF, &before, NULL);
  EXPECT_GT(signals_seen.load(), 10) << "the timer did not tick: the test measured nothing";
  EXPECT_EQ(signals_off_stack.load(), 0) << "of " << signals_seen.load() << " signals";
}
#endif  // x86-64 Linux

}  // namespace caffe

#endif  // USE_DNNL
