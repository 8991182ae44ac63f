// The cuDNN convolution's algorithm search (GPSNet patch 0004, cuDNN >= 7; docs/fork.md "cuDNN").
//
// cuDNN 8 removed cudnnGetConvolution*Algorithm(..., *_SPECIFY_WORKSPACE_LIMIT, ...), with which
// BVLC Caffe picked its algorithms. The cuDNN Convolution and Deconvolution layers now run
// cudnnFind*Algorithm (every algorithm timed on the device, as many as
// cudnnGet*AlgorithmMaxCount says) and take, for each operation they run, the fastest one that
// cuDNN accepts for the layer's descriptors and whose workspace fits CudnnWorkspaceLimitBytes()
// (caffe/util/math_mode.hpp: 64 MiB unless GPSNET_CUDNN_WORKSPACE_MB says otherwise).
//
// The choices live in one process-wide cache (ConvAlgoCache::Global()), keyed by the cuDNN
// problem (ConvProblemKey: shapes, strides, pad, stride, dilation, data type; the batch N rounded
// up to a power of two) with the device, the math mode and the workspace limit. Layers of the
// same geometry (a TRAIN and a TEST net, two layers of one net) share one search, and a batch
// size within a searched bucket (the RoI-batched local parser sees 1..max RoIs) takes the
// bucket's algorithms after their workspace is queried again for its own shape (a new search
// where they do not fit). TEST layers search only the operations they run.
//
// "x" is the convolution's input as cuDNN sees it (a Convolution layer's bottom, a Deconvolution
// layer's top), "y" its output. The three descriptors describe the same convolution; each
// operation gets its own so that it can carry the math type of its algorithm.
#ifndef CAFFE_UTIL_CUDNN_CONV_SEARCH_HPP_
#define CAFFE_UTIL_CUDNN_CONV_SEARCH_HPP_
#ifdef USE_CUDNN

#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "caffe/util/cudnn.hpp"

#if !CUDNN_VERSION_MIN(7, 0, 0)
#error "The GPSNet fork's cuDNN convolution needs cuDNN 7 or newer"
#endif

namespace caffe {

namespace cudnn {

struct ConvAlgos {
  cudnnConvolutionFwdAlgo_t fwd;
  cudnnConvolutionBwdFilterAlgo_t bwd_filter;
  cudnnConvolutionBwdDataAlgo_t bwd_data;
  cudnnMathType_t fwd_math, bwd_filter_math, bwd_data_math;
  size_t fwd_bytes, bwd_filter_bytes, bwd_data_bytes;  // workspace of each
  size_t max_bytes() const;
};

// The operations of a convolution, as a mask: a Convolution layer's forward is kConvFwd, a
// Deconvolution layer's forward is kConvBwdData (and its input gradient kConvFwd).
enum ConvOps { kConvFwd = 1, kConvBwdFilter = 2, kConvBwdData = 4, kConvAllOps = 7 };

// The math type the convolutions start from: CUDNN_FMA_MATH (FP32, no TF32) by default,
// CUDNN_DEFAULT_MATH (TF32 allowed on Ampere and newer) with GPSNET_TF32=1; cuDNN 7:
// CUDNN_DEFAULT_MATH.
cudnnMathType_t ConvMathType();

// The alignment of each stream's slice of a layer's workspace: cuDNN 9 refuses misaligned
// workspace pointers (CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER), and a slice starts at a
// multiple of the slice size.
const size_t kWorkspaceAlignBytes = 256;
// bytes rounded up to a multiple of kWorkspaceAlignBytes: the size of one slice.
size_t WorkspaceSliceBytes(size_t bytes);

// How a layer's workspace block is allocated and freed: cudaMalloc / cudaFree on the current
// device (DeviceWorkspaceAllocator()), or a stand-in in the tests. alloc returns NULL where it
// fails.
struct WorkspaceAllocator {
  std::function<void*(size_t)> alloc;
  std::function<void(void*)> release;
};
WorkspaceAllocator DeviceWorkspaceAllocator();

// The workspace of a Convolution or Deconvolution layer for the algorithms `algos`: one block in
// *data (*bytes long) of `slices` slices (one per stream: group x CUDNN_STREAMS_PER_GROUP), each
// at least WorkspaceSliceBytes(algos.max_bytes()), grown where it is too small; slice[0..slices)
// point at the slices (NULL without a block). Returns `algos`; where the block cannot be
// allocated, logs a warning naming `layer`, leaves no block and returns no_workspace()'s
// algorithms (which must need no workspace: else the process stops, naming `layer`).
ConvAlgos ReserveWorkspace(const std::string& layer, const ConvAlgos& algos, int slices,
    const std::function<ConvAlgos()>& no_workspace, void** data, size_t* bytes, void** slice,
    const WorkspaceAllocator& allocator = DeviceWorkspaceAllocator());

// The smallest power of two >= n (n >= 1): the batch sizes that share a search.
int BatchBucket(int n);

// The cuDNN problem of (x, w, y, conv) as integers, read back from the descriptors (no device
// needed): data type, x's and y's dimensions and strides with N replaced by BatchBucket(N), the
// filter's, and the convolution's pad, stride, dilation, mode and compute type.
std::vector<int> ConvProblemKey(cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w,
    cudnnTensorDescriptor_t y, cudnnConvolutionDescriptor_t conv);

// The cache's rules, apart from cuDNN (test_cudnn_conv_search.cpp checks them on the host).
// Get(key, ops, search, fit): an entry of `key` that covers `ops` is offered to fit(), which
// re-queries the algorithms' workspace for the caller's shape (and may change their sizes); when
// it fits it is returned, else the caller's shape is searched alone (search(ops), not stored).
// Without such an entry, search(ops | what the entry had) runs and is stored under `key`.
class ConvAlgoCache {
 public:
  typedef std::function<ConvAlgos(int ops)> Search;
  typedef std::function<bool(ConvAlgos*)> Fit;
  ConvAlgos Get(const std::vector<int>& key, int ops, const Search& search, const Fit& fit);
  int searches() const { return searches_; }  // search() calls so far
  int hits() const { return hits_; }          // entries that fit
  size_t size() const { return entries_.size(); }
  static ConvAlgoCache& Global();  // the process's

 private:
  struct Entry {
    ConvAlgos algos;
    int ops;  // the operations that were searched (the others: no-workspace algorithms)
  };
  std::map<std::vector<int>, Entry> entries_;
  std::mutex mutex_;
  int searches_ = 0, hits_ = 0;
};

// The algorithms that need no workspace (implicit GEMM, ALGO_0), with the default math type:
// what a layer falls back to when nothing else fits or its workspace cannot be allocated.
// The workspace sizes are cuDNN's for these descriptors (0 in practice); a descriptor that
// cuDNN refuses even these stops the process, naming `layer`.
ConvAlgos NoWorkspaceConvAlgos(const std::string& layer, cudnnHandle_t handle,
    cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t y,
    cudnnConvolutionDescriptor_t fwd_desc, cudnnConvolutionDescriptor_t bwd_filter_desc,
    cudnnConvolutionDescriptor_t bwd_data_desc);

// The search of the operations in `ops`: for each, the fastest result that succeeded, whose
// workspace is at most limit_bytes, whose math type is allowed (without GPSNET_TF32, tensor-op
// results are skipped) and whose workspace cuDNN reports for these descriptors; the
// no-workspace algorithm where none is, and for the operations not in `ops`. Leaves each
// descriptor with its algorithm's math type.
ConvAlgos FindConvAlgos(const std::string& layer, cudnnHandle_t handle,
    cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t y,
    cudnnConvolutionDescriptor_t fwd_desc, cudnnConvolutionDescriptor_t bwd_filter_desc,
    cudnnConvolutionDescriptor_t bwd_data_desc, size_t limit_bytes, int ops);

// What a layer calls: the algorithms of its problem for `ops` from ConvAlgoCache::Global()
// (keyed by ConvProblemKey, the device, the math mode and CudnnWorkspaceLimitBytes()),
// searched with FindConvAlgos where the cache has none that fit.
ConvAlgos LayerConvAlgos(const std::string& layer, cudnnHandle_t handle,
    cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t y,
    cudnnConvolutionDescriptor_t fwd_desc, cudnnConvolutionDescriptor_t bwd_filter_desc,
    cudnnConvolutionDescriptor_t bwd_data_desc, int ops);

// Writes the math types of algos into the three descriptors (a cached choice).
void SetConvMathTypes(const ConvAlgos& algos, cudnnConvolutionDescriptor_t fwd_desc,
    cudnnConvolutionDescriptor_t bwd_filter_desc,
    cudnnConvolutionDescriptor_t bwd_data_desc);

}  // namespace cudnn

}  // namespace caffe

#endif  // USE_CUDNN
#endif  // CAFFE_UTIL_CUDNN_CONV_SEARCH_HPP_
