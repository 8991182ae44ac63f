// oneDNN as the CPU engine of Caffe's ConvolutionLayer (docs/fork.md, "oneDNN convolutions").
//
// caffe_layers/patches/0005-dnnl-conv.patch makes ConvolutionLayer::Forward_cpu / Backward_cpu
// hand a pass to DnnlConvolution where DnnlConvolution<Dtype>::Handles says so: float, 2-D
// (NCHW blobs, channel axis 1), the layer's engine not CAFFE (`engine: CAFFE` keeps Caffe's
// im2col + GEMM path), and GPSNET_CPU_CONV not "caffe" in the environment. Everything else (double
// blobs, N-D convolutions) stays on Caffe's path. GPSNET_CPU_CONV=bf16: oneDNN with bfloat16 inputs
// (blobs and weights rounded to bf16 on the way in; outputs and gradients float; AVX512-BF16 / AMX). The geometry is Caffe's: output size by floor
// division, dilation d (oneDNN's d - 1), weights num_output x channels/group x kh x kw. The weight
// gradient is accumulated into the diff, as Caffe's own backward does.
//
// The class is the same in every build (ConvolutionLayer holds a pointer to it, so that the
// layer's layout does not depend on USE_DNNL); built without oneDNN (CMake option GPSNET_DNNL
// off, or no libdnnl), Handles is false and every convolution takes Caffe's path.
#ifndef CAFFE_UTIL_DNNL_CONV_HPP_
#define CAFFE_UTIL_DNNL_CONV_HPP_

#include "caffe/proto/caffe.pb.h"

namespace caffe {

// One 2-D convolution in Caffe's terms (a layer's geometry for one bottom shape).
struct DnnlConvGeometry {
  int num, channels, height, width;         // bottom N x C x H x W
  int num_output, out_height, out_width;    // top N x num_output x out_height x out_width
  int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int group;
  bool bias;
  bool operator==(const DnnlConvGeometry& o) const;
};

template <typename Dtype>
class DnnlConvolution {
 public:
  DnnlConvolution();
  ~DnnlConvolution();
  // Whether oneDNN does the CPU passes of a convolution with these parameters, spatial axes and
  // channel axis (the rules above; false for double and in a build without oneDNN).
  static bool Handles(const ConvolutionParameter& param, int num_spatial_axes, int channel_axis);
  // top = conv(bottom, weight) + bias (bias may be NULL where !g.bias).
  void Forward(const DnnlConvGeometry& g, const Dtype* bottom, const Dtype* weight,
               const Dtype* bias, Dtype* top);
  // From top_diff, after a Forward of the same geometry: bottom_diff (overwritten) and
  // weight_diff (added to), each skipped where NULL. The bias gradient stays Caffe's
  // (BaseConvolutionLayer::backward_cpu_bias).
  void Backward(const DnnlConvGeometry& g, const Dtype* top_diff, const Dtype* bottom,
                const Dtype* weight, Dtype* bottom_diff, Dtype* weight_diff);

 private:
  struct Impl;
  Impl* impl_;
  DnnlConvolution(const DnnlConvolution&);
  DnnlConvolution& operator=(const DnnlConvolution&);
};

}  // namespace caffe

#endif  // CAFFE_UTIL_DNNL_CONV_HPP_
