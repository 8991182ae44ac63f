#include <vector>

#include "caffe/layers/adjust_back_layer.hpp"
#include "caffe/util/gpu_util.cuh"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/roi_align_util.hpp"

namespace caffe {

namespace {

// One thread per output element (n, k, i, j).
template <typename Dtype>
__global__ void AdjustBackForwardKernel(const int nthreads, const Dtype* maps,
    const int channels, const int height, const int width, const Dtype* adj,
    const Dtype* orig, const Dtype outside, Dtype* out) {
  CUDA_KERNEL_LOOP(index, nthreads) {
    const int j = index % width;
    const int i = (index / width) % height;
    const int n = index / width / height / channels;
    Dtype v, u;
    const Dtype* plane = maps + (index / width / height) * height * width;
    out[index] = roi_util::adjust_back_position(adj + 5 * n, orig + 5 * n, height, width,
        height, width, i, j, &v, &u)
        ? roi_util::bilinear_sample(plane, height, width, v, u, outside) : outside;
  }
}

template <typename Dtype>
__global__ void AdjustBackBackwardKernel(const int nthreads, const Dtype* top_diff,
    const int channels, const int height, const int width, const Dtype* adj,
    const Dtype* orig, Dtype* diff) {
  CUDA_KERNEL_LOOP(index, nthreads) {
    const int j = index % width;
    const int i = (index / width) % height;
    const int n = index / width / height / channels;
    Dtype v, u;
    if (roi_util::adjust_back_position(adj + 5 * n, orig + 5 * n, height, width, height,
                                       width, i, j, &v, &u)) {
      Dtype* plane = diff + (index / width / height) * height * width;
      roi_util::bilinear_scatter(plane, height, width, v, u, top_diff[index],
                                 roi_util::AtomicAdder());
    }
  }
}

}  // namespace

template <typename Dtype>
void AdjustBackLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  if (count == 0) return;  // no launch with zero blocks
  // NOLINT_NEXT_LINE(whitespace/operators)
  AdjustBackForwardKernel<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->gpu_data(), bottom[0]->shape(1), bottom[0]->shape(2),
      bottom[0]->shape(3), bottom[1]->gpu_data(), bottom[2]->gpu_data(), outside_value_,
      top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

template <typename Dtype>
void AdjustBackLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) return;
  const int count = bottom[0]->count();
  if (count == 0) return;
  Dtype* diff = bottom[0]->mutable_gpu_diff();
  caffe_gpu_set(count, Dtype(0), diff);
  // NOLINT_NEXT_LINE(whitespace/operators)
  AdjustBackBackwardKernel<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, top[0]->gpu_diff(), bottom[0]->shape(1), bottom[0]->shape(2),
      bottom[0]->shape(3), bottom[1]->gpu_data(), bottom[2]->gpu_data(), diff);
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(AdjustBackLayer);

}  // namespace caffe
