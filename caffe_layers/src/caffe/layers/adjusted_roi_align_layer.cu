#include <vector>

#include "caffe/layers/adjusted_roi_align_layer.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/roi_align_util.hpp"

namespace caffe {

namespace {

template <typename Dtype>
__global__ void AdjustRoIsKernel(const int num_rois, const Dtype* rois, const Dtype* faces,
    const Dtype face_x, const Dtype face_y, Dtype* adjusted) {
  CUDA_KERNEL_LOOP(n, num_rois) {
    roi_util::adjusted_roi5(rois + 5 * n, faces + 6 * n, face_x, face_y, adjusted + 5 * n);
  }
}

}  // namespace

template <typename Dtype>
void AdjustRoIsGPU(int num_rois, const Dtype* rois, const Dtype* faces, Dtype face_x,
                   Dtype face_y, Dtype* adjusted) {
  if (num_rois == 0) return;  // no launch with zero blocks
  // NOLINT_NEXT_LINE(whitespace/operators)
  AdjustRoIsKernel<Dtype><<<CAFFE_GET_BLOCKS(num_rois), CAFFE_CUDA_NUM_THREADS>>>(
      num_rois, rois, faces, face_x, face_y, adjusted);
  CUDA_POST_KERNEL_CHECK;
}

template void AdjustRoIsGPU(int, const float*, const float*, float, float, float*);
template void AdjustRoIsGPU(int, const double*, const double*, double, double, double*);

template <typename Dtype>
void AdjustedRoIAlignLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int num_rois = bottom[1]->shape(0);
  CheckRoIsBatchIndex(*bottom[1], bottom[0]->shape(0), this->layer_param_.name());
  CheckMajorFaces(*bottom[2], this->layer_param_.name());
  if (num_rois == 0) return;
  AdjustRoIsGPU(num_rois, bottom[1]->gpu_data(), bottom[2]->gpu_data(), face_x_, face_y_,
                top[1]->mutable_gpu_data());
  RoIAlignForwardGPU(bottom[0]->gpu_data(), bottom[0]->shape(1), bottom[0]->shape(2),
      bottom[0]->shape(3), num_rois, top[1]->gpu_data(), config_, top[0]->mutable_gpu_data());
}

template <typename Dtype>
void AdjustedRoIAlignLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) return;
  caffe_gpu_set(bottom[0]->count(), Dtype(0), bottom[0]->mutable_gpu_diff());
  const int num_rois = bottom[1]->shape(0);
  if (num_rois == 0) return;
  RoIAlignBackwardGPU(top[0]->gpu_diff(), bottom[0]->shape(1), bottom[0]->shape(2),
      bottom[0]->shape(3), num_rois, top[1]->gpu_data(), config_,
      bottom[0]->mutable_gpu_diff());
}

INSTANTIATE_LAYER_GPU_FUNCS(AdjustedRoIAlignLayer);

}  // namespace caffe
