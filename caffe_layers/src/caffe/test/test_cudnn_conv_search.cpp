// The cuDNN algorithm cache's rules (caffe/util/cudnn_conv_search.hpp, docs/fork.md "cuDNN"):
// the problem key read back from cuDNN descriptors, the batch buckets, the workspace slices and
// the cache's search / reuse policy with stand-in searches. None of this needs a device (cuDNN's
// descriptor calls run on the host), so these tests run in a cuDNN build on any machine;
// CuDNNConvEnginesTest checks the searches themselves on a GPU.
#ifdef USE_CUDNN
#include <functional>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/util/cudnn_conv_search.hpp"

namespace caffe {

namespace cudnn {

namespace {

// The descriptors of one convolution problem (float, NCHW, ungrouped unless c_total says).
class Problem {
 public:
  Problem(int n, int c, int h, int w, int k, int kernel, int pad, int stride, int dilation,
          int c_total = 0) {
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&x_));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&y_));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&w_));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv_));
    const int ct = c_total ? c_total : c;
    CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(x_, CUDNN_DATA_FLOAT, n, c, h, w, ct * h * w,
                                             h * w, w, 1));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(w_, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, k, c,
                                           kernel, kernel));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv_, pad, pad, stride, stride, dilation,
        dilation, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    int yn, yc, yh, yw;
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv_, x_, w_, &yn, &yc, &yh, &yw));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(y_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, yn, yc, yh,
                                           yw));
  }
  ~Problem() {
    cudnnDestroyTensorDescriptor(x_);
    cudnnDestroyTensorDescriptor(y_);
    cudnnDestroyFilterDescriptor(w_);
    cudnnDestroyConvolutionDescriptor(conv_);
  }
  std::vector<int> Key() const { return ConvProblemKey(x_, w_, y_, conv_); }

 private:
  cudnnTensorDescriptor_t x_, y_;
  cudnnFilterDescriptor_t w_;
  cudnnConvolutionDescriptor_t conv_;
};

ConvAlgos Algos(int fwd, size_t bytes) {
  ConvAlgos a;
  a.fwd = static_cast<cudnnConvolutionFwdAlgo_t>(fwd);
  a.bwd_filter = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0;
  a.bwd_data = CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
  a.fwd_math = a.bwd_filter_math = a.bwd_data_math = CUDNN_FMA_MATH;
  a.fwd_bytes = bytes;
  a.bwd_filter_bytes = a.bwd_data_bytes = 0;
  return a;
}

// A stand-in for cudaMalloc / cudaFree: blocks from the host heap, or none (`fail`), counted.
class FakeDevice {
 public:
  WorkspaceAllocator Allocator() {
    WorkspaceAllocator a;
    a.alloc = [this](size_t bytes) -> void* {
      sizes_.push_back(bytes);
      if (fail_) return NULL;
      blocks_.push_back(std::vector<char>(bytes));
      live_ = blocks_.back().data();
      return live_;
    };
    a.release = [this](void* p) {
      EXPECT_EQ(live_, p);  // only the block it gave, once
      live_ = NULL;
      ++releases_;
    };
    return a;
  }
  void set_fail(bool fail) { fail_ = fail; }
  const std::vector<size_t>& sizes() const { return sizes_; }  // asked for, in order
  int releases() const { return releases_; }

 private:
  std::vector<std::vector<char> > blocks_;
  std::vector<size_t> sizes_;
  void* live_ = NULL;
  bool fail_ = false;
  int releases_ = 0;
};

// A cuDNN layer's workspace fields (block, size, slice pointers) and its fallback, whose forward
// algorithm is `fallback_fwd`: what ReserveWorkspace works on.
struct LayerWorkspace {
  explicit LayerWorkspace(int fallback_fwd) : fallback_fwd(fallback_fwd) {
    for (int g = 0; g < 4; ++g) slice[g] = &fallbacks;  // not NULL: ReserveWorkspace sets them all
  }
  ConvAlgos Reserve(const ConvAlgos& algos, int slices, const WorkspaceAllocator& allocator) {
    return ReserveWorkspace("conv", algos, slices,
        [this]() { ++fallbacks; return Algos(fallback_fwd, 0); }, &data, &bytes, slice, allocator);
  }
  int fallback_fwd;
  void* data = NULL;
  size_t bytes = 0;
  void* slice[4];
  int fallbacks = 0;
};

}  // namespace

TEST(CuDNNConvSearchTest, BatchBucketIsTheNextPowerOfTwo) {
  const int n[] = {1, 2, 3, 4, 5, 8, 9, 16, 17, 30, 64};
  const int bucket[] = {1, 2, 4, 4, 8, 8, 16, 16, 32, 32, 64};
  for (int i = 0; i < 11; ++i) {
    EXPECT_EQ(bucket[i], BatchBucket(n[i])) << "n " << n[i];
  }
}

TEST(CuDNNConvSearchTest, WorkspaceSlicesAreAligned) {
  EXPECT_EQ(0u, WorkspaceSliceBytes(0));
  EXPECT_EQ(kWorkspaceAlignBytes, WorkspaceSliceBytes(1));
  EXPECT_EQ(kWorkspaceAlignBytes, WorkspaceSliceBytes(kWorkspaceAlignBytes));
  EXPECT_EQ(2 * kWorkspaceAlignBytes, WorkspaceSliceBytes(kWorkspaceAlignBytes + 1));
  // Three slices of an odd size: each starts at an aligned offset.
  const size_t slice = WorkspaceSliceBytes(1000003);
  for (int g = 0; g < 3; ++g) {
    EXPECT_EQ(0u, (g * slice) % kWorkspaceAlignBytes);
    EXPECT_GE(slice, 1000003u);
  }
}

TEST(CuDNNConvSearchTest, WorkspaceGrowsOnlyWhenTheAlgorithmsNeedMore) {
  FakeDevice device;
  LayerWorkspace w(0);
  // No workspace needed: no block, no slices.
  EXPECT_EQ(1, w.Reserve(Algos(1, 0), 3, device.Allocator()).fwd);
  EXPECT_TRUE(device.sizes().empty());
  EXPECT_TRUE(w.data == NULL && w.slice[0] == NULL && w.slice[2] == NULL);
  // 1000 bytes a stream: three aligned slices of 1024 in one block.
  EXPECT_EQ(2, w.Reserve(Algos(2, 1000), 3, device.Allocator()).fwd);
  ASSERT_EQ(1u, device.sizes().size());
  EXPECT_EQ(3 * kWorkspaceAlignBytes * 4, device.sizes()[0]);
  EXPECT_EQ(device.sizes()[0], w.bytes);
  for (int g = 0; g < 3; ++g) {
    EXPECT_EQ(static_cast<char*>(w.data) + g * 1024, w.slice[g]);
    EXPECT_EQ(0u, reinterpret_cast<size_t>(w.slice[g]) % 16);  // the heap's alignment, at least
  }
  // Less: the block stays, cut into the same slices.
  w.Reserve(Algos(3, 10), 3, device.Allocator());
  EXPECT_EQ(1u, device.sizes().size());
  EXPECT_EQ(static_cast<char*>(w.data) + 2 * 1024, w.slice[2]);
  // More: the old block is freed before a larger one is taken.
  w.Reserve(Algos(4, 2000), 3, device.Allocator());
  ASSERT_EQ(2u, device.sizes().size());
  EXPECT_EQ(1, device.releases());
  EXPECT_EQ(3u * 2048, w.bytes);
  EXPECT_EQ(static_cast<char*>(w.data) + 2048, w.slice[1]);
  EXPECT_EQ(0, w.fallbacks);
}

TEST(CuDNNConvSearchTest, WorkspaceThatCannotBeAllocatedTakesTheAlgorithmsWithoutOne) {
  FakeDevice device;
  LayerWorkspace w(9);
  w.Reserve(Algos(1, 100), 2, device.Allocator());
  device.set_fail(true);
  const ConvAlgos a = w.Reserve(Algos(2, 5000), 2, device.Allocator());
  EXPECT_EQ(9, a.fwd);
  EXPECT_EQ(0u, a.max_bytes());
  EXPECT_EQ(1, w.fallbacks);
  EXPECT_EQ(1, device.releases());  // the smaller block is gone too
  EXPECT_TRUE(w.data == NULL && w.slice[0] == NULL && w.slice[1] == NULL);
  EXPECT_EQ(0u, w.bytes);
  // The device's own allocator fails the same way where there is no device (any build machine);
  // where there is one, 2 KiB is allocated and freed.
  LayerWorkspace on_device(9);
  const ConvAlgos b = on_device.Reserve(Algos(3, 1000), 2, DeviceWorkspaceAllocator());
  if (on_device.data == NULL) {
    EXPECT_EQ(9, b.fwd);
    EXPECT_EQ(0u, on_device.bytes);
  } else {
    EXPECT_EQ(3, b.fwd);
    EXPECT_EQ(2048u, on_device.bytes);
    DeviceWorkspaceAllocator().release(on_device.data);
  }
}

TEST(CuDNNConvSearchTest, KeySharesABatchBucketOnly) {
  // The local parser's RoI batches: 5..8 RoIs share a bucket, 4 and 9 do not.
  const std::vector<int> k5 = Problem(5, 8, 28, 28, 8, 3, 4, 1, 4).Key();
  EXPECT_EQ(k5, Problem(8, 8, 28, 28, 8, 3, 4, 1, 4).Key());
  EXPECT_EQ(k5, Problem(6, 8, 28, 28, 8, 3, 4, 1, 4).Key());
  EXPECT_NE(k5, Problem(4, 8, 28, 28, 8, 3, 4, 1, 4).Key());
  EXPECT_NE(k5, Problem(9, 8, 28, 28, 8, 3, 4, 1, 4).Key());
}

TEST(CuDNNConvSearchTest, KeyTellsEveryGeometryApart) {
  const std::vector<int> base = Problem(2, 8, 28, 28, 16, 3, 2, 1, 2).Key();
  EXPECT_EQ(base, Problem(2, 8, 28, 28, 16, 3, 2, 1, 2).Key());
  EXPECT_NE(base, Problem(2, 4, 28, 28, 16, 3, 2, 1, 2).Key());   // channels
  EXPECT_NE(base, Problem(2, 8, 27, 28, 16, 3, 2, 1, 2).Key());   // height
  EXPECT_NE(base, Problem(2, 8, 28, 29, 16, 3, 2, 1, 2).Key());   // width
  EXPECT_NE(base, Problem(2, 8, 28, 28, 8, 3, 2, 1, 2).Key());    // outputs
  EXPECT_NE(base, Problem(2, 8, 28, 28, 16, 1, 0, 1, 1).Key());   // kernel
  EXPECT_NE(base, Problem(2, 8, 28, 28, 16, 3, 1, 1, 2).Key());   // pad
  EXPECT_NE(base, Problem(2, 8, 28, 28, 16, 3, 2, 2, 2).Key());   // stride
  EXPECT_NE(base, Problem(2, 8, 28, 28, 16, 3, 4, 1, 4).Key());   // dilation (same output)
  // One group of a grouped convolution: the same per-group shape, other strides.
  EXPECT_NE(base, Problem(2, 8, 28, 28, 16, 3, 2, 1, 2, 16).Key());
}

TEST(CuDNNConvSearchTest, CacheSearchesOnceAndReusesWhatFits) {
  ConvAlgoCache cache;
  int searched = 0, fitted = 0;
  const std::vector<int> key(3, 7);
  ConvAlgoCache::Search search = [&](int ops) {
    ++searched;
    return Algos(searched, 100 * searched);
  };
  ConvAlgoCache::Fit fits = [&](ConvAlgos* a) {
    ++fitted;
    a->fwd_bytes = 5;  // the workspace queried for the caller's shape
    return true;
  };
  ConvAlgos a = cache.Get(key, kConvAllOps, search, fits);
  EXPECT_EQ(1, searched);
  EXPECT_EQ(0, fitted);
  EXPECT_EQ(1, a.fwd);
  EXPECT_EQ(100u, a.fwd_bytes);
  // The same problem (or another batch of its bucket): the entry, with the caller's workspace.
  a = cache.Get(key, kConvAllOps, search, fits);
  EXPECT_EQ(1, searched);
  EXPECT_EQ(1, fitted);
  EXPECT_EQ(1, a.fwd);
  EXPECT_EQ(5u, a.fwd_bytes);
  // A subset of the searched operations is served too.
  a = cache.Get(key, kConvFwd, search, fits);
  EXPECT_EQ(1, searched);
  EXPECT_EQ(1, a.fwd);
  EXPECT_EQ(2, cache.hits());
  EXPECT_EQ(1, cache.searches());
  EXPECT_EQ(1u, cache.size());
  // Another key is searched.
  cache.Get(std::vector<int>(3, 8), kConvFwd, search, fits);
  EXPECT_EQ(2, searched);
  EXPECT_EQ(2u, cache.size());
}

TEST(CuDNNConvSearchTest, CacheSearchesAShapeTheEntryDoesNotFitAlone) {
  ConvAlgoCache cache;
  int searched = 0;
  const std::vector<int> key(3, 7);
  ConvAlgoCache::Search search = [&](int ops) {
    ++searched;
    return Algos(searched, 0);
  };
  ConvAlgoCache::Fit refuses = [](ConvAlgos*) { return false; };
  cache.Get(key, kConvAllOps, search, refuses);
  ConvAlgos a = cache.Get(key, kConvAllOps, search, refuses);
  EXPECT_EQ(2, searched);
  EXPECT_EQ(2, a.fwd);
  // The bucket keeps its first search.
  ConvAlgoCache::Fit fits = [](ConvAlgos*) { return true; };
  a = cache.Get(key, kConvAllOps, search, fits);
  EXPECT_EQ(2, searched);
  EXPECT_EQ(1, a.fwd);
}

TEST(CuDNNConvSearchTest, CacheWidensAForwardOnlyEntry) {
  // A TEST layer searched the forward only; a TRAIN layer of the same problem needs all three
  // operations, so the entry is searched again for all and replaced.
  ConvAlgoCache cache;
  std::vector<int> asked;
  const std::vector<int> key(3, 7);
  ConvAlgoCache::Search search = [&](int ops) {
    asked.push_back(ops);
    return Algos(static_cast<int>(asked.size()), 0);
  };
  ConvAlgoCache::Fit fits = [](ConvAlgos*) { return true; };
  cache.Get(key, kConvFwd, search, fits);
  cache.Get(key, kConvBwdData, search, fits);
  ConvAlgos a = cache.Get(key, kConvAllOps, search, fits);
  ASSERT_EQ(3u, asked.size());
  EXPECT_EQ(kConvFwd, asked[0]);
  EXPECT_EQ(kConvFwd | kConvBwdData, asked[1]);
  EXPECT_EQ(kConvAllOps, asked[2]);
  EXPECT_EQ(3, a.fwd);
  a = cache.Get(key, kConvFwd, search, fits);
  EXPECT_EQ(3u, asked.size());
  EXPECT_EQ(3, a.fwd);
}

}  // namespace cudnn

}  // namespace caffe
#endif  // USE_CUDNN
