// The cuDNN convolution's algorithm search (GPSNet patch 0004, cuDNN >= 7; docs/fork.md "cuDNN").
//
// cuDNN 8 removed cudnnGetConvolution*Algorithm(..., *_SPECIFY_WORKSPACE_LIMIT, ...), with which
// BVLC Caffe picked its algorithms. The cuDNN Convolution and Deconvolution layers now run
// cudnnFind*Algorithm (every algorithm timed on the device, as many as
// cudnnGet*AlgorithmMaxCount says) once per input shape, and take, for each of the three
// operations, the fastest one whose workspace fits CudnnWorkspaceLimitBytes()
// (caffe/util/math_mode.hpp: 64 MiB unless GPSNET_CUDNN_WORKSPACE_MB says otherwise). The layers
// cache the result per bottom shape, so a shape seen before is not searched again.
//
// "x" is the convolution's input as cuDNN sees it (a Convolution layer's bottom, a Deconvolution
// layer's top), "y" its output. The three descriptors describe the same convolution; each
// operation gets its own so that it can carry the math type of its algorithm.
#ifndef CAFFE_UTIL_CUDNN_CONV_SEARCH_HPP_
#define CAFFE_UTIL_CUDNN_CONV_SEARCH_HPP_
#ifdef USE_CUDNN

#include <cstddef>

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

// The math type the convolutions start from: CUDNN_FMA_MATH (FP32, no TF32) by default,
// CUDNN_DEFAULT_MATH (TF32 allowed on Ampere and newer) with GPSNET_TF32=1; cuDNN 7:
// CUDNN_DEFAULT_MATH.
cudnnMathType_t ConvMathType();

// The algorithms that need no workspace (implicit GEMM, ALGO_0), with the default math type:
// what a layer falls back to when nothing else fits or its workspace cannot be allocated.
// The workspace sizes are cuDNN's for these descriptors (0 in practice).
ConvAlgos NoWorkspaceConvAlgos(cudnnHandle_t handle, cudnnTensorDescriptor_t x,
    cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t y,
    cudnnConvolutionDescriptor_t fwd_desc, cudnnConvolutionDescriptor_t bwd_filter_desc,
    cudnnConvolutionDescriptor_t bwd_data_desc);

// The search: for each operation the fastest algorithm that succeeded and whose workspace is
// at most limit_bytes (without GPSNET_TF32, tensor-op results are skipped); the no-workspace
// algorithm where none does. Leaves each descriptor with its algorithm's math type.
ConvAlgos FindConvAlgos(cudnnHandle_t handle, cudnnTensorDescriptor_t x,
    cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t y,
    cudnnConvolutionDescriptor_t fwd_desc, cudnnConvolutionDescriptor_t bwd_filter_desc,
    cudnnConvolutionDescriptor_t bwd_data_desc, size_t limit_bytes);

// Writes the math types of algos into the three descriptors (a cached choice).
void SetConvMathTypes(const ConvAlgos& algos, cudnnConvolutionDescriptor_t fwd_desc,
    cudnnConvolutionDescriptor_t bwd_filter_desc,
    cudnnConvolutionDescriptor_t bwd_data_desc);

}  // namespace cudnn

}  // namespace caffe

#endif  // USE_CUDNN
#endif  // CAFFE_UTIL_CUDNN_CONV_SEARCH_HPP_
