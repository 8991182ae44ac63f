// The cuDNN convolution's algorithm search: caffe/util/cudnn_conv_search.hpp.
#ifdef USE_CUDNN
#include <algorithm>
#include <vector>

#include "caffe/util/cudnn_conv_search.hpp"
#include "caffe/util/math_mode.hpp"

namespace caffe {

namespace cudnn {

size_t ConvAlgos::max_bytes() const {
  return std::max(fwd_bytes, std::max(bwd_filter_bytes, bwd_data_bytes));
}

cudnnMathType_t ConvMathType() {
#if CUDNN_VERSION_MIN(8, 0, 0)
  return TF32Enabled() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
#else
  return CUDNN_DEFAULT_MATH;
#endif
}

namespace {

bool IsTensorOpMath(cudnnMathType_t m) {
  return m == CUDNN_TENSOR_OP_MATH || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

// cudnnFind* returns its results sorted by time, fastest first: the first that succeeded,
// fits the limit and has an allowed math type; -1 if none.
template <typename Perf>
int Fastest(const std::vector<Perf>& perf, int n, size_t limit_bytes) {
  for (int k = 0; k < n; ++k) {
    if (perf[k].status != CUDNN_STATUS_SUCCESS) continue;
    if (perf[k].memory > limit_bytes) continue;
    if (!TF32Enabled() && IsTensorOpMath(perf[k].mathType)) continue;
    return k;
  }
  return -1;
}

// The math type a chosen result runs with: its own with TF32 allowed, else the FP32 one
// (a result reported with CUDNN_DEFAULT_MATH must not turn TF32 on by the back door).
cudnnMathType_t MathOf(cudnnMathType_t found) {
  return TF32Enabled() ? found : ConvMathType();
}

// Implicit GEMM and ALGO_0 (no workspace), with the default math type.
ConvAlgos NoWorkspaceChoice() {
  ConvAlgos a;
  a.fwd = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  a.bwd_filter = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0;
  a.bwd_data = CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
  a.fwd_math = a.bwd_filter_math = a.bwd_data_math = ConvMathType();
  a.fwd_bytes = a.bwd_filter_bytes = a.bwd_data_bytes = 0;
  return a;
}

void QueryWorkspaceSizes(cudnnHandle_t handle, cudnnTensorDescriptor_t x,
    cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t y,
    cudnnConvolutionDescriptor_t fwd_desc, cudnnConvolutionDescriptor_t bwd_filter_desc,
    cudnnConvolutionDescriptor_t bwd_data_desc, ConvAlgos* a) {
  size_t bytes = 0;
  CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(handle, x, w, fwd_desc, y,
      a->fwd, &bytes));
  a->fwd_bytes = std::max(a->fwd_bytes, bytes);
  CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, x, y,
      bwd_filter_desc, w, a->bwd_filter, &bytes));
  a->bwd_filter_bytes = std::max(a->bwd_filter_bytes, bytes);
  CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(handle, w, y,
      bwd_data_desc, x, a->bwd_data, &bytes));
  a->bwd_data_bytes = std::max(a->bwd_data_bytes, bytes);
}

}  // namespace

void SetConvMathTypes(const ConvAlgos& a, cudnnConvolutionDescriptor_t fwd_desc,
    cudnnConvolutionDescriptor_t bwd_filter_desc,
    cudnnConvolutionDescriptor_t bwd_data_desc) {
  CUDNN_CHECK(cudnnSetConvolutionMathType(fwd_desc, a.fwd_math));
  CUDNN_CHECK(cudnnSetConvolutionMathType(bwd_filter_desc, a.bwd_filter_math));
  CUDNN_CHECK(cudnnSetConvolutionMathType(bwd_data_desc, a.bwd_data_math));
}

ConvAlgos NoWorkspaceConvAlgos(cudnnHandle_t handle, cudnnTensorDescriptor_t x,
    cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t y,
    cudnnConvolutionDescriptor_t fwd_desc, cudnnConvolutionDescriptor_t bwd_filter_desc,
    cudnnConvolutionDescriptor_t bwd_data_desc) {
  ConvAlgos a = NoWorkspaceChoice();
  SetConvMathTypes(a, fwd_desc, bwd_filter_desc, bwd_data_desc);
  QueryWorkspaceSizes(handle, x, w, y, fwd_desc, bwd_filter_desc, bwd_data_desc, &a);
  return a;
}

ConvAlgos FindConvAlgos(cudnnHandle_t handle, cudnnTensorDescriptor_t x,
    cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t y,
    cudnnConvolutionDescriptor_t fwd_desc, cudnnConvolutionDescriptor_t bwd_filter_desc,
    cudnnConvolutionDescriptor_t bwd_data_desc, size_t limit_bytes) {
  // Where nothing is found: the no-workspace algorithms. The search starts from ConvMathType().
  ConvAlgos a = NoWorkspaceChoice();
  SetConvMathTypes(a, fwd_desc, bwd_filter_desc, bwd_data_desc);
  int max_count = 0, n = 0, k = -1;
  cudnnStatus_t status;

  CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &max_count));
  std::vector<cudnnConvolutionFwdAlgoPerf_t> fwd(std::max(max_count, 1));
  status = cudnnFindConvolutionForwardAlgorithm(handle, x, w, fwd_desc, y,
      max_count, &n, &fwd[0]);
  k = status == CUDNN_STATUS_SUCCESS ? Fastest(fwd, n, limit_bytes) : -1;
  if (k >= 0) {
    a.fwd = fwd[k].algo;
    a.fwd_math = MathOf(fwd[k].mathType);
    a.fwd_bytes = fwd[k].memory;
  } else {
    LOG(WARNING) << "cuDNN forward algorithm search: "
                 << (status == CUDNN_STATUS_SUCCESS ? "nothing within the workspace limit"
                                                    : cudnnGetErrorString(status))
                 << "; using the implicit GEMM";
  }

  CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, &max_count));
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> bf(std::max(max_count, 1));
  status = cudnnFindConvolutionBackwardFilterAlgorithm(handle, x, y, bwd_filter_desc, w,
      max_count, &n, &bf[0]);
  k = status == CUDNN_STATUS_SUCCESS ? Fastest(bf, n, limit_bytes) : -1;
  if (k >= 0) {
    a.bwd_filter = bf[k].algo;
    a.bwd_filter_math = MathOf(bf[k].mathType);
    a.bwd_filter_bytes = bf[k].memory;
  } else {
    LOG(WARNING) << "cuDNN backward-filter algorithm search: "
                 << (status == CUDNN_STATUS_SUCCESS ? "nothing within the workspace limit"
                                                    : cudnnGetErrorString(status))
                 << "; using ALGO_0";
  }

  CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, &max_count));
  std::vector<cudnnConvolutionBwdDataAlgoPerf_t> bd(std::max(max_count, 1));
  status = cudnnFindConvolutionBackwardDataAlgorithm(handle, w, y, bwd_data_desc, x,
      max_count, &n, &bd[0]);
  k = status == CUDNN_STATUS_SUCCESS ? Fastest(bd, n, limit_bytes) : -1;
  if (k >= 0) {
    a.bwd_data = bd[k].algo;
    a.bwd_data_math = MathOf(bd[k].mathType);
    a.bwd_data_bytes = bd[k].memory;
  } else {
    LOG(WARNING) << "cuDNN backward-data algorithm search: "
                 << (status == CUDNN_STATUS_SUCCESS ? "nothing within the workspace limit"
                                                    : cudnnGetErrorString(status))
                 << "; using ALGO_0";
  }

  SetConvMathTypes(a, fwd_desc, bwd_filter_desc, bwd_data_desc);
  QueryWorkspaceSizes(handle, x, w, y, fwd_desc, bwd_filter_desc, bwd_data_desc, &a);
  VLOG(1) << "cuDNN algorithms: forward " << a.fwd << " (" << a.fwd_bytes
          << " B), backward filter " << a.bwd_filter << " (" << a.bwd_filter_bytes
          << " B), backward data " << a.bwd_data << " (" << a.bwd_data_bytes
          << " B); math " << a.fwd_math << "/" << a.bwd_filter_math << "/"
          << a.bwd_data_math;
  return a;
}

}  // namespace cudnn

}  // namespace caffe
#endif  // USE_CUDNN
