// The GPU math mode of the fork and the cuDNN workspace limit, each read once from the
// environment (the one place that reads them; docs/fork.md "cuDNN"):
//
//   GPSNET_TF32=1       TF32 tensor-core math for FP32 convolutions (cuDNN: CUDNN_DEFAULT_MATH,
//                       which allows TF32 on Ampere and newer) and FP32 GEMMs (cuBLAS:
//                       CUBLAS_TF32_TENSOR_OP_MATH). Default (unset, 0): plain FP32 (cuDNN:
//                       CUDNN_FMA_MATH, cuBLAS: CUBLAS_DEFAULT_MATH). "1", "true", "yes", "on"
//                       turn it on. (NVIDIA_TF32_OVERRIDE=0 still overrides both libraries.)
//   GPSNET_CUDNN_WORKSPACE_MB=N   the largest workspace, in MiB, that the cuDNN convolution's
//                       algorithm search accepts for one operation (forward, backward filter,
//                       backward data) of one layer; default kCudnnWorkspaceLimitMB. A layer
//                       allocates this up to 3 x group times (one slice per stream).
//
// Only CUDA builds define these (common.cpp sets cuBLAS's mode, util/cudnn_conv_search.cpp
// cuDNN's).
#ifndef CAFFE_UTIL_MATH_MODE_HPP_
#define CAFFE_UTIL_MATH_MODE_HPP_

#include <cstddef>

namespace caffe {

const size_t kCudnnWorkspaceLimitMB = 64;

#ifndef CPU_ONLY
// True when GPSNET_TF32 asks for TF32 (read at the first call).
bool TF32Enabled();
// The per-operation workspace limit of the cuDNN algorithm search, in bytes.
size_t CudnnWorkspaceLimitBytes();
#endif

}  // namespace caffe

#endif  // CAFFE_UTIL_MATH_MODE_HPP_
