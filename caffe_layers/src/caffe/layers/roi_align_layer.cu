#include <vector>

#include "caffe/layers/roi_align_layer.hpp"
#include "caffe/util/gpu_util.cuh"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/roi_align_util.hpp"

namespace caffe {

namespace {


// One thread per output element (n, c, ph, pw).
template <typename Dtype>
__global__ void RoIAlignForwardKernel(const int nthreads, const Dtype* bottom,
    const int channels, const int height, const int width, const Dtype* rois,
    const int pooled_h, const int pooled_w, const Dtype spatial_scale,
    const int sampling_ratio, const bool aligned, Dtype* top) {
  CUDA_KERNEL_LOOP(index, nthreads) {
    const int pw = index % pooled_w;
    const int ph = (index / pooled_w) % pooled_h;
    const int c = (index / pooled_w / pooled_h) % channels;
    const int n = index / pooled_w / pooled_h / channels;
    const Dtype* roi = rois + 5 * n;
    const roi_util::RoIGrid<Dtype> g = roi_util::roi_grid<Dtype>(roi + 1, spatial_scale,
        pooled_h, pooled_w, sampling_ratio, aligned);
    const Dtype* plane = bottom + (static_cast<int>(roi[0]) * channels + c) * height * width;
    top[index] = roi_util::roi_align_bin(plane, height, width, g, ph, pw);
  }
}

template <typename Dtype>
__global__ void RoIAlignBackwardKernel(const int nthreads, const Dtype* top_diff,
    const int channels, const int height, const int width, const Dtype* rois,
    const int pooled_h, const int pooled_w, const Dtype spatial_scale,
    const int sampling_ratio, const bool aligned, Dtype* bottom_diff) {
  CUDA_KERNEL_LOOP(index, nthreads) {
    const int pw = index % pooled_w;
    const int ph = (index / pooled_w) % pooled_h;
    const int c = (index / pooled_w / pooled_h) % channels;
    const int n = index / pooled_w / pooled_h / channels;
    const Dtype* roi = rois + 5 * n;
    const roi_util::RoIGrid<Dtype> g = roi_util::roi_grid<Dtype>(roi + 1, spatial_scale,
        pooled_h, pooled_w, sampling_ratio, aligned);
    Dtype* plane = bottom_diff + (static_cast<int>(roi[0]) * channels + c) * height * width;
    roi_util::roi_align_bin_backward(plane, height, width, g, ph, pw, top_diff[index],
        roi_util::AtomicAdder());
  }
}

}  // namespace

template <typename Dtype>
void RoIAlignForwardGPU(const Dtype* bottom, int channels, int height, int width,
    int num_rois, const Dtype* rois, const RoIAlignConfig& c, Dtype* top) {
  const int count = num_rois * channels * c.pooled_h * c.pooled_w;
  if (count == 0) return;  // no launch with zero blocks
  // NOLINT_NEXT_LINE(whitespace/operators)
  RoIAlignForwardKernel<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom, channels, height, width, rois, c.pooled_h, c.pooled_w,
      Dtype(c.spatial_scale), c.sampling_ratio, c.aligned, top);
  CUDA_POST_KERNEL_CHECK;
}

template <typename Dtype>
void RoIAlignBackwardGPU(const Dtype* top_diff, int channels, int height, int width,
    int num_rois, const Dtype* rois, const RoIAlignConfig& c, Dtype* bottom_diff) {
  const int count = num_rois * channels * c.pooled_h * c.pooled_w;
  if (count == 0) return;
  // NOLINT_NEXT_LINE(whitespace/operators)
  RoIAlignBackwardKernel<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, top_diff, channels, height, width, rois, c.pooled_h, c.pooled_w,
      Dtype(c.spatial_scale), c.sampling_ratio, c.aligned, bottom_diff);
  CUDA_POST_KERNEL_CHECK;
}

template void RoIAlignForwardGPU(const float*, int, int, int, int, const float*,
    const RoIAlignConfig&, float*);
template void RoIAlignForwardGPU(const double*, int, int, int, int, const double*,
    const RoIAlignConfig&, double*);
template void RoIAlignBackwardGPU(const float*, int, int, int, int, const float*,
    const RoIAlignConfig&, float*);
template void RoIAlignBackwardGPU(const double*, int, int, int, int, const double*,
    const RoIAlignConfig&, double*);

template <typename Dtype>
void RoIAlignLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int num_rois = bottom[1]->shape(0);
  CheckRoIsBatchIndex(*bottom[1], bottom[0]->shape(0), this->layer_param_.name());
  if (num_rois == 0) return;
  RoIAlignForwardGPU(bottom[0]->gpu_data(), bottom[0]->shape(1), bottom[0]->shape(2),
      bottom[0]->shape(3), num_rois, bottom[1]->gpu_data(), config_, top[0]->mutable_gpu_data());
}

template <typename Dtype>
void RoIAlignLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) return;
  caffe_gpu_set(bottom[0]->count(), Dtype(0), bottom[0]->mutable_gpu_diff());
  const int num_rois = bottom[1]->shape(0);
  if (num_rois == 0) return;
  RoIAlignBackwardGPU(top[0]->gpu_diff(), bottom[0]->shape(1), bottom[0]->shape(2),
      bottom[0]->shape(3), num_rois, bottom[1]->gpu_data(), config_,
      bottom[0]->mutable_gpu_diff());
}

INSTANTIATE_LAYER_GPU_FUNCS(RoIAlignLayer);

}  // namespace caffe
