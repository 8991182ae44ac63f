#include <vector>

#include "caffe/layers/smooth_l1_loss_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

namespace {

// One thread per element: the loss value and the derivative (smooth_l1_util::SmoothL1).
template <typename Dtype>
__global__ void SmoothL1Kernel(const int count, const Dtype* pred, const Dtype* target,
    const Dtype* inside, const Dtype* outside, const Dtype sigma2, Dtype* values, Dtype* grads) {
  CUDA_KERNEL_LOOP(i, count) {
    smooth_l1_util::SmoothL1(pred[i] - target[i], inside[i], outside ? outside[i] : Dtype(1),
                             sigma2, values + i, grads + i);
  }
}

}  // namespace

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  Dtype loss = 0;
  if (count > 0) {  // no launch with zero blocks
    const Dtype* outside = bottom.size() == 4 ? bottom[3]->gpu_data() : NULL;
    // NOLINT_NEXT_LINE(whitespace/operators)
    SmoothL1Kernel<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(count,
        bottom[0]->gpu_data(), bottom[1]->gpu_data(), bottom[2]->gpu_data(), outside, sigma2_,
        values_.mutable_gpu_data(), grads_.mutable_gpu_data());
    CUDA_POST_KERNEL_CHECK;
    caffe_gpu_dot(count, values_.gpu_data(), ones_.gpu_data(), &loss);
  }
  top[0]->mutable_cpu_data()[0] = loss / Normalizer(bottom);
}

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  CheckPropagateDown(propagate_down);
  const int count = bottom[0]->count();
  if (count == 0) return;
  for (int i = 0; i < 2; ++i) {
    if (!propagate_down[i]) continue;
    const Dtype alpha = (i == 0 ? 1 : -1) * top[0]->cpu_diff()[0] / Normalizer(bottom);
    caffe_gpu_scale(count, alpha, grads_.gpu_data(), bottom[i]->mutable_gpu_diff());
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(SmoothL1LossLayer);

}  // namespace caffe

